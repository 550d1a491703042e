//! The window aggregate operator: rows keyed by their key columns, aggregated per
//! key and slice in memory, windows fired per window end when the watermark
//! passes it.
//!
//! Every window is a run of whole slices (a TUMBLE's slice is the window; a HOP of
//! size s and slide d has slices of gcd(s, d); a CUMULATE's slice is its step).
//! A row updates one slice's accumulators — DataFusion `GroupsAccumulator`s,
//! updated a batch at a time, never RocksDB. When the watermark passes a slice's
//! end the slice closes into its partial states, and each window ending there is
//! the merge of its slices' states. Open and closed slices are written to the
//! keyed state at checkpoints only (one entry per key group and slice), so they
//! are restored, and redistributed by key group, like any keyed state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use arrow::compute::{concat, take};
use arrow::datatypes::{Field, Schema};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use serde::{Deserialize, Serialize};

use super::batch::{SqlBatch, restored_watermark, timestamps_ms};
use super::lower::{GroupColumn, WindowAggregate};
use super::state_shape::{StateShape, describe};
use crate::exec::EventTime;
use crate::exec::control::OperatorMetrics;
use crate::exec::keyed::{KeyedLogic, KeyedState};
use crate::state::{KeyGroup, StateError, TableId};

/// The table holding the slices at checkpoints.
const SLICES: TableId = TableId(1);

/// A batch whose rows all belong to the key groups of one subtask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Routed {
    /// The subtask owning every row's key group.
    pub subtask: u32,
    /// The rows.
    pub batch: SqlBatch,
}

/// The keys of a batch's rows in their stable byte form (`arrow-row`), which is
/// both hashed to a key group and kept in state.
pub struct KeyEncoder {
    converter: Option<RowConverter>,
    keys: Vec<super::lower::Computed>,
}

impl KeyEncoder {
    /// An encoder of the key columns of `aggregate`, over its input's schema.
    pub fn new(aggregate: &WindowAggregate, input: &Schema) -> Self {
        Self::of_keys(&aggregate.keys, input)
    }

    /// An encoder of the key columns `keys`, over `input`.
    pub fn of_keys(keys: &[super::lower::Computed], input: &Schema) -> Self {
        let converter = (!keys.is_empty()).then(|| {
            let fields = keys
                .iter()
                .map(|key| {
                    SortField::new(
                        key.expr
                            .data_type(input)
                            .expect("key types were checked when planning"),
                    )
                })
                .collect();
            RowConverter::new(fields).expect("key types can be encoded as rows")
        });
        Self {
            converter,
            keys: keys.to_vec(),
        }
    }

    /// The key bytes of every row of `batch`.
    pub fn encode(&self, batch: &RecordBatch) -> Vec<Box<[u8]>> {
        let keys = self.encode_all(batch);
        (0..keys.len()).map(|row| keys.get(row).into()).collect()
    }

    /// The key bytes of every row of `batch`, in one buffer.
    pub fn encode_all(&self, batch: &RecordBatch) -> EncodedKeys {
        let rows = batch.num_rows();
        let Some(converter) = &self.converter else {
            return EncodedKeys {
                rows: None,
                len: rows,
            };
        };
        let columns: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|key| key.evaluate(batch).expect("key expressions evaluate"))
            .collect();
        let encoded = converter
            .convert_columns(&columns)
            .expect("key columns convert to rows");
        EncodedKeys {
            rows: Some(encoded),
            len: rows,
        }
    }

    /// The key columns of `keys` (bytes from [`encode`](Self::encode)).
    pub fn decode(&self, keys: &[Box<[u8]>]) -> Vec<ArrayRef> {
        let Some(converter) = &self.converter else {
            return Vec::new();
        };
        let parser = converter.parser();
        let rows: Vec<_> = keys.iter().map(|key| parser.parse(key)).collect();
        converter
            .convert_rows(rows)
            .expect("rows this converter encoded decode")
    }
}

/// The keys of a batch's rows, encoded together (no allocation per row).
pub struct EncodedKeys {
    /// The encoded rows; `None` when there are no key columns (every key is empty).
    rows: Option<Rows>,
    len: usize,
}

impl EncodedKeys {
    /// How many rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key bytes of `row`.
    pub fn get(&self, row: usize) -> &[u8] {
        match &self.rows {
            Some(rows) => rows.row(row).data(),
            None => &[],
        }
    }
}

/// The accumulators of one slice or window: one `GroupsAccumulator` per
/// aggregate, a group per key.
struct Groups {
    index: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    keys: Vec<Box<[u8]>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

impl Groups {
    fn new(aggregates: &[Arc<AggregateFunctionExpr>]) -> Self {
        Self {
            index: HashMap::default(),
            keys: Vec::new(),
            accumulators: aggregates.iter().map(|a| new_accumulator(a)).collect(),
        }
    }

    fn group_of(&mut self, key: &[u8]) -> usize {
        if let Some(&group) = self.index.get(key) {
            return group;
        }
        let group = self.keys.len();
        self.keys.push(key.into());
        self.index.insert(key.into(), group);
        group
    }

    /// Adds the partial states `states` (one list of arrays per aggregate) of the
    /// keys `keys`.
    fn merge(&mut self, keys: &[Box<[u8]>], states: &[Vec<ArrayRef>]) {
        let groups: Vec<usize> = keys.iter().map(|key| self.group_of(key)).collect();
        let total = self.keys.len();
        for (accumulator, state) in self.accumulators.iter_mut().zip(states) {
            accumulator
                .merge_batch(state, &groups, total)
                .expect("partial states of the same aggregate merge");
        }
    }

    /// The partial states of every group, leaving the accumulators empty.
    fn take_states(&mut self) -> Vec<Vec<ArrayRef>> {
        self.accumulators
            .iter_mut()
            .map(|accumulator| {
                accumulator
                    .state(EmitTo::All)
                    .expect("accumulators give their state")
            })
            .collect()
    }
}

fn new_accumulator(aggregate: &Arc<AggregateFunctionExpr>) -> Box<dyn GroupsAccumulator> {
    if aggregate.groups_accumulator_supported() {
        aggregate
            .create_groups_accumulator()
            .expect("a supported groups accumulator is created")
    } else {
        let aggregate = Arc::clone(aggregate);
        Box::new(GroupsAccumulatorAdapter::new(move || {
            aggregate.create_accumulator()
        }))
    }
}

/// A slice whose end the watermark passed: the partial states of its keys, kept
/// for the windows still to fire that hold it.
struct ClosedSlice {
    keys: Vec<Box<[u8]>>,
    states: Vec<Vec<ArrayRef>>,
}

/// The window aggregate's logic (see the module docs).
pub struct WindowAggregateLogic {
    node: Arc<WindowAggregate>,
    functions: Vec<Arc<AggregateFunctionExpr>>,
    encoder: KeyEncoder,
    open: BTreeMap<i64, Groups>,
    closed: BTreeMap<i64, ClosedSlice>,
    /// Window ends still to fire, from the slices seen.
    pending_ends: BTreeSet<i64>,
    watermark: i64,
    /// The (key group, entry key) of each entry written at the last checkpoint.
    persisted: Vec<(KeyGroup, Vec<u8>)>,
    metrics: OperatorMetrics,
    shape: StateShape,
}

impl WindowAggregateLogic {
    /// The logic of `node`, whose input has `input` as schema.
    pub fn new(node: Arc<WindowAggregate>, input: &Schema, metrics: OperatorMetrics) -> Self {
        let encoder = KeyEncoder::new(&node, input);
        let functions = node
            .aggregates
            .iter()
            .map(|call| Arc::clone(&call.function))
            .collect();
        let shape = StateShape::new(
            &node.name,
            describe(&node.spec.to_string(), &node.keys, input, &node.aggregates),
        );
        Self {
            shape,
            node,
            functions,
            encoder,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            pending_ends: BTreeSet::new(),
            watermark: i64::MIN,
            persisted: Vec::new(),
            metrics,
        }
    }

    fn open_slice(&mut self, slice_end: i64) -> &mut Groups {
        if !self.open.contains_key(&slice_end) {
            self.pending_ends
                .extend(self.node.spec.window_ends_of_slice(slice_end));
            self.open.insert(slice_end, Groups::new(&self.functions));
        }
        self.open.get_mut(&slice_end).expect("inserted above")
    }

    /// Evaluates `groups` into the output rows of window `[start, end)`.
    fn emit(&self, mut groups: Groups, start: i64, end: i64) -> Option<SqlBatch> {
        let rows = groups.keys.len();
        if rows == 0 {
            return None;
        }
        let key_columns = self.encoder.decode(&groups.keys);
        let mut values: Vec<ArrayRef> = groups
            .accumulators
            .iter_mut()
            .map(|accumulator| {
                accumulator
                    .evaluate(EmitTo::All)
                    .expect("accumulators evaluate")
            })
            .collect();
        let time =
            |at: i64| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![at; rows])) };
        let mut columns: Vec<ArrayRef> = Vec::new();
        for column in &self.node.group_columns {
            columns.push(match column {
                GroupColumn::WindowStart => time(start),
                GroupColumn::WindowEnd => time(end),
                GroupColumn::WindowTime => time(end - 1),
                GroupColumn::Key(index) => Arc::clone(&key_columns[*index]),
            });
        }
        columns.append(&mut values);
        let columns = columns
            .into_iter()
            .zip(self.node.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    column
                } else {
                    arrow::compute::cast(&column, field.data_type())
                        .expect("output columns cast to the planned types")
                }
            })
            .collect();
        Some(SqlBatch(
            RecordBatch::try_new(Arc::clone(&self.node.schema), columns)
                .expect("the output matches its schema"),
        ))
    }

    /// Closes the open slices ending at or before `end`.
    fn close_slices_until(&mut self, end: i64) {
        let later = self.open.split_off(&(end + 1));
        let done = std::mem::replace(&mut self.open, later);
        for (slice_end, mut groups) in done {
            let states = groups.take_states();
            self.closed.insert(
                slice_end,
                ClosedSlice {
                    keys: groups.keys,
                    states,
                },
            );
        }
    }

    /// Fires the window ending at `end`.
    fn fire(&mut self, end: i64) -> Option<SqlBatch> {
        let start = self.node.spec.window_start(end);
        if let super::window_tvf::WindowSpec::Tumble { .. } = self.node.spec {
            // The window is its one slice: evaluated as it is.
            let groups = self.open.remove(&end)?;
            return self.emit(groups, start, end);
        }
        self.close_slices_until(end);
        let mut window = Groups::new(&self.functions);
        for (_, slice) in self.closed.range(start + 1..=end) {
            window.merge(&slice.keys, &slice.states);
        }
        let batch = self.emit(window, start, end);
        // Slices no later window needs.
        let spec = self.node.spec;
        self.closed
            .retain(|slice_end, _| spec.last_window_end_of_slice(*slice_end) > end);
        batch
    }

    /// Writes every slice's partial states, per key group, into `state`.
    fn persist(&mut self, state: &mut KeyedState) {
        for (group, key) in self.persisted.drain(..) {
            state.delete(SLICES, group, &key);
        }
        let open: Vec<i64> = self.open.keys().copied().collect();
        for slice_end in open {
            let groups = self.open.get_mut(&slice_end).expect("listed above");
            let states = groups.take_states();
            // The accumulators gave their state away: they take it back.
            let keys = std::mem::take(&mut groups.keys);
            groups.index.clear();
            groups.merge(&keys, &states);
            write_slice(state, &mut self.persisted, true, slice_end, &keys, &states);
        }
        for (slice_end, slice) in &self.closed {
            write_slice(
                state,
                &mut self.persisted,
                false,
                *slice_end,
                &slice.keys,
                &slice.states,
            );
        }
    }
}

/// The state entry key of a slice: open (1) or closed (0), then its end.
fn entry_key(open: bool, slice_end: i64) -> Vec<u8> {
    let mut key = vec![u8::from(open)];
    key.extend_from_slice(&((slice_end as u64) ^ (1 << 63)).to_be_bytes());
    key
}

fn write_slice(
    state: &mut KeyedState,
    persisted: &mut Vec<(KeyGroup, Vec<u8>)>,
    open: bool,
    slice_end: i64,
    keys: &[Box<[u8]>],
    states: &[Vec<ArrayRef>],
) {
    let mut by_group: BTreeMap<KeyGroup, Vec<u32>> = BTreeMap::new();
    for (row, key) in keys.iter().enumerate() {
        by_group
            .entry(state.key_group(key))
            .or_default()
            .push(row as u32);
    }
    let entry = entry_key(open, slice_end);
    for (group, rows) in by_group {
        let indices = arrow::array::UInt32Array::from(rows.clone());
        let key_column: ArrayRef = Arc::new(BinaryArray::from_iter_values(
            rows.iter().map(|&row| keys[row as usize].as_ref()),
        ));
        let mut columns = vec![key_column];
        for state_arrays in states {
            for array in state_arrays {
                columns.push(take(array, &indices, None).expect("rows of the state"));
            }
        }
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, column)| Field::new(format!("c{i}"), column.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("state columns have one length");
        let bytes = crate::state::codec::to_bytes(&SqlBatch(batch)).expect("a batch encodes");
        state.put(SLICES, group, &entry, bytes);
        persisted.push((group, entry.clone()));
    }
}

impl KeyedLogic<Routed, SqlBatch> for WindowAggregateLogic {
    fn on_record(
        &mut self,
        record: Routed,
        _state: &mut KeyedState,
        _out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        let batch = record.batch.0;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = timestamps_ms(batch.column(self.node.time_column));
        let keys = self.encoder.encode_all(&batch);
        let values: Vec<Vec<ArrayRef>> = self
            .functions
            .iter()
            .map(|function| {
                function
                    .expressions()
                    .iter()
                    .map(|expr| {
                        expr.evaluate(&batch)
                            .and_then(|value| value.into_array(batch.num_rows()))
                            .expect("aggregate arguments evaluate")
                    })
                    .collect()
            })
            .collect();
        let filters: Vec<Option<BooleanArray>> = self
            .node
            .aggregates
            .iter()
            .map(|call| {
                call.filter.as_ref().map(|filter| {
                    let value = filter
                        .evaluate(&batch)
                        .and_then(|value| value.into_array(batch.num_rows()))
                        .expect("FILTER conditions evaluate");
                    value
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .expect("FILTER conditions are boolean")
                        .clone()
                })
            })
            .collect();
        // Rows by slice (a batch spans few slices, its rows mostly in order).
        let mut by_slice: Vec<(i64, Vec<u32>)> = Vec::new();
        let mut late = 0;
        for row in 0..keys.len() {
            if times.is_null(row) {
                late += 1;
                continue;
            }
            let slice_end = self.node.spec.slice_end_of(times.value(row));
            if slice_end <= self.watermark {
                late += 1;
                continue;
            }
            let slice = match by_slice.iter().rposition(|(end, _)| *end == slice_end) {
                Some(slice) => slice,
                None => {
                    by_slice.push((slice_end, Vec::new()));
                    by_slice.len() - 1
                }
            };
            by_slice[slice].1.push(row as u32);
        }
        for _ in 0..late {
            self.metrics.add_late_record();
        }
        let all_rows = by_slice.len() == 1 && late == 0;
        for (slice_end, rows) in by_slice {
            let slice = self.open_slice(slice_end);
            let groups: Vec<usize> = rows
                .iter()
                .map(|&row| slice.group_of(keys.get(row as usize)))
                .collect();
            let indices = arrow::array::UInt32Array::from(rows);
            let total = slice.keys.len();
            for ((accumulator, arguments), filter) in
                slice.accumulators.iter_mut().zip(&values).zip(&filters)
            {
                let (arguments, filter): (Vec<ArrayRef>, Option<BooleanArray>) = if all_rows {
                    (arguments.clone(), filter.clone())
                } else {
                    (
                        arguments
                            .iter()
                            .map(|array| take(array, &indices, None).expect("rows of the batch"))
                            .collect(),
                        filter.as_ref().map(|filter| {
                            let taken = take(filter, &indices, None).expect("rows of the batch");
                            taken
                                .as_any()
                                .downcast_ref::<BooleanArray>()
                                .expect("boolean")
                                .clone()
                        }),
                    )
                };
                accumulator
                    .update_batch(&arguments, &groups, filter.as_ref(), total)
                    .expect("accumulators take their arguments");
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        _state: &mut KeyedState,
        out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        self.watermark = i64::try_from(watermark).unwrap_or(i64::MAX);
        while let Some(&end) = self.pending_ends.first() {
            if end > self.watermark {
                break;
            }
            self.pending_ends.pop_first();
            if let Some(batch) = self.fire(end) {
                out.push(batch);
            }
        }
        Ok(())
    }

    fn resume_from_watermark(&mut self, watermark: EventTime) {
        self.watermark = restored_watermark(watermark);
    }

    fn restore(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.check(state)?;
        let entries = state.scan_between(SLICES, &[], &[2])?;
        for (group, key, value) in entries {
            let open = key.first() == Some(&1);
            let slice_end = i64::from_be_bytes(key[1..9].try_into().expect("8 bytes")) ^ i64::MIN;
            let SqlBatch(batch) =
                crate::state::codec::from_bytes(&value).map_err(|source| StateError::Decode {
                    table: SLICES,
                    source,
                })?;
            let key_column = batch
                .column(0)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .expect("the first column holds the keys");
            let keys: Vec<Box<[u8]>> = key_column
                .iter()
                .map(|k| k.unwrap_or_default().into())
                .collect();
            let mut states = Vec::new();
            let mut next = 1;
            for function in &self.functions {
                let width = function.state_fields().map(|f| f.len()).unwrap_or(1);
                states.push(batch.columns()[next..next + width].to_vec());
                next += width;
            }
            if open {
                self.open_slice(slice_end).merge(&keys, &states);
            } else {
                let spec = self.node.spec;
                for end in spec.window_ends_of_slice(slice_end) {
                    if end > self.watermark {
                        self.pending_ends.insert(end);
                    }
                }
                match self.closed.get_mut(&slice_end) {
                    Some(slice) => {
                        slice.keys.extend(keys);
                        for (kept, more) in slice.states.iter_mut().zip(states) {
                            for (array, added) in kept.iter_mut().zip(more) {
                                *array = concat(&[array.as_ref(), added.as_ref()])
                                    .expect("states of one aggregate concatenate");
                            }
                        }
                    }
                    None => {
                        self.closed.insert(slice_end, ClosedSlice { keys, states });
                    }
                }
            }
            self.persisted.push((group, key));
        }
        Ok(())
    }

    fn before_snapshot(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.write(state);
        self.persist(state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::col;

    use super::*;
    use crate::sql::lower::Computed;
    use crate::state::KeyGroup;

    /// Savepoints keep key bytes and the key groups they hash to: both must never
    /// change between versions (a new arrow-row encoding would be a new state format).
    #[test]
    fn keys_encode_to_pinned_bytes_and_key_groups() {
        let schema = Schema::new(vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("channel", DataType::Utf8, true),
        ]);
        let keys: Vec<Computed> = ["auction", "channel"]
            .iter()
            .map(|name| Computed::new(col(name, &schema).unwrap(), *name, &schema))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(Int64Array::from(vec![Some(42), Some(-1), None])),
                Arc::new(StringArray::from(vec![Some("eu"), None, Some("")])),
            ],
        )
        .unwrap();
        let encoder = KeyEncoder::of_keys(&keys, &schema);
        let encoded = encoder.encode(&batch);
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let pinned = [
            ("01800000000000002a02657500000000000002", 19),
            ("017fffffffffffffff00", 35),
            ("00000000000000000001", 54),
        ];
        for (key, (pinned_hex, pinned_group)) in encoded.iter().zip(pinned) {
            assert_eq!(hex(key), pinned_hex);
            assert_eq!(
                KeyGroup::of_key(key, 128).index(),
                pinned_group,
                "{pinned_hex}"
            );
        }
        let decoded = encoder.decode(&encoded);
        assert_eq!(decoded[0].as_ref(), batch.column(0).as_ref());
        assert_eq!(decoded[1].as_ref(), batch.column(1).as_ref());
    }
}
