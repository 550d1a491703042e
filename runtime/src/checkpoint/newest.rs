//! The newest restore point of a job across its deployments: what a StreamJob's
//! `restoreFrom: {path: latest}` and `strom run --from-savepoint latest` restore.
//!
//! A job's folder (`<state.storage>/<job>`) holds its state directly when
//! `strom run` runs it, and a folder per deployment (`<jobId>`) when the operator
//! does: a stateless redeploy, a restore and a job created again under the same
//! name each start a new one. The newest point is the savepoint or completed
//! checkpoint completed last, in any of them, so the final savepoint of a
//! deleted job is found by the job created again in its place.

use std::collections::BTreeMap;

use super::storage::is_layout_folder;
use super::{CheckpointStorage, Manifest, StorageError};

/// A savepoint or checkpoint found as the newest of a job.
#[derive(Debug, Clone)]
pub struct NewestSnapshot {
    /// Its URL, as `strom run --from-savepoint` takes it.
    pub url: String,
    /// Its manifest.
    pub manifest: Manifest,
}

/// The newest completed savepoint or checkpoint in the job folder at `job_url`
/// (see the module's documentation), by completion time; `None` when it holds
/// neither.
pub async fn newest_snapshot(
    job_url: &str,
    options: &BTreeMap<String, String>,
) -> Result<Option<NewestSnapshot>, StorageError> {
    let job_url = job_url.trim_end_matches('/');
    let job = CheckpointStorage::open(job_url, options)?;
    let mut folders = Vec::new();
    for name in job.list_subfolders("").await? {
        if !is_layout_folder(&name) {
            folders.push(CheckpointStorage::open(
                &format!("{job_url}/{name}"),
                options,
            )?);
        }
    }
    folders.push(job);
    let mut newest: Option<NewestSnapshot> = None;
    for storage in &folders {
        let mut candidates = storage.completed_savepoints().await?;
        candidates.extend(storage.latest_checkpoint().await?);
        for (location, manifest) in candidates {
            let newer = newest
                .as_ref()
                .is_none_or(|found| manifest.completed_at_ms > found.manifest.completed_at_ms);
            if newer {
                newest = Some(NewestSnapshot {
                    url: storage.url_of(&location.dir),
                    manifest,
                });
            }
        }
    }
    Ok(newest)
}
