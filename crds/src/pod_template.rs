//! Settings of a StreamJob's runtime pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, LocalObjectReference, PodSpec, ResourceRequirements, Toleration,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The runtime pods' template: a Kubernetes PodTemplateSpec (`metadata`, `spec`)
/// that the operator merges with what it sets itself, plus shorthands for what
/// most jobs set (`resources`, `env`, `labels`, ...). The operator owns the runtime
/// container's image, command and arguments, its ports and environment variables,
/// the volumes holding the manifest, the work folder and the Kafka credentials, and
/// the pods' host names; a template that would change those is refused
/// (condition `SpecValid=False` naming the field). Everything else is the user's:
/// affinity, tolerations, topology spread, extra volumes and mounts, sidecars and
/// init containers, security contexts, probes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Labels added to every runtime pod (the `strom.dev/*` labels are the operator's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every runtime pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// CPU and memory requests and limits of the runtime container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a runtime pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the runtime pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Service account the runtime pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Secrets used to pull the runtime image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Extra environment variables of the runtime container. `STROM_*` (but
    /// `STROM_LOG`, the log filter) and `TMPDIR` are the operator's, and `AWS_*` too
    /// when `state.storageSecret` is set: a manifest setting them is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Labels and annotations of the runtime pods, as in a PodTemplateSpec; merged
    /// with `labels` and `annotations` above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,

    /// The rest of the runtime pods, as a Kubernetes PodSpec merged with the
    /// operator's: the container named `runtime` is the job's (its image, command,
    /// arguments, ports 7000 and 8081, `STROM_*` environment and mounts under
    /// `/etc/strom` and `/var/lib/strom` are the operator's; the rest is merged, the
    /// template's security context over the operator's restricted defaults); any
    /// other container is a sidecar, kept as written (in a namespace enforcing Pod
    /// Security "restricted", it must drop its capabilities and privilege
    /// escalation itself); volumes are added to the operator's
    /// (names `job`, `control`, `state` and `kafka-*` are taken; one named `work`
    /// replaces the runtime's work folder, an `emptyDir`, e.g. with an `ephemeral`
    /// volume for RocksDB); `restartPolicy` can only be `Always`, and `hostname`
    /// and `subdomain` are the StatefulSet's. The job's NetworkPolicy opens only
    /// the control port to other pods: a sidecar's port needs a NetworkPolicy of
    /// the user's own. `containers` may be left out. A
    /// template that changes what the operator owns is reported in condition
    /// `SpecValid`, naming the field. Field reference: the Kubernetes PodSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_spec_schema")]
    pub spec: Option<PodSpec>,
}

/// Labels and annotations of the runtime pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    /// Labels added to every runtime pod (the `strom.dev/*` labels are the operator's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every runtime pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The Kubernetes PodSpec schema, so the apiserver checks its types at
/// `kubectl apply` and the operator can always read what it stored. Its
/// descriptions are left out: with them the CRD grows from about 60 KB to over
/// 500 KB, past what a client-side `kubectl apply` can store. `containers` is not
/// required: a template changing only scheduling has none.
fn pod_spec_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<PodSpec>().to_value();
    drop_descriptions(&mut schema);
    if let Some(object) = schema.as_object_mut() {
        object.remove("required");
        object.insert(
            "description".into(),
            "The rest of the runtime pods, as a Kubernetes PodSpec merged with the \
             operator's (see podTemplate)."
                .into(),
        );
    }
    Schema::try_from(schema).unwrap_or_else(|_| unreachable!("a PodSpec schema is an object"))
}

/// Removes every `description` text from a JSON schema (a property named
/// `description` is an object there, and is kept).
fn drop_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if object.get("description").is_some_and(Value::is_string) {
                object.remove("description");
            }
            object.values_mut().for_each(drop_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_descriptions),
        _ => {}
    }
}
