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

/// The memory allocator Strom's binaries run on (mimalloc), for a binary of
/// one's own too:
///
/// ```no_run
/// #[global_allocator]
/// static ALLOCATOR: strom_runtime::Allocator = strom_runtime::Allocator;
/// # fn main() {}
/// ```
///
/// It replaces `malloc` and `free` for the whole process (mimalloc's `override`),
/// so librdkafka's and RocksDB's allocations go through it as well: they are
/// many small ones, made on one thread and often freed on another (a worker's
/// message copies, freed by librdkafka's broker thread). Against the system
/// allocator it ran a Kafka keyed count 1.3-1.6x and Nexmark q1 and a HOP count
/// 1.2-1.8x as fast on 2 cores (docs/architecture.md, "Memory allocator"). Any
/// binary that links the runtime gets the override; the declaration above makes
/// sure of it. mimalloc 2: mimalloc 3.3 crashes before `main` on glibc 2.44.
pub use mimalloc::MiMalloc as Allocator;
