//! The checkpoint coordinator, on worker 0: when the frontier of every operator's
//! snapshot acknowledgements passes an epoch, that epoch's snapshots form a
//! consistent checkpoint. The coordinator writes its manifest (the checkpoint then
//! exists), collects garbage, and ends the job once every source has drained —
//! taking a savepoint first when a stop was requested.

use std::collections::BTreeMap;
use std::time::Instant;

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::context::{JobSettings, TaskContext};
use super::control::CompletedSnapshot;
use crate::checkpoint::{
    Manifest, PendingCommit, SnapshotAck, SnapshotKind, SubtaskSnapshot, finish_commits,
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
    let (sender, mut completions) = tokio::sync::mpsc::unbounded_channel::<Completion>();
    if is_coordinator {
        let storage = ctx.storage.clone();
        let control = ctx.control.clone();
        let retained = settings.retained_checkpoints;
        let options = settings.storage_options.clone();
        ctx.io.spawn(async move {
            while let Some(completion) = completions.recv().await {
                let Completion {
                    manifest,
                    all_drained,
                    started,
                } = completion;
                fail::fail_point!("before-checkpoint-complete", |_| crash("before-checkpoint-complete"));
                if let Err(error) = storage.complete_checkpoint(&manifest).await {
                    control.record_failure(format!("checkpoint {}: {error}", manifest.epoch));
                    continue;
                }
                fail::fail_point!("after-checkpoint-complete", |_| crash("after-checkpoint-complete"));
                // The manifest is the commit decision; recovery finishes these if this
                // process dies first.
                if let Err(error) = finish_commits(&manifest, &options).await {
                    control.record_failure(format!(
                        "committing the output of checkpoint {}: {error}",
                        manifest.epoch
                    ));
                }
                let location = storage.checkpoint_location(manifest.epoch);
                control.record_checkpoint(CompletedSnapshot {
                    epoch: manifest.epoch,
                    location: storage.url_of(&location.dir),
                    state_bytes: manifest.state_size(),
                    duration_ms: started.elapsed().as_millis() as u64,
                });
                tracing::info!(epoch = manifest.epoch, bytes = manifest.state_size(), "checkpoint completed");
                if let Err(error) = storage.collect_garbage(retained).await {
                    tracing::warn!(%error, "garbage collection failed; retried after the next checkpoint");
                }
                if !all_drained {
                    continue;
                }
                if control.stop_requested() {
                    let savepoint_started = Instant::now();
                    match storage.write_savepoint(&manifest).await {
                        Ok(savepoint) => control.record_savepoint(CompletedSnapshot {
                            epoch: manifest.epoch,
                            location: storage.url_of(&savepoint.dir),
                            state_bytes: manifest.state_size(),
                            duration_ms: savepoint_started.elapsed().as_millis() as u64,
                        }),
                        Err(error) => {
                            // The sources stay drained and close more epochs: the next
                            // one retries the savepoint.
                            control.record_failure(format!("savepoint at epoch {}: {error}", manifest.epoch));
                            continue;
                        }
                    }
                }
                control.shut_down();
                break;
            }
        });
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

/// Ends the process at once, as a crash would (failpoints in tests).
fn crash(failpoint: &str) -> ! {
    eprintln!("failpoint {failpoint}: crashing");
    std::process::exit(137)
}
