//! The observer: reads what a decision needs (the job's Secrets, StatefulSet, pods
//! and control API) and changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ListParams};
use strom_crds::{StreamJob, job_storage_url};

use crate::Error;
use crate::control_api::ControlClient;
use crate::credentials::{self, MissingCredential, ResolvedCredentials, SecretSeen};
use crate::decide::{
    CrashLoop, DeploymentSeen, PodProblem, PodsToken, RestoreCheck, RuntimeSeen, StatefulSetSeen,
    restore_wanted,
};
use crate::labels::pod_selector;
use crate::resources::{
    CONTAINER, CONTROL_PORT, CONTROL_TOKEN_FILE_VARIABLE, CONTROL_TOKEN_KEY,
    CONTROL_TOKEN_VARIABLE, EXPECT_STATE_KEY, Names, REVISION_ANNOTATION,
};

/// What was seen of one job.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The referenced Secrets.
    pub credentials: Result<ResolvedCredentials, Vec<MissingCredential>>,
    /// Its StatefulSet and pods.
    pub deployment: DeploymentSeen,
    /// Its control API.
    pub runtime: RuntimeSeen,
    /// Where its control API is reached, if it can be now.
    pub control_url: Option<String>,
    /// What its control API said of the point `spec.restoreFrom` names.
    pub restore_check: RestoreCheck,
}

/// How the operator reaches a job's control API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAccess {
    /// Through the API Service's cluster DNS name (the operator runs in the cluster).
    ServiceDns,
    /// At pod 0's IP address (an operator on a node, or anywhere pod IPs route;
    /// needs neither cluster DNS nor kube-proxy).
    PodIp,
    /// Through this base URL for every job (a port-forward).
    Fixed(String),
}

impl ControlAccess {
    /// The control API's base URL for the job named by `names`, whose pod 0 has
    /// `pod_ip`; `None` when pod 0 has no IP yet and that is how it is reached.
    pub fn base_url(&self, names: &Names, pod_ip: Option<&str>) -> Option<String> {
        match self {
            Self::ServiceDns => Some(names.control_url()),
            Self::PodIp => pod_ip.map(|ip| format!("http://{ip}:{CONTROL_PORT}")),
            Self::Fixed(url) => Some(url.clone()),
        }
    }
}

/// Reads everything about `job` that a decision needs.
pub async fn observe(
    client: &Client,
    job: &StreamJob,
    control: &ControlClient,
    access: &ControlAccess,
) -> Result<Observed, Error> {
    let names = Names::of(job);
    let credentials = observe_credentials(client, job, &names).await?;
    let (deployment, first_pod_ip) = observe_deployment(client, &names).await?;
    let control_url = access.base_url(&names, first_pod_ip.as_deref());
    let runtime = match (&deployment.stateful_set, &control_url) {
        (Some(set), Some(base_url)) if set.ready_replicas > 0 => {
            match control.report(base_url).await {
                Ok(report) => RuntimeSeen::Answered(report),
                Err(error) => RuntimeSeen::Unreachable(error),
            }
        }
        _ => RuntimeSeen::NotAsked,
    };
    let restore_check = match (&runtime, &control_url) {
        (RuntimeSeen::Answered(_), Some(base_url)) => {
            check_restore_point(client, job, &names, control, base_url).await?
        }
        _ => RestoreCheck::NotAsked,
    };
    Ok(Observed {
        credentials,
        deployment,
        runtime,
        control_url,
        restore_check,
    })
}

/// Asks the running job whether it can restore the point `spec.restoreFrom`
/// names, when the job is to restore it.
async fn check_restore_point(
    client: &Client,
    job: &StreamJob,
    names: &Names,
    control: &ControlClient,
    base_url: &str,
) -> Result<RestoreCheck, Error> {
    let default_status = Default::default();
    let status = job.status.as_ref().unwrap_or(&default_status);
    let Some(restore) = restore_wanted(&job.spec, status) else {
        return Ok(RestoreCheck::NotAsked);
    };
    let folder;
    let query = if restore.is_latest() {
        let Some(storage) = &job.spec.state.storage else {
            return Ok(RestoreCheck::Failed(
                "restoreFrom.path latest looks under state.storage, which is not set".into(),
            ));
        };
        let of = restore.job_name.as_deref().unwrap_or(&names.job);
        folder = job_storage_url(storage, of);
        ("latestOf", folder.as_str())
    } else {
        ("path", restore.path.as_str())
    };
    let token = control_token(client, names).await?;
    Ok(control
        .check_restore_point(base_url, query, token.as_deref())
        .await)
}

/// The job's control token, if its Secret is there (pods deployed by an older
/// operator have none, and need none).
pub async fn control_token(client: &Client, names: &Names) -> Result<Option<String>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let secret = api
        .get_opt(&names.control_secret())
        .await
        .map_err(Error::kubernetes(format!(
            "reading Secret {}",
            names.control_secret()
        )))?;
    Ok(secret
        .and_then(|secret| secret.data?.remove(CONTROL_TOKEN_KEY))
        .and_then(|token| String::from_utf8(token.0).ok()))
}

async fn observe_credentials(
    client: &Client,
    job: &StreamJob,
    names: &Names,
) -> Result<Result<ResolvedCredentials, Vec<MissingCredential>>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let mut seen = BTreeMap::new();
    for name in credentials::referenced_secrets(&job.spec) {
        let secret = api
            .get_opt(&name)
            .await
            .map_err(Error::kubernetes(format!("reading Secret {name}")))?;
        if let Some(secret) = secret {
            // Only the key names and digests of the values are kept.
            let data = secret.data.iter().flatten();
            let data = data.map(|(key, value)| (key, value.0.as_slice()));
            let string_data = secret.string_data.iter().flatten();
            let string_data = string_data.map(|(key, value)| (key, value.as_bytes()));
            seen.insert(name, SecretSeen::of(data.chain(string_data)));
        }
    }
    Ok(credentials::resolve(&job.spec, &seen))
}

/// The job's StatefulSet and pods, and the IP of its pod 0.
async fn observe_deployment(
    client: &Client,
    names: &Names,
) -> Result<(DeploymentSeen, Option<String>), Error> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &names.namespace);
    let set = sets
        .get_opt(&names.stateful_set())
        .await
        .map_err(Error::kubernetes(format!(
            "reading StatefulSet {}",
            names.stateful_set()
        )))?;
    let stateful_set_terminating = set
        .as_ref()
        .is_some_and(|set| set.metadata.deletion_timestamp.is_some());
    let set = set.filter(|set| set.metadata.deletion_timestamp.is_none());
    let set_created = set
        .as_ref()
        .and_then(|set| set.metadata.creation_timestamp.clone());
    let stateful_set = set.map(|set| StatefulSetSeen {
        revision: set
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION).cloned()),
        replicas: set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        // Counted from the pods below.
        ready_replicas: 0,
        image: runtime_container(&set).and_then(|c| c.image.clone()),
        token: pods_token(&set),
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    let list = pods
        .list(&ListParams::default().labels(&pod_selector(&names.job)))
        .await
        .map_err(Error::kubernetes(format!(
            "listing the pods of {}",
            names.job
        )))?;
    let state_expected = match &stateful_set {
        Some(_) => {
            let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &names.namespace);
            let map = maps
                .get_opt(&names.config_map())
                .await
                .map_err(Error::kubernetes(format!(
                    "reading ConfigMap {}",
                    names.config_map()
                )))?;
            map.and_then(|map| map.data?.remove(EXPECT_STATE_KEY))
                .is_some_and(|value| value == "true")
        }
        None => false,
    };
    // Ready is the runtime container's readiness, not the pod's: a sidecar of
    // the pod template that is not ready does not keep the job from running.
    let stateful_set = stateful_set.map(|set| StatefulSetSeen {
        ready_replicas: list.items.iter().filter(|pod| runtime_ready(pod)).count() as i32,
        ..set
    });
    let mut seen = DeploymentSeen {
        stateful_set,
        stateful_set_terminating,
        pods: list.items.len() as i32,
        state_expected,
        ..DeploymentSeen::default()
    };
    let first_pod = format!("{}-0", names.stateful_set());
    let first_pod_ip = list
        .items
        .iter()
        .find(|pod| pod.metadata.name.as_deref() == Some(first_pod.as_str()))
        .and_then(|pod| pod.status.as_ref()?.pod_ip.clone());
    seen.pod_problem = list.items.iter().find_map(pod_problem);
    let missing_pods = seen
        .stateful_set
        .as_ref()
        .is_some_and(|set| (list.items.len() as i32) < set.replicas);
    if seen.pod_problem.is_none() && missing_pods {
        // Pods the StatefulSet could not create (an admission webhook or policy,
        // a quota): only its Events say why.
        let events: Api<Event> = Api::namespaced(client.clone(), &names.namespace);
        let fields = format!(
            "involvedObject.kind=StatefulSet,involvedObject.name={},reason=FailedCreate",
            names.stateful_set()
        );
        // Only recent ones: an Event lives an hour, its cause may be long gone.
        let recent = Time(Timestamp::now() - SignedDuration::from_mins(5));
        let since = match set_created {
            Some(created) if created.0 > recent.0 => created,
            _ => recent,
        };
        match events.list(&ListParams::default().fields(&fields)).await {
            Ok(found) => {
                seen.pod_problem = failed_create(&found.items, Some(&since), &names.stateful_set());
            }
            // Only an explanation: never a reason to stop looking after the job.
            Err(error) => {
                tracing::warn!(%error, job = names.job, "cannot list the StatefulSet's Events")
            }
        }
    }
    for pod in &list.items {
        let statuses = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter(|c| c.name == CONTAINER);
        for container in statuses {
            seen.max_restart_count = seen.max_restart_count.max(container.restart_count);
            let crash_looping = container
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
            if crash_looping {
                let last = container
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref());
                let reason = match last {
                    Some(ended) => format!(
                        "exit code {}: {}",
                        ended.exit_code,
                        ended
                            .message
                            .as_deref()
                            .or(ended.reason.as_deref())
                            .unwrap_or("no message")
                            .trim()
                    ),
                    None => "no termination message".to_owned(),
                };
                let crash = CrashLoop {
                    restarts: container.restart_count,
                    reason,
                };
                if seen
                    .crash_loop
                    .as_ref()
                    .is_none_or(|c| c.restarts < crash.restarts)
                {
                    seen.crash_loop = Some(crash);
                }
            }
        }
    }
    Ok((seen, first_pod_ip))
}

/// Whether `pod` is not going away and its runtime container is ready. A pod
/// whose every container says ready but whose `Ready` condition is False has
/// stale statuses (its node stopped reporting): not ready.
fn runtime_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let containers = status.container_statuses.iter().flatten();
    let runtime_ready = containers.clone().any(|c| c.name == CONTAINER && c.ready);
    let all_ready = containers.clone().all(|c| c.ready);
    let pod_not_ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "False");
    pod.metadata.deletion_timestamp.is_none() && runtime_ready && !(all_ready && pod_not_ready)
}

/// Where the pods of `set` take the control token from, by their variables.
fn pods_token(set: &StatefulSet) -> PodsToken {
    let env = runtime_container(set).and_then(|c| c.env.as_ref());
    let has = |name: &str| env.is_some_and(|env| env.iter().any(|e| e.name == name));
    if has(CONTROL_TOKEN_FILE_VARIABLE) {
        PodsToken::File
    } else if has(CONTROL_TOKEN_VARIABLE) {
        PodsToken::Environment
    } else {
        PodsToken::Unguarded
    }
}

/// The runtime container of `set`'s pod template.
fn runtime_container(set: &StatefulSet) -> Option<&Container> {
    let pod = set.spec.as_ref()?.template.spec.as_ref()?;
    pod.containers.iter().find(|c| c.name == CONTAINER)
}

/// Container waiting reasons that mean a pod will not start by itself soon
/// (`CrashLoopBackOff` is followed separately, by its restarts).
const STUCK_WAITING_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Why `pod` cannot start, if it cannot: a container waiting for a reason of
/// [`STUCK_WAITING_REASONS`], or no node to run it on.
pub fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    let name = format!("pod {}", pod.metadata.name.as_deref().unwrap_or("?"));
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    // An init container of the pod template that keeps failing keeps the
    // runtime from starting (one failing after the runtime started does not).
    let runtime_started = status
        .container_statuses
        .iter()
        .flatten()
        .any(|c| c.name == CONTAINER && c.state.as_ref().is_some_and(|s| s.running.is_some()));
    let init = status.init_container_statuses.iter().flatten();
    let failing_init = init.filter(|_| !runtime_started).find_map(|container| {
        let waiting = container.state.as_ref()?.waiting.as_ref()?;
        (waiting.reason.as_deref() == Some("CrashLoopBackOff")).then(|| PodProblem {
            object: name.clone(),
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "init container {} keeps failing: {}",
                container.name,
                waiting.message.as_deref().unwrap_or("see its log")
            ),
        })
    });
    if failing_init.is_some() {
        return failing_init;
    }
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if STUCK_WAITING_REASONS.contains(&reason) {
            return Some(PodProblem {
                object: name,
                reason: reason.to_owned(),
                message: waiting.message.clone().unwrap_or_default(),
            });
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| PodProblem {
            object: name,
            reason: "Unschedulable".to_owned(),
            message: c.message.clone().unwrap_or_default(),
        })
}

/// The newest `FailedCreate` Event of the StatefulSet `set` at or after `since`
/// (when this StatefulSet was created, or a few minutes ago: older ones are about
/// another StatefulSet of the same name, or a cause long gone).
pub fn failed_create(events: &[Event], since: Option<&Time>, set: &str) -> Option<PodProblem> {
    let when = |event: &Event| {
        event
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
    };
    events
        .iter()
        .filter(|event| event.reason.as_deref() == Some("FailedCreate"))
        .filter(|event| match (since, when(event)) {
            (Some(created), Some(at)) => at >= created.0,
            _ => true,
        })
        .max_by_key(|event| when(event))
        .map(|event| PodProblem {
            object: format!("StatefulSet {set}"),
            reason: "FailedCreate".to_owned(),
            message: event.message.clone().unwrap_or_default(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "clicks-0"},
            "status": status,
        }))
        .unwrap()
    }

    /// A pod whose runtime container waits for `reason`, with `message`.
    fn waiting(reason: &str, message: &str) -> Pod {
        pod(serde_json::json!({
            "containerStatuses": [{
                "name": "strom", "image": "strom", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}
            }]
        }))
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_a_problem() {
        let problem = pod_problem(&waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"strom:typo\"",
        ))
        .unwrap();
        assert_eq!(problem.reason, "ImagePullBackOff");
        assert_eq!(
            problem.to_string(),
            "pod clicks-0: ImagePullBackOff: Back-off pulling image \"strom:typo\""
        );
    }

    #[test]
    fn a_missing_secret_key_and_an_unschedulable_pod_are_problems() {
        let config = pod_problem(&waiting(
            "CreateContainerConfigError",
            "couldn't find key password in Secret x/b",
        ))
        .unwrap();
        assert_eq!(config.reason, "CreateContainerConfigError");
        let unschedulable = pod_problem(&pod(serde_json::json!({
            "conditions": [{"type": "PodScheduled", "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient cpu."}]
        })))
        .unwrap();
        assert_eq!(unschedulable.reason, "Unschedulable");
        assert!(unschedulable.message.contains("Insufficient cpu"));
    }

    #[test]
    fn starting_and_crash_looping_pods_are_not_stuck_deploys() {
        for reason in ["ContainerCreating", "PodInitializing", "CrashLoopBackOff"] {
            let found = pod_problem(&waiting(reason, ""));
            assert_eq!(found, None, "{reason}");
        }
    }

    #[test]
    fn an_init_container_failing_before_the_runtime_starts_is_a_problem() {
        let status = |runtime: serde_json::Value| {
            pod(serde_json::json!({
                "initContainerStatuses": [{
                    "name": "check-manifest", "image": "x", "imageID": "", "ready": false,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
                }],
                "containerStatuses": [{
                    "name": "runtime", "image": "strom", "imageID": "", "ready": false,
                    "restartCount": 0, "state": runtime
                }]
            }))
        };
        let problem = pod_problem(&status(
            serde_json::json!({"waiting": {"reason": "PodInitializing"}}),
        ))
        .unwrap();
        assert_eq!(
            problem.to_string(),
            "pod clicks-0: CrashLoopBackOff: init container check-manifest keeps failing: back-off"
        );
        // A sidecar failing after the runtime started does not keep it from running.
        let running = status(serde_json::json!({"running": {}}));
        assert_eq!(pod_problem(&running), None);
    }

    #[test]
    fn the_runtime_containers_readiness_counts_not_a_sidecars() {
        let pod = |runtime_ready: bool, sidecar_ready: bool| {
            pod(serde_json::json!({"containerStatuses": [
                {"name": "runtime", "image": "s", "imageID": "", "ready": runtime_ready,
                 "restartCount": 0},
                {"name": "exporter", "image": "e", "imageID": "", "ready": sidecar_ready,
                 "restartCount": 0},
            ]}))
        };
        assert!(runtime_ready(&pod(true, false)));
        assert!(!runtime_ready(&pod(false, true)));
        // Every container ready but the pod not: its node is gone (stale).
        let lost = super::tests::pod(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "NodeLost"}],
            "containerStatuses": [{"name": "runtime", "image": "s", "imageID": "",
                                   "ready": true, "restartCount": 0}],
        }));
        assert!(!runtime_ready(&lost));
    }

    #[test]
    fn only_failed_creates_of_this_stateful_set_count() {
        let event = |at: &str, message: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("e-{at}")},
                "involvedObject": {"kind": "StatefulSet", "name": "clicks"},
                "reason": "FailedCreate",
                "message": message,
                "lastTimestamp": at,
            }))
            .unwrap()
        };
        let events = [
            event("2026-01-01T10:00:00Z", "old: forbidden"),
            event(
                "2026-01-01T12:00:05Z",
                "create Pod clicks-0 in StatefulSet clicks failed: admission webhook denied",
            ),
            event("2026-01-01T12:00:01Z", "earlier"),
        ];
        let created: Time =
            serde_json::from_value(serde_json::json!("2026-01-01T12:00:00Z")).unwrap();
        let problem = failed_create(&events, Some(&created), "clicks").unwrap();
        assert!(problem.message.contains("admission webhook denied"));
        assert_eq!(problem.object, "StatefulSet clicks");
        assert_eq!(failed_create(&events[..1], Some(&created), "clicks"), None);
    }
}
