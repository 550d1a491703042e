//! The exactly-once file sink: each subtask stages an epoch's output as one object
//! and reports it with the epoch's snapshot; the coordinator moves it into place
//! once the checkpoint that covers the epoch has completed. Output of epochs whose
//! checkpoint never completed is removed on restart and produced again.
//!
//! Layout under the sink's folder: `part-<run>-<epoch>-<subtask>.txt` (visible
//! output) and `_staging/<run>-<epoch>-<subtask>.part` (written, not yet committed).
//! Names carry the run (see [`crate::checkpoint::run`]): epochs restart with every
//! run, so a later run into the same folder — a stateless restart, a restore of an
//! older savepoint — adds its parts beside the earlier runs' instead of replacing
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::context::TaskContext;
use super::control::OperatorLabel;
use super::item::Item;
use crate::checkpoint::{
    PendingCommit, RunId, SnapshotAck, SnapshotId, StorageError, SubtaskSnapshot, open_store,
};

/// The folder of staged output under a sink's folder.
const STAGING_DIR: &str = "_staging";

/// The name of a subtask's output of the checkpoint `id`, without its extension.
fn output_name(id: &SnapshotId, subtask: u32) -> String {
    format!("{}-{:020}-{subtask}", id.run, id.epoch)
}

/// The checkpoint a staged object's name is of; names from before runs existed
/// (`<epoch>-<subtask>.part`) are of the legacy run.
fn staged_checkpoint(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(".part")?;
    let (checkpoint, _subtask) = stem.rsplit_once('-')?;
    SnapshotId::parse_name(checkpoint)
}

/// Removes staged output that no completed checkpoint will commit: staged by a run
/// of this job (`job_runs`, other than `current`) for a checkpoint that is not
/// among `completed`. Called once the commits of every completed checkpoint have
/// been finished, so what remains of those runs was never committed. Staged output
/// of runs this job does not know (another job writing the same folder) is left
/// alone.
async fn abort_staged(
    store: &dyn ObjectStore,
    dir: &Path,
    job_runs: &BTreeSet<RunId>,
    completed: &BTreeSet<SnapshotId>,
    current: RunId,
) -> Result<usize, StorageError> {
    let staging = dir.clone().join(STAGING_DIR);
    let staged: Vec<_> = store
        .list(Some(&staging))
        .try_collect()
        .await
        .map_err(|source| StorageError::ObjectStore {
            operation: "list staged output",
            path: staging.to_string(),
            source,
        })?;
    let mut removed = 0;
    for object in staged {
        let Some(id) = object.location.filename().and_then(staged_checkpoint) else {
            continue;
        };
        if id.run == current || !job_runs.contains(&id.run) || completed.contains(&id) {
            continue;
        }
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
            Err(source) => {
                return Err(StorageError::ObjectStore {
                    operation: "remove staged output",
                    path: object.location.to_string(),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

/// What this job's storage says of earlier runs: which runs are its own, and
/// which of their checkpoints completed.
async fn earlier_runs(
    ctx: &TaskContext,
) -> Result<(BTreeSet<RunId>, BTreeSet<SnapshotId>), StorageError> {
    let runs = ctx.storage.known_runs().await?;
    let completed = ctx.storage.completed_checkpoints().await?;
    Ok((runs, completed.into_iter().collect()))
}

/// Builds the exactly-once file sink `operator` writing `format(record)` lines
/// into the folder at `url` (`file://` or `s3://`). Returns its snapshot
/// acknowledgements for the checkpoint coordinator.
pub fn exactly_once_file_sink<'scope, T: 'static>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    ctx: &TaskContext,
    operator: &str,
    url: &str,
    mut format: impl FnMut(&T, &mut String) + 'static,
) -> Result<Stream<'scope, u64, Vec<SnapshotAck>>, StorageError> {
    let url = url.trim_end_matches('/').to_owned();
    let (store, dir) = open_store(&url, &ctx.settings.storage_options)?;
    if ctx.subtask == 0 {
        let (runs, completed) = ctx.io.block_on(earlier_runs(ctx))?;
        let removed = ctx.io.block_on(abort_staged(
            store.as_ref(),
            &dir,
            &runs,
            &completed,
            ctx.run.id,
        ))?;
        if removed > 0 {
            tracing::info!(
                removed,
                sink = operator,
                "removed output of unfinished checkpoints"
            );
        }
    }

    let mut builder = OperatorBuilder::new(format!("File sink {operator}"), stream.scope());
    let mut input = builder.new_input(stream, Local);
    let (mut ack_output, acks) = builder.new_output::<Vec<SnapshotAck>>();
    let ctx = ctx.clone();
    let operator = operator.to_owned();
    let series = OperatorLabel::new(&operator, ctx.subtask);

    builder.build(move |capabilities| {
        let mut ack_cap = capabilities.into_iter().next().map(|mut cap| {
            cap.downgrade(&ctx.start_epoch);
            cap
        });
        let mut next_epoch = ctx.start_epoch;
        let mut buffers: BTreeMap<u64, String> = BTreeMap::new();
        // Output of passed epochs since the last checkpoint epoch.
        let mut unstaged = String::new();
        // Stages `text` as the output of the checkpoint of `epoch`.
        let stage = {
            let (ctx, operator, store, dir, url) = (
                ctx.clone(),
                operator.clone(),
                Arc::clone(&store),
                dir.clone(),
                url.clone(),
            );
            move |epoch: u64, text: String| -> PendingCommit {
                let id = SnapshotId {
                    run: ctx.run.id,
                    epoch,
                };
                let name = output_name(&id, ctx.subtask);
                let staged = dir.clone().join(STAGING_DIR).join(format!("{name}.part"));
                let put = ctx
                    .io
                    .block_on(store.put(&staged, PutPayload::from(text.into_bytes())));
                if let Err(error) = put {
                    let message = format!("sink {operator}: staging {staged}: {error}");
                    ctx.control.record_failure(message.clone());
                    panic!("{message}");
                }
                PendingCommit {
                    staged: format!("{url}/{STAGING_DIR}/{name}.part"),
                    target: format!("{url}/part-{name}.txt"),
                }
            }
        };

        move |frontiers| {
            input.for_each_stamp(|stamp, batches| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                let buffer = buffers.entry(epoch).or_default();
                for batch in batches {
                    let mut written = 0;
                    for item in batch.drain(..) {
                        if let Item::Record(record) = item {
                            format(&record, buffer);
                            buffer.push('\n');
                            written += 1;
                        }
                    }
                    ctx.control.add_records_out(&series, written);
                }
            });
            let Some(cap) = ack_cap.as_mut() else { return };
            let Some(frontier) = frontiers[0].frontier().first().copied() else {
                // The input has ended: the job is shutting down.
                ack_cap = None;
                return;
            };
            while next_epoch < frontier {
                let epoch = next_epoch;
                if let Some(text) = buffers.remove(&epoch) {
                    unstaged.push_str(&text);
                }
                if ctx.settings.is_checkpoint_epoch(epoch) {
                    let mut pending_commits = Vec::new();
                    if !unstaged.is_empty() {
                        let text = std::mem::take(&mut unstaged);
                        pending_commits.push(stage(epoch, text));
                    }
                    let ack = SnapshotAck {
                        operator: operator.clone(),
                        epoch,
                        snapshot: SubtaskSnapshot {
                            subtask: ctx.subtask,
                            pending_commits,
                            ..SubtaskSnapshot::default()
                        },
                        drained: None,
                    };
                    ack_output
                        .activate()
                        .give(&cap.delayed(&epoch), &mut vec![ack]);
                }
                // Skip the epochs with nothing buffered and no checkpoint.
                let next_buffered = buffers.keys().next().copied().unwrap_or(u64::MAX);
                let next_checkpoint = ctx.settings.next_checkpoint_epoch(epoch + 1);
                next_epoch = next_buffered
                    .min(next_checkpoint)
                    .min(frontier)
                    .max(epoch + 1);
            }
            if frontier > *cap.time() {
                cap.downgrade(&frontier);
            }
        }
    });
    Ok(acks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_names_carry_their_run_and_epoch() {
        let id = SnapshotId {
            run: RunId {
                sequence: 3,
                nonce: 0xabc,
            },
            epoch: 42,
        };
        let name = format!("{}.part", output_name(&id, 7));
        assert_eq!(name, "000003-00000abc-00000000000000000042-7.part");
        assert_eq!(staged_checkpoint(&name), Some(id));
        assert_eq!(
            staged_checkpoint("00000000000000000042-7.part"),
            Some(SnapshotId {
                run: RunId::LEGACY,
                epoch: 42
            })
        );
        assert_eq!(staged_checkpoint("notes.txt"), None);
    }

    /// Issue 14, point 3: only what this job's runs staged for checkpoints that never
    /// completed is removed; the current run's, completed checkpoints', and unknown
    /// runs' staged output stay.
    #[tokio::test]
    async fn only_staged_output_of_this_jobs_unfinished_checkpoints_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let run = |sequence| RunId { sequence, nonce: 1 };
        let other_job = RunId {
            sequence: 1,
            nonce: 2,
        };
        let id = |run, epoch| SnapshotId { run, epoch };
        let names = [
            (id(run(1), 10), false), // completed checkpoint: kept
            (id(run(1), 20), true),  // never completed: removed
            (id(run(2), 5), false),  // the current run: kept
            (id(other_job, 20), false),
        ];
        for (checkpoint, _) in &names {
            let path = Path::from(format!("{STAGING_DIR}/{}.part", output_name(checkpoint, 0)));
            store.put(&path, PutPayload::from("x")).await.unwrap();
        }
        let runs = BTreeSet::from([run(1), run(2)]);
        let completed = BTreeSet::from([id(run(1), 10)]);
        let removed = abort_staged(&store, &Path::from(""), &runs, &completed, run(2))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        for (checkpoint, gone) in &names {
            let path = dir
                .path()
                .join(STAGING_DIR)
                .join(format!("{}.part", output_name(checkpoint, 0)));
            assert_eq!(!path.exists(), *gone, "{checkpoint}");
        }
    }
}
