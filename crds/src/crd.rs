//! The StreamJob CustomResourceDefinition, generated from the Rust types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::StreamJob;

/// Where the generated CRD YAML is committed, relative to the workspace root.
pub const CRD_YAML_PATH: &str = "charts/strom-operator/crds/streamjobs.strom.dev.yaml";

/// The StreamJob CRD as the apiserver receives it.
pub fn stream_job_crd() -> CustomResourceDefinition {
    StreamJob::crd()
}

/// The CRD as the YAML document committed in the Helm chart.
pub fn stream_job_crd_yaml() -> String {
    let body = serde_yaml_ng::to_string(&stream_job_crd())
        .unwrap_or_else(|e| unreachable!("a CRD always serializes to YAML: {e}"));
    format!(
        "# Generated from crds/src by `cargo run -p strom-crds --bin crdgen`; do not edit.\n{body}"
    )
}
