//! The session window aggregate (`SESSION(TABLE t, DESCRIPTOR(ts), gap)` grouped
//! by `window_start, window_end, keys`): per key, a row at time `t` opens the
//! session `[t, t + gap)`, and sessions that touch or overlap merge, as Flink's
//! session windows do. A session fires when the watermark reaches its end; a row
//! is late (dropped and counted) when the session it would make or join ended
//! at or below the watermark: its own `[t, t + gap)` did and it joins no session
//! still open (Flink judges the merged session too).
//!
//! Each open session's DataFusion `Accumulator`s live in memory (merging two
//! sessions merges one's state into the other's); at checkpoints the sessions of
//! the keys changed since the last one are written, one entry per key, so they
//! are restored and redistributed by key group like every keyed state.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray};
use arrow::compute::take;
use arrow::datatypes::{FieldRef, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use super::accumulators::{
    AggregateInputs, aggregate_error, cast_to, new_accumulators, restore_error, state_converter,
    state_fields, state_widths,
};
use super::batch::{SqlBatch, restored_watermark, timestamps_ms};
use super::lower::{GroupColumn, WindowAggregate};
use super::state_shape::{StateShape, describe};
use super::window_aggregate::{KeyEncoder, Routed};
use super::window_tvf::WindowSpec;
use crate::exec::EventTime;
use crate::exec::control::OperatorMetrics;
use crate::exec::keyed::{KeyedLogic, KeyedState};
use crate::state::{StateError, TableId};

/// The table holding each key's open sessions at checkpoints.
const SESSIONS: TableId = TableId(3);

/// The first byte of every entry key (the key's bytes follow).
const ENTRY_PREFIX: u8 = 1;

/// An open session of one key.
struct Session {
    start: i64,
    end: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
}

/// A session that fired: its key, bounds and aggregate values.
struct Fired {
    key: Box<[u8]>,
    start: i64,
    end: i64,
    values: Vec<ScalarValue>,
}

/// The session aggregate's logic (see the module docs).
pub struct SessionAggregateLogic {
    node: Arc<WindowAggregate>,
    gap: i64,
    encoder: KeyEncoder,
    /// Each key's open sessions, in time order, none touching another.
    sessions: HashMap<Box<[u8]>, Vec<Session>>,
    /// `(end, key)` of every open session: what fires next.
    ends: BTreeSet<(i64, Box<[u8]>)>,
    watermark: i64,
    /// Keys whose sessions changed since the last checkpoint.
    changed: HashSet<Box<[u8]>>,
    state_fields: Vec<FieldRef>,
    metrics: OperatorMetrics,
    shape: StateShape,
}

impl SessionAggregateLogic {
    /// The logic of `node` (a `SESSION` window), whose input has `input` as
    /// schema.
    pub fn new(node: Arc<WindowAggregate>, input: &Schema, metrics: OperatorMetrics) -> Self {
        let WindowSpec::Session { gap } = node.spec else {
            panic!("a session aggregate of another window: {}", node.spec);
        };
        let encoder = KeyEncoder::of_keys(&node.keys, input);
        let state_fields = state_fields(&node.aggregates);
        let shape = StateShape::new(
            &node.name,
            describe(&node.spec.to_string(), &node.keys, input, &node.aggregates),
        );
        Self {
            shape,
            node,
            gap,
            encoder,
            sessions: HashMap::new(),
            ends: BTreeSet::new(),
            watermark: i64::MIN,
            changed: HashSet::new(),
            state_fields,
            metrics,
        }
    }

    /// Whether a row of `key` at `time` is late: its own session `[time, time +
    /// gap)` ended at or below the watermark and it joins no session still
    /// open (Flink judges the merged session).
    fn is_late(&self, key: &[u8], time: i64) -> bool {
        let end = time.saturating_add(self.gap);
        end <= self.watermark
            && !self.sessions.get(key).is_some_and(|sessions| {
                sessions
                    .iter()
                    .any(|session| session.start <= end && time <= session.end)
            })
    }

    /// The session of `key` that a row at `time` belongs to, after merging the
    /// sessions `[time, time + gap)` touches.
    fn session_of(&mut self, key: &[u8], time: i64) -> Result<&mut Session, StateError> {
        let (mut start, mut end) = (time, time.saturating_add(self.gap));
        let fresh = new_accumulators(&self.node.aggregates);
        let sessions = self.sessions.entry(key.into()).or_default();
        let (touching, rest): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
            .into_iter()
            .partition(|session| session.start <= end && start <= session.end);
        *sessions = rest;
        let mut merged: Option<Session> = None;
        for session in touching {
            self.ends.remove(&(session.end, key.into()));
            start = start.min(session.start);
            end = end.max(session.end);
            merged = Some(match merged {
                None => session,
                Some(mut into) => {
                    merge_into(&mut into.accumulators, session.accumulators)
                        .map_err(|error| aggregate_error(&self.node.name, &error))?;
                    into
                }
            });
        }
        let mut session = merged.unwrap_or(Session {
            start,
            end,
            accumulators: fresh,
        });
        session.start = start;
        session.end = end;
        self.ends.insert((end, key.into()));
        let position = sessions
            .iter()
            .position(|other| other.start > start)
            .unwrap_or(sessions.len());
        sessions.insert(position, session);
        Ok(&mut sessions[position])
    }

    /// The output rows of fired sessions.
    fn emit(&self, fired: Vec<Fired>) -> Option<SqlBatch> {
        if fired.is_empty() {
            return None;
        }
        let keys: Vec<Box<[u8]>> = fired.iter().map(|session| session.key.clone()).collect();
        let key_columns = self.encoder.decode(&keys);
        let times = |pick: &dyn Fn(i64, i64) -> i64| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from_iter_values(
                fired.iter().map(|session| pick(session.start, session.end)),
            ))
        };
        let mut columns: Vec<ArrayRef> = Vec::new();
        for column in &self.node.group_columns {
            columns.push(match column {
                GroupColumn::WindowStart => times(&|start, _| start),
                GroupColumn::WindowEnd => times(&|_, end| end),
                GroupColumn::WindowTime => times(&|_, end| end - 1),
                GroupColumn::Key(index) => Arc::clone(&key_columns[*index]),
            });
        }
        for index in 0..self.node.aggregates.len() {
            let values = fired.iter().map(|session| session.values[index].clone());
            columns
                .push(ScalarValue::iter_to_array(values).expect("aggregate values are one type"));
        }
        let columns = columns
            .into_iter()
            .zip(self.node.schema.fields())
            .map(|(column, field)| cast_to(column, field.data_type()))
            .collect();
        Some(SqlBatch(
            RecordBatch::try_new(Arc::clone(&self.node.schema), columns)
                .expect("the output columns match its schema"),
        ))
    }
}

/// Merges the accumulators `from` (another session's) into `into`.
fn merge_into(
    into: &mut [Box<dyn Accumulator>],
    from: Vec<Box<dyn Accumulator>>,
) -> datafusion::error::Result<()> {
    for (target, mut source) in into.iter_mut().zip(from) {
        let states: Vec<ArrayRef> = source
            .state()?
            .into_iter()
            .map(|value| value.to_array())
            .collect::<datafusion::error::Result<_>>()?;
        target.merge_batch(&states)?;
    }
    Ok(())
}

impl KeyedLogic<Routed, SqlBatch> for SessionAggregateLogic {
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
        let keys = self.encoder.encode(&batch);
        let AggregateInputs { arguments, filters } =
            AggregateInputs::evaluate(&self.node.aggregates, &batch);
        let mut late = 0;
        for (row, key) in keys.iter().enumerate() {
            if times.is_null(row) || self.is_late(key, times.value(row)) {
                late += 1;
                continue;
            }
            let name = self.node.name.clone();
            let session = self.session_of(key, times.value(row))?;
            let index = arrow::array::UInt32Array::from(vec![row as u32]);
            for ((accumulator, arguments), condition) in session
                .accumulators
                .iter_mut()
                .zip(&arguments)
                .zip(&filters)
            {
                if let Some(condition) = condition {
                    let condition = take(condition, &index, None).expect("a row of the batch");
                    let condition = condition
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .expect("FILTER conditions are boolean");
                    if !(condition.is_valid(0) && condition.value(0)) {
                        continue;
                    }
                }
                let values: Vec<ArrayRef> = arguments
                    .iter()
                    .map(|array| take(array, &index, None).expect("a row of the batch"))
                    .collect();
                accumulator
                    .update_batch(&values)
                    .map_err(|error| aggregate_error(&name, &error))?;
            }
            self.changed.insert(key.clone());
        }
        for _ in 0..late {
            self.metrics.add_late_record();
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
        let mut fired = Vec::new();
        while let Some((end, _)) = self.ends.first() {
            if *end > self.watermark {
                break;
            }
            let (end, key) = self.ends.pop_first().expect("looked at above");
            let sessions = self
                .sessions
                .get_mut(&key)
                .expect("ends are of open sessions");
            let position = sessions
                .iter()
                .position(|session| session.end == end)
                .expect("ends are of open sessions");
            let mut session = sessions.remove(position);
            if sessions.is_empty() {
                self.sessions.remove(&key);
            }
            let values = session
                .accumulators
                .iter_mut()
                .map(|accumulator| accumulator.evaluate())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| aggregate_error(&self.node.name, &error))?;
            self.changed.insert(key.clone());
            fired.push(Fired {
                key,
                start: session.start,
                end: session.end,
                values,
            });
        }
        out.extend(self.emit(fired));
        Ok(())
    }

    fn resume_from_watermark(&mut self, watermark: EventTime) {
        self.watermark = restored_watermark(watermark);
    }

    fn restore(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.check(state)?;
        let entries = state.scan_between(SESSIONS, &[ENTRY_PREFIX], &[ENTRY_PREFIX + 1])?;
        let converter = state_converter(&self.state_fields);
        let widths = state_widths(&self.node.aggregates);
        for (_, entry, value) in entries {
            let key: Box<[u8]> = entry[1..].into();
            let stored: Vec<(i64, i64, Vec<u8>)> = crate::state::codec::from_bytes(&value)
                .map_err(|source| StateError::Decode {
                    table: SESSIONS,
                    source,
                })?;
            let mut sessions = Vec::new();
            for (start, end, states) in stored {
                let mut accumulators = new_accumulators(&self.node.aggregates);
                if let Some(converter) = &converter {
                    let parser = converter.parser();
                    let columns = converter
                        .convert_rows([parser.parse(&states)])
                        .map_err(|error| restore_error(&self.node.name, "sessions", &error))?;
                    let mut next = 0;
                    for (accumulator, width) in accumulators.iter_mut().zip(&widths) {
                        accumulator
                            .merge_batch(&columns[next..next + width])
                            .map_err(|error| restore_error(&self.node.name, "sessions", &error))?;
                        next += width;
                    }
                }
                self.ends.insert((end, key.clone()));
                sessions.push(Session {
                    start,
                    end,
                    accumulators,
                });
            }
            sessions.sort_by_key(|session| session.start);
            self.sessions.insert(key, sessions);
        }
        Ok(())
    }

    fn before_snapshot(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.write(state);
        let converter = state_converter(&self.state_fields);
        for key in std::mem::take(&mut self.changed) {
            let mut entry = vec![ENTRY_PREFIX];
            entry.extend_from_slice(&key);
            let group = state.key_group(&key);
            let Some(sessions) = self.sessions.get_mut(&key) else {
                state.delete(SESSIONS, group, &entry);
                continue;
            };
            let mut stored = Vec::new();
            for session in sessions.iter_mut() {
                let bytes =
                    match &converter {
                        None => Vec::new(),
                        Some(converter) => {
                            let mut columns = Vec::new();
                            for accumulator in &mut session.accumulators {
                                for value in accumulator
                                    .state()
                                    .map_err(|error| aggregate_error(&self.node.name, &error))?
                                {
                                    columns.push(value.to_array().map_err(|error| {
                                        aggregate_error(&self.node.name, &error)
                                    })?);
                                }
                            }
                            let columns: Vec<ArrayRef> = columns
                                .into_iter()
                                .zip(&self.state_fields)
                                .map(|(column, field)| cast_to(column, field.data_type()))
                                .collect();
                            let rows = converter
                                .convert_columns(&columns)
                                .expect("aggregate states convert to rows");
                            rows.row(0).as_ref().to_vec()
                        }
                    };
                stored.push((session.start, session.end, bytes));
            }
            let value = crate::state::codec::to_bytes(&stored).expect("sessions encode");
            state.put(SESSIONS, group, &entry, value);
        }
        Ok(())
    }
}
