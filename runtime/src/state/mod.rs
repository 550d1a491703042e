//! Keyed state: how it is partitioned among subtasks, and (to come) the RocksDB
//! backend that holds it.

pub mod key_groups;

pub use key_groups::{KeyGroup, KeyGroupRange, Partitioning, PartitioningError};
