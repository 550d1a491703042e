//! Uploading an operator's RocksDB snapshots in the background, one at a time and in
//! epoch order, while the operator goes on with the next epoch.

use std::collections::BTreeMap;
use std::sync::mpsc;

use timely::scheduling::SyncActivator;

use crate::checkpoint::{CheckpointStorage, RunId, SnapshotFile, SnapshotId, StorageError};
use crate::state::LocalSnapshot;

/// An upload that finished: the epoch and the stored files, or why it failed.
pub type UploadResult = (u64, Result<Vec<SnapshotFile>, StorageError>);

/// Sends snapshots to a background task that uploads them, and collects results.
pub struct Uploader {
    requests: tokio::sync::mpsc::UnboundedSender<(u64, LocalSnapshot)>,
    results: mpsc::Receiver<UploadResult>,
}

impl Uploader {
    /// Starts the upload task of `operator`'s subtask `subtask` of `run` on `io`.
    /// `activator` wakes the operator when an upload finishes.
    pub fn start(
        io: &tokio::runtime::Handle,
        storage: CheckpointStorage,
        (operator, subtask): (String, u32),
        run: RunId,
        activator: SyncActivator,
    ) -> Self {
        let (requests, mut incoming) =
            tokio::sync::mpsc::unbounded_channel::<(u64, LocalSnapshot)>();
        let (done, results) = mpsc::channel();
        // Names the RocksDB instance, so table files of different instances (and of
        // the same subtask before and after a restore) never collide in `shared/`.
        let store_id = uuid::Uuid::new_v4().simple().to_string();
        io.spawn(async move {
            let mut uploaded = BTreeMap::new();
            while let Some((epoch, snapshot)) = incoming.recv().await {
                // Tests slow uploads down with it (`snapshot-upload=delay(ms)`).
                fail::fail_point!("snapshot-upload");
                let result = storage
                    .upload_snapshot(
                        &snapshot,
                        &operator,
                        subtask,
                        &SnapshotId { run, epoch },
                        &store_id,
                        &mut uploaded,
                    )
                    .await;
                let _ = tokio::fs::remove_dir_all(&snapshot.dir).await;
                if done.send((epoch, result)).is_err() {
                    break;
                }
                let _ = activator.activate();
            }
        });
        Self { requests, results }
    }

    /// Queues `snapshot` of `epoch` for upload.
    pub fn upload(&self, epoch: u64, snapshot: LocalSnapshot) {
        // The task only ends when this sender is dropped.
        let _ = self.requests.send((epoch, snapshot));
    }

    /// The uploads finished since the last call, in epoch order.
    pub fn finished(&self) -> Vec<UploadResult> {
        self.results.try_iter().collect()
    }
}
