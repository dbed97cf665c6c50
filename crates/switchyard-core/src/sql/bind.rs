//! Name resolution and type checking: sqlparser AST -> [`crate::ir`].

use std::str::FromStr;

use rust_decimal::Decimal;
use sqlparser::ast::{
    self, BinaryOperator, Distinct, DuplicateTreatment, FromTable, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator, LimitClause, ObjectName,
    ObjectNamePart, OrderByKind, SelectItem, SetExpr, Spanned, TableFactor, TableObject,
    UnaryOperator,
};

use sqlparser::tokenizer::Span;

use crate::catalog::{Catalog, Table};
use crate::error::{CoreError, Position};
use crate::ir::{
    AggFunc, Assignment, BinaryOp, BoundQuery, Delete, Expr, ExprKind, Insert, Join, JoinKind,
    OnConflict, OrderItem, OutputColumn, ScalarFunc, Select, Statement, TableRef, UnaryOp, Update,
};
use crate::{LogicalType, Value};

type Result<T> = std::result::Result<T, CoreError>;

/// The most output columns a SELECT may have: PostgreSQL's limit on a target list, so a
/// statement one store accepts no other refuses.
const MAX_OUTPUT_COLUMNS: usize = 1664;

/// Precision given to decimals computed by arithmetic and aggregates.
const COMPUTED_PRECISION: u8 = LogicalType::MAX_DECIMAL_PRECISION;

fn pos(span: sqlparser::tokenizer::Span) -> Option<Position> {
    Position::from_span(span)
}

fn unsupported(construct: impl Into<String>, span: sqlparser::tokenizer::Span) -> CoreError {
    CoreError::Unsupported {
        construct: construct.into(),
        position: pos(span),
    }
}

fn mismatch(message: String, span: sqlparser::tokenizer::Span) -> CoreError {
    CoreError::TypeMismatch {
        message,
        position: pos(span),
    }
}

/// Normalizes an identifier: unquoted names fold to lower case, quoted ones stay as written.
fn ident_name(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// An alias as named: `""` is refused, as PostgreSQL's lexer refuses any zero-length quoted
/// identifier (a column or table named nothing).
fn alias_name(ident: &ast::Ident) -> Result<String> {
    if ident.quote_style.is_some() && ident.value.is_empty() {
        return Err(CoreError::Syntax {
            message: "zero-length delimited identifier".to_owned(),
            position: pos(ident.span),
        });
    }
    Ok(ident_name(ident))
}

fn object_name(name: &ObjectName) -> Result<(String, sqlparser::tokenizer::Span)> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Ok((ident_name(ident), ident.span)),
        _ => Err(unsupported(
            format!("qualified name `{name}` (use the logical table name)"),
            name.span(),
        )),
    }
}

/// Where aggregates may appear in the expression being bound.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AggContext {
    /// Output list, HAVING, ORDER BY of a SELECT.
    Allowed,
    /// WHERE, ON, GROUP BY, VALUES, SET.
    Forbidden(&'static str),
    /// Inside an aggregate's argument.
    Nested,
}

struct ScopeTable<'c> {
    alias: String,
    table: &'c Table,
}

pub(crate) struct Binder<'c> {
    catalog: &'c Catalog,
    params_json: &'c [serde_json::Value],
    params: Vec<Option<Value>>,
    scope: Vec<ScopeTable<'c>>,
    /// The target table when binding ON CONFLICT DO UPDATE (enables `EXCLUDED.col`).
    excluded: Option<&'c Table>,
    agg: AggContext,
}

impl<'c> Binder<'c> {
    pub(crate) fn new(catalog: &'c Catalog, params_json: &'c [serde_json::Value]) -> Self {
        Self {
            catalog,
            params_json,
            params: vec![None; params_json.len()],
            scope: Vec::new(),
            excluded: None,
            agg: AggContext::Forbidden("WHERE"),
        }
    }

    pub(crate) fn bind_statement(
        mut self,
        statement: ast::Statement,
        sql: &str,
    ) -> Result<BoundQuery> {
        let statement = match statement {
            ast::Statement::Query(q) => Statement::Select(self.bind_query(*q)?),
            ast::Statement::Insert(i) => Statement::Insert(self.bind_insert(i)?),
            ast::Statement::Update(u) => Statement::Update(self.bind_update(u)?),
            ast::Statement::Delete(d) => Statement::Delete(self.bind_delete(d)?),
            other => {
                let words: Vec<String> = sql
                    .split_whitespace()
                    .take(2)
                    .map(|w| w.to_uppercase())
                    .collect();
                return Err(unsupported(
                    format!("{} statements", words.join(" ")),
                    other.span(),
                ));
            }
        };
        let params = self.finish_params()?;
        Ok(BoundQuery { statement, params })
    }

    fn finish_params(&mut self) -> Result<Vec<Value>> {
        let used = self.params.iter().filter(|p| p.is_some()).count();
        if let Some(last_used) = self.params.iter().rposition(Option::is_some) {
            if last_used + 1 < self.params.len() {
                return Err(CoreError::BadParams {
                    message: format!(
                        "{} parameters were given but the statement uses only up to ${}",
                        self.params.len(),
                        last_used + 1
                    ),
                    position: None,
                });
            }
        } else if !self.params.is_empty() {
            return Err(CoreError::BadParams {
                message: format!(
                    "{} parameters were given but the statement uses none",
                    self.params.len()
                ),
                position: None,
            });
        }
        let _ = used;
        Ok(self
            .params
            .iter()
            .zip(self.params_json)
            .map(|(v, json)| {
                v.clone()
                    .unwrap_or_else(|| Value::from_untyped_param(json).0)
            })
            .collect())
    }

    // ---------------------------------------------------------------- SELECT

    fn bind_query(&mut self, q: ast::Query) -> Result<Select> {
        if let Some(with) = &q.with {
            return Err(unsupported("WITH (common table expressions)", with.span()));
        }
        if let Some(fetch) = &q.fetch {
            return Err(unsupported(
                "FETCH",
                fetch.quantity.as_ref().map_or(q.span(), |e| e.span()),
            ));
        }
        if !q.locks.is_empty() {
            return Err(unsupported("FOR UPDATE/SHARE locks", q.span()));
        }
        let select = match *q.body {
            SetExpr::Select(s) => *s,
            SetExpr::SetOperation { op, left, .. } => {
                return Err(unsupported(format!("{op} of queries"), left.span()));
            }
            SetExpr::Query(inner) => {
                return Err(unsupported("parenthesized subquery", inner.span()));
            }
            other => return Err(unsupported("this query form", other.span())),
        };
        let mut out = self.bind_select_core(select)?;

        if let Some(order_by) = q.order_by {
            let exprs = match order_by.kind {
                OrderByKind::Expressions(e) => e,
                OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL", Span::empty())),
            };
            self.agg = if out.is_aggregate() {
                AggContext::Allowed
            } else {
                AggContext::Forbidden("ORDER BY")
            };
            for item in exprs {
                if item.with_fill.is_some() {
                    return Err(unsupported("WITH FILL", item.expr.span()));
                }
                let expr = self.bind_output_ref(&item.expr, &out.projection, true)?;
                let desc = matches!(item.options.sort, Some(ast::OrderBySort::Desc));
                let nulls_first = item.options.nulls_first.unwrap_or(desc);
                out.order_by.push(OrderItem {
                    expr,
                    desc,
                    nulls_first,
                });
            }
        }
        if let Some(limit) = q.limit_clause {
            match limit {
                LimitClause::LimitOffset {
                    limit,
                    offset,
                    limit_by,
                } => {
                    if let Some(e) = limit_by.first() {
                        return Err(unsupported("LIMIT BY", e.span()));
                    }
                    if let Some(l) = limit {
                        out.limit = self.bind_count(&l, "LIMIT")?;
                    }
                    if let Some(o) = offset {
                        out.offset = self.bind_count(&o.value, "OFFSET")?;
                    }
                }
                LimitClause::OffsetCommaLimit { offset, .. } => {
                    return Err(unsupported(
                        "LIMIT offset, count (use LIMIT ... OFFSET ...)",
                        offset.span(),
                    ));
                }
            }
        }
        if out.is_aggregate() {
            self.check_grouping(&out)?;
        }
        Ok(out)
    }

    /// LIMIT / OFFSET: a non-negative integer literal or parameter; `LIMIT NULL` / `ALL` is none.
    fn bind_count(&mut self, e: &ast::Expr, what: &str) -> Result<Option<u64>> {
        let saved = self.agg;
        self.agg = AggContext::Forbidden("LIMIT");
        let bound = self.bind_expr(e, Some(LogicalType::Int));
        self.agg = saved;
        let bound = bound?;
        let value = match bound.kind {
            ExprKind::Literal(v) => v,
            ExprKind::Param(i) => self.params.get(i).cloned().flatten().unwrap_or(Value::Null),
            _ => {
                return Err(unsupported(
                    format!("{what} with an expression (use a number or a parameter)"),
                    e.span(),
                ));
            }
        };
        match value {
            Value::Null => Ok(None),
            Value::Int(n) if n >= 0 => Ok(Some(n as u64)),
            other => Err(mismatch(
                format!(
                    "{what} must be a non-negative integer, got {}",
                    other.describe()
                ),
                e.span(),
            )),
        }
    }

    fn bind_select_core(&mut self, s: ast::Select) -> Result<Select> {
        let span = s.select_token.0.span;
        if s.top.is_some() {
            return Err(unsupported("TOP", span));
        }
        if s.into.is_some() {
            return Err(unsupported("SELECT INTO", span));
        }
        if !s.lateral_views.is_empty() || s.prewhere.is_some() || !s.connect_by.is_empty() {
            return Err(unsupported("this SELECT extension", span));
        }
        if !s.cluster_by.is_empty() || !s.distribute_by.is_empty() || !s.sort_by.is_empty() {
            return Err(unsupported("CLUSTER/DISTRIBUTE/SORT BY", span));
        }
        if !s.named_window.is_empty() {
            return Err(unsupported("WINDOW clauses", span));
        }
        if let Some(q) = &s.qualify {
            return Err(unsupported("QUALIFY", q.span()));
        }
        let distinct = match &s.distinct {
            None | Some(Distinct::All) => false,
            Some(Distinct::Distinct) => true,
            Some(Distinct::On(exprs)) => {
                return Err(unsupported(
                    "DISTINCT ON",
                    exprs.first().map_or(span, |e| e.span()),
                ));
            }
        };

        // FROM and joins.
        let mut from = Vec::new();
        let mut joins = Vec::new();
        match s.from.as_slice() {
            [] => return Err(unsupported("SELECT without FROM", span)),
            [_] => {}
            [_, second, ..] => {
                return Err(unsupported(
                    "comma-separated FROM (write JOIN ... ON)",
                    second.relation.span(),
                ));
            }
        }
        let Some(twj) = s.from.into_iter().next() else {
            return Err(unsupported("SELECT without FROM", span));
        };
        from.push(self.add_table(&twj.relation)?);
        for join in twj.joins {
            let (kind, constraint) = match join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                    return Err(unsupported(
                        "RIGHT JOIN (swap the tables and use LEFT JOIN)",
                        join.relation.span(),
                    ));
                }
                JoinOperator::FullOuter(_) => {
                    return Err(unsupported("FULL OUTER JOIN", join.relation.span()));
                }
                JoinOperator::CrossJoin(_) => {
                    return Err(unsupported("CROSS JOIN", join.relation.span()));
                }
                _ => return Err(unsupported("this kind of join", join.relation.span())),
            };
            from.push(self.add_table(&join.relation)?);
            let on = match constraint {
                JoinConstraint::On(e) => e,
                JoinConstraint::Using(_) => {
                    return Err(unsupported(
                        "JOIN ... USING (write ON)",
                        join.relation.span(),
                    ));
                }
                JoinConstraint::Natural => {
                    return Err(unsupported("NATURAL JOIN", join.relation.span()));
                }
                JoinConstraint::None => {
                    return Err(unsupported("JOIN without ON", join.relation.span()));
                }
            };
            self.agg = AggContext::Forbidden("JOIN ... ON");
            let on = self.bind_bool(&on, "JOIN ... ON")?;
            joins.push(Join { kind, on });
        }

        self.agg = AggContext::Forbidden("WHERE");
        let filter = s
            .selection
            .as_ref()
            .map(|e| self.bind_bool(e, "WHERE"))
            .transpose()?;

        // Output list.
        self.agg = AggContext::Allowed;
        let mut projection = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let expr = self.bind_expr(e, None)?;
                    projection.push(OutputColumn {
                        name: default_name(e, &expr),
                        expr,
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let bound = self.bind_expr(expr, None)?;
                    projection.push(OutputColumn {
                        name: alias_name(alias)?,
                        expr: bound,
                    });
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    return Err(unsupported(
                        "multiple aliases for one expression",
                        expr.span(),
                    ));
                }
                SelectItem::Wildcard(opts) => {
                    check_wildcard_options(opts)?;
                    for t in 0..self.scope.len() {
                        self.push_all_columns(t, &mut projection);
                    }
                }
                SelectItem::QualifiedWildcard(kind, opts) => {
                    check_wildcard_options(opts)?;
                    let ast::SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return Err(unsupported("wildcard over an expression", item.span()));
                    };
                    let (alias, alias_span) = object_name(name)?;
                    let t = self.scope_index(&alias, alias_span)?;
                    self.push_all_columns(t, &mut projection);
                }
            }
        }

        // GROUP BY (may name output aliases or ordinals) and HAVING.
        if projection.len() > MAX_OUTPUT_COLUMNS {
            return Err(CoreError::TooWide {
                what: "output columns",
                limit: MAX_OUTPUT_COLUMNS,
                position: pos(span),
            });
        }
        let mut group_by = Vec::new();
        match &s.group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(unsupported(
                        "GROUP BY modifiers (ROLLUP, CUBE, TOTALS)",
                        span,
                    ));
                }
                self.agg = AggContext::Forbidden("GROUP BY");
                for e in exprs {
                    group_by.push(self.bind_output_ref(e, &projection, false)?);
                }
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL", span)),
        }
        self.agg = AggContext::Allowed;
        let having = s
            .having
            .as_ref()
            .map(|e| self.bind_bool(e, "HAVING"))
            .transpose()?;

        Ok(Select {
            distinct,
            from,
            joins,
            filter,
            group_by,
            having,
            projection,
            order_by: Vec::new(),
            limit: None,
            offset: None,
        })
    }

    fn push_all_columns(&self, t: usize, projection: &mut Vec<OutputColumn>) {
        let table = self.scope[t].table;
        for (i, c) in table.columns.iter().enumerate() {
            projection.push(OutputColumn {
                name: c.name.clone(),
                expr: Expr {
                    kind: ExprKind::Column {
                        table: t,
                        column: i,
                    },
                    ty: c.ty,
                },
            });
        }
    }

    /// Binds an ORDER BY / GROUP BY item: an ordinal, an output alias, or an expression.
    fn bind_output_ref(
        &mut self,
        e: &ast::Expr,
        projection: &[OutputColumn],
        alias_first: bool,
    ) -> Result<Expr> {
        if let ast::Expr::Value(v) = e
            && let ast::Value::Number(n, _) = &v.value
        {
            let idx: usize = n.parse().unwrap_or(0);
            return match idx.checked_sub(1).and_then(|i| projection.get(i)) {
                Some(col) => Ok(col.expr.clone()),
                None => Err(CoreError::UnknownColumn {
                    name: format!("position {n}"),
                    candidates: vec![format!("1..{}", projection.len())],
                    position: pos(v.span),
                }),
            };
        }
        if let ast::Expr::Identifier(ident) = e {
            let name = ident_name(ident);
            let alias_match = projection
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.expr.clone());
            if alias_first {
                if let Some(expr) = alias_match {
                    return Ok(expr);
                }
            } else if let Some(expr) = alias_match {
                // GROUP BY prefers input columns, then output aliases (as PostgreSQL does).
                return match self.bind_expr(e, None) {
                    Ok(bound) => Ok(bound),
                    Err(CoreError::UnknownColumn { .. }) => Ok(expr),
                    Err(other) => Err(other),
                };
            }
        }
        self.bind_expr(e, None)
    }

    /// Every column used outside an aggregate must be a GROUP BY expression.
    fn check_grouping(&self, s: &Select) -> Result<()> {
        let mut exprs: Vec<&Expr> = s.projection.iter().map(|c| &c.expr).collect();
        exprs.extend(s.having.iter());
        exprs.extend(s.order_by.iter().map(|o| &o.expr));
        for e in exprs {
            self.check_grouped(e, &s.group_by)?;
        }
        Ok(())
    }

    #[recursive::recursive]
    fn check_grouped(&self, e: &Expr, group_by: &[Expr]) -> Result<()> {
        if group_by.contains(e) {
            return Ok(());
        }
        match &e.kind {
            ExprKind::Agg { .. } | ExprKind::Literal(_) | ExprKind::Param(_) => Ok(()),
            ExprKind::Column { table, column } => {
                let t = &self.scope[*table];
                Err(CoreError::BadGrouping {
                    name: format!("{}.{}", t.alias, t.table.columns[*column].name),
                    position: None,
                })
            }
            _ => {
                let mut children = Vec::new();
                collect_children(e, &mut children);
                for c in children {
                    self.check_grouped(c, group_by)?;
                }
                Ok(())
            }
        }
    }

    fn add_table(&mut self, factor: &TableFactor) -> Result<TableRef> {
        let TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            ..
        } = factor
        else {
            return Err(unsupported(
                "subqueries and table functions in FROM",
                factor.span(),
            ));
        };
        if args.is_some() || !with_hints.is_empty() {
            return Err(unsupported("table functions and hints", factor.span()));
        }
        let (table_name, span) = object_name(name)?;
        let table = self.lookup_table(&table_name, span)?;
        let alias_name = match alias {
            Some(a) if !a.columns.is_empty() => {
                return Err(unsupported("column aliases on a table", a.name.span));
            }
            Some(a) => alias_name(&a.name)?,
            None => table_name.clone(),
        };
        if self.scope.iter().any(|s| s.alias == alias_name) {
            return Err(CoreError::AmbiguousColumn {
                name: alias_name.clone(),
                tables: vec![alias_name],
                position: pos(factor.span()),
            });
        }
        self.scope.push(ScopeTable {
            alias: alias_name.clone(),
            table,
        });
        Ok(TableRef {
            table: table_name,
            alias: alias_name,
        })
    }

    fn lookup_table(&self, name: &str, span: sqlparser::tokenizer::Span) -> Result<&'c Table> {
        self.catalog
            .table(name)
            .ok_or_else(|| CoreError::UnknownTable {
                name: name.to_owned(),
                candidates: self.catalog.tables.keys().cloned().collect(),
                position: pos(span),
            })
    }

    fn scope_index(&self, alias: &str, span: sqlparser::tokenizer::Span) -> Result<usize> {
        self.scope
            .iter()
            .position(|s| s.alias == alias)
            .ok_or_else(|| CoreError::UnknownTable {
                name: alias.to_owned(),
                candidates: self.scope.iter().map(|s| s.alias.clone()).collect(),
                position: pos(span),
            })
    }

    // ---------------------------------------------------------------- writes

    fn single_target(&mut self, twj: &ast::TableWithJoins, what: &str) -> Result<TableRef> {
        if !twj.joins.is_empty() {
            return Err(unsupported(
                format!("{what} with joins"),
                twj.joins[0].relation.span(),
            ));
        }
        self.add_table(&twj.relation)
    }

    fn bind_insert(&mut self, i: ast::Insert) -> Result<Insert> {
        let span = i.insert_token.0.span;
        if i.returning.is_some() {
            return Err(unsupported("RETURNING", span));
        }
        if i.or.is_some() || i.ignore || i.replace_into || i.overwrite || !i.assignments.is_empty()
        {
            return Err(unsupported("this INSERT variant", span));
        }
        let TableObject::TableName(name) = &i.table else {
            return Err(unsupported("INSERT into a table function", span));
        };
        let (table_name, tspan) = object_name(name)?;
        let table = self.lookup_table(&table_name, tspan)?;
        self.scope.push(ScopeTable {
            alias: table_name.clone(),
            table,
        });

        let columns: Vec<usize> = if i.columns.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            let mut cols = Vec::new();
            for c in &i.columns {
                let (name, cspan) = object_name(c)?;
                let idx = table
                    .column_index(&name)
                    .ok_or_else(|| self.unknown_column(&name, cspan))?;
                if cols.contains(&idx) {
                    return Err(mismatch(format!("column `{name}` is given twice"), cspan));
                }
                cols.push(idx);
            }
            cols
        };
        let Some(source) = i.source else {
            return Err(unsupported("INSERT without VALUES", span));
        };
        let SetExpr::Values(values) = *source.body else {
            return Err(unsupported("INSERT ... SELECT", source.span()));
        };
        self.agg = AggContext::Forbidden("VALUES");
        let mut rows = Vec::new();
        for row in &values.rows {
            if row.content.len() != columns.len() {
                return Err(mismatch(
                    format!(
                        "VALUES row has {} values for {} columns",
                        row.content.len(),
                        columns.len()
                    ),
                    row.opening_token.0.span,
                ));
            }
            let mut out = Vec::new();
            for (e, &c) in row.content.iter().zip(&columns) {
                let ty = table.columns[c].ty;
                let bound = self.bind_expr(e, Some(ty))?;
                out.push(self.assignable(bound, ty, &table.columns[c].name, e.span())?);
            }
            rows.push(out);
        }

        let on_conflict = match i.on {
            None => None,
            Some(ast::OnInsert::DuplicateKeyUpdate(_)) => {
                return Err(unsupported(
                    "ON DUPLICATE KEY UPDATE (use ON CONFLICT)",
                    span,
                ));
            }
            Some(ast::OnInsert::OnConflict(oc)) => {
                match &oc.conflict_target {
                    None => {}
                    Some(ast::ConflictTarget::Columns(cols)) => {
                        let mut given: Vec<usize> = Vec::new();
                        for c in cols {
                            let name = ident_name(c);
                            given.push(
                                table
                                    .column_index(&name)
                                    .ok_or_else(|| self.unknown_column(&name, c.span))?,
                            );
                        }
                        given.sort_unstable();
                        let mut pk = table.primary_key.clone();
                        pk.sort_unstable();
                        if given != pk {
                            return Err(unsupported(
                                "ON CONFLICT on columns other than the primary key",
                                cols.first().map_or(span, |c| c.span),
                            ));
                        }
                    }
                    Some(ast::ConflictTarget::OnConstraint(n)) => {
                        return Err(unsupported("ON CONFLICT ON CONSTRAINT", n.span()));
                    }
                }
                match oc.action {
                    ast::OnConflictAction::DoNothing => Some(OnConflict::DoNothing),
                    ast::OnConflictAction::DoUpdate(du) => {
                        if let Some(sel) = &du.selection {
                            return Err(unsupported("WHERE in ON CONFLICT DO UPDATE", sel.span()));
                        }
                        if oc.conflict_target.is_none() {
                            return Err(unsupported(
                                "ON CONFLICT DO UPDATE without a conflict target",
                                span,
                            ));
                        }
                        self.excluded = Some(table);
                        self.agg = AggContext::Forbidden("ON CONFLICT");
                        let assignments = self.bind_assignments(&du.assignments, table);
                        self.excluded = None;
                        Some(OnConflict::DoUpdate(assignments?))
                    }
                }
            }
            Some(_) => return Err(unsupported("this ON clause", span)),
        };
        Ok(Insert {
            table: table_name,
            columns,
            rows,
            on_conflict,
        })
    }

    fn bind_assignments(
        &mut self,
        list: &[ast::Assignment],
        table: &Table,
    ) -> Result<Vec<Assignment>> {
        let mut out: Vec<Assignment> = Vec::new();
        for a in list {
            let ast::AssignmentTarget::ColumnName(name) = &a.target else {
                return Err(unsupported("tuple assignment", a.value.span()));
            };
            let (col_name, cspan) = match name.0.as_slice() {
                [ObjectNamePart::Identifier(_), ObjectNamePart::Identifier(c)]
                | [ObjectNamePart::Identifier(c)] => (ident_name(c), c.span),
                _ => {
                    return Err(unsupported(
                        format!("assignment target `{name}`"),
                        name.span(),
                    ));
                }
            };
            let column = table
                .column_index(&col_name)
                .ok_or_else(|| self.unknown_column(&col_name, cspan))?;
            if out.iter().any(|x| x.column == column) {
                return Err(mismatch(
                    format!("column `{col_name}` is assigned twice"),
                    cspan,
                ));
            }
            let ty = table.columns[column].ty;
            let value = self.bind_expr(&a.value, Some(ty))?;
            let value = self.assignable(value, ty, &col_name, a.value.span())?;
            out.push(Assignment { column, value });
        }
        Ok(out)
    }

    /// Checks that `value` can be stored in a column of type `ty`.
    fn assignable(
        &self,
        value: Expr,
        ty: LogicalType,
        column: &str,
        span: sqlparser::tokenizer::Span,
    ) -> Result<Expr> {
        if let ExprKind::Literal(v) = &value.kind {
            v.check_storable(ty)
                .map_err(|message| CoreError::Data { message })?;
        }
        if value.ty == ty || matches!(value.kind, ExprKind::Literal(Value::Null)) {
            return Ok(Expr { ty, ..value });
        }
        let numeric_ok = ty.is_numeric()
            && value.ty.is_numeric()
            && !(ty == LogicalType::Int && value.ty != LogicalType::Int);
        if numeric_ok
            || matches!(
                (value.ty, ty),
                (LogicalType::Decimal { .. }, LogicalType::Decimal { .. })
            )
        {
            return Ok(Expr { ty, ..value });
        }
        Err(mismatch(
            format!(
                "column `{column}` is {}, the value is {}",
                ty.name(),
                value.ty.name()
            ),
            span,
        ))
    }

    fn bind_update(&mut self, u: ast::Update) -> Result<Update> {
        let span = u.update_token.0.span;
        if u.from.is_some() {
            return Err(unsupported("UPDATE ... FROM", span));
        }
        if u.returning.is_some() {
            return Err(unsupported("RETURNING", span));
        }
        if u.limit.is_some() || !u.order_by.is_empty() || u.or.is_some() {
            return Err(unsupported("this UPDATE variant", span));
        }
        let target = self.single_target(&u.table, "UPDATE")?;
        let table = self.scope[0].table;
        self.agg = AggContext::Forbidden("SET");
        let assignments = self.bind_assignments(&u.assignments, table)?;
        self.agg = AggContext::Forbidden("WHERE");
        let filter = u
            .selection
            .as_ref()
            .map(|e| self.bind_bool(e, "WHERE"))
            .transpose()?;
        Ok(Update {
            table: target.table,
            assignments,
            filter,
        })
    }

    fn bind_delete(&mut self, d: ast::Delete) -> Result<Delete> {
        let span = d.delete_token.0.span;
        if d.returning.is_some() {
            return Err(unsupported("RETURNING", span));
        }
        if d.using.is_some() || !d.tables.is_empty() || d.limit.is_some() || !d.order_by.is_empty()
        {
            return Err(unsupported("this DELETE variant", span));
        }
        let tables = match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let [twj] = tables.as_slice() else {
            return Err(unsupported("DELETE from several tables", span));
        };
        let target = self.single_target(twj, "DELETE")?;
        self.agg = AggContext::Forbidden("WHERE");
        let filter = d
            .selection
            .as_ref()
            .map(|e| self.bind_bool(e, "WHERE"))
            .transpose()?;
        Ok(Delete {
            table: target.table,
            filter,
        })
    }

    // ---------------------------------------------------------------- expressions

    fn bind_bool(&mut self, e: &ast::Expr, clause: &str) -> Result<Expr> {
        let bound = self.bind_expr(e, Some(LogicalType::Bool))?;
        if bound.ty != LogicalType::Bool && !matches!(bound.kind, ExprKind::Literal(Value::Null)) {
            return Err(mismatch(
                format!(
                    "{clause} needs a boolean condition, got {}",
                    bound.ty.name()
                ),
                e.span(),
            ));
        }
        Ok(bound)
    }

    fn unknown_column(&self, name: &str, span: sqlparser::tokenizer::Span) -> CoreError {
        let multi = self.scope.len() > 1;
        let candidates = self
            .scope
            .iter()
            .flat_map(|s| {
                s.table.columns.iter().map(move |c| {
                    if multi {
                        format!("{}.{}", s.alias, c.name)
                    } else {
                        c.name.clone()
                    }
                })
            })
            .collect();
        CoreError::UnknownColumn {
            name: name.to_owned(),
            candidates,
            position: pos(span),
        }
    }

    fn column(&self, table: usize, name: &str, span: sqlparser::tokenizer::Span) -> Result<Expr> {
        let t = self.scope[table].table;
        let column = t.column_index(name).ok_or_else(|| {
            let mut err = self.unknown_column(name, span);
            if let CoreError::UnknownColumn { candidates, .. } = &mut err {
                *candidates = t.columns.iter().map(|c| c.name.clone()).collect();
            }
            err
        })?;
        Ok(Expr {
            kind: ExprKind::Column { table, column },
            ty: t.columns[column].ty,
        })
    }

    fn bind_identifier(&self, ident: &ast::Ident) -> Result<Expr> {
        let name = ident_name(ident);
        let hits: Vec<usize> = (0..self.scope.len())
            .filter(|&t| self.scope[t].table.column_index(&name).is_some())
            .collect();
        match hits.as_slice() {
            [t] => self.column(*t, &name, ident.span),
            [] => Err(self.unknown_column(&name, ident.span)),
            many => Err(CoreError::AmbiguousColumn {
                name,
                tables: many.iter().map(|&t| self.scope[t].alias.clone()).collect(),
                position: pos(ident.span),
            }),
        }
    }

    fn bind_compound(
        &self,
        parts: &[ast::Ident],
        span: sqlparser::tokenizer::Span,
    ) -> Result<Expr> {
        let [qualifier, col] = parts else {
            return Err(unsupported("names with more than two parts", span));
        };
        let qual = ident_name(qualifier);
        let name = ident_name(col);
        if let Some(table) = self.excluded
            && qual == "excluded"
        {
            let column = table
                .column_index(&name)
                .ok_or_else(|| self.unknown_column(&name, col.span))?;
            return Ok(Expr {
                kind: ExprKind::Excluded { column },
                ty: table.columns[column].ty,
            });
        }
        let t = self.scope_index(&qual, qualifier.span)?;
        self.column(t, &name, col.span)
    }

    fn bind_param(
        &mut self,
        text: &str,
        expected: Option<LogicalType>,
        span: sqlparser::tokenizer::Span,
    ) -> Result<Expr> {
        let index = text
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| unsupported(format!("placeholder `{text}` (use $1, $2, ...)"), span))?
            - 1;
        let Some(json) = self.params_json.get(index) else {
            return Err(CoreError::BadParams {
                message: format!(
                    "the statement uses ${} but {} parameter{} given",
                    index + 1,
                    self.params_json.len(),
                    if self.params_json.len() == 1 {
                        " was"
                    } else {
                        "s were"
                    }
                ),
                position: pos(span),
            });
        };
        let (value, ty) = match (&self.params[index], expected) {
            (Some(existing), None) => (existing.clone(), value_type(existing, expected)),
            (_, Some(ty)) => match Value::from_param(json, ty) {
                Ok(v) => (v, ty),
                Err(message) => {
                    return Err(CoreError::BadParams {
                        message: format!("parameter ${}: {message}", index + 1),
                        position: pos(span),
                    });
                }
            },
            (None, None) => {
                let (value, ty) = Value::from_untyped_param(json);
                value
                    .check_storable(ty)
                    .map_err(|message| CoreError::BadParams {
                        message: format!("parameter ${}: {message}", index + 1),
                        position: pos(span),
                    })?;
                (value, ty)
            }
        };
        if self.params[index].is_none() {
            self.params[index] = Some(value);
        }
        Ok(Expr {
            kind: ExprKind::Param(index),
            ty,
        })
    }

    fn bind_literal(&self, v: &ast::ValueWithSpan, expected: Option<LogicalType>) -> Result<Expr> {
        let span = v.span;
        let (value, ty) = match &v.value {
            ast::Value::Null => (Value::Null, expected.unwrap_or(LogicalType::Text)),
            ast::Value::Boolean(b) => (Value::Bool(*b), LogicalType::Bool),
            ast::Value::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => (Value::Int(i), LogicalType::Int),
                Err(_) => {
                    let d = Decimal::from_str(n)
                        .or_else(|_| Decimal::from_scientific(n))
                        .map_err(|_| mismatch(format!("number {n} is out of range"), span))?;
                    let scale =
                        u8::try_from(d.scale()).unwrap_or(LogicalType::MAX_DECIMAL_PRECISION);
                    (
                        Value::Decimal(d),
                        LogicalType::Decimal {
                            precision: COMPUTED_PRECISION,
                            scale,
                        },
                    )
                }
            },
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
                if s.contains('\0') {
                    return Err(CoreError::Data {
                        message: "text values cannot contain the NUL character (\\u0000)"
                            .to_owned(),
                    });
                }
                (Value::Text(s.clone()), LogicalType::Text)
            }
            ast::Value::Placeholder(p) => {
                return Err(unsupported(format!("placeholder `{p}`"), span));
            }
            other => return Err(unsupported(format!("literal {other}"), span)),
        };
        let Some(want) = expected else {
            return Ok(Expr {
                kind: ExprKind::Literal(value),
                ty,
            });
        };
        // Coerce literals to the type their context expects, as PostgreSQL does with
        // unknown-typed literals; numbers widen but never narrow.
        let coerced = match (&value, want) {
            (Value::Null, _) => Some((Value::Null, want)),
            (Value::Text(s), LogicalType::Int) => {
                s.trim().parse::<i64>().ok().map(|i| (Value::Int(i), want))
            }
            (Value::Text(s), LogicalType::Float) => s
                .trim()
                .parse::<f64>()
                .ok()
                .map(|f| (Value::Float(f), want)),
            (Value::Text(_), LogicalType::Text) => None,
            (Value::Text(_), _) => match value.clone().coerce(want) {
                Ok(v) => Some((v, want)),
                Err(message) => return Err(mismatch(message, span)),
            },
            (Value::Int(_), LogicalType::Float | LogicalType::Decimal { .. }) => {
                value.clone().coerce(want).ok().map(|v| (v, want))
            }
            (Value::Decimal(_), LogicalType::Float) => {
                value.clone().coerce(want).ok().map(|v| (v, want))
            }
            _ => None,
        };
        let (value, ty) = coerced.unwrap_or((value, ty));
        Ok(Expr {
            kind: ExprKind::Literal(value),
            ty,
        })
    }

    /// The value of a literal or of a parameter already converted.
    fn constant_value(&self, e: &Expr) -> Option<Value> {
        match &e.kind {
            ExprKind::Literal(v) => Some(v.clone()),
            ExprKind::Param(i) => self.params.get(*i).cloned().flatten(),
            _ => None,
        }
    }

    /// Binds `a op b` so that an untyped side (literal, parameter) takes the other side's type.
    fn bind_pair(&mut self, a: &ast::Expr, b: &ast::Expr) -> Result<(Expr, Expr)> {
        if is_untyped(a) && !is_untyped(b) {
            let rb = self.bind_expr(b, None)?;
            let la = self.bind_expr(a, Some(rb.ty))?;
            Ok((la, rb))
        } else {
            let la = self.bind_expr(a, None)?;
            let rb = self.bind_expr(b, Some(la.ty))?;
            Ok((la, rb))
        }
    }

    /// Refuses `a` compared with `b`, pointing at where `at` starts.
    fn check_comparable(&self, a: &Expr, b: &Expr, at: &ast::Expr) -> Result<()> {
        if comparable(a, b) {
            Ok(())
        } else {
            Err(mismatch(
                format!("cannot compare {} with {}", a.ty.name(), b.ty.name()),
                super::depth::start_span(at),
            ))
        }
    }

    #[recursive::recursive]
    fn bind_expr(&mut self, e: &ast::Expr, expected: Option<LogicalType>) -> Result<Expr> {
        use ast::Expr as E;
        let span = || super::depth::start_span(e);
        let boolean = |kind| Expr {
            kind,
            ty: LogicalType::Bool,
        };
        match e {
            E::Identifier(ident) => self.bind_identifier(ident),
            E::CompoundIdentifier(parts) => self.bind_compound(parts, span()),
            E::Nested(inner) => self.bind_expr(inner, expected),
            E::Value(v) => match &v.value {
                ast::Value::Placeholder(p) => self.bind_param(p, expected, v.span),
                _ => self.bind_literal(v, expected),
            },
            E::IsNull(inner) | E::IsNotNull(inner) => {
                let expr = self.bind_expr(inner, None)?;
                Ok(boolean(ExprKind::IsNull {
                    expr: Box::new(expr),
                    negated: matches!(e, E::IsNotNull(_)),
                }))
            }
            E::InList {
                expr,
                list,
                negated,
            } => {
                let subject = if list.iter().all(is_untyped) || !is_untyped(expr) {
                    self.bind_expr(expr, None)?
                } else {
                    let first = list
                        .iter()
                        .find(|x| !is_untyped(x))
                        .map(|x| self.bind_expr(x, None))
                        .transpose()?;
                    self.bind_expr(expr, first.map(|f| f.ty))?
                };
                let mut items = Vec::new();
                for item in list {
                    let b = self.bind_expr(item, Some(subject.ty))?;
                    self.check_comparable(&subject, &b, item)?;
                    items.push(b);
                }
                Ok(boolean(ExprKind::InList {
                    expr: Box::new(subject),
                    list: items,
                    negated: *negated,
                }))
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (subject, lo) = self.bind_pair(expr, low)?;
                let hi = self.bind_expr(high, Some(subject.ty))?;
                self.check_comparable(&subject, &lo, low)?;
                self.check_comparable(&subject, &hi, high)?;
                Ok(boolean(ExprKind::Between {
                    expr: Box::new(subject),
                    low: Box::new(lo),
                    high: Box::new(hi),
                    negated: *negated,
                }))
            }
            E::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(unsupported("LIKE ANY", span()));
                }
                if let Some(esc) = escape_char {
                    let is_backslash = matches!(&**esc, E::Value(v) if matches!(&v.value, ast::Value::SingleQuotedString(s) if s == "\\"));
                    if !is_backslash {
                        return Err(unsupported("LIKE ... ESCAPE other than '\\'", esc.span()));
                    }
                }
                let subject = self.bind_expr(expr, Some(LogicalType::Text))?;
                let pat = self.bind_expr(pattern, Some(LogicalType::Text))?;
                for (x, s) in [(&subject, &**expr), (&pat, &**pattern)] {
                    if x.ty != LogicalType::Text {
                        return Err(mismatch(
                            format!("LIKE needs text operands, got {}", x.ty.name()),
                            super::depth::start_span(s),
                        ));
                    }
                }
                // A constant pattern (literal or parameter) is checked here, so every store
                // answers a malformed one the same way.
                if let Some(Value::Text(p)) = self.constant_value(&pat) {
                    crate::exec::eval::check_like_pattern(&p)?;
                }
                Ok(boolean(ExprKind::Like {
                    expr: Box::new(subject),
                    pattern: Box::new(pat),
                    negated: *negated,
                }))
            }
            E::ILike { .. } => Err(unsupported("ILIKE (use LOWER(x) LIKE ...)", span())),
            E::SimilarTo { .. } | E::RLike { .. } => {
                Err(unsupported("regular expression matching", span()))
            }
            E::UnaryOp { op, expr } => {
                let inner = self.bind_expr(expr, expected)?;
                match op {
                    UnaryOperator::Not => {
                        if inner.ty != LogicalType::Bool {
                            return Err(mismatch(
                                format!("NOT needs a boolean, got {}", inner.ty.name()),
                                span(),
                            ));
                        }
                        Ok(boolean(ExprKind::Unary {
                            op: UnaryOp::Not,
                            expr: Box::new(inner),
                        }))
                    }
                    UnaryOperator::Minus => {
                        if !inner.ty.is_numeric() {
                            return Err(mismatch(
                                format!("unary minus needs a number, got {}", inner.ty.name()),
                                span(),
                            ));
                        }
                        if let ExprKind::Literal(v) = &inner.kind {
                            let negated = match v {
                                Value::Int(i) => Some(Value::Int(-i)),
                                Value::Float(f) => Some(Value::Float(-f)),
                                Value::Decimal(d) => Some(Value::Decimal(-*d)),
                                _ => None,
                            };
                            if let Some(v) = negated {
                                return Ok(Expr {
                                    kind: ExprKind::Literal(v),
                                    ty: inner.ty,
                                });
                            }
                        }
                        let ty = inner.ty;
                        Ok(Expr {
                            kind: ExprKind::Unary {
                                op: UnaryOp::Neg,
                                expr: Box::new(inner),
                            },
                            ty,
                        })
                    }
                    UnaryOperator::Plus if inner.ty.is_numeric() => Ok(inner),
                    other => Err(unsupported(format!("unary operator {other}"), span())),
                }
            }
            E::BinaryOp { left, op, right } => self.bind_binary(left, op, right, expected, e),
            E::Function(f) => self.bind_function(f, e),
            E::Cast { .. } => Err(unsupported("CAST", span())),
            E::Case { .. } => Err(unsupported("CASE", span())),
            E::Subquery(_) | E::Exists { .. } | E::InSubquery { .. } => {
                Err(unsupported("subqueries", span()))
            }
            E::IsTrue(_)
            | E::IsFalse(_)
            | E::IsNotTrue(_)
            | E::IsNotFalse(_)
            | E::IsUnknown(_)
            | E::IsNotUnknown(_) => Err(unsupported("IS TRUE/FALSE/UNKNOWN", span())),
            E::IsDistinctFrom(..) | E::IsNotDistinctFrom(..) => {
                Err(unsupported("IS DISTINCT FROM", span()))
            }
            E::TypedString(_) => Err(unsupported(
                "typed literals (write a plain string next to a typed column)",
                span(),
            )),
            E::Interval(_) => Err(unsupported("INTERVAL", span())),
            E::Wildcard(_) | E::QualifiedWildcard(..) => {
                Err(unsupported("wildcard in an expression", span()))
            }
            _ => Err(unsupported(format!("expression `{e}`"), span())),
        }
    }

    fn bind_binary(
        &mut self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
        expected: Option<LogicalType>,
        whole: &ast::Expr,
    ) -> Result<Expr> {
        use BinaryOperator as B;
        let span = || super::depth::start_span(whole);
        let op = match op {
            B::Eq => BinaryOp::Eq,
            B::NotEq => BinaryOp::NotEq,
            B::Lt => BinaryOp::Lt,
            B::LtEq => BinaryOp::LtEq,
            B::Gt => BinaryOp::Gt,
            B::GtEq => BinaryOp::GtEq,
            B::And => BinaryOp::And,
            B::Or => BinaryOp::Or,
            B::Plus => BinaryOp::Plus,
            B::Minus => BinaryOp::Minus,
            B::Multiply => BinaryOp::Multiply,
            B::Divide => BinaryOp::Divide,
            B::Modulo => BinaryOp::Modulo,
            B::StringConcat => BinaryOp::Concat,
            other => return Err(unsupported(format!("operator {other}"), span())),
        };
        let mk = |l: Expr, r: Expr, ty| Expr {
            kind: ExprKind::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            },
            ty,
        };
        match op {
            BinaryOp::And | BinaryOp::Or => {
                // Long chains arrive as balanced trees (`depth::check`).
                let l = self.bind_expr(left, Some(LogicalType::Bool))?;
                let r = self.bind_expr(right, Some(LogicalType::Bool))?;
                for (x, s) in [(&l, left), (&r, right)] {
                    if x.ty != LogicalType::Bool {
                        return Err(mismatch(
                            format!("AND/OR need booleans, got {}", x.ty.name()),
                            super::depth::start_span(s),
                        ));
                    }
                }
                Ok(mk(l, r, LogicalType::Bool))
            }
            _ if op.is_comparison() => {
                let (l, r) = self.bind_pair(left, right)?;
                self.check_comparable(&l, &r, whole)?;
                Ok(mk(l, r, LogicalType::Bool))
            }
            BinaryOp::Concat => {
                let l = self.bind_expr(left, Some(LogicalType::Text))?;
                let r = self.bind_expr(right, Some(LogicalType::Text))?;
                for (x, s) in [(&l, left), (&r, right)] {
                    if x.ty != LogicalType::Text {
                        return Err(mismatch(
                            format!("|| needs text operands, got {}", x.ty.name()),
                            super::depth::start_span(s),
                        ));
                    }
                }
                Ok(mk(l, r, LogicalType::Text))
            }
            _ => {
                let hint = expected.filter(|t| t.is_numeric());
                let (l, r) = if is_untyped(left) && is_untyped(right) {
                    (self.bind_expr(left, hint)?, self.bind_expr(right, hint)?)
                } else {
                    self.bind_pair(left, right)?
                };
                for (x, s) in [(&l, left), (&r, right)] {
                    if !x.ty.is_numeric() {
                        return Err(mismatch(
                            format!("arithmetic needs numbers, got {}", x.ty.name()),
                            super::depth::start_span(s),
                        ));
                    }
                }
                // A constant zero divisor fails on every store alike (SQLite and MySQL would
                // answer NULL): PostgreSQL's `division by zero`.
                if matches!(op, BinaryOp::Divide | BinaryOp::Modulo)
                    && let Some(divisor) = self.constant_value(&r)
                    && divisor.is_zero_number()
                {
                    return Err(CoreError::Data {
                        message: "division by zero".to_owned(),
                    });
                }
                let ty = arithmetic_type(op, l.ty, r.ty).ok_or_else(|| {
                    mismatch(
                        format!("% needs integers, got {} and {}", l.ty.name(), r.ty.name()),
                        span(),
                    )
                })?;
                Ok(mk(l, r, ty))
            }
        }
    }

    fn bind_function(&mut self, f: &ast::Function, whole: &ast::Expr) -> Result<Expr> {
        let span = || super::depth::start_span(whole);
        let (name, _) = object_name(&f.name)?;
        if f.over.is_some() {
            return Err(unsupported("window functions (OVER)", span()));
        }
        if f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
            return Err(unsupported(
                "FILTER / WITHIN GROUP / NULL treatment",
                span(),
            ));
        }
        let FunctionArguments::List(list) = &f.args else {
            return Err(unsupported(
                format!("function `{name}` without an argument list"),
                span(),
            ));
        };
        if !list.clauses.is_empty() {
            return Err(unsupported(
                "ORDER BY / LIMIT inside a function call",
                span(),
            ));
        }
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let agg = match name.as_str() {
            "count" => Some(AggFunc::Count),
            "sum" => Some(AggFunc::Sum),
            "avg" => Some(AggFunc::Avg),
            "min" => Some(AggFunc::Min),
            "max" => Some(AggFunc::Max),
            _ => None,
        };
        if let Some(func) = agg {
            match self.agg {
                AggContext::Allowed => {}
                AggContext::Forbidden(clause) => {
                    return Err(unsupported(
                        format!("aggregate functions in {clause}"),
                        span(),
                    ));
                }
                AggContext::Nested => {
                    return Err(unsupported("nested aggregate functions", span()));
                }
            }
            let arg = match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
                    if func == AggFunc::Count && !distinct =>
                {
                    None
                }
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => {
                    self.agg = AggContext::Nested;
                    let bound = self.bind_expr(e, None);
                    self.agg = AggContext::Allowed;
                    Some(bound?)
                }
                _ => {
                    return Err(unsupported(
                        format!("{}() with these arguments", name.to_uppercase()),
                        span(),
                    ));
                }
            };
            let ty = match (func, &arg) {
                (AggFunc::Count, _) => LogicalType::Int,
                (_, None) => LogicalType::Int,
                (AggFunc::Min | AggFunc::Max, Some(a)) => {
                    if a.ty == LogicalType::Json {
                        return Err(mismatch(
                            "MIN/MAX cannot order json values".to_owned(),
                            span(),
                        ));
                    }
                    a.ty
                }
                (AggFunc::Sum, Some(a)) => match a.ty {
                    LogicalType::Decimal { scale, .. } => LogicalType::Decimal {
                        precision: COMPUTED_PRECISION,
                        scale,
                    },
                    t if t.is_numeric() => t,
                    t => {
                        return Err(mismatch(
                            format!("SUM needs a number, got {}", t.name()),
                            span(),
                        ));
                    }
                },
                (AggFunc::Avg, Some(a)) => match a.ty {
                    LogicalType::Decimal { scale, .. } => LogicalType::Decimal {
                        precision: COMPUTED_PRECISION,
                        scale: (scale + 4).min(COMPUTED_PRECISION),
                    },
                    t if t.is_numeric() => LogicalType::Float,
                    t => {
                        return Err(mismatch(
                            format!("AVG needs a number, got {}", t.name()),
                            span(),
                        ));
                    }
                },
            };
            return Ok(Expr {
                kind: ExprKind::Agg {
                    func,
                    arg: arg.map(Box::new),
                    distinct,
                },
                ty,
            });
        }
        if distinct {
            return Err(unsupported(
                format!("DISTINCT in {}()", name.to_uppercase()),
                span(),
            ));
        }
        let func = match name.as_str() {
            "lower" => ScalarFunc::Lower,
            "upper" => ScalarFunc::Upper,
            "length" | "char_length" => ScalarFunc::Length,
            "abs" => ScalarFunc::Abs,
            "coalesce" => ScalarFunc::Coalesce,
            other => return Err(unsupported(format!("function `{other}`"), span())),
        };
        let mut args = Vec::new();
        for a in &list.args {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = a else {
                return Err(unsupported("named or wildcard function arguments", span()));
            };
            let hint = match func {
                ScalarFunc::Lower | ScalarFunc::Upper | ScalarFunc::Length => {
                    Some(LogicalType::Text)
                }
                ScalarFunc::Coalesce => args.first().map(|x: &Expr| x.ty),
                ScalarFunc::Abs => None,
            };
            args.push(self.bind_expr(e, hint)?);
        }
        let arity_ok = match func {
            ScalarFunc::Coalesce => !args.is_empty(),
            _ => args.len() == 1,
        };
        if !arity_ok {
            return Err(mismatch(
                format!("{}() got {} arguments", name.to_uppercase(), args.len()),
                span(),
            ));
        }
        let ty = match func {
            ScalarFunc::Lower | ScalarFunc::Upper | ScalarFunc::Length => {
                if args[0].ty != LogicalType::Text {
                    return Err(mismatch(
                        format!(
                            "{}() needs text, got {}",
                            name.to_uppercase(),
                            args[0].ty.name()
                        ),
                        span(),
                    ));
                }
                if func == ScalarFunc::Length {
                    LogicalType::Int
                } else {
                    LogicalType::Text
                }
            }
            ScalarFunc::Abs => {
                if !args[0].ty.is_numeric() {
                    return Err(mismatch(
                        format!("ABS() needs a number, got {}", args[0].ty.name()),
                        span(),
                    ));
                }
                args[0].ty
            }
            ScalarFunc::Coalesce => {
                let ty = args[0].ty;
                if let Some(bad) = args.iter().find(|a| !comparable(&args[0], a)) {
                    return Err(mismatch(
                        format!(
                            "COALESCE arguments differ: {} and {}",
                            ty.name(),
                            bad.ty.name()
                        ),
                        span(),
                    ));
                }
                ty
            }
        };
        Ok(Expr {
            kind: ExprKind::Func { func, args },
            ty,
        })
    }
}

fn check_wildcard_options(opts: &ast::WildcardAdditionalOptions) -> Result<()> {
    let extended = opts.opt_ilike.is_some()
        || opts.opt_exclude.is_some()
        || opts.opt_except.is_some()
        || opts.opt_replace.is_some()
        || opts.opt_rename.is_some()
        || opts.opt_alias.is_some();
    if extended {
        return Err(unsupported(
            "wildcard modifiers (EXCLUDE, EXCEPT, REPLACE, ...)",
            opts.wildcard_token.0.span,
        ));
    }
    Ok(())
}

fn value_type(v: &Value, fallback: Option<LogicalType>) -> LogicalType {
    match v {
        Value::Int(_) => LogicalType::Int,
        Value::Float(_) => LogicalType::Float,
        Value::Decimal(d) => LogicalType::Decimal {
            precision: COMPUTED_PRECISION,
            scale: u8::try_from(d.scale()).unwrap_or(0),
        },
        Value::Text(_) => LogicalType::Text,
        Value::Bool(_) => LogicalType::Bool,
        Value::Timestamp(_) => LogicalType::Timestamp,
        Value::Date(_) => LogicalType::Date,
        Value::Json(_) => LogicalType::Json,
        Value::Null => fallback.unwrap_or(LogicalType::Text),
    }
}

/// Literals and parameters take their type from context.
fn is_untyped(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Value(_) => true,
        ast::Expr::Nested(inner) => is_untyped(inner),
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => is_untyped(expr),
        _ => false,
    }
}

fn comparable(a: &Expr, b: &Expr) -> bool {
    let null = |e: &Expr| matches!(e.kind, ExprKind::Literal(Value::Null));
    if null(a) || null(b) {
        return true;
    }
    if a.ty == LogicalType::Json || b.ty == LogicalType::Json {
        return false;
    }
    (a.ty.is_numeric() && b.ty.is_numeric()) || a.ty.name() == b.ty.name()
}

fn arithmetic_type(op: BinaryOp, l: LogicalType, r: LogicalType) -> Option<LogicalType> {
    use LogicalType as T;
    let scale = |t: T| match t {
        T::Decimal { scale, .. } => scale,
        _ => 0,
    };
    let decimal = |scale: u8| T::Decimal {
        precision: COMPUTED_PRECISION,
        scale: scale.min(COMPUTED_PRECISION),
    };
    Some(match (l, r) {
        (T::Int, T::Int) => T::Int,
        _ if op == BinaryOp::Modulo => return None,
        (T::Float, _) | (_, T::Float) => T::Float,
        _ => match op {
            BinaryOp::Multiply => decimal(scale(l) + scale(r)),
            BinaryOp::Divide => decimal(scale(l) + 4),
            _ => decimal(scale(l).max(scale(r))),
        },
    })
}

fn collect_children<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match &e.kind {
        ExprKind::Column { .. }
        | ExprKind::Excluded { .. }
        | ExprKind::Literal(_)
        | ExprKind::Param(_)
        | ExprKind::Agg { .. } => {}
        ExprKind::Unary { expr, .. } | ExprKind::IsNull { expr, .. } => out.push(expr),
        ExprKind::Binary { left, right, .. } => out.extend([&**left, &**right]),
        ExprKind::InList { expr, list, .. } => {
            out.push(expr);
            out.extend(list.iter());
        }
        ExprKind::Between {
            expr, low, high, ..
        } => out.extend([&**expr, &**low, &**high]),
        ExprKind::Like { expr, pattern, .. } => out.extend([&**expr, &**pattern]),
        ExprKind::Func { args, .. } => out.extend(args.iter()),
    }
}

/// The output name PostgreSQL would give an unaliased expression.
fn default_name(ast_expr: &ast::Expr, bound: &Expr) -> String {
    match ast_expr {
        ast::Expr::Identifier(i) => ident_name(i),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_default(),
        ast::Expr::Nested(inner) => default_name(inner, bound),
        _ => match &bound.kind {
            ExprKind::Agg { func, .. } => func.as_str().to_owned(),
            ExprKind::Func { func, .. } => func.as_str().to_owned(),
            _ => "?column?".to_owned(),
        },
    }
}
