//! The objects a job's deployment consists of, built from the job and the
//! deployment decided for it. Pure: snapshot-tested without an apiserver.
//!
//! Per job: a ConfigMap with the job's manifest (no secret values), a headless
//! Service through which the runtime pods find each other (timely's TCP mesh), a
//! Service for the control API of pod 0, and a StatefulSet of
//! `parallelism / slotsPerPod` pods. Secrets are mounted, never copied.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ProjectedVolumeSource, SeccompProfile, Secret,
    SecretKeySelector, SecretProjection, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use strom_crds::{StreamJob, StreamJobSpec};

use crate::credentials::{STORAGE_KEYS, STORAGE_OPTIONAL_KEY};
use crate::decide::Deployment;
use crate::labels::{COMPONENT_LABEL, JOB_LABEL};
use crate::pod_template;
use crate::target::Target;

/// Port of timely's TCP connections between the runtime pods.
pub const DATAFLOW_PORT: i32 = 7000;
/// Port of the control API (served by pod 0).
pub const CONTROL_PORT: i32 = 8081;
/// Annotation naming the target revision a StatefulSet was made for.
pub const REVISION_ANNOTATION: &str = "strom.dev/revision";
/// Where the job's manifest is mounted in the runtime container.
pub const MANIFEST_DIR: &str = "/etc/strom/job";
/// Under which folder each Kafka cluster's Secret keys are mounted, one folder per
/// cluster: `<dir>/<cluster>/<secret>/<key>`.
pub const SECRETS_DIR: &str = "/etc/strom/secrets";
/// Where the job's control Secret is mounted: the runtime reads the token from
/// `<dir>/token` at each request, so a token made again reaches running pods.
pub const CONTROL_TOKEN_DIR: &str = "/etc/strom/control";
/// The variable holding the control token, for runtime images from before the file.
pub const CONTROL_TOKEN_VARIABLE: &str = "STROM_CONTROL_TOKEN";
/// The variable naming the control token's file in the runtime container.
pub const CONTROL_TOKEN_FILE_VARIABLE: &str = "STROM_CONTROL_TOKEN_FILE";
/// The runtime's local working folder (RocksDB).
pub const WORK_DIR: &str = "/var/lib/strom";

/// The user and group runtime containers run as (the images' user `strom`).
pub const RUNTIME_USER: i64 = 65532;
/// The runtime container's name.
pub const CONTAINER: &str = "runtime";
/// The volume of the runtime's work folder ([`WORK_DIR`]): an `emptyDir` unless
/// the job's `podTemplate` has a volume of this name.
pub const WORK_VOLUME: &str = "work";
/// Pod annotation naming the container `kubectl logs` and `kubectl exec` pick.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Names of the objects of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The job's name (and its StatefulSet's).
    pub job: String,
    /// The job's namespace.
    pub namespace: String,
}

impl Names {
    /// The names of `job`'s objects.
    pub fn of(job: &StreamJob) -> Self {
        Self {
            job: job.metadata.name.clone().unwrap_or_default(),
            namespace: job.metadata.namespace.clone().unwrap_or_default(),
        }
    }

    /// The StatefulSet.
    pub fn stateful_set(&self) -> String {
        self.job.clone()
    }

    /// The headless Service through which pods find each other.
    pub fn peers_service(&self) -> String {
        format!("{}-peers", self.job)
    }

    /// The Service of the control API.
    pub fn api_service(&self) -> String {
        format!("{}-api", self.job)
    }

    /// The ConfigMap with the job's manifest.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.job)
    }

    /// The Secret with the job's control token (see [`CONTROL_TOKEN_KEY`]).
    pub fn control_secret(&self) -> String {
        format!("{}-control", self.job)
    }

    /// The NetworkPolicy that keeps the job's dataflow port to its own pods.
    pub fn network_policy(&self) -> String {
        format!("{}-dataflow", self.job)
    }

    /// The host:port of pod `index`'s dataflow port, by the StatefulSet's DNS names.
    pub fn peer(&self, index: i32) -> String {
        format!(
            "{}-{index}.{}.{}.svc:{DATAFLOW_PORT}",
            self.job,
            self.peers_service(),
            self.namespace
        )
    }

    /// The control API's base URL inside the cluster.
    pub fn control_url(&self) -> String {
        format!(
            "http://{}.{}.svc:{CONTROL_PORT}",
            self.api_service(),
            self.namespace
        )
    }
}

/// The key of the job's control Secret that holds the token its control API
/// requires of requests that change the job (stop, savepoints): made by the
/// operator, read by the pods (`STROM_CONTROL_TOKEN`) and the operator only.
pub const CONTROL_TOKEN_KEY: &str = "token";

/// The key of the job's ConfigMap that tells its pods to expect the job's state
/// (`"true"` once its run has checkpointed): `STROM_EXPECT_STATE` comes from it.
pub const EXPECT_STATE_KEY: &str = "expect-state";

/// Operator-wide settings the objects depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSettings {
    /// Runtime image of jobs that do not name one.
    pub default_image: String,
    /// Pull policy of the runtime image.
    pub image_pull_policy: String,
}

impl Default for ResourceSettings {
    fn default() -> Self {
        Self {
            default_image: format!("strom-runtime:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: "IfNotPresent".into(),
        }
    }
}

/// Every object of `deployment`, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct JobObjects {
    /// The job's manifest.
    pub config_map: ConfigMap,
    /// Peer discovery.
    pub peers_service: Service,
    /// The control API.
    pub api_service: Service,
    /// The runtime pods.
    pub stateful_set: StatefulSet,
    /// Keeps the dataflow port to the job's own pods.
    pub network_policy: NetworkPolicy,
}

/// The control Secret of `job`, holding `token`: owned by the job, so it goes
/// with it.
pub fn control_secret(job: &StreamJob, token: String) -> Secret {
    let names = Names::of(job);
    Secret {
        metadata: metadata(job, &names, names.control_secret()),
        string_data: Some(BTreeMap::from([(CONTROL_TOKEN_KEY.to_owned(), token)])),
        ..Secret::default()
    }
}

/// Where enforced (a CNI with NetworkPolicy support), only the job's own pods
/// reach its pods' ports, but for the control port: that serves `/metrics` to
/// anyone (Prometheus), and takes changes only with the job's control token.
/// Ports of the job's `podTemplate` (a sidecar's) stay closed too: a
/// NetworkPolicy of the user's own opens them (policies add up).
fn network_policy(job: &StreamJob, names: &Names) -> NetworkPolicy {
    let own_pods = LabelSelector {
        match_labels: Some(selector_labels(names)),
        match_expressions: None,
    };
    NetworkPolicy {
        metadata: metadata(job, names, names.network_policy()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(own_pods.clone()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(own_pods),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: None,
                },
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(CONTROL_PORT)),
                        protocol: Some("TCP".into()),
                        ..NetworkPolicyPort::default()
                    }]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Builds the objects of `deployment` of `job`.
pub fn build(job: &StreamJob, deployment: &Deployment, settings: &ResourceSettings) -> JobObjects {
    let names = Names::of(job);
    JobObjects {
        network_policy: network_policy(job, &names),
        config_map: config_map(job, &names, deployment),
        peers_service: peers_service(job, &names),
        api_service: api_service(job, &names),
        stateful_set: stateful_set(job, &names, deployment, settings),
    }
}

/// Labels every object of the job carries; the pods' selector.
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        (JOB_LABEL.to_owned(), names.job.clone()),
        (COMPONENT_LABEL.to_owned(), "runtime".to_owned()),
    ])
}

fn labels(names: &Names) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names);
    labels.insert("app.kubernetes.io/name".into(), "strom".into());
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "strom-operator".into(),
    );
    labels
}

fn metadata(job: &StreamJob, names: &Names, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names)),
        owner_references: job.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

fn config_map(job: &StreamJob, names: &Names, deployment: &Deployment) -> ConfigMap {
    let spec = &deployment.target.spec;
    let manifest = serde_json::json!({
        "apiVersion": "strom.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": names.job, "namespace": names.namespace},
        "spec": spec,
    });
    let yaml = serde_yaml_ng::to_string(&manifest)
        .unwrap_or_else(|e| unreachable!("a manifest always serializes: {e}"));
    ConfigMap {
        metadata: metadata(job, names, names.config_map()),
        data: Some(BTreeMap::from([
            ("job.yaml".to_owned(), yaml),
            (
                EXPECT_STATE_KEY.to_owned(),
                deployment.expect_state.to_string(),
            ),
        ])),
        ..ConfigMap::default()
    }
}

fn peers_service(job: &StreamJob, names: &Names) -> Service {
    Service {
        metadata: metadata(job, names, names.peers_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Every process must resolve every other before any is ready.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(names)),
            ports: Some(vec![port("dataflow", DATAFLOW_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn api_service(job: &StreamJob, names: &Names) -> Service {
    let mut selector = selector_labels(names);
    selector.insert(
        "statefulset.kubernetes.io/pod-name".into(),
        format!("{}-0", names.stateful_set()),
    );
    Service {
        metadata: metadata(job, names, names.api_service()),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![port("control", CONTROL_PORT)]),
            // Pod 0 answers even while a sidecar of its pod is not ready: the
            // operator judges the runtime's readiness itself.
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, optional: bool) -> EnvVar {
    secret_env_as(name, secret, name, optional)
}

/// The variable `name` from `key` of `secret`.
fn secret_env_as(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// One projected volume per Kafka cluster with Secret keys, mounted at
/// `SECRETS_DIR/<cluster>`, holding `<secret>/<key>` files.
fn kafka_secret_volumes(spec: &StreamJobSpec) -> Vec<(Volume, VolumeMount)> {
    spec.kafka_clusters
        .iter()
        .filter_map(|cluster| {
            let mut by_secret: BTreeMap<String, Vec<KeyToPath>> = BTreeMap::new();
            for key in cluster.secret_keys() {
                let items = by_secret.entry(key.secret_name.clone()).or_default();
                let path = format!("{}/{}", key.secret_name, key.key);
                if !items.iter().any(|item| item.path == path) {
                    items.push(KeyToPath {
                        key: key.key,
                        path,
                        mode: None,
                    });
                }
            }
            if by_secret.is_empty() {
                return None;
            }
            let name = format!("kafka-{}", cluster.name);
            let sources = by_secret
                .into_iter()
                .map(|(secret, items)| VolumeProjection {
                    secret: Some(SecretProjection {
                        name: secret,
                        items: Some(items),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                })
                .collect();
            let volume = Volume {
                name: name.clone(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(sources),
                    default_mode: Some(0o440),
                }),
                ..Volume::default()
            };
            let mount = VolumeMount {
                name,
                mount_path: format!("{SECRETS_DIR}/{}", cluster.name),
                read_only: Some(true),
                ..VolumeMount::default()
            };
            Some((volume, mount))
        })
        .collect()
}

fn stateful_set(
    job: &StreamJob,
    names: &Names,
    deployment: &Deployment,
    settings: &ResourceSettings,
) -> StatefulSet {
    let spec = &deployment.target.spec;
    let merged = pod_template::merge(
        spec.pod_template.as_ref(),
        runtime_pod(names, deployment, settings),
    );
    if !merged.refused.is_empty() {
        // Decide deploys no spec with a refused template; a deployment recorded by
        // an operator with other rules is deployed without the refused values.
        tracing::warn!(job = names.job, refused = ?merged.refused, "podTemplate values left out");
    }
    let mut meta = metadata(job, names, names.stateful_set());
    meta.annotations = Some(BTreeMap::from([(
        REVISION_ANNOTATION.to_owned(),
        deployment.target.revision(),
    )]));
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.pods()),
            service_name: Some(names.peers_service()),
            // Every process must be up before the dataflow starts.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(names)),
                match_expressions: None,
            },
            template: merged.pod,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// Why the job's `podTemplate` cannot be merged with the operator's pod, if it
/// cannot (see [`pod_template`]). What is refused depends on the spec only (the
/// names of the operator's volumes, mounts, ports and variables), not on the
/// job's name or deployment.
pub fn pod_template_error(spec: &StreamJobSpec) -> Option<String> {
    spec.pod_template.as_ref()?;
    let names = Names {
        job: "job".into(),
        namespace: String::new(),
    };
    let deployment = Deployment {
        target: Target::new(spec, "", ""),
        job_id: String::new(),
        restore_from: None,
        latest_of: None,
        expect_state: false,
    };
    let ours = runtime_pod(&names, &deployment, &ResourceSettings::default());
    let refused = pod_template::merge(spec.pod_template.as_ref(), ours).refused;
    (!refused.is_empty()).then(|| refused.join("; "))
}

/// The runtime pod as the operator builds it, before the job's `podTemplate` is
/// merged in: one container running `strom worker` with the job's manifest,
/// Secrets and work folder, passing Pod Security "restricted".
fn runtime_pod(
    names: &Names,
    deployment: &Deployment,
    settings: &ResourceSettings,
) -> PodTemplateSpec {
    let spec = &deployment.target.spec;
    let peers: Vec<String> = (0..spec.pods()).map(|i| names.peer(i)).collect();

    let mut env_vars = vec![
        env("STROM_MANIFEST", format!("{MANIFEST_DIR}/job.yaml")),
        env("STROM_PEERS", peers.join(",")),
        env("STROM_JOB_ID", deployment.job_id.clone()),
        env("STROM_SECRETS_DIR", SECRETS_DIR),
        env("STROM_WORK_DIR", WORK_DIR),
        env("TMPDIR", WORK_DIR),
        env("STROM_CONTROL_ADDRESS", format!("0.0.0.0:{CONTROL_PORT}")),
    ];
    if let Some(job) = &deployment.latest_of {
        env_vars.push(env("STROM_RESTORE_LATEST_OF", job.clone()));
    }
    if let Some(path) = &deployment.restore_from {
        env_vars.push(env("STROM_RESTORE_FROM", path.clone()));
    }
    env_vars.push(env(
        CONTROL_TOKEN_FILE_VARIABLE,
        format!("{CONTROL_TOKEN_DIR}/{CONTROL_TOKEN_KEY}"),
    ));
    // The token's value too, for runtime images from before the file.
    env_vars.push(secret_env_as(
        CONTROL_TOKEN_VARIABLE,
        &names.control_secret(),
        CONTROL_TOKEN_KEY,
        false,
    ));
    // From the ConfigMap, read at each container start: set to true once the run
    // has checkpointed without restarting any pod.
    env_vars.push(EnvVar {
        name: "STROM_EXPECT_STATE".into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: names.config_map(),
                key: EXPECT_STATE_KEY.into(),
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    if let Some(secret) = &spec.state.storage_secret {
        for key in STORAGE_KEYS {
            env_vars.push(secret_env(key, &secret.name, false));
        }
        env_vars.push(secret_env(STORAGE_OPTIONAL_KEY, &secret.name, true));
    }

    let mut volumes = vec![
        Volume {
            name: "job".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: WORK_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "control".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.control_secret()),
                items: Some(vec![KeyToPath {
                    key: CONTROL_TOKEN_KEY.into(),
                    path: CONTROL_TOKEN_KEY.into(),
                    mode: None,
                }]),
                // Readable by the runtime's group (fsGroup) only.
                default_mode: Some(0o440),
                optional: None,
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "job".into(),
            mount_path: MANIFEST_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: WORK_VOLUME.into(),
            mount_path: WORK_DIR.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "control".into(),
            mount_path: CONTROL_TOKEN_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    for (volume, mount) in kafka_secret_volumes(spec) {
        volumes.push(volume);
        mounts.push(mount);
    }
    if let Some(state) = &spec.state.volume {
        volumes.push(Volume {
            name: "state".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: state.claim_name.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "state".into(),
            mount_path: state.mount_path.clone(),
            ..VolumeMount::default()
        });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| settings.default_image.clone()),
        ),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        args: Some(vec!["worker".into()]),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("dataflow".into()),
                container_port: DATAFLOW_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("control".into()),
                container_port: CONTROL_PORT,
                ..ContainerPort::default()
            },
        ]),
        volume_mounts: Some(mounts),
        // The runtime's last error is what `kubectl describe` and the operator show.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        // Non-root, nothing written but the work folder (TMPDIR too).
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUNTIME_USER),
            run_as_group: Some(RUNTIME_USER),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    let mut annotations =
        BTreeMap::from([(REVISION_ANNOTATION.to_owned(), deployment.target.revision())]);
    // `kubectl logs` and `kubectl exec` pick the runtime when there are sidecars.
    annotations.insert(DEFAULT_CONTAINER_ANNOTATION.into(), CONTAINER.into());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(names)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            // The volumes (work folder, Secrets) belong to the runtime's
            // group; with the container's settings, the pods pass Pod
            // Security "restricted".
            security_context: Some(PodSecurityContext {
                fs_group: Some(RUNTIME_USER),
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;
    use strom_crds::manifest::{Placement, parse_stream_job, parse_stream_job_for};

    /// The first StreamJob of an example manifest (the `local-*` ones too), as
    /// the apiserver would hold it.
    fn example(file: &str) -> StreamJob {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut job = parse_stream_job_for(&text, Placement::Local).unwrap();
        job.metadata.namespace = Some("analytics".into());
        job.metadata.uid = Some("0b5e3c1e-0000-4000-8000-000000000001".into());
        job
    }

    fn deployment(job: &StreamJob, restore_from: Option<&str>) -> Deployment {
        Deployment {
            target: Target::new(&job.spec, "s3-creds=7", "strom-runtime:test"),
            job_id: "run-1".into(),
            restore_from: restore_from.map(str::to_owned),
            latest_of: None,
            // A redeploy from a savepoint: the run has checkpointed before.
            expect_state: restore_from.is_some(),
        }
    }

    fn snapshot(file: &str, restore_from: Option<&str>) -> String {
        let job = example(file);
        let objects = build(
            &job,
            &deployment(&job, restore_from),
            &ResourceSettings::default(),
        );
        [
            serde_yaml_ng::to_string(&objects.config_map).unwrap(),
            serde_yaml_ng::to_string(&objects.peers_service).unwrap(),
            serde_yaml_ng::to_string(&objects.api_service).unwrap(),
            serde_yaml_ng::to_string(&objects.stateful_set).unwrap(),
            serde_yaml_ng::to_string(&objects.network_policy).unwrap(),
        ]
        .join("---\n")
    }

    #[test]
    fn objects_of_every_example_match_their_snapshots() {
        for file in [
            "local-pipeline.yaml",
            "local-clicks.yaml",
            "pipeline-word-count.yaml",
            "multi-cluster.yaml",
            "kafka-sql.yaml",
        ] {
            let name = file.trim_end_matches(".yaml");
            insta::assert_snapshot!(name, snapshot(file, Some("s3://strom/jobs/sp-1")));
        }
    }

    #[test]
    fn the_mounted_manifest_reads_back_as_the_deployed_spec() {
        for file in ["multi-cluster.yaml", "pipeline-word-count.yaml"] {
            let job = example(file);
            let deployment = deployment(&job, None);
            let objects = build(&job, &deployment, &ResourceSettings::default());
            let text = &objects.config_map.data.unwrap()["job.yaml"];
            let mounted = parse_stream_job(text).unwrap();
            assert_eq!(mounted.spec, deployment.target.spec, "{file}");
            assert_eq!(mounted.metadata.name, job.metadata.name);
        }
    }

    #[test]
    fn no_object_holds_a_secret_value() {
        let text = snapshot("multi-cluster.yaml", None);
        for value in ["change-me-please", "BEGIN CERTIFICATE", "BEGIN PRIVATE KEY"] {
            assert!(!text.contains(value), "{value} found in:\n{text}");
        }
    }

    #[test]
    fn each_cluster_gets_its_own_folder_of_secret_keys() {
        let job = example("multi-cluster.yaml");
        let objects = build(&job, &deployment(&job, None), &ResourceSettings::default());
        let pod = objects.stateful_set.spec.unwrap().template.spec.unwrap();
        let mounts: Vec<String> = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();
        assert!(mounts.contains(&"/etc/strom/secrets/us".to_owned()));
        assert!(mounts.contains(&"/etc/strom/secrets/analytics".to_owned()));
        // The plaintext cluster has nothing to mount.
        assert!(!mounts.contains(&"/etc/strom/secrets/eu".to_owned()));
    }

    #[test]
    fn pods_are_parallelism_over_slots_and_peers_are_named_in_ordinal_order() {
        let job = example("pipeline-word-count.yaml");
        let objects = build(&job, &deployment(&job, None), &ResourceSettings::default());
        let spec = objects.stateful_set.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let env = spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let peers = env.iter().find(|e| e.name == "STROM_PEERS").unwrap();
        assert_eq!(
            peers.value.as_deref(),
            Some(
                "word-count-0.word-count-peers.analytics.svc:7000,\
                 word-count-1.word-count-peers.analytics.svc:7000"
            )
        );
        assert!(!env.iter().any(|e| e.name == "STROM_RESTORE_FROM"));
    }
}
