//! Event-time windows over keyed streams: tumbling, hopping and session windows,
//! aggregated in memory and emitted when the watermark passes their end.
//!
//! A window `[start, end)` fires once the watermark reaches `end` (no record below
//! `end` can follow). With allowed lateness `L`, a tumbling or hopping window keeps
//! its state until the watermark reaches `end + L`; a late record in that time
//! updates it and emits the updated result at once. Records later than that are
//! dropped and counted (`strom_late_records_total`). Session windows do not take
//! late records.
//!
//! The open windows live in memory, by end and key: a record updates its window's
//! accumulator without touching RocksDB, and a watermark fires every window of each
//! end it passes (the ends are the timers: one per window end, not one per key).
//! At each checkpoint the windows changed since the last one are written to the
//! keyed state (and the ones gone since, deleted), so a snapshot holds every open
//! window; a restore reads them back, redistributed by key group like any keyed
//! state. Memory holds every open window: keys × windows open at once (a window
//! goes once the watermark passes its end and allowed lateness).
//!
//! The tables keep the layout of the format before issue 18, where every record
//! read and wrote RocksDB and each window had a timer in RocksDB: a restore of
//! such a snapshot takes its windows and sessions as they are and deletes its
//! timers (the in-memory ends replace them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::control::OperatorMetrics;
use super::item::EventTime;
use super::keyed::{KeyedLogic, KeyedState, StateWrites, encode_key};
use crate::state::{KeyGroup, StateError, TableId, codec};

/// The accumulators of tumbling and hopping windows: key, start, end.
const WINDOWS: TableId = TableId(1);
/// The sessions of each key.
const SESSIONS: TableId = TableId(2);
/// Before issue 18: windows waiting to fire (end, key, start). Deleted at restore.
const OLD_FIRE_TIMERS: TableId = TableId(3);
/// Before issue 18: fired windows kept for late records (end + lateness, key,
/// start). Deleted at restore.
const OLD_CLEANUP_TIMERS: TableId = TableId(4);

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

/// The stored key of a tumbling or hopping window: key, start, end.
fn window_key(key: &[u8], start: EventTime, end: EventTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(key);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    out
}

/// The key, start and end of a stored window key; `None` when it is too short.
fn split_window_key(stored: &[u8]) -> Option<(&[u8], EventTime, EventTime)> {
    let key_length = stored.len().checked_sub(16)?;
    let time = |at: usize| u64::from_be_bytes(stored[at..at + 8].try_into().expect("8 bytes"));
    Some((
        &stored[..key_length],
        time(key_length),
        time(key_length + 8),
    ))
}

/// A key's open sessions: `(start, end, accumulator)`, by start.
type Sessions<A> = Vec<(EventTime, EventTime, A)>;

/// Where an in-memory entry stands against the keyed state.
#[derive(Debug, Clone, Copy)]
struct Persistence {
    /// Changed since the last checkpoint wrote it.
    dirty: bool,
    /// Written at a checkpoint: its removal must be written too.
    stored: bool,
}

impl Persistence {
    /// Made since the last checkpoint.
    const NEW: Self = Self {
        dirty: true,
        stored: false,
    };
    /// Written, unchanged since.
    const STORED: Self = Self {
        dirty: false,
        stored: true,
    };
}

/// A tumbling or hopping window of one key.
struct Window<A> {
    group: KeyGroup,
    start: EventTime,
    value: A,
    persistence: Persistence,
}

/// The open sessions of one key.
struct KeySessions<A> {
    group: KeyGroup,
    sessions: Sessions<A>,
    persistence: Persistence,
}

/// Windows by encoded key, hashed with fixed keys: the same records in the same
/// order fire in the same order in every run (a sort by key took 30 % of a
/// one-second tumbling count's time).
type ByKey<V> = HashMap<Vec<u8>, V, BuildHasherDefault<DefaultHasher>>;

/// A stored entry to delete at the next checkpoint: table, key group, key.
type Removed = (TableId, KeyGroup, Vec<u8>);

/// The keyed logic of windowed aggregation (see the module docs).
pub struct WindowLogic<K, T, A, F> {
    key: F,
    timestamp: Box<dyn Fn(&T) -> EventTime>,
    kind: WindowKind,
    lateness: u64,
    aggregation: Aggregation<T, A>,
    watermark: EventTime,
    /// Tumbling and hopping windows, by end and encoded key.
    windows: BTreeMap<EventTime, ByKey<Window<A>>>,
    /// How many windows the last end to go had: the room a new end's map starts
    /// with (growing it from nothing rehashed it again and again).
    keys_per_end: usize,
    /// Session windows, by encoded key.
    sessions: HashMap<Vec<u8>, KeySessions<A>>,
    /// Every open session's end and key, in the order they fire (a key's
    /// sessions never share an end: they would overlap).
    session_ends: BTreeSet<(EventTime, Vec<u8>)>,
    /// Stored entries gone since the last checkpoint.
    removed: Vec<Removed>,
    /// The operator's name, for errors.
    operator: String,
    metrics: OperatorMetrics,
    types: PhantomData<fn() -> K>,
}

impl<K, T, A, F> WindowLogic<K, T, A, F> {
    /// Windows of `kind` over records keyed by `key` and timed by `timestamp`,
    /// for the operator `operator`.
    pub fn new(
        operator: &str,
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
            windows: BTreeMap::new(),
            keys_per_end: 0,
            sessions: HashMap::new(),
            session_ends: BTreeSet::new(),
            removed: Vec::new(),
            operator: operator.to_owned(),
            metrics,
            types: PhantomData,
        }
    }

    fn count_late(&self) {
        self.metrics.add_late_record();
    }

    fn is_session(&self) -> bool {
        matches!(self.kind, WindowKind::Session { .. })
    }
}

impl<K, T, A, F> WindowLogic<K, T, A, F>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + Clone + 'static,
{
    /// The result of a window of `table` (whose key failed to decode, if any).
    fn result(
        table: TableId,
        encoded: &[u8],
        start: EventTime,
        end: EventTime,
        value: A,
    ) -> Result<WindowResult<K, A>, StateError> {
        let key = decode(table, encoded)?;
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
        group: KeyGroup,
        encoded: Vec<u8>,
        (start, end): (EventTime, EventTime),
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        if end.saturating_add(self.lateness) <= self.watermark {
            self.count_late();
            return Ok(());
        }
        let fired = end <= self.watermark;
        let key_if_fired = fired.then(|| encoded.clone());
        let room = self.keys_per_end;
        let window = self
            .windows
            .entry(end)
            .or_insert_with(|| ByKey::with_capacity_and_hasher(room, Default::default()))
            .entry(encoded)
            .or_insert_with(|| Window {
                group,
                start,
                value: (self.aggregation.init)(),
                persistence: Persistence::NEW,
            });
        (self.aggregation.add)(&mut window.value, record);
        window.persistence.dirty = true;
        if let Some(encoded) = key_if_fired {
            // Already fired, still within the allowed lateness: fire again.
            out.push(Self::result(
                WINDOWS,
                &encoded,
                start,
                end,
                window.value.clone(),
            )?);
        }
        Ok(())
    }

    fn add_to_sessions(&mut self, record: &T, time: EventTime, group: KeyGroup, encoded: Vec<u8>) {
        let (mut start, mut end) = self.kind.assign(time)[0];
        if end <= self.watermark {
            self.count_late();
            return;
        }
        let mut accumulator = (self.aggregation.init)();
        (self.aggregation.add)(&mut accumulator, record);
        let entry = self
            .sessions
            .entry(encoded.clone())
            .or_insert_with(|| KeySessions {
                group,
                sessions: Vec::new(),
                persistence: Persistence::NEW,
            });
        let mut kept = Vec::with_capacity(entry.sessions.len() + 1);
        for (other_start, other_end, other) in entry.sessions.drain(..) {
            if other_start < end && start < other_end {
                start = start.min(other_start);
                end = end.max(other_end);
                self.session_ends.remove(&(other_end, encoded.clone()));
                accumulator = (self.aggregation.merge)(other, accumulator);
            } else {
                kept.push((other_start, other_end, other));
            }
        }
        kept.push((start, end, accumulator));
        kept.sort_by_key(|session| session.0);
        entry.sessions = kept;
        entry.persistence.dirty = true;
        self.session_ends.insert((end, encoded));
    }

    /// Fires the tumbling and hopping windows ending at or below `watermark` not
    /// fired yet, and forgets those past their allowed lateness.
    fn fire_windows(
        &mut self,
        watermark: EventTime,
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        let fired_until = self.watermark;
        // Windows past their lateness go, fired now if they were not yet.
        while let Some(first) = self.windows.first_entry() {
            if first.key().saturating_add(self.lateness) > watermark {
                break;
            }
            let (end, windows) = first.remove_entry();
            self.keys_per_end = windows.len();
            for (key, window) in windows {
                if window.persistence.stored {
                    let stored = window_key(&key, window.start, end);
                    self.removed.push((WINDOWS, window.group, stored));
                }
                if end > fired_until {
                    out.push(Self::result(
                        WINDOWS,
                        &key,
                        window.start,
                        end,
                        window.value,
                    )?);
                }
            }
        }
        // Windows fired now that stay for late records.
        for (&end, windows) in self.windows.range(fired_until.saturating_add(1)..) {
            if end > watermark {
                break;
            }
            for (key, window) in windows {
                out.push(Self::result(
                    WINDOWS,
                    key,
                    window.start,
                    end,
                    window.value.clone(),
                )?);
            }
        }
        Ok(())
    }

    /// Fires the sessions ending at or below `watermark`.
    fn fire_sessions(
        &mut self,
        watermark: EventTime,
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        while let Some((end, _)) = self.session_ends.first()
            && *end <= watermark
        {
            let (end, key) = self.session_ends.pop_first().expect("looked at above");
            let Some(entry) = self.sessions.get_mut(&key) else {
                continue;
            };
            let Some(index) = entry.sessions.iter().position(|session| session.1 == end) else {
                continue;
            };
            let (start, end, value) = entry.sessions.remove(index);
            entry.persistence.dirty = true;
            out.push(Self::result(SESSIONS, &key, start, end, value)?);
            if entry.sessions.is_empty() {
                let entry = self.sessions.remove(&key).expect("looked up above");
                if entry.persistence.stored {
                    self.removed.push((SESSIONS, entry.group, key));
                }
            }
        }
        Ok(())
    }

    /// Reads back the windows (or sessions) of a snapshot, and deletes the
    /// timer rows of the format before issue 18.
    fn restore_state(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        for table in [OLD_FIRE_TIMERS, OLD_CLEANUP_TIMERS] {
            for (group, key, _) in state.scan_table(table)? {
                state.delete(table, group, &key);
            }
        }
        let (other, held, ours) = if self.is_session() {
            (WINDOWS, "tumbling or hopping", "session")
        } else {
            (SESSIONS, "session", "tumbling or hopping")
        };
        if !state.scan_table(other)?.is_empty() {
            return Err(StateError::Operator {
                operator: self.operator.clone(),
                message: format!(
                    "the restored state holds {held} windows, and this operator has {ours} windows; \
                     restore a savepoint taken with the same kind of window, or start without one"
                ),
            });
        }
        if self.is_session() {
            self.restore_sessions(state)
        } else {
            self.restore_windows(state)
        }
    }

    fn restore_windows(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        for (group, stored, value) in state.scan_table(WINDOWS)? {
            let Some((key, start, end)) = split_window_key(&stored) else {
                return Err(StateError::Decode {
                    table: WINDOWS,
                    source: serde::de::Error::custom("a window key shorter than its times"),
                });
            };
            if end.saturating_add(self.lateness) <= self.watermark {
                // Past its lateness (the old format's cleanup timer was due).
                state.delete(WINDOWS, group, &stored);
                continue;
            }
            let value: A = decode(WINDOWS, &value)?;
            let windows = self.windows.entry(end).or_default();
            match windows.get_mut(key) {
                // Two windows of a key with one end and other starts: the window
                // size changed. They merge into the first, the other is deleted.
                Some(window) => {
                    let first = std::mem::replace(&mut window.value, (self.aggregation.init)());
                    window.value = (self.aggregation.merge)(first, value);
                    window.persistence.dirty = true;
                    self.removed.push((WINDOWS, group, stored.clone()));
                }
                None => {
                    let window = Window {
                        group,
                        start,
                        value,
                        persistence: Persistence::STORED,
                    };
                    windows.insert(key.to_vec(), window);
                }
            }
        }
        Ok(())
    }

    fn restore_sessions(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        for (group, key, value) in state.scan_table(SESSIONS)? {
            let sessions: Sessions<A> = decode(SESSIONS, &value)?;
            for (_, end, _) in &sessions {
                self.session_ends.insert((*end, key.clone()));
            }
            let entry = KeySessions {
                group,
                sessions,
                persistence: Persistence::STORED,
            };
            self.sessions.insert(key, entry);
        }
        Ok(())
    }

    /// Writes the windows and sessions changed since the last checkpoint, and
    /// deletes the stored ones gone since, sorted by key, past the value cache.
    fn persist(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        let mut writes = StateWrites::default();
        // Deletions first: a key gone and made again is written after.
        for (table, group, key) in self.removed.drain(..) {
            writes.delete(table, group, &key);
        }
        let deleted = writes.len();
        for (&end, windows) in &mut self.windows {
            for (key, window) in windows.iter_mut() {
                if window.persistence.dirty {
                    let stored = window_key(key, window.start, end);
                    writes.put_value(WINDOWS, window.group, &stored, &window.value);
                    window.persistence = Persistence::STORED;
                }
            }
        }
        for (key, entry) in &mut self.sessions {
            if entry.persistence.dirty {
                writes.put_value(SESSIONS, entry.group, key, &entry.sessions);
                entry.persistence = Persistence::STORED;
            }
        }
        tracing::debug!(
            operator = self.operator,
            deleted,
            written = writes.len() - deleted,
            window_ends = self.windows.len(),
            sessions = self.sessions.len(),
            "windows persisted"
        );
        state.write_through(writes)
    }
}

fn decode<V: DeserializeOwned>(table: TableId, bytes: &[u8]) -> Result<V, StateError> {
    codec::from_bytes(bytes).map_err(|source| StateError::Decode { table, source })
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
        let time = (self.timestamp)(&record);
        let encoded = encode_key(&(self.key)(&record));
        let group = state.key_group(&encoded);
        if self.is_session() {
            self.add_to_sessions(&record, time, group, encoded);
            return Ok(());
        }
        // The encoded key is moved into the last window's entry, copied into
        // the others' (a tumbling window takes it without a copy).
        let mut windows = self.kind.assign(time);
        let last = windows.pop().expect("a time is in at least one window");
        for window in windows {
            self.add_to_window(&record, group, encoded.clone(), window, out)?;
        }
        self.add_to_window(&record, group, encoded, last, out)
    }

    fn resume_from_watermark(&mut self, watermark: EventTime) {
        self.watermark = watermark;
    }

    fn restore(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.restore_state(state)
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        _state: &mut KeyedState,
        out: &mut Vec<WindowResult<K, A>>,
    ) -> Result<(), StateError> {
        if self.is_session() {
            self.fire_sessions(watermark, out)?;
        } else {
            self.fire_windows(watermark, out)?;
        }
        self.watermark = self.watermark.max(watermark);
        Ok(())
    }

    fn before_snapshot(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.persist(state)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::exec::control::JobControl;
    use crate::exec::timers::timer_key;

    type Counting = WindowLogic<u64, (u64, u64), u64, fn(&(u64, u64)) -> u64>;

    /// Counts `(key, time)` records in windows of `kind`.
    fn counting(kind: WindowKind, lateness: u64) -> Counting {
        WindowLogic::new(
            "windows",
            |record: &(u64, u64)| record.0,
            Box::new(|record: &(u64, u64)| record.1),
            kind,
            Duration::from_millis(lateness),
            Aggregation {
                init: Box::new(|| 0),
                add: Box::new(|count, _| *count += 1),
                merge: Box::new(|a, b| a + b),
            },
            OperatorMetrics::new(Arc::new(JobControl::default()), "windows", 0),
        )
    }

    fn tumbling(size: u64) -> WindowKind {
        WindowKind::Tumbling {
            size: Duration::from_millis(size),
        }
    }

    fn session(gap: u64) -> WindowKind {
        WindowKind::Session {
            gap: Duration::from_millis(gap),
        }
    }

    /// `(key, start, end, count)` of each result.
    type Fired = Vec<(u64, u64, u64, u64)>;

    fn add(logic: &mut Counting, state: &mut KeyedState, records: &[(u64, u64)]) -> Fired {
        let mut out = Vec::new();
        for record in records {
            logic.on_record(*record, state, &mut out).unwrap();
        }
        as_tuples(out)
    }

    fn watermark(logic: &mut Counting, state: &mut KeyedState, at: u64) -> Fired {
        let mut out = Vec::new();
        logic.on_watermark(at, state, &mut out).unwrap();
        as_tuples(out)
    }

    /// The results, sorted: windows of one end fire in no particular order.
    fn as_tuples(out: Vec<WindowResult<u64, u64>>) -> Fired {
        let mut fired: Fired = out
            .into_iter()
            .map(|r| (r.key, r.start, r.end, r.value))
            .collect();
        fired.sort_unstable();
        fired
    }

    /// What `table` holds: (key, start, end) of windows, or the key of sessions.
    fn stored(state: &mut KeyedState, table: TableId) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = state
            .scan_table(table)
            .unwrap()
            .into_iter()
            .map(|(_, key, _)| key)
            .collect();
        keys.sort();
        keys
    }

    /// A new operator over the same state, as after a restore from a snapshot
    /// taken at `watermark`.
    fn restored(kind: WindowKind, lateness: u64, state: &mut KeyedState, at: u64) -> Counting {
        let mut logic = counting(kind, lateness);
        logic.resume_from_watermark(at);
        logic.restore(state).unwrap();
        logic
    }

    #[test]
    fn tumbling_and_hopping_windows_hold_the_right_times() {
        let tumbling = tumbling(10);
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

    /// Issue 18: records touch no RocksDB (the windows are in memory); a
    /// checkpoint writes the windows changed since the last one and deletes the
    /// ones gone; a restore from it fires what the running operator would have.
    #[test]
    fn windows_are_written_at_checkpoints_only_and_a_restore_fires_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let mut logic = counting(tumbling(10), 0);
        let records = [(1, 3), (2, 4), (1, 8), (1, 12), (3, 25)];
        assert!(add(&mut logic, &mut state, &records).is_empty());
        assert!(
            stored(&mut state, WINDOWS).is_empty(),
            "no write per record"
        );
        assert_eq!(
            watermark(&mut logic, &mut state, 10),
            [(1, 0, 10, 2), (2, 0, 10, 1)]
        );
        logic.before_snapshot(&mut state).unwrap();
        let after_first = stored(&mut state, WINDOWS);
        assert_eq!(
            after_first,
            [
                window_key(&encode_key(&1u64), 10, 20),
                window_key(&encode_key(&3u64), 20, 30)
            ]
        );
        // One more record in a stored window, then the snapshot is restored.
        assert!(add(&mut logic, &mut state, &[(1, 15)]).is_empty());
        logic.before_snapshot(&mut state).unwrap();
        let mut again = restored(tumbling(10), 0, &mut state, 10);
        let expected = [(1, 10, 20, 2)];
        assert_eq!(watermark(&mut logic, &mut state, 20), expected);
        assert_eq!(watermark(&mut again, &mut state, 20), expected);
        // A fired stored window is deleted at the next checkpoint.
        again.before_snapshot(&mut state).unwrap();
        assert_eq!(
            stored(&mut state, WINDOWS),
            [window_key(&encode_key(&3u64), 20, 30)]
        );
        assert_eq!(watermark(&mut again, &mut state, 30), [(3, 20, 30, 1)]);
        again.before_snapshot(&mut state).unwrap();
        assert!(stored(&mut state, WINDOWS).is_empty());
    }

    /// A fired window stays (in memory and at checkpoints) for its allowed
    /// lateness: a late record fires it again, also after a restore; past the
    /// lateness the record is dropped and the window's entry deleted.
    #[test]
    fn a_fired_window_takes_late_records_until_its_lateness_also_after_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let mut logic = counting(tumbling(10), 20);
        add(&mut logic, &mut state, &[(7, 1), (7, 2)]);
        assert_eq!(watermark(&mut logic, &mut state, 15), [(7, 0, 10, 2)]);
        assert_eq!(add(&mut logic, &mut state, &[(7, 5)]), [(7, 0, 10, 3)]);
        logic.before_snapshot(&mut state).unwrap();
        let mut again = restored(tumbling(10), 20, &mut state, 15);
        assert!(
            watermark(&mut again, &mut state, 20).is_empty(),
            "fired once"
        );
        assert_eq!(add(&mut again, &mut state, &[(7, 9)]), [(7, 0, 10, 4)]);
        // A window first seen after its end, within the lateness.
        assert_eq!(add(&mut again, &mut state, &[(8, 9)]), [(8, 0, 10, 1)]);
        assert!(watermark(&mut again, &mut state, 30).is_empty());
        assert!(
            add(&mut again, &mut state, &[(7, 9)]).is_empty(),
            "too late"
        );
        again.before_snapshot(&mut state).unwrap();
        assert!(stored(&mut state, WINDOWS).is_empty());
        assert!(again.windows.is_empty());
    }

    /// Sessions merge in memory, are written at checkpoints and restored; a
    /// merged session fires once, at its end.
    #[test]
    fn sessions_merge_fire_once_and_survive_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let mut logic = counting(session(10), 0);
        add(&mut logic, &mut state, &[(1, 0), (1, 15), (2, 5)]);
        assert!(
            stored(&mut state, SESSIONS).is_empty(),
            "no write per record"
        );
        // (1, 8) joins [0, 10) and [15, 25) into [0, 25).
        add(&mut logic, &mut state, &[(1, 8)]);
        // One index entry per open session, however many records grew it.
        assert_eq!(logic.session_ends.len(), 2);
        logic.before_snapshot(&mut state).unwrap();
        assert_eq!(stored(&mut state, SESSIONS).len(), 2);
        let mut again = restored(session(10), 0, &mut state, 0);
        for logic in [&mut logic, &mut again] {
            assert!(watermark(logic, &mut state, 10).is_empty());
            assert_eq!(watermark(logic, &mut state, 15), [(2, 5, 15, 1)]);
            assert_eq!(watermark(logic, &mut state, 25), [(1, 0, 25, 3)]);
            assert!(watermark(logic, &mut state, 100).is_empty());
            assert!(add(logic, &mut state, &[(1, 19)]).is_empty(), "late");
        }
        again.before_snapshot(&mut state).unwrap();
        assert!(stored(&mut state, SESSIONS).is_empty());
    }

    /// State of one kind of window restored into an operator of another kind is
    /// refused, naming both (its windows could never fire).
    #[test]
    fn a_restore_into_another_kind_of_window_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let mut logic = counting(session(10), 0);
        add(&mut logic, &mut state, &[(1, 0)]);
        logic.before_snapshot(&mut state).unwrap();
        let mut tumbling = counting(tumbling(10), 0);
        let error = tumbling.restore(&mut state).unwrap_err().to_string();
        assert!(
            error.contains("holds session windows")
                && error.contains("has tumbling or hopping windows"),
            "{error}"
        );
        let mut again = counting(session(10), 0);
        again.restore(&mut state).unwrap();
    }

    /// A snapshot of the format before issue 18 (a window per entry and a timer
    /// per window in RocksDB) restores: its windows fire at their ends, its
    /// timers are deleted, and fired windows past their lateness are dropped.
    #[test]
    fn a_snapshot_of_the_format_with_timers_in_rocksdb_restores() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let put_old = |state: &mut KeyedState, key: u64, start: u64, end: u64, count: u64| {
            let encoded = encode_key(&key);
            let group = state.key_group(&encoded);
            let stored = window_key(&encoded, start, end);
            state.put_value(WINDOWS, group, &stored, &count);
            group
        };
        // Watermark 25, lateness 10: [10, 20) fired and kept until 30, [0, 10)'s
        // cleanup timer was due, [20, 30) and [30, 40) wait for their ends.
        let old = put_old(&mut state, 1, 0, 10, 4);
        let fired = put_old(&mut state, 1, 10, 20, 2);
        let waiting = put_old(&mut state, 2, 20, 30, 5);
        let later = put_old(&mut state, 3, 30, 40, 1);
        let one = encode_key(&1u64);
        state.put(OLD_CLEANUP_TIMERS, old, &timer_key(20, &one, 0), Vec::new());
        state.put(
            OLD_CLEANUP_TIMERS,
            fired,
            &timer_key(30, &one, 10),
            Vec::new(),
        );
        let two = encode_key(&2u64);
        state.put(
            OLD_FIRE_TIMERS,
            waiting,
            &timer_key(30, &two, 20),
            Vec::new(),
        );
        let three = encode_key(&3u64);
        state.put(
            OLD_FIRE_TIMERS,
            later,
            &timer_key(40, &three, 30),
            Vec::new(),
        );
        let mut logic = restored(tumbling(10), 10, &mut state, 25);
        assert!(stored(&mut state, OLD_FIRE_TIMERS).is_empty());
        assert!(stored(&mut state, OLD_CLEANUP_TIMERS).is_empty());
        assert_eq!(add(&mut logic, &mut state, &[(1, 15)]), [(1, 10, 20, 3)]);
        assert!(
            add(&mut logic, &mut state, &[(1, 5)]).is_empty(),
            "too late"
        );
        assert_eq!(watermark(&mut logic, &mut state, 30), [(2, 20, 30, 5)]);
        assert_eq!(watermark(&mut logic, &mut state, 40), [(3, 30, 40, 1)]);
        assert!(watermark(&mut logic, &mut state, 60).is_empty());
        logic.before_snapshot(&mut state).unwrap();
        assert!(stored(&mut state, WINDOWS).is_empty());
    }
}
