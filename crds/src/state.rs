//! Where and how often a StreamJob's state is checkpointed.

use std::collections::BTreeMap;

use kube::KubeSchema;
use kube::core::Duration;
use serde::{Deserialize, Serialize};

/// Checkpoint interval of a job whose manifest does not say.
pub const DEFAULT_CHECKPOINT_INTERVAL: &str = "10s";
/// Completed checkpoints kept by a job whose manifest does not say.
pub const DEFAULT_RETAINED_CHECKPOINTS: i32 = 3;

/// Checkpoints and savepoints of a job.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateSpec {
    /// How often the job takes a checkpoint, as a duration (`500ms`, `10s`, `1m`).
    /// At least 100ms.
    #[serde(default = "default_checkpoint_interval")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('100ms')")
        .message("checkpointInterval must be a duration of at least 100ms, such as 10s or 1m"))]
    pub checkpoint_interval: Duration,

    /// Object-storage URL under which checkpoints and savepoints are written,
    /// one folder per job: `s3://bucket/prefix`, or `file:///path`. Every runtime
    /// pod must reach the same storage, and it must outlive them: required on
    /// Kubernetes, where `file://` must be a folder on `volume`. Defaults to a
    /// folder on local disk in local runs (`strom run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^(s3|file)://.+')")
        .message("storage must be an object-storage URL: s3://bucket/prefix or file:///path"))]
    pub storage: Option<String>,

    /// A PersistentVolumeClaim every runtime pod mounts, for `file://` storage on
    /// it (an NFS or CephFS share: ReadWriteMany; ReadWriteOnce only where all pods
    /// run on one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<StateVolume>,

    /// Secret with the object-storage credentials, passed to the runtime as
    /// environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
    /// `AWS_SESSION_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_secret: Option<SecretRef>,

    /// Non-secret object-storage options, e.g. `endpoint`, `region`,
    /// `allow_http` (the option names of the `object_store` crate).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(
        "!self.exists(k, k.lowerAscii() in ['aws_access_key_id', 'aws_secret_access_key', 'aws_session_token', 'access_key_id', 'secret_access_key', 'session_token', 'token'])")
        .message("storageOptions may not hold credentials: put them in the Secret named by storageSecret"))]
    pub storage_options: BTreeMap<String, String>,

    /// Completed checkpoints kept; older ones are deleted along with every file no
    /// kept checkpoint needs.
    #[serde(default = "default_retained_checkpoints")]
    #[x_kube(validation = Rule::new("self >= 1").message("retainedCheckpoints must be at least 1"))]
    pub retained_checkpoints: i32,

    /// Savepoints kept per deployment of the job (the folder of its
    /// `status.jobId`, where its manual, periodic, rescale and suspend savepoints
    /// go): when one completes, the oldest beyond this many are deleted. Never
    /// the one the deployment restored from, nor those of earlier deployments
    /// (a deleted job's final savepoint, the point a `restoreFrom` replaced).
    /// All are kept when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000")
        .message("retainedSavepoints must be between 1 and 1000"))]
    pub retained_savepoints: Option<i32>,

    /// Savepoints of the deployment older than this (`24h`, `168h`) are deleted
    /// when another completes, as `retainedSavepoints` says: the newest is kept
    /// whatever its age. None are deleted for age when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("savepointMaxAge must be a duration of at least 1m, such as 24h"))]
    pub savepoint_max_age: Option<Duration>,
}

impl Default for StateSpec {
    fn default() -> Self {
        Self {
            checkpoint_interval: default_checkpoint_interval(),
            storage: None,
            volume: None,
            storage_secret: None,
            storage_options: BTreeMap::new(),
            retained_checkpoints: DEFAULT_RETAINED_CHECKPOINTS,
            retained_savepoints: None,
            savepoint_max_age: None,
        }
    }
}

fn default_checkpoint_interval() -> Duration {
    DEFAULT_CHECKPOINT_INTERVAL
        .parse()
        .unwrap_or_else(|_| unreachable!("the default interval is a valid duration"))
}

fn default_retained_checkpoints() -> i32 {
    DEFAULT_RETAINED_CHECKPOINTS
}

/// A PersistentVolumeClaim mounted into every runtime pod for `file://` state.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateVolume {
    /// Name of the PersistentVolumeClaim, in the StreamJob's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Where the pods mount it; `storage` is then `file://<mountPath>/<folder>`.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^/.*[^/]$') && !self.contains('/..') && !(self + '/').startsWith('/etc/strom/') && !'/etc/strom/'.startsWith(self + '/') && !(self + '/').startsWith('/var/lib/strom/') && !'/var/lib/strom/'.startsWith(self + '/')")
        .message("state.volume.mountPath must be an absolute path without a trailing slash or '..', neither in nor above /etc/strom and /var/lib/strom"))]
    pub mount_path: String,
}

/// A Secret in the StreamJob's namespace, referenced by name.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
}
