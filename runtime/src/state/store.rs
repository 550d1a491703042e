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

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

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

/// A local RocksDB checkpoint of a store: the files of one snapshot.
#[derive(Debug, Clone)]
pub struct LocalSnapshot {
    /// The folder holding the checkpoint's files (hard links into the live store).
    pub dir: PathBuf,
    /// The names of the immutable table files (`*.sst`), shared between snapshots.
    pub table_files: Vec<String>,
    /// The names of the other files (MANIFEST, CURRENT, OPTIONS), small and private.
    pub meta_files: Vec<String>,
}

/// A snapshot to restore from: its files on local disk and the key groups it holds.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    /// The folder holding the snapshot's files.
    pub dir: PathBuf,
    /// The key groups the snapshotted subtask owned.
    pub key_groups: KeyGroupRange,
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
    /// The source that overlaps most is adopted whole (its files are linked or copied
    /// into `dir`) and clipped to `key_groups` by range deletes; the overlap of every
    /// other source is copied key by key.
    pub fn restore(
        dir: &Path,
        key_groups: KeyGroupRange,
        sources: &[RestoreSource],
    ) -> Result<Self, StateError> {
        remove_dir_if_present(dir)?;
        let adopted = sources
            .iter()
            .enumerate()
            .max_by_key(|(_, source)| source.key_groups.intersection(key_groups).len())
            .filter(|(_, source)| !source.key_groups.intersection(key_groups).is_empty())
            .map(|(index, _)| index);
        if let Some(index) = adopted {
            link_or_copy_dir(&sources[index].dir, dir)?;
        }
        let store = Self::open(dir, key_groups)?;
        if adopted.is_some() {
            store.clip_to_key_groups()?;
        }
        for (index, source) in sources.iter().enumerate() {
            let overlap = source.key_groups.intersection(key_groups);
            if Some(index) != adopted && !overlap.is_empty() {
                store.copy_key_groups_from(&source.dir, overlap)?;
            }
        }
        Ok(store)
    }

    fn open(dir: &Path, key_groups: KeyGroupRange) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(StateError::io("create", dir))?;
        let db = DB::open(&db_options(), dir).map_err(|source| StateError::RocksDb {
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
        let mut table_files = Vec::new();
        let mut meta_files = Vec::new();
        for entry in fs::read_dir(into).map_err(StateError::io("list", into))? {
            let entry = entry.map_err(StateError::io("list", into))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".sst") {
                table_files.push(name);
            } else {
                meta_files.push(name);
            }
        }
        table_files.sort();
        meta_files.sort();
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

    /// Copies the key groups `range` from the snapshot in `source` into this store.
    fn copy_key_groups_from(&self, source: &Path, range: KeyGroupRange) -> Result<(), StateError> {
        let old = DB::open_for_read_only(&Options::default(), source, false).map_err(|e| {
            StateError::RocksDb {
                operation: "open snapshot",
                dir: source.to_path_buf(),
                source: e,
            }
        })?;
        let start = group_start(range.start);
        let end = group_start(range.end);
        let mut batch = WriteBatch::default();
        for entry in old.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = entry.map_err(|e| StateError::RocksDb {
                operation: "read snapshot",
                dir: source.to_path_buf(),
                source: e,
            })?;
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

/// Fills `to` with the files of `from`: hard links where the file system allows
/// (table files are immutable), copies otherwise. RocksDB rewrites the MANIFEST and
/// CURRENT of the store it opens, so those are always copied.
fn link_or_copy_dir(from: &Path, to: &Path) -> Result<(), StateError> {
    fs::create_dir_all(to).map_err(StateError::io("create", to))?;
    for entry in fs::read_dir(from).map_err(StateError::io("list", from))? {
        let entry = entry.map_err(StateError::io("list", from))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let is_table = source.extension().is_some_and(|ext| ext == "sst");
        if !(is_table && fs::hard_link(&source, &target).is_ok()) {
            fs::copy(&source, &target).map_err(StateError::io("copy", &source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Partitioning;

    const TABLE: TableId = TableId(0);

    fn fill(store: &KeyedStore, partitioning: Partitioning, keys: std::ops::Range<u32>) {
        let mut batch = WriteBatch::default();
        for i in keys {
            let key = format!("key-{i}");
            let group = partitioning.key_group(key.as_bytes());
            if store.key_groups().contains(group) {
                batch.put(store_key(group, TABLE, key.as_bytes()), i.to_le_bytes());
            }
        }
        store.write(batch).unwrap();
    }

    fn groups_of(store: &KeyedStore) -> Vec<(u16, Vec<u8>)> {
        store
            .entries()
            .unwrap()
            .into_iter()
            .map(|(key, _)| {
                let (group, _, user) = split_store_key(&key);
                (group.0, user.to_vec())
            })
            .collect()
    }

    #[test]
    fn restore_at_a_new_parallelism_keeps_exactly_the_owned_key_groups() {
        let root = tempfile::tempdir().unwrap();
        let max = 128;
        let old = Partitioning::new(2, max).unwrap();
        let mut sources = Vec::new();
        let mut all = Vec::new();
        for subtask in 0..2 {
            let store = KeyedStore::create(
                &root.path().join(format!("old-{subtask}")),
                old.key_groups_of(subtask),
            )
            .unwrap();
            fill(&store, old, 0..2000);
            all.extend(groups_of(&store));
            let snapshot = store
                .snapshot(&root.path().join(format!("snap-{subtask}")))
                .unwrap();
            assert!(!snapshot.table_files.is_empty());
            sources.push(RestoreSource {
                dir: snapshot.dir,
                key_groups: store.key_groups(),
            });
        }
        assert_eq!(all.len(), 2000);

        for parallelism in [1, 3, 4] {
            let new = Partitioning::new(parallelism, max).unwrap();
            let mut restored = Vec::new();
            for subtask in 0..parallelism {
                let range = new.key_groups_of(subtask);
                let store = KeyedStore::restore(
                    &root.path().join(format!("new-{parallelism}-{subtask}")),
                    range,
                    &sources,
                )
                .unwrap();
                let entries = groups_of(&store);
                assert!(
                    entries
                        .iter()
                        .all(|(group, _)| range.contains(KeyGroup(*group))),
                    "subtask {subtask} of {parallelism} holds a key group outside {range:?}"
                );
                restored.extend(entries);
            }
            restored.sort();
            let mut expected = all.clone();
            expected.sort();
            assert_eq!(
                restored, expected,
                "state differs after restore at {parallelism}"
            );
        }
    }

    #[test]
    fn a_snapshot_is_not_changed_by_later_writes() {
        let root = tempfile::tempdir().unwrap();
        let partitioning = Partitioning::new(1, 128).unwrap();
        let store =
            KeyedStore::create(&root.path().join("db"), partitioning.key_groups_of(0)).unwrap();
        fill(&store, partitioning, 0..100);
        let snapshot = store.snapshot(&root.path().join("snap")).unwrap();
        fill(&store, partitioning, 100..200);
        let restored = KeyedStore::restore(
            &root.path().join("restored"),
            partitioning.key_groups_of(0),
            &[RestoreSource {
                dir: snapshot.dir,
                key_groups: partitioning.key_groups_of(0),
            }],
        )
        .unwrap();
        assert_eq!(restored.entries().unwrap().len(), 100);
        assert_eq!(store.entries().unwrap().len(), 200);
    }
}
