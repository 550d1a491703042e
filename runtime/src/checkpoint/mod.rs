//! Checkpoints and savepoints: what they hold ([`manifest`]) and how they are kept in
//! object storage ([`storage`]).

pub mod commit;
pub mod manifest;
pub mod newest;
pub mod retention;
pub mod run;
pub mod storage;

pub use commit::finish_commits;
pub use manifest::{
    CollectionPlan, MANIFEST_FILE, MANIFEST_FORMAT_VERSION, Manifest, PendingCommit, SnapshotAck,
    SnapshotFile, SnapshotKind, SubtaskSnapshot, plan_collection,
};
pub use newest::{NewestSnapshot, newest_snapshot};
pub use retention::{SavepointAge, SavepointRetention, savepoints_to_delete};
pub use run::{Restored, RunId, RunInfo, RunRecord, SnapshotId};
pub use storage::{
    CheckpointStorage, ResumePoint, SnapshotLocation, StorageError, check_state_format,
    download_files, locate_snapshot, open_store, read_manifest, read_object_at,
};
