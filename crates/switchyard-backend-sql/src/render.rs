//! Rendering the bound IR as one native statement in a SQL dialect, with physical names, quoting
//! and placeholders. Every literal and parameter is bound, never spliced into the text.

use std::fmt::Write;

use switchyard_core::describe::binary_symbol;
use switchyard_core::ir::{
    AggFunc, BinaryOp, Expr, ExprKind, Insert, JoinKind, OnConflict, ScalarFunc, Select, Statement,
    UnaryOp,
};
use switchyard_core::{BoundQuery, Catalog, LogicalType, Placement, Table, Value};

/// The SQL dialects Switchyard renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

/// A rendered statement: text with placeholders, and the typed values to bind in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Statement text.
    pub sql: String,
    /// Values for the placeholders, in order, with the logical type to bind them as.
    pub binds: Vec<(Value, LogicalType)>,
}

/// A table of the statement as this backend stores it.
struct PhysicalTable<'a> {
    alias: &'a str,
    table: &'a Table,
    placement: &'a Placement,
}

/// A rendering problem: the catalog does not place a table on this backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPlacement {
    /// The logical table.
    pub table: String,
}

/// Renders `query` for the backend `backend` in `dialect`.
pub fn render(
    query: &BoundQuery,
    catalog: &Catalog,
    backend: &str,
    dialect: Dialect,
) -> Result<Rendered, MissingPlacement> {
    let resolve = |name: &str, alias: &'_ str| -> Result<(&Table, &Placement), MissingPlacement> {
        let missing = || MissingPlacement {
            table: name.to_owned(),
        };
        let _ = alias;
        let table = catalog.table(name).ok_or_else(missing)?;
        let placement = table.placement_on(backend).ok_or_else(missing)?;
        Ok((table, placement))
    };
    let mut tables = Vec::new();
    match &query.statement {
        Statement::Select(s) => {
            for t in &s.from {
                let (table, placement) = resolve(&t.table, &t.alias)?;
                tables.push(PhysicalTable {
                    alias: &t.alias,
                    table,
                    placement,
                });
            }
        }
        Statement::Insert(Insert { table, .. }) => {
            let (t, placement) = resolve(table, table)?;
            tables.push(PhysicalTable {
                alias: table,
                table: t,
                placement,
            });
        }
        Statement::Update(u) => {
            let (t, placement) = resolve(&u.table, &u.table)?;
            tables.push(PhysicalTable {
                alias: &u.table,
                table: t,
                placement,
            });
        }
        Statement::Delete(d) => {
            let (t, placement) = resolve(&d.table, &d.table)?;
            tables.push(PhysicalTable {
                alias: &d.table,
                table: t,
                placement,
            });
        }
    }
    let mut r = Renderer {
        dialect,
        tables,
        params: &query.params,
        sql: String::new(),
        binds: Vec::new(),
        qualify: true,
        in_insert: false,
    };
    match &query.statement {
        Statement::Select(s) => r.select(s),
        Statement::Insert(i) => r.insert(i),
        Statement::Update(u) => {
            r.qualify = false;
            let name = r.quote(&r.tables[0].placement.physical_name);
            let _ = write!(r.sql, "UPDATE {name} SET ");
            for (i, a) in u.assignments.iter().enumerate() {
                if i > 0 {
                    r.sql.push_str(", ");
                }
                let col = r.quote(&r.tables[0].placement.physical_columns[a.column]);
                let _ = write!(r.sql, "{col} = ");
                r.expr(&a.value);
            }
            if let Some(f) = &u.filter {
                r.sql.push_str(" WHERE ");
                r.expr(f);
            }
        }
        Statement::Delete(d) => {
            r.qualify = false;
            let name = r.quote(&r.tables[0].placement.physical_name);
            let _ = write!(r.sql, "DELETE FROM {name}");
            if let Some(f) = &d.filter {
                r.sql.push_str(" WHERE ");
                r.expr(f);
            }
        }
    }
    Ok(Rendered {
        sql: r.sql,
        binds: r.binds,
    })
}

/// Quotes an identifier for `dialect`.
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

struct Renderer<'a> {
    dialect: Dialect,
    tables: Vec<PhysicalTable<'a>>,
    params: &'a [Value],
    sql: String,
    binds: Vec<(Value, LogicalType)>,
    /// Qualify column references with the table alias (SELECT) or not (UPDATE/DELETE).
    qualify: bool,
    /// Rendering INSERT ... ON CONFLICT, where the target is named by its physical name.
    in_insert: bool,
}

impl Renderer<'_> {
    fn quote(&self, name: &str) -> String {
        quote_ident(self.dialect, name)
    }

    fn placeholder(&mut self, value: Value, ty: LogicalType) {
        self.binds.push((value, ty));
        match self.dialect {
            Dialect::Postgres => {
                let _ = write!(self.sql, "${}", self.binds.len());
            }
            Dialect::Mysql | Dialect::Sqlite => self.sql.push('?'),
        }
    }

    fn select(&mut self, s: &Select) {
        self.sql.push_str("SELECT ");
        if s.distinct {
            self.sql.push_str("DISTINCT ");
        }
        for (i, c) in s.projection.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.expr(&c.expr);
            if self.dialect == Dialect::Mysql {
                // MySQL has no NULLS FIRST/LAST; ORDER BY refers to outputs by these aliases.
                let _ = write!(self.sql, " AS `_c{}`", i + 1);
            }
        }
        self.sql.push_str(" FROM ");
        self.table_ref(0);
        for (i, j) in s.joins.iter().enumerate() {
            self.sql.push_str(match j.kind {
                JoinKind::Inner => " INNER JOIN ",
                JoinKind::Left => " LEFT JOIN ",
            });
            self.table_ref(i + 1);
            self.sql.push_str(" ON ");
            self.expr(&j.on);
        }
        if let Some(f) = &s.filter {
            self.sql.push_str(" WHERE ");
            self.expr(f);
        }
        if !s.group_by.is_empty() {
            self.sql.push_str(" GROUP BY ");
            for (i, g) in s.group_by.iter().enumerate() {
                if i > 0 {
                    self.sql.push_str(", ");
                }
                // An output expression is grouped by its ordinal, so that bound literals inside
                // it are the same placeholders as in the output list.
                match s.projection.iter().position(|c| c.expr == *g) {
                    Some(ordinal) => {
                        let _ = write!(self.sql, "{}", ordinal + 1);
                    }
                    None => self.expr(g),
                }
            }
        }
        if let Some(h) = &s.having {
            self.sql.push_str(" HAVING ");
            self.expr(h);
        }
        if !s.order_by.is_empty() {
            self.sql.push_str(" ORDER BY ");
            for (i, o) in s.order_by.iter().enumerate() {
                if i > 0 {
                    self.sql.push_str(", ");
                }
                let dir = if o.desc { "DESC" } else { "ASC" };
                let output = s.projection.iter().position(|c| c.expr == o.expr);
                match (self.dialect, output) {
                    // MySQL refuses an alias of an aggregate inside an expression: those are
                    // repeated below instead.
                    (Dialect::Mysql, Some(ordinal)) if !o.expr.contains_aggregate() => {
                        let alias = format!("`_c{}`", ordinal + 1);
                        let nulls = if o.nulls_first { "DESC" } else { "ASC" };
                        let _ = write!(self.sql, "({alias} IS NULL) {nulls}, {alias} {dir}");
                    }
                    (Dialect::Mysql, _) => {
                        self.sql.push('(');
                        self.expr(&o.expr);
                        let _ = write!(
                            self.sql,
                            " IS NULL) {}, ",
                            if o.nulls_first { "DESC" } else { "ASC" }
                        );
                        self.expr(&o.expr);
                        let _ = write!(self.sql, " {dir}");
                    }
                    (Dialect::Postgres | Dialect::Sqlite, _) => {
                        match output {
                            Some(ordinal) => {
                                let _ = write!(self.sql, "{}", ordinal + 1);
                            }
                            None => self.expr(&o.expr),
                        }
                        let nulls = if o.nulls_first { "FIRST" } else { "LAST" };
                        let _ = write!(self.sql, " {dir} NULLS {nulls}");
                    }
                }
            }
        }
        match (s.limit, s.offset) {
            (None, None) => {}
            (Some(l), None) => {
                let _ = write!(self.sql, " LIMIT {l}");
            }
            (limit, Some(o)) => {
                let l = match (limit, self.dialect) {
                    (Some(l), _) => l.to_string(),
                    (None, Dialect::Postgres) => "ALL".to_owned(),
                    (None, Dialect::Mysql) => u64::MAX.to_string(),
                    (None, Dialect::Sqlite) => "-1".to_owned(),
                };
                let _ = write!(self.sql, " LIMIT {l} OFFSET {o}");
            }
        }
    }

    fn table_ref(&mut self, i: usize) {
        let t = &self.tables[i];
        let text = format!(
            "{} AS {}",
            self.quote(&t.placement.physical_name),
            self.quote(t.alias)
        );
        self.sql.push_str(&text);
    }

    fn insert(&mut self, ins: &Insert) {
        self.in_insert = true;
        let t = &self.tables[0];
        let name = self.quote(&t.placement.physical_name);
        let cols: Vec<String> = ins
            .columns
            .iter()
            .map(|c| self.quote(&t.placement.physical_columns[*c]))
            .collect();
        let _ = write!(self.sql, "INSERT INTO {name} ({}) VALUES ", cols.join(", "));
        for (r, row) in ins.rows.iter().enumerate() {
            if r > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            for (i, e) in row.iter().enumerate() {
                if i > 0 {
                    self.sql.push_str(", ");
                }
                self.expr(e);
            }
            self.sql.push(')');
        }
        let pk: Vec<String> = {
            let t = &self.tables[0];
            t.table
                .primary_key
                .iter()
                .map(|c| self.quote(&t.placement.physical_columns[*c]))
                .collect()
        };
        match (&ins.on_conflict, self.dialect) {
            (None, _) => {}
            (Some(OnConflict::DoNothing), Dialect::Postgres | Dialect::Sqlite) => {
                let _ = write!(self.sql, " ON CONFLICT ({}) DO NOTHING", pk.join(", "));
            }
            (Some(OnConflict::DoNothing), Dialect::Mysql) => {
                let first = pk.first().cloned().unwrap_or_default();
                let _ = write!(self.sql, " ON DUPLICATE KEY UPDATE {first} = {first}");
            }
            (Some(OnConflict::DoUpdate(assignments)), dialect) => {
                match dialect {
                    Dialect::Mysql => self.sql.push_str(" ON DUPLICATE KEY UPDATE "),
                    _ => {
                        let _ = write!(self.sql, " ON CONFLICT ({}) DO UPDATE SET ", pk.join(", "));
                    }
                }
                self.qualify = dialect != Dialect::Mysql;
                for (i, a) in assignments.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    let col = self.quote(&self.tables[0].placement.physical_columns[a.column]);
                    let _ = write!(self.sql, "{col} = ");
                    self.expr(&a.value);
                }
            }
        }
    }

    fn column_ref(&mut self, table: usize, column: usize) {
        let t = &self.tables[table];
        let col = self.quote(&t.placement.physical_columns[column]);
        let text = if self.qualify {
            // In ON CONFLICT the existing row is named by the table, not an alias.
            let qualifier = if self.in_insert {
                t.placement.physical_name.as_str()
            } else {
                t.alias
            };
            format!("{}.{col}", self.quote(qualifier))
        } else {
            col
        };
        self.sql.push_str(&text);
    }

    fn list(&mut self, items: &[Expr]) {
        for (i, e) in items.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.expr(e);
        }
    }

    #[recursive::recursive]
    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Column { table, column } => self.column_ref(*table, *column),
            ExprKind::Excluded { column } => {
                let col = self.quote(&self.tables[0].placement.physical_columns[*column]);
                let text = match self.dialect {
                    Dialect::Mysql => format!("VALUES({col})"),
                    Dialect::Postgres => format!("EXCLUDED.{col}"),
                    Dialect::Sqlite => format!("excluded.{col}"),
                };
                self.sql.push_str(&text);
            }
            ExprKind::Literal(Value::Null) => self.sql.push_str("NULL"),
            ExprKind::Literal(v) => self.placeholder(v.clone(), e.ty),
            ExprKind::Param(i) => {
                let v = self.params.get(*i).cloned().unwrap_or(Value::Null);
                self.placeholder(v, e.ty);
            }
            ExprKind::Unary { op, expr } => {
                self.sql.push_str(match op {
                    UnaryOp::Not => "(NOT ",
                    UnaryOp::Neg => "(- ",
                });
                self.expr(expr);
                self.sql.push(')');
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right),
            ExprKind::IsNull { expr, negated } => {
                self.sql.push('(');
                self.expr(expr);
                self.sql.push_str(if *negated {
                    " IS NOT NULL)"
                } else {
                    " IS NULL)"
                });
            }
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                self.sql.push('(');
                self.expr(expr);
                self.sql
                    .push_str(if *negated { " NOT IN (" } else { " IN (" });
                self.list(list);
                self.sql.push_str("))");
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                self.sql.push('(');
                self.expr(expr);
                self.sql.push_str(if *negated {
                    " NOT BETWEEN "
                } else {
                    " BETWEEN "
                });
                self.expr(low);
                self.sql.push_str(" AND ");
                self.expr(high);
                self.sql.push(')');
            }
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => {
                self.sql.push('(');
                self.expr(expr);
                self.sql
                    .push_str(if *negated { " NOT LIKE " } else { " LIKE " });
                self.expr(pattern);
                self.sql.push_str(match self.dialect {
                    Dialect::Mysql => " ESCAPE '\\\\')",
                    Dialect::Postgres | Dialect::Sqlite => " ESCAPE '\\')",
                });
            }
            ExprKind::Func { func, args } => {
                let name = match (func, self.dialect) {
                    (ScalarFunc::Length, Dialect::Postgres | Dialect::Mysql) => "CHAR_LENGTH",
                    (ScalarFunc::Length, Dialect::Sqlite) => "LENGTH",
                    (ScalarFunc::Lower, _) => "LOWER",
                    (ScalarFunc::Upper, _) => "UPPER",
                    (ScalarFunc::Abs, _) => "ABS",
                    (ScalarFunc::Coalesce, _) => "COALESCE",
                };
                let _ = write!(self.sql, "{name}(");
                self.list(args);
                self.sql.push(')');
            }
            ExprKind::Agg {
                func,
                arg,
                distinct,
            } => self.aggregate(*func, arg.as_deref(), *distinct, e.ty),
        }
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr) {
        if op == BinaryOp::Concat && self.dialect == Dialect::Mysql {
            self.sql.push_str("CONCAT(");
            self.expr(left);
            self.sql.push_str(", ");
            self.expr(right);
            self.sql.push(')');
            return;
        }
        let int_division =
            op == BinaryOp::Divide && left.ty == LogicalType::Int && right.ty == LogicalType::Int;
        let symbol = if int_division && self.dialect == Dialect::Mysql {
            "DIV"
        } else {
            binary_symbol(op)
        };
        self.sql.push('(');
        self.expr(left);
        let _ = write!(self.sql, " {symbol} ");
        self.expr(right);
        self.sql.push(')');
    }

    fn aggregate(&mut self, func: AggFunc, arg: Option<&Expr>, distinct: bool, ty: LogicalType) {
        let Some(arg) = arg else {
            self.sql.push_str("COUNT(*)");
            return;
        };
        let name = func.as_str().to_uppercase();
        let distinct = if distinct { "DISTINCT " } else { "" };
        match (func, ty) {
            (AggFunc::Avg, LogicalType::Float) => {
                let double = match self.dialect {
                    Dialect::Postgres => "DOUBLE PRECISION",
                    Dialect::Mysql => "DOUBLE",
                    Dialect::Sqlite => "REAL",
                };
                let _ = write!(self.sql, "AVG({distinct}CAST(");
                self.expr(arg);
                let _ = write!(self.sql, " AS {double}))");
            }
            (AggFunc::Avg, LogicalType::Decimal { scale, .. })
                if self.dialect != Dialect::Sqlite =>
            {
                let _ = write!(self.sql, "ROUND(AVG({distinct}");
                self.expr(arg);
                let _ = write!(self.sql, "), {scale})");
            }
            _ => {
                let _ = write!(self.sql, "{name}({distinct}");
                self.expr(arg);
                self.sql.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Catalog {
        let text = include_str!("../../../router.toml");
        let config = switchyard_config::parse_str(text, "router.toml", &|_| None).expect("valid");
        Catalog::from_config(&config)
    }

    /// Renders each statement in all three dialects, one snapshot for the suite.
    fn check(cases: &[(&str, serde_json::Value)]) -> String {
        let catalog = shop();
        let mut out = String::new();
        for (sql, params) in cases {
            let params = params.as_array().cloned().unwrap_or_default();
            let q = switchyard_core::sql::bind(sql, &params, &catalog).expect("binds");
            let _ = writeln!(out, "> {sql}");
            for d in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
                let r = render(&q, &catalog, "pg", d).expect("renders");
                let binds: Vec<String> = r.binds.iter().map(|(v, _)| v.describe()).collect();
                let _ = writeln!(out, "{d:?}: {}\n  binds: [{}]", r.sql, binds.join(", "));
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn dialects() {
        insta::assert_snapshot!(check(&[
            (
                "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE c.state = $1 ORDER BY p.amount DESC LIMIT 5",
                serde_json::json!(["SP"]),
            ),
            (
                "SELECT state || '/' || city, count(*), avg(installments), avg(amount) FROM customers c LEFT JOIN payments p ON p.customer_id = c.customer_id WHERE name LIKE 'A%' GROUP BY 1 ORDER BY 2 OFFSET 3",
                serde_json::json!([])
            ),
            (
                "SELECT stock / 2, length(warehouse) FROM inventory WHERE updated_at IS NULL OR stock NOT IN (1, 2)",
                serde_json::json!([])
            ),
            (
                "INSERT INTO inventory VALUES ('p1', 5, 'A', NULL) ON CONFLICT (product_id) DO UPDATE SET stock = inventory.stock + EXCLUDED.stock",
                serde_json::json!([])
            ),
            (
                "INSERT INTO customers (customer_id, name) VALUES ($1, 'x') ON CONFLICT DO NOTHING",
                serde_json::json!(["c9"])
            ),
            (
                "UPDATE inventory SET stock = stock - 1 WHERE product_id = $1",
                serde_json::json!(["p1"])
            ),
            (
                "DELETE FROM payments WHERE amount BETWEEN 1 AND 2",
                serde_json::json!([])
            ),
        ]));
    }
}
