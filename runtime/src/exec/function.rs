//! Keyed process functions: user code per record and per timer, with the key's
//! value, map and list state and event-time timers — Flink's KeyedProcessFunction.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::item::EventTime;
use super::keyed::{KeyedLogic, KeyedState, encode_key};
use super::timers::{Timer, TimerIndex};
use crate::state::{KeyGroup, StateError, TableId, codec};

/// The value state of process functions.
const VALUES: TableId = TableId(10);
/// Map state: key, then map key.
const MAPS: TableId = TableId(11);
/// List state.
const LISTS: TableId = TableId(12);
/// Event-time timers: time, key.
const TIMERS: TableId = TableId(13);

/// What a keyed process function does with each record and each timer that fires.
pub trait KeyedFunction<K, T, O>: 'static {
    /// Handles a record of `key`.
    fn process(
        &mut self,
        key: &K,
        record: T,
        state: &mut KeyState<'_>,
        out: &mut Vec<O>,
    ) -> Result<(), StateError>;

    /// Handles a timer of `key` set for `time`, once the watermark has reached it.
    fn on_timer(
        &mut self,
        _key: &K,
        _time: EventTime,
        _state: &mut KeyState<'_>,
        _out: &mut Vec<O>,
    ) -> Result<(), StateError> {
        Ok(())
    }
}

/// The state of one key, as a process function sees it.
pub struct KeyState<'a> {
    state: &'a mut KeyedState,
    timers: &'a mut TimerIndex,
    group: KeyGroup,
    key: &'a [u8],
    watermark: EventTime,
}

/// The first byte string after every string that starts with `prefix`; `None` when
/// there is none (the prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn encode<V: Serialize>(value: &V) -> Vec<u8> {
    codec::to_bytes(value)
        .expect("state keys and values encode: sequences and maps in them know their length")
}

fn decode<V: DeserializeOwned>(table: TableId, bytes: &[u8]) -> Result<V, StateError> {
    codec::from_bytes(bytes).map_err(|source| StateError::Decode { table, source })
}

impl KeyState<'_> {
    /// The operator's current watermark.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// The key's value.
    pub fn value<V: DeserializeOwned>(&self) -> Result<Option<V>, StateError> {
        self.state.get_value(VALUES, self.group, self.key)
    }

    /// Sets the key's value.
    pub fn set_value<V: Serialize>(&mut self, value: &V) {
        self.state.put_value(VALUES, self.group, self.key, value);
    }

    /// Removes the key's value.
    pub fn clear_value(&mut self) {
        self.state.delete(VALUES, self.group, self.key);
    }

    fn map_key<M: Serialize>(&self, map_key: &M) -> Vec<u8> {
        let mut stored = self.key.to_vec();
        stored.extend(encode(map_key));
        stored
    }

    /// The value under `map_key` in the key's map.
    pub fn map_get<M: Serialize, V: DeserializeOwned>(
        &self,
        map_key: &M,
    ) -> Result<Option<V>, StateError> {
        self.state
            .get_value(MAPS, self.group, &self.map_key(map_key))
    }

    /// Sets `map_key` to `value` in the key's map.
    pub fn map_put<M: Serialize, V: Serialize>(&mut self, map_key: &M, value: &V) {
        let stored = self.map_key(map_key);
        self.state.put_value(MAPS, self.group, &stored, value);
    }

    /// Removes `map_key` from the key's map.
    pub fn map_remove<M: Serialize>(&mut self, map_key: &M) {
        let stored = self.map_key(map_key);
        self.state.delete(MAPS, self.group, &stored);
    }

    /// Every entry of the key's map, in the order of the map keys' encodings.
    pub fn map_entries<M: DeserializeOwned, V: DeserializeOwned>(
        &mut self,
    ) -> Result<Vec<(M, V)>, StateError> {
        let end = prefix_end(self.key);
        let entries = self
            .state
            .scan_group(MAPS, self.group, self.key, end.as_deref())?;
        entries
            .into_iter()
            .map(|(stored, value)| {
                Ok((
                    decode(MAPS, &stored[self.key.len()..])?,
                    decode(MAPS, &value)?,
                ))
            })
            .collect()
    }

    /// The key's list.
    pub fn list<V: DeserializeOwned>(&self) -> Result<Vec<V>, StateError> {
        Ok(self
            .state
            .get_value(LISTS, self.group, self.key)?
            .unwrap_or_default())
    }

    /// Appends `value` to the key's list.
    pub fn list_push<V: Serialize + DeserializeOwned>(
        &mut self,
        value: V,
    ) -> Result<(), StateError> {
        let mut list: Vec<V> = self.list()?;
        list.push(value);
        self.state.put_value(LISTS, self.group, self.key, &list);
        Ok(())
    }

    /// Replaces the key's list.
    pub fn set_list<V: Serialize>(&mut self, values: &[V]) {
        if values.is_empty() {
            self.state.delete(LISTS, self.group, self.key);
        } else {
            self.state.put_value(LISTS, self.group, self.key, &values);
        }
    }

    /// Asks for `on_timer(key, time)` once the watermark reaches `time` (once per
    /// key and time, however often it is asked).
    pub fn register_timer(&mut self, time: EventTime) -> Result<(), StateError> {
        self.timers
            .add(self.state, &Timer::new(self.group, time, self.key, 0))
    }
}

/// The keyed logic running a [`KeyedFunction`].
pub struct FunctionLogic<K, F, P> {
    key: F,
    function: P,
    timers: TimerIndex,
    watermark: EventTime,
    types: PhantomData<fn() -> K>,
}

impl<K, F, P> FunctionLogic<K, F, P> {
    /// Runs `function` on records keyed by `key`.
    pub fn new(key: F, function: P) -> Self {
        Self {
            key,
            function,
            timers: TimerIndex::new(TIMERS),
            watermark: 0,
            types: PhantomData,
        }
    }
}

impl<K, T, O, F, P> KeyedLogic<T, O> for FunctionLogic<K, F, P>
where
    K: Serialize + DeserializeOwned + 'static,
    F: Fn(&T) -> K + 'static,
    P: KeyedFunction<K, T, O>,
{
    fn on_record(
        &mut self,
        record: T,
        state: &mut KeyedState,
        out: &mut Vec<O>,
    ) -> Result<(), StateError> {
        self.timers.load(state)?;
        let key = (self.key)(&record);
        let encoded = encode_key(&key);
        let group = state.key_group(&encoded);
        let mut key_state = KeyState {
            state,
            timers: &mut self.timers,
            group,
            key: &encoded,
            watermark: self.watermark,
        };
        self.function.process(&key, record, &mut key_state, out)
    }

    fn resume_from_watermark(&mut self, watermark: EventTime) {
        self.watermark = watermark;
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        state: &mut KeyedState,
        out: &mut Vec<O>,
    ) -> Result<(), StateError> {
        self.timers.load(state)?;
        self.watermark = watermark;
        for timer in self.timers.take_due(state, watermark)? {
            let key: K = decode(TIMERS, &timer.key)?;
            let mut key_state = KeyState {
                state,
                timers: &mut self.timers,
                group: timer.group,
                key: &timer.key,
                watermark,
            };
            self.function
                .on_timer(&key, timer.time, &mut key_state, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_string_past_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
