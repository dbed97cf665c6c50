//! The names PostgreSQL gives result columns (its `FigureColname` rules): a column keeps its
//! name, a function call takes the function's, `CASE` is `case`, a cast takes its operand's
//! name (or the type's), anything else is `?column?`. DataFusion names columns after the whole
//! expression (`count(*)`), which no PostgreSQL client expects.

use datafusion::sql::sqlparser::ast::{
    self, DataType, Expr, Ident, ObjectName, SelectItem, SetExpr, TrimWhereField,
};

/// For each item of the statement's SELECT list (the first SELECT of a set operation), the
/// name PostgreSQL answers; `None` for a wildcard, whose columns keep their own names.
pub(crate) fn select_names(query: &ast::Query) -> Vec<Option<String>> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => {
                return select
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(e) => Some(figure(e, 0)),
                        SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
                        _ => None,
                    })
                    .collect();
            }
            SetExpr::Query(q) => body = q.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return Vec::new(),
        }
    }
}

/// The output names aligned with `fields` (DataFusion's names): items before the first wildcard
/// from the left, items after the last from the right; wildcard columns keep their names.
pub(crate) fn align(items: &[Option<String>], fields: Vec<String>) -> Vec<String> {
    let mut out = fields;
    let first_wild = items
        .iter()
        .position(Option::is_none)
        .unwrap_or(items.len());
    for (i, name) in items.iter().take(first_wild).enumerate() {
        if let (Some(name), Some(slot)) = (name, out.get_mut(i)) {
            slot.clone_from(name);
        }
    }
    if first_wild < items.len() {
        let tail: Vec<&Option<String>> = items.iter().rev().take_while(|n| n.is_some()).collect();
        let len = out.len();
        for (k, name) in tail.into_iter().enumerate() {
            if let (Some(name), Some(i)) = (name, len.checked_sub(k + 1))
                && i >= first_wild
            {
                out[i].clone_from(name);
            }
        }
    }
    out
}

/// Gives every unaliased computed item of the statement's SELECT list (the first SELECT of a
/// set operation) a distinct alias.
pub(crate) fn alias_computed_columns(statement: &mut ast::Statement) {
    let ast::Statement::Query(query) = statement else {
        return;
    };
    let mut body = query.body.as_mut();
    loop {
        match body {
            SetExpr::Select(select) => {
                for (i, item) in select.projection.iter_mut().enumerate() {
                    if let SelectItem::UnnamedExpr(e) = item
                        && !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                    {
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::with_quote('"', format!("__switchyard_column_{i}")),
                        };
                    }
                }
                return;
            }
            SetExpr::Query(q) => body = q.body.as_mut(),
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            _ => return,
        }
    }
}

const UNNAMED: &str = "?column?";

fn figure(e: &Expr, depth: usize) -> String {
    if depth > 32 {
        return UNNAMED.to_owned();
    }
    match e {
        Expr::Identifier(i) => ident(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        Expr::Nested(inner) => figure(inner, depth + 1),
        Expr::Function(f) => object_last(&f.name),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = figure(expr, depth + 1);
            if inner == UNNAMED {
                type_name(data_type)
            } else {
                inner
            }
        }
        Expr::TypedString(ts) => type_name(&ts.data_type),
        Expr::Case { .. } => "case".to_owned(),
        Expr::Extract { .. } => "extract".to_owned(),
        Expr::Substring { .. } => "substring".to_owned(),
        Expr::Position { .. } => "position".to_owned(),
        Expr::Overlay { .. } => "overlay".to_owned(),
        Expr::Ceil { .. } => "ceil".to_owned(),
        Expr::Floor { .. } => "floor".to_owned(),
        Expr::Trim { trim_where, .. } => match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }
        .to_owned(),
        Expr::Exists { .. } => "exists".to_owned(),
        Expr::Array(_) => "array".to_owned(),
        Expr::Interval(_) => "interval".to_owned(),
        Expr::Subquery(q) => select_names(q)
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_else(|| UNNAMED.to_owned()),
        _ => UNNAMED.to_owned(),
    }
}

/// An identifier as PostgreSQL folds it: unquoted ones in lower case.
fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn object_last(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_else(|| UNNAMED.to_owned())
}

/// PostgreSQL's internal name of a type, as it names a cast of a literal.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4".to_owned(),
        DataType::BigInt(_) | DataType::Int8(_) => "int8".to_owned(),
        DataType::SmallInt(_) | DataType::Int2(_) => "int2".to_owned(),
        DataType::Real | DataType::Float4 => "float4".to_owned(),
        DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) => "float8".to_owned(),
        DataType::Numeric(_) | DataType::Decimal(_) => "numeric".to_owned(),
        DataType::Boolean | DataType::Bool => "bool".to_owned(),
        DataType::Timestamp(_, ast::TimezoneInfo::Tz | ast::TimezoneInfo::WithTimeZone) => {
            "timestamptz".to_owned()
        }
        DataType::Timestamp(..) => "timestamp".to_owned(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Vec<Option<String>> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        let ast::Statement::Query(q) = stmt else {
            panic!("not a query")
        };
        select_names(&q)
    }

    #[test]
    fn names_follow_postgresql() {
        let got = names(
            "SELECT c.Name, COUNT(*), CASE WHEN a > 1 THEN 1 END, amount::text, 1::int, \
             DATE '2024-01-01', EXTRACT(YEAR FROM t), TRIM(x), a + 1, x AS \"Big\", y AS Small, \
             (SELECT max(v) FROM w), now()",
        );
        let want = [
            "name", "count", "case", "amount", "int4", "date", "extract", "btrim", "?column?",
            "Big", "small", "max", "now",
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|s| Some((*s).to_owned()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn wildcards_keep_the_names_of_their_columns() {
        let items = names("SELECT COUNT(*) AS n, *, a + 1 FROM t");
        let fields = vec!["n0".into(), "x".into(), "y".into(), "a + 1".into()];
        assert_eq!(align(&items, fields), vec!["n", "x", "y", "?column?"]);
    }
}
