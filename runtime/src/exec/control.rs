//! What a running job shares between its threads: stop and shutdown requests, and
//! the progress the control API and the progress line show.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A completed checkpoint or savepoint, as the job reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedSnapshot {
    /// The epoch it covers.
    pub epoch: u64,
    /// The URL of its folder (what `strom run --from-savepoint` takes).
    pub location: String,
    /// Size of the state files it refers to, in bytes.
    pub state_bytes: u64,
    /// How long it took from the end of its epoch to its manifest, in milliseconds.
    pub duration_ms: u64,
}

/// Shared state of one job in one process.
#[derive(Debug, Default)]
pub struct JobControl {
    stop_requested: AtomicBool,
    shutdown: AtomicBool,
    records_in: AtomicU64,
    records_out: AtomicU64,
    epoch: AtomicU64,
    snapshots: Mutex<Snapshots>,
}

/// The checkpoints and savepoints a job has completed, and why it failed if it did.
#[derive(Debug, Default, Clone)]
pub struct Snapshots {
    /// The newest completed checkpoint.
    pub last_checkpoint: Option<CompletedSnapshot>,
    /// Savepoints taken by this run, oldest first.
    pub savepoints: Vec<CompletedSnapshot>,
    /// The first error that stopped checkpointing, if any.
    pub failure: Option<String>,
}

impl JobControl {
    /// Asks the sources to stop reading; the job then completes a final checkpoint,
    /// takes a savepoint of it and shuts down.
    pub fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }

    /// Tells every operator to finish: sources release their capabilities and the
    /// dataflow drains.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// Whether the job is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Counts records read by sources.
    pub fn add_records_in(&self, count: u64) {
        self.records_in.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts records written by sinks.
    pub fn add_records_out(&self, count: u64) {
        self.records_out.fetch_add(count, Ordering::Relaxed);
    }

    /// Records read by sources so far (this process).
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records written by sinks so far (this process).
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }

    /// Notes that a source has started `epoch`.
    pub fn observe_epoch(&self, epoch: u64) {
        self.epoch.fetch_max(epoch, Ordering::Relaxed);
    }

    /// The newest epoch a source of this process has started.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The checkpoints and savepoints completed so far.
    pub fn snapshots(&self) -> Snapshots {
        self.snapshots
            .lock()
            .expect("snapshot record poisoned")
            .clone()
    }

    pub(crate) fn record_checkpoint(&self, checkpoint: CompletedSnapshot) {
        self.snapshots
            .lock()
            .expect("snapshot record poisoned")
            .last_checkpoint = Some(checkpoint);
    }

    pub(crate) fn record_savepoint(&self, savepoint: CompletedSnapshot) {
        self.snapshots
            .lock()
            .expect("snapshot record poisoned")
            .savepoints
            .push(savepoint);
    }

    pub(crate) fn record_failure(&self, failure: String) {
        let mut snapshots = self.snapshots.lock().expect("snapshot record poisoned");
        snapshots.failure.get_or_insert(failure);
    }
}
