//! What a SQL operator's state holds, recorded beside it, so that a savepoint
//! restored into another query fails loudly instead of reading one aggregate's
//! state as another's (a COUNT's as a MIN's, say): each stateful SQL operator
//! writes its shape (key types, aggregates and their state types, window) into
//! every key group it owns at its first checkpoint, and checks it on restore.

use crate::exec::keyed::KeyedState;
use crate::state::{KeyGroup, StateError, TableId};

/// The table holding the shape (one entry per key group).
const SHAPES: TableId = TableId(100);

/// The entry key of the shape.
const SHAPE: &[u8] = b"shape";

/// A SQL operator's state shape, and whether it is written in this run yet.
pub struct StateShape {
    operator: String,
    shape: String,
    written: bool,
}

impl StateShape {
    /// The shape `shape` (a description of everything the state's encoding
    /// depends on) of `operator`.
    pub fn new(operator: &str, shape: String) -> Self {
        Self {
            operator: operator.to_owned(),
            shape,
            written: false,
        }
    }

    /// Checks the shape the restored key groups recorded: the state was written
    /// by an operator of this shape (state from before shapes were recorded has
    /// none, and is taken as it is).
    pub fn check(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        let entries = state.scan_between(SHAPES, SHAPE, &[SHAPE, &[0]].concat())?;
        for (_, _, recorded) in entries {
            let recorded = String::from_utf8_lossy(&recorded);
            if recorded != self.shape {
                return Err(StateError::Operator {
                    operator: self.operator.clone(),
                    message: format!(
                        "the restored state does not fit this query: it holds {recorded}, this query's {} (a savepoint of another query, or of a Strom version that kept this query's state otherwise); restore a savepoint this query took with this version, or start without one",
                        self.shape
                    ),
                });
            }
        }
        // Key groups restored from other subtasks are rewritten at the next
        // checkpoint anyway.
        self.written = false;
        Ok(())
    }

    /// Records the shape in every key group of this subtask, once per run.
    pub fn write(&mut self, state: &mut KeyedState) {
        if self.written {
            return;
        }
        for index in state.key_groups().indices() {
            let group = KeyGroup(u16::try_from(index).expect("key groups fit 16 bits"));
            state.put(SHAPES, group, SHAPE, self.shape.clone().into_bytes());
        }
        self.written = true;
    }
}

/// The shape of an aggregate's state: `kind` (its window, say), its key types
/// and each aggregate with the types of its state.
pub fn describe(
    kind: &str,
    keys: &[super::lower::Computed],
    input: &arrow::datatypes::Schema,
    aggregates: &[super::lower::AggregateCall],
) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|key| {
            key.expr
                .data_type(input)
                .map_or_else(|_| "?".to_owned(), |data_type| data_type.to_string())
        })
        .collect();
    let aggregates: Vec<String> = aggregates
        .iter()
        .map(|call| {
            let states: Vec<String> = call
                .function
                .state_fields()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|field| field.data_type().to_string())
                        .collect()
                })
                .unwrap_or_default();
            format!("{}({})", call.function.name(), states.join(", "))
        })
        .collect();
    format!(
        "{kind} keyed by [{}] with [{}]",
        keys.join(", "),
        aggregates.join(", ")
    )
}
