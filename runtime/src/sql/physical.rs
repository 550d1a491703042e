//! Logical expressions made physical, the one way every SQL operator does it.
//!
//! Strom plans with DataFusion's analyzer but not its optimizer, and some of
//! DataFusion's functions (`COALESCE`, `NVL`, `NVL2`, `arrow_cast`, ...) only exist
//! as rewrites the optimizer's simplification does. Those rewrites are applied
//! here, for immutable functions only: a function of the time (`NOW()`,
//! `CURRENT_TIMESTAMP`) would be folded into the planning time, which is wrong for
//! a job that runs for months; it stays as it is.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

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
/// rewrites, innermost first (for expressions DataFusion makes physical itself,
/// such as an aggregate's arguments).
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
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
}
