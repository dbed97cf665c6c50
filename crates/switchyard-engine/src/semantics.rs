//! Where DataFusion and PostgreSQL answer the same SQL differently, the plan is rewritten to
//! PostgreSQL's answer before it is optimized.
//!
//! - A cast of a decimal or float to an integer type rounds (half away from zero), where
//!   DataFusion truncates: `CAST(12.5 AS int)` is 13.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

/// The plan with PostgreSQL's semantics where they differ.
pub(crate) fn postgres(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let schema = merge_schema(&node.inputs());
        node.map_expressions(|e| e.transform_up(|e| rewrite(e, &schema)))
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
        other => Ok(Transformed::no(other)),
    }
}
