//! A readable, stable text form of bound plans, used by `explain` and snapshot tests.

use std::fmt::Write;

use crate::catalog::Catalog;
use crate::ir::{BinaryOp, Expr, ExprKind, OnConflict, Statement, UnaryOp};
use crate::plan::Plan;
use crate::routing::{Input, MergeOp, Route};

/// Names of the tables in scope (aliases for SELECT, the target for writes).
struct Names<'a> {
    catalog: &'a Catalog,
    tables: Vec<(&'a str, &'a str)>,
}

impl Names<'_> {
    fn column(&self, table: usize, column: usize) -> String {
        let (alias, name) = self.tables.get(table).copied().unwrap_or(("?", "?"));
        let col = self
            .catalog
            .table(name)
            .and_then(|t| t.columns.get(column))
            .map_or("?", |c| c.name.as_str());
        format!("{alias}.{col}")
    }

    #[recursive::recursive]
    fn expr(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Column { table, column } => self.column(*table, *column),
            ExprKind::Excluded { column } => format!(
                "excluded.{}",
                self.column(0, *column).split('.').nth(1).unwrap_or("?")
            ),
            ExprKind::Literal(v) => v.describe(),
            ExprKind::Param(i) => format!("${}:{}", i + 1, e.ty),
            ExprKind::Unary {
                op: UnaryOp::Not,
                expr,
            } => format!("NOT {}", self.expr(expr)),
            ExprKind::Unary {
                op: UnaryOp::Neg,
                expr,
            } => format!("-{}", self.expr(expr)),
            ExprKind::Binary { op, left, right } => {
                format!(
                    "({} {} {})",
                    self.expr(left),
                    binary_symbol(*op),
                    self.expr(right)
                )
            }
            ExprKind::IsNull { expr, negated } => {
                format!(
                    "{} IS {}NULL",
                    self.expr(expr),
                    if *negated { "NOT " } else { "" }
                )
            }
            ExprKind::InList {
                expr,
                list,
                negated,
            } => format!(
                "{} {}IN ({})",
                self.expr(expr),
                if *negated { "NOT " } else { "" },
                list.iter()
                    .map(|x| self.expr(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => format!(
                "{} {}BETWEEN {} AND {}",
                self.expr(expr),
                if *negated { "NOT " } else { "" },
                self.expr(low),
                self.expr(high)
            ),
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => {
                format!(
                    "{} {}LIKE {}",
                    self.expr(expr),
                    if *negated { "NOT " } else { "" },
                    self.expr(pattern)
                )
            }
            ExprKind::Func { func, args } => {
                format!(
                    "{}({})",
                    func.as_str(),
                    args.iter()
                        .map(|x| self.expr(x))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            ExprKind::Agg {
                func,
                arg,
                distinct,
            } => format!(
                "{}({}{}):{}",
                func.as_str(),
                if *distinct { "DISTINCT " } else { "" },
                arg.as_ref().map_or("*".to_owned(), |a| self.expr(a)),
                e.ty
            ),
        }
    }
}

/// The SQL spelling of a binary operator.
pub fn binary_symbol(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
        BinaryOp::Plus => "+",
        BinaryOp::Minus => "-",
        BinaryOp::Multiply => "*",
        BinaryOp::Divide => "/",
        BinaryOp::Modulo => "%",
        BinaryOp::Concat => "||",
    }
}

impl Plan {
    /// A multi-line description of the route and the bound statement.
    pub fn describe(&self, catalog: &Catalog) -> String {
        let mut out = describe_route(&self.route, &self.query.statement, catalog);
        out.push_str(&describe_statement(&self.query.statement, catalog));
        if !self.query.params.is_empty() {
            let params: Vec<String> = self.query.params.iter().map(|p| p.describe()).collect();
            let _ = writeln!(out, "params: {}", params.join(", "));
        }
        out
    }
}

fn input_name(i: Input) -> String {
    match i {
        Input::Fragment(f) => format!("fragment {f}"),
        Input::Node(n) => format!("node {n}"),
    }
}

/// A multi-line description of a route, naming backends and the table references it covers.
pub fn describe_route(route: &Route, statement: &Statement, catalog: &Catalog) -> String {
    let mut out = String::new();
    let backend = |id: usize| {
        catalog
            .backends
            .get_index(id)
            .map_or("?".to_owned(), |(n, _)| n.clone())
    };
    let aliases: Vec<String> = match statement {
        Statement::Select(s) => s
            .from
            .iter()
            .map(|t| {
                if t.alias == t.table {
                    t.table.clone()
                } else {
                    format!("{} {}", t.table, t.alias)
                }
            })
            .collect(),
        other => other
            .access_tables()
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
    };
    if let Some(b) = route.as_single() {
        let _ = writeln!(out, "route: single backend `{}`", backend(b));
    } else {
        let _ = writeln!(out, "route:");
        for (i, f) in route.fragments.iter().enumerate() {
            let covered: Vec<&str> = f
                .accesses
                .iter()
                .filter_map(|a| aliases.get(*a))
                .map(String::as_str)
                .collect();
            let _ = writeln!(
                out,
                "  fragment {i}: backend `{}` <- {}",
                backend(f.backend),
                covered.join(", ")
            );
        }
        for (i, n) in route.nodes.iter().enumerate() {
            let inputs: Vec<String> = n.inputs.iter().map(|x| input_name(*x)).collect();
            let detail = match &n.op {
                MergeOp::HashJoin { edge } => format!(" on join edge {edge}"),
                MergeOp::FirstHit { fill, ttl_seconds } => match (fill, ttl_seconds) {
                    (true, Some(ttl)) => format!(" fill ttl {ttl}s"),
                    (true, None) => " fill".to_owned(),
                    (false, _) => String::new(),
                },
                MergeOp::TopK { limit } => format!(" limit {limit}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  node {i}: {}{detail} ({})",
                n.op.as_str(),
                inputs.join(", ")
            );
        }
        let _ = writeln!(out, "  root: {}", input_name(route.root));
    }
    if let Some(w) = &route.write {
        let targets: Vec<String> = w.targets.iter().map(|b| backend(*b)).collect();
        let _ = write!(out, "write: {}", targets.join(", "));
        if !w.invalidate.is_empty() {
            let inv: Vec<String> = w.invalidate.iter().map(|b| backend(*b)).collect();
            let _ = write!(out, "; invalidate cache on {}", inv.join(", "));
        }
        out.push('\n');
    }
    out
}

/// A multi-line description of a bound statement.
pub fn describe_statement(statement: &Statement, catalog: &Catalog) -> String {
    let mut out = String::new();
    match statement {
        Statement::Select(s) => {
            let names = Names {
                catalog,
                tables: s
                    .from
                    .iter()
                    .map(|t| (t.alias.as_str(), t.table.as_str()))
                    .collect(),
            };
            let cols: Vec<String> = s
                .projection
                .iter()
                .map(|c| format!("{} AS {}:{}", names.expr(&c.expr), c.name, c.expr.ty))
                .collect();
            let _ = writeln!(
                out,
                "select{} {}",
                if s.distinct { " distinct" } else { "" },
                cols.join(", ")
            );
            let _ = writeln!(out, "  from {} {}", s.from[0].table, s.from[0].alias);
            for (j, t) in s.joins.iter().zip(s.from.iter().skip(1)) {
                let kind = match j.kind {
                    crate::ir::JoinKind::Inner => "inner",
                    crate::ir::JoinKind::Left => "left",
                };
                let _ = writeln!(
                    out,
                    "  join {kind} {} {} on {}",
                    t.table,
                    t.alias,
                    names.expr(&j.on)
                );
            }
            if let Some(f) = &s.filter {
                let _ = writeln!(out, "  where {}", names.expr(f));
            }
            if !s.group_by.is_empty() {
                let g: Vec<String> = s.group_by.iter().map(|e| names.expr(e)).collect();
                let _ = writeln!(out, "  group by {}", g.join(", "));
            }
            if let Some(h) = &s.having {
                let _ = writeln!(out, "  having {}", names.expr(h));
            }
            if !s.order_by.is_empty() {
                let o: Vec<String> = s
                    .order_by
                    .iter()
                    .map(|o| {
                        format!(
                            "{} {} nulls {}",
                            names.expr(&o.expr),
                            if o.desc { "desc" } else { "asc" },
                            if o.nulls_first { "first" } else { "last" }
                        )
                    })
                    .collect();
                let _ = writeln!(out, "  order by {}", o.join(", "));
            }
            if let Some(l) = s.limit {
                let _ = writeln!(out, "  limit {l}");
            }
            if let Some(o) = s.offset {
                let _ = writeln!(out, "  offset {o}");
            }
        }
        Statement::Insert(i) => {
            let names = Names {
                catalog,
                tables: vec![(i.table.as_str(), i.table.as_str())],
            };
            let cols: Vec<String> = i.columns.iter().map(|c| names.column(0, *c)).collect();
            let _ = writeln!(out, "insert into {} ({})", i.table, cols.join(", "));
            for row in &i.rows {
                let vals: Vec<String> = row.iter().map(|e| names.expr(e)).collect();
                let _ = writeln!(out, "  values ({})", vals.join(", "));
            }
            match &i.on_conflict {
                None => {}
                Some(OnConflict::DoNothing) => {
                    let _ = writeln!(out, "  on conflict do nothing");
                }
                Some(OnConflict::DoUpdate(a)) => {
                    let set: Vec<String> = a
                        .iter()
                        .map(|a| {
                            format!("{} = {}", names.column(0, a.column), names.expr(&a.value))
                        })
                        .collect();
                    let _ = writeln!(out, "  on conflict do update set {}", set.join(", "));
                }
            }
        }
        Statement::Update(u) => {
            let names = Names {
                catalog,
                tables: vec![(u.table.as_str(), u.table.as_str())],
            };
            let set: Vec<String> = u
                .assignments
                .iter()
                .map(|a| format!("{} = {}", names.column(0, a.column), names.expr(&a.value)))
                .collect();
            let _ = writeln!(out, "update {} set {}", u.table, set.join(", "));
            if let Some(f) = &u.filter {
                let _ = writeln!(out, "  where {}", names.expr(f));
            }
        }
        Statement::Delete(d) => {
            let names = Names {
                catalog,
                tables: vec![(d.table.as_str(), d.table.as_str())],
            };
            let _ = writeln!(out, "delete from {}", d.table);
            if let Some(f) = &d.filter {
                let _ = writeln!(out, "  where {}", names.expr(f));
            }
        }
    }
    out
}
