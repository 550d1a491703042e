//! The Strom streaming runtime.
//!
//! - [`api`]: the DataStream API pipelines are written in;
//! - [`exec`]: execution on timely-dataflow, epochs, the checkpoint coordinator;
//! - [`state`]: key groups and the RocksDB store of keyed state;
//! - [`checkpoint`]: manifests, object storage, garbage collection, savepoints;
//! - [`connectors`]: Kafka sources and sinks;
//! - [`format`]: record formats (JSON, raw, text, Avro);
//! - [`sql`]: Flink SQL planned by DataFusion, run on Arrow batches;
//! - [`pipelines`]: DataStream pipelines by name (built in, or a user's);
//! - [`cli`]: the `strom` command line, for the runtime's binary and a user's own.

pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod connectors;
pub mod control;
pub mod exec;
pub mod format;
pub mod logging;
pub mod pipelines;
pub mod sql;
pub mod state;
