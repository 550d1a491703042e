//! Adding table files written by another RocksDB instance to a store as they are,
//! with their sequence numbers: how a restore builds a store from only the table
//! files of a snapshot that hold its key groups, without the snapshot's MANIFEST.
//!
//! RocksDB allows it (`IngestExternalFileOptions::allow_db_generated_files`,
//! RocksDB 10 and later), but the rocksdb crate does not expose that option, so
//! this module calls RocksDB's C API itself. It is the only module allowed unsafe
//! code; every pointer it passes lives for the whole call.
//!
//! RocksDB's rules for such an ingestion, which the caller keeps:
//! - the files may overlap one another, but where a key is in several files, the
//!   files holding older versions come first (a snapshot's files in the reverse of
//!   RocksDB's listing: the deepest level first, level 0 oldest first);
//! - they must not overlap anything already in the store: RocksDB refuses the
//!   whole ingestion then ([`IngestError::Overlaps`]), and the store is unchanged.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use librocksdb_sys as ffi;
use rocksdb::{AsRawPtr, DB};

/// Why table files were not ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The files overlap keys already in the store; nothing was ingested.
    #[error("the files overlap keys already in the store: {0}")]
    Overlaps(String),
    /// RocksDB refused the files for another reason (a missing or corrupt file).
    #[error("{0}")]
    Failed(String),
}

/// Ingests `files` (in this order, older data first) into `db`, keeping their
/// sequence numbers, and moves them into the store's folder (hard links where the
/// file system allows, so the originals are gone once this returns `Ok`).
pub fn ingest_db_files(db: &DB, files: &[PathBuf]) -> Result<(), IngestError> {
    if files.is_empty() {
        return Ok(());
    }
    let paths: Vec<CString> = files
        .iter()
        .map(|path| c_path(path))
        .collect::<Result<_, _>>()?;
    let pointers: Vec<*const c_char> = paths.iter().map(|path| path.as_ptr()).collect();
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: `db` outlives the call; `options` is created, used and destroyed
    // here; `pointers` holds `pointers.len()` NUL-terminated strings owned by
    // `paths`, alive for the call; `error` is either left null or set to a string
    // RocksDB allocated, which is freed below with `rocksdb_free`.
    unsafe {
        let options = ffi::rocksdb_ingestexternalfileoptions_create();
        ffi::rocksdb_ingestexternalfileoptions_set_allow_db_generated_files(options, 1);
        ffi::rocksdb_ingestexternalfileoptions_set_move_files(options, 1);
        // Both would need new sequence numbers, which such files cannot take.
        ffi::rocksdb_ingestexternalfileoptions_set_snapshot_consistency(options, 0);
        ffi::rocksdb_ingestexternalfileoptions_set_allow_blocking_flush(options, 0);
        ffi::rocksdb_ingest_external_file(
            db.as_raw_ptr(),
            pointers.as_ptr(),
            pointers.len(),
            options,
            &mut error,
        );
        ffi::rocksdb_ingestexternalfileoptions_destroy(options);
    }
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: RocksDB set `error` to a NUL-terminated string it allocated; it is
    // copied, then freed once.
    let message = unsafe {
        let message = CStr::from_ptr(error).to_string_lossy().into_owned();
        ffi::rocksdb_free(error.cast());
        message
    };
    // RocksDB's status texts: "Invalid argument: An ingested file overlaps with
    // existing data ..." and, for keys still in the memtable, "... requires flush".
    if message.contains("overlaps with existing data") || message.contains("requires flush") {
        Err(IngestError::Overlaps(message))
    } else {
        Err(IngestError::Failed(message))
    }
}

fn c_path(path: &Path) -> Result<CString, IngestError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IngestError::Failed(format!("file name {} holds a NUL byte", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::{Options, WriteBatch, WriteOptions};

    fn open(dir: &Path) -> DB {
        let mut options = Options::default();
        options.create_if_missing(true);
        DB::open(&options, dir).unwrap()
    }

    /// The table files of `db`'s checkpoint in `into`, in ingestion order.
    fn checkpoint_files(db: &DB, into: &Path) -> Vec<PathBuf> {
        rocksdb::checkpoint::Checkpoint::new(db)
            .unwrap()
            .create_checkpoint(into)
            .unwrap();
        let read = DB::open_for_read_only(&Options::default(), into, false).unwrap();
        let mut files: Vec<PathBuf> = read
            .live_files()
            .unwrap()
            .into_iter()
            .map(|file| into.join(file.name.trim_start_matches('/')))
            .collect();
        files.reverse();
        files
    }

    #[test]
    fn files_of_several_levels_keep_the_newest_value_of_each_key() {
        let root = tempfile::tempdir().unwrap();
        let source = open(&root.path().join("source"));
        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);
        // Four flushes, each a level-0 file, the later ones overwriting and deleting
        // keys of the earlier ones; a compaction pushes the first two down.
        for round in 0..4u32 {
            let mut batch = WriteBatch::default();
            for key in 0..100u32 {
                if key % 4 == round {
                    batch.delete(key.to_be_bytes());
                } else {
                    batch.put(key.to_be_bytes(), round.to_be_bytes());
                }
            }
            source.write_opt(batch, &no_wal).unwrap();
            source.flush().unwrap();
            if round == 1 {
                source.compact_range(None::<&[u8]>, None::<&[u8]>);
            }
        }
        let expected: Vec<_> = source
            .iterator(rocksdb::IteratorMode::Start)
            .map(Result::unwrap)
            .collect();
        let files = checkpoint_files(&source, &root.path().join("checkpoint"));
        assert!(files.len() >= 3, "{files:?}");

        let target = open(&root.path().join("target"));
        ingest_db_files(&target, &files).unwrap();
        let got: Vec<_> = target
            .iterator(rocksdb::IteratorMode::Start)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, expected);
        assert!(files.iter().all(|file| !file.exists()), "files are moved");

        // Later writes are newer than everything ingested.
        target.put(7u32.to_be_bytes(), b"after").unwrap();
        assert_eq!(
            target.get(7u32.to_be_bytes()).unwrap().as_deref(),
            Some(&b"after"[..])
        );
    }

    #[test]
    fn files_overlapping_the_store_are_refused_and_change_nothing() {
        let root = tempfile::tempdir().unwrap();
        let source = open(&root.path().join("source"));
        source.put(b"b", b"source").unwrap();
        source.flush().unwrap();
        let files = checkpoint_files(&source, &root.path().join("checkpoint"));

        let target = open(&root.path().join("target"));
        target.put(b"a", b"target").unwrap();
        target.put(b"b", b"target").unwrap();
        target.flush().unwrap();
        match ingest_db_files(&target, &files) {
            Err(IngestError::Overlaps(_)) => {}
            other => panic!("expected an overlap, got {other:?}"),
        }
        assert_eq!(target.get(b"b").unwrap().as_deref(), Some(&b"target"[..]));
        assert!(files.iter().all(|file| file.exists()), "files are kept");

        // RocksDB looks at keys, not at file bounds: a file between two keys of
        // the store goes in.
        let between = open(&root.path().join("between"));
        between.put(b"a", b"between").unwrap();
        between.put(b"c", b"between").unwrap();
        between.flush().unwrap();
        ingest_db_files(&between, &files).unwrap();
        assert_eq!(between.get(b"b").unwrap().as_deref(), Some(&b"source"[..]));
    }
}
