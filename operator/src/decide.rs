//! The operator's decisions: from a StreamJob, its status and what the observer saw,
//! to the status to record and the one action to take next. Pure: no client, no
//! clock (the time is an input), so every phase against every observation is
//! tested as a table, and a crash between any two steps is replayed in tests.
//!
//! The rescale and upgrade cycle, each step recorded in status before it is taken:
//!
//! ```text
//! Running(p) --spec changes--> Savepointing (stop with savepoint, with a timeout)
//!    completed --> Rescaling (tear down the pods of p; wait until gone)
//!              --> Restoring (deploy the new target, restoring from the savepoint)
//!              --> Running(q)
//!    failed or timed out --> Running(p), Degraded, retried with backoff
//! ```
//!
//! `last-state` and `stateless` skip the savepoint (restoring from the latest
//! checkpoint, or starting empty under a new job id).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use strom_crds::{
    ChangeStatus, ConditionType, DesiredState, JobPhase, LATEST, ManualSavepointStatus,
    RestoreFromSpec, SavepointInfo, SavepointReason, StreamJobSpec, StreamJobStatus, UpgradeMode,
};

use crate::conditions;
use crate::credentials::{MissingCredential, ResolvedCredentials, describe_missing};
use crate::labels::pod_selector;
use crate::target::Target;

/// Timeouts, limits and polling intervals of the decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// How long a savepoint may take before it counts as failed, from the time
    /// it was first asked for (answered or not).
    pub savepoint_timeout: Duration,
    /// How long the pods of a deployment may take to be ready and running, and
    /// the old pods to go, before the job is reported stuck (Degraded and a
    /// Warning Event naming what it waits for; the step goes on).
    pub step_timeout: Duration,
    /// Wait before the first retry of a failed savepoint; doubled each attempt.
    pub retry_backoff: Duration,
    /// The longest wait between retries.
    pub max_retry_backoff: Duration,
    /// Failed savepoint attempts after which a change is given up: the job keeps
    /// running its previous spec (Degraded) until the spec changes.
    pub max_savepoint_attempts: i32,
    /// Restarts of the job within `crash_loop_window` after which a
    /// crash-looping job fails (each one restarted it from its latest checkpoint).
    pub crash_loop_restarts: i32,
    /// The window restarts are counted in: restarts further apart never fail
    /// the job.
    pub crash_loop_window: Duration,
    /// Savepoints kept in `status.savepointHistory`.
    pub savepoint_history: usize,
    /// How often a running job is looked at.
    pub poll_interval: Duration,
    /// How often a job in the middle of a step is looked at.
    pub step_interval: Duration,
    /// How often a savepoint being taken is looked at: the savepoint's end is
    /// the one step no Kubernetes object tells of, and a rescale waits on it.
    pub savepoint_poll_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            savepoint_timeout: Duration::from_secs(300),
            step_timeout: Duration::from_secs(300),
            retry_backoff: Duration::from_secs(10),
            max_retry_backoff: Duration::from_secs(600),
            max_savepoint_attempts: 5,
            crash_loop_restarts: 5,
            crash_loop_window: Duration::from_secs(600),
            savepoint_history: 10,
            poll_interval: Duration::from_secs(15),
            step_interval: Duration::from_secs(2),
            savepoint_poll_interval: Duration::from_millis(250),
        }
    }
}

/// Everything a decision is made from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The job's name.
    pub name: &'a str,
    /// `metadata.generation` of the spec.
    pub generation: i64,
    /// The desired state.
    pub spec: &'a StreamJobSpec,
    /// The status as last recorded.
    pub status: &'a StreamJobStatus,
    /// Whether the job is being deleted.
    pub deleting: bool,
    /// Whether the operator's finalizer is on the job.
    pub has_finalizer: bool,
    /// Why the spec cannot run as written (its SQL does not compile, or names a
    /// Kafka cluster the job does not have), if it cannot.
    pub spec_error: Option<String>,
    /// The referenced Secrets: all there, or what is missing.
    pub credentials: Result<ResolvedCredentials, Vec<MissingCredential>>,
    /// The job's StatefulSet and pods.
    pub deployment: DeploymentSeen,
    /// What the job's control API said.
    pub runtime: RuntimeSeen,
    /// The time now.
    pub now: Timestamp,
    /// An id for the job's run, used only if it starts without state.
    pub new_job_id: &'a str,
    /// The runtime image of jobs that name none: part of their target.
    pub default_image: &'a str,
    /// What the job's control API said of the point `spec.restoreFrom` names.
    pub restore_check: RestoreCheck,
}

/// What a running job's control API said of the point `spec.restoreFrom` names,
/// asked (with the job's storage credentials) before its pods are replaced to
/// restore it. Asked only while the job runs and is to restore it (see
/// [`restore_wanted`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RestoreCheck {
    /// Not asked.
    #[default]
    NotAsked,
    /// It is there and the job can restore it: its URL (the newest one's, for
    /// `latest`).
    Found(String),
    /// It is not there, the job cannot restore it, or the job could not tell:
    /// why.
    Failed(String),
}

/// The `spec.restoreFrom` the job is to restore and has not: one set and other
/// than the one it last restored (or tried to).
pub fn restore_wanted<'s>(
    spec: &'s StreamJobSpec,
    status: &StreamJobStatus,
) -> Option<&'s RestoreFromSpec> {
    spec.restore_from
        .as_ref()
        .filter(|wanted| status.restored_from.as_ref() != Some(*wanted))
}

/// The job's StatefulSet and pods as seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentSeen {
    /// The StatefulSet, unless missing or being deleted.
    pub stateful_set: Option<StatefulSetSeen>,
    /// Whether a StatefulSet of the job's is still there, being deleted: a
    /// foreground deletion removes the pods first and the StatefulSet after.
    pub stateful_set_terminating: bool,
    /// The job's runtime pods, terminating ones included.
    pub pods: i32,
    /// The highest container restart count among the pods.
    pub max_restart_count: i32,
    /// A runtime container waiting in `CrashLoopBackOff`.
    pub crash_loop: Option<CrashLoop>,
    /// Whether the job's ConfigMap tells its pods to expect the job's state.
    pub state_expected: bool,
    /// Why a pod of the job cannot start, if one cannot (an image that cannot be
    /// pulled, a pod no node takes, a missing ConfigMap or Secret key, a pod the
    /// admission chain refused).
    pub pod_problem: Option<PodProblem>,
}

impl DeploymentSeen {
    /// Whether anything of a deployment is left: its StatefulSet (being deleted
    /// or not) or a pod.
    pub fn anything_left(&self) -> bool {
        self.stateful_set.is_some() || self.stateful_set_terminating || self.pods > 0
    }
}

/// A pod of the job that cannot start, in Kubernetes' words.
#[derive(Clone, Debug, PartialEq)]
pub struct PodProblem {
    /// The pod (or, when the pod could not even be created, the StatefulSet).
    pub object: String,
    /// Kubernetes' reason: `ImagePullBackOff`, `Unschedulable`, `FailedCreate`, ...
    pub reason: String,
    /// Kubernetes' message.
    pub message: String,
}

impl std::fmt::Display for PodProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// The job's StatefulSet as seen.
#[derive(Clone, Debug, PartialEq)]
pub struct StatefulSetSeen {
    /// The target revision it was made for (annotation).
    pub revision: Option<String>,
    /// Pods it should have.
    pub replicas: i32,
    /// Pods whose runtime container is ready (sidecars aside), not going away.
    pub ready_replicas: i32,
    /// The image its runtime container runs.
    pub image: Option<String>,
    /// Where its pods take the control token from.
    pub token: PodsToken,
}

/// Where a StatefulSet's pods take the job's control token from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodsToken {
    /// The mounted Secret, read at each request (`STROM_CONTROL_TOKEN_FILE`): a
    /// new token reaches running pods without a restart.
    File,
    /// Their environment, read once at start (deployed by an operator from
    /// before the file): a new token reaches them only when they restart.
    Environment,
    /// None: deployed by an operator from before the token; anyone may stop them.
    Unguarded,
}

/// A runtime container that keeps failing.
#[derive(Clone, Debug, PartialEq)]
pub struct CrashLoop {
    /// Its restart count.
    pub restarts: i32,
    /// Why it last ended (exit code and message).
    pub reason: String,
}

/// What the job's control API said.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeSeen {
    /// Not asked: no pod of the job is ready.
    NotAsked,
    /// Asked, without an answer.
    Unreachable(String),
    /// The job's answer.
    Answered(RuntimeReport),
}

/// The job's own report, from its control API.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeReport {
    /// Whether it runs, stops or has failed.
    pub state: RuntimeState,
    /// Savepoints asked of this run of the job.
    pub savepoints: Vec<SavepointSeen>,
    /// Whether the job has completed a checkpoint since its pods started.
    pub checkpointed: bool,
}

/// Where a job's run stands, as its control API says.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeState {
    /// Reading and processing.
    Running,
    /// A stop was asked for; the final savepoint is being taken.
    Stopping,
    /// Stopped.
    Finished,
    /// Failed, with the reason.
    Failed(String),
}

/// A savepoint request of the job's run.
#[derive(Clone, Debug, PartialEq)]
pub struct SavepointSeen {
    /// Its id.
    pub id: i64,
    /// Whether the job stops after it.
    pub stop: bool,
    /// Where it stands.
    pub outcome: SavepointOutcome,
}

/// Where a savepoint request stands.
#[derive(Clone, Debug, PartialEq)]
pub enum SavepointOutcome {
    /// Not written yet.
    Pending,
    /// Written to this location.
    Completed(String),
    /// Could not be written.
    Failed(String),
}

/// Whether the stop asked for the change in `status` hands its savepoint over to
/// the next run instead of copying it before the job ends: for a rescale, whose
/// next run (same image, same folder) restores it at once and completes it beside
/// its first checkpoints, so the new pods do not wait for the copy. Not for an
/// upgrade: its image may be a Strom that cannot read a borrowed savepoint (a
/// downgrade). A suspended or deleted job's savepoint is copied first: nothing
/// may run after it (a deletion during a rescale's stop asks again, plainly).
pub fn stop_hands_over(status: &StreamJobStatus) -> bool {
    status
        .change
        .as_ref()
        .is_some_and(|change| change.reason == SavepointReason::Rescale)
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing but wait.
    Nothing,
    /// Put the operator's finalizer on the job.
    AddFinalizer,
    /// Apply the job's ConfigMap, Services and StatefulSet for this deployment.
    Deploy(Box<Deployment>),
    /// Ask the job to stop with a savepoint.
    StopWithSavepoint,
    /// Ask the job for a savepoint without stopping.
    TriggerSavepoint,
    /// Delete the job's pods so that they restart from the latest checkpoint.
    RestartPods,
    /// Mark in the job's ConfigMap that its run has checkpointed, so a pod that
    /// restarts from now on fails rather than start without the job's state.
    ExpectState,
    /// Delete the job's StatefulSet and wait until its pods are gone.
    TearDown,
    /// Take the operator's finalizer off: the job may go.
    RemoveFinalizer,
}

/// One deployment of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    /// What it runs.
    pub target: Target,
    /// The job's run: its checkpoints live under this id.
    pub job_id: String,
    /// A savepoint to restore from when the run has no newer checkpoint, or
    /// `latest` (see `spec.restoreFrom`).
    pub restore_from: Option<String>,
    /// With `restore_from` `latest`: the job whose newest point is restored, when
    /// not this one.
    pub latest_of: Option<String>,
    /// The run has completed checkpoints before: its pods fail rather than
    /// start without one (see `status.checkpointed`).
    pub expect_state: bool,
}

/// When to look at the job again (besides when something it watches changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After this long.
    After(Duration),
    /// Only when the job or something it owns or references changes.
    OnChange,
}

/// An Event to publish about the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// A PascalCase reason, e.g. `SavepointFailed`.
    pub reason: &'static str,
    /// What happened, for people.
    pub note: String,
}

/// The outcome of [`decide`]: the status to record, then the action to take.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status, recorded before the action is taken.
    pub status: StreamJobStatus,
    /// The action.
    pub action: Action,
    /// Events to publish.
    pub events: Vec<Event>,
    /// When to look again.
    pub requeue: Requeue,
}

/// Decides the next step of a job.
pub fn decide(input: &Input<'_>, settings: &Settings) -> Decision {
    let mut next = Next::new(input, settings);
    next.count_restarts();
    next.note_checkpoints();
    if input.deleting {
        next.deleting();
    } else if !input.has_finalizer {
        next.act(Action::AddFinalizer, Requeue::After(Duration::ZERO));
    } else {
        match input.status.phase {
            None => next.new_job(),
            Some(JobPhase::Deploying | JobPhase::Restoring) => next.deploying(),
            Some(JobPhase::Running) => next.running(),
            Some(JobPhase::Savepointing) => next.savepointing(),
            Some(JobPhase::Rescaling) => next.tearing_down(),
            Some(JobPhase::Suspended) => next.suspended(),
            Some(JobPhase::Failed) => next.failed(),
        }
    }
    next.expect_state();
    next.finish()
}

/// Records the id the job's control API gave to the savepoint `action` asked for.
pub fn record_savepoint_request(
    mut status: StreamJobStatus,
    action: &Action,
    id: i64,
) -> StreamJobStatus {
    match action {
        Action::StopWithSavepoint => {
            if let Some(change) = &mut status.change {
                change.savepoint_request = Some(id);
            }
        }
        Action::TriggerSavepoint => {
            if let Some(manual) = &mut status.manual_savepoint {
                manual.request = Some(id);
            }
        }
        _ => {}
    }
    status
}

/// Records that the apiserver refused `action` (an admission webhook or policy, a
/// quota, an object it finds invalid): Degraded with the refusal, and a Warning
/// Event unless the same refusal is already reported. The action is tried again
/// on the next look.
pub fn record_refused_action(
    mut status: StreamJobStatus,
    action: &Action,
    refusal: &str,
    generation: i64,
    now: Timestamp,
) -> (StreamJobStatus, Option<Event>) {
    let what = match action {
        Action::Deploy(_) => "applying the job's StatefulSet, Services and ConfigMap",
        Action::TearDown => "deleting the job's StatefulSet",
        Action::RestartPods => "restarting the job's pods",
        Action::ExpectState => "updating the job's ConfigMap",
        Action::AddFinalizer | Action::RemoveFinalizer => "updating the job's finalizer",
        Action::StopWithSavepoint | Action::TriggerSavepoint | Action::Nothing => {
            return (status, None);
        }
    };
    let message = format!("{what} was refused: {refusal}");
    let reported = conditions::get(&status.conditions, ConditionType::Degraded)
        .is_some_and(|c| c.status == "True" && c.reason == "ActionRefused" && c.message == message);
    conditions::set(
        &mut status.conditions,
        ConditionType::Degraded,
        true,
        "ActionRefused",
        message.clone(),
        generation,
        now,
    );
    let event = (!reported).then_some(Event {
        warning: true,
        reason: "ActionRefused",
        note: message,
    });
    (status, event)
}

/// A decision being made: the status so far, the events, the action.
struct Next<'a, 'i> {
    input: &'a Input<'i>,
    settings: &'a Settings,
    status: StreamJobStatus,
    events: Vec<Event>,
    action: Action,
    requeue: Requeue,
    /// The Ready condition's reason and message, when not Ready.
    not_ready: Option<(&'static str, String)>,
    /// A change the spec asks for waits (for a manual savepoint under way).
    change_waiting: bool,
}

impl<'a, 'i> Next<'a, 'i> {
    fn new(input: &'a Input<'i>, settings: &'a Settings) -> Self {
        Self {
            input,
            settings,
            status: input.status.clone(),
            events: Vec::new(),
            action: Action::Nothing,
            requeue: Requeue::After(settings.poll_interval),
            not_ready: None,
            change_waiting: false,
        }
    }

    // ---- The phases ----

    /// A job seen for the first time.
    fn new_job(&mut self) {
        if self.input.spec.desired_state == DesiredState::Suspended {
            self.enter(
                JobPhase::Suspended,
                "Suspended",
                "created suspended: no pods".into(),
            );
            self.requeue = Requeue::OnChange;
            return;
        }
        let Some(target) = self.target() else {
            return self.wait_for_target();
        };
        if self.restore_wanted().is_some() {
            return self.deploy_restore(JobPhase::Deploying, target);
        }
        let job_id = self.job_id_or_new();
        self.deploy(JobPhase::Deploying, target, job_id, None);
    }

    /// Pods are being created; waits until all are ready and the job runs.
    fn deploying(&mut self) {
        if self.fail_on_crash_loop() {
            return;
        }
        let Some(deployed) = self.deployed() else {
            return self.new_job();
        };
        if deployed.unreadable && self.target().is_none() {
            // What is being deployed cannot be read, nor anything else deployed.
            return self.wait_for_target();
        }
        let restore_from = self
            .status
            .change
            .as_ref()
            .and_then(|c| c.restore_from.clone());
        let suspend = self.input.spec.desired_state == DesiredState::Suspended;
        let restore = self.target().is_some() && self.restore_wanted().is_some();
        let changed = self
            .target()
            .is_some_and(|target| self.change_wanted(&target, &deployed));
        if suspend || changed || restore {
            // The job does not run yet, so no savepoint can be taken: the new
            // deployment restores from what this one was to restore from (or
            // from spec.restoreFrom).
            let reason = if suspend {
                SavepointReason::Suspend
            } else if restore {
                SavepointReason::Restore
            } else {
                SavepointReason::Upgrade
            };
            let change = self.new_change(reason);
            self.status.change = Some(ChangeStatus {
                restore_from,
                ..change
            });
            let why = format!(
                "{}; the job does not run yet, so no savepoint can be taken",
                describe_change(reason, &deployed, self.target().as_ref())
            );
            return self.tear_down(&why);
        }
        let job_id = self.job_id_or_new();
        let deployment = self.deployment(deployed.clone(), job_id, restore_from);
        let revision = deployed.revision();
        let seen = &self.input.deployment;
        match &seen.stateful_set {
            Some(set) if set.revision.as_deref() == Some(revision.as_str()) => {}
            None if seen.stateful_set_terminating => {
                // The StatefulSet was deleted under the deployment (foreground: its
                // pods first): applied onto it, the deployment would go with it.
                // Applied once it is gone.
                self.report_teardown_if_overdue();
                let reason = phase_reason(self.status.phase.unwrap_or(JobPhase::Deploying));
                self.not_ready(
                    reason,
                    "waiting for the job's StatefulSet, being deleted, to go before \
                     applying it again"
                        .into(),
                );
                self.requeue = Requeue::After(self.settings.step_interval);
                return;
            }
            _ => {
                // Recorded as deploying but not (or not this target) deployed: an
                // operator stopped between the two. Applying again is harmless.
                self.act(
                    Action::Deploy(Box::new(deployment)),
                    Requeue::After(self.settings.step_interval),
                );
                return;
            }
        }
        if self.job_runs(&deployed) {
            let parallelism = deployed.spec.parallelism;
            let note = match self
                .status
                .change
                .as_ref()
                .and_then(|c| c.restore_from.as_ref())
            {
                Some(point) => format!(
                    "running at parallelism {parallelism}, restored from {}",
                    self.restore_point_name(point)
                ),
                None => format!("running at parallelism {parallelism}"),
            };
            let rolled_back = self
                .status
                .change
                .as_ref()
                .is_some_and(|c| c.reason == SavepointReason::Rollback);
            self.status.change = None;
            self.status.parallelism = Some(parallelism);
            self.status.pod_restarts_seen = self.input.deployment.max_restart_count;
            self.status.last_stable_spec = Some(deployed.to_json());
            if !rolled_back {
                self.set_degraded(None);
            }
            self.enter(JobPhase::Running, "Running", note);
            self.requeue = Requeue::After(self.settings.poll_interval);
        } else {
            let phase = self.status.phase.unwrap_or(JobPhase::Deploying);
            let waiting = self.waiting_for_pods(&deployed);
            if self.step_overdue() {
                let why = format!(
                    "the new spec did not run within {}s: {waiting}",
                    self.settings.step_timeout.as_secs()
                );
                if self.roll_back(&deployed, &why) {
                    return;
                }
            }
            if let Some(problem) = &self.input.deployment.pod_problem {
                let message = format!("a pod of the job cannot start: {problem}");
                self.report_stuck("DeploymentStuck", message);
            } else if self.step_overdue() {
                let message = format!(
                    "the job is not running {}s after it was deployed: {waiting}",
                    self.settings.step_timeout.as_secs()
                );
                self.report_stuck("DeploymentStuck", message);
            }
            self.not_ready(phase_reason(phase), waiting);
            self.requeue = Requeue::After(self.settings.step_interval);
        }
    }

    /// The job runs: starts a change when the spec asks for one, takes manual
    /// savepoints, and watches its health.
    fn running(&mut self) {
        if self.fail_on_crash_loop() {
            return;
        }
        let Some(deployed) = self.deployed() else {
            return self.new_job();
        };
        if self.status.manual_savepoint.is_some() {
            // A manual savepoint under way is finished first (within its
            // deadline): a stop would leave it unanswered. Health is watched
            // meanwhile.
            self.manual_savepoint_progress();
            let (requeue, action) = (self.requeue, self.action.clone());
            self.watch_health(&deployed);
            // A restart of a stopped job goes first; otherwise the savepoint's step.
            if self.action == Action::Nothing {
                self.act(action, requeue);
            }
            let wanted = self.input.spec.desired_state == DesiredState::Suspended
                || self.restore_wanted().is_some()
                || self
                    .target()
                    .is_some_and(|target| self.change_wanted(&target, &deployed));
            if wanted && self.not_ready.is_none() {
                self.change_waiting = true;
                self.not_ready(
                    "ChangePending",
                    format!(
                        "the spec's change waits for the manual savepoint under way; \
                         parallelism {} runs",
                        deployed.spec.parallelism
                    ),
                );
            }
            return;
        }
        let suspend = self.input.spec.desired_state == DesiredState::Suspended;
        if !suspend && self.restore_wanted().is_some() {
            return self.restore_running(&deployed);
        }
        let target = self.target();
        let changed = target
            .as_ref()
            .is_some_and(|target| self.change_wanted(target, &deployed));
        if !suspend && !changed {
            // Only a spec back to what runs cancels a change under way; one that
            // cannot run yet (invalid, or a Secret missing) leaves it pending.
            if target.is_some() && self.status.change.take().is_some() {
                self.set_degraded(None);
                self.event(
                    false,
                    "ChangeCancelled",
                    "the spec is back to what runs: nothing to change".into(),
                );
            }
            if self.wants_manual_savepoint() {
                return self.start_manual_savepoint();
            }
            if let Some(interval) = self.periodic_savepoint_due() {
                return self.start_periodic_savepoint(interval);
            }
            self.watch_health(&deployed);
            if self.status.last_stable_spec.is_none() && self.job_runs(&deployed) {
                // Deployed by an operator that did not record it: it runs.
                self.status.last_stable_spec = Some(deployed.to_json());
            }
            self.report_rolled_back(target.as_ref(), &deployed);
            return;
        }
        let reason = match (suspend, &target) {
            (true, _) => SavepointReason::Suspend,
            (false, Some(target)) if deployed.is_rescale_to(target) => SavepointReason::Rescale,
            _ => SavepointReason::Upgrade,
        };
        let wanted = self.new_change(reason);
        // The change under way, if it goes where the spec asks now (one recorded
        // without its target, by an older operator, is taken to).
        let same_change = self.status.change.as_ref().filter(|previous| {
            previous.reason == wanted.reason
                && (previous.target_revision.is_none()
                    || previous.target_revision == wanted.target_revision)
        });
        if let Some(given_up) = same_change.filter(|c| {
            c.retry_at.is_none() && c.failed_attempts >= self.settings.max_savepoint_attempts
        }) {
            // Given up: the previous spec runs until the spec changes again.
            let message = format!(
                "{} was given up after {} failed savepoint attempts; the previous spec runs \
                 at parallelism {}; change the spec to try again",
                describe_change(reason, &deployed, target.as_ref()),
                given_up.failed_attempts,
                deployed.spec.parallelism
            );
            self.watch_health(&deployed);
            if self.input.deployment.pod_problem.is_none() {
                self.set_degraded(Some(("SavepointFailed", message.clone())));
            }
            if self.not_ready.is_none() {
                self.not_ready("ChangeGivenUp", message);
            }
            if self.action == Action::Nothing {
                self.requeue = Requeue::After(self.settings.poll_interval);
            }
            return;
        }
        if let Some(retry_at) = same_change.and_then(|c| c.retry_at.clone())
            && retry_at.0 > self.input.now
        {
            self.watch_health(&deployed);
            let message = format!(
                "{} waits for its retry in {}s; the previous spec runs at parallelism {}",
                describe_change(reason, &deployed, target.as_ref()),
                until(self.input.now, retry_at.0).as_secs(),
                deployed.spec.parallelism
            );
            let degraded_by_savepoint =
                conditions::get(&self.status.conditions, ConditionType::Degraded)
                    .is_some_and(|c| c.status == "True" && c.reason == "SavepointFailed");
            if self.input.deployment.pod_problem.is_none() && !degraded_by_savepoint {
                self.set_degraded(Some(("SavepointFailed", message.clone())));
            }
            if self.not_ready.is_none() {
                self.not_ready("ChangePending", message);
            }
            self.requeue = Requeue::After(until(self.input.now, retry_at.0));
            return;
        }
        let mut change = wanted;
        // Attempts count per change: another target starts from zero.
        if let Some(previous) = same_change {
            change.failed_attempts = previous.failed_attempts;
        }
        let mode = change.upgrade_mode;
        self.status.change = Some(change);
        match mode {
            UpgradeMode::Savepoint => {
                let note = format!(
                    "{}: stopping with a savepoint (timeout {}s)",
                    describe_change(reason, &deployed, target.as_ref()),
                    self.savepoint_timeout().as_secs()
                );
                self.enter(JobPhase::Savepointing, "Savepointing", note);
                self.act(
                    Action::StopWithSavepoint,
                    Requeue::After(self.settings.step_interval),
                );
            }
            UpgradeMode::LastState | UpgradeMode::Stateless => {
                let why = format!(
                    "{} (upgrade mode {}: no savepoint)",
                    describe_change(reason, &deployed, target.as_ref()),
                    mode.as_str()
                );
                self.tear_down(&why);
            }
        }
    }

    /// A stop with savepoint was asked for (or is to be asked for again).
    fn savepointing(&mut self) {
        let Some(change) = self.status.change.clone() else {
            // Savepointing with nothing to change: an older status. Carry on running.
            self.enter(JobPhase::Running, "Running", "nothing to change".into());
            return;
        };
        let outcome = match change.savepoint_request {
            Some(request) => self.savepoint_outcome(request, true),
            None => None,
        };
        match outcome {
            Some(SavepointOutcome::Completed(path)) => {
                self.record_savepoint(&path, change.reason);
                if let Some(change) = &mut self.status.change {
                    change.restore_from = Some(path);
                    change.savepoint_request = None;
                }
                if change.reason == SavepointReason::Delete {
                    self.act(Action::RemoveFinalizer, Requeue::OnChange);
                } else {
                    self.tear_down("the savepoint is complete");
                }
            }
            Some(SavepointOutcome::Failed(error)) => self.savepoint_failed(&change, &error),
            Some(SavepointOutcome::Pending) | None => {
                let waited = self.input.now.duration_since(change.step_started_at.0);
                if waited >= signed(self.savepoint_timeout()) {
                    let error = format!(
                        "not completed within {}s{}",
                        self.savepoint_timeout().as_secs(),
                        self.unreachable_detail()
                    );
                    self.savepoint_failed(&change, &error);
                } else if change.savepoint_request.is_none() {
                    // Not accepted yet (or its id not recorded): asked again.
                    self.not_ready(
                        "Savepointing",
                        "asking the job to stop with a savepoint".into(),
                    );
                    self.act(
                        Action::StopWithSavepoint,
                        Requeue::After(self.settings.step_interval),
                    );
                } else {
                    self.not_ready("Savepointing", "stopping with a savepoint".into());
                    self.requeue = Requeue::After(self.settings.savepoint_poll_interval);
                }
            }
        }
    }

    /// The old pods are being removed; once gone, deploys the new target (or
    /// suspends).
    fn tearing_down(&mut self) {
        let seen = &self.input.deployment;
        if seen.anything_left() {
            // The StatefulSet goes after its pods (foreground deletion).
            let note = match seen.pods {
                0 => "removing the job's StatefulSet".to_owned(),
                pods => format!("removing the job's pods ({pods} left)"),
            };
            self.report_teardown_if_overdue();
            self.not_ready("Rescaling", note);
            self.act(
                Action::TearDown,
                Requeue::After(self.settings.step_interval),
            );
            return;
        }
        let change = self.status.change.clone();
        let reason = change.as_ref().map(|c| c.reason);
        if reason == Some(SavepointReason::Suspend) {
            self.status.parallelism = Some(0);
            let note =
                self.describe_restore(change.as_ref().and_then(|c| c.restore_from.as_deref()));
            self.enter(
                JobPhase::Suspended,
                "Suspended",
                format!("no pods; resumes {note}"),
            );
            self.requeue = Requeue::OnChange;
            return;
        }
        if reason == Some(SavepointReason::Rollback)
            && let Some(stable) = self.last_stable()
        {
            return self.redeploy(stable, change);
        }
        let Some(target) = self.target() else {
            return self.wait_for_target();
        };
        self.redeploy(target, change);
    }

    /// No pods; waits for `desiredState: running`.
    fn suspended(&mut self) {
        self.status.parallelism = Some(0);
        self.clear_refusal();
        if self.input.spec.desired_state == DesiredState::Suspended {
            self.not_ready("Suspended", "desiredState is suspended".into());
            self.requeue = Requeue::OnChange;
            return;
        }
        let Some(target) = self.target() else {
            return self.wait_for_target();
        };
        let first = self.status.last_reconciled_spec.is_none();
        if first && self.restore_wanted().is_some() {
            return self.deploy_restore(JobPhase::Deploying, target);
        }
        if first {
            // Created suspended: this is its first deployment.
            let job_id = self.job_id_or_new();
            return self.deploy(JobPhase::Deploying, target, job_id, None);
        }
        // A spec that was rolled back is not deployed again: the last that ran is.
        let target = match self.last_stable() {
            Some(stable)
                if self.status.rolled_back_revision.as_ref() == Some(&target.revision()) =>
            {
                stable
            }
            _ => target,
        };
        let change = self.status.change.clone();
        self.redeploy(target, change);
    }

    /// The job failed: pods are removed, and a new spec or `restartNonce` starts it
    /// again from its latest checkpoint.
    fn failed(&mut self) {
        // Why it failed stays in the Ready condition until it runs again.
        let reason = conditions::get(&self.status.conditions, ConditionType::Ready)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        self.not_ready("Failed", reason);
        if self.input.deployment.anything_left() {
            self.report_teardown_if_overdue();
            self.act(
                Action::TearDown,
                Requeue::After(self.settings.step_interval),
            );
            return;
        }
        self.status.parallelism = Some(0);
        self.clear_refusal();
        let deployed = self.deployed();
        let target = self.target();
        let retry = match (&target, &deployed) {
            (Some(target), Some(deployed)) => {
                self.change_wanted(target, deployed) || self.restore_wanted().is_some()
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        let Some(target) = target.filter(|_| retry) else {
            self.requeue = Requeue::OnChange;
            return;
        };
        if let Some(change) = &mut self.status.change
            && change.reason == SavepointReason::Rollback
        {
            // The rollback failed: what is deployed now is the spec's own.
            change.reason = SavepointReason::Upgrade;
        }
        let change = self.status.change.clone();
        self.redeploy(target, change);
    }

    /// The job is being deleted: a final savepoint (bounded wait), then the
    /// finalizer comes off and Kubernetes removes what the job owns.
    fn deleting(&mut self) {
        if !self.input.has_finalizer {
            self.requeue = Requeue::OnChange;
            return;
        }
        let running = matches!(
            self.status.phase,
            Some(JobPhase::Running | JobPhase::Savepointing)
        ) && self.input.deployment.stateful_set.is_some();
        let stateless = self.input.spec.upgrade_mode == UpgradeMode::Stateless;
        if !running || stateless {
            self.act(Action::RemoveFinalizer, Requeue::OnChange);
            return;
        }
        match self.status.change.clone() {
            Some(change) if change.reason == SavepointReason::Delete => self.savepointing(),
            Some(change) if self.status.phase == Some(JobPhase::Savepointing) => {
                // The stop asked for by another change serves as the final one;
                // a rescale's handed its savepoint over, so it is asked for again,
                // plainly (the job answers the same request, copied).
                let savepoint_request = match change.reason {
                    SavepointReason::Rescale => None,
                    _ => change.savepoint_request,
                };
                self.status.change = Some(ChangeStatus {
                    reason: SavepointReason::Delete,
                    savepoint_request,
                    ..change
                });
                self.savepointing();
            }
            _ => {
                self.status.change = Some(self.new_change(SavepointReason::Delete));
                let note = format!(
                    "deleted: taking a final savepoint (waiting at most {}s)",
                    self.savepoint_timeout().as_secs()
                );
                self.enter(JobPhase::Savepointing, "Savepointing", note);
                self.act(
                    Action::StopWithSavepoint,
                    Requeue::After(self.settings.step_interval),
                );
            }
        }
    }

    // ---- Steps shared by the phases ----

    /// Records the new deployment, then applies it.
    fn deploy(
        &mut self,
        phase: JobPhase,
        target: Target,
        job_id: String,
        restore_from: Option<String>,
    ) {
        let parallelism = target.spec.parallelism;
        let note = format!(
            "deploying {} pod(s) at parallelism {parallelism}, {}",
            target.spec.pods(),
            self.describe_restore(restore_from.as_deref())
        );
        if self.status.job_id.as_ref() != Some(&job_id) {
            // A new run: nothing of it is on storage yet.
            self.status.checkpointed = false;
        }
        self.status.job_id = Some(job_id.clone());
        // What runs from now on (the scale subresource's replicas): never 0
        // in the middle of a cycle.
        self.status.parallelism = Some(parallelism);
        // A new deployment's crash loop is its own.
        self.status.recent_restarts.clear();
        let rolling_back = self
            .status
            .change
            .as_ref()
            .is_some_and(|c| c.reason == SavepointReason::Rollback);
        if !rolling_back {
            // Another spec is deployed: a rolled-back one may be tried again.
            self.status.rolled_back_revision = None;
        }
        self.status.last_reconciled_spec = Some(target.to_json());
        self.status.selector = Some(pod_selector(self.input.name));
        if let Some(change) = &mut self.status.change {
            change.restore_from.clone_from(&restore_from);
            change.step_started_at = Time(self.input.now);
        }
        self.enter(phase, phase_reason(phase), note.clone());
        self.not_ready(phase_reason(phase), note);
        let deployment = self.deployment(target, job_id, restore_from);
        self.act(
            Action::Deploy(Box::new(deployment)),
            Requeue::After(self.settings.step_interval),
        );
    }

    /// The deployment of `target` under `job_id`, restoring `restore_from`.
    fn deployment(
        &self,
        target: Target,
        job_id: String,
        restore_from: Option<String>,
    ) -> Deployment {
        // `latest` is of the job the restoreFrom it came from names.
        let latest_of = self
            .status
            .restored_from
            .as_ref()
            .filter(|_| restore_from.as_deref() == Some(LATEST))
            .and_then(|restored| restored.job_name.clone());
        Deployment {
            target,
            job_id,
            restore_from,
            latest_of,
            expect_state: self.status.checkpointed,
        }
    }

    /// Deploys `target` restoring `spec.restoreFrom`, under a new job id: the
    /// restored point starts a deployment of its own, and the checkpoints of the
    /// one before stay where they are. Recorded as done (`status.restoredFrom`)
    /// once asked for: a point that cannot be restored fails the job, and a
    /// changed `restoreFrom` tries again.
    fn deploy_restore(&mut self, phase: JobPhase, target: Target) {
        let Some(restore) = self.input.spec.restore_from.clone() else {
            return;
        };
        self.status.restored_from = Some(restore.clone());
        let change = match self.status.change.take() {
            Some(change) => ChangeStatus {
                reason: SavepointReason::Restore,
                ..change
            },
            None => self.new_change(SavepointReason::Restore),
        };
        self.status.change = Some(change);
        let job_id = self.input.new_job_id.to_owned();
        self.deploy(phase, target, job_id, Some(restore.path));
    }

    /// A running job whose `spec.restoreFrom` changed: once its control API says
    /// the point is there and one it can restore, its pods are replaced (without
    /// a savepoint) by a deployment restoring it. A job that does not run is
    /// replaced at once: nothing runs to keep, and its pods say, failing, when
    /// the point cannot be restored.
    fn restore_running(&mut self, deployed: &Target) {
        let Some(restore) = self.restore_wanted().cloned() else {
            return;
        };
        if self.target().is_none() {
            // SpecValid or CredentialsResolved says why nothing is deployed.
            self.watch_health(deployed);
            return self.wait_for_target();
        }
        let point = self.restore_point_name(&restore.path);
        // Down for good (failed, crash-looping, pods that cannot start, or none):
        // nothing runs to keep, and nothing to ask. A job only slow to answer
        // is asked again.
        let seen = &self.input.deployment;
        let down = seen.stateful_set.is_none()
            || seen.crash_loop.is_some()
            || seen.pod_problem.is_some()
            || matches!(
                &self.input.runtime,
                RuntimeSeen::Answered(RuntimeReport {
                    state: RuntimeState::Failed(_) | RuntimeState::Finished,
                    ..
                })
            );
        let found = match &self.input.restore_check {
            _ if down => None,
            RestoreCheck::Found(url) => Some(url.clone()),
            RestoreCheck::Failed(error) => {
                let message = format!(
                    "spec.restoreFrom cannot be restored: {error}; the job keeps running as it \
                     is until {point} is there or restoreFrom changes"
                );
                self.watch_health(deployed);
                if self.input.deployment.pod_problem.is_none() {
                    self.report_stuck("RestoreFailed", message.clone());
                }
                if self.not_ready.is_none() {
                    self.not_ready("RestorePending", message);
                }
                self.change_waiting = true;
                if self.action == Action::Nothing {
                    self.requeue = Requeue::After(self.settings.poll_interval);
                }
                return self.savepoints_meanwhile();
            }
            RestoreCheck::NotAsked => {
                self.watch_health(deployed);
                if self.not_ready.is_none() {
                    let detail = self.unreachable_detail();
                    self.not_ready(
                        "RestorePending",
                        format!("asking the job whether {point} can be restored{detail}"),
                    );
                }
                self.change_waiting = true;
                if self.action == Action::Nothing {
                    self.requeue = Requeue::After(self.settings.step_interval);
                }
                return self.savepoints_meanwhile();
            }
        };
        self.status.change = Some(self.new_change(SavepointReason::Restore));
        if conditions::get(&self.status.conditions, ConditionType::Degraded)
            .is_some_and(|c| c.status == "True" && c.reason == "RestoreFailed")
        {
            self.set_degraded(None);
        }
        let found = found.map_or_else(String::new, |url| format!(" (now {url})"));
        let job_id = self.status.job_id.clone().unwrap_or_default();
        let why = format!(
            "restoring {point}{found} as spec.restoreFrom asks, in place of the job's state, \
             without a savepoint (the checkpoints of job id {job_id} stay on storage)"
        );
        self.tear_down(&why);
    }

    /// Rolls back the change whose deployment `deployed` did not come up (`why`),
    /// when the spec asks for it (`rollbackOnFailure`) and it can be: the change
    /// took a savepoint, and another spec ran before. Tears `deployed` down; the
    /// last spec that ran is deployed next, restored from that savepoint.
    /// Whether it did.
    fn roll_back(&mut self, deployed: &Target, why: &str) -> bool {
        if !self.input.spec.rollback_on_failure || self.status.phase != Some(JobPhase::Restoring) {
            return false;
        }
        let Some(change) = self.status.change.clone() else {
            return false;
        };
        let Some(savepoint) = change.restore_from.clone() else {
            return false;
        };
        if matches!(
            change.reason,
            SavepointReason::Rollback | SavepointReason::Restore
        ) {
            // A rollback that fails fails; a restoreFrom has no savepoint of its own.
            return false;
        }
        let Some(stable) = self.last_stable().filter(|stable| stable != deployed) else {
            return false;
        };
        self.status.rolled_back_revision = Some(deployed.revision());
        self.status.change = Some(ChangeStatus {
            reason: SavepointReason::Rollback,
            failed_attempts: 0,
            retry_at: None,
            savepoint_request: None,
            ..change
        });
        let message = format!(
            "{why}; rolling back to the last spec that ran (parallelism {}), from savepoint \
             {savepoint}",
            stable.spec.parallelism
        );
        self.event(true, "RollingBack", message);
        self.tear_down("rolling back");
        true
    }

    /// While the spec asks for one that was rolled back (`target`), the job runs
    /// `deployed` instead: Degraded and not Ready, saying so.
    fn report_rolled_back(&mut self, target: Option<&Target>, deployed: &Target) {
        let Some(target) = target else {
            return;
        };
        if self.status.rolled_back_revision.as_ref() != Some(&target.revision()) {
            if target == deployed && self.status.rolled_back_revision.take().is_some() {
                // The spec is back to what runs.
                let degraded = conditions::get(&self.status.conditions, ConditionType::Degraded);
                if degraded.is_some_and(|c| c.status == "True" && c.reason == "RolledBack") {
                    self.set_degraded(None);
                }
            }
            return;
        }
        let message = format!(
            "the spec was rolled back: it did not run (spec.rollbackOnFailure); the previous \
             spec runs at parallelism {}; change the spec (or bump restartNonce) to try again",
            deployed.spec.parallelism
        );
        if self.input.deployment.pod_problem.is_none() {
            let reported = conditions::get(&self.status.conditions, ConditionType::Degraded)
                .is_some_and(|c| c.status == "True" && c.reason == "RolledBack");
            if !reported {
                self.event(true, "RolledBack", message.clone());
            }
            self.set_degraded(Some(("RolledBack", message.clone())));
        }
        if self.not_ready.is_none() {
            self.not_ready("RolledBack", message);
        }
    }

    /// Whether the spec's `target` asks for another deployment than `deployed`:
    /// it differs, and is not a spec that was rolled back.
    fn change_wanted(&self, target: &Target, deployed: &Target) -> bool {
        target != deployed && self.status.rolled_back_revision.as_ref() != Some(&target.revision())
    }

    /// The last spec that ran, if one did and it reads as a target.
    fn last_stable(&self) -> Option<Target> {
        Target::from_json(self.status.last_stable_spec.as_deref()?)
    }

    /// While a restore waits for its check, the job's manual and periodic
    /// savepoints are taken as usual (other spec changes wait for the restore).
    fn savepoints_meanwhile(&mut self) {
        if self.action != Action::Nothing {
            return;
        }
        if self.wants_manual_savepoint() {
            self.start_manual_savepoint();
        } else if let Some(interval) = self.periodic_savepoint_due() {
            self.start_periodic_savepoint(interval);
        }
    }

    /// Deploys `target` after a change took the old deployment down.
    fn redeploy(&mut self, target: Target, change: Option<ChangeStatus>) {
        if self.restore_wanted().is_some() {
            return self.deploy_restore(JobPhase::Restoring, target);
        }
        let mode = change
            .as_ref()
            .map_or(target.spec.upgrade_mode, |c| c.upgrade_mode);
        let rollback = change
            .as_ref()
            .is_some_and(|c| c.reason == SavepointReason::Rollback);
        let restore_from = change.and_then(|c| c.restore_from);
        let (job_id, restore_from) = match mode {
            UpgradeMode::Stateless => (self.input.new_job_id.to_owned(), None),
            // A deployment of its own, from the change's savepoint: the failed
            // spec's checkpoints descend from that savepoint too, and must not
            // be taken for the job's own.
            _ if rollback => (self.input.new_job_id.to_owned(), restore_from),
            UpgradeMode::Savepoint | UpgradeMode::LastState => (self.job_id_or_new(), restore_from),
        };
        self.deploy(JobPhase::Restoring, target, job_id, restore_from);
    }

    /// Records the teardown of the running deployment, then takes it.
    /// Removes the old pods, `why` (said first in the Event).
    fn tear_down(&mut self, why: &str) {
        if let Some(change) = &mut self.status.change {
            change.step_started_at = Time(self.input.now);
        }
        let note = format!("{why}; removing the old pods before deploying the new ones");
        self.enter(JobPhase::Rescaling, "Rescaling", note.clone());
        self.not_ready("Rescaling", note);
        self.act(
            Action::TearDown,
            Requeue::After(self.settings.step_interval),
        );
    }

    /// A stop with savepoint failed or timed out: the job keeps running at its
    /// parallelism; the change is retried after a backoff.
    fn savepoint_failed(&mut self, change: &ChangeStatus, error: &str) {
        let attempts = change.failed_attempts + 1;
        if change.reason == SavepointReason::Delete {
            self.event(
                true,
                "FinalSavepointFailed",
                format!("the final savepoint failed ({error}); deleting the job without it"),
            );
            self.act(Action::RemoveFinalizer, Requeue::OnChange);
            return;
        }
        let backoff = backoff(self.settings, attempts);
        let given_up = attempts >= self.settings.max_savepoint_attempts;
        let retry_at = self
            .input
            .now
            .saturating_add(signed(backoff))
            .unwrap_or(self.input.now);
        self.status.change = Some(ChangeStatus {
            failed_attempts: attempts,
            retry_at: (!given_up).then_some(Time(retry_at)),
            savepoint_request: None,
            ..change.clone()
        });
        let parallelism = self
            .deployed()
            .map_or(0, |deployed| deployed.spec.parallelism);
        let next = if given_up {
            format!("gave up after {attempts} attempts; change the spec to try again")
        } else {
            format!("retrying in {}s", backoff.as_secs())
        };
        let message = format!(
            "savepoint for {} failed (attempt {attempts}): {error}; the job keeps running at \
             parallelism {parallelism}; {next}",
            reason_name(change.reason),
        );
        let backoff = if given_up {
            self.settings.poll_interval
        } else {
            backoff
        };
        self.set_degraded(Some(("SavepointFailed", message.clone())));
        self.not_ready("ChangePending", message.clone());
        self.event(true, "SavepointFailed", message);
        self.enter(
            JobPhase::Running,
            "Running",
            format!("back to running at parallelism {parallelism}"),
        );
        // A job that stopped reading for the savepoint reads again only when it
        // restarts (from its latest checkpoint).
        let stopped = matches!(
            &self.input.runtime,
            RuntimeSeen::Answered(RuntimeReport {
                state: RuntimeState::Stopping | RuntimeState::Finished,
                ..
            })
        );
        let action = if stopped {
            Action::RestartPods
        } else {
            Action::Nothing
        };
        self.act(action, Requeue::After(backoff));
    }

    /// Asks for the savepoint of a new `savepointTriggerNonce`.
    fn start_manual_savepoint(&mut self) {
        let nonce = self.input.spec.savepoint_trigger_nonce.unwrap_or_default();
        self.status.manual_savepoint = Some(ManualSavepointStatus {
            nonce,
            requested_at: Time(self.input.now),
            request: None,
            periodic: false,
        });
        self.event(
            false,
            "SavepointRequested",
            format!("savepoint asked for by savepointTriggerNonce {nonce}"),
        );
        self.act(
            Action::TriggerSavepoint,
            Requeue::After(self.settings.step_interval),
        );
    }

    /// `savepointInterval`, when a savepoint is due by it: that long after the
    /// latest savepoint (of any kind) or periodic attempt, or after the job
    /// started running when there is neither.
    fn periodic_savepoint_due(&self) -> Option<Duration> {
        let interval = Duration::from(self.input.spec.savepoint_interval?);
        let since = [
            self.status
                .last_savepoint
                .as_ref()
                .map(|s| s.completed_at.0),
            self.status.periodic_savepoint_at.as_ref().map(|t| t.0),
            self.status.phase_started_at.as_ref().map(|t| t.0),
        ]
        .into_iter()
        .flatten()
        .max()?;
        (self.input.now.duration_since(since) >= signed(interval)).then_some(interval)
    }

    /// Asks for a savepoint due by `savepointInterval`, without stopping the job.
    fn start_periodic_savepoint(&mut self, interval: Duration) {
        self.status.periodic_savepoint_at = Some(Time(self.input.now));
        self.status.manual_savepoint = Some(ManualSavepointStatus {
            nonce: 0,
            requested_at: Time(self.input.now),
            request: None,
            periodic: true,
        });
        self.event(
            false,
            "SavepointRequested",
            format!(
                "periodic savepoint (savepointInterval {}s)",
                interval.as_secs()
            ),
        );
        self.act(
            Action::TriggerSavepoint,
            Requeue::After(self.settings.step_interval),
        );
    }

    /// Follows the manual savepoint under way.
    fn manual_savepoint_progress(&mut self) {
        let Some(manual) = self.status.manual_savepoint.clone() else {
            return;
        };
        let outcome = manual
            .request
            .and_then(|request| self.savepoint_outcome(request, false));
        let waited = self.input.now.duration_since(manual.requested_at.0);
        let failure = match outcome {
            Some(SavepointOutcome::Completed(path)) => {
                let reason = if manual.periodic {
                    SavepointReason::Periodic
                } else {
                    SavepointReason::Manual
                };
                self.record_savepoint(&path, reason);
                None
            }
            Some(SavepointOutcome::Failed(error)) => Some(error),
            _ if waited >= signed(self.savepoint_timeout()) => Some(format!(
                "not completed within {}s{}",
                self.savepoint_timeout().as_secs(),
                self.unreachable_detail()
            )),
            _ if manual.request.is_none() => {
                // Not accepted yet (or its id not recorded): asked again.
                self.act(
                    Action::TriggerSavepoint,
                    Requeue::After(self.settings.step_interval),
                );
                return;
            }
            _ => {
                self.requeue = Requeue::After(self.settings.step_interval);
                return;
            }
        };
        if let Some(error) = failure {
            let which = if manual.periodic {
                "periodic savepoint".to_owned()
            } else {
                format!("savepoint for savepointTriggerNonce {}", manual.nonce)
            };
            self.event(true, "SavepointFailed", format!("{which} failed: {error}"));
        }
        self.status.manual_savepoint = None;
        if !manual.periodic {
            self.status.handled_savepoint_nonce = Some(manual.nonce);
        }
        self.requeue = Requeue::After(Duration::ZERO);
    }

    /// Records a completed savepoint in `lastSavepoint` and the history.
    fn record_savepoint(&mut self, path: &str, reason: SavepointReason) {
        let info = SavepointInfo {
            path: path.to_owned(),
            completed_at: Time(self.input.now),
            reason,
        };
        if self.status.savepoint_history.last().map(|s| &s.path) != Some(&info.path) {
            self.status.savepoint_history.push(info.clone());
        }
        // No more than the job keeps (older ones are deleted by its runtime).
        let kept = self.settings.savepoint_history.min(
            self.input
                .spec
                .state
                .retained_savepoints
                .map_or(usize::MAX, |count| count.max(1) as usize),
        );
        let excess = self.status.savepoint_history.len().saturating_sub(kept);
        self.status.savepoint_history.drain(..excess);
        self.status.last_savepoint = Some(info);
        let mut note = format!("savepoint for {} at {path}", reason_name(reason));
        if reason == SavepointReason::Delete {
            // The status goes with the job: the Event says how to go on from it.
            note.push_str(&format!(
                "; a job created again as {} goes on from it with spec.restoreFrom.path: latest",
                self.input.name
            ));
        }
        self.event(false, "SavepointCompleted", note);
    }

    /// Whether a running job is healthy; sets Ready accordingly.
    fn watch_health(&mut self, deployed: &Target) {
        if let Some(problem) = &self.input.deployment.pod_problem {
            let message = format!("a pod of the job cannot start: {problem}");
            self.report_stuck("DeploymentStuck", message);
        } else if self.job_runs(deployed)
            && conditions::get(&self.status.conditions, ConditionType::Degraded).is_some_and(|c| {
                c.status == "True"
                    && (c.reason == "DeploymentStuck"
                        || c.reason == "ActionRefused"
                        || (c.reason == "RestoreFailed" && self.restore_wanted().is_none()))
            })
        {
            self.set_degraded(None);
        }
        if self.stopped_on_request() {
            // Stopped through its control API while it should run (a stop whose
            // savepoint then failed, or someone else's): its pods restart it from
            // its latest checkpoint. Asked again on each look until it runs.
            self.not_ready(
                "Restarting",
                "the job was stopped while it should run: its pods restart from its latest \
                 checkpoint"
                    .into(),
            );
            self.act(
                Action::RestartPods,
                Requeue::After(self.settings.step_interval),
            );
            return;
        }
        if !self.job_runs(deployed) {
            let message = match &self.input.runtime {
                RuntimeSeen::Answered(RuntimeReport {
                    state: RuntimeState::Failed(reason),
                    ..
                }) => format!("the job failed and restarts from its latest checkpoint: {reason}"),
                _ => self.waiting_for_pods(deployed),
            };
            self.not_ready("Restarting", message);
            self.requeue = Requeue::After(self.settings.step_interval);
        }
    }

    /// Whether the job answers that it stops or stopped after a stop request (not
    /// because its bounded input ended).
    fn stopped_on_request(&self) -> bool {
        matches!(
            &self.input.runtime,
            RuntimeSeen::Answered(RuntimeReport {
                state: RuntimeState::Stopping | RuntimeState::Finished,
                savepoints,
                ..
            }) if savepoints.iter().any(|s| s.stop)
        )
    }

    /// Counts restarts of the job from the pods' restart counts, and keeps when
    /// those within the crash-loop window happened.
    fn count_restarts(&mut self) {
        let now = self.input.now;
        let window = signed(self.settings.crash_loop_window);
        self.status
            .recent_restarts
            .retain(|at| now.duration_since(at.0) < window);
        let highest = self.input.deployment.max_restart_count;
        let seen = self.status.pod_restarts_seen;
        if highest > seen {
            let new = highest - seen;
            self.status.restarts += new;
            // Enough to tell a crash loop; never an unbounded list.
            let keep = self.settings.crash_loop_restarts.max(1) as usize;
            for _ in 0..new.min(keep as i32) {
                self.status.recent_restarts.push(Time(now));
            }
            let excess = self.status.recent_restarts.len().saturating_sub(keep);
            self.status.recent_restarts.drain(..excess);
            let note = format!(
                "a runtime pod failed; the job restarts from its latest checkpoint (restart {})",
                self.status.restarts
            );
            self.event(true, "JobRestarted", note);
        }
        self.status.pod_restarts_seen = highest;
    }

    /// Moves to Failed when a runtime container keeps crashing.
    fn fail_on_crash_loop(&mut self) -> bool {
        let Some(crash) = &self.input.deployment.crash_loop else {
            return false;
        };
        let recent = self.status.recent_restarts.len() as i32;
        if recent < self.settings.crash_loop_restarts {
            return false;
        }
        let minutes = self.settings.crash_loop_window.as_secs().div_ceil(60);
        if let Some(deployed) = self.deployed() {
            let why = format!(
                "the new spec crashed {recent} times within {minutes} minutes: {}",
                crash.reason
            );
            if self.roll_back(&deployed, &why) {
                return true;
            }
        }
        let note = format!(
            "the job crashed {recent} times within {minutes} minutes, each time restarted \
             from its latest checkpoint: {}. Fix the cause, then change the spec or bump \
             spec.restartNonce to start it again from its latest checkpoint",
            crash.reason
        );
        self.status.parallelism = Some(0);
        self.enter(JobPhase::Failed, "Failed", note.clone());
        self.not_ready("Failed", note);
        self.act(
            Action::TearDown,
            Requeue::After(self.settings.step_interval),
        );
        true
    }

    /// A completed checkpoint the job reports is recorded: its run's state is on
    /// storage from then on, and its pods are told to expect it (see
    /// [`Self::expect_state`]).
    fn note_checkpoints(&mut self) {
        if let RuntimeSeen::Answered(report) = &self.input.runtime
            && report.checkpointed
            && self.status.job_id.is_some()
        {
            self.status.checkpointed = true;
        }
    }

    /// Once the run has checkpointed, the pods of the deployment in place are told
    /// through its ConfigMap (read when a container starts, so none restarts for
    /// it): a pod restarting after that never starts without the job's state.
    /// When nothing else is to be done.
    fn expect_state(&mut self) {
        let seen = &self.input.deployment;
        if self.action == Action::Nothing
            && self.status.checkpointed
            && seen.stateful_set.is_some()
            && !seen.state_expected
        {
            self.action = Action::ExpectState;
        }
    }

    /// Nothing can be deployed until the spec is valid and every referenced
    /// Secret and key exists.
    fn wait_for_target(&mut self) {
        self.requeue = Requeue::OnChange;
    }

    // ---- Small helpers ----

    /// What the spec asks to run, once it can run: valid, its Secrets there.
    fn target(&self) -> Option<Target> {
        if self.input.spec_error.is_some() {
            return None;
        }
        self.input.credentials.as_ref().ok().map(|resolved| {
            Target::new(self.input.spec, &resolved.version, self.input.default_image)
        })
    }

    /// What the current deployment runs; `None` before the first one. One
    /// recorded in a form this operator cannot read is [`Target::unreadable`], at
    /// the parallelism that runs, so it is replaced through a savepoint.
    fn deployed(&self) -> Option<Target> {
        let recorded = self.status.last_reconciled_spec.as_deref()?;
        Some(Target::from_json(recorded).map_or_else(
            || self.unreadable_deployment(),
            |mut target| {
                // Recorded by an older operator: completed with what runs, so
                // that an upgrade of the operator alone redeploys nothing.
                let running = self.input.deployment.stateful_set.as_ref();
                let image = running.and_then(|set| set.image.as_deref());
                target.complete_older_record(
                    image.unwrap_or(self.input.default_image),
                    self.input
                        .credentials
                        .as_ref()
                        .ok()
                        .map(|c| c.version.as_str()),
                );
                target
            },
        ))
    }

    /// See [`Target::unreadable`].
    fn unreadable_deployment(&self) -> Target {
        let parallelism = self
            .status
            .parallelism
            .filter(|p| *p > 0)
            .unwrap_or(self.input.spec.parallelism);
        Target::unreadable(self.input.spec, parallelism)
    }

    /// `spec.restoreFrom` when the job is to restore it (see [`restore_wanted`]).
    fn restore_wanted(&self) -> Option<&'i RestoreFromSpec> {
        restore_wanted(self.input.spec, &self.status)
    }

    /// What a deployment starting from `restore_from` restores, for people.
    fn describe_restore(&self, restore_from: Option<&str>) -> String {
        match restore_from {
            Some(point) => format!("restoring from {}", self.restore_point_name(point)),
            None => "from the job's latest checkpoint, if any".to_owned(),
        }
    }

    /// The point `path` (a URL or `latest`) names, for people.
    fn restore_point_name(&self, path: &str) -> String {
        if path != LATEST {
            return format!("savepoint {path}");
        }
        let job = self
            .input
            .spec
            .restore_from
            .iter()
            .chain(&self.status.restored_from)
            .find(|restore| restore.is_latest())
            .and_then(|restore| restore.job_name.as_deref())
            .unwrap_or(self.input.name);
        format!("the newest savepoint or checkpoint of job {job}")
    }

    fn job_id_or_new(&self) -> String {
        self.status
            .job_id
            .clone()
            .unwrap_or_else(|| self.input.new_job_id.to_owned())
    }

    fn new_change(&self, reason: SavepointReason) -> ChangeStatus {
        ChangeStatus {
            reason,
            upgrade_mode: self.input.spec.upgrade_mode,
            step_started_at: Time(self.input.now),
            savepoint_request: None,
            restore_from: None,
            failed_attempts: 0,
            retry_at: None,
            target_revision: self.target().map(|target| target.revision()),
        }
    }

    /// How long a savepoint may take: the job's `savepointTimeout`, or the
    /// operator's.
    fn savepoint_timeout(&self) -> Duration {
        self.input
            .spec
            .savepoint_timeout
            .map_or(self.settings.savepoint_timeout, Duration::from)
    }

    fn wants_manual_savepoint(&self) -> bool {
        let nonce = self.input.spec.savepoint_trigger_nonce;
        nonce.is_some() && nonce != self.status.handled_savepoint_nonce
    }

    /// The outcome of savepoint request `id` (a stop or not), if the job knows it.
    fn savepoint_outcome(&self, id: i64, stop: bool) -> Option<SavepointOutcome> {
        let RuntimeSeen::Answered(report) = &self.input.runtime else {
            return None;
        };
        report
            .savepoints
            .iter()
            .find(|s| s.id == id && s.stop == stop)
            .map(|s| s.outcome.clone())
    }

    /// Whether every pod of `deployed` is ready and the job says it runs.
    fn job_runs(&self, deployed: &Target) -> bool {
        let ready = self
            .input
            .deployment
            .stateful_set
            .as_ref()
            .is_some_and(|set| set.ready_replicas >= deployed.spec.pods());
        ready
            && matches!(
                &self.input.runtime,
                RuntimeSeen::Answered(RuntimeReport {
                    state: RuntimeState::Running,
                    ..
                })
            )
    }

    /// What the control API said when it did not answer, for a timeout's message.
    fn unreachable_detail(&self) -> String {
        match &self.input.runtime {
            RuntimeSeen::Unreachable(error) => {
                format!("; the control API did not answer: {error}")
            }
            _ => String::new(),
        }
    }

    /// Clears Degraded when it reports a refused action: with no pods left, the
    /// action went through.
    fn clear_refusal(&mut self) {
        let refused = conditions::get(&self.status.conditions, ConditionType::Degraded)
            .is_some_and(|c| c.status == "True" && c.reason == "ActionRefused");
        if refused {
            self.set_degraded(None);
        }
    }

    /// Whether the current phase has lasted past the step deadline.
    fn step_overdue(&self) -> bool {
        self.status.phase_started_at.as_ref().is_some_and(|since| {
            self.input.now.duration_since(since.0) >= signed(self.settings.step_timeout)
        })
    }

    /// Reports a teardown past its step's deadline (`TeardownStuck`), naming what
    /// is left: pods, or the StatefulSet.
    fn report_teardown_if_overdue(&mut self) {
        if !self.step_overdue() {
            return;
        }
        let seen = &self.input.deployment;
        let waited = self.settings.step_timeout.as_secs();
        let name = self.input.name;
        let message = if seen.pods > 0 {
            format!(
                "{} pod(s) of the job still there {waited}s after their removal was asked \
                 for (a pod on a lost node stays until the node is removed or the pod is \
                 deleted with --force)",
                seen.pods
            )
        } else if seen.stateful_set_terminating {
            format!(
                "StatefulSet {name} still there {waited}s after its removal was asked for \
                 and its pods went (a finalizer on it keeps it: see its metadata.finalizers)"
            )
        } else {
            format!(
                "StatefulSet {name} still there {waited}s after its deletion was asked for \
                 (the deletion did not take effect: see the operator's log and the job's \
                 Events)"
            )
        };
        self.report_stuck("TeardownStuck", message);
    }

    /// Reports a step past its deadline: Degraded with `reason` and `message`, and
    /// a Warning Event the first time. The step goes on (pods may yet come, or go).
    fn report_stuck(&mut self, reason: &'static str, message: String) {
        let degraded = conditions::get(&self.status.conditions, ConditionType::Degraded);
        if degraded.is_some_and(|c| c.status == "True" && c.reason == "ActionRefused") {
            // The apiserver's refusal says more precisely why the step is stuck.
            return;
        }
        let reported = degraded.is_some_and(|c| c.status == "True" && c.reason == reason);
        if !reported {
            self.event(true, reason, message.clone());
        }
        self.set_degraded(Some((reason, message)));
    }

    fn waiting_for_pods(&self, deployed: &Target) -> String {
        let ready = self
            .input
            .deployment
            .stateful_set
            .as_ref()
            .map_or(0, |set| set.ready_replicas);
        let mut message = format!("{ready} of {} pod(s) ready", deployed.spec.pods());
        if let Some(problem) = &self.input.deployment.pod_problem {
            message.push_str(&format!("; {problem}"));
        }
        if let RuntimeSeen::Unreachable(error) = &self.input.runtime {
            message.push_str(&format!("; control API: {error}"));
        }
        message
    }

    /// Moves to `phase`, with an Event when the phase changes.
    fn enter(&mut self, phase: JobPhase, reason: &'static str, note: String) {
        if self.status.phase != Some(phase) {
            self.event(phase == JobPhase::Failed, reason, note);
            self.status.phase_started_at = Some(Time(self.input.now));
        }
        self.status.phase = Some(phase);
    }

    fn event(&mut self, warning: bool, reason: &'static str, note: String) {
        self.events.push(Event {
            warning,
            reason,
            note,
        });
    }

    fn act(&mut self, action: Action, requeue: Requeue) {
        self.action = action;
        self.requeue = requeue;
    }

    fn not_ready(&mut self, reason: &'static str, message: String) {
        self.not_ready = Some((reason, message));
    }

    fn set_degraded(&mut self, degraded: Option<(&'static str, String)>) {
        let (status, reason, message) = match degraded {
            Some((reason, message)) => (true, reason, message),
            None => (false, "AsExpected", String::new()),
        };
        let now = self.input.now;
        let generation = self.input.generation;
        conditions::set(
            &mut self.status.conditions,
            ConditionType::Degraded,
            status,
            reason,
            message,
            generation,
            now,
        );
    }

    /// The decision, with the conditions that follow from it.
    fn finish(mut self) -> Decision {
        let now = self.input.now;
        let generation = self.input.generation;
        self.status.observed_generation = Some(generation);
        self.status.selector = Some(pod_selector(self.input.name));
        if self.status.phase.is_some() && self.status.phase_started_at.is_none() {
            // A status from before phases were timed: the deadline starts now.
            self.status.phase_started_at = Some(Time(now));
        }
        let conditions = &mut self.status.conditions;
        match &self.input.spec_error {
            None => conditions::set(
                conditions,
                ConditionType::SpecValid,
                true,
                "Valid",
                "",
                generation,
                now,
            ),
            Some(error) => {
                let was_valid = conditions::get(conditions, ConditionType::SpecValid)
                    .is_none_or(|c| c.status == "True" || c.message != *error);
                conditions::set(
                    conditions,
                    ConditionType::SpecValid,
                    false,
                    "Invalid",
                    error.clone(),
                    generation,
                    now,
                );
                if was_valid {
                    self.events.push(Event {
                        warning: true,
                        reason: "SpecInvalid",
                        note: format!("nothing is deployed or changed until it is fixed: {error}"),
                    });
                }
                // Also while the finalizer goes on: the first status written
                // says why nothing is deployed.
                if matches!(self.action, Action::Nothing | Action::AddFinalizer)
                    && self.not_ready.is_none()
                {
                    self.not_ready = Some(("SpecInvalid", error.clone()));
                }
            }
        }
        match &self.input.credentials {
            Ok(_) => conditions::set(
                conditions,
                ConditionType::CredentialsResolved,
                true,
                "Resolved",
                "every referenced Secret and key exists",
                generation,
                now,
            ),
            Err(missing) => {
                let message = describe_missing(missing);
                let was_resolved = conditions::get(conditions, ConditionType::CredentialsResolved)
                    .is_none_or(|c| c.status == "True" || c.message != message);
                conditions::set(
                    conditions,
                    ConditionType::CredentialsResolved,
                    false,
                    "SecretMissing",
                    message.clone(),
                    generation,
                    now,
                );
                if was_resolved {
                    self.events.push(Event {
                        warning: true,
                        reason: "CredentialsMissing",
                        note: format!("nothing is deployed or changed until it exists: {message}"),
                    });
                }
                if matches!(self.action, Action::Nothing | Action::AddFinalizer)
                    && self.not_ready.is_none()
                {
                    self.not_ready = Some(("CredentialsMissing", message));
                }
            }
        }
        let phase = self.status.phase;
        let ready = phase == Some(JobPhase::Running) && self.not_ready.is_none();
        let (reason, message) = match (&self.not_ready, phase) {
            (Some((reason, message)), _) => (*reason, message.clone()),
            (None, Some(JobPhase::Running)) => (
                "Running",
                format!(
                    "running at parallelism {}",
                    self.status.parallelism.unwrap_or_default()
                ),
            ),
            (None, Some(phase)) => (phase_reason(phase), String::new()),
            (None, None) => ("Pending", String::new()),
        };
        let conditions = &mut self.status.conditions;
        conditions::set(
            conditions,
            ConditionType::Ready,
            ready,
            reason,
            message,
            generation,
            now,
        );
        // A change waiting for its retry is progress still to make.
        let given_up = self.status.change.as_ref().is_some_and(|c| {
            c.retry_at.is_none() && c.failed_attempts >= self.settings.max_savepoint_attempts
        });
        let change_pending = self.change_waiting
            || (phase == Some(JobPhase::Running) && self.status.change.is_some() && !given_up);
        let progressing = change_pending
            || matches!(
                phase,
                Some(
                    JobPhase::Deploying
                        | JobPhase::Savepointing
                        | JobPhase::Rescaling
                        | JobPhase::Restoring
                )
            );
        let reason = if change_pending {
            "ChangePending"
        } else if given_up && phase == Some(JobPhase::Running) {
            "ChangeGivenUp"
        } else {
            phase.map_or("Pending", phase_reason)
        };
        conditions::set(
            conditions,
            ConditionType::Progressing,
            progressing,
            reason,
            String::new(),
            generation,
            now,
        );
        if conditions::get(conditions, ConditionType::Degraded).is_none() {
            conditions::set(
                conditions,
                ConditionType::Degraded,
                false,
                "AsExpected",
                String::new(),
                generation,
                now,
            );
        }
        Decision {
            status: self.status,
            action: self.action,
            events: self.events,
            requeue: self.requeue,
        }
    }
}

/// The backoff before retry `attempt` (1, 2, ...): doubling, up to the maximum.
fn backoff(settings: &Settings, attempt: i32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).clamp(0, 16) as u32);
    settings
        .retry_backoff
        .saturating_mul(factor)
        .min(settings.max_retry_backoff)
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn phase_reason(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Deploying => "Deploying",
        JobPhase::Running => "Running",
        JobPhase::Savepointing => "Savepointing",
        JobPhase::Rescaling => "Rescaling",
        JobPhase::Restoring => "Restoring",
        JobPhase::Suspended => "Suspended",
        JobPhase::Failed => "Failed",
    }
}

fn reason_name(reason: SavepointReason) -> &'static str {
    match reason {
        SavepointReason::Rescale => "a rescale",
        SavepointReason::Upgrade => "an upgrade",
        SavepointReason::Manual => "savepointTriggerNonce",
        SavepointReason::Periodic => "savepointInterval",
        SavepointReason::Suspend => "suspending",
        SavepointReason::Delete => "deleting",
        SavepointReason::Restore => "spec.restoreFrom",
        SavepointReason::Rollback => "a rollback",
    }
}

fn describe_change(reason: SavepointReason, deployed: &Target, target: Option<&Target>) -> String {
    match (reason, target) {
        (SavepointReason::Rescale, Some(target)) => format!(
            "rescaling from parallelism {} to {}",
            deployed.spec.parallelism, target.spec.parallelism
        ),
        (SavepointReason::Suspend, _) => "suspending".to_owned(),
        _ if deployed.unreadable => "redeploying: the running deployment was recorded by \
             another operator version, in a form this one cannot read"
            .to_owned(),
        (_, Some(target)) if target.spec.image != deployed.spec.image => format!(
            "upgrading the runtime image from {} to {}",
            deployed
                .spec
                .image
                .as_deref()
                .unwrap_or("the previous operator's default"),
            target.spec.image.as_deref().unwrap_or_default()
        ),
        _ => "upgrading to the new spec".to_owned(),
    }
}

#[cfg(test)]
mod tests;
