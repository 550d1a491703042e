//! Event-time windows over keyed streams: tumbling, hopping and session windows,
//! aggregated incrementally in RocksDB and emitted when the watermark passes their
//! end.
//!
//! A window `[start, end)` fires once the watermark reaches `end` (no record below
//! `end` can follow). With allowed lateness `L`, a tumbling or hopping window keeps
//! its state until the watermark reaches `end + L`; a late record in that time
//! updates it and emits the updated result at once. Records later than that are
//! dropped and counted (`strom_late_records_total`). Session windows do not take
//! late records.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::control::OperatorMetrics;
use super::item::EventTime;
use super::keyed::{KeyedLogic, KeyedState, encode_key};
use super::timers::{Timer, TimerIndex};
use crate::state::{KeyGroup, StateError, TableId, codec};

/// The accumulators of tumbling and hopping windows: key, start, end.
const WINDOWS: TableId = TableId(1);
/// The sessions of each key.
const SESSIONS: TableId = TableId(2);
/// Windows waiting to fire: end, key, start.
const FIRE_TIMERS: TableId = TableId(3);
/// Fired windows whose state is kept for late records: end + lateness, key, start.
const CLEANUP_TIMERS: TableId = TableId(4);

/// How records are grouped into windows by event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Back-to-back windows of `size`.
    Tumbling {
        /// Window length.
        size: Duration,
    },
    /// Windows of `size` starting every `slide` (a record is in size/slide windows).
    Hopping {
        /// Window length.
        size: Duration,
        /// Distance between window starts.
        slide: Duration,
    },
    /// A key's records no more than `gap` apart, in one window.
    Session {
        /// The gap that ends a session.
        gap: Duration,
    },
}

/// Millisecond length of a duration, at least 1.
fn millis(duration: Duration) -> u64 {
    (duration.as_millis() as u64).max(1)
}

impl WindowKind {
    /// The `[start, end)` windows (tumbling or hopping) holding event time `time`.
    fn assign(self, time: EventTime) -> Vec<(EventTime, EventTime)> {
        match self {
            WindowKind::Tumbling { size } => {
                let size = millis(size);
                let start = time - time % size;
                vec![(start, start + size)]
            }
            WindowKind::Hopping { size, slide } => {
                let (size, slide) = (millis(size), millis(slide));
                let last = time - time % slide;
                let mut windows = Vec::new();
                let mut start = last;
                loop {
                    if start + size > time {
                        windows.push((start, start + size));
                    }
                    if start < slide || start + size <= time {
                        break;
                    }
                    start -= slide;
                }
                windows.reverse();
                windows
            }
            WindowKind::Session { gap } => vec![(time, time + millis(gap))],
        }
    }
}

/// One window's result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WindowResult<K, A> {
    /// The key.
    pub key: K,
    /// Start of the window (inclusive), in milliseconds.
    pub start: EventTime,
    /// End of the window (exclusive), in milliseconds.
    pub end: EventTime,
    /// The aggregate of the window's records.
    pub value: A,
}

/// Adds a record to a window's accumulator.
pub type AddFn<T, A> = Box<dyn Fn(&mut A, &T)>;

/// How a window's records are aggregated.
pub struct Aggregation<T, A> {
    /// The accumulator of an empty window.
    pub init: Box<dyn Fn() -> A>,
    /// Adds a record to an accumulator.
    pub add: AddFn<T, A>,
    /// Merges two accumulators (session windows that grow together).
    pub merge: Box<dyn Fn(A, A) -> A>,
}

fn window_key(key: &[u8], start: EventTime, end: EventTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(key);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    out
}

/// A key's open sessions: `(start, end, accumulator)`, by start.
type Sessions<A> = Vec<(EventTime, EventTime, A)>;

/// The keyed logic of windowed aggregation.
pub struct WindowLogic<K, T, A, F> {
    key: F,
    timestamp: Box<dyn Fn(&T) -> EventTime>,
    kind: WindowKind,
    lateness: u64,
    aggregation: Aggregation<T, A>,
    watermark: EventTime,
    fire: TimerIndex,
    cleanup: TimerIndex,
    metrics: OperatorMetrics,
    types: PhantomData<fn() -> K>,
}

impl<K, T, A, F> WindowLogic<K, T, A, F> {
    /// Windows of `kind` over records keyed by `key` and timed by `timestamp`.
    pub fn new(
        key: F,
        timestamp: Box<dyn Fn(&T) -> EventTime>,
        kind: WindowKind,
        allowed_lateness: Duration,
        aggregation: Aggregation<T, A>,
        metrics: OperatorMetrics,
    ) -> Self {
        Self {
            key,
            timestamp,
            kind,
            lateness: allowed_lateness.as_millis() as u64,
            aggregation,
            watermark: 0,
            fire: TimerIndex::new(FIRE_TIMERS),
            cleanup: TimerIndex::new(CLEANUP_TIMERS),
            metrics,
            types: PhantomData,
        }
    }

    fn count_late(&self) {
        self.metrics.add_late_record();
    }
}

impl<K, T, A, F> WindowLogic<K, T, A, F>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + Clone + 'static,
{
    fn result(
        encoded: &[u8],
        start: EventTime,
        end: EventTime,
        value: A,
    ) -> Result<WindowResult<K, A>, StateError> {
        let key = codec::from_bytes(encoded).map_err(|source| StateError::Decode {
            table: WINDOWS,
            source,
        })?;
        Ok(WindowResult {
            key,
            start,
            end,
            value,
        })
    }

    fn add_to_window(
        &mut self,
        record: &T,
        state: &mut KeyedState,
        group: KeyGroup,
        encoded: &[u8],
        (start, end): (EventTime, EventTime),
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        if end.saturating_add(self.lateness) <= self.watermark {
            self.count_late();
            return Ok(());
        }
        let stored = window_key(encoded, start, end);
        let existing = state.get_value::<A>(WINDOWS, group, &stored)?;
        let is_new = existing.is_none();
        let mut accumulator = existing.unwrap_or_else(|| (self.aggregation.init)());
        (self.aggregation.add)(&mut accumulator, record);
        state.put_value(WINDOWS, group, &stored, &accumulator);
        if end <= self.watermark {
            // Already fired, still within the allowed lateness: fire again.
            out.push(Self::result(encoded, start, end, accumulator)?);
        } else if is_new {
            // A window's timer is set with its first record.
            self.fire
                .add_new(state, &Timer::new(group, end, encoded, start));
        }
        Ok(())
    }

    fn add_to_sessions(
        &mut self,
        record: &T,
        time: EventTime,
        state: &mut KeyedState,
        group: KeyGroup,
        encoded: &[u8],
    ) -> Result<(), StateError> {
        let (mut start, mut end) = self.kind.assign(time)[0];
        if end <= self.watermark {
            self.count_late();
            return Ok(());
        }
        let mut accumulator = (self.aggregation.init)();
        (self.aggregation.add)(&mut accumulator, record);
        let sessions: Sessions<A> = state
            .get_value(SESSIONS, group, encoded)?
            .unwrap_or_default();
        let mut kept = Vec::with_capacity(sessions.len() + 1);
        for (other_start, other_end, other) in sessions {
            if other_start < end && start < other_end {
                let merged = Timer::new(group, other_end, encoded, other_start);
                self.fire.remove(state, &merged)?;
                start = start.min(other_start);
                end = end.max(other_end);
                accumulator = (self.aggregation.merge)(other, accumulator);
            } else {
                kept.push((other_start, other_end, other));
            }
        }
        self.fire
            .add(state, &Timer::new(group, end, encoded, start))?;
        kept.push((start, end, accumulator));
        kept.sort_by_key(|session| session.0);
        state.put_value(SESSIONS, group, encoded, &kept);
        Ok(())
    }
}

impl<K, T, A, F> KeyedLogic<T, WindowResult<K, A>> for WindowLogic<K, T, A, F>
where
    K: Serialize + DeserializeOwned + 'static,
    T: 'static,
    A: Serialize + DeserializeOwned + Clone + 'static,
    F: Fn(&T) -> K + 'static,
{
    fn on_record(
        &mut self,
        record: T,
        state: &mut KeyedState,
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        self.fire.load(state)?;
        self.cleanup.load(state)?;
        let time = (self.timestamp)(&record);
        let encoded = encode_key(&(self.key)(&record));
        let group = state.key_group(&encoded);
        if matches!(self.kind, WindowKind::Session { .. }) {
            return self.add_to_sessions(&record, time, state, group, &encoded);
        }
        for window in self.kind.assign(time) {
            self.add_to_window(&record, state, group, &encoded, window, out)?;
        }
        Ok(())
    }

    fn resume_from_watermark(&mut self, watermark: EventTime) {
        self.watermark = watermark;
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        state: &mut KeyedState,
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        self.fire.load(state)?;
        self.cleanup.load(state)?;
        self.watermark = watermark;
        for timer in self.fire.take_due(state, watermark)? {
            let Timer {
                group,
                time: end,
                key: encoded,
                start,
            } = timer;
            if matches!(self.kind, WindowKind::Session { .. }) {
                let mut sessions: Sessions<A> = state
                    .get_value(SESSIONS, group, &encoded)?
                    .unwrap_or_default();
                if let Some(index) = sessions.iter().position(|s| s.0 == start && s.1 == end) {
                    let (_, _, value) = sessions.remove(index);
                    out.push(Self::result(&encoded, start, end, value)?);
                }
                if sessions.is_empty() {
                    state.delete(SESSIONS, group, &encoded);
                } else {
                    state.put_value(SESSIONS, group, &encoded, &sessions);
                }
                continue;
            }
            let stored = window_key(&encoded, start, end);
            if let Some(value) = state.get_value::<A>(WINDOWS, group, &stored)? {
                out.push(Self::result(&encoded, start, end, value)?);
            }
            if self.lateness == 0 {
                state.delete(WINDOWS, group, &stored);
            } else {
                let until = end.saturating_add(self.lateness);
                self.cleanup
                    .add(state, &Timer::new(group, until, &encoded, start))?;
            }
        }
        for timer in self.cleanup.take_due(state, watermark)? {
            let end = match self.kind {
                WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                    timer.start + millis(size)
                }
                WindowKind::Session { .. } => continue,
            };
            let stored = window_key(&timer.key, timer.start, end);
            state.delete(WINDOWS, timer.group, &stored);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_hopping_windows_hold_the_right_times() {
        let tumbling = WindowKind::Tumbling {
            size: Duration::from_millis(10),
        };
        assert_eq!(tumbling.assign(0), vec![(0, 10)]);
        assert_eq!(tumbling.assign(19), vec![(10, 20)]);
        let hopping = WindowKind::Hopping {
            size: Duration::from_millis(10),
            slide: Duration::from_millis(5),
        };
        assert_eq!(hopping.assign(12), vec![(5, 15), (10, 20)]);
        assert_eq!(hopping.assign(3), vec![(0, 10)]);
        assert_eq!(hopping.assign(5), vec![(0, 10), (5, 15)]);
    }
}
