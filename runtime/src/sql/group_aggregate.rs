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
//!
//! With `table.exec.state.ttl` set, a key's state is Flink's idle state: a key
//! not read or written for the TTL (in processing time, as in Flink) is dropped,
//! from memory when it is next seen or swept, and from the keyed state at the
//! next checkpoint; its next row starts from nothing, so it is inserted (`+I`)
//! again. Nothing is emitted when a key expires. The last access of each key is
//! kept beside its aggregates (its own entries, so state written without a TTL
//! reads back as it is: its keys count as accessed at the restore).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

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

/// The first byte of every key's last-access entry (the key's bytes follow;
/// the value is the processing time in milliseconds, big-endian), written only
/// with a TTL.
const ACCESS_PREFIX: u8 = 2;

/// The processing time in milliseconds since the epoch (replaced in tests).
pub type ProcessingClock = Box<dyn Fn() -> u64>;

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
    /// The processing time the key was last read or written at.
    accessed: u64,
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
    /// `table.exec.state.ttl` in milliseconds: keys idle that long are dropped.
    ttl: Option<u64>,
    clock: ProcessingClock,
    /// When idle keys are next swept from memory between checkpoints.
    next_sweep: u64,
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
            ttl: None,
            clock: Box::new(super::settings::processing_time_ms),
            next_sweep: 0,
        }
    }

    /// Drops the state of keys idle for `ttl` (none keeps state for ever).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = super::settings::ttl_millis(ttl);
        self
    }

    /// Reads processing time from `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: ProcessingClock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether a key last accessed at `accessed` is expired at `now`.
    fn expired(&self, accessed: u64, now: u64) -> bool {
        self.ttl
            .is_some_and(|ttl| accessed.saturating_add(ttl) <= now)
    }

    /// Drops every key expired at `now`, from memory and from `state`.
    fn sweep(&mut self, now: u64, state: &mut KeyedState) {
        let Some(ttl) = self.ttl else {
            return;
        };
        self.next_sweep = now.saturating_add(ttl);
        let expired: Vec<Box<[u8]>> = self
            .keys
            .iter()
            .filter(|(_, aggregates)| self.expired(aggregates.accessed, now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.keys.remove(&key);
            self.changed.remove(&key);
            let group = state.key_group(&key);
            state.delete(GROUPS, group, &entry_key(ENTRY_PREFIX, &key));
            state.delete(GROUPS, group, &entry_key(ACCESS_PREFIX, &key));
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

/// The entry of `key` under `prefix`.
fn entry_key(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(key.len() + 1);
    entry.push(prefix);
    entry.extend_from_slice(key);
    entry
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
        state: &mut KeyedState,
        out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        let batch = record.batch.0;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let now = (self.clock)();
        if self.ttl.is_some() && now >= self.next_sweep {
            self.sweep(now, state);
        }
        let AggregateInputs { arguments, filters } =
            AggregateInputs::evaluate(&self.node.aggregates, &batch);
        let mut rows = Vec::new();
        for (key, indices) in rows_by_key(self.encoder.encode(&batch)) {
            let indices = UInt32Array::from(indices);
            // An expired key starts again from nothing, as a new one.
            let is_new = self
                .keys
                .get(&key)
                .is_none_or(|aggregates| self.expired(aggregates.accessed, now));
            if is_new {
                let accumulators = new_accumulators(&self.node.aggregates);
                self.keys.insert(
                    key.clone(),
                    KeyAggregates {
                        accumulators,
                        emitted: Vec::new(),
                        accessed: now,
                    },
                );
            }
            let aggregates = self.keys.get_mut(&key).expect("inserted above");
            aggregates.accessed = now;
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
        let now = (self.clock)();
        let mut accessed: HashMap<Box<[u8]>, u64> = HashMap::new();
        for (group, entry, value) in
            state.scan_between(GROUPS, &[ACCESS_PREFIX], &[ACCESS_PREFIX + 1])?
        {
            if self.ttl.is_none() {
                // Without a TTL access times are not kept: stale ones would
                // expire keys early if a TTL were set again later.
                state.delete(GROUPS, group, &entry);
                continue;
            }
            let time = <[u8; 8]>::try_from(value.as_slice())
                .map_err(|_| restore_error(&self.node.name, "access times", &"not 8 bytes"))?;
            accessed.insert(entry[1..].into(), u64::from_be_bytes(time));
        }
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
            // State written without a TTL counts as accessed now.
            let accessed = accessed.get(&key).copied().unwrap_or(now);
            self.keys.insert(
                key,
                KeyAggregates {
                    accumulators,
                    emitted,
                    accessed,
                },
            );
        }
        self.sweep(now, state);
        Ok(())
    }

    fn before_snapshot(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.write(state);
        self.sweep((self.clock)(), state);
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
            let group = state.key_group(key);
            let value = rows
                .as_ref()
                .map_or_else(Vec::new, |rows| rows.row(index).as_ref().to_vec());
            state.put(GROUPS, group, &entry_key(ENTRY_PREFIX, key), value);
            if self.ttl.is_some() {
                let accessed = self.keys[key].accessed.to_be_bytes().to_vec();
                state.put(GROUPS, group, &entry_key(ACCESS_PREFIX, key), accessed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow::util::display::array_value_to_string;

    use super::*;
    use crate::sql::lower::StreamNode;
    use crate::sql::window_aggregate::Routed;

    const TTL: Duration = Duration::from_secs(10);

    /// `SELECT k, COUNT(*) FROM t GROUP BY k`, and its input's schema.
    fn count_by_key() -> (Arc<GroupAggregate>, SchemaRef) {
        let job = crate::sql::compile(
            "CREATE TABLE t (k STRING, v BIGINT) WITH ('connector' = 'datagen');
             SELECT k, COUNT(*) FROM t GROUP BY k;",
        )
        .unwrap();
        let aggregate = job
            .plan
            .nodes
            .iter()
            .find_map(|node| match node {
                StreamNode::GroupAggregate(aggregate) => Some(aggregate.clone()),
                _ => None,
            })
            .expect("a GROUP BY");
        let input = job.plan.schema(aggregate.input);
        (Arc::new(aggregate), input)
    }

    /// A logic with `ttl` reading the time from `now`.
    fn logic(ttl: Option<Duration>, now: &Rc<Cell<u64>>) -> GroupAggregateLogic {
        let (node, input) = count_by_key();
        let now = Rc::clone(now);
        GroupAggregateLogic::new(node, &input)
            .with_state_ttl(ttl)
            .with_clock(Box::new(move || now.get()))
    }

    /// Feeds rows of keys `keys` and returns the output as `+I[a, 1]` lines.
    fn feed(logic: &mut GroupAggregateLogic, state: &mut KeyedState, keys: &[&str]) -> Vec<String> {
        let (_, input) = count_by_key();
        let columns: Vec<ArrayRef> = input
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from(keys.to_vec())),
                    _ => Arc::new(Int64Array::from(vec![1; keys.len()])),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(input, columns).unwrap();
        let mut out = Vec::new();
        let record = Routed {
            subtask: 0,
            batch: SqlBatch(batch),
        };
        logic.on_record(record, state, &mut out).unwrap();
        let mut lines = Vec::new();
        for SqlBatch(batch) in out {
            let width = batch.num_columns() - 1;
            for row in 0..batch.num_rows() {
                let kind =
                    ["+I", "-U", "+U", "-D"][array_value_to_string(batch.column(width), row)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()];
                let values: Vec<String> = (0..width)
                    .map(|column| array_value_to_string(batch.column(column), row).unwrap())
                    .collect();
                lines.push(format!("{kind}[{}]", values.join(", ")));
            }
        }
        lines
    }

    #[test]
    fn a_key_idle_past_the_ttl_starts_again_and_one_touched_within_it_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let now = Rc::new(Cell::new(1_000));
        let mut logic = logic(Some(TTL), &now);
        assert_eq!(feed(&mut logic, &mut state, &["a", "a"]), ["+I[a, 2]"]);
        now.set(6_000);
        assert_eq!(
            feed(&mut logic, &mut state, &["a", "b"]),
            ["-U[a, 2]", "+U[a, 3]", "+I[b, 1]"]
        );
        // 9.999 s after its last row `a` is kept; `b` too.
        now.set(15_999);
        assert_eq!(
            feed(&mut logic, &mut state, &["a"]),
            ["-U[a, 3]", "+U[a, 4]"]
        );
        // `b` was idle for 10 s: it starts from nothing.
        now.set(16_000);
        assert_eq!(feed(&mut logic, &mut state, &["b"]), ["+I[b, 1]"]);
        now.set(25_998);
        assert_eq!(
            feed(&mut logic, &mut state, &["a"]),
            ["-U[a, 4]", "+U[a, 5]"]
        );
        now.set(35_998);
        assert_eq!(feed(&mut logic, &mut state, &["a"]), ["+I[a, 1]"]);
    }

    #[test]
    fn without_a_ttl_state_is_kept_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let now = Rc::new(Cell::new(0));
        let mut logic = logic(None, &now);
        assert_eq!(feed(&mut logic, &mut state, &["a"]), ["+I[a, 1]"]);
        now.set(u64::MAX / 2);
        logic.before_snapshot(&mut state).unwrap();
        assert_eq!(
            feed(&mut logic, &mut state, &["a"]),
            ["-U[a, 1]", "+U[a, 2]"]
        );
    }

    #[test]
    fn expired_keys_leave_the_checkpoint_and_restored_keys_keep_their_last_access() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let now = Rc::new(Cell::new(0));
        let mut first = logic(Some(TTL), &now);
        feed(&mut first, &mut state, &["a"]);
        now.set(5_000);
        feed(&mut first, &mut state, &["b"]);
        first.before_snapshot(&mut state).unwrap();
        // At 12 s `a` (last seen at 0) is dropped from the checkpoint; `b` is kept.
        now.set(12_000);
        first.before_snapshot(&mut state).unwrap();
        let entries = state.scan_between(GROUPS, &[0], &[u8::MAX]).unwrap();
        let keys: Vec<Vec<u8>> = entries.into_iter().map(|(_, entry, _)| entry).collect();
        assert_eq!(keys.len(), 2, "b's aggregates and last access");
        let prefixes: Vec<u8> = keys.iter().map(|entry| entry[0]).collect();
        assert_eq!(prefixes, [ENTRY_PREFIX, ACCESS_PREFIX]);
        assert_eq!(keys[0][1..], keys[1][1..]);
        assert!(
            keys[0].contains(&b'b') && !keys[0].contains(&b'a'),
            "{keys:?}"
        );

        // Restored at 14.999 s, `b` (last seen at 5 s) goes on.
        now.set(14_999);
        let mut restored = logic(Some(TTL), &now);
        restored.restore(&mut state).unwrap();
        assert_eq!(
            feed(&mut restored, &mut state, &["a", "b"]),
            ["+I[a, 1]", "-U[b, 1]", "+U[b, 2]"]
        );
        // Restored later, `b` has expired.
        now.set(15_000);
        let mut late = logic(Some(TTL), &now);
        late.restore(&mut state).unwrap();
        assert_eq!(feed(&mut late, &mut state, &["b"]), ["+I[b, 1]"]);
    }

    #[test]
    fn state_written_without_a_ttl_restores_with_one_as_accessed_at_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let now = Rc::new(Cell::new(0));
        let mut old = logic(None, &now);
        feed(&mut old, &mut state, &["a"]);
        old.before_snapshot(&mut state).unwrap();
        now.set(100_000);
        let mut restored = logic(Some(TTL), &now);
        restored.restore(&mut state).unwrap();
        now.set(109_999);
        assert_eq!(
            feed(&mut restored, &mut state, &["a"]),
            ["-U[a, 1]", "+U[a, 2]"]
        );
        now.set(119_999);
        assert_eq!(feed(&mut restored, &mut state, &["a"]), ["+I[a, 1]"]);
    }

    /// `COUNT(DISTINCT a, b)` counts distinct `(a, b)` pairs with no NULL in
    /// them, and its state (the pairs seen) comes back from a checkpoint.
    #[test]
    fn count_distinct_of_several_arguments_counts_pairs_across_a_restore() {
        let job = crate::sql::compile(
            "CREATE TABLE t (k STRING, a BIGINT, b STRING) WITH ('connector' = 'datagen');
             SELECT k, COUNT(DISTINCT a, b) FROM t GROUP BY k;",
        )
        .unwrap();
        let node = job
            .plan
            .nodes
            .iter()
            .find_map(|node| match node {
                StreamNode::GroupAggregate(aggregate) => Some(aggregate.clone()),
                _ => None,
            })
            .expect("a GROUP BY");
        let input = job.plan.schema(node.input);
        let node = Arc::new(node);
        let feed = |logic: &mut GroupAggregateLogic,
                    state: &mut KeyedState,
                    rows: &[(Option<i64>, Option<&str>)]| {
            let batch = RecordBatch::try_new(
                Arc::clone(&input),
                vec![
                    Arc::new(StringArray::from(vec!["k"; rows.len()])),
                    Arc::new(Int64Array::from(
                        rows.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from(
                        rows.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap();
            let mut out = Vec::new();
            let record = Routed {
                subtask: 0,
                batch: SqlBatch(batch),
            };
            logic.on_record(record, state, &mut out).unwrap();
            let SqlBatch(last) = out.last().expect("an update").clone();
            array_value_to_string(last.column(1), last.num_rows() - 1).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let mut first = GroupAggregateLogic::new(Arc::clone(&node), &input);
        let count = feed(
            &mut first,
            &mut state,
            &[
                (Some(1), Some("x")),
                (Some(1), Some("y")),
                (Some(1), Some("x")),
                (None, Some("x")),
                (Some(2), None),
            ],
        );
        assert_eq!(count, "2");
        first.before_snapshot(&mut state).unwrap();

        let mut restored = GroupAggregateLogic::new(node, &input);
        restored.restore(&mut state).unwrap();
        let count = feed(
            &mut restored,
            &mut state,
            &[(Some(1), Some("y")), (Some(2), Some("x"))],
        );
        assert_eq!(count, "3");
    }
}
