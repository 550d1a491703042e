//! The second phase of sink commits: moving staged output to where readers see it,
//! once the checkpoint that covers it has completed.

use std::collections::BTreeMap;

use object_store::ObjectStoreExt;

use super::manifest::{Manifest, PendingCommit};
use super::storage::{StorageError, open_store};

/// Finishes every commit `manifest` decides. Idempotent: a commit whose staged
/// object is gone and whose target exists was finished before (e.g. by the run that
/// crashed after it); recovery calls this again for the checkpoint it restores.
/// Returns the number of objects moved now.
pub async fn finish_commits(
    manifest: &Manifest,
    options: &BTreeMap<String, String>,
) -> Result<usize, StorageError> {
    let mut moved = 0;
    for commit in manifest.pending_commits() {
        if finish_commit(commit, options).await? {
            moved += 1;
        }
    }
    Ok(moved)
}

async fn finish_commit(
    commit: &PendingCommit,
    options: &BTreeMap<String, String>,
) -> Result<bool, StorageError> {
    let (store, staged) = open_store(&commit.staged, options)?;
    let (_, target) = open_store(&commit.target, options)?;
    match store.rename(&staged, &target).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => match store.head(&target).await {
            Ok(_) => Ok(false),
            Err(object_store::Error::NotFound { .. }) => {
                // Neither staged nor committed: someone removed the output. Nothing
                // can bring it back; say so and go on.
                tracing::warn!(staged = %commit.staged, target = %commit.target, "committed output is missing");
                Ok(false)
            }
            Err(source) => Err(StorageError::ObjectStore {
                operation: "check committed output",
                path: target.to_string(),
                source,
            }),
        },
        Err(source) => Err(StorageError::ObjectStore {
            operation: "commit staged output",
            path: staged.to_string(),
            source,
        }),
    }
}
