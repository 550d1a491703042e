//! What the operator reports about a StreamJob.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a StreamJob, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// Where the job is in its life cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,

    /// When the job entered its phase: the deadline of the phase's step (pods
    /// ready, pods gone) counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<Time>,

    /// Parallelism the job runs at now (the scale subresource's replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,

    /// Label selector of the job's runtime pods, for the scale subresource and
    /// autoscalers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard Kubernetes conditions; see [`ConditionType`] for their types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Identifier of the job's current run. A new one is drawn when the job starts
    /// without state; it stays the same across restores, so checkpoints of one run
    /// live under one folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// Whether the job's run (`jobId`) has completed a checkpoint: its state is
    /// then on storage, and its pods fail rather than start without it (a
    /// redeploy that finds no checkpoint, on storage not shared or emptied).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpointed: bool,

    /// The `spec.restoreFrom` the job last restored from (or tried to): a
    /// `restoreFrom` that differs from it restores the job again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<crate::stream_job::RestoreFromSpec>,

    /// The latest completed savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint: Option<SavepointInfo>,

    /// Completed savepoints, newest last, up to a retention limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoint_history: Vec<SavepointInfo>,

    /// The spec last deployed, as JSON. The operator compares the current spec
    /// against it to decide whether an upgrade or rescale is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_spec: Option<String>,

    /// The spec of the last deployment that reached Running, as JSON (in the
    /// form of `lastReconciledSpec`): what a failed change rolls back to (see
    /// `spec.rollbackOnFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,

    /// The revision of a spec that was rolled back: not deployed again until the
    /// spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_revision: Option<String>,

    /// The rescale, upgrade, suspension or deletion under way: recorded before each
    /// of its steps, so an operator that restarts resumes it where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeStatus>,

    /// The savepoint asked for through `savepointTriggerNonce`, while it is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_savepoint: Option<ManualSavepointStatus>,

    /// When the latest periodic savepoint (`savepointInterval`) was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic_savepoint_at: Option<Time>,

    /// The `savepointTriggerNonce` whose savepoint was last taken (or tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_savepoint_nonce: Option<i64>,

    /// How often the job restarted from its latest checkpoint after a runtime pod
    /// failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: i32,

    /// The highest container restart count seen among the current runtime pods
    /// (each job restart restarts every pod once): how restarts are counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pod_restarts_seen: i32,

    /// When the job's recent restarts happened (those within the operator's
    /// crash-loop window): a job is failed only for restarts close together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_restarts: Vec<Time>,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// A change of the running job carried out as savepoint -> tear down -> redeploy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeStatus {
    /// Why the job is changed.
    pub reason: SavepointReason,
    /// The upgrade mode the change started under (a later edit of `upgradeMode`
    /// applies to the next change).
    pub upgrade_mode: crate::UpgradeMode,
    /// When the current step began (a savepoint's timeout counts from here).
    pub step_started_at: Time,
    /// Id of the stop-with-savepoint request made to the job's control API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_request: Option<i64>,
    /// Where the new deployment restores from: the savepoint this change took, or
    /// none (the latest checkpoint in `last-state` mode, nothing when `stateless`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Savepoint attempts that failed or timed out so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: i32,
    /// After a failed attempt: not before this time is the savepoint tried again.
    /// None after the last attempt failed: the change is given up until the spec
    /// changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// The revision of the target the change goes to (see the operator's
    /// `Target`): a given-up change is tried again only for another target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
}

/// A savepoint taken without stopping the job (asked for through
/// `savepointTriggerNonce`, or due by `savepointInterval`), not yet completed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManualSavepointStatus {
    /// The nonce it answers.
    pub nonce: i64,
    /// When it was asked for.
    pub requested_at: Time,
    /// Id of the request made to the job's control API, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
    /// Taken for `savepointInterval`, not for a `savepointTriggerNonce` (whose
    /// `nonce` is then 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub periodic: bool,
}

/// Where a job is in its life cycle.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobPhase {
    /// Runtime pods are being created and the job is starting.
    Deploying,
    /// The job runs and takes checkpoints.
    Running,
    /// A savepoint is being taken (stop-with-savepoint before an upgrade or rescale).
    Savepointing,
    /// The old runtime pods are being removed before redeploying.
    Rescaling,
    /// Runtime pods at the new parallelism or version restore state.
    Restoring,
    /// The job was stopped with a savepoint and has no pods.
    Suspended,
    /// The job cannot run; the `Ready` condition says why.
    Failed,
}

/// Types of the conditions in [`StreamJobStatus::conditions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The job runs at its desired parallelism and makes progress.
    Ready,
    /// A deployment, upgrade or rescale is under way.
    Progressing,
    /// Something failed and is being retried (e.g. a savepoint timed out); the job
    /// may still run on its previous deployment.
    Degraded,
    /// Every referenced Secret and key exists.
    CredentialsResolved,
    /// The spec can run: its SQL compiles and names only the job's Kafka
    /// clusters. While `False`, nothing is deployed or changed and the message
    /// says what to fix (for SQL: the construct, line and column).
    SpecValid,
}

impl ConditionType {
    /// The condition's `type` as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::CredentialsResolved => "CredentialsResolved",
            Self::SpecValid => "SpecValid",
        }
    }
}

/// A completed savepoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointInfo {
    /// Object-storage URL of the savepoint's folder (it holds a `_manifest`).
    pub path: String,
    /// When the savepoint completed.
    pub completed_at: Time,
    /// Why it was taken.
    pub reason: SavepointReason,
}

/// Why a savepoint was taken.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointReason {
    /// Before changing the job's parallelism.
    Rescale,
    /// Before deploying a changed spec (image, SQL, clusters, ...).
    Upgrade,
    /// Asked for through `savepointTriggerNonce`.
    Manual,
    /// Due by `savepointInterval`.
    Periodic,
    /// Before suspending the job.
    Suspend,
    /// Before deleting the job.
    Delete,
    /// Not a savepoint: the job is redeployed from `spec.restoreFrom`, without
    /// one.
    Restore,
    /// Not a savepoint: a failed change is rolled back to the last spec that
    /// ran, from the savepoint the change took.
    Rollback,
}
