//! Execution on timely-dataflow: a job's subtask `i` is timely worker `i`
//! (process index × threads per process + thread), so routing a record to the
//! subtask that owns its key is a timely exchange.

pub mod exchange;

pub use exchange::by_key_group;
