//! Running a job: resolve what to restore, start timely workers (threads of one
//! process, or processes connected over TCP), build the pipeline on each, and run
//! until the job ends or is stopped.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::Input;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;

use super::context::{JobSettings, RestorePoint, TaskContext};
use super::control::{JobControl, Snapshots};
use crate::api::{BuildError, Pipeline};
use crate::checkpoint::{
    CheckpointStorage, Manifest, Restored, ResumePoint, RunInfo, RunRecord, SnapshotId,
    SnapshotLocation, StorageError, check_state_format, finish_commits, locate_snapshot,
    newest_snapshot, read_manifest,
};
use crate::control::{ControlState, metrics_router, router};

/// What a run starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// Empty state.
    Nothing,
    /// The newest completed checkpoint of the job, if there is one (after a crash).
    LatestCheckpoint,
    /// The newest completed checkpoint of the job, which must be there: the job
    /// has completed checkpoints before (a pod of a redeploy in `last-state`
    /// mode). None found means its storage is not the one it checkpointed to, or
    /// was emptied: the job fails rather than start with empty state.
    ExistingCheckpoint,
    /// A savepoint or retained checkpoint: a local folder or a URL.
    Snapshot(String),
    /// Whichever is newer: the job's latest checkpoint or the given snapshot (a pod
    /// restarting after a rescale that started from that snapshot).
    NewestOf(String),
    /// The newest savepoint or checkpoint in the job folder at `job_url` (see
    /// [`crate::checkpoint::newest`]), which must be there: `restoreFrom: latest`.
    LatestOf {
        /// The folder of the job whose newest point is restored.
        job_url: String,
        /// When this job's own storage has runs already (a pod restarting after
        /// such a start), the job goes on from its own latest point instead.
        resume: bool,
    },
}

/// Where the job's workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processes {
    /// All workers as threads of this process.
    Local,
    /// This process is `index` of `addresses` (host:port of every process, in order);
    /// each runs parallelism / processes workers.
    Cluster {
        /// This process's index.
        index: usize,
        /// Every process's address.
        addresses: Vec<String>,
    },
}

/// Everything needed to run a job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Settings shared by every worker.
    pub settings: JobSettings,
    /// URL of the job's state storage (`file://` or `s3://`).
    pub storage_url: String,
    /// What to restore from.
    pub restore: RestoreFrom,
    /// Where the workers run.
    pub processes: Processes,
    /// Where process 0 serves the control API, if anywhere.
    pub control_address: Option<std::net::SocketAddr>,
    /// The token the control API's requests that change the job must carry
    /// (`Authorization: Bearer`); none for a local run.
    pub control_token: Option<crate::control::ControlToken>,
}

/// Why a job could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Checkpoint storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The restore point belongs to a job with another number of key groups.
    #[error(
        "cannot restore: the snapshot has {found} key groups (maxParallelism) and the job {expected}; maxParallelism is fixed for a job's life"
    )]
    KeyGroupsMismatch {
        /// The job's maxParallelism.
        expected: u32,
        /// The snapshot's.
        found: u32,
    },
    /// The snapshot named to restore from does not exist.
    #[error("no snapshot to restore at {0}")]
    NoSnapshot(String),
    /// `latest` was to be restored, and the job folder holds no savepoint or
    /// completed checkpoint.
    #[error(
        "no savepoint or completed checkpoint under {0} to restore the latest of \
         (restoreFrom.path: latest looks in the folder of the job restoreFrom.jobName \
         names, under state.storage)"
    )]
    NoLatestSnapshot(String),
    /// The job has completed checkpoints before, and its storage holds none.
    #[error(
        "no checkpoint of this job under {0}, though it has completed checkpoints before: \
         its state storage is not shared by every pod, or was deleted; refusing to start with \
         empty state (fix spec.state, or set upgradeMode: stateless to start over empty)"
    )]
    StateMissing(String),
    /// The timely workers could not start (e.g. peers unreachable).
    #[error("cannot start workers: {0}")]
    Start(String),
    /// A worker failed while building or running the pipeline.
    #[error("worker failed: {0}")]
    Worker(String),
    /// The pipeline could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The control API could not listen on its address.
    #[error("cannot serve the control API on {address}: {source}")]
    Control {
        /// The address.
        address: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The runtime for object-storage I/O could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Io(std::io::Error),
}

/// How a job run ended.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The checkpoints and savepoints completed (as seen by this process).
    pub snapshots: Snapshots,
    /// Records read by this process's sources.
    pub records_in: u64,
    /// Records written by this process's sinks.
    pub records_out: u64,
}

/// Builds a job's pipeline on one worker.
pub type PipelineFn =
    Arc<dyn for<'scope> Fn(&mut Pipeline<'scope>) -> Result<(), BuildError> + Send + Sync>;

/// Commands worker 0 sends to every worker of every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Command {
    Stop,
    ShutDown,
    /// The checkpoint of this epoch (and every earlier one) completed: its
    /// manifest is written and its file-sink commits are done.
    CheckpointCompleted(u64),
    /// Drained sources close epochs at the job's pace from now on.
    PaceDrainedSources,
}

/// Runs the job until its sources end (bounded input) or `control.request_stop()`
/// is called, and its final checkpoint (and, on a stop, savepoint) is complete.
pub fn run_job(
    config: JobConfig,
    pipeline: PipelineFn,
    control: Arc<JobControl>,
) -> Result<JobReport, JobError> {
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("strom-io")
        .build()
        .map_err(JobError::Io)?;
    // Completions and failures are per run: a control reused from an earlier
    // run forgets its.
    control.forget_completions();
    let storage = CheckpointStorage::open(&config.storage_url, &config.settings.storage_options)?;
    let restore = io.block_on(resolve_restore(&config, &storage))?;
    if let Some(restore) = &restore {
        let expected = config.settings.partitioning.max_parallelism();
        if restore.manifest.max_parallelism != expected {
            return Err(JobError::KeyGroupsMismatch {
                expected,
                found: restore.manifest.max_parallelism,
            });
        }
    }
    let process = match config.processes {
        Processes::Cluster { index, .. } => index,
        Processes::Local => 0,
    };
    control.metrics.identify(
        &config.settings.name,
        process,
        config.settings.partitioning.parallelism(),
    );
    // Process 0 starts the run; the others learn it (and check that they restore
    // the same point) once the workers are connected.
    let run = if process == 0 {
        let run = io.block_on(start_run(&storage, restore.as_ref()))?;
        io.block_on(recover_storage(&storage, restore.as_ref()))?;
        if let Some(address) = config.control_address {
            serve_control_api(
                &io,
                address,
                &config.settings,
                &control,
                &storage,
                config.control_token.as_ref(),
            )?;
        }
        Some(run)
    } else {
        // Each process serves its own metrics (each pod its own address); several
        // processes on one machine given one address (`strom run --process`) leave
        // them to process 0.
        if let Some(address) = config.control_address
            && let Err(error) = serve_metrics(&io, address, &control)
        {
            tracing::warn!(%error, "this process's metrics are not served");
        }
        None
    };
    let context = TaskContext {
        settings: Arc::new(config.settings.clone()),
        subtask: 0,
        storage,
        io: io.handle().clone(),
        start_epoch: restore.as_ref().map_or(1, |r| r.manifest.epoch + 1),
        run: Arc::new(run.clone().unwrap_or_default()),
        restore: restore.map(Arc::new),
        control: Arc::clone(&control),
    };
    let threads = threads_per_process(&config);
    let guards = timely::execute(timely_config(&config), move |worker| {
        // A panic anywhere in a worker (building the pipeline included) is the
        // job's failure: recorded, so the other workers end too.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_worker(worker, &context, run.as_ref(), &pipeline, threads)
        }));
        ran.unwrap_or_else(|panic| {
            context
                .control
                .record_failure(panic_message(panic.as_ref()));
            std::panic::resume_unwind(panic)
        })
    })
    .map_err(JobError::Start)?;
    for result in guards.join() {
        // A panicking worker's payload is opaque; the failure it recorded says more.
        let explain =
            |error: String| JobError::Worker(control.snapshots().failure.unwrap_or(error));
        result.map_err(explain)?.map_err(explain)?;
    }
    if control.serves_after_stop() && control.stop_requested() {
        tracing::info!("stopped with a savepoint; serving the control API until terminated");
        io.block_on(std::future::pending::<()>());
    }
    Ok(JobReport {
        snapshots: control.snapshots(),
        records_in: control.records_in(),
        records_out: control.records_out(),
    })
}

/// Starts a run on process 0: its id comes after every run the job's storage
/// knows of (and the restored point's), and is recorded before anything is written.
async fn start_run(
    storage: &CheckpointStorage,
    restore: Option<&RestorePoint>,
) -> Result<RunInfo, JobError> {
    let known = storage.known_runs().await?;
    let restored = restore.map(|r| Restored {
        point: r.manifest.id(),
        ancestry: &r.ancestry,
        explicit: r.explicit,
    });
    let run = RunInfo::start(restored, &known);
    storage
        .record_run(&RunRecord {
            run: run.clone(),
            restored_from: restore.map(|r| r.url.clone()),
        })
        .await?;
    match restore {
        Some(restore) => {
            tracing::info!(run = %run.id, restored = %restore.manifest.id(), "run started")
        }
        None => tracing::info!(run = %run.id, "run started from empty state"),
    }
    Ok(run)
}

/// Before the workers start (nothing is being written): finishes the output
/// commits that completed checkpoints decided — the restored one's and those of any
/// other run in this storage, which a crash may have cut short — and removes what
/// unfinished checkpoints left behind.
async fn recover_storage(
    storage: &CheckpointStorage,
    restore: Option<&RestorePoint>,
) -> Result<(), JobError> {
    let mut finished = 0;
    if let Some(restore) = restore {
        // A savepoint or a checkpoint of another folder.
        finished += finish_commits(&restore.manifest, storage.options()).await?;
    }
    finished += storage.finish_all_commits().await?;
    if finished > 0 {
        tracing::info!(
            finished,
            "finished the output commits of completed checkpoints"
        );
    }
    let removed = storage.remove_orphans().await?;
    if removed > 0 {
        tracing::info!(removed, "removed files of unfinished checkpoints");
    }
    Ok(())
}

/// Serves the control API on `address`, on the I/O runtime.
fn serve_control_api(
    io: &tokio::runtime::Runtime,
    address: std::net::SocketAddr,
    settings: &JobSettings,
    control: &Arc<JobControl>,
    storage: &CheckpointStorage,
    token: Option<&crate::control::ControlToken>,
) -> Result<(), JobError> {
    let listener = io
        .block_on(tokio::net::TcpListener::bind(address))
        .map_err(|source| JobError::Control { address, source })?;
    let state = ControlState {
        job: settings.name.clone(),
        parallelism: settings.partitioning.parallelism(),
        max_parallelism: settings.partitioning.max_parallelism(),
        control: Arc::clone(control),
        storage: storage.clone(),
        token: token.cloned(),
    };
    io.spawn(async move {
        if let Err(error) = axum::serve(listener, router(state)).await {
            tracing::error!(%error, "control API stopped");
        }
    });
    Ok(())
}

/// Serves this process's metrics on `address` (every process but process 0).
fn serve_metrics(
    io: &tokio::runtime::Runtime,
    address: std::net::SocketAddr,
    control: &Arc<JobControl>,
) -> Result<(), JobError> {
    let listener = io
        .block_on(tokio::net::TcpListener::bind(address))
        .map_err(|source| JobError::Control { address, source })?;
    let router = metrics_router(Arc::clone(control));
    io.spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(())
}

fn timely_config(config: &JobConfig) -> timely::Config {
    let threads = threads_per_process(config);
    let communication = match &config.processes {
        Processes::Local => timely::CommunicationConfig::Process(threads),
        Processes::Cluster { index, addresses } => timely::CommunicationConfig::Cluster {
            threads,
            process: *index,
            addresses: addresses.clone(),
            report: false,
            zerocopy: false,
        },
    };
    timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    }
}

/// How long a worker waits for process 0 to tell it the run, once connected.
const RUN_START_DEADLINE: Duration = Duration::from_secs(120);

/// What process 0 tells every worker before the job's dataflow is built.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RunStart {
    /// The run.
    run: RunInfo,
    /// The point it restores, if any.
    restored: Option<SnapshotId>,
}

/// Learns the run from worker 0 (which sends `start`, on process 0): a small
/// dataflow of its own, stepped until the message arrives. A process that resolved
/// another restore point than process 0 fails loudly rather than mixing two states.
fn agree_on_run(
    worker: &mut timely::worker::Worker,
    start: Option<&RunStart>,
    restored: Option<SnapshotId>,
) -> Result<RunInfo, String> {
    let received: Rc<RefCell<Option<RunStart>>> = Rc::default();
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<RunStart>>>::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let received = Rc::clone(&received);
        scope
            .input_from(&mut input)
            .broadcast()
            .sink(Local, "Run start", move |(data, _)| {
                data.for_each(|_, batch| {
                    if let Some(start) = batch.drain(..).next() {
                        *received.borrow_mut() = Some(start);
                    }
                });
            });
    });
    if worker.index() == 0 {
        let start = start.ok_or("worker 0 runs outside process 0")?;
        input.send(start.clone());
    }
    input.close();
    let deadline = Instant::now() + RUN_START_DEADLINE;
    while received.borrow().is_none() {
        if Instant::now() > deadline {
            return Err(format!(
                "process 0 did not say which run starts within {}s",
                RUN_START_DEADLINE.as_secs()
            ));
        }
        worker.step_or_park(Some(Duration::from_millis(5)));
    }
    let start = received.borrow_mut().take().expect("checked above");
    if start.restored != restored {
        let name =
            |point: Option<SnapshotId>| point.map_or("nothing".to_owned(), |p| p.to_string());
        return Err(format!(
            "process 0 restores {} but worker {} found {}: every process must restore the same point (are they started with the same storage and --from-savepoint?)",
            name(start.restored),
            worker.index(),
            name(restored)
        ));
    }
    Ok(start.run)
}

/// One worker: the command dataflow, the job's dataflow, and the loop that steps
/// them until the job's dataflow ends. Worker 0 forwards this process's stop and
/// shutdown requests to every worker of every process.
fn run_worker(
    worker: &mut timely::worker::Worker,
    context: &TaskContext,
    run: Option<&RunInfo>,
    pipeline: &PipelineFn,
    threads: usize,
) -> Result<(), String> {
    let restored = context.restore.as_ref().map(|r| r.manifest.id());
    let start = run.map(|run| RunStart {
        run: run.clone(),
        restored,
    });
    let run = match agree_on_run(worker, start.as_ref(), restored) {
        Ok(run) => run,
        Err(error) => {
            // Returning would leave timely stepping the command dataflow, which
            // the other processes keep open: end this worker (and the process) now.
            context.control.record_failure(error.clone());
            panic!("{error}");
        }
    };
    let ctx = TaskContext {
        subtask: worker.index() as u32,
        run: Arc::new(run),
        ..context.clone()
    };
    let control = Arc::clone(&ctx.control);
    let mut commands = InputHandle::<u64, CapacityContainerBuilder<Vec<Command>>>::new();
    let apply = Arc::clone(&control);
    worker.dataflow::<u64, _, _>(|scope| {
        scope
            .input_from(&mut commands)
            .broadcast()
            .sink(Local, "Commands", move |(input, _)| {
                input.for_each(|_, batch| {
                    for command in batch.drain(..) {
                        match command {
                            Command::Stop => apply.learn_stop(),
                            Command::ShutDown => apply.shut_down(),
                            Command::CheckpointCompleted(epoch) => apply.learn_completed(epoch),
                            Command::PaceDrainedSources => apply.pace_drained_sources(),
                        }
                    }
                });
            });
    });
    let main = worker.next_dataflow_index();
    let built = worker.dataflow::<u64, _, _>(|scope| -> Result<(), BuildError> {
        let mut builder = Pipeline::new(scope, ctx.clone());
        pipeline(&mut builder)?;
        builder.finish()
    });
    if let Err(error) = &built {
        // The job fails: every worker ends on its next step (`step_or_fail`).
        control.record_failure(error.to_string());
        control.shut_down();
    }
    control.worker_built(threads as u64);
    let (mut sent_stop, mut sent_shutdown) = (false, false);
    let mut sent_completed = 0;
    let mut sent_pace = false;
    while worker.installed_dataflows().contains(&main) {
        if worker.index() == 0 {
            // Read before the completion: the coordinator records a completion
            // before it shuts the job down, so a shutdown seen here has its final
            // checkpoint's completion seen below, and sent first. Completions reach
            // every process through the dataflow, not by each looking at storage.
            let stop = control.stop_requested();
            let shutdown = control.is_shutting_down();
            if let Some(epoch) = control.completed_here().filter(|&e| e > sent_completed) {
                commands.send(Command::CheckpointCompleted(epoch));
                sent_completed = epoch;
            }
            if !sent_pace && control.drained_sources_paced() {
                commands.send(Command::PaceDrainedSources);
                sent_pace = true;
            }
            if !sent_stop && stop {
                commands.send(Command::Stop);
                sent_stop = true;
            }
            if !sent_shutdown && shutdown {
                commands.send(Command::ShutDown);
                sent_shutdown = true;
            }
            commands.flush();
        }
        step_or_fail(worker, &control);
    }
    built.map_err(|error| error.to_string())
}

/// Steps `worker`, failing together with the other workers of this process: a
/// panic while stepping (a failed operator, a user function) is recorded as the
/// job's failure before it unwinds, and a failure recorded by any worker ends this
/// one too. Otherwise the others would wait forever for the failed one's progress.
/// (Other processes learn it when this one's connections close.)
fn step_or_fail(worker: &mut timely::worker::Worker, control: &JobControl) {
    if let Some(failure) = control.failure() {
        panic!("the job failed on another worker: {failure}");
    }
    let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker.step_or_park(Some(Duration::from_millis(5)));
    }));
    if let Err(panic) = stepped {
        control.record_failure(panic_message(panic.as_ref()));
        std::panic::resume_unwind(panic);
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a worker panicked".to_owned()
    }
}

fn threads_per_process(config: &JobConfig) -> usize {
    let parallelism = config.settings.partitioning.parallelism() as usize;
    match &config.processes {
        Processes::Local => parallelism,
        Processes::Cluster { addresses, .. } => parallelism / addresses.len().max(1),
    }
}

async fn resolve_restore(
    config: &JobConfig,
    storage: &CheckpointStorage,
) -> Result<Option<RestorePoint>, JobError> {
    let point = find_restore(config, storage).await?;
    if let Some(point) = &point {
        check_state_format(&point.manifest, &point.url)?;
    }
    Ok(point)
}

/// The point the job restores from, as `config` asks.
async fn find_restore(
    config: &JobConfig,
    storage: &CheckpointStorage,
) -> Result<Option<RestorePoint>, JobError> {
    let own_checkpoint = |found| own_checkpoint(storage, found);
    match &config.restore {
        RestoreFrom::Nothing => Ok(None),
        RestoreFrom::ExistingCheckpoint => match resume_point(config, storage).await? {
            Some(point) => Ok(Some(point)),
            None => Err(JobError::StateMissing(config.storage_url.clone())),
        },
        RestoreFrom::LatestCheckpoint => resume_point(config, storage).await,
        RestoreFrom::NewestOf(path) => {
            // The job's own checkpoints count only if their lineage restored the
            // snapshot (a pod restarting after the run that restored it); those of
            // other runs do not, whatever their epochs — not even later ones of the
            // run the snapshot was taken from. The run records name the snapshot,
            // so once such a checkpoint exists the snapshot is not read: it may
            // have been deleted since.
            let restored = storage.points_restored_from(&snapshot_url(path)?).await?;
            if let Some(found) = storage
                .latest_checkpoint_restored_through(&restored)
                .await?
            {
                return Ok(Some(own_checkpoint(found)));
            }
            let snapshot = read_snapshot(config, path).await?;
            Ok(Some(
                storage
                    .latest_checkpoint_restored_through(&[snapshot.manifest.id()])
                    .await?
                    .map_or(snapshot, own_checkpoint),
            ))
        }
        RestoreFrom::LatestOf { job_url, resume } => {
            if *resume && !storage.known_runs().await?.is_empty() {
                // Started before from that job's latest point: its own run goes on.
                return match resume_point(config, storage).await? {
                    Some(point) => Ok(Some(point)),
                    None => Err(JobError::StateMissing(config.storage_url.clone())),
                };
            }
            let options = &config.settings.storage_options;
            match newest_snapshot(job_url, options).await? {
                Some(newest) => read_snapshot(config, &newest.url).await.map(Some),
                None => Err(JobError::NoLatestSnapshot(job_url.clone())),
            }
        }
        RestoreFrom::Snapshot(path) => read_snapshot(config, path).await.map(Some),
    }
}

/// A checkpoint of the job's own storage, as a restore point.
fn own_checkpoint(
    storage: &CheckpointStorage,
    (location, manifest): (SnapshotLocation, Manifest),
) -> RestorePoint {
    RestorePoint {
        store: Arc::clone(storage.store()),
        url: storage.url_of(&location.dir),
        location,
        ancestry: manifest.ancestry.clone(),
        manifest,
        explicit: false,
    }
}

/// Where the newest run of the job's storage was: its newest checkpoint, or, if
/// it completed none, what it started from itself (a run that restored an older
/// savepoint and crashed at once goes on from that savepoint, not from the
/// abandoned run's checkpoints). `None` when there is nothing to resume.
async fn resume_point(
    config: &JobConfig,
    storage: &CheckpointStorage,
) -> Result<Option<RestorePoint>, JobError> {
    match storage.resume_point().await? {
        ResumePoint::Checkpoint(location, manifest) => {
            Ok(Some(own_checkpoint(storage, (location, manifest))))
        }
        ResumePoint::StartOf(Some(record)) => {
            // Going on from where that run started, with its lineage: a run that
            // restored savepoint S keeps S in its ancestry.
            let url = record.restored_from.as_deref().expect("a restored run");
            let mut point = read_snapshot(config, url).await?;
            point.explicit = false;
            point.ancestry = record.run.ancestry;
            Ok(Some(point))
        }
        ResumePoint::StartOf(_) => Ok(None),
    }
}

/// The URL a snapshot at `path` (a URL or a local folder) is recorded by.
fn snapshot_url(path: &str) -> Result<String, StorageError> {
    if path.contains("://") {
        return Ok(path.trim_end_matches('/').to_owned());
    }
    // A local folder: recorded absolute, so a resume from elsewhere finds it.
    let absolute = std::path::absolute(path).map_err(|source| StorageError::Io {
        operation: "resolve",
        path: path.to_owned(),
        source,
    })?;
    Ok(format!("file://{}", absolute.display()))
}

async fn read_snapshot(config: &JobConfig, path: &str) -> Result<RestorePoint, JobError> {
    let (store, location) = locate_snapshot(path, &config.settings.storage_options)?;
    let manifest = match read_manifest(&store, &location).await {
        Ok(manifest) => manifest,
        Err(StorageError::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => return Err(JobError::NoSnapshot(path.to_owned())),
        Err(error) => return Err(error.into()),
    };
    let location = location.resolved_for(&manifest)?;
    let url = snapshot_url(path)?;
    Ok(RestorePoint {
        store,
        location,
        ancestry: manifest.ancestry.clone(),
        manifest,
        url,
        explicit: true,
    })
}
