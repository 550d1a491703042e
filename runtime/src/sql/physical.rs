//! Logical expressions made physical, the one way every SQL operator does it.
//!
//! Strom plans with DataFusion's analyzer but not its optimizer, and some of
//! DataFusion's functions (`COALESCE`, `NVL`, `NVL2`, `arrow_cast`, ...) only exist
//! as rewrites the optimizer's simplification does. Those rewrites are applied
//! here, for immutable functions only: a function of the time (`NOW()`,
//! `CURRENT_TIMESTAMP`) would be folded into the planning time, which is wrong for
//! a job that runs for months; it stays as it is.
//!
//! A cast to STRING of a value that Arrow's cast writes otherwise than Flink
//! (a BOOLEAN, a TIMESTAMP) is made a call of Flink's writer here too
//! ([`functions::cast_to_string`]), so every operator writes Flink's strings.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{Expr, ExprSchemable, Volatility};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::functions;

/// `expr` over `schema` as a physical expression, evaluated on batches.
pub fn physical_expr(
    expr: &Expr,
    schema: &DFSchema,
    props: &ExecutionProps,
) -> Result<Arc<dyn PhysicalExpr>> {
    let expr = rewrite_immutable_functions(expr.clone(), schema)?;
    create_physical_expr(&expr, schema, props, &PhysicalPlanningContext::default())
}

/// Applies the rewrites of immutable scalar functions that exist only as
/// rewrites, and Flink's casts to STRING, innermost first (for expressions
/// DataFusion makes physical itself, such as an aggregate's arguments).
pub fn rewrite_immutable_functions(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    expr.transform_up(|expr| match expr {
        Expr::ScalarFunction(call) if call.func.signature().volatility == Volatility::Immutable => {
            let func = Arc::clone(&call.func);
            match func.simplify(call.args, &context)? {
                ExprSimplifyResult::Simplified(rewritten) => Ok(Transformed::yes(rewritten)),
                ExprSimplifyResult::Original(args) => Ok(Transformed::no(Expr::ScalarFunction(
                    datafusion::logical_expr::expr::ScalarFunction { func, args },
                ))),
            }
        }
        cast @ (Expr::Cast(_) | Expr::TryCast(_)) => flink_string_cast(cast, schema),
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
}

/// `CAST(value AS STRING)` (or `TRY_CAST`) as a call of Flink's writer where
/// Arrow's cast writes `value` otherwise; any other cast as it is.
fn flink_string_cast(cast: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (Expr::Cast(Cast { expr: value, field }) | Expr::TryCast(TryCast { expr: value, field })) =
        &cast
    else {
        return Ok(Transformed::no(cast));
    };
    if field.data_type() != &DataType::Utf8 {
        return Ok(Transformed::no(cast));
    }
    match functions::cast_to_string(&value.get_type(schema)?) {
        Some(writer) => Ok(Transformed::yes(writer.call(vec![value.as_ref().clone()]))),
        None => Ok(Transformed::no(cast)),
    }
}
