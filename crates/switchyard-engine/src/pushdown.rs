//! Filters DataFusion pushes into a table scan, as the SQL the router's fast path runs against
//! one logical table: column compared with literals (`=`, `<>`, `<`, `<=`, `>`, `>=`, `IN`,
//! `BETWEEN`, `LIKE`, `IS [NOT] NULL`) combined with `AND` / `OR` / `NOT`. Literals travel as
//! `$n` parameters (JSON), never spliced into the text. Anything else is not pushed; DataFusion
//! evaluates every filter again above the scan anyway (`Inexact`), so a pushed filter only has
//! to keep every row the filter keeps.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};
use rust_decimal::Decimal;

/// A filter rendered for the fast path: SQL text with `$n` placeholders numbered from the
/// `params` it is appended to.
pub(crate) fn render(
    expr: &Expr,
    schema: &Schema,
    params: &mut Vec<serde_json::Value>,
) -> Option<String> {
    // Render into scratch parameters so a filter that fails halfway leaves nothing behind.
    let mut scratch = params.clone();
    let sql = render_inner(expr, schema, &mut scratch, 0)?;
    *params = scratch;
    Some(sql)
}

/// Whether `expr` can be pushed.
pub(crate) fn pushable(expr: &Expr, schema: &Schema) -> bool {
    render(expr, schema, &mut Vec::new()).is_some()
}

/// How deep a pushed filter may nest; deeper ones stay in the router.
const MAX_DEPTH: usize = 64;

fn render_inner(
    expr: &Expr,
    schema: &Schema,
    params: &mut Vec<serde_json::Value>,
    depth: usize,
) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let l = render_inner(left, schema, params, depth + 1)?;
                let r = render_inner(right, schema, params, depth + 1)?;
                let word = if *op == Operator::And { "AND" } else { "OR" };
                Some(format!("({l} {word} {r})"))
            }
            _ => {
                let sql_op = comparison(*op)?;
                if let (Some(col), Some(lit)) = (column(left, schema), literal(right)) {
                    let p = param(&col, lit, params)?;
                    Some(format!("{} {sql_op} {p}", col.quoted))
                } else if let (Some(lit), Some(col)) = (literal(left), column(right, schema)) {
                    let p = param(&col, lit, params)?;
                    Some(format!("{p} {sql_op} {}", col.quoted))
                } else {
                    None
                }
            }
        },
        Expr::Not(inner) => {
            let inner = render_inner(inner, schema, params, depth + 1)?;
            Some(format!("(NOT {inner})"))
        }
        Expr::IsNull(inner) => Some(format!("{} IS NULL", column(inner, schema)?.quoted)),
        Expr::IsNotNull(inner) => Some(format!("{} IS NOT NULL", column(inner, schema)?.quoted)),
        Expr::InList(list) if !list.list.is_empty() => {
            let col = column(&list.expr, schema)?;
            let mut items = Vec::with_capacity(list.list.len());
            for item in &list.list {
                items.push(param(&col, literal(item)?, params)?);
            }
            let not = if list.negated { "NOT " } else { "" };
            Some(format!("{} {not}IN ({})", col.quoted, items.join(", ")))
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let col = column(expr, schema)?;
            let low = param(&col, literal(low)?, params)?;
            let high = param(&col, literal(high)?, params)?;
            let not = if *negated { "NOT " } else { "" };
            Some(format!("{} {not}BETWEEN {low} AND {high}", col.quoted))
        }
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char: None,
            case_insensitive: false,
        }) => {
            let col = column(expr, schema)?;
            if col.ty != DataType::Utf8 {
                return None;
            }
            let p = param(&col, literal(pattern)?, params)?;
            let not = if *negated { "NOT " } else { "" };
            Some(format!("{} {not}LIKE {p}", col.quoted))
        }
        _ => None,
    }
}

fn comparison(op: Operator) -> Option<&'static str> {
    Some(match op {
        Operator::Eq => "=",
        Operator::NotEq => "<>",
        Operator::Lt => "<",
        Operator::LtEq => "<=",
        Operator::Gt => ">",
        Operator::GtEq => ">=",
        _ => return None,
    })
}

struct Col {
    quoted: String,
    ty: DataType,
}

fn column(expr: &Expr, schema: &Schema) -> Option<Col> {
    let Expr::Column(c) = expr else { return None };
    let field = schema.field_with_name(&c.name).ok()?;
    Some(Col {
        quoted: quote_ident(&c.name),
        ty: field.data_type().clone(),
    })
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// The literal as a JSON parameter for a column of type `col.ty`, when the fast path reads it
/// as exactly the same value.
fn param(col: &Col, v: &ScalarValue, params: &mut Vec<serde_json::Value>) -> Option<String> {
    if v.is_null() {
        return None;
    }
    let json = match (&col.ty, v) {
        (DataType::Int64, ScalarValue::Int64(Some(i))) => serde_json::Value::from(*i),
        (DataType::Int64, ScalarValue::Int32(Some(i))) => serde_json::Value::from(*i),
        (DataType::Float64, ScalarValue::Float64(Some(f))) if f.is_finite() => {
            serde_json::Value::from(*f)
        }
        (DataType::Decimal128(_, col_scale), ScalarValue::Decimal128(Some(m), _, s))
            if s <= col_scale && *s >= 0 =>
        {
            let d = Decimal::try_from_i128_with_scale(*m, u32::try_from(*s).ok()?).ok()?;
            serde_json::Value::String(d.to_string())
        }
        (DataType::Decimal128(..), ScalarValue::Int64(Some(i))) => {
            serde_json::Value::String(i.to_string())
        }
        (DataType::Utf8, ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)))
        | (DataType::Utf8, ScalarValue::Utf8View(Some(s))) => {
            if s.contains('\0') {
                return None;
            }
            serde_json::Value::String(s.clone())
        }
        (DataType::Boolean, ScalarValue::Boolean(Some(b))) => serde_json::Value::Bool(*b),
        (DataType::Timestamp(..), ScalarValue::TimestampMicrosecond(Some(us), _)) => {
            timestamp_param(*us)?
        }
        (DataType::Timestamp(..), ScalarValue::TimestampNanosecond(Some(ns), _))
            if ns.rem_euclid(1_000) == 0 =>
        {
            timestamp_param(ns.div_euclid(1_000))?
        }
        (DataType::Date32, ScalarValue::Date32(Some(days))) => serde_json::Value::String(
            chrono::NaiveDate::from_epoch_days(*days)?
                .format("%Y-%m-%d")
                .to_string(),
        ),
        _ => return None,
    };
    params.push(json);
    Some(format!("${}", params.len()))
}

fn timestamp_param(micros: i64) -> Option<serde_json::Value> {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)?;
    Some(serde_json::Value::String(
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ))
}

/// `name` as a PostgreSQL-dialect quoted identifier (the fast path's dialect).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::logical_expr::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
        ])
    }

    #[test]
    fn comparisons_become_parameterized_sql() {
        let mut params = Vec::new();
        let e = col("id").gt(lit(5i64)).and(col("name").eq(lit("a'b")));
        let sql = render(&e, &schema(), &mut params).expect("pushable");
        assert_eq!(sql, "(\"id\" > $1 AND \"name\" = $2)");
        assert_eq!(params, vec![serde_json::json!(5), serde_json::json!("a'b")]);
    }

    #[test]
    fn a_decimal_literal_finer_than_the_column_is_not_pushed() {
        // amount > 100.005 must not become amount > 100.01 (the fast path rounds to scale 2).
        let e = col("amount").gt(lit(ScalarValue::Decimal128(Some(100_005), 12, 3)));
        assert!(!pushable(&e, &schema()));
        let e = col("amount").gt(lit(ScalarValue::Decimal128(Some(10_050), 12, 2)));
        let mut params = Vec::new();
        assert_eq!(
            render(&e, &schema(), &mut params).as_deref(),
            Some("\"amount\" > $1")
        );
        assert_eq!(params, vec![serde_json::json!("100.50")]);
    }

    #[test]
    fn a_filter_that_fails_halfway_leaves_no_parameters() {
        let mut params = vec![serde_json::json!(1)];
        let e = col("id").eq(lit(1i64)).and(col("name").ilike(lit("a%")));
        assert!(render(&e, &schema(), &mut params).is_none());
        assert_eq!(params.len(), 1);
    }

    #[test]
    fn expressions_over_columns_are_not_pushed() {
        let e = (col("id") + lit(1i64)).gt(lit(5i64));
        assert!(!pushable(&e, &schema()));
        assert!(!pushable(
            &col("id").eq(lit(ScalarValue::Int64(None))),
            &schema()
        ));
    }
}
