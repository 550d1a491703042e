//! Keyed state: how it is partitioned among subtasks ([`key_groups`]), the RocksDB
//! store that holds one operator's state on one subtask ([`store`]), and the
//! versioned encoding of keys and values ([`codec`]).

pub mod codec;
pub mod key_groups;
pub mod store;

pub use key_groups::{KeyGroup, KeyGroupRange, Partitioning, PartitioningError};
pub use store::{
    KeyedStore, LocalSnapshot, RestoreSource, StateError, TableId, split_store_key, store_key,
};
