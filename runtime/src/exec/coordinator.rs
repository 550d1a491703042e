//! The checkpoint coordinator, on worker 0: when the frontier of every operator's
//! snapshot acknowledgements passes an epoch, that epoch's snapshots form a
//! consistent checkpoint. The coordinator writes its manifest (the checkpoint then
//! exists), collects garbage, and ends the job once every source has drained —
//! taking a savepoint first when a stop was requested.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::context::{JobSettings, RestorePoint, TaskContext};
use super::control::{CompletedSnapshot, JobControl};
use crate::checkpoint::{
    CheckpointStorage, MANIFEST_FORMAT_VERSION, Manifest, PendingCommit, RunInfo,
    SavepointRetention, SnapshotAck, SnapshotId, SnapshotKind, StorageError, SubtaskSnapshot,
    finish_commits,
};
use crate::state::codec::STATE_FORMAT;

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
    let run = Arc::clone(&ctx.run);
    let is_coordinator = ctx.subtask == 0;
    let (sender, completions) = tokio::sync::mpsc::unbounded_channel::<Completion>();
    if is_coordinator {
        let borrowed = BorrowedSavepoints::of(&ctx.storage, ctx.restore.as_deref());
        ctx.io.spawn(complete_checkpoints(
            borrowed,
            ctx.storage.clone(),
            ctx.control.clone(),
            settings.retained_checkpoints,
            settings.savepoint_retention,
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
                match checkpoint_manifest(&settings, &run, &operators, epoch, acks) {
                    Ok(manifest) => {
                        let _ = sender.send(Completion {
                            manifest,
                            all_drained,
                            started: first_seen,
                        });
                    }
                    Err(acks) => {
                        if frontier.is_empty() {
                            // The job ended: its sources, drained, went on through
                            // epochs while its final checkpoint completed, and the
                            // other operators stopped before reaching them.
                            tracing::debug!(epoch, "the job ended before this epoch's checkpoint");
                        } else {
                            // Never expected while the job runs: every operator
                            // acknowledges every epoch. The output staged in this
                            // epoch is committed with the next one.
                            tracing::warn!(
                                epoch,
                                "epoch passed without every snapshot; not a checkpoint"
                            );
                        }
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
    run: &RunInfo,
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
        format_version: MANIFEST_FORMAT_VERSION,
        state_format: STATE_FORMAT,
        kind: SnapshotKind::Checkpoint,
        job: settings.name.clone(),
        run: run.id,
        ancestry: run.ancestry.clone(),
        epoch,
        parallelism: settings.partitioning.parallelism(),
        max_parallelism: settings.partitioning.max_parallelism(),
        completed_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        operators: by_operator,
        borrowed: false,
    })
}

/// How many checkpoints may wait for their output commits (retried after each
/// later checkpoint) before the job fails.
const MAX_UNCOMMITTED: usize = 100;

/// How long the end of a job retries sink commits that failed before it gives up
/// (the job then fails; a restart finishes them, as the manifests decided them).
const FINAL_COMMIT_DEADLINE: Duration = Duration::from_secs(60);

/// Completes the checkpoints the coordinator sends, in order: manifest, sink
/// commits, requested savepoints, garbage collection, and the end of the job once
/// every source has drained.
///
/// Storage errors lose nothing: a checkpoint whose manifest cannot be written does
/// not exist, and its staged output is committed with the next checkpoint; a commit
/// that fails is retried after every later checkpoint and at the end of the job.
async fn complete_checkpoints(
    mut borrowed: BorrowedSavepoints,
    storage: CheckpointStorage,
    control: Arc<JobControl>,
    retained: usize,
    retention: SavepointRetention,
    options: BTreeMap<String, String>,
    mut completions: tokio::sync::mpsc::UnboundedReceiver<Completion>,
) {
    let mut carried = CarriedCommits::default();
    // Completed checkpoints whose commits have not all been finished.
    let mut uncommitted: Vec<Manifest> = Vec::new();
    // The savepoint being copied beside the checkpoints that follow it.
    let mut copying: Option<SavepointCopy> = None;
    loop {
        let completion = tokio::select! {
            // A copy that finishes settles the requests it was started for (first,
            // so that its result is never lost to the end of the completions).
            biased;
            finished = async { (&mut copying.as_mut().expect("checked").task).await },
                if copying.is_some() =>
            {
                let copy = copying.take().expect("checked");
                control.settle_savepoints(false, copy.requests_through, joined(finished));
                continue;
            }
            completion = completions.recv() => completion,
        };
        let Some(Completion {
            mut manifest,
            all_drained,
            started,
        }) = completion
        else {
            break;
        };
        let epoch = manifest.epoch;
        // A savepoint of this checkpoint serves the requests made before it
        // completes, not those made after.
        let requests_through = control.last_savepoint_request();
        carried.add_to(&mut manifest);
        // The crash windows of two-phase commit, for tests: only checkpoints that
        // hold output awaiting their completion count, so a test armed on the n-th
        // reaches its window by construction, not by timing.
        let holds_output = manifest.holds_uncommitted_output();
        fail::fail_point!("before-checkpoint-complete", holds_output, |_| crash(
            "before-checkpoint-complete"
        ));
        if let Err(error) = write_manifest(&storage, &manifest).await {
            control.record_checkpoint_failure(format!("checkpoint {epoch}: {error}"));
            carried.take_from(manifest);
            if all_drained {
                // The next try comes at the checkpoint interval, not at once.
                control.pace_drained_sources();
            }
            continue;
        }
        fail::fail_point!("after-checkpoint-complete", holds_output, |_| crash(
            "after-checkpoint-complete"
        ));
        // The manifest is the commit decision; recovery finishes these if this
        // process dies first.
        uncommitted.push(manifest.clone());
        if !commit_in_order(&mut uncommitted, &options, &control).await
            && uncommitted.len() > MAX_UNCOMMITTED
        {
            // Storage keeps refusing: end the job (a restart commits what the
            // manifests decided) rather than hold ever more checkpoints in memory.
            control.record_failure(format!(
                "the output of {} checkpoints could not be committed; the last error is in lastError",
                uncommitted.len()
            ));
            break;
        }
        control.record_checkpoint(CompletedSnapshot {
            epoch,
            location: storage.url_of(&storage.checkpoint_location(&manifest.id()).dir),
            state_bytes: manifest.state_size(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        tracing::info!(epoch, bytes = manifest.state_size(), "checkpoint completed");

        // A stop's savepoint is copied (or handed over) before the job ends,
        // beside a copy under way (which settles its own requests first); a
        // requested one beside the checkpoints that follow (one copy at a time),
        // its checkpoint kept from garbage collection until it is done.
        let stopping = all_drained && control.stop_requested();
        let mut savepoint_failed = false;
        if !stopping {
            borrowed.complete_after_a_checkpoint().await;
        }
        if stopping {
            // No completion runs while a stop hands its savepoint over: it could
            // take the new pin, its manifest not yet written, for a failed one's.
            borrowed.stop().await;
            let hand_over = control.stop_hands_over();
            let stop_copy = tokio::spawn(copy_savepoint(
                storage.clone(),
                manifest.clone(),
                retention,
                hand_over,
            ));
            settle_copy(&mut copying, &control).await;
            let result = joined(stop_copy.await);
            savepoint_failed = result.is_err();
            // A crash between the stop's savepoint and the sinks' commits (tests).
            fail::fail_point!("after-stop-savepoint", !savepoint_failed, |_| crash(
                "after-stop-savepoint"
            ));
            control.settle_savepoints(true, u64::MAX, result);
        } else if copying.is_none() && control.savepoint_pending(requests_through) {
            copying = Some(SavepointCopy {
                requests_through,
                checkpoint: manifest.id(),
                task: tokio::spawn(copy_savepoint(
                    storage.clone(),
                    manifest.clone(),
                    retention,
                    false,
                )),
            });
        }
        let pinned = copying.as_ref().map(|copy| copy.checkpoint);
        if let Err(error) = storage.collect_garbage(retained, pinned).await {
            tracing::warn!(%error, "garbage collection failed; retried after the next checkpoint");
        }
        if savepoint_failed && stopping {
            // The sources stay drained and close more epochs, now at the
            // checkpoint interval: the next retries.
            control.pace_drained_sources();
            continue;
        }
        if all_drained {
            finish_before_the_end(&mut uncommitted, &options, &control).await;
            break;
        }
    }
    // However the loop ends (the job's end, a failure, the dataflow gone): a copy
    // under way still settles its requests, and no request is left waiting for a
    // checkpoint that will not come.
    settle_copy(&mut copying, &control).await;
    if control.stop_requested() {
        borrowed.stop().await;
    } else {
        // A job that ends by itself (bounded input) finishes the copy first.
        borrowed.finish().await;
    }
    control.fail_unsettled_savepoints("the job ended before a checkpoint could take it");
    control.shut_down();
}

/// How long a job that ends by itself waits for the completion of borrowed
/// savepoints under way (a copy on the store: 40 s for 10 GB at 250 MB/s).
const COMPLETION_DEADLINE: Duration = Duration::from_secs(600);

/// The completion of borrowed savepoints
/// ([`CheckpointStorage::complete_borrowed_savepoints`]) — those of the job's own
/// folder, and the one this run restored wherever it lies (a rollback or a new
/// `restoreFrom` deploys under a new job id, so nothing would run in its folder
/// again) — started after this run's first checkpoint: every subtask has restored
/// by then, so the copy neither delays the restore nor competes with its
/// downloads. Retried after a later checkpoint, with a growing wait, until it
/// succeeds once (only a stop hands a savepoint over, and it ends the run).
struct BorrowedSavepoints {
    /// The job folders whose borrowed savepoints this run completes, each with
    /// the only one it completes there (in another job's folder: the one this
    /// run restored).
    folders: Vec<(CheckpointStorage, Option<String>)>,
    task: Option<tokio::task::JoinHandle<Result<Vec<String>, StorageError>>>,
    done: bool,
    /// Failed completions so far, and when the next may start.
    failures: u32,
    retry_at: Option<Instant>,
}

/// The wait before the first retry of a failed completion; doubled each time, up
/// to [`MAX_COMPLETION_BACKOFF`] (a copy that keeps failing half-way would copy
/// up to the whole state again at every checkpoint).
const COMPLETION_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between retries of a failed completion.
const MAX_COMPLETION_BACKOFF: Duration = Duration::from_secs(600);

impl BorrowedSavepoints {
    /// For a run of the job at `storage` that restored `restore`.
    fn of(storage: &CheckpointStorage, restore: Option<&RestorePoint>) -> Self {
        let mut folders = vec![(storage.clone(), None)];
        if let Some(restore) = restore.filter(|restore| restore.manifest.borrowed) {
            match CheckpointStorage::of_savepoint(&restore.url, storage.options()) {
                Ok(folder) if folder.url_of(folder.root()) != storage.url_of(storage.root()) => {
                    let name = restore.location.dir.filename().map(str::to_owned);
                    folders.push((folder, name));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    %error,
                    savepoint = %restore.url,
                    "the folder of the restored savepoint cannot be opened: it stays borrowed"
                ),
            }
        }
        Self {
            folders,
            task: None,
            done: false,
            failures: 0,
            retry_at: None,
        }
    }

    /// Notes a failed completion: the next waits longer.
    fn failed(&mut self) -> Duration {
        let wait = COMPLETION_BACKOFF
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_COMPLETION_BACKOFF);
        self.failures += 1;
        self.retry_at = Some(Instant::now() + wait);
        wait
    }

    /// Starts the completion if it is due, or notes how the last one ended.
    async fn complete_after_a_checkpoint(&mut self) {
        if self.done {
            return;
        }
        if self.task.is_none() && self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if let Some(task) = &self.task {
            if !task.is_finished() {
                return;
            }
            let task = self.task.take().expect("checked");
            let error = match task.await {
                Ok(Ok(_)) => {
                    self.done = true;
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            let wait = self.failed();
            tracing::warn!(
                %error,
                retry_in_s = wait.as_secs(),
                "completing a borrowed savepoint failed; retried after a later checkpoint"
            );
            return;
        }
        let folders = self.folders.clone();
        self.task = Some(tokio::spawn(async move {
            // Tests slow the completion down.
            failpoint_delay("borrowed-savepoint-delay").await;
            let started = Instant::now();
            let mut completed = Vec::new();
            for (folder, only) in &folders {
                for savepoint in folder.complete_borrowed_savepoints(only.as_deref()).await? {
                    tracing::info!(
                        %savepoint,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "borrowed savepoint completed: it holds its own copies now"
                    );
                    completed.push(savepoint);
                }
            }
            Ok(completed)
        }));
    }

    /// At the end of a run that ends by itself: the completion under way ends
    /// first (within [`COMPLETION_DEADLINE`]).
    async fn finish(&mut self) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(COMPLETION_DEADLINE, &mut task).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(
                %error,
                "completing a borrowed savepoint failed: the next run completes it"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "completing borrowed savepoints stopped"),
            Err(_) => {
                task.abort();
                tracing::warn!(
                    "completing borrowed savepoints takes longer than {}s: the next run completes them",
                    COMPLETION_DEADLINE.as_secs()
                );
            }
        }
    }

    /// Before a stop's savepoint: a completion under way stops, and is waited for
    /// (what it copied is copied again); the savepoints it did not complete stay
    /// borrowed and pinned for the next run.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(
                    %error,
                    "completing a borrowed savepoint failed: the next run completes it"
                ),
                Err(error) if error.is_cancelled() => tracing::info!(
                    "the job ends before its borrowed savepoints are completed: the next run completes them"
                ),
                Err(error) => tracing::warn!(%error, "completing borrowed savepoints stopped"),
            }
        }
    }
}

/// A savepoint copied in the background: the checkpoint it copies, the task, and
/// the last savepoint request made before that checkpoint completed (later ones
/// wait for the next copy).
struct SavepointCopy {
    requests_through: u64,
    checkpoint: SnapshotId,
    task: tokio::task::JoinHandle<Result<CompletedSnapshot, String>>,
}

/// Waits for the copy under way, if any, and settles its requests.
async fn settle_copy(copying: &mut Option<SavepointCopy>, control: &JobControl) {
    if let Some(copy) = copying.take() {
        control.settle_savepoints(false, copy.requests_through, joined(copy.task.await));
    }
}

/// The result of a finished copy task (a panic in it is a failed savepoint).
fn joined(
    result: Result<Result<CompletedSnapshot, String>, tokio::task::JoinError>,
) -> Result<CompletedSnapshot, String> {
    result.unwrap_or_else(|error| Err(format!("the savepoint copy stopped: {error}")))
}

/// Copies the checkpoint `manifest` completed into a savepoint, or hands it over
/// (`hand_over`: a stop whose savepoint the next run restores and completes).
async fn copy_savepoint(
    storage: CheckpointStorage,
    manifest: Manifest,
    retention: SavepointRetention,
    hand_over: bool,
) -> Result<CompletedSnapshot, String> {
    let started = Instant::now();
    let epoch = manifest.epoch;
    match write_savepoint(&storage, &manifest, hand_over).await {
        Ok(location) => {
            let duration_ms = started.elapsed().as_millis() as u64;
            tracing::info!(
                epoch,
                bytes = manifest.state_size(),
                duration_ms,
                handed_over = hand_over,
                %location,
                "savepoint written"
            );
            // In a task of its own: a slow deletion never delays the savepoint's
            // report (a stop's included).
            tokio::spawn(async move { dispose_old_savepoints(&storage, &retention).await });
            Ok(CompletedSnapshot {
                epoch,
                location,
                state_bytes: manifest.state_size(),
                duration_ms,
            })
        }
        Err(error) => {
            tracing::warn!(epoch, %error, "savepoint failed");
            Err(format!("savepoint at epoch {epoch}: {error}"))
        }
    }
}

/// Deletes the savepoints `retention` no longer keeps, now that another
/// completed. A failure is logged: the next savepoint tries again.
async fn dispose_old_savepoints(storage: &CheckpointStorage, retention: &SavepointRetention) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    match storage.dispose_old_savepoints(retention, now_ms).await {
        Ok(deleted) => {
            for savepoint in deleted {
                tracing::info!(%savepoint, "deleted a savepoint past its retention");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "deleting savepoints past their retention failed");
        }
    }
}

/// Sink commits of checkpoints whose manifest could not be written, kept per
/// operator subtask for the next checkpoint's manifest.
#[derive(Default)]
struct CarriedCommits(BTreeMap<(String, u32), Vec<PendingCommit>>);

impl CarriedCommits {
    /// Keeps the commits of `manifest`, which was not written.
    fn take_from(&mut self, manifest: Manifest) {
        for (operator, subtasks) in manifest.operators {
            for subtask in subtasks {
                if !subtask.pending_commits.is_empty() {
                    self.0
                        .entry((operator.clone(), subtask.subtask))
                        .or_default()
                        .extend(subtask.pending_commits);
                }
            }
        }
    }

    /// Moves the kept commits into `manifest`, ahead of its own.
    fn add_to(&mut self, manifest: &mut Manifest) {
        for (operator, subtasks) in &mut manifest.operators {
            for subtask in subtasks {
                if let Some(mut commits) = self.0.remove(&(operator.clone(), subtask.subtask)) {
                    commits.append(&mut subtask.pending_commits);
                    subtask.pending_commits = commits;
                }
            }
        }
    }
}

/// Finishes the commits of `uncommitted` checkpoints, oldest first, up to the first
/// that fails (kept, with the ones after it, for the next try).
async fn commit_in_order(
    uncommitted: &mut Vec<Manifest>,
    options: &BTreeMap<String, String>,
    control: &JobControl,
) -> bool {
    while let Some(manifest) = uncommitted.first() {
        if let Err(error) = commit_output(manifest, options).await {
            control.record_checkpoint_failure(format!(
                "committing the output of checkpoint {}: {error} (retried)",
                manifest.epoch
            ));
            return false;
        }
        uncommitted.remove(0);
    }
    true
}

/// At the end of the job: retries the commits still unfinished, with backoff, up to
/// [`FINAL_COMMIT_DEADLINE`]; then the job fails, naming the error.
async fn finish_before_the_end(
    uncommitted: &mut Vec<Manifest>,
    options: &BTreeMap<String, String>,
    control: &JobControl,
) {
    let deadline = Instant::now() + FINAL_COMMIT_DEADLINE;
    let mut pause = Duration::from_millis(100);
    while !commit_in_order(uncommitted, options, control).await {
        if Instant::now() + pause > deadline {
            let epoch = uncommitted.first().map_or(0, |manifest| manifest.epoch);
            control.record_failure(format!(
                "the output of checkpoint {epoch} could not be committed within {}s; a restart commits it",
                FINAL_COMMIT_DEADLINE.as_secs()
            ));
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Writes the manifest that completes the checkpoint. The failpoint
/// `checkpoint-write` makes it fail as a storage error would.
async fn write_manifest(
    storage: &CheckpointStorage,
    manifest: &Manifest,
) -> Result<(), StorageError> {
    fail::fail_point!("checkpoint-write", |_| Err(injected("checkpoint-write")));
    storage.complete_checkpoint(manifest).await
}

/// Finishes the sink commits `manifest` decides. The failpoint `checkpoint-commit`
/// makes it fail as a storage error would.
async fn commit_output(
    manifest: &Manifest,
    options: &BTreeMap<String, String>,
) -> Result<usize, StorageError> {
    fail::fail_point!("checkpoint-commit", |_| Err(injected("checkpoint-commit")));
    finish_commits(manifest, options).await
}

/// The storage error a failpoint stands for.
fn injected(failpoint: &str) -> StorageError {
    StorageError::Io {
        operation: "failpoint",
        path: failpoint.to_owned(),
        source: std::io::Error::other("injected storage error"),
    }
}

/// Writes the savepoint of `manifest` (a copy, or handed over); its URL. The
/// failpoint `savepoint-write` makes it fail (tests of what follows a failed
/// savepoint).
async fn write_savepoint(
    storage: &CheckpointStorage,
    manifest: &Manifest,
    hand_over: bool,
) -> Result<String, String> {
    fail::fail_point!("savepoint-write", |_| Err(
        "failpoint savepoint-write".to_owned()
    ));
    // Tests slow the copy down.
    failpoint_delay("savepoint-copy-delay").await;
    let savepoint = if hand_over {
        storage.hand_over_savepoint(manifest).await
    } else {
        storage.write_savepoint(manifest).await
    }
    .map_err(|error| error.to_string())?;
    Ok(storage.url_of(&savepoint.dir))
}

/// Waits as long as the failpoint `name` says when tests set it to
/// `return(<ms>)`; not at all otherwise.
async fn failpoint_delay(name: &str) {
    let delay_ms = (|| {
        fail::fail_point!(name, |ms| ms.and_then(|ms| ms.parse().ok()));
        None::<u64>
    })();
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Ends the process at once, as a crash would (failpoints in tests).
fn crash(failpoint: &str) -> ! {
    eprintln!("failpoint {failpoint}: crashing");
    std::process::exit(137)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_completion_waits_longer_each_time_up_to_ten_minutes() {
        let storage = CheckpointStorage::open("file:///nowhere", &BTreeMap::new()).unwrap();
        let mut borrowed = BorrowedSavepoints::of(&storage, None);
        let waits: Vec<u64> = (0..9).map(|_| borrowed.failed().as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert!(borrowed.retry_at.is_some_and(|at| at > Instant::now()));
    }
}
