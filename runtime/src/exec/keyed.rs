//! Keyed stateful operators: records routed by key group, state per key in RocksDB,
//! applied epoch by epoch and snapshotted at every epoch boundary. What an operator
//! does with its records and watermarks is a [`KeyedLogic`]; this module drives it.
//!
//! Epoch-exact snapshots: items of epoch e+1 may arrive before the input frontier
//! has passed e. The driver applies an item once every earlier epoch is applied
//! (items of the current epoch at once, later ones stashed in arrival order), and
//! snapshots epoch e when the frontier passes it, so the snapshot of e holds exactly
//! the effect of epochs up to e.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::marker::PhantomData;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use rocksdb::WriteBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;
use timely::ExchangeData;
use timely::dataflow::Stream;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::context::TaskContext;
use super::control::OperatorLabel;
use super::exchange::by_subtask;
use super::item::{EventTime, Item, Watermark, WatermarkTracker, fan_out_watermarks};
use super::snapshot::Uploader;
use crate::checkpoint::{SnapshotAck, SnapshotFile, SubtaskSnapshot, download_files};
use crate::state::store::Entry;
use crate::state::{
    KeyGroup, KeyGroupRange, KeyedStore, LocalTableFile, RestoreSource, StateError, TableId, codec,
    store_key,
};

/// The table holding each key's value state (of `process`, `count`, `reduce`).
pub const VALUE_TABLE: TableId = TableId(0);

/// Encodes a key to the stable bytes that are hashed to its key group and stored.
pub fn encode_key<K: Serialize>(key: &K) -> Vec<u8> {
    codec::to_bytes(key).expect("keys encode: sequences and maps in keys know their length")
}

/// Opens the operator's store: restored from the job's restore point when it has
/// state for this operator, empty otherwise.
fn open_store(ctx: &TaskContext, operator: &str) -> Result<KeyedStore, StateError> {
    let dir = ctx.operator_dir(operator);
    let range = ctx.partitioning().key_groups_of(ctx.subtask);
    let Some(restore) = &ctx.restore else {
        return KeyedStore::create(&dir.join("db"), range);
    };
    let Some(old_subtasks) = restore.manifest.operators.get(operator) else {
        return KeyedStore::create(&dir.join("db"), range);
    };
    let started = std::time::Instant::now();
    // The old subtasks holding some of this subtask's key groups: what to fetch of
    // each, and where to.
    let fetches: Vec<_> = old_subtasks
        .iter()
        .filter_map(|old| {
            let old_range = old.key_groups?;
            (!old_range.intersection(range).is_empty()).then(|| {
                let local = dir.join(format!("restore-{}", old.subtask));
                (old_range, files_to_fetch(&old.files, range), local)
            })
        })
        .collect();
    let downloads = fetches.iter().map(|(_, files, local)| async move {
        download_files(&restore.store, &restore.location.base, files, local)
            .await
            .map_err(|error| StateError::Io {
                operation: "download snapshot",
                path: local.clone(),
                source: std::io::Error::other(error.to_string()),
            })
    });
    // Two old subtasks at a time, each four files at a time.
    let downloaded = ctx.io.block_on(
        futures::stream::iter(downloads)
            .buffer_unordered(2)
            .try_collect::<Vec<()>>(),
    );
    let sources = downloaded.and_then(|_| {
        fetches
            .iter()
            .map(|(old_range, files, local)| restore_source(*old_range, files, local))
            .collect::<Result<Vec<_>, _>>()
    });
    let downloaded_bytes: u64 = fetches
        .iter()
        .flat_map(|(_, files, _)| files)
        .map(|file| file.size)
        .sum();
    let downloaded = started.elapsed();
    let snapshots = fetches.len();
    let store = sources.and_then(|sources| KeyedStore::restore(&dir.join("db"), range, &sources));
    for (_, _, local) in &fetches {
        let _ = fs::remove_dir_all(local);
    }
    let store = store?;
    tracing::info!(
        operator,
        subtask = ctx.subtask,
        snapshots,
        downloaded_bytes,
        download_seconds = downloaded.as_secs_f64(),
        restore_seconds = (started.elapsed() - downloaded).as_secs_f64(),
        "keyed state restored"
    );
    Ok(store)
}

/// A downloaded snapshot of the old subtask that owned `key_groups`: `files`, in
/// `local`.
fn restore_source(
    key_groups: KeyGroupRange,
    files: &[SnapshotFile],
    local: &std::path::Path,
) -> Result<RestoreSource, StateError> {
    let tables: Option<Vec<LocalTableFile>> = files
        .iter()
        .map(|file| {
            file.table.map(|info| LocalTableFile {
                path: local.join(&file.name),
                info,
            })
        })
        .collect();
    match tables {
        Some(tables) => Ok(RestoreSource { key_groups, tables }),
        // Written before table files were recorded: RocksDB lists them.
        None => RestoreSource::from_folder(local, key_groups),
    }
}

/// The files of a snapshot that a subtask owning the key groups `range` needs: the
/// table files whose key groups overlap it, when the snapshot recorded where each
/// table file sits in its tree; every file (the MANIFEST too) otherwise.
fn files_to_fetch(files: &[SnapshotFile], range: KeyGroupRange) -> Vec<SnapshotFile> {
    let tables_known = files
        .iter()
        .all(|file| file.table.is_some() || !file.name.ends_with(".sst"));
    if !tables_known {
        return files.to_vec();
    }
    files
        .iter()
        .filter(|file| {
            file.table
                .is_some_and(|table| !table.key_groups.intersection(range).is_empty())
        })
        .cloned()
        .collect()
}

/// An entry found by [`KeyedState::scan_below`]: key group, key (after the table
/// id), value.
pub type ScannedEntry = (KeyGroup, Vec<u8>, Vec<u8>);

/// One operator subtask's keyed state: a cache of written values in front of
/// RocksDB. Reads see the latest writes; writes reach RocksDB in one batch when
/// the epoch is snapshotted, a scan needs them, or the cache is over its memory
/// budget. Written values stay cached (clean once in RocksDB) until the cache is
/// over its budget, so a key updated every epoch is read from RocksDB once.
pub struct KeyedState {
    store: KeyedStore,
    max_parallelism: u32,
    cache: HashMap<Vec<u8>, CachedValue>,
    /// Bytes the cache holds, by [`CachedValue::bytes`].
    cached_bytes: usize,
    /// Bytes the cache may hold ([`STATE_CACHE_BYTES`]).
    cache_budget: usize,
    /// The keys of the cache's dirty entries, each once: a flush visits them,
    /// not the whole cache (scans flush, and timers scan at every watermark).
    dirty_keys: Vec<Vec<u8>>,
    /// Whether anything was written since the last snapshot.
    changed_since_snapshot: bool,
}

/// A value in [`KeyedState`]'s cache: `None` when the key was deleted; `dirty`
/// until written to RocksDB.
struct CachedValue {
    value: Option<Vec<u8>>,
    dirty: bool,
}

impl CachedValue {
    /// What a key of `key_length` bytes and this value take in memory, with a
    /// map entry's overhead.
    fn bytes(&self, key_length: usize) -> usize {
        // The map slot, two allocations and the map's slack.
        const ENTRY_OVERHEAD: usize = 128;
        key_length + self.value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
    }
}

/// The memory the value cache of one keyed operator subtask may hold before it
/// writes its changes and forgets about half of what it holds.
pub const STATE_CACHE_BYTES: usize = 32 * 1024 * 1024;

impl KeyedState {
    /// The key group of a key's stable encoding.
    pub fn key_group(&self, encoded_key: &[u8]) -> KeyGroup {
        KeyGroup::of_key(encoded_key, self.max_parallelism)
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.store.key_groups()
    }

    /// The value under `key` in `table`: from the cache when the key was written
    /// (and not yet forgotten), else from RocksDB (a value only read is not kept:
    /// reads need no `&mut`, and a key read is mostly written next).
    pub fn get(
        &self,
        table: TableId,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let stored = store_key(group, table, key);
        match self.cache.get(&stored) {
            Some(cached) => Ok(cached.value.clone()),
            None => self.store.get(&stored),
        }
    }

    /// Sets the value under `key` in `table`.
    pub fn put(&mut self, table: TableId, group: KeyGroup, key: &[u8], value: Vec<u8>) {
        self.cache_value(store_key(group, table, key), Some(value));
    }

    /// Removes `key` from `table`.
    pub fn delete(&mut self, table: TableId, group: KeyGroup, key: &[u8]) {
        self.cache_value(store_key(group, table, key), None);
    }

    /// Keeps `value` of the stored key `stored` in the cache, to be written.
    fn cache_value(&mut self, stored: Vec<u8>, value: Option<Vec<u8>>) {
        let key_length = stored.len();
        let cached = CachedValue { value, dirty: true };
        self.cached_bytes += cached.bytes(key_length);
        match self.cache.entry(stored) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                if !entry.get().dirty {
                    self.cached_bytes += key_length;
                    self.dirty_keys.push(entry.key().clone());
                }
                let old = entry.insert(cached);
                self.cached_bytes -= old.bytes(key_length);
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                self.cached_bytes += key_length;
                self.dirty_keys.push(entry.key().clone());
                entry.insert(cached);
            }
        }
    }

    /// Whether the cache holds more than its budget.
    fn over_budget(&self) -> bool {
        self.cached_bytes > self.cache_budget
    }

    /// Writes the cache's changes to RocksDB and forgets entries (every other
    /// one, in the map's order: no order of use is kept) until the cache holds at
    /// most half its budget.
    fn shrink(&mut self) -> Result<(), StateError> {
        self.flush()?;
        while self.cached_bytes > self.cache_budget / 2 && !self.cache.is_empty() {
            // The first entry goes: one value larger than half the budget too.
            let mut keep = true;
            let mut freed = 0;
            self.cache.retain(|key, cached| {
                keep = !keep;
                if !keep {
                    freed += cached.bytes(key.len());
                }
                keep
            });
            self.cached_bytes -= freed;
        }
        Ok(())
    }

    /// The value under `key` in `table`, decoded.
    pub fn get_value<V: DeserializeOwned>(
        &self,
        table: TableId,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<V>, StateError> {
        match self.get(table, group, key)? {
            Some(bytes) => codec::from_bytes(&bytes)
                .map(Some)
                .map_err(|source| StateError::Decode { table, source }),
            None => Ok(None),
        }
    }

    /// Sets the value under `key` in `table`, encoded.
    pub fn put_value<V: Serialize>(
        &mut self,
        table: TableId,
        group: KeyGroup,
        key: &[u8],
        value: &V,
    ) {
        self.put(table, group, key, encode_value(value));
    }

    /// The entries of `table`, in every key group of this subtask, whose key sorts
    /// in `from..to`: `(key group, key, value)`, in key order within each group.
    /// Starting at `from` rather than at the table's first key skips what was
    /// deleted below it without reading it (timers that have fired).
    pub fn scan_between(
        &mut self,
        table: TableId,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<ScannedEntry>, StateError> {
        self.flush()?;
        let mut out = Vec::new();
        for index in self.store.key_groups().indices() {
            let group = KeyGroup(index as u16);
            let prefix = store_key(group, table, &[]).len();
            let lower = store_key(group, table, from);
            let upper = store_key(group, table, to);
            for (stored, value) in self.store.scan_range(&lower, &upper)? {
                out.push((group, stored[prefix..].to_vec(), value));
            }
        }
        Ok(out)
    }

    /// The entries of `table` in key group `group` whose key sorts in `from..to`
    /// (`to` absent: to the end of the table): `(key, value)`, in key order.
    pub fn scan_group(
        &mut self,
        table: TableId,
        group: KeyGroup,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError> {
        self.flush()?;
        let prefix = store_key(group, table, &[]).len();
        let lower = store_key(group, table, from);
        let upper = match to {
            Some(to) => store_key(group, table, to),
            None => store_key(group, TableId(table.0 + 1), &[]),
        };
        let entries = self.store.scan_range(&lower, &upper)?;
        Ok(entries
            .into_iter()
            .map(|(stored, value)| (stored[prefix..].to_vec(), value))
            .collect())
    }

    /// Every entry of `table` in this subtask's key groups: `(key group, key,
    /// value)`, in key order within each group.
    pub fn scan_table(&mut self, table: TableId) -> Result<Vec<ScannedEntry>, StateError> {
        let mut out = Vec::new();
        for index in self.store.key_groups().indices() {
            let group = KeyGroup(index as u16);
            for (key, value) in self.scan_group(table, group, &[], None)? {
                out.push((group, key, value));
            }
        }
        Ok(out)
    }

    /// Writes `writes` to RocksDB now, past the cache, sorted by key: RocksDB's
    /// memtable takes keys in order several times faster than in any order (a
    /// checkpoint of a million windows spent seconds inserting them unsorted).
    /// Changes still in the cache are written first; the cache forgets the keys
    /// written here. Of two changes to one key, the later wins.
    pub fn write_through(&mut self, writes: StateWrites) -> Result<(), StateError> {
        /// Entries per write batch: a batch of a whole checkpoint's windows
        /// grew to tens of megabytes, copied as it grew.
        const BATCH_ENTRIES: usize = 16 * 1024;
        let entries = writes.entries;
        if entries.is_empty() {
            return Ok(());
        }
        self.flush()?;
        if !self.cache.is_empty() {
            for (key, _) in &entries {
                if let Some(cached) = self.cache.remove(key) {
                    self.cached_bytes -= cached.bytes(key.len());
                }
            }
        }
        // Sorted by the keys' first 32 bytes as two integers (most keys end
        // there), then by the whole key, then by the order the changes were made.
        let mut order: Vec<(SortPrefix, u32)> = entries
            .iter()
            .enumerate()
            .map(|(index, (key, _))| (SortPrefix::of(key), index as u32))
            .collect();
        order.sort_unstable_by(|(a_prefix, a), (b_prefix, b)| {
            a_prefix
                .cmp(b_prefix)
                .then_with(|| entries[*a as usize].0.cmp(&entries[*b as usize].0))
                .then(a.cmp(b))
        });
        for chunk in order.chunks(BATCH_ENTRIES) {
            let mut batch = WriteBatch::default();
            for &(_, index) in chunk {
                match &entries[index as usize] {
                    (key, Some(value)) => batch.put(key, value),
                    (key, None) => batch.delete(key),
                }
            }
            self.store.write(batch)?;
        }
        self.changed_since_snapshot = true;
        Ok(())
    }

    /// Writes the changed values to RocksDB; once written they stay cached,
    /// clean, but for deletions (a key deleted is mostly not read again: window
    /// and timer keys).
    fn flush(&mut self) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for key in &self.dirty_keys {
            match self.cache.get(key).filter(|c| c.dirty).map(|c| &c.value) {
                Some(Some(value)) => batch.put(key, value),
                Some(None) => batch.delete(key),
                None => {}
            }
        }
        let wrote = !batch.is_empty();
        if wrote {
            self.store.write(batch)?;
        }
        for key in std::mem::take(&mut self.dirty_keys) {
            self.cached_bytes -= key.len();
            let deleted = match self.cache.get_mut(&key) {
                Some(cached) => {
                    cached.dirty = false;
                    cached.value.is_none()
                }
                None => false,
            };
            if deleted && let Some(cached) = self.cache.remove(&key) {
                self.cached_bytes -= cached.bytes(key.len());
            }
        }
        if wrote {
            self.changed_since_snapshot = true;
        }
        Ok(())
    }
}

/// A state value's bytes.
fn encode_value<V: Serialize>(value: &V) -> Vec<u8> {
    codec::to_bytes(value)
        .expect("state values encode: sequences and maps in them know their length")
}

/// Puts and deletions for [`KeyedState::write_through`], gathered by an operator
/// that keeps its state in memory and writes what changed at each checkpoint.
#[derive(Default)]
pub struct StateWrites {
    /// Store key and value (`None`: a deletion), in the order they were made.
    entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl StateWrites {
    /// Sets the value under `key` in `table`, encoded.
    pub fn put_value<V: Serialize>(
        &mut self,
        table: TableId,
        group: KeyGroup,
        key: &[u8],
        value: &V,
    ) {
        self.entries
            .push((store_key(group, table, key), Some(encode_value(value))));
    }

    /// Removes `key` from `table`.
    pub fn delete(&mut self, table: TableId, group: KeyGroup, key: &[u8]) {
        self.entries.push((store_key(group, table, key), None));
    }

    /// How many puts and deletions it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The first 32 bytes of a key as two big-endian integers (zero-padded): they
/// sort as the bytes do, and compare in two instructions rather than a `memcmp`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SortPrefix(u128, u128);

impl SortPrefix {
    fn of(key: &[u8]) -> Self {
        let mut bytes = [0u8; 32];
        let length = key.len().min(32);
        bytes[..length].copy_from_slice(&key[..length]);
        let (high, low) = bytes.split_at(16);
        Self(
            u128::from_be_bytes(high.try_into().expect("16 bytes")),
            u128::from_be_bytes(low.try_into().expect("16 bytes")),
        )
    }
}

/// What a keyed operator does with its records and watermarks.
pub trait KeyedLogic<T, O>: 'static {
    /// Handles one record (routed here by its key).
    fn on_record(
        &mut self,
        record: T,
        state: &mut KeyedState,
        out: &mut Vec<O>,
    ) -> Result<(), StateError>;

    /// Handles the operator's input watermark advancing to `watermark`.
    fn on_watermark(
        &mut self,
        _watermark: EventTime,
        _state: &mut KeyedState,
        _out: &mut Vec<O>,
    ) -> Result<(), StateError> {
        Ok(())
    }

    /// Takes up the input watermark a restored snapshot was taken at, before any
    /// record: timers at or below it have fired already, and records below it are
    /// late as they were before the restore.
    fn resume_from_watermark(&mut self, _watermark: EventTime) {}

    /// Loads what the operator keeps in memory from its restored state, once,
    /// before any record (after [`resume_from_watermark`](Self::resume_from_watermark)).
    fn restore(&mut self, _state: &mut KeyedState) -> Result<(), StateError> {
        Ok(())
    }

    /// Writes what the operator keeps in memory into its state, before the state
    /// is snapshotted for a checkpoint.
    fn before_snapshot(&mut self, _state: &mut KeyedState) -> Result<(), StateError> {
        Ok(())
    }
}

/// The logic of `process` (and `count`, `reduce`): a user function per record with
/// the value state of the record's key.
pub struct ValueProcess<K, S, F, P> {
    key: F,
    logic: P,
    types: PhantomData<fn() -> (K, S)>,
}

impl<K, S, F, P> ValueProcess<K, S, F, P> {
    /// `logic(key, record, state, output)` for each record, keyed by `key`.
    pub fn new(key: F, logic: P) -> Self {
        Self {
            key,
            logic,
            types: PhantomData,
        }
    }
}

impl<T, K, S, O, F, P> KeyedLogic<T, O> for ValueProcess<K, S, F, P>
where
    K: Serialize + 'static,
    S: Serialize + DeserializeOwned + 'static,
    F: Fn(&T) -> K + 'static,
    P: FnMut(&K, T, &mut Option<S>, &mut Vec<O>) + 'static,
{
    fn on_record(
        &mut self,
        record: T,
        state: &mut KeyedState,
        out: &mut Vec<O>,
    ) -> Result<(), StateError> {
        let key = (self.key)(&record);
        let encoded = encode_key(&key);
        let group = state.key_group(&encoded);
        let mut value = state.get_value::<S>(VALUE_TABLE, group, &encoded)?;
        (self.logic)(&key, record, &mut value, out);
        match &value {
            Some(value) => state.put_value(VALUE_TABLE, group, &encoded, value),
            None => state.delete(VALUE_TABLE, group, &encoded),
        }
        Ok(())
    }
}

/// A snapshot waiting for its upload (or reusing the previous one's files).
enum PendingAck {
    Uploading,
    Ready(Vec<SnapshotFile>),
}

/// A snapshot taken, not yet acknowledged: its epoch, the input watermark it was
/// taken at, and its upload.
struct PendingSnapshot {
    epoch: u64,
    watermark: EventTime,
    ack: PendingAck,
}

/// Applies `items` in order: records to `logic`, watermarks to `tracker` (and to
/// `logic` when the input watermark advances). Returns the output items and the
/// last watermark short of the end of input that the input advanced to.
fn apply_items<T, O, L: KeyedLogic<T, O>>(
    items: Vec<Item<T>>,
    logic: &mut L,
    state: &mut KeyedState,
    tracker: &mut WatermarkTracker,
    worker: u32,
) -> Result<(Vec<Item<O>>, Option<EventTime>), StateError> {
    let mut records = Vec::new();
    let mut out = Vec::new();
    let mut advanced = None;
    for (index, item) in items.into_iter().enumerate() {
        // A long epoch of many keys stays within the cache's budget too.
        if index % 4096 == 4095 && state.over_budget() {
            state.shrink()?;
        }
        match item {
            Item::Record(record) => logic.on_record(record, state, &mut records)?,
            Item::Watermark(watermark) => {
                if let Some(at) = tracker.update(watermark) {
                    if at != EventTime::MAX {
                        advanced = Some(at);
                    }
                    logic.on_watermark(at, state, &mut records)?;
                    out.extend(records.drain(..).map(Item::Record));
                    out.push(Item::Watermark(Watermark {
                        from: worker,
                        to: None,
                        at,
                    }));
                }
            }
        }
        if records.len() >= 1024 {
            out.extend(records.drain(..).map(Item::Record));
        }
    }
    out.extend(records.into_iter().map(Item::Record));
    Ok((out, advanced))
}

/// Builds the keyed operator `operator` on `stream`: records go to subtask
/// `subtask_of(record)` (the owner of the key group of the record's key),
/// watermarks to every subtask, and `logic` handles them, epoch by epoch, with the subtask's
/// keyed state. Returns the output stream and the stream of snapshot
/// acknowledgements for the checkpoint coordinator.
#[allow(clippy::type_complexity)]
pub fn keyed_operator<'scope, T, O, L>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    ctx: &TaskContext,
    operator: &str,
    subtask_of: impl Fn(&T) -> u32 + 'static,
    mut logic: L,
) -> Result<
    (
        Stream<'scope, u64, Vec<Item<O>>>,
        Stream<'scope, u64, Vec<SnapshotAck>>,
    ),
    StateError,
>
where
    T: ExchangeData + Clone,
    O: Clone + 'static,
    L: KeyedLogic<T, O>,
{
    let partitioning = ctx.partitioning();
    let mut state = KeyedState {
        store: open_store(ctx, operator)?,
        max_parallelism: partitioning.max_parallelism(),
        cache: HashMap::new(),
        cached_bytes: 0,
        cache_budget: STATE_CACHE_BYTES,
        dirty_keys: Vec::new(),
        changed_since_snapshot: true,
    };
    let key_groups = state.store.key_groups();
    let scope = stream.scope();
    let worker = scope.index() as u32;
    // A restore goes on from the watermark its snapshot was taken at.
    let mut watermark = ctx
        .restore
        .as_ref()
        .map_or(0, |restore| restore.manifest.watermark_of(operator));
    let mut tracker = WatermarkTracker::starting_at(0..scope.peers() as u32, watermark);
    logic.resume_from_watermark(watermark);
    logic.restore(&mut state)?;
    let stream = fan_out_watermarks(stream);
    let mut builder = OperatorBuilder::new(format!("Keyed {operator}"), scope);
    let info = builder.operator_info();
    let mut input = builder.new_input(stream, by_subtask(subtask_of));
    let (mut data_output, data_stream) = builder.new_output::<Vec<Item<O>>>();
    let (mut ack_output, ack_stream) = builder.new_output::<Vec<SnapshotAck>>();

    let ctx = ctx.clone();
    let operator = operator.to_owned();
    let series = OperatorLabel::new(&operator, ctx.subtask);
    let activator = scope.worker().sync_activator_for(info.address.to_vec());
    let uploader = Uploader::start(
        &ctx.io,
        ctx.storage.clone(),
        (operator.clone(), ctx.subtask),
        ctx.run.id,
        activator,
    );
    let snapshot_root = ctx.operator_dir(&operator).join("snapshots");

    builder.build(move |capabilities| {
        let mut caps: Option<Vec<Capability<u64>>> = Some(
            capabilities
                .into_iter()
                .map(|mut cap| {
                    cap.downgrade(&ctx.start_epoch);
                    cap
                })
                .collect(),
        );
        let mut next_epoch = ctx.start_epoch;
        let mut stash: BTreeMap<u64, Vec<Item<T>>> = BTreeMap::new();
        let mut last_files: Vec<SnapshotFile> = Vec::new();
        let mut pending: VecDeque<PendingSnapshot> = VecDeque::new();

        move |frontiers| {
            // In arrival order (not `for_each_stamp`, whose sort by stamp is not
            // stable): a sender's watermark must not pass the records it sent first.
            input.for_each(|stamp, batch| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                stash.entry(epoch).or_default().append(batch);
            });
            let Some(held) = caps.as_mut() else { return };
            let frontier = frontiers[0].frontier().first().copied();
            // Applies an epoch's items; returns the watermark the input advanced to.
            let mut apply =
                |items: Vec<Item<T>>, logic: &mut L, state: &mut KeyedState, epoch: u64| {
                    let (mut outputs, advanced) =
                        apply_items(items, logic, state, &mut tracker, worker)
                            .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                    if let Some(watermark) = advanced {
                        ctx.control.observe_watermark(&series, watermark);
                    }
                    if !outputs.is_empty() {
                        data_output
                            .activate()
                            .give(&held[0].delayed(&epoch), &mut outputs);
                    }
                    advanced
                };

            // Epochs the frontier has passed: apply what is left of each, in order,
            // and snapshot it.
            let until = frontier.unwrap_or(u64::MAX);
            while next_epoch < until {
                let epoch = next_epoch;
                let items = stash.remove(&epoch).unwrap_or_default();
                if frontier.is_none() && items.is_empty() && stash.is_empty() {
                    break;
                }
                if let Some(advanced) = apply(items, &mut logic, &mut state, epoch) {
                    watermark = advanced;
                }
                if state.over_budget() {
                    state
                        .shrink()
                        .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                }
                if frontier.is_some() && ctx.settings.is_checkpoint_epoch(epoch) {
                    let started = Instant::now();
                    logic
                        .before_snapshot(&mut state)
                        .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                    let persisted = started.elapsed();
                    state
                        .flush()
                        .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                    let flushed = started.elapsed();
                    if state.changed_since_snapshot {
                        let local = state
                            .store
                            .snapshot(&snapshot_root.join(epoch.to_string()))
                            .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                        tracing::debug!(
                            operator,
                            subtask = ctx.subtask,
                            epoch,
                            ?persisted,
                            ?flushed,
                            snapshotted = ?started.elapsed(),
                            "keyed state snapshotted"
                        );
                        uploader.upload(epoch, local);
                        pending.push_back(PendingSnapshot {
                            epoch,
                            watermark,
                            ack: PendingAck::Uploading,
                        });
                        state.changed_since_snapshot = false;
                    } else {
                        pending.push_back(PendingSnapshot {
                            epoch,
                            watermark,
                            ack: PendingAck::Ready(Vec::new()),
                        });
                    }
                    // What the checkpoint wrote (an operator persisting its
                    // in-memory state) stays within the cache's budget too.
                    if state.over_budget() {
                        state
                            .shrink()
                            .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                    }
                }
                // Skip the epochs with nothing to apply and no checkpoint.
                let next_stashed = stash.keys().next().copied().unwrap_or(u64::MAX);
                let next_checkpoint = ctx.settings.next_checkpoint_epoch(epoch + 1);
                next_epoch = next_stashed.min(next_checkpoint).min(until).max(epoch + 1);
            }
            // The current epoch: every earlier one is applied, so its items can be
            // applied now; it is snapshotted once the frontier passes it.
            if let Some(current) = frontier
                && let Some(items) = stash.remove(&current)
            {
                if let Some(advanced) = apply(items, &mut logic, &mut state, current) {
                    watermark = advanced;
                }
                if state.over_budget() {
                    state
                        .shrink()
                        .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                }
            }

            // Acknowledge finished snapshots in epoch order.
            for (epoch, result) in uploader.finished() {
                let files = result.unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                if let Some(entry) = pending.iter_mut().find(|entry| entry.epoch == epoch) {
                    entry.ack = PendingAck::Ready(files);
                }
            }
            while let Some(PendingSnapshot {
                ack: PendingAck::Ready(_),
                ..
            }) = pending.front()
            {
                let Some(PendingSnapshot {
                    epoch,
                    watermark,
                    ack: PendingAck::Ready(files),
                }) = pending.pop_front()
                else {
                    unreachable!("the front was checked to be ready")
                };
                // An epoch without changes reuses the previous snapshot's files.
                if !files.is_empty() {
                    last_files = files;
                }
                let ack = SnapshotAck {
                    operator: operator.clone(),
                    epoch,
                    snapshot: SubtaskSnapshot {
                        subtask: ctx.subtask,
                        key_groups: Some(key_groups),
                        files: last_files.clone(),
                        watermark: Some(watermark),
                        ..SubtaskSnapshot::default()
                    },
                    drained: None,
                };
                ack_output
                    .activate()
                    .give(&held[1].delayed(&epoch), &mut vec![ack]);
            }

            match frontier {
                Some(frontier) => {
                    // Before the sources have started the first epoch, the frontier
                    // is below it.
                    let data_time = frontier.max(*held[0].time());
                    held[0].downgrade(&data_time);
                    let oldest_pending = pending.front().map_or(frontier, |entry| entry.epoch);
                    let ack_time = oldest_pending.min(frontier).max(*held[1].time());
                    held[1].downgrade(&ack_time);
                }
                // The input has ended: the job is shutting down, nothing more to acknowledge.
                None => caps = None,
            }
        }
    });
    Ok((data_stream, ack_stream))
}

/// Records that `operator` failed and stops the worker: a failed state operation
/// leaves the operator without a consistent state to go on from.
fn fail_now(ctx: &TaskContext, operator: &str, error: &dyn std::fmt::Display) -> ! {
    let message = format!("operator {operator}: {error}");
    ctx.control.record_failure(message.clone());
    panic!("{message}");
}

#[cfg(test)]
impl KeyedState {
    /// A state over a new store in `dir` owning every key group of
    /// `max_parallelism` (one subtask), for operators' unit tests.
    pub(crate) fn for_tests(dir: &std::path::Path, max_parallelism: u32) -> Self {
        let key_groups = crate::state::Partitioning::new(1, max_parallelism)
            .expect("one subtask partitions any key groups")
            .key_groups_of(0);
        Self {
            store: KeyedStore::create(dir, key_groups).expect("a new store opens"),
            max_parallelism,
            cache: HashMap::new(),
            cached_bytes: 0,
            cache_budget: STATE_CACHE_BYTES,
            dirty_keys: Vec::new(),
            changed_since_snapshot: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroup;

    #[test]
    fn a_restore_fetches_the_table_files_of_its_key_groups_or_every_file() {
        use crate::state::TableFileInfo;
        let file = |name: &str, groups: Option<(u32, u32)>| SnapshotFile {
            name: name.to_owned(),
            path: format!("shared/{name}"),
            size: 1,
            table: groups.map(|(start, end)| TableFileInfo {
                level: 1,
                rank: 0,
                key_groups: KeyGroupRange { start, end },
            }),
        };
        let names = |files: Vec<SnapshotFile>| -> Vec<String> {
            files.into_iter().map(|file| file.name).collect()
        };
        let recorded = [
            file("1.sst", Some((0, 40))),
            file("2.sst", Some((40, 64))),
            file("3.sst", Some((64, 128))),
            file("4.sst", Some((0, 128))),
            file("MANIFEST-5", None),
        ];
        let upper = KeyGroupRange {
            start: 64,
            end: 128,
        };
        assert_eq!(names(files_to_fetch(&recorded, upper)), ["3.sst", "4.sst"]);
        let lower = KeyGroupRange { start: 0, end: 64 };
        assert_eq!(
            names(files_to_fetch(&recorded, lower)),
            ["1.sst", "2.sst", "4.sst"]
        );
        // Written before table files were recorded: everything, MANIFEST too.
        let older = [file("1.sst", None), file("MANIFEST-5", None)];
        assert_eq!(
            names(files_to_fetch(&older, upper)),
            ["1.sst", "MANIFEST-5"]
        );
    }

    /// Issue 14, point 14: saved state is placed by the key group of the exact
    /// bytes `key_by` keys are encoded to; a change of the encoding (a serializer
    /// upgrade, another format) would silently put restored keys in other key
    /// groups. These bytes and groups are pinned: a change here is a migration.
    #[test]
    fn keys_encode_to_pinned_bytes_and_key_groups() {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let cases: [(Vec<u8>, &str, u32); 4] = [
            (encode_key(&42u64), "2a00000000000000", 75),
            (
                encode_key(&"user-7".to_owned()),
                "0600000000000000757365722d37",
                9,
            ),
            (
                encode_key(&(3u32, "eu".to_owned())),
                "0300000002000000000000006575",
                68,
            ),
            (encode_key(&-1i64), "ffffffffffffffff", 125),
        ];
        for (bytes, pinned_hex, pinned_group) in cases {
            assert_eq!(hex(&bytes), pinned_hex);
            assert_eq!(
                KeyGroup::of_key(&bytes, 128).index(),
                pinned_group,
                "{pinned_hex}"
            );
        }
    }

    /// Issue 18: the value cache is bounded by bytes, not keys; values read after
    /// it shrank, deletes included, are the latest, and what reached RocksDB is
    /// exactly the latest values.
    #[test]
    fn the_value_cache_shrinks_to_its_budget_and_loses_no_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        state.cache_budget = 4_000;
        let table = TableId(1);
        let keys: Vec<Vec<u8>> = (0..200u64).map(|k| encode_key(&k)).collect();
        let group = |state: &KeyedState, key: &[u8]| state.key_group(key);
        for round in 0..3u64 {
            for key in &keys {
                let at = group(&state, key);
                let old = state.get_value::<u64>(table, at, key).unwrap().unwrap_or(0);
                assert_eq!(old, round, "round {round}");
                state.put_value(table, at, key, &(old + 1));
                if state.over_budget() {
                    state.shrink().unwrap();
                }
                assert!(state.cached_bytes <= 4_000 + 200, "{}", state.cached_bytes);
            }
        }
        let deleted = &keys[7];
        state.delete(table, group(&state, deleted), deleted);
        state.shrink().unwrap();
        state.shrink().unwrap();
        assert_eq!(
            state.get(table, group(&state, deleted), deleted).unwrap(),
            None
        );
        // Written deletions are not kept in the cache.
        let deleted_stored = store_key(group(&state, deleted), table, deleted);
        assert!(!state.cache.contains_key(&deleted_stored));
        state.flush().unwrap();
        let stored = state.scan_between(table, &[], &[0xff; 16]).unwrap();
        assert_eq!(stored.len(), keys.len() - 1);
        for (_, _, value) in stored {
            assert_eq!(codec::from_bytes::<u64>(&value).unwrap(), 3);
        }
        // A cache of one value larger than the budget is written and forgotten
        // too (a shrink that kept its first entry never ended).
        let other = tempfile::tempdir().unwrap();
        let mut alone = KeyedState::for_tests(other.path(), 128);
        alone.cache_budget = 4_000;
        let big = &keys[1];
        alone.put(table, group(&alone, big), big, vec![7; 10_000]);
        alone.shrink().unwrap();
        assert!(alone.cache.is_empty(), "{} bytes left", alone.cached_bytes);
        assert_eq!(alone.cached_bytes, 0);
        let read = alone.get(table, group(&alone, big), big).unwrap();
        assert_eq!(read, Some(vec![7; 10_000]));
        // Reads and a flush with nothing changed write nothing.
        state.changed_since_snapshot = false;
        let key = &keys[0];
        state.get(table, group(&state, key), key).unwrap();
        state.flush().unwrap();
        assert!(!state.changed_since_snapshot);
    }

    /// Issue 18: writes past the cache land sorted in one batch after the
    /// cache's own changes; of two changes to a key the later wins, and the
    /// cache does not answer with a value written over.
    #[test]
    fn writes_past_the_cache_come_after_its_changes_and_the_later_change_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::for_tests(dir.path(), 128);
        let table = TableId(1);
        let keys: Vec<Vec<u8>> = (0..100u64).map(|k| encode_key(&k)).collect();
        let at = |state: &KeyedState, key: &[u8]| state.key_group(key);
        // In the cache, dirty: 0..50 set to 1, and key 99 set to 1.
        for key in keys[..50].iter().chain([&keys[99]]) {
            state.put_value(table, at(&state, key), key, &1u64);
        }
        state.changed_since_snapshot = false;
        let mut writes = StateWrites::default();
        // In reverse order, to be sorted: 50..100 set to 2, then 10 deleted and
        // set again to 3, 20 set and deleted.
        for key in keys[50..].iter().rev() {
            writes.put_value(table, at(&state, key), key, &2u64);
        }
        writes.delete(table, at(&state, &keys[10]), &keys[10]);
        writes.put_value(table, at(&state, &keys[10]), &keys[10], &3u64);
        writes.put_value(table, at(&state, &keys[20]), &keys[20], &3u64);
        writes.delete(table, at(&state, &keys[20]), &keys[20]);
        // Keys longer than the sort's 32-byte prefix, alike in it.
        let long = |last: u8| [vec![5u8; 40], vec![last]].concat();
        let long_group = state.key_group(&long(0));
        writes.put_value(table, long_group, &long(2), &4u64);
        writes.put_value(table, long_group, &long(1), &4u64);
        writes.delete(table, long_group, &long(1));
        writes.put_value(table, long_group, &long(1), &5u64);
        assert_eq!(writes.len(), 58);
        state.write_through(writes).unwrap();
        assert!(state.changed_since_snapshot);
        let value = |state: &KeyedState, key: &[u8]| {
            state
                .get_value::<u64>(table, state.key_group(key), key)
                .unwrap()
        };
        assert_eq!(value(&state, &keys[0]), Some(1));
        assert_eq!(value(&state, &keys[10]), Some(3));
        assert_eq!(value(&state, &keys[20]), None);
        assert_eq!(value(&state, &keys[60]), Some(2));
        // Written over: the cache forgot its 1.
        assert_eq!(value(&state, &keys[99]), Some(2));
        assert_eq!(
            state.get_value::<u64>(table, long_group, &long(1)).unwrap(),
            Some(5)
        );
        let stored = state.scan_between(table, &[], &[0xff; 64]).unwrap();
        assert_eq!(stored.len(), 101);
        // Nothing to write writes nothing.
        state.changed_since_snapshot = false;
        state.write_through(StateWrites::default()).unwrap();
        assert!(!state.changed_since_snapshot);
    }
}
