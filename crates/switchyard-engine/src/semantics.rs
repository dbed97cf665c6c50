//! Where DataFusion and PostgreSQL answer the same SQL differently, the plan is rewritten to
//! PostgreSQL's answer before it is optimized.
//!
//! - A cast of a decimal or float to an integer type rounds (half away from zero), where
//!   DataFusion truncates: `CAST(12.5 AS int)` is 13.
//! - A float compared or combined with a numeric is computed as floats (PostgreSQL casts the
//!   numeric to `float8`; DataFusion would cast the float to a decimal).
//! - Functions PostgreSQL has under another name (`mod`) are rewritten in the statement.
//! - `AVG` of a decimal has PostgreSQL's scale: at least 16 fraction digits (PostgreSQL's
//!   division keeps 16 significant digits; for averages from 1 to 9999 that is 16 fraction
//!   digits; larger ones get fewer there and the same value here), rounded half away from zero,
//!   where DataFusion answers the input's scale + 4, truncated. It averages the input widened by
//!   enough digits and rounds to that scale; the nodes above are retyped.

use std::ops::ControlFlow;

use datafusion::common::tree_node::{Transformed, TreeNode};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Aggregate, Projection};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};

/// The plan with PostgreSQL's semantics where they differ.
pub(crate) fn postgres(plan: LogicalPlan) -> Result<LogicalPlan> {
    let averaged = plan.transform_up_with_subqueries(round_decimal_averages)?;
    let plan = if averaged.transformed {
        // An average's type changed: every node above recomputes its schema.
        averaged
            .data
            .transform_up_with_subqueries(|n| n.recompute_schema().map(Transformed::yes))?
            .data
    } else {
        averaged.data
    };
    plan.transform_up_with_subqueries(|node| {
        let schema = merge_schema(&node.inputs());
        // A rewritten expression keeps its name, so the nodes above still find it.
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let saved = names.save(&e);
            e.transform_up(|e| rewrite(e, &schema))
                .map(|t| t.update_data(|e| saved.restore(e)))
        })
    })
    .map(|t| t.data)
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::Cast(Cast { expr, field }) if field.data_type().is_integer() => {
            let rounds = expr
                .get_type(schema)
                .is_ok_and(|t| t.is_floating() || t.is_decimal());
            if rounds {
                let rounded = datafusion::functions::math::expr_fn::round(vec![*expr]);
                Ok(Transformed::yes(Expr::Cast(Cast {
                    expr: Box::new(rounded),
                    field,
                })))
            } else {
                Ok(Transformed::no(Expr::Cast(Cast { expr, field })))
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if numeric_operator(op) => {
            let (l, r) = (left.get_type(schema), right.get_type(schema));
            match (l, r) {
                (Ok(l), Ok(r)) if l.is_floating() && r.is_decimal() => {
                    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                        left,
                        op,
                        right: Box::new(as_float(*right)),
                    })))
                }
                (Ok(l), Ok(r)) if l.is_decimal() && r.is_floating() => {
                    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                        left: Box::new(as_float(*left)),
                        op,
                        right,
                    })))
                }
                _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                }))),
            }
        }
        Expr::InList(mut list) => {
            let float = list.expr.get_type(schema).is_ok_and(|t| t.is_floating());
            let mut changed = false;
            if float {
                for item in &mut list.list {
                    if item.get_type(schema).is_ok_and(|t| t.is_decimal()) {
                        *item = as_float(item.clone());
                        changed = true;
                    }
                }
            }
            Ok(if changed {
                Transformed::yes(Expr::InList(list))
            } else {
                Transformed::no(Expr::InList(list))
            })
        }
        other => Ok(Transformed::no(other)),
    }
}

fn numeric_operator(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::Plus
            | Operator::Minus
            | Operator::Multiply
            | Operator::Divide
    )
}

fn as_float(e: Expr) -> Expr {
    Expr::Cast(Cast::new(Box::new(e), DataType::Float64))
}

/// PostgreSQL functions DataFusion does not have under that name, rewritten before planning:
/// `mod(a, b)` is `a % b` (both take the dividend's sign); `jsonb_array_elements(doc)` is
/// `json_get(unnest(json_get_array(doc)))`.
pub(crate) fn postgres_functions(statement: &mut ast::Statement) -> Result<(), String> {
    match VisitMut::visit(statement, &mut Functions) {
        ControlFlow::Break(refused) => Err(refused),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Functions;

/// A plain call `name(args)` (no DISTINCT, ORDER BY, FILTER or OVER) of one of `names`.
fn plain_call<'a>(expr: &'a ast::Expr, names: &[&str]) -> Option<&'a [ast::FunctionArg]> {
    let ast::Expr::Function(f) = expr else {
        return None;
    };
    let named = f.name.0.len() == 1
        && f.name.0[0]
            .as_ident()
            .is_some_and(|i| names.iter().any(|n| i.value.eq_ignore_ascii_case(n)));
    match &f.args {
        ast::FunctionArguments::List(list)
            if named
                && list.duplicate_treatment.is_none()
                && list.clauses.is_empty()
                && f.over.is_none()
                && f.filter.is_none() =>
        {
            Some(&list.args)
        }
        _ => None,
    }
}

/// `name(args)` as an expression.
fn call(name: &str, args: Vec<ast::FunctionArg>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

impl VisitorMut for Functions {
    type Break = String;

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<String> {
        // `INTERVAL '1 day 04:05:06'`: the time of day as units DataFusion parses.
        if let ast::Expr::Interval(interval) = expr
            && let ast::Expr::Value(v) = interval.value.as_mut()
            && let ast::Value::SingleQuotedString(text) = &mut v.value
            && let Some(units) = crate::pgtime::clock_as_units(text)
        {
            *text = units;
            return ControlFlow::Continue(());
        }
        // The same for `'1 day 04:05:06'::interval`.
        if let ast::Expr::Cast {
            expr: value,
            data_type: ast::DataType::Interval { .. },
            ..
        } = expr
            && let ast::Expr::Value(v) = value.as_mut()
            && let ast::Value::SingleQuotedString(text) = &mut v.value
            && let Some(units) = crate::pgtime::clock_as_units(text)
        {
            *text = units;
            return ControlFlow::Continue(());
        }
        // `to_char(instant, 'template')`: PostgreSQL's template as chrono's format.
        if let Some([value, template]) = plain_call(expr, &["to_char"]) {
            let literal = match template {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))) => {
                    match &v.value {
                        ast::Value::SingleQuotedString(t) => Some(t.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(format) = literal.as_deref().and_then(crate::pgtime::chrono_format) else {
                return ControlFlow::Break(format!(
                    "to_char with template {}: the router's engine knows YYYY, YY, MM, DD, DDD, HH, HH12, HH24, MI, SS, MS, US, AM/PM, Mon, Dy, IW, FMMonth, FMDay and quoted text",
                    literal
                        .map_or_else(|| "that is not a literal".to_owned(), |t| format!("'{t}'"))
                ));
            };
            let format = ast::Expr::Value(ast::Value::SingleQuotedString(format).into());
            *expr = call(
                "to_char",
                vec![
                    value.clone(),
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(format)),
                ],
            );
            return ControlFlow::Continue(());
        }
        // `jsonb_array_elements(doc)` in a select list: one row per element of the array.
        if let Some([arg]) = plain_call(expr, &["jsonb_array_elements", "json_array_elements"]) {
            let array = call("json_get_array", vec![arg.clone()]);
            let element = call(
                "unnest",
                vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(array))],
            );
            // `json_get` of the element's text: typed as JSON again (unnest drops the type).
            *expr = call(
                "json_get",
                vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
                    element,
                ))],
            );
            return ControlFlow::Continue(());
        }
        if let Some(
            [
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)),
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(b)),
            ],
        ) = plain_call(expr, &["mod"])
        {
            *expr = ast::Expr::Nested(Box::new(ast::Expr::BinaryOp {
                left: Box::new(a.clone()),
                op: ast::BinaryOperator::Modulo,
                right: Box::new(b.clone()),
            }));
        }
        ControlFlow::Continue(())
    }
}

/// The fraction digits PostgreSQL's `AVG` of a decimal has when the average is from 1 to 9999
/// (`NUMERIC_MIN_SIG_DIGITS`); at least the input's own scale.
const PG_AVG_SCALE: i8 = 16;

/// Digits DataFusion's `AVG` adds to its input's scale.
const DATAFUSION_AVG_DIGITS: i8 = 4;

/// An aggregate whose `AVG`s of decimals average the widened input, under a projection that
/// rounds each back to the type (and name) the plan above expects.
fn round_decimal_averages(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = node else {
        return Ok(Transformed::no(node));
    };
    let input_schema = aggregate.input.schema().clone();
    let mut rounded: Vec<(usize, u8, i8)> = Vec::new();
    let mut aggr_expr = Vec::with_capacity(aggregate.aggr_expr.len());
    for (i, e) in aggregate.aggr_expr.iter().enumerate() {
        let (inner, alias) = match e {
            Expr::Alias(a) => (a.expr.as_ref(), Some(a)),
            other => (other, None),
        };
        let widened = match inner {
            Expr::AggregateFunction(f)
                if f.func.name().eq_ignore_ascii_case("avg") && f.params.args.len() == 1 =>
            {
                match f.params.args[0].get_type(&input_schema) {
                    Ok(DataType::Decimal128(p, s)) if s >= 0 && i16::from(p) >= i16::from(s) => {
                        let integer_digits = p as i8 - s;
                        let target = s.max(PG_AVG_SCALE);
                        // One digit past the target, so that rounding sees it.
                        let widened = s.max(target + 1 - DATAFUSION_AVG_DIGITS);
                        if integer_digits + widened + DATAFUSION_AVG_DIGITS > 38 {
                            None
                        } else {
                            let mut f = f.clone();
                            f.params.args[0] = Expr::Cast(Cast::new(
                                Box::new(f.params.args[0].clone()),
                                DataType::Decimal128((integer_digits + widened) as u8, widened),
                            ));
                            let precision = (integer_digits + target).min(38) as u8;
                            rounded.push((i, precision, target));
                            Some(Expr::AggregateFunction(f))
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        aggr_expr.push(match (widened, alias) {
            (Some(w), Some(a)) => w.alias_qualified(a.relation.clone(), a.name.clone()),
            (Some(w), None) => w,
            (None, _) => e.clone(),
        });
    }
    if rounded.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
    }
    let original = aggregate.schema.clone();
    let aggr_count = aggregate.aggr_expr.len();
    let widened = Aggregate::try_new(
        aggregate.input.clone(),
        aggregate.group_expr.clone(),
        aggr_expr,
    )?;
    let widened_schema = widened.schema.clone();
    let first_aggr = widened_schema.fields().len() - aggr_count;
    let mut exprs = Vec::with_capacity(widened_schema.fields().len());
    for (j, (qualifier, field)) in widened_schema.iter().enumerate() {
        let column = Expr::Column(Column::from((qualifier, field)));
        let (orig_qualifier, orig_field) = original.qualified_field(j);
        let target = rounded
            .iter()
            .find(|(i, _, _)| first_aggr + i == j)
            .map(|(_, p, s)| (*p, *s));
        exprs.push(match target {
            Some((p, s)) => {
                let rounded = datafusion::functions::math::expr_fn::round(vec![
                    column,
                    Expr::Literal(ScalarValue::Int64(Some(i64::from(s))), None),
                ]);
                Expr::Cast(Cast::new(Box::new(rounded), DataType::Decimal128(p, s)))
                    .alias_qualified(orig_qualifier.cloned(), orig_field.name())
            }
            None => column.alias_qualified(orig_qualifier.cloned(), orig_field.name()),
        });
    }
    let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(widened)))?;
    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
}
