//! The Strom streaming runtime.
//!
//! So far: how keyed state is partitioned ([`state::key_groups`]) and how records
//! reach the subtask that owns their key on timely-dataflow ([`exec`]). Operators
//! with state, checkpoints and connectors build on these.

pub mod exec;
pub mod state;
