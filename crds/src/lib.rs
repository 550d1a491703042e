//! The StreamJob API, group `strom.dev`, version `v1alpha1`.
//!
//! The Rust types here are the source of truth: the CRD YAML in the Helm chart is
//! generated from them (`cargo run -p strom-crds --bin crdgen`), and [`manifest`]
//! checks a manifest against the same schema and CEL rules the apiserver applies, so
//! `strom run` rejects what `kubectl apply` would, with the same messages.

pub mod crd;
pub mod kafka;
pub mod manifest;
pub mod pod_template;
pub mod state;
pub mod status;
pub mod stream_job;

pub use kafka::{
    AuthenticationType, CertAndKeySecretSource, CertSecretSource, KafkaAuthentication,
    KafkaCluster, KafkaTls, PasswordSecretSource, SaslCredentials, SecretKeyRef,
};
pub use pod_template::{PodTemplate, PodTemplateMetadata};
pub use state::{SecretRef, StateSpec, StateVolume};
pub use status::{
    ChangeStatus, ConditionType, JobPhase, ManualSavepointStatus, SavepointInfo, SavepointReason,
    StreamJobStatus,
};
pub use stream_job::{
    DesiredState, LATEST, PipelineSpec, RestoreFromSpec, StreamJob, StreamJobSpec, UpgradeMode,
    job_storage_url,
};
