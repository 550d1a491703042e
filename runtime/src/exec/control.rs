//! What a running job shares between its threads: stop, savepoint and shutdown
//! requests, the checkpoints it completed, and its metrics. The control API and the
//! progress line read it; the coordinator and the operators write it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A completed checkpoint or savepoint, as the job reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedSnapshot {
    /// The epoch it covers.
    pub epoch: u64,
    /// The URL of its folder (what `strom run --from-savepoint` takes).
    pub location: String,
    /// Size of the state files it refers to, in bytes.
    pub state_bytes: u64,
    /// How long it took from the end of its epoch to its manifest (for a savepoint:
    /// to copy it), in milliseconds.
    pub duration_ms: u64,
}

/// Where a requested savepoint stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum SavepointStatus {
    /// Waiting for the next checkpoint to complete.
    Pending,
    /// Written.
    Completed {
        /// The savepoint.
        savepoint: CompletedSnapshot,
    },
    /// Could not be written.
    Failed {
        /// Why.
        error: String,
    },
}

/// A savepoint asked for through the control API (or taken by a stop).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRequest {
    /// Identifies the request within this run.
    pub id: u64,
    /// Whether the job stops once it is written.
    pub stop: bool,
    /// The key the client sent with it (`Idempotency-Key`): the same key again
    /// answers this request instead of making another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where it stands.
    #[serde(flatten)]
    pub status: SavepointStatus,
}

/// The checkpoints and savepoints a job has completed, and why it failed if it did.
#[derive(Debug, Default, Clone)]
pub struct Snapshots {
    /// The newest completed checkpoint.
    pub last_checkpoint: Option<CompletedSnapshot>,
    /// Savepoints taken by this run, oldest first.
    pub savepoints: Vec<CompletedSnapshot>,
    /// The first error that failed the job, if any.
    pub failure: Option<String>,
    /// The latest checkpoint or savepoint error (the job went on).
    pub last_error: Option<String>,
}

/// The labels of per-operator metrics: one series per operator and subtask.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorLabel {
    /// The operator's name.
    pub operator: String,
    /// The subtask (the operator's parallel instance, 0 to parallelism - 1).
    pub subtask: u32,
}

impl OperatorLabel {
    /// The series of subtask `subtask` of the operator `operator`.
    pub fn new(operator: &str, subtask: u32) -> Self {
        Self {
            operator: operator.to_owned(),
            subtask,
        }
    }
}

/// One operator subtask's handle on the job's metrics, for operators counting
/// late or malformed records as they go.
#[derive(Clone, Debug)]
pub struct OperatorMetrics {
    control: std::sync::Arc<JobControl>,
    series: OperatorLabel,
}

impl OperatorMetrics {
    /// The metrics of subtask `subtask` of the operator `operator`.
    pub fn new(control: std::sync::Arc<JobControl>, operator: &str, subtask: u32) -> Self {
        Self {
            control,
            series: OperatorLabel::new(operator, subtask),
        }
    }

    /// Counts a record dropped as too late.
    pub fn add_late_record(&self) {
        self.control.add_late_record(&self.series);
    }

    /// Counts a record that could not be parsed and was skipped.
    pub fn add_malformed_record(&self) {
        self.control.add_malformed_record(&self.series);
    }
}

/// The job's Prometheus metrics, in Prometheus' units (seconds, bytes). Every
/// metric carries the labels `job_name` (the job's name; `job` is Prometheus' own
/// target label) and `process` (the index of the process, a pod's ordinal) once
/// [`Metrics::identify`] named them.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The `job_name` and `process` labels of every metric.
    identity: OnceLock<[(Cow<'static, str>, Cow<'static, str>); 2]>,
    /// Records read by sources, per source.
    pub records_in: Family<OperatorLabel, Counter>,
    /// Records written by sinks, per sink.
    pub records_out: Family<OperatorLabel, Counter>,
    /// The job's parallelism in this run (a rescale shows as a step).
    pub parallelism: Gauge,
    /// The newest epoch a source of this process has started.
    pub epoch: Gauge,
    /// Checkpoints completed.
    pub checkpoints: Counter,
    /// Checkpoints that failed.
    pub checkpoint_failures: Counter,
    /// Duration of the last checkpoint, in seconds.
    pub checkpoint_duration_seconds: Gauge<f64, AtomicU64>,
    /// Size of the state of the last checkpoint, in bytes.
    pub checkpoint_size_bytes: Gauge,
    /// When the last checkpoint completed, in seconds since the Unix epoch (its age
    /// is `time() - strom_last_checkpoint_timestamp_seconds`).
    pub last_checkpoint_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// Savepoints completed.
    pub savepoints: Counter,
    /// Records dropped for arriving after their window's allowed lateness.
    pub late_records: Family<OperatorLabel, Counter>,
    /// Records an operator could not parse and skipped (its malformed-record
    /// policy being `Skip`).
    pub malformed_records: Family<OperatorLabel, Counter>,
    /// Time each source spent not reading because the dataflow was behind it, in
    /// seconds.
    pub backpressure_seconds: Family<OperatorLabel, Counter<f64, AtomicU64>>,
    /// How far each keyed operator's watermark is behind the wall clock, in
    /// seconds, when it last advanced.
    pub watermark_lag_seconds: Family<OperatorLabel, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// Names the job and process every metric is labelled with (the first call
    /// counts), and notes the run's parallelism.
    pub fn identify(&self, job: &str, process: usize, parallelism: u32) {
        self.parallelism.set(i64::from(parallelism));
        let _ = self.identity.set([
            (Cow::Borrowed("job_name"), Cow::Owned(job.to_owned())),
            (Cow::Borrowed("process"), Cow::Owned(process.to_string())),
        ]);
    }

    /// A registry holding every metric, under the `strom` prefix.
    pub fn registry(&self) -> Registry {
        let labels = self.identity.get().cloned().into_iter().flatten();
        let mut registry = Registry::with_prefix_and_labels("strom", labels);
        registry.register(
            "kafka_retries",
            "Kafka calls retried after an error that goes away by itself (no leader yet, a coordinator loading), per cluster",
            crate::connectors::kafka::retry::KAFKA_RETRIES.clone(),
        );
        registry.register(
            "kafka_consumer_lag_records",
            "Records between each assigned Kafka partition's end and this process's position in it (librdkafka's statistics, every 10 s)",
            crate::connectors::kafka::source::KAFKA_CONSUMER_LAG.clone(),
        );
        registry.register(
            "parallelism",
            "The job's parallelism in this run",
            self.parallelism.clone(),
        );
        registry.register(
            "records_in",
            "Records read by each source",
            self.records_in.clone(),
        );
        registry.register(
            "records_out",
            "Records written by each sink",
            self.records_out.clone(),
        );
        registry.register(
            "epoch",
            "The newest epoch started by a source",
            self.epoch.clone(),
        );
        registry.register(
            "checkpoints",
            "Checkpoints completed",
            self.checkpoints.clone(),
        );
        registry.register(
            "checkpoint_failures",
            "Checkpoints that could not be completed",
            self.checkpoint_failures.clone(),
        );
        registry.register(
            "checkpoint_duration_seconds",
            "Time from the end of the last checkpoint's epoch to its manifest",
            self.checkpoint_duration_seconds.clone(),
        );
        registry.register(
            "checkpoint_size_bytes",
            "Size of the state files of the last checkpoint",
            self.checkpoint_size_bytes.clone(),
        );
        registry.register(
            "last_checkpoint_timestamp_seconds",
            "When the last checkpoint completed, in seconds since the Unix epoch",
            self.last_checkpoint_timestamp_seconds.clone(),
        );
        registry.register(
            "savepoints",
            "Savepoints completed",
            self.savepoints.clone(),
        );
        registry.register(
            "backpressure_seconds",
            "Time each source spent not reading because the dataflow was behind it",
            self.backpressure_seconds.clone(),
        );
        registry.register(
            "watermark_lag_seconds",
            "How far each keyed operator's watermark was behind the wall clock when it last advanced",
            self.watermark_lag_seconds.clone(),
        );
        registry.register(
            "late_records",
            "Records dropped for arriving after their window's allowed lateness",
            self.late_records.clone(),
        );
        registry.register(
            "malformed_records",
            "Records an operator could not parse and skipped",
            self.malformed_records.clone(),
        );
        registry
    }
}

/// Shared state of one job in one process.
#[derive(Debug, Default)]
pub struct JobControl {
    stop_requested: AtomicBool,
    /// Whether the stop's savepoint is handed over rather than copied.
    stop_hands_over: AtomicBool,
    shutdown: AtomicBool,
    serve_after_stop: AtomicBool,
    /// The job's metrics.
    pub metrics: Metrics,
    records_in_total: AtomicU64,
    records_out_total: AtomicU64,
    /// Malformed records skipped per operator, over its subtasks.
    malformed_totals: Mutex<BTreeMap<String, u64>>,
    snapshots: Mutex<Snapshots>,
    savepoint_requests: Mutex<Vec<SavepointRequest>>,
    built_workers: AtomicU64,
    running_since: Mutex<Option<std::time::Instant>>,
    /// The epoch of the newest checkpoint this process's coordinator completed
    /// (process 0 only; 0: none yet).
    completed_here: AtomicU64,
    /// The epoch of the newest checkpoint of this run known complete in this
    /// process, as the coordinator's broadcast told it (0: none yet).
    completed_known: AtomicU64,
    /// Whether drained sources close epochs at the job's pace rather than at once:
    /// set when a checkpoint of drained sources did not end the job (its savepoint
    /// or its manifest failed), so retries come at the checkpoint interval.
    drained_paced: AtomicBool,
    /// Whether a failure was recorded: every worker of this process then ends.
    failed: AtomicBool,
}

impl JobControl {
    fn lock_snapshots(&self) -> std::sync::MutexGuard<'_, Snapshots> {
        self.snapshots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<SavepointRequest>> {
        self.savepoint_requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes a job stopped with a savepoint keep its process, and so its control
    /// API, up until the process is terminated, instead of returning: in a pod,
    /// returning would restart the job, and the operator reads the savepoint's
    /// location from the control API.
    pub fn serve_after_stop(&self) {
        self.serve_after_stop.store(true, Ordering::SeqCst);
    }

    /// Whether [`JobControl::serve_after_stop`] was asked for.
    pub fn serves_after_stop(&self) -> bool {
        self.serve_after_stop.load(Ordering::SeqCst)
    }

    /// Asks the sources to stop reading; the job then completes a final checkpoint,
    /// takes a savepoint of it and shuts down. Returns the savepoint request's id.
    /// Asking again returns the first request's id.
    pub fn request_stop(&self) -> u64 {
        self.request_stop_with(Some(false))
    }

    /// Worker 0's broadcast of a stop: a stop in this process too, as it was
    /// asked (whether it hands over matters to process 0 alone, where it was).
    pub fn learn_stop(&self) {
        self.request_stop_with(None);
    }

    /// A stop, handing its savepoint over or not (`None`: as asked before, or not).
    fn request_stop_with(&self, hand_over: Option<bool>) -> u64 {
        let mut requests = self.lock_requests();
        if let Some(existing) = requests.iter().find(|request| request.stop) {
            if hand_over == Some(false) {
                // A plain stop asked after a handing-over one (the job is deleted
                // during a rescale): copied, unless handed over already.
                self.stop_hands_over.store(false, Ordering::SeqCst);
            }
            return existing.id;
        }
        self.stop_hands_over
            .store(hand_over == Some(true), Ordering::SeqCst);
        let id = requests.len() as u64 + 1;
        requests.push(SavepointRequest {
            id,
            stop: true,
            key: None,
            status: SavepointStatus::Pending,
        });
        self.stop_requested.store(true, Ordering::SeqCst);
        id
    }

    /// [`JobControl::request_stop`] for a job the next run restores at once (the
    /// operator's rescales): the savepoint is handed over — written
    /// without a copy, its files still the final checkpoint's — and that run
    /// completes it ([`crate::checkpoint::CheckpointStorage::hand_over_savepoint`]).
    /// Asking again answers the first stop's id; a plain stop asked after it
    /// makes it plain.
    pub fn request_stop_handing_over(&self) -> u64 {
        self.request_stop_with(Some(true))
    }

    /// Whether the stop asked for hands its savepoint over.
    pub fn stop_hands_over(&self) -> bool {
        self.stop_hands_over.load(Ordering::SeqCst)
    }

    /// Asks for a savepoint of the next completed checkpoint, without stopping.
    /// Returns the request's id: that of an earlier request with the same `key`,
    /// if there is one (a client retrying), or a new one's.
    pub fn request_savepoint(&self, key: Option<&str>) -> u64 {
        let mut requests = self.lock_requests();
        if let Some(key) = key
            && let Some(earlier) = requests
                .iter()
                .find(|request| !request.stop && request.key.as_deref() == Some(key))
        {
            return earlier.id;
        }
        let id = requests.len() as u64 + 1;
        requests.push(SavepointRequest {
            id,
            stop: false,
            key: key.map(str::to_owned),
            status: SavepointStatus::Pending,
        });
        id
    }

    /// Every savepoint request of this run, oldest first.
    pub fn savepoint_requests(&self) -> Vec<SavepointRequest> {
        self.lock_requests().clone()
    }

    /// Whether a savepoint that does not stop the job, requested with an id up to
    /// `through`, is waiting.
    pub(crate) fn savepoint_pending(&self, through: u64) -> bool {
        self.lock_requests().iter().any(|request| {
            request.id <= through && !request.stop && request.status == SavepointStatus::Pending
        })
    }

    /// Fails every request still waiting, with `reason` (the job ends: no
    /// checkpoint will take them).
    pub(crate) fn fail_unsettled_savepoints(&self, reason: &str) {
        for request in self.lock_requests().iter_mut() {
            if request.status == SavepointStatus::Pending {
                request.status = SavepointStatus::Failed {
                    error: reason.to_owned(),
                };
            }
        }
    }

    /// The id of the latest savepoint request (0 when none was made).
    pub(crate) fn last_savepoint_request(&self) -> u64 {
        self.lock_requests().last().map_or(0, |request| request.id)
    }

    /// Settles the waiting requests up to id `through` (those that stop the job
    /// only when `final_checkpoint`).
    pub(crate) fn settle_savepoints(
        &self,
        final_checkpoint: bool,
        through: u64,
        result: Result<CompletedSnapshot, String>,
    ) {
        let mut requests = self.lock_requests();
        for request in requests.iter_mut().filter(|request| request.id <= through) {
            if request.status == SavepointStatus::Pending && (final_checkpoint || !request.stop) {
                request.status = match &result {
                    Ok(savepoint) => SavepointStatus::Completed {
                        savepoint: savepoint.clone(),
                    },
                    // A failed stop stays pending: the next drained epoch retries it.
                    Err(_) if request.stop => continue,
                    Err(error) => SavepointStatus::Failed {
                        error: error.clone(),
                    },
                };
            }
        }
        drop(requests);
        match result {
            Ok(savepoint) => {
                self.metrics.savepoints.inc();
                self.lock_snapshots().savepoints.push(savepoint);
            }
            Err(error) => {
                self.lock_snapshots().last_error = Some(error);
            }
        }
    }

    /// Notes that a worker of this process has built (and restored) its operators;
    /// once all `workers` have, the job is running.
    pub(crate) fn worker_built(&self, workers: u64) {
        if self.built_workers.fetch_add(1, Ordering::SeqCst) + 1 == workers {
            *self.running_since.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now());
            if self.failure().is_none() {
                // Its time marks the end of a restore (rescale timings read it).
                tracing::info!(workers, "operators built, state restored");
            }
        }
    }

    /// When every worker of this process had built and restored its operators.
    pub fn running_since(&self) -> Option<std::time::Instant> {
        *self.running_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }

    /// Tells every operator to finish: sources release their capabilities and the
    /// dataflow drains.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// Whether the job is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Counts records read by a source subtask.
    pub fn add_records_in(&self, source: &OperatorLabel, count: u64) {
        self.metrics.records_in.get_or_create(source).inc_by(count);
        self.records_in_total.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts records written by a sink subtask.
    pub fn add_records_out(&self, sink: &OperatorLabel, count: u64) {
        self.metrics.records_out.get_or_create(sink).inc_by(count);
        self.records_out_total.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a record an operator subtask dropped as too late.
    pub fn add_late_record(&self, operator: &OperatorLabel) {
        self.metrics.late_records.get_or_create(operator).inc();
    }

    /// Counts a record an operator subtask could not parse and skipped.
    pub fn add_malformed_record(&self, operator: &OperatorLabel) {
        self.metrics.malformed_records.get_or_create(operator).inc();
        *self
            .malformed_totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(operator.operator.clone())
            .or_default() += 1;
    }

    /// How many records the operator `operator` (all its subtasks in this
    /// process) could not parse and skipped so far.
    pub fn malformed_records(&self, operator: &str) -> u64 {
        self.malformed_totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(operator)
            .copied()
            .unwrap_or(0)
    }

    /// Counts time a source subtask spent held back.
    pub fn add_backpressure(&self, source: &OperatorLabel, held_back: std::time::Duration) {
        self.metrics
            .backpressure_seconds
            .get_or_create(source)
            .inc_by(held_back.as_secs_f64());
    }

    /// Notes that an operator subtask's watermark advanced to `watermark` (ms
    /// since the Unix epoch).
    pub fn observe_watermark(&self, operator: &OperatorLabel, watermark: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let lag = now.saturating_sub(watermark) as f64 / 1000.0;
        self.metrics
            .watermark_lag_seconds
            .get_or_create(operator)
            .set(lag);
    }

    /// Records read by this process's sources so far.
    pub fn records_in(&self) -> u64 {
        self.records_in_total.load(Ordering::Relaxed)
    }

    /// Records written by this process's sinks so far.
    pub fn records_out(&self) -> u64 {
        self.records_out_total.load(Ordering::Relaxed)
    }

    /// Notes that a source has started `epoch`.
    pub fn observe_epoch(&self, epoch: u64) {
        let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
        if epoch > self.metrics.epoch.get() {
            self.metrics.epoch.set(epoch);
        }
    }

    /// The newest epoch a source of this process has started.
    pub fn epoch(&self) -> u64 {
        self.metrics.epoch.get().max(0) as u64
    }

    /// The job's metrics in Prometheus' text format, as `/metrics` serves them.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.metrics.registry())
            .expect("metrics encode to a String");
        text
    }

    /// The checkpoints and savepoints completed so far.
    pub fn snapshots(&self) -> Snapshots {
        self.lock_snapshots().clone()
    }

    pub(crate) fn record_checkpoint(&self, checkpoint: CompletedSnapshot) {
        self.metrics.checkpoints.inc();
        self.metrics
            .checkpoint_duration_seconds
            .set(checkpoint.duration_ms as f64 / 1000.0);
        self.metrics
            .checkpoint_size_bytes
            .set(i64::try_from(checkpoint.state_bytes).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics
            .last_checkpoint_timestamp_seconds
            .set(now.as_secs_f64());
        // This process knows at once; worker 0 tells the others (before it tells
        // them to shut down, so a sink never ends without knowing).
        self.completed_here
            .fetch_max(checkpoint.epoch, Ordering::SeqCst);
        self.learn_completed(checkpoint.epoch);
        self.lock_snapshots().last_checkpoint = Some(checkpoint);
    }

    /// The epoch of the newest checkpoint this process's coordinator completed (its
    /// manifest written and its sink commits done), if any: what worker 0 tells
    /// every worker.
    pub(crate) fn completed_here(&self) -> Option<u64> {
        Some(self.completed_here.load(Ordering::SeqCst)).filter(|&epoch| epoch > 0)
    }

    /// Forgets the completions and the failure of an earlier run (a control used
    /// for another run).
    pub(crate) fn forget_completions(&self) {
        self.completed_here.store(0, Ordering::SeqCst);
        self.completed_known.store(0, Ordering::SeqCst);
        self.drained_paced.store(false, Ordering::SeqCst);
        self.failed.store(false, Ordering::SeqCst);
        self.lock_snapshots().failure = None;
    }

    /// Makes drained sources close epochs at the job's pace (see `drained_paced`).
    pub(crate) fn pace_drained_sources(&self) {
        self.drained_paced.store(true, Ordering::SeqCst);
    }

    /// Whether drained sources close epochs at the job's pace.
    pub(crate) fn drained_sources_paced(&self) -> bool {
        self.drained_paced.load(Ordering::SeqCst)
    }

    /// Notes that the checkpoint of `epoch` (and every earlier one) completed, as the
    /// coordinator's broadcast says.
    pub(crate) fn learn_completed(&self, epoch: u64) {
        self.completed_known.fetch_max(epoch, Ordering::SeqCst);
    }

    /// The epoch of the newest checkpoint of this run known complete in this
    /// process, if any. Sinks commit and sources report positions on it, in every
    /// process (the coordinator runs in process 0 only).
    pub fn completed_checkpoint(&self) -> Option<u64> {
        Some(self.completed_known.load(Ordering::SeqCst)).filter(|&epoch| epoch > 0)
    }

    pub(crate) fn record_checkpoint_failure(&self, error: String) {
        tracing::warn!(%error, "checkpoint failed");
        self.metrics.checkpoint_failures.inc();
        self.lock_snapshots().last_error = Some(error);
    }

    /// Records why the job failed (the first failure wins). Every worker of this
    /// process ends on its next step.
    pub(crate) fn record_failure(&self, failure: String) {
        self.lock_snapshots().failure.get_or_insert(failure);
        self.failed.store(true, Ordering::SeqCst);
    }

    /// The failure recorded, if the job failed.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.failed.load(Ordering::SeqCst) {
            self.lock_snapshots().failure.clone()
        } else {
            None
        }
    }
}
