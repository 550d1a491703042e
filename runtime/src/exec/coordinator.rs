//! The checkpoint coordinator, on worker 0: when the frontier of every operator's
//! snapshot acknowledgements passes an epoch, that epoch's snapshots form a
//! consistent checkpoint. The coordinator writes its manifest (the checkpoint then
//! exists), collects garbage, and ends the job once every source has drained —
//! taking a savepoint first when a stop was requested.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::context::{JobSettings, TaskContext};
use super::control::{CompletedSnapshot, JobControl};
use crate::checkpoint::{
    CheckpointStorage, Manifest, PendingCommit, SnapshotAck, SnapshotKind, SubtaskSnapshot,
    finish_commits,
};

/// A consistent checkpoint ready to be written.
struct Completion {
    manifest: Manifest,
    all_drained: bool,
    started: Instant,
}

/// Builds the coordinator on `acks`, the acknowledgements of every stateful operator
/// and source. `operators` names each of them; every one has one subtask per worker.
pub fn coordinator(
    acks: Stream<'_, u64, Vec<SnapshotAck>>,
    ctx: &TaskContext,
    operators: Vec<String>,
) {
    let settings = ctx.settings.clone();
    let is_coordinator = ctx.subtask == 0;
    let (sender, completions) = tokio::sync::mpsc::unbounded_channel::<Completion>();
    if is_coordinator {
        ctx.io.spawn(complete_checkpoints(
            ctx.storage.clone(),
            ctx.control.clone(),
            settings.retained_checkpoints,
            settings.storage_options.clone(),
            completions,
        ));
    }

    let started = Instant::now();
    let mut pending: BTreeMap<u64, Vec<SnapshotAck>> = BTreeMap::new();
    let mut epoch_seen: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut carried: BTreeMap<(String, u32), Vec<PendingCommit>> = BTreeMap::new();
    acks.sink(
        Exchange::new(|_: &SnapshotAck| 0),
        "Checkpoint coordinator",
        move |(input, frontier)| {
            input.for_each_stamp(|stamp, batches| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                epoch_seen.entry(epoch).or_insert_with(Instant::now);
                let acks = pending.entry(epoch).or_default();
                for batch in batches {
                    acks.append(batch);
                }
            });
            if !is_coordinator {
                return;
            }
            // Epochs the frontier has passed have all their acknowledgements: each
            // becomes a checkpoint, in order.
            while let Some((&epoch, _)) = pending.first_key_value() {
                if frontier.less_equal(&epoch) {
                    break;
                }
                let (_, mut acks) = pending.pop_first().expect("checked above");
                let first_seen = epoch_seen.remove(&epoch).unwrap_or(started);
                for ack in &mut acks {
                    let key = (ack.operator.clone(), ack.snapshot.subtask);
                    if let Some(mut commits) = carried.remove(&key) {
                        commits.append(&mut ack.snapshot.pending_commits);
                        ack.snapshot.pending_commits = commits;
                    }
                }
                let all_drained = acks.iter().all(|ack| ack.drained != Some(false));
                match checkpoint_manifest(&settings, &operators, epoch, acks) {
                    Ok(manifest) => {
                        let _ = sender.send(Completion {
                            manifest,
                            all_drained,
                            started: first_seen,
                        });
                    }
                    Err(acks) => {
                        // Never expected: every operator acknowledges every epoch. The
                        // output staged in this epoch is committed with the next one.
                        tracing::warn!(
                            epoch,
                            "epoch passed without every snapshot; not a checkpoint"
                        );
                        for ack in acks {
                            carried
                                .entry((ack.operator, ack.snapshot.subtask))
                                .or_default()
                                .extend(ack.snapshot.pending_commits);
                        }
                    }
                }
            }
        },
    );
}

/// The manifest of the checkpoint of `epoch` from its acknowledgements, or the
/// acknowledgements back when an operator's subtask is missing.
fn checkpoint_manifest(
    settings: &JobSettings,
    operators: &[String],
    epoch: u64,
    acks: Vec<SnapshotAck>,
) -> Result<Manifest, Vec<SnapshotAck>> {
    let parallelism = settings.partitioning.parallelism() as usize;
    let complete = operators.iter().all(|operator| {
        let subtasks = acks.iter().filter(|ack| &ack.operator == operator);
        subtasks.count() == parallelism
    });
    if !complete {
        return Err(acks);
    }
    let mut by_operator: BTreeMap<String, Vec<SubtaskSnapshot>> = BTreeMap::new();
    for ack in acks {
        by_operator
            .entry(ack.operator)
            .or_default()
            .push(ack.snapshot);
    }
    for subtasks in by_operator.values_mut() {
        subtasks.sort_by_key(|snapshot| snapshot.subtask);
    }
    Ok(Manifest {
        kind: SnapshotKind::Checkpoint,
        job: settings.name.clone(),
        epoch,
        parallelism: settings.partitioning.parallelism(),
        max_parallelism: settings.partitioning.max_parallelism(),
        completed_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        operators: by_operator,
    })
}

/// Completes the checkpoints the coordinator sends, in order: manifest, sink
/// commits, garbage collection, requested savepoints, and the end of the job once
/// every source has drained.
async fn complete_checkpoints(
    storage: CheckpointStorage,
    control: Arc<JobControl>,
    retained: usize,
    options: BTreeMap<String, String>,
    mut completions: tokio::sync::mpsc::UnboundedReceiver<Completion>,
) {
    while let Some(Completion {
        manifest,
        all_drained,
        started,
    }) = completions.recv().await
    {
        let epoch = manifest.epoch;
        fail::fail_point!("before-checkpoint-complete", |_| crash(
            "before-checkpoint-complete"
        ));
        if let Err(error) = storage.complete_checkpoint(&manifest).await {
            control.record_checkpoint_failure(format!("checkpoint {epoch}: {error}"));
            continue;
        }
        fail::fail_point!("after-checkpoint-complete", |_| crash(
            "after-checkpoint-complete"
        ));
        // The manifest is the commit decision; recovery finishes these if this
        // process dies first.
        if let Err(error) = finish_commits(&manifest, &options).await {
            control.record_failure(format!(
                "committing the output of checkpoint {epoch}: {error}"
            ));
        }
        control.record_checkpoint(CompletedSnapshot {
            epoch,
            location: storage.url_of(&storage.checkpoint_location(epoch).dir),
            state_bytes: manifest.state_size(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        tracing::info!(epoch, bytes = manifest.state_size(), "checkpoint completed");
        if let Err(error) = storage.collect_garbage(retained).await {
            tracing::warn!(%error, "garbage collection failed; retried after the next checkpoint");
        }

        let stopping = all_drained && control.stop_requested();
        if control.savepoint_pending() || stopping {
            let copy_started = Instant::now();
            let result = match write_savepoint(&storage, &manifest).await {
                Ok(location) => Ok(CompletedSnapshot {
                    epoch,
                    location,
                    state_bytes: manifest.state_size(),
                    duration_ms: copy_started.elapsed().as_millis() as u64,
                }),
                Err(error) => {
                    tracing::warn!(epoch, %error, "savepoint failed");
                    Err(format!("savepoint at epoch {epoch}: {error}"))
                }
            };
            let failed = result.is_err();
            control.settle_savepoints(all_drained, result);
            if failed && stopping {
                // The sources stay drained and close more epochs: the next retries.
                continue;
            }
        }
        if all_drained {
            control.shut_down();
            break;
        }
    }
}

/// Writes the savepoint of `manifest`; its URL. The failpoint `savepoint-write`
/// makes it fail (tests of what follows a failed savepoint).
async fn write_savepoint(
    storage: &CheckpointStorage,
    manifest: &Manifest,
) -> Result<String, String> {
    fail::fail_point!("savepoint-write", |_| Err(
        "failpoint savepoint-write".to_owned()
    ));
    let savepoint = storage
        .write_savepoint(manifest)
        .await
        .map_err(|error| error.to_string())?;
    Ok(storage.url_of(&savepoint.dir))
}

/// Ends the process at once, as a crash would (failpoints in tests).
fn crash(failpoint: &str) -> ! {
    eprintln!("failpoint {failpoint}: crashing");
    std::process::exit(137)
}
