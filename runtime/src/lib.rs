//! The Strom streaming runtime.
//!
//! So far: how keyed state is partitioned ([`state::key_groups`]). The engine on
//! timely-dataflow, checkpoints and connectors build on it.

pub mod state;
