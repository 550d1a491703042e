//! Execution on timely-dataflow. A job's subtask `i` is timely worker `i` (process
//! index × threads per process + thread); timestamps are epochs, and every epoch
//! boundary is a checkpoint.
//!
//! - [`source`]: split sources that close epochs and checkpoint their positions;
//! - [`alignment`]: source subtasks reading no further ahead in event time than
//!   a set drift;
//! - [`keyed`]: the keyed stateful operator (epoch-exact apply, RocksDB snapshots);
//! - [`coordinator`]: turns the snapshots of an epoch into a checkpoint;
//! - [`job`]: starts workers and runs a job to its end.

pub mod alignment;
pub mod context;
pub mod control;
pub mod coordinator;
pub mod exchange;
pub mod file_sink;
pub mod file_source;
pub mod function;
pub mod item;
pub mod job;
pub mod keyed;
pub mod malformed;
pub mod snapshot;
pub mod source;
mod timers;
pub mod window;

pub use context::{JobSettings, TaskContext};
pub use control::{CompletedSnapshot, JobControl, Snapshots};
pub use exchange::by_key_group;
pub use file_source::{FileSource, FileSourceError};
pub use function::{KeyState, KeyedFunction};
pub use item::{EventTime, Item, Watermark};
pub use job::{JobConfig, JobError, JobReport, PipelineFn, Processes, RestoreFrom, run_job};
pub use source::{EventTimes, Generator, ReadStatus, SourceError, SplitId, SplitSource};
pub use window::{Aggregation, WindowKind, WindowResult};
