//! The updating aggregate: `GROUP BY` without a window. Its output is a
//! changelog, as Flink's `GroupAggregate`: a key's first row is an insert (`+I`),
//! and each later change of its aggregates an update (`-U` with the row as it
//! was, `+U` with the row as it is); an unchanged result emits nothing. Without
//! aggregates (`SELECT DISTINCT`, `GROUP BY` of keys only) a key's row is
//! inserted once and never changes, so that output is insert-only.
//!
//! Each key's accumulators (DataFusion `Accumulator`s, whose `evaluate` does not
//! consume them) live in memory; a batch updates the accumulators of each key it
//! holds once, with that key's rows. At checkpoints the states of the keys
//! changed since the last one are written to the keyed state, one entry per key
//! (its aggregates' states as one `arrow-row` row), so they are restored and
//! redistributed by key group like every keyed state; a restore reads them all
//! back into memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, RecordBatch, UInt32Array};
use arrow::compute::{filter, take};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use super::accumulators::{
    AggregateInputs, aggregate_error, cast_to, new_accumulators, restore_error, state_converter,
    state_fields, state_widths,
};
use super::batch::{RowKind, SqlBatch, with_op_column};
use super::lower::{AggregateCall, Computed};
use super::state_shape::{StateShape, describe};
use super::window_aggregate::KeyEncoder;
use crate::exec::EventTime;
use crate::exec::keyed::{KeyedLogic, KeyedState};
use crate::state::{StateError, TableId};

/// The table holding each key's aggregate states at checkpoints.
const GROUPS: TableId = TableId(2);

/// The first byte of every entry key (the key's bytes follow), so a scan finds
/// every entry, the empty key of a global aggregate included.
const ENTRY_PREFIX: u8 = 1;

/// `GROUP BY keys` with `aggregates`, an updating aggregate.
#[derive(Debug, Clone)]
pub struct GroupAggregate {
    /// The input.
    pub input: super::lower::NodeId,
    /// The grouping keys.
    pub keys: Vec<Computed>,
    /// The aggregates, after the keys.
    pub aggregates: Vec<AggregateCall>,
    /// The output's schema (without the op column).
    pub schema: SchemaRef,
    /// The operator's name: its state is kept under it.
    pub name: String,
}

impl GroupAggregate {
    /// Whether the output changes rows it emitted (it has aggregates).
    pub fn updates(&self) -> bool {
        !self.aggregates.is_empty()
    }
}

/// One key's accumulators and the aggregate values last emitted for it.
struct KeyAggregates {
    accumulators: Vec<Box<dyn Accumulator>>,
    emitted: Vec<ScalarValue>,
}

/// The updating aggregate's logic (see the module docs).
pub struct GroupAggregateLogic {
    node: Arc<GroupAggregate>,
    encoder: KeyEncoder,
    keys: HashMap<Box<[u8]>, KeyAggregates>,
    /// Keys whose states changed since the last checkpoint.
    changed: HashSet<Box<[u8]>>,
    /// Every aggregate's state fields, in order: one persisted row per key.
    state_fields: Vec<FieldRef>,
    output: SchemaRef,
    shape: StateShape,
}

impl GroupAggregateLogic {
    /// The logic of `node`, whose input has `input` as schema.
    pub fn new(node: Arc<GroupAggregate>, input: &Schema) -> Self {
        let encoder = KeyEncoder::of_keys(&node.keys, input);
        let state_fields = state_fields(&node.aggregates);
        let output = if node.updates() {
            with_op_column(&node.schema)
        } else {
            Arc::clone(&node.schema)
        };
        let shape = StateShape::new(
            &node.name,
            describe("GROUP BY", &node.keys, input, &node.aggregates),
        );
        Self {
            node,
            encoder,
            keys: HashMap::new(),
            changed: HashSet::new(),
            state_fields,
            output,
            shape,
        }
    }

    /// The output rows: `(key, kind, aggregate values)`.
    fn emit(&self, rows: Vec<(Box<[u8]>, RowKind, Vec<ScalarValue>)>) -> Option<SqlBatch> {
        if rows.is_empty() {
            return None;
        }
        let keys: Vec<Box<[u8]>> = rows.iter().map(|(key, _, _)| key.clone()).collect();
        let mut columns = self.encoder.decode(&keys);
        let width = self.node.keys.len();
        for (index, field) in self.node.schema.fields()[width..].iter().enumerate() {
            let values = rows.iter().map(|(_, _, values)| values[index].clone());
            let array = ScalarValue::iter_to_array(values).expect("aggregate values are one type");
            columns.push(cast_to(array, field.data_type()));
        }
        if self.node.updates() {
            columns.push(Arc::new(Int8Array::from_iter_values(
                rows.iter().map(|(_, kind, _)| *kind as i8),
            )));
        }
        Some(SqlBatch(
            RecordBatch::try_new(Arc::clone(&self.output), columns)
                .expect("the output columns match its schema"),
        ))
    }
}

/// The rows of `keys` grouped by key, keys in order of first appearance.
fn rows_by_key(keys: Vec<Box<[u8]>>) -> Vec<(Box<[u8]>, Vec<u32>)> {
    let mut index: HashMap<Box<[u8]>, usize> = HashMap::new();
    let mut groups: Vec<(Box<[u8]>, Vec<u32>)> = Vec::new();
    for (row, key) in keys.into_iter().enumerate() {
        match index.get(&key) {
            Some(&group) => groups[group].1.push(row as u32),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![row as u32]));
            }
        }
    }
    groups
}

impl KeyedLogic<super::window_aggregate::Routed, SqlBatch> for GroupAggregateLogic {
    fn on_record(
        &mut self,
        record: super::window_aggregate::Routed,
        _state: &mut KeyedState,
        out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        let batch = record.batch.0;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let AggregateInputs { arguments, filters } =
            AggregateInputs::evaluate(&self.node.aggregates, &batch);
        let mut rows = Vec::new();
        for (key, indices) in rows_by_key(self.encoder.encode(&batch)) {
            let indices = UInt32Array::from(indices);
            let is_new = !self.keys.contains_key(&key);
            if is_new {
                let accumulators = new_accumulators(&self.node.aggregates);
                self.keys.insert(
                    key.clone(),
                    KeyAggregates {
                        accumulators,
                        emitted: Vec::new(),
                    },
                );
            }
            let aggregates = self.keys.get_mut(&key).expect("inserted above");
            for ((accumulator, arguments), condition) in aggregates
                .accumulators
                .iter_mut()
                .zip(&arguments)
                .zip(&filters)
            {
                let mut values: Vec<ArrayRef> = arguments
                    .iter()
                    .map(|array| take(array, &indices, None).expect("rows of the batch"))
                    .collect();
                if let Some(condition) = condition {
                    let condition = take(condition, &indices, None).expect("rows of the batch");
                    let condition = condition
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .expect("FILTER conditions are boolean");
                    values = values
                        .iter()
                        .map(|array| filter(array, condition).expect("a filter of the rows"))
                        .collect();
                }
                accumulator
                    .update_batch(&values)
                    .map_err(|error| aggregate_error(&self.node.name, &error))?;
            }
            let current = aggregates
                .accumulators
                .iter_mut()
                .map(|accumulator| accumulator.evaluate())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| aggregate_error(&self.node.name, &error))?;
            if is_new {
                rows.push((key.clone(), RowKind::Insert, current.clone()));
            } else if current != aggregates.emitted {
                let before = std::mem::replace(&mut aggregates.emitted, current.clone());
                rows.push((key.clone(), RowKind::UpdateBefore, before));
                rows.push((key.clone(), RowKind::UpdateAfter, current.clone()));
            }
            aggregates.emitted = current;
            self.changed.insert(key);
        }
        out.extend(self.emit(rows));
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _watermark: EventTime,
        _state: &mut KeyedState,
        _out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        Ok(())
    }

    fn restore(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.check(state)?;
        let entries = state.scan_between(GROUPS, &[ENTRY_PREFIX], &[ENTRY_PREFIX + 1])?;
        if entries.is_empty() {
            return Ok(());
        }
        let columns = match state_converter(&self.state_fields) {
            // Without aggregates (DISTINCT) an entry only says its key was seen.
            None => Vec::new(),
            Some(converter) => {
                let parser = converter.parser();
                let rows: Vec<_> = entries
                    .iter()
                    .map(|(_, _, value)| parser.parse(value))
                    .collect();
                converter
                    .convert_rows(rows)
                    .map_err(|error| restore_error(&self.node.name, "aggregate states", &error))?
            }
        };
        let widths = state_widths(&self.node.aggregates);
        for (row, (_, entry, _)) in entries.iter().enumerate() {
            let key: Box<[u8]> = entry[1..].into();
            let mut accumulators = new_accumulators(&self.node.aggregates);
            let mut next = 0;
            for (accumulator, width) in accumulators.iter_mut().zip(&widths) {
                let states: Vec<ArrayRef> = columns[next..next + width]
                    .iter()
                    .map(|column| column.slice(row, 1))
                    .collect();
                accumulator
                    .merge_batch(&states)
                    .map_err(|error| restore_error(&self.node.name, "aggregate states", &error))?;
                next += width;
            }
            let emitted = accumulators
                .iter_mut()
                .map(|accumulator| accumulator.evaluate())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| restore_error(&self.node.name, "aggregate states", &error))?;
            self.keys.insert(
                key,
                KeyAggregates {
                    accumulators,
                    emitted,
                },
            );
        }
        Ok(())
    }

    fn before_snapshot(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.write(state);
        if self.changed.is_empty() {
            return Ok(());
        }
        let changed: Vec<Box<[u8]>> = self.changed.drain().collect();
        let mut per_field: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.state_fields.len()];
        for key in &changed {
            let aggregates = self.keys.get_mut(key).expect("changed keys are kept");
            let mut field = 0;
            for accumulator in &mut aggregates.accumulators {
                for value in accumulator
                    .state()
                    .map_err(|error| aggregate_error(&self.node.name, &error))?
                {
                    per_field[field].push(value);
                    field += 1;
                }
            }
        }
        let columns: Vec<ArrayRef> = per_field
            .into_iter()
            .zip(&self.state_fields)
            .map(|(values, field)| {
                let array = ScalarValue::iter_to_array(values).expect("states are one type");
                cast_to(array, field.data_type())
            })
            .collect();
        // Without aggregates (DISTINCT) an entry only says its key was seen.
        let rows = state_converter(&self.state_fields).map(|converter| {
            converter
                .convert_columns(&columns)
                .expect("aggregate states convert to rows")
        });
        for (index, key) in changed.iter().enumerate() {
            let mut entry = vec![ENTRY_PREFIX];
            entry.extend_from_slice(key);
            let group = state.key_group(key);
            let value = rows
                .as_ref()
                .map_or_else(Vec::new, |rows| rows.row(index).as_ref().to_vec());
            state.put(GROUPS, group, &entry, value);
        }
        Ok(())
    }
}
