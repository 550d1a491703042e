//! What every operator of a job's worker needs to know: the job's settings, its
//! subtask, where state is kept and what to restore from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;

use crate::checkpoint::{CheckpointStorage, Manifest, RunInfo, SnapshotLocation};
use crate::exec::control::JobControl;
use crate::state::Partitioning;

/// The settings of a job that every worker shares.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// The job's name (the StreamJob's metadata.name).
    pub name: String,
    /// The job's namespace (the StreamJob's metadata.namespace), where it has one:
    /// names that must differ between same-named jobs of two namespaces (Kafka
    /// transactional ids) include it.
    pub namespace: Option<String>,
    /// Parallelism and number of key groups.
    pub partitioning: Partitioning,
    /// How often a checkpoint is taken.
    pub checkpoint_interval: Duration,
    /// How many completed checkpoints to keep.
    pub retained_checkpoints: usize,
    /// Which savepoints of the job's folder to keep when another completes.
    pub savepoint_retention: crate::checkpoint::SavepointRetention,
    /// Local folder for RocksDB working copies and snapshots.
    pub local_dir: PathBuf,
    /// Non-secret object_store options for the job's storage and its file sinks.
    pub storage_options: BTreeMap<String, String>,
    /// Whether a restore may drop the state of operators the job does not have.
    pub allow_non_restored_state: bool,
}

/// The longest an epoch lasts. Epochs are shorter than checkpoint intervals so that
/// sources can hold back (backpressure) a few epochs at a time.
pub const MAX_EPOCH_LENGTH: Duration = Duration::from_millis(20);

impl JobSettings {
    /// How long sources keep an epoch open.
    pub fn epoch_length(&self) -> Duration {
        self.checkpoint_interval.min(MAX_EPOCH_LENGTH)
    }

    /// How many epochs make one checkpoint interval.
    pub fn epochs_per_checkpoint(&self) -> u64 {
        let epoch = self.epoch_length().as_micros().max(1);
        (self.checkpoint_interval.as_micros() / epoch).max(1) as u64
    }

    /// Whether the state after `epoch` is checkpointed: every operator snapshots
    /// and acknowledges exactly these epochs.
    pub fn is_checkpoint_epoch(&self, epoch: u64) -> bool {
        epoch.is_multiple_of(self.epochs_per_checkpoint())
    }

    /// The first checkpoint epoch at or after `epoch`.
    pub fn next_checkpoint_epoch(&self, epoch: u64) -> u64 {
        epoch.next_multiple_of(self.epochs_per_checkpoint())
    }
}

/// The completed checkpoint or savepoint a job restores from.
#[derive(Debug, Clone)]
pub struct RestorePoint {
    /// The store holding it (may differ from the job's own storage).
    pub store: Arc<dyn ObjectStore>,
    /// Where its manifest is and how its paths resolve.
    pub location: SnapshotLocation,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its URL (what `strom run --from-savepoint` takes).
    pub url: String,
    /// The ancestry the new run inherits: the manifest's, or, for a resume of a run
    /// that completed no checkpoint, that run's.
    pub ancestry: Vec<crate::checkpoint::SnapshotId>,
    /// Whether it was named explicitly (a savepoint, or a checkpoint given by
    /// path), rather than found as the job's own latest checkpoint: an explicit
    /// restore is recorded in the new run's ancestry, a resume is not.
    pub explicit: bool,
}

/// One worker's view of the job.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Shared job settings.
    pub settings: Arc<JobSettings>,
    /// This worker's subtask index (timely worker index).
    pub subtask: u32,
    /// The job's checkpoint storage.
    pub storage: CheckpointStorage,
    /// The runtime that performs object-storage I/O off the worker threads.
    pub io: tokio::runtime::Handle,
    /// What to restore from, if anything.
    pub restore: Option<Arc<RestorePoint>>,
    /// The first epoch of this run (one past the restored epoch).
    pub start_epoch: u64,
    /// This run and its lineage, as process 0 decided them.
    pub run: Arc<RunInfo>,
    /// Stop and shutdown requests and progress counters of this process.
    pub control: Arc<JobControl>,
}

impl TaskContext {
    /// The job's partitioning of key groups among subtasks.
    pub fn partitioning(&self) -> Partitioning {
        self.settings.partitioning
    }

    /// This subtask's handle on the metrics of `operator`.
    pub fn operator_metrics(&self, operator: &str) -> crate::exec::control::OperatorMetrics {
        crate::exec::control::OperatorMetrics::new(
            Arc::clone(&self.control),
            operator,
            self.subtask,
        )
    }

    /// The local working folder of `operator` on this subtask.
    pub fn operator_dir(&self, operator: &str) -> PathBuf {
        self.settings
            .local_dir
            .join(&self.settings.name)
            .join(operator)
            .join(self.subtask.to_string())
    }
}
