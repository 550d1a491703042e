//! What the per-key aggregate operators (`group_aggregate`, `session_aggregate`)
//! share: DataFusion `Accumulator`s for a node's aggregates, the arguments and
//! `FILTER`s they read from a batch, and their states as `arrow-row` rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, FieldRef};
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::lower::AggregateCall;
use crate::state::StateError;

/// Fresh accumulators, one per aggregate.
pub fn new_accumulators(aggregates: &[AggregateCall]) -> Vec<Box<dyn Accumulator>> {
    aggregates
        .iter()
        .map(|call| {
            call.function
                .create_accumulator()
                .expect("aggregates make accumulators")
        })
        .collect()
}

/// Every aggregate's state fields, in order.
pub fn state_fields(aggregates: &[AggregateCall]) -> Vec<FieldRef> {
    aggregates
        .iter()
        .flat_map(|call| {
            call.function
                .state_fields()
                .expect("aggregates name their state fields")
        })
        .collect()
}

/// How many of [`state_fields`] each aggregate has.
pub fn state_widths(aggregates: &[AggregateCall]) -> Vec<usize> {
    aggregates
        .iter()
        .map(|call| {
            call.function
                .state_fields()
                .map_or(1, |fields| fields.len())
        })
        .collect()
}

/// The encoder of states of `fields` as rows; none without fields (no
/// aggregates).
pub fn state_converter(fields: &[FieldRef]) -> Option<RowConverter> {
    (!fields.is_empty()).then(|| {
        RowConverter::new(
            fields
                .iter()
                .map(|field| SortField::new(field.data_type().clone()))
                .collect(),
        )
        .expect("aggregate states can be encoded as rows")
    })
}

/// What the aggregates read from a batch: each one's arguments and `FILTER`.
pub struct AggregateInputs {
    /// Per aggregate, its argument columns.
    pub arguments: Vec<Vec<ArrayRef>>,
    /// Per aggregate, its `FILTER (WHERE ...)` column, if any.
    pub filters: Vec<Option<ArrayRef>>,
}

impl AggregateInputs {
    /// The inputs of `aggregates` over `batch`.
    pub fn evaluate(aggregates: &[AggregateCall], batch: &RecordBatch) -> Self {
        let evaluate = |expr: &Arc<dyn PhysicalExpr>| {
            expr.evaluate(batch)
                .and_then(|value| value.into_array(batch.num_rows()))
                .expect("aggregate arguments evaluate")
        };
        Self {
            arguments: aggregates
                .iter()
                .map(|call| call.function.expressions().iter().map(evaluate).collect())
                .collect(),
            filters: aggregates
                .iter()
                .map(|call| call.filter.as_ref().map(evaluate))
                .collect(),
        }
    }
}

/// `array` as `data_type` (aggregate values and states as their columns say).
pub fn cast_to(array: ArrayRef, data_type: &DataType) -> ArrayRef {
    if array.data_type() == data_type {
        array
    } else {
        arrow::compute::cast(&array, data_type).expect("aggregate values cast to their column")
    }
}

/// An aggregate's error, as the operator's.
pub fn aggregate_error(operator: &str, error: &datafusion::error::DataFusionError) -> StateError {
    StateError::Operator {
        operator: operator.to_owned(),
        message: error.to_string(),
    }
}

/// Restored `what` (states, sessions) that do not read back.
pub fn restore_error(operator: &str, what: &str, error: &dyn std::fmt::Display) -> StateError {
    StateError::Operator {
        operator: operator.to_owned(),
        message: format!("the restored {what} do not read back: {error}"),
    }
}
