//! Keyed state: how it is partitioned among subtasks ([`key_groups`]), the RocksDB
//! store that holds one operator's state on one subtask ([`store`]), how a restore
//! adds a snapshot's table files to a new store (`ingest`), and the versioned
//! encoding of keys and values ([`codec`]).

pub mod codec;
mod ingest;
pub mod key_groups;
pub mod store;

pub use key_groups::{KeyGroup, KeyGroupRange, Partitioning, PartitioningError};
pub use store::{
    KeyedStore, LocalSnapshot, LocalTableFile, RestoreSource, StateError, TableFileInfo, TableId,
    split_store_key, store_key,
};
