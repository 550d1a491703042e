//! Event-time timers of keyed operators, kept in RocksDB in time order and counted
//! in memory, so a watermark scans RocksDB only when a timer is due.

use std::collections::BTreeMap;

use super::item::EventTime;
use super::keyed::KeyedState;
use crate::state::{KeyGroup, StateError, TableId};

/// The stored key of a timer: time, key, start (big-endian times sort by time).
pub(crate) fn timer_key(time: EventTime, key: &[u8], start: EventTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(&time.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&start.to_be_bytes());
    out
}

pub(crate) fn split_timer_key(stored: &[u8]) -> (EventTime, &[u8], EventTime) {
    let time = u64::from_be_bytes(stored[..8].try_into().expect("8 bytes"));
    let start = u64::from_be_bytes(stored[stored.len() - 8..].try_into().expect("8 bytes"));
    (time, &stored[8..stored.len() - 8], start)
}

/// A timer: when it is due, and the window (key and start) it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timer {
    pub(crate) group: KeyGroup,
    pub(crate) time: EventTime,
    pub(crate) key: Vec<u8>,
    pub(crate) start: EventTime,
}

impl Timer {
    pub(crate) fn new(group: KeyGroup, time: EventTime, key: &[u8], start: EventTime) -> Self {
        Self {
            group,
            time,
            key: key.to_vec(),
            start,
        }
    }

    pub(crate) fn stored_key(&self) -> Vec<u8> {
        timer_key(self.time, &self.key, self.start)
    }
}

/// The timers of one table, counted by time in memory (rebuilt from RocksDB after
/// a restore), so a watermark scans RocksDB only when a timer is due.
pub(crate) struct TimerIndex {
    table: TableId,
    loaded: bool,
    /// How many timers are set at each time: the earliest tells where a scan for due
    /// timers starts (a timer set at or below the watermark is due at the next one).
    due: BTreeMap<EventTime, u64>,
}

impl TimerIndex {
    pub(crate) fn new(table: TableId) -> Self {
        Self {
            table,
            loaded: false,
            due: BTreeMap::new(),
        }
    }

    pub(crate) fn load(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        if !self.loaded {
            for (_, stored, _) in state.scan_between(self.table, &[], &[0xff; 9])? {
                *self.due.entry(split_timer_key(&stored).0).or_default() += 1;
            }
            self.loaded = true;
        }
        Ok(())
    }

    /// Sets `timer` unless it is set.
    pub(crate) fn add(&mut self, state: &mut KeyedState, timer: &Timer) -> Result<(), StateError> {
        if state
            .get(self.table, timer.group, &timer.stored_key())?
            .is_none()
        {
            self.add_new(state, timer);
        }
        Ok(())
    }

    /// Sets a timer known not to be set yet.
    pub(crate) fn add_new(&mut self, state: &mut KeyedState, timer: &Timer) {
        *self.due.entry(timer.time).or_default() += 1;
        state.put(self.table, timer.group, &timer.stored_key(), Vec::new());
    }

    /// The timers due at `watermark`, removed: every timer at or below it, also one
    /// set at a time the watermark had already passed.
    pub(crate) fn take_due(
        &mut self,
        state: &mut KeyedState,
        watermark: EventTime,
    ) -> Result<Vec<Timer>, StateError> {
        let Some((&first, _)) = self.due.first_key_value() else {
            return Ok(Vec::new());
        };
        if first > watermark {
            return Ok(Vec::new());
        }
        let from = first.to_be_bytes();
        let to = watermark.saturating_add(1).to_be_bytes();
        let mut taken = Vec::new();
        for (group, stored, _) in state.scan_between(self.table, &from, &to)? {
            let (time, key, start) = split_timer_key(&stored);
            if time <= watermark {
                state.delete(self.table, group, &stored);
                taken.push(Timer::new(group, time, key, start));
            }
        }
        self.due.retain(|&time, _| time > watermark);
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_time_and_split_back() {
        let early = timer_key(5, b"user-a", 0);
        let late = timer_key(300, b"user-a", 290);
        assert!(early < late);
        assert_eq!(split_timer_key(&late), (300, &b"user-a"[..], 290));
    }
}
