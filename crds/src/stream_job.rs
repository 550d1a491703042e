//! The `StreamJob` custom resource: what a user writes to run a streaming job.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kafka::{KafkaCluster, MAX_KAFKA_CLUSTERS};
use crate::pod_template::PodTemplate;
use crate::state::StateSpec;
use crate::status::StreamJobStatus;

/// Parallelism of a job whose manifest does not say.
pub const DEFAULT_PARALLELISM: i32 = 1;
/// Number of key groups of a job whose manifest does not say (Flink's default too).
pub const DEFAULT_MAX_PARALLELISM: i32 = 128;
/// The most key groups a job may have.
pub const MAX_MAX_PARALLELISM: i32 = 32768;

/// A streaming job: a SQL script or a Rust DataStream pipeline, the Kafka clusters it
/// reads and writes, and where its state lives. The operator runs it as
/// `parallelism / slotsPerPod` runtime pods and changes its parallelism through a
/// savepoint → rescale → restore cycle.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[allow(clippy::duplicated_attributes)] // each printcolumn(...) repeats the same keys
#[kube(
    group = "strom.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    shortname = "sj",
    category = "strom",
    namespaced,
    status = "StreamJobStatus",
    derive = "PartialEq",
    doc = "A streaming job run by the Strom operator.",
    validation = Rule::new(
        "self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    )
    .message(
        "metadata.name must be at most 52 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit: it names the job's StatefulSet, pods and Services"
    ),
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.parallelism",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Parallelism",
        type_ = "integer",
        description = "Parallelism the job runs at now",
        json_path = ".status.parallelism"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        description = "Parallelism asked for in the spec",
        json_path = ".spec.parallelism",
        priority = "1"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "Where the job is in its life cycle",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Whether the job runs and makes progress",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        description = "Why the job is or is not ready",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        description = "What the job waits for, or what went wrong",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "Last Savepoint",
        type_ = "date",
        description = "When the latest savepoint completed",
        json_path = ".status.lastSavepoint.completedAt"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.sql) != has(self.pipeline)")
        .message("exactly one of sql or pipeline must be set"),
    validation = Rule::new("self.parallelism <= self.maxParallelism")
        .message("parallelism must not exceed maxParallelism"),
    validation = Rule::new("self.slotsPerPod < 1 || self.parallelism % self.slotsPerPod == 0")
        .message("parallelism must be a multiple of slotsPerPod (pods = parallelism / slotsPerPod)"),
    validation = Rule::new("!has(self.kafkaClusters) || self.kafkaClusters.all(c, self.kafkaClusters.exists_one(d, d.name == c.name))")
        .message("kafkaClusters names must be unique"),
    validation = Rule::new("has(self.state) && has(self.state.storage)")
        .message(STORAGE_REQUIRED),
    validation = Rule::new("!has(self.state) || !has(self.state.storage) || !self.state.storage.startsWith('file:') || (has(self.state.volume) && self.state.storage.startsWith('file://' + self.state.volume.mountPath + '/') && !self.state.storage.contains('/..'))")
        .message(FILE_STORAGE_ON_VOLUME),
    validation = Rule::new("!has(self.podTemplate) || !has(self.podTemplate.env) || self.podTemplate.env.all(e, (!e.name.startsWith('STROM_') || e.name == 'STROM_LOG') && e.name != 'TMPDIR')")
        .message("podTemplate.env must not set STROM_* variables (but STROM_LOG) or TMPDIR: the operator sets them"),
    validation = Rule::new("!has(self.podTemplate) || !has(self.podTemplate.env) || !has(self.state) || !has(self.state.storageSecret) || self.podTemplate.env.all(e, !e.name.startsWith('AWS_'))")
        .message("podTemplate.env must not set AWS_* variables when state.storageSecret is set: the operator sets them from that Secret"),
)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSpec {
    /// Container image of the Strom runtime that runs the job. Defaults to the image
    /// the operator is configured with. A job with a `pipeline` needs an image that
    /// has that pipeline compiled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Number of parallel subtasks of every operator of the job. Independent of the
    /// partition counts of the topics it reads. Changing it (`kubectl scale
    /// streamjob/<name> --replicas=N` or a patch) rescales the job through a
    /// savepoint.
    #[serde(default = "default_parallelism")]
    #[x_kube(validation = Rule::new("self >= 1").message("parallelism must be at least 1"))]
    pub parallelism: i32,

    /// Number of key groups: the most parallelism the job's keyed state can ever be
    /// split into. Fixed for the life of the job, since state is partitioned by it.
    #[serde(default = "default_max_parallelism")]
    #[x_kube(
        validation = Rule::new("self >= 1 && self <= 32768")
            .message("maxParallelism must be between 1 and 32768"),
        validation = Rule::new("self == oldSelf")
            .message("maxParallelism is fixed for the life of a job: its state is partitioned into that many key groups")
    )]
    pub max_parallelism: i32,

    /// Worker threads (task slots) per runtime pod. The job runs as
    /// `parallelism / slotsPerPod` pods.
    #[serde(default = "default_slots_per_pod")]
    #[x_kube(validation = Rule::new("self >= 1").message("slotsPerPod must be at least 1"))]
    pub slots_per_pod: i32,

    /// The job as a SQL script: `CREATE TABLE ... WITH (connector = ...)` statements
    /// for its sources and sinks, then `INSERT INTO ... SELECT ...`. Exactly one of
    /// `sql` and `pipeline` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,

    /// The job as a Rust DataStream pipeline compiled into the runtime image. Exactly
    /// one of `sql` and `pipeline` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineSpec>,

    /// Kafka clusters the job reads from and writes to, each with its own address and
    /// credentials. Sources and sinks name the cluster they use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_KAFKA_CLUSTERS))]
    pub kafka_clusters: Vec<KafkaCluster>,

    /// Checkpoints and savepoints: how often, and where on object storage.
    #[serde(default)]
    pub state: StateSpec,

    /// How state is carried over when the job is upgraded or rescaled.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,

    /// Restore even when the savepoint or checkpoint holds state of operators the
    /// job no longer has (a query or pipeline changed so an operator was removed or
    /// renamed): that state is dropped. By default such a restore fails, naming
    /// the operators, so no state is lost unnoticed (Flink's
    /// `allowNonRestoredState`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_non_restored_state: bool,

    /// Whether the job should run. `suspended` stops it with a savepoint and removes
    /// its pods; `running` again restores it from that savepoint.
    #[serde(default)]
    pub desired_state: DesiredState,

    /// Change this number (e.g. increment it) to take a savepoint now, without
    /// stopping the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger_nonce: Option<i64>,

    /// How long a savepoint may take (`90s`, `10m`) before the attempt counts as
    /// failed; the operator's `--savepoint-timeout` (5 minutes) when not set. A
    /// stop drains the job's sources meanwhile. Changing it needs no redeploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')")
        .message("savepointTimeout must be a duration of at least 10s, such as 90s or 10m"))]
    pub savepoint_timeout: Option<kube::core::Duration>,

    /// Take a savepoint this often (`1h`, `30m`) while the job runs, as Flink's
    /// periodic savepoints: a restore point that outlives the retained
    /// checkpoints. Counted from the latest savepoint of any kind. At least 1m.
    /// Changing it needs no redeploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("savepointInterval must be a duration of at least 1m, such as 30m or 6h"))]
    pub savepoint_interval: Option<kube::core::Duration>,

    /// Roll a failed change back (Flink's
    /// `kubernetes.operator.deployment.rollback.enabled`): when the deployment of
    /// a changed spec does not reach Running within the operator's step deadline
    /// (`--step-timeout`, 5 minutes), or crash-loops, the last spec that ran is
    /// deployed again, restored from the savepoint taken for the change. The job
    /// then runs it, `Degraded` and not Ready (reason `RolledBack`), until the
    /// spec changes again (bump `restartNonce` to try the same spec again). Only
    /// changes that took a savepoint (`upgradeMode: savepoint`) roll back, and
    /// the step deadline becomes a hard one: a restore of large state must fit
    /// in it. Changing it needs no redeploy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback_on_failure: bool,

    /// Change this number to restart the job's pods (going through the upgrade
    /// cycle of `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,

    /// Start from this savepoint or checkpoint rather than from the job's own state
    /// (Flink's `initialSavepointPath` with `savepointRedeployNonce`): at the job's
    /// first deployment, and again each time `restoreFrom` changes (another
    /// `path`, `jobName` or `nonce`). A running job is first asked whether the
    /// point is there and one it can restore; only then are its pods replaced,
    /// without a savepoint (its own checkpoints stay on storage, under its
    /// `status.jobId`). A point that is not there leaves the job running as it is,
    /// Degraded, until it appears or `restoreFrom` changes. Removing `restoreFrom`
    /// changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFromSpec>,

    /// Settings of the runtime pods: resources, scheduling, labels, environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplate>,
}

impl StreamJobSpec {
    /// Number of runtime pods: `parallelism / slotsPerPod`, rounded up.
    pub fn pods(&self) -> i32 {
        let slots = self.slots_per_pod.max(1);
        (self.parallelism + slots - 1) / slots
    }
}

fn default_parallelism() -> i32 {
    DEFAULT_PARALLELISM
}

fn default_max_parallelism() -> i32 {
    DEFAULT_MAX_PARALLELISM
}

fn default_slots_per_pod() -> i32 {
    1
}

/// A DataStream pipeline compiled into the runtime image, chosen by name.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// Name under which the pipeline is registered in the runtime image.
    #[x_kube(validation = Rule::new("self != ''").message("pipeline name must not be empty"))]
    pub name: String,

    /// Arguments passed to the pipeline's entrypoint (no secrets: they end up in a
    /// ConfigMap).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

/// `restoreFrom.path` that names the newest savepoint or checkpoint of a job.
pub const LATEST: &str = "latest";

/// A savepoint or checkpoint a job starts from instead of its own state.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.jobName) || self.path == 'latest'")
        .message("restoreFrom.jobName goes only with path: latest"),
)]
pub struct RestoreFromSpec {
    /// The savepoint or retained checkpoint: its URL (`s3://bucket/jobs/orders/<jobId>/savepoints/sp-...`,
    /// as `status.lastSavepoint.path` and the job's Events name it), or `latest`:
    /// the newest savepoint or checkpoint of the job `jobName` under this job's
    /// `state.storage`, whichever deployment of it wrote it. A job deleted (with
    /// its final savepoint) and created again under the same name goes on from
    /// where it stopped with `path: latest`.
    #[x_kube(validation = Rule::new("self == 'latest' || self.startsWith('s3://') || self.startsWith('file:///')")
        .message("restoreFrom.path must be 'latest' or the URL of a savepoint or checkpoint (s3://... or file:///...)"))]
    pub path: String,

    /// With `path: latest`: the job whose savepoints and checkpoints are searched
    /// (under this job's `state.storage`). This job's own name when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("restoreFrom.jobName must be a job's name: lowercase letters, digits and '-'"))]
    pub job_name: Option<String>,

    /// Change this number (e.g. increment it) to restore from the same `path`
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<i64>,
}

impl RestoreFromSpec {
    /// Whether it names the newest point of a job rather than a URL.
    pub fn is_latest(&self) -> bool {
        self.path == LATEST
    }
}

/// The folder of job `job`'s state under `storage` (a job's `state.storage`):
/// each of its deployments keeps its checkpoints and savepoints in a folder of
/// its own under it.
pub fn job_storage_url(storage: &str, job: &str) -> String {
    format!("{}/{job}", storage.trim_end_matches('/'))
}

/// Why a job on Kubernetes needs `state.storage`: the message of its CEL rule.
pub const STORAGE_REQUIRED: &str = "state.storage is required on Kubernetes: an object-storage URL \
     (s3://bucket/prefix) or file:// on state.volume, so that checkpoints outlive the pods";
/// Why `file://` storage must be on `state.volume` on Kubernetes: the message of its
/// CEL rule.
pub const FILE_STORAGE_ON_VOLUME: &str = "file:// storage must be a folder on state.volume \
     (file://<mountPath>/...), a volume every pod mounts: a pod's own disk is lost when the \
     pod is replaced, and with it the job's state";

/// How state is carried over when the job is upgraded or rescaled.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Stop with a savepoint, then restore from it. Never redeploys without a
    /// completed savepoint. The safe default.
    #[default]
    Savepoint,
    /// Restore from the latest completed checkpoint; works when the job cannot take
    /// a savepoint, at the cost of reprocessing since that checkpoint.
    LastState,
    /// Start with empty state.
    Stateless,
}

impl UpgradeMode {
    /// The mode as a manifest spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Savepoint => "savepoint",
            Self::LastState => "last-state",
            Self::Stateless => "stateless",
        }
    }
}

/// Whether the job should run.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredState {
    /// The job runs.
    #[default]
    Running,
    /// The job is stopped with a savepoint and has no pods.
    Suspended,
}
