//! The RocksDB instance that holds one stateful operator's keyed state on one subtask.
//!
//! Every key starts with its key group (two bytes, big-endian), then the id of the
//! state table it belongs to (two bytes), then the user's key. Key groups are
//! therefore contiguous byte ranges: restoring a subtask at a new parallelism keeps
//! the key groups it now owns and drops the rest with one range delete each.
//!
//! Writes skip RocksDB's write-ahead log: a crash restores from the last completed
//! checkpoint, never from the local files, and a snapshot flushes the memtable first.

use std::fs;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::ingest::{IngestError, ingest_db_files};
use super::key_groups::{KeyGroup, KeyGroupRange, MAX_KEY_GROUPS};

/// A stored key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Identifies one state table (a value, map or list state) within an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(pub u16);

/// Why keyed state could not be read, written, snapshotted or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[error("RocksDB {operation} in {dir}: {source}")]
    RocksDb {
        /// What was being done.
        operation: &'static str,
        /// The database folder.
        dir: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A local file operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A value in the store could not be decoded.
    #[error("corrupt state value in table {table:?}: {source}")]
    Decode {
        /// The table holding the value.
        table: TableId,
        /// The decoder's error.
        source: super::codec::CodecError,
    },
    /// RocksDB refused the table files of a snapshot being restored.
    #[error("RocksDB ingest into {dir}: {source}")]
    Ingest {
        /// The database folder.
        dir: PathBuf,
        /// RocksDB's error.
        source: IngestError,
    },
    /// An operator could not compute from its state (a SQL aggregate's error).
    #[error("{operator}: {message}")]
    Operator {
        /// The operator.
        operator: String,
        /// What went wrong.
        message: String,
    },
}

impl StateError {
    fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            operation,
            path,
            source,
        }
    }
}

/// The first byte string of key group `group` in the store's key space. Key groups
/// are below `MAX_KEY_GROUPS` (32768 = 0x8000), so the bound just past the last one
/// fits in two bytes too.
fn group_start(group: u32) -> [u8; 2] {
    debug_assert!(group <= MAX_KEY_GROUPS);
    (group as u16).to_be_bytes()
}

/// A bound above every key in a store (key groups stay below 0x8000).
const KEYS_END: [u8; 2] = [0xff, 0xff];

/// Builds the store key of `key` in `table` within key group `group`.
pub fn store_key(group: KeyGroup, table: TableId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&group.0.to_be_bytes());
    out.extend_from_slice(&table.0.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits a store key into its key group, table and user key.
pub fn split_store_key(stored: &[u8]) -> (KeyGroup, TableId, &[u8]) {
    let group = u16::from_be_bytes([stored[0], stored[1]]);
    let table = u16::from_be_bytes([stored[2], stored[3]]);
    (KeyGroup(group), TableId(table), &stored[4..])
}

/// Where a table file sits in a snapshot's RocksDB tree: what a restore needs to
/// fetch only the files holding its key groups and to rebuild the tree from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableFileInfo {
    /// The file's level in the tree (0 is the newest).
    pub level: u32,
    /// The file's place in RocksDB's listing of the snapshot's table files (levels
    /// from 0 down, level 0 newest first): a restore adds files in the reverse
    /// order, so that older versions of a key come first.
    pub rank: u32,
    /// The key groups from the file's first key to its last (range deletions
    /// included); the file may hold keys of any group in between.
    pub key_groups: KeyGroupRange,
}

/// A local RocksDB checkpoint of a store: the files of one snapshot.
#[derive(Debug, Clone)]
pub struct LocalSnapshot {
    /// The folder holding the checkpoint's files (hard links into the live store).
    pub dir: PathBuf,
    /// The immutable table files (`*.sst`) by name, shared between snapshots, with
    /// their place in this snapshot's tree.
    pub table_files: BTreeMap<String, TableFileInfo>,
    /// The names of the other files (MANIFEST, CURRENT, OPTIONS), small and private.
    pub meta_files: Vec<String>,
}

/// A table file of a snapshot, on local disk.
#[derive(Debug, Clone)]
pub struct LocalTableFile {
    /// The file.
    pub path: PathBuf,
    /// Its place in the snapshot's tree.
    pub info: TableFileInfo,
}

/// A snapshot to restore from: the key groups it holds and its table files on
/// local disk (at least every one whose key groups overlap the ones restored).
#[derive(Debug, Clone)]
pub struct RestoreSource {
    /// The key groups the snapshotted subtask owned.
    pub key_groups: KeyGroupRange,
    /// The snapshot's table files.
    pub tables: Vec<LocalTableFile>,
}

impl RestoreSource {
    /// The source of a whole snapshot folder (its MANIFEST included), as written
    /// before snapshots recorded [`TableFileInfo`]: RocksDB lists its table files.
    pub fn from_folder(dir: &Path, key_groups: KeyGroupRange) -> Result<Self, StateError> {
        let tables = table_files_of(dir)?
            .into_iter()
            .map(|(name, info)| LocalTableFile {
                path: dir.join(name),
                info,
            })
            .collect();
        Ok(Self { key_groups, tables })
    }
}

/// The key groups a store key from RocksDB's file metadata belongs to: the group
/// in its first two bytes, or every group when it is shorter (not a key Strom
/// writes, so nothing is assumed about it).
fn key_group_bound(key: Option<&[u8]>) -> Option<u32> {
    match key {
        Some([high, low, ..]) => Some(u32::from(u16::from_be_bytes([*high, *low]))),
        _ => None,
    }
}

/// The table files of the RocksDB folder `dir` (a snapshot) with their place in
/// its tree, read by opening it read-only.
fn table_files_of(dir: &Path) -> Result<BTreeMap<String, TableFileInfo>, StateError> {
    let rocks_error = |operation| {
        move |source| StateError::RocksDb {
            operation,
            dir: dir.to_path_buf(),
            source,
        }
    };
    let mut options = db_options();
    // Only the file list is read: no table is opened ahead (-1 opens them all).
    options.set_max_open_files(16);
    options.set_skip_stats_update_on_db_open(true);
    let db = DB::open_for_read_only(&options, dir, false).map_err(rocks_error("open snapshot"))?;
    let files = db.live_files().map_err(rocks_error("list table files"))?;
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(rank, file)| {
            let start = key_group_bound(file.start_key.as_deref()).unwrap_or(0);
            let last = key_group_bound(file.end_key.as_deref()).unwrap_or(u32::from(u16::MAX));
            let info = TableFileInfo {
                level: file.level.max(0) as u32,
                rank: rank as u32,
                key_groups: KeyGroupRange {
                    start,
                    end: (last + 1).max(start),
                },
            };
            (file.name.trim_start_matches('/').to_owned(), info)
        })
        .collect())
}

/// The table files worth restoring from a snapshot for the key groups `range`,
/// in the order to ingest them (older data first).
fn files_to_ingest(tables: &[LocalTableFile], range: KeyGroupRange) -> Vec<PathBuf> {
    let mut wanted: Vec<&LocalTableFile> = tables
        .iter()
        .filter(|table| !table.info.key_groups.intersection(range).is_empty())
        .collect();
    wanted.sort_by_key(|table| std::cmp::Reverse(table.info.rank));
    wanted.into_iter().map(|table| table.path.clone()).collect()
}

/// One operator's keyed state on one subtask.
pub struct KeyedStore {
    db: DB,
    dir: PathBuf,
    key_groups: KeyGroupRange,
    write_options: WriteOptions,
}

impl std::fmt::Debug for KeyedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStore")
            .field("dir", &self.dir)
            .field("key_groups", &self.key_groups)
            .finish()
    }
}

fn db_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Keyed operators look up many keys that are not there yet (a new key, a new
    // window): bloom filters answer those without reading table blocks.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    options.set_block_based_table_factory(&table);
    // Level sizes fixed from level 1 down (RocksDB's default before 8.4): a
    // restore adds a snapshot's files level by level, and with dynamic level
    // sizes an empty store takes files only in its last level and level 0, so
    // every level above the last would land in level 0 (writes slow down past 20
    // files there).
    options.set_level_compaction_dynamic_level_bytes(false);
    options
}

impl KeyedStore {
    /// Creates an empty store in `dir`, removing whatever was there.
    pub fn create(dir: &Path, key_groups: KeyGroupRange) -> Result<Self, StateError> {
        remove_dir_if_present(dir)?;
        Self::open(dir, key_groups)
    }

    /// Creates a store in `dir` holding exactly the key groups `key_groups` from the
    /// snapshots in `sources` (which together must cover them).
    ///
    /// The table files of each source that overlap `key_groups` are added to the
    /// store as they are (see [`super::ingest`]), the source overlapping most first.
    /// RocksDB refuses a source whose files overlap ones already added (files that
    /// still hold keys a range delete removed at an earlier rescale, not yet
    /// compacted away); that source's key groups are copied instead, key by key,
    /// read through a scratch store of its own. Range deletes then clip the store
    /// to `key_groups`. Used files are moved into `dir`.
    pub fn restore(
        dir: &Path,
        key_groups: KeyGroupRange,
        sources: &[RestoreSource],
    ) -> Result<Self, StateError> {
        remove_dir_if_present(dir)?;
        // No compaction while files are added: one under way makes RocksDB refuse
        // files overlapping its output.
        let mut options = db_options();
        options.set_disable_auto_compactions(true);
        let store = Self::open_with(dir, key_groups, &options)?;
        let mut overlapping: Vec<&RestoreSource> = sources
            .iter()
            .filter(|source| !source.key_groups.intersection(key_groups).is_empty())
            .collect();
        overlapping.sort_by_key(|source| {
            std::cmp::Reverse(source.key_groups.intersection(key_groups).len())
        });
        let mut to_copy = Vec::new();
        for source in overlapping {
            match ingest_db_files(&store.db, &files_to_ingest(&source.tables, key_groups)) {
                Ok(()) => {}
                Err(IngestError::Overlaps(reason)) => {
                    tracing::debug!(%reason, ?source.key_groups, "copying key groups instead of adding table files");
                    to_copy.push(source);
                }
                Err(source) => {
                    return Err(StateError::Ingest {
                        dir: dir.to_path_buf(),
                        source,
                    });
                }
            }
        }
        // Clipped before the copies: their writes are newer than the range deletes
        // (and than every key added above, whose sequence numbers RocksDB keeps).
        store.clip_to_key_groups()?;
        for (index, source) in to_copy.into_iter().enumerate() {
            let scratch = dir.with_extension(format!("copy-{index}"));
            let copied = store.copy_key_groups_from(source, &scratch);
            let removed = remove_dir_if_present(&scratch);
            copied?;
            removed?;
        }
        store
            .db
            .set_options(&[("disable_auto_compactions", "false")])
            .map_err(store.rocks_error("enable compactions"))?;
        Ok(store)
    }

    fn open(dir: &Path, key_groups: KeyGroupRange) -> Result<Self, StateError> {
        Self::open_with(dir, key_groups, &db_options())
    }

    fn open_with(
        dir: &Path,
        key_groups: KeyGroupRange,
        options: &Options,
    ) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(StateError::io("create", dir))?;
        let db = DB::open(options, dir).map_err(|source| StateError::RocksDb {
            operation: "open",
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            key_groups,
            write_options,
        })
    }

    /// The key groups this store holds.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    fn rocks_error(&self, operation: &'static str) -> impl FnOnce(rocksdb::Error) -> StateError {
        let dir = self.dir.clone();
        move |source| StateError::RocksDb {
            operation,
            dir,
            source,
        }
    }

    /// Reads the value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(self.rocks_error("get"))
    }

    /// Applies a batch of writes atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(self.rocks_error("write"))
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for entry in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (key, value) = entry.map_err(self.rocks_error("scan"))?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    /// Every entry with a key in `from..to`, in key order.
    pub fn scan_range(&self, from: &[u8], to: &[u8]) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for entry in self
            .db
            .iterator(IteratorMode::From(from, Direction::Forward))
        {
            let (key, value) = entry.map_err(self.rocks_error("scan"))?;
            if key.as_ref() >= to {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    /// Every entry in the store, in key order (for tests and state inspection).
    pub fn entries(&self) -> Result<Vec<Entry>, StateError> {
        self.scan_prefix(&[])
    }

    /// Flushes the memtable and writes a RocksDB checkpoint (hard links to the live
    /// table files) into `into`, which must not exist yet.
    pub fn snapshot(&self, into: &Path) -> Result<LocalSnapshot, StateError> {
        if let Some(parent) = into.parent() {
            fs::create_dir_all(parent).map_err(StateError::io("create", parent))?;
        }
        remove_dir_if_present(into)?;
        Checkpoint::new(&self.db)
            .and_then(|checkpoint| checkpoint.create_checkpoint(into))
            .map_err(self.rocks_error("checkpoint"))?;
        let mut meta_files = Vec::new();
        for entry in fs::read_dir(into).map_err(StateError::io("list", into))? {
            let entry = entry.map_err(StateError::io("list", into))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".sst") {
                meta_files.push(name);
            }
        }
        meta_files.sort();
        // Listed from the checkpoint itself: the live store's tree may have moved on.
        let table_files = table_files_of(into)?;
        Ok(LocalSnapshot {
            dir: into.to_path_buf(),
            table_files,
            meta_files,
        })
    }

    /// Deletes every key outside this store's key groups.
    fn clip_to_key_groups(&self) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        batch.delete_range(group_start(0), group_start(self.key_groups.start));
        batch.delete_range(group_start(self.key_groups.end), KEYS_END);
        self.write(batch)
    }

    /// Copies the key groups of `source` that this store holds into it: the
    /// source's table files are added to a scratch store in `scratch`, whose keys
    /// in those groups are written to this store in batches. Written, not added as
    /// new table files: RocksDB would give such files one sequence number kept
    /// only in this store's MANIFEST, and a later restore, which adds files as
    /// they are, would take their keys as older than the range deletes they
    /// overlap.
    fn copy_key_groups_from(
        &self,
        source: &RestoreSource,
        scratch: &Path,
    ) -> Result<(), StateError> {
        let range = source.key_groups.intersection(self.key_groups);
        remove_dir_if_present(scratch)?;
        // Read once and removed: not worth compacting.
        let mut options = db_options();
        options.set_disable_auto_compactions(true);
        let old = Self::open_with(scratch, range, &options)?;
        ingest_db_files(&old.db, &files_to_ingest(&source.tables, range)).map_err(|error| {
            StateError::Ingest {
                dir: scratch.to_path_buf(),
                source: error,
            }
        })?;
        let start = group_start(range.start);
        let end = group_start(range.end);
        let mut batch = WriteBatch::default();
        for entry in old
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = entry.map_err(old.rocks_error("read snapshot"))?;
            if key.as_ref() >= end.as_slice() {
                break;
            }
            batch.put(key, value);
            if batch.len() >= 10_000 {
                self.write(std::mem::take(&mut batch))?;
            }
        }
        self.write(batch)
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<(), StateError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StateError::Io {
            operation: "remove",
            path: dir.to_path_buf(),
            source: error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Partitioning;

    const TABLE: TableId = TableId(0);
    const MAX: u32 = 128;

    /// What the stores of a test should hold together: every live key's value.
    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    /// Writes `key-i` = `tag` for `keys` (every third one of them deleted when
    /// `delete_some`) into `store`'s key groups and `model`.
    fn write(
        store: &KeyedStore,
        model: &mut Model,
        keys: std::ops::Range<u32>,
        tag: &str,
        delete_some: bool,
    ) {
        let partitioning = Partitioning::new(1, MAX).unwrap();
        let mut batch = WriteBatch::default();
        for i in keys {
            let key = format!("key-{i}");
            let group = partitioning.key_group(key.as_bytes());
            if !store.key_groups().contains(group) {
                continue;
            }
            let stored = store_key(group, TABLE, key.as_bytes());
            if delete_some && i % 3 == 0 {
                batch.delete(&stored);
                model.remove(&stored);
            } else {
                batch.put(&stored, tag.as_bytes());
                model.insert(stored, tag.as_bytes().to_vec());
            }
        }
        store.write(batch).unwrap();
    }

    /// Fills a store over several snapshots (so its tree has several files, some
    /// overwriting and deleting keys of older ones) and snapshots it.
    fn fill_and_snapshot(store: &KeyedStore, model: &mut Model, root: &Path) -> LocalSnapshot {
        write(store, model, 0..3000, "a", false);
        store.snapshot(&root.join("first")).unwrap();
        write(store, model, 1000..4000, "b", true);
        store.snapshot(&root.join("second")).unwrap();
        write(store, model, 3500..4500, "c", true);
        let snapshot = store.snapshot(&root.join("last")).unwrap();
        assert!(snapshot.table_files.len() >= 3, "{snapshot:?}");
        snapshot
    }

    /// What a restore of `range` fetches of `snapshot` (only the table files whose
    /// key groups overlap it), copied into `into`.
    fn fetch(
        snapshot: &LocalSnapshot,
        owned: KeyGroupRange,
        range: KeyGroupRange,
        into: &Path,
    ) -> RestoreSource {
        fs::create_dir_all(into).unwrap();
        let mut tables = Vec::new();
        for (name, info) in &snapshot.table_files {
            if !info.key_groups.intersection(range).is_empty() {
                fs::copy(snapshot.dir.join(name), into.join(name)).unwrap();
                tables.push(LocalTableFile {
                    path: into.join(name),
                    info: *info,
                });
            }
        }
        RestoreSource {
            key_groups: owned,
            tables,
        }
    }

    /// Restores every subtask at `parallelism` from `snapshots` (each with the key
    /// groups its subtask owned), checks each holds only its key groups, and
    /// returns the stores.
    fn restore_at(
        root: &Path,
        snapshots: &[(LocalSnapshot, KeyGroupRange)],
        parallelism: u32,
    ) -> Vec<KeyedStore> {
        let new = Partitioning::new(parallelism, MAX).unwrap();
        (0..parallelism)
            .map(|subtask| {
                let range = new.key_groups_of(subtask);
                let here = root.join(format!("p{parallelism}-{subtask}"));
                let sources: Vec<_> = snapshots
                    .iter()
                    .enumerate()
                    .map(|(index, (snapshot, owned))| {
                        fetch(
                            snapshot,
                            *owned,
                            range,
                            &here.join(format!("fetched-{index}")),
                        )
                    })
                    .collect();
                let store = KeyedStore::restore(&here.join("db"), range, &sources).unwrap();
                for (key, _) in store.entries().unwrap() {
                    let (group, _, _) = split_store_key(&key);
                    assert!(
                        range.contains(group),
                        "subtask {subtask} of {parallelism} holds {group:?}"
                    );
                }
                store
            })
            .collect()
    }

    fn contents(stores: &[KeyedStore]) -> Model {
        stores
            .iter()
            .flat_map(|store| store.entries().unwrap())
            .collect()
    }

    #[test]
    fn restore_at_a_new_parallelism_keeps_exactly_the_owned_key_groups() {
        let root = tempfile::tempdir().unwrap();
        let old = Partitioning::new(2, MAX).unwrap();
        let mut model = Model::new();
        let snapshots: Vec<_> = (0..2)
            .map(|subtask| {
                let here = root.path().join(format!("old-{subtask}"));
                let store =
                    KeyedStore::create(&here.join("db"), old.key_groups_of(subtask)).unwrap();
                let snapshot = fill_and_snapshot(&store, &mut model, &here);
                (snapshot, store.key_groups())
            })
            .collect();
        for parallelism in [1, 2, 3, 4] {
            let stores = restore_at(root.path(), &snapshots, parallelism);
            assert_eq!(
                contents(&stores),
                model,
                "state differs after restore at {parallelism}"
            );
        }
    }

    #[test]
    fn a_second_rescale_restores_stores_that_still_hold_removed_key_groups() {
        // After a rescale a store's files still hold the key groups it no longer
        // owns (removed by range deletes, not yet compacted away): their files
        // overlap those of the other subtasks' snapshots at the next rescale.
        let root = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let one = KeyedStore::create(
            &root.path().join("one/db"),
            Partitioning::new(1, MAX).unwrap().key_groups_of(0),
        )
        .unwrap();
        let snapshot = fill_and_snapshot(&one, &mut model, &root.path().join("one"));
        let two = restore_at(
            &root.path().join("first"),
            &[(snapshot, one.key_groups())],
            2,
        );
        assert_eq!(contents(&two), model);
        let snapshots: Vec<_> = two
            .iter()
            .enumerate()
            .map(|(subtask, store)| {
                write(store, &mut model, 4000..5000, "d", true);
                let snapshot = store
                    .snapshot(&root.path().join(format!("two-{subtask}")))
                    .unwrap();
                (snapshot, store.key_groups())
            })
            .collect();
        for parallelism in [1, 3] {
            let here = root.path().join(format!("second-{parallelism}"));
            let stores = restore_at(&here, &snapshots, parallelism);
            assert_eq!(
                contents(&stores),
                model,
                "state differs after restore at {parallelism}"
            );
            // New writes win over everything restored.
            let mut after = model.clone();
            for store in &stores {
                write(store, &mut after, 0..100, "e", false);
            }
            assert_eq!(contents(&stores), after);
            // A third restore adds the files the copies and writes above made:
            // their keys stay newer than the range deletes they overlap, before
            // and after a compaction.
            let snapshots: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(subtask, store)| {
                    let snapshot = store
                        .snapshot(&here.join(format!("snap-{subtask}")))
                        .unwrap();
                    (snapshot, store.key_groups())
                })
                .collect();
            for again in [parallelism, 2] {
                let stores = restore_at(&here.join("third"), &snapshots, again);
                assert_eq!(contents(&stores), after, "{parallelism} then {again}");
                for store in &stores {
                    store.db.compact_range(None::<&[u8]>, None::<&[u8]>);
                }
                assert_eq!(
                    contents(&stores),
                    after,
                    "{parallelism} then {again}, compacted"
                );
            }
        }
    }

    #[test]
    fn a_restored_tree_keeps_its_levels() {
        // A source tree with files in level 0, level 1 and deeper, from small
        // RocksDB levels; restored, its files take levels as deep as they had,
        // not level 0 (where writes slow down past 20 files).
        let root = tempfile::tempdir().unwrap();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_write_buffer_size(64 << 10);
        options.set_target_file_size_base(64 << 10);
        options.set_max_bytes_for_level_base(256 << 10);
        options.set_level_zero_file_num_compaction_trigger(2);
        options.set_level_compaction_dynamic_level_bytes(false);
        options.set_compression_type(rocksdb::DBCompressionType::None);
        let source = DB::open(&options, root.path().join("source")).unwrap();
        let range = Partitioning::new(1, MAX).unwrap().key_groups_of(0);
        let mut model = Model::new();
        let put = |model: &mut Model, keys: std::ops::Range<u32>, tag: &str| {
            for i in keys {
                let key = store_key(KeyGroup((i % MAX) as u16), TABLE, &i.to_be_bytes());
                // 96 bytes that do not compress.
                let mut value = tag.as_bytes().to_vec();
                for seed in 0..12 {
                    value.extend_from_slice(
                        &xxhash_rust::xxh64::xxh64(&i.to_le_bytes(), seed).to_le_bytes(),
                    );
                }
                source.put(&key, &value).unwrap();
                model.insert(key, value);
            }
        };
        put(&mut model, 0..20_000, "a");
        source.compact_range(None::<&[u8]>, None::<&[u8]>);
        source.wait_for_compact(&Default::default()).unwrap();
        put(&mut model, 0..3_000, "b");
        source.flush().unwrap();
        source.wait_for_compact(&Default::default()).unwrap();
        put(&mut model, 0..500, "c");
        source.flush().unwrap();
        let level_files = |db: &DB, level: u32| -> i64 {
            db.property_int_value(&format!("rocksdb.num-files-at-level{level}"))
                .unwrap()
                .unwrap() as i64
        };
        let source_levels: Vec<i64> = (0..7).map(|level| level_files(&source, level)).collect();
        assert!(
            source_levels.iter().filter(|files| **files > 0).count() >= 3,
            "the source tree has three levels: {source_levels:?}"
        );
        Checkpoint::new(&source)
            .unwrap()
            .create_checkpoint(root.path().join("checkpoint"))
            .unwrap();
        let snapshot = RestoreSource::from_folder(&root.path().join("checkpoint"), range).unwrap();
        let restored =
            KeyedStore::restore(&root.path().join("restored"), range, &[snapshot]).unwrap();
        assert_eq!(contents(&[restored]), model);
        let restored = KeyedStore::open(&root.path().join("restored"), range).unwrap();
        let restored_levels: Vec<i64> = (0..7)
            .map(|level| level_files(&restored.db, level))
            .collect();
        assert!(
            restored_levels[0] <= source_levels[0],
            "level 0 holds more files after restoring {source_levels:?}: {restored_levels:?}"
        );
    }

    #[test]
    fn a_whole_snapshot_folder_restores_without_recorded_table_files() {
        // Snapshots written before manifests recorded each table file's place.
        let root = tempfile::tempdir().unwrap();
        let partitioning = Partitioning::new(1, MAX).unwrap();
        let mut model = Model::new();
        let store =
            KeyedStore::create(&root.path().join("db"), partitioning.key_groups_of(0)).unwrap();
        let snapshot = fill_and_snapshot(&store, &mut model, root.path());
        let half = KeyGroupRange {
            start: 0,
            end: MAX / 2,
        };
        let source = RestoreSource::from_folder(&snapshot.dir, store.key_groups()).unwrap();
        let restored = KeyedStore::restore(&root.path().join("restored"), half, &[source]).unwrap();
        model.retain(|key, _| half.contains(split_store_key(key).0));
        assert_eq!(contents(&[restored]), model);
    }

    #[test]
    fn a_snapshot_is_not_changed_by_later_writes() {
        let root = tempfile::tempdir().unwrap();
        let partitioning = Partitioning::new(1, MAX).unwrap();
        let range = partitioning.key_groups_of(0);
        let store = KeyedStore::create(&root.path().join("db"), range).unwrap();
        let mut model = Model::new();
        write(&store, &mut model, 0..100, "a", false);
        let snapshot = store.snapshot(&root.path().join("snap")).unwrap();
        let at_snapshot = model.clone();
        write(&store, &mut model, 100..200, "a", false);
        let source = fetch(&snapshot, range, range, &root.path().join("fetched"));
        let restored =
            KeyedStore::restore(&root.path().join("restored"), range, &[source]).unwrap();
        assert_eq!(contents(&[restored]), at_snapshot);
        assert_eq!(contents(&[store]), model);
    }

    #[test]
    fn table_files_know_the_key_groups_they_span() {
        assert_eq!(key_group_bound(Some(&[0x00, 0x05, 0, 0, 9])), Some(5));
        assert_eq!(key_group_bound(Some(&[0x7f, 0xff])), Some(0x7fff));
        assert_eq!(key_group_bound(Some(&[0x01])), None);
        assert_eq!(key_group_bound(None), None);
    }
}
