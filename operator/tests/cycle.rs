//! Jobs with running pods, on the node of `e2e/infra/node.sh` (containerd, kubelet,
//! CoreDNS) with their state on MinIO: the whole life of a job (deploy, manual
//! savepoint, `kubectl scale` through stop-with-savepoint -> teardown -> restore,
//! suspend and resume, a final savepoint on delete), Kafka records copied exactly
//! once through a rescale, a savepoint that fails, and a job that crash-loops.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use strom_crds::{JobPhase, SavepointReason, StreamJob};
use strom_e2e::kafka::{create_topic, once_each, produce_with, producer, values};
use strom_e2e::{ControlPlane, S3Server, service};
use strom_operator::controller::Config;

use common::*;

/// The generated-data pipeline most tests run.
const WORD_COUNT: &str = r#"{name: word-count, args: {sentencesPerSecond: "200", seed: "3"}}"#;

/// How long a job may take to deploy or to go through one step of its life.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// A namespace on the cluster with a node, the runtime image, and MinIO.
struct NodeCluster {
    control_plane: ControlPlane,
    client: Client,
    namespace: String,
    s3: S3Server,
    node_ip: String,
    image: String,
}

impl NodeCluster {
    /// The cluster with a Secret `s3-creds` holding `secret_access_key` (MinIO's
    /// own when `None`); `None` outside CI when the services are not running.
    async fn new(test: &str, secret_access_key: Option<&str>) -> Option<Self> {
        let (control_plane, client, namespace) = cluster(test).await?;
        // Every job of these tests runs under Pod Security "restricted".
        control_plane
            .run_kubectl(&[
                "label",
                "namespace",
                &namespace,
                "pod-security.kubernetes.io/enforce=restricted",
            ])
            .unwrap();
        let node_ip = service("STROM_NODE_HOST_IP", "the e2e node").unwrap()?;
        let image = service("STROM_RUNTIME_IMAGE", "the runtime image on the e2e node").unwrap()?;
        let s3 = S3Server::from_env().unwrap()?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let key = secret_access_key
            .unwrap_or(&s3.secret_access_key)
            .to_owned();
        let credentials = Secret {
            metadata: ObjectMeta {
                name: Some("s3-creds".into()),
                ..ObjectMeta::default()
            },
            string_data: Some(
                [
                    ("AWS_ACCESS_KEY_ID".to_owned(), s3.access_key_id.clone()),
                    ("AWS_SECRET_ACCESS_KEY".to_owned(), key),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        secrets
            .create(&PostParams::default(), &credentials)
            .await
            .unwrap();
        Some(Self {
            control_plane,
            client,
            namespace,
            s3,
            node_ip,
            image,
        })
    }

    /// The operator's configuration for jobs on the node.
    fn config(&self) -> Config {
        let mut config = test_config(&self.namespace);
        config.resources.default_image = self.image.clone();
        config.resources.image_pull_policy = "Never".into();
        config.decide.savepoint_timeout = Duration::from_secs(60);
        config
    }

    /// Applies job `name` running `pipeline` (a flow-style YAML object) at
    /// `parallelism`, state on MinIO, with `extra` spec lines.
    fn apply_job(&self, name: &str, parallelism: i32, pipeline: &str, extra: &str) {
        let port = self.s3.endpoint.rsplit(':').next().unwrap();
        let manifest = format!(
            r#"
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata: {{name: {name}}}
spec:
  parallelism: {parallelism}
  pipeline: {pipeline}
  state:
    checkpointInterval: 1s
    storage: s3://{bucket}/{namespace}
    storageSecret: {{name: s3-creds}}
    storageOptions:
      endpoint: http://{node_ip}:{port}
      region: {region}
      allow_http: "true"
{extra}"#,
            bucket = self.s3.bucket,
            namespace = self.namespace,
            node_ip = self.node_ip,
            region = self.s3.region,
        );
        apply_text(&self.control_plane, &self.namespace, &manifest);
    }

    /// `kubectl wait --for=condition=Ready streamjob/<name>`, once the operator has
    /// looked at the job's latest generation (kubectl wait does not check a
    /// condition's observedGeneration); what kubectl said if Ready did not come
    /// within `timeout`.
    async fn kubectl_wait_ready(&self, name: &str, timeout: Duration) -> Result<String, String> {
        eventually("the latest generation observed", || async {
            let job = job(&self.client, &self.namespace, name).await?;
            let ready = condition(&job, "Ready")?;
            (ready.observed_generation == job.metadata.generation).then_some(())
        })
        .await;
        // Off the test's runtime thread: the operator runs on it meanwhile.
        let control_plane = self.control_plane.clone();
        let args = [
            "wait".to_owned(),
            "-n".to_owned(),
            self.namespace.clone(),
            "--for=condition=Ready".to_owned(),
            format!("streamjob/{name}"),
            format!("--timeout={}s", timeout.as_secs()),
        ];
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            control_plane.run_kubectl(&args)
        })
        .await
        .unwrap()
    }

    /// `kubectl scale streamjob/<name> --replicas=<replicas>`.
    fn scale(&self, name: &str, replicas: i32) {
        self.control_plane
            .run_kubectl(&[
                "scale",
                "-n",
                &self.namespace,
                &format!("streamjob/{name}"),
                &format!("--replicas={replicas}"),
            ])
            .unwrap();
    }

    /// Merge-patches the job's spec, as `kubectl patch --type merge` does.
    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        let jobs: Api<StreamJob> = Api::namespaced(self.client.clone(), &self.namespace);
        jobs.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap();
    }

    /// Waits until `check` holds for job `name`, recording every phase it passes
    /// through in `phases`.
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        phases: &mut BTreeSet<String>,
        check: impl Fn(&StreamJob) -> bool,
    ) -> StreamJob {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(job) = job(&self.client, &self.namespace, name).await {
                if let Some(phase) = job.status.as_ref().and_then(|s| s.phase)
                    && phases.insert(format!("{phase:?}"))
                {
                    eprintln!("{name} ({what}): {phase:?}");
                }
                if check(&job) {
                    return job;
                }
                if tokio::time::Instant::now() >= deadline {
                    panic!(
                        "timed out waiting for {what}; status: {:#?}\npods: {}",
                        job.status,
                        self.describe_pods().await
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The pods' phases and container states, to explain a timeout.
    async fn describe_pods(&self) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pods.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .map(|pod| {
                let status = pod.status.clone().unwrap_or_default();
                format!(
                    "{} {:?} {:?}",
                    pod.name_any(),
                    status.phase,
                    status.container_statuses
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The job's Events, as (reason, message).
    async fn events(&self) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("StreamJob"))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// Replicas of the job's StatefulSet, if it has one.
    async fn replicas(&self, name: &str) -> Option<i32> {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        sets.get_opt(name).await.unwrap()?.spec?.replicas
    }

    /// The savepoint the job's pods restore from (`STROM_RESTORE_FROM`).
    async fn restore_from(&self, name: &str) -> Option<String> {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = sets.get(name).await.unwrap().spec?.template.spec?;
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "STROM_RESTORE_FROM")?
            .value
            .clone()
    }

    /// The number of the job's pods.
    async fn pods(&self, name: &str) -> usize {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("strom.dev/job={name}");
        pods.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .len()
    }
}

/// The test's namespace goes when the test ends, with whatever it left running
/// (its jobs' finalizers dropped first: their operator has stopped).
impl Drop for NodeCluster {
    fn drop(&mut self) {
        let namespace = self.namespace.as_str();
        if let Ok(jobs) =
            self.control_plane
                .run_kubectl(&["-n", namespace, "get", "streamjobs", "-o", "name"])
        {
            for job in jobs.lines() {
                let _ = self.control_plane.run_kubectl(&[
                    "-n",
                    namespace,
                    "patch",
                    job,
                    "--type",
                    "merge",
                    "-p",
                    r#"{"metadata":{"finalizers":[]}}"#,
                ]);
            }
        }
        let _ = self
            .control_plane
            .run_kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    }
}

fn phase(job: &StreamJob) -> Option<JobPhase> {
    job.status.as_ref()?.phase
}

fn running_at(job: &StreamJob, parallelism: i32) -> bool {
    let status = job.status.as_ref();
    phase(job) == Some(JobPhase::Running)
        && status.and_then(|s| s.parallelism) == Some(parallelism)
        && condition(job, "Ready").is_some_and(|c| c.status == "True")
}

#[tokio::test]
async fn a_job_runs_rescales_suspends_resumes_and_takes_a_final_savepoint_on_delete() {
    let Some(cluster) = NodeCluster::new("cycle", None).await else {
        return;
    };
    let _operator = start_operator(&cluster.client, cluster.config());
    // A pod template of the kinds users write, merged with the operator's pod and
    // still passing Pod Security "restricted": scheduling, an init container, an
    // extra volume and mount, the work folder on a volume of the template's, a
    // group added to the pod's security context.
    let template = format!(
        r#"  podTemplate:
    env: [{{name: STROM_LOG, value: info}}]
    spec:
      topologySpreadConstraints:
        - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
           labelSelector: {{matchLabels: {{strom.dev/job: counts}}}}}}
      tolerations: [{{key: dedicated, operator: Exists, effect: NoSchedule}}]
      securityContext: {{supplementalGroups: [4000]}}
      volumes:
        - {{name: scratch, emptyDir: {{}}}}
        - {{name: work, emptyDir: {{sizeLimit: 2Gi}}}}
      initContainers:
        - name: check-manifest
          image: {image}
          imagePullPolicy: Never
          args: [validate, /etc/strom/job/job.yaml]
          volumeMounts: [{{name: job, mountPath: /etc/strom/job, readOnly: true}}]
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {{drop: [ALL]}}
      containers:
        - name: runtime
          volumeMounts: [{{name: scratch, mountPath: /scratch}}]
"#,
        image = cluster.image
    );
    cluster.apply_job("counts", 2, WORD_COUNT, &template);
    let mut phases = BTreeSet::new();
    let running = cluster
        .wait_for("counts", "running at 2", &mut phases, |job| {
            running_at(job, 2)
        })
        .await;
    let job_id = running.status.unwrap().job_id.unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pod = pods.get("counts-1").await.unwrap().spec.unwrap();
    let runtime = &pod.containers[0];
    assert_eq!(runtime.name, "runtime");
    let mounts: Vec<_> = runtime
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(
        mounts.contains(&"/scratch") && mounts.contains(&"/var/lib/strom"),
        "{mounts:?}"
    );
    let work = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "work")
        .unwrap();
    assert!(
        work.empty_dir.as_ref().unwrap().size_limit.is_some(),
        "{work:?}"
    );
    let security = pod.security_context.unwrap();
    assert_eq!(
        (security.fs_group, security.supplemental_groups),
        (Some(65532), Some(vec![4000]))
    );
    assert_eq!(pod.topology_spread_constraints.map(|c| c.len()), Some(1));
    assert_eq!(pod.init_containers.unwrap()[0].name, "check-manifest");

    // A manual savepoint, without stopping.
    cluster
        .patch_spec("counts", serde_json::json!({"savepointTriggerNonce": 1}))
        .await;
    let saved = cluster
        .wait_for("counts", "a manual savepoint", &mut phases, |job| {
            job.status
                .as_ref()
                .is_some_and(|s| s.handled_savepoint_nonce == Some(1))
        })
        .await;
    let status = saved.status.unwrap();
    let manual = status.last_savepoint.expect("the manual savepoint");
    assert_eq!(manual.reason, SavepointReason::Manual);
    assert_eq!(status.savepoint_history.len(), 1);
    assert_eq!(status.phase, Some(JobPhase::Running));
    // One request for the nonce, however often the operator asked (it may read
    // a status from before the request's id was recorded): issue 17, point 13.
    let pod_0 = pods.get("counts-0").await.unwrap();
    let ip = pod_0.status.and_then(|s| s.pod_ip).unwrap();
    let report = strom_operator::control_api::ControlClient::default()
        .report(&format!("http://{ip}:8081"))
        .await
        .unwrap();
    let manual_requests = report.savepoints.iter().filter(|s| !s.stop).count();
    assert_eq!(manual_requests, 1, "{:?}", report.savepoints);

    // kubectl scale: stop with savepoint, old pods removed, new ones restore.
    // `kubectl wait --for=condition=Ready` returns only once parallelism 3 runs.
    cluster.scale("counts", 3);
    if let Err(error) = cluster
        .kubectl_wait_ready("counts", Duration::from_secs(180))
        .await
    {
        let job = job(&cluster.client, &cluster.namespace, "counts").await;
        panic!("{error}\n{:#?}", job.and_then(|job| job.status));
    }
    let waited = job(&cluster.client, &cluster.namespace, "counts")
        .await
        .unwrap();
    assert!(
        running_at(&waited, 3),
        "Ready before 3 ran: {:#?}",
        waited.status
    );
    phases.clear();
    let rescaled = cluster
        .wait_for("counts", "running at 3", &mut phases, |job| {
            running_at(job, 3)
        })
        .await;
    let status = rescaled.status.clone().unwrap();
    // Each step is an Event (a step may pass between two looks at the status).
    let events = cluster.events().await;
    for (reason, note) in [
        ("Savepointing", "rescaling from parallelism 2 to 3"),
        (
            "Rescaling",
            "the savepoint is complete; removing the old pods",
        ),
        (
            "Restoring",
            "deploying 3 pod(s) at parallelism 3, restoring from savepoint",
        ),
        (
            "Running",
            "running at parallelism 3, restored from savepoint",
        ),
    ] {
        assert!(
            events
                .iter()
                .any(|(r, n)| r == reason && n.starts_with(note)),
            "{reason} {note:?} in {events:#?}"
        );
    }
    assert_eq!(status.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(status.change, None);
    let savepoint = status.last_savepoint.clone().expect("a savepoint");
    assert_eq!(savepoint.reason, SavepointReason::Rescale);
    let storage = format!(
        "s3://{}/{}/counts/{job_id}/",
        cluster.s3.bucket, cluster.namespace
    );
    assert!(
        savepoint.path.starts_with(&storage),
        "{} is not under {storage}",
        savepoint.path
    );
    assert_eq!(status.savepoint_history.len(), 2);
    assert_eq!(cluster.replicas("counts").await, Some(3));
    assert_eq!(
        cluster.restore_from("counts").await.as_deref(),
        Some(savepoint.path.as_str())
    );

    // Suspended: a savepoint, no pods. Running again: restored from it.
    cluster
        .patch_spec("counts", serde_json::json!({"desiredState": "suspended"}))
        .await;
    let suspended = cluster
        .wait_for("counts", "suspended", &mut phases, |job| {
            phase(job) == Some(JobPhase::Suspended)
        })
        .await;
    let suspend_savepoint = suspended.status.unwrap().last_savepoint.unwrap();
    assert_eq!(suspend_savepoint.reason, SavepointReason::Suspend);
    assert_eq!(cluster.pods("counts").await, 0);
    assert_eq!(cluster.replicas("counts").await, None);
    cluster
        .patch_spec("counts", serde_json::json!({"desiredState": "running"}))
        .await;
    cluster
        .wait_for("counts", "running again at 3", &mut phases, |job| {
            running_at(job, 3)
        })
        .await;
    assert_eq!(
        cluster.restore_from("counts").await.as_deref(),
        Some(suspend_savepoint.path.as_str())
    );

    // The control Secret deleted while the job runs is made again with a new
    // token, which the running pods read from their mounted copy, without a
    // restart: the final savepoint below is asked for with it.
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let token = |secret: Secret| secret.data?.remove("token");
    let old_token = token(secrets.get("counts-control").await.unwrap());
    secrets
        .delete("counts-control", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the control Secret made again", || async {
        let new_token = token(secrets.get_opt("counts-control").await.unwrap()?);
        (new_token.is_some() && new_token != old_token).then_some(())
    })
    .await;
    let events = cluster.events().await;
    assert!(
        events
            .iter()
            .any(|(reason, _)| reason == "ControlSecretRestored"),
        "{events:#?}"
    );

    // Deleting it takes a final savepoint, then the job and its pods go.
    delete_job(&cluster.client, &cluster.namespace, "counts").await;
    let events = cluster.events().await;
    for prefix in [
        "savepoint for savepointTriggerNonce",
        "savepoint for a rescale",
        "savepoint for suspending",
        "savepoint for deleting",
    ] {
        assert!(
            events
                .iter()
                .any(|(reason, note)| reason == "SavepointCompleted" && note.starts_with(prefix)),
            "{prefix}: {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_failing_savepoint_keeps_the_job_at_its_parallelism_degraded_and_retried() {
    let Some(cluster) = NodeCluster::new("failing-savepoint", None).await else {
        return;
    };
    let mut config = cluster.config();
    config.decide.savepoint_timeout = Duration::from_secs(6);
    config.decide.retry_backoff = Duration::from_secs(2);
    let _operator = start_operator(&cluster.client, config);
    // Every savepoint of this job fails (a failpoint in the runtime).
    cluster.apply_job(
        "stuck",
        2,
        WORD_COUNT,
        "  podTemplate:\n    env: [{name: FAILPOINTS, value: savepoint-write=return}]\n",
    );
    let mut phases = BTreeSet::new();
    cluster
        .wait_for("stuck", "running at 2", &mut phases, |job| {
            running_at(job, 2)
        })
        .await;

    cluster
        .patch_spec("stuck", serde_json::json!({"parallelism": 4}))
        .await;
    let degraded = cluster
        .wait_for(
            "stuck",
            "degraded after a failed savepoint",
            &mut phases,
            |job| condition(job, "Degraded").is_some_and(|c| c.status == "True"),
        )
        .await;
    let message = condition(&degraded, "Degraded").unwrap().message.clone();
    assert!(
        message.starts_with("savepoint for a rescale failed (attempt 1): not completed within 6s"),
        "{message}"
    );
    // Not Ready while parallelism 4 waits: kubectl wait does not return.
    assert!(
        cluster
            .kubectl_wait_ready("stuck", Duration::from_secs(5))
            .await
            .is_err(),
        "Ready while the rescale to 4 failed"
    );
    assert!(
        message.contains("keeps running at parallelism 2"),
        "{message}"
    );

    // The job runs again at 2 (restarted from its latest checkpoint), never at 4,
    // and the savepoint is tried again.
    cluster
        .wait_for("stuck", "a second attempt", &mut phases, |job| {
            job.status
                .as_ref()
                .and_then(|s| s.change.as_ref())
                .is_some_and(|c| c.failed_attempts >= 2)
        })
        .await;
    assert_eq!(cluster.replicas("stuck").await, Some(2));
    assert!(
        cluster
            .events()
            .await
            .iter()
            .any(|(reason, _)| reason == "SavepointFailed")
    );

    // Asking for the old parallelism again cancels the change.
    cluster
        .patch_spec("stuck", serde_json::json!({"parallelism": 2}))
        .await;
    let settled = cluster
        .wait_for("stuck", "the change cancelled", &mut phases, |job| {
            running_at(job, 2)
                && job.status.as_ref().is_some_and(|s| s.change.is_none())
                && condition(job, "Degraded").is_some_and(|c| c.status == "False")
        })
        .await;
    assert_eq!(settled.status.unwrap().parallelism, Some(2));
    assert_eq!(cluster.replicas("stuck").await, Some(2));
}

#[tokio::test]
async fn a_crash_looping_job_fails_with_the_runtime_error_and_loses_its_pods() {
    let Some(cluster) = NodeCluster::new("crash-loop", Some("not-the-key")).await else {
        return;
    };
    let mut config = cluster.config();
    config.decide.crash_loop_restarts = 2;
    let _operator = start_operator(&cluster.client, config);
    // The storage Secret holds a wrong key: the runtime fails at start, every time.
    cluster.apply_job("wrong-key", 1, WORD_COUNT, "");
    let mut phases = BTreeSet::new();
    let failed = cluster
        .wait_for("wrong-key", "failed", &mut phases, |job| {
            phase(job) == Some(JobPhase::Failed)
        })
        .await;
    let ready = condition(&failed, "Ready").unwrap().clone();
    assert_eq!(ready.reason, "Failed");
    assert!(
        ready.message.contains("crashed") && ready.message.contains("s3://"),
        "{}",
        ready.message
    );
    assert!(
        !ready.message.contains("not-the-key"),
        "the key leaked: {}",
        ready.message
    );
    assert!(failed.status.as_ref().unwrap().restarts >= 1);
    eventually("the pods removed", || async {
        (cluster.pods("wrong-key").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn kafka_records_are_copied_exactly_once_through_a_rescale_by_the_operator() {
    let Some(cluster) = NodeCluster::new("kafka-rescale", None).await else {
        return;
    };
    let bootstrap = service("STROM_KAFKA_A_BOOTSTRAP", "Kafka cluster A").unwrap();
    let pod_bootstrap = service("STROM_KAFKA_A_POD_BOOTSTRAP", "Kafka cluster A for pods").unwrap();
    let (Some(bootstrap), Some(pod_bootstrap)) = (bootstrap, pod_bootstrap) else {
        return;
    };
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let (input, output) = (
        format!("{}-in", cluster.namespace),
        format!("{}-out", cluster.namespace),
    );
    create_topic(&client, &input, 4);
    create_topic(&client, &output, 2);
    let _operator = start_operator(&cluster.client, cluster.config());
    cluster.apply_job(
        "copy",
        2,
        &format!("{{name: kafka-copy, args: {{from: a/{input}, to: a/{output}}}}}"),
        &format!("  kafkaClusters: [{{name: a, bootstrapServers: \"{pod_bootstrap}\"}}]\n"),
    );
    let mut phases = BTreeSet::new();
    let to_input = producer(&client);
    let batches: Vec<Vec<String>> = (0..3).map(|b| values(&format!("batch{b}"), 3000)).collect();
    produce_with(&to_input, &input, &batches[0], None);
    cluster
        .wait_for("copy", "running at 2", &mut phases, |job| {
            running_at(job, 2)
        })
        .await;

    // Records keep coming while the job rescales.
    let writer = {
        let (to_input, input, batch) = (producer(&client), input.clone(), batches[1].clone());
        std::thread::spawn(move || {
            for chunk in batch.chunks(300) {
                produce_with(&to_input, &input, chunk, None);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    cluster.scale("copy", 3);
    cluster
        .wait_for("copy", "running at 3", &mut phases, |job| {
            running_at(job, 3)
        })
        .await;
    writer.join().unwrap();
    produce_with(&to_input, &input, &batches[2], None);

    // Every record once in what readers of committed data see.
    let expected: Vec<String> = batches.concat();
    let copied = tokio::task::spawn_blocking({
        let (client, output, count) = (client.clone(), output.clone(), expected.len());
        move || {
            let deadline = std::time::Instant::now() + STEP_TIMEOUT;
            loop {
                let copied = strom_e2e::kafka::consume_available(&client, &output, 2);
                if copied.len() >= count || std::time::Instant::now() >= deadline {
                    return copied;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    })
    .await
    .unwrap();
    let counts = once_each(&copied);
    let missing = expected.iter().filter(|v| !counts.contains_key(*v)).count();
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        missing,
        0,
        "{missing} of {} records missing",
        expected.len()
    );
    assert!(doubled.is_empty(), "written more than once: {doubled:?}");
    assert_eq!(copied.len(), expected.len());
    let status = job(&cluster.client, &cluster.namespace, "copy")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.last_savepoint.map(|s| s.reason),
        Some(SavepointReason::Rescale)
    );
}

/// Issue 17, point 4: a deploy that cannot start says why, at once, on the real
/// control plane: an image the node does not have, and pods the namespace's quota
/// refuses (the StatefulSet's FailedCreate).
#[tokio::test]
async fn a_deploy_that_cannot_start_says_why() {
    let Some(cluster) = NodeCluster::new("stuck", None).await else {
        return;
    };
    let _operator = start_operator(&cluster.client, cluster.config());
    let stuck = |job: &StreamJob| {
        condition(job, "Degraded")
            .is_some_and(|c| c.status == "True" && c.reason == "DeploymentStuck")
    };

    cluster.apply_job(
        "no-image",
        1,
        WORD_COUNT,
        "  image: strom-runtime:does-not-exist\n",
    );
    let mut phases = BTreeSet::new();
    let job = cluster
        .wait_for("no-image", "the missing image reported", &mut phases, stuck)
        .await;
    let degraded = condition(&job, "Degraded").unwrap();
    assert!(
        degraded.message.contains("ErrImageNeverPull")
            && degraded.message.contains("does-not-exist"),
        "{}",
        degraded.message
    );
    let ready = condition(&job, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("ErrImageNeverPull"),
        "{}",
        ready.message
    );

    apply_text(
        &cluster.control_plane,
        &cluster.namespace,
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: no-more-pods}\nspec:\n  hard: {pods: \"1\"}\n",
    );
    cluster.apply_job("no-room", 1, WORD_COUNT, "");
    let job = cluster
        .wait_for("no-room", "the refused pods reported", &mut phases, stuck)
        .await;
    let degraded = condition(&job, "Degraded").unwrap();
    assert!(
        degraded.message.contains("FailedCreate") && degraded.message.contains("quota"),
        "{}",
        degraded.message
    );
    let events = cluster.events().await;
    for needle in ["does-not-exist", "quota"] {
        assert!(
            events
                .iter()
                .any(|(reason, message)| reason == "DeploymentStuck" && message.contains(needle)),
            "no DeploymentStuck Event naming {needle}: {events:?}"
        );
    }
}

/// Issue 17, point 8: a job that has completed checkpoints never starts empty.
/// Its storage is emptied behind its back while it is suspended (a storage not
/// shared by its pods would look the same to them); resumed in last-state mode,
/// its new pods find no checkpoint and the job fails saying so, rather than run
/// again from nothing and report Running.
#[tokio::test]
async fn a_job_whose_checkpoints_are_gone_fails_rather_than_start_empty() {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};

    let Some(cluster) = NodeCluster::new("state-lost", None).await else {
        return;
    };
    let mut config = cluster.config();
    config.decide.crash_loop_restarts = 2;
    let _operator = start_operator(&cluster.client, config);
    cluster.apply_job("counts", 2, WORD_COUNT, "  upgradeMode: last-state\n");
    let mut phases = BTreeSet::new();
    cluster
        .wait_for("counts", "a checkpoint seen", &mut phases, |job| {
            running_at(job, 2) && job.status.as_ref().is_some_and(|s| s.checkpointed)
        })
        .await;
    // Its pods are told through the ConfigMap, without a restart.
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    eventually("the ConfigMap marked", || async {
        let map = maps.get("counts-config").await.ok()?;
        (map.data?.get("expect-state")? == "true").then_some(())
    })
    .await;
    let running = job(&cluster.client, &cluster.namespace, "counts")
        .await
        .unwrap();
    assert_eq!(running.status.unwrap().restarts, 0);

    // Suspended (last-state: no savepoint), its state deleted, then resumed.
    cluster
        .patch_spec("counts", serde_json::json!({"desiredState": "suspended"}))
        .await;
    cluster
        .wait_for("counts", "suspended", &mut phases, |job| {
            phase(job) == Some(JobPhase::Suspended)
        })
        .await;
    eventually("the pods gone", || async {
        (cluster.pods("counts").await == 0).then_some(())
    })
    .await;
    let store = cluster.s3.store();
    let prefix = object_store::path::Path::from(format!("{}/counts", cluster.namespace));
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    assert!(!objects.is_empty(), "no state under {prefix}");
    for object in objects {
        store.delete(&object.location).await.unwrap();
    }
    cluster
        .patch_spec("counts", serde_json::json!({"desiredState": "running"}))
        .await;

    phases.clear();
    let failed = cluster
        .wait_for("counts", "failed", &mut phases, |job| {
            phase(job) == Some(JobPhase::Failed)
        })
        .await;
    assert!(
        !phases.contains("Running"),
        "ran again without its state: {phases:?}"
    );
    let ready = condition(&failed, "Ready").unwrap();
    assert!(
        ready.message.contains("refusing to start with empty state"),
        "{}",
        ready.message
    );
}

/// The `restoredFrom` of the runs recorded under `<namespace>/<job>/<job_id>` on
/// MinIO: what each start of that deployment restored.
async fn runs_restored_from(cluster: &NodeCluster, job: &str, job_id: &str) -> Vec<Option<String>> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};

    let store = cluster.s3.store();
    let prefix =
        object_store::path::Path::from(format!("{}/{job}/{job_id}/runs", cluster.namespace));
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    let mut restored = Vec::new();
    for object in objects {
        let bytes = store
            .get(&object.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        restored.push(record["restoredFrom"].as_str().map(str::to_owned));
    }
    restored
}

/// Issue 17, point 9: a job deleted (with its final savepoint) and created again
/// with `restoreFrom: {path: latest}` goes on from that savepoint, under a
/// deployment of its own; a running job asked to restore a point that is not
/// there keeps running, Degraded; one that is there replaces it.
#[tokio::test]
async fn a_job_created_again_goes_on_from_its_final_savepoint_and_restore_from_is_checked_first() {
    let Some(cluster) = NodeCluster::new("restore-from", None).await else {
        return;
    };
    let _operator = start_operator(&cluster.client, cluster.config());
    cluster.apply_job("counts", 1, WORD_COUNT, "");
    let mut phases = BTreeSet::new();
    let first = cluster
        .wait_for("counts", "a checkpoint seen", &mut phases, |job| {
            running_at(job, 1) && job.status.as_ref().is_some_and(|s| s.checkpointed)
        })
        .await;
    let first_id = first.status.unwrap().job_id.unwrap();
    delete_job(&cluster.client, &cluster.namespace, "counts").await;
    let prefix = "savepoint for deleting at ";
    let final_savepoint = cluster
        .events()
        .await
        .into_iter()
        .find_map(|(reason, note)| {
            let rest = note
                .strip_prefix(prefix)
                .filter(|_| reason == "SavepointCompleted")?;
            assert!(rest.contains("spec.restoreFrom.path: latest"), "{note}");
            Some(rest.split(';').next()?.to_owned())
        })
        .expect("the final savepoint's Event");
    eventually("the old pods gone", || async {
        (cluster.pods("counts").await == 0 && cluster.replicas("counts").await.is_none())
            .then_some(())
    })
    .await;

    // Created again, at another parallelism: from the final savepoint.
    cluster.apply_job("counts", 2, WORD_COUNT, "  restoreFrom: {path: latest}\n");
    phases.clear();
    let again = cluster
        .wait_for("counts", "running again at 2", &mut phases, |job| {
            running_at(job, 2)
        })
        .await;
    let status = again.status.unwrap();
    let second_id = status.job_id.unwrap();
    assert_ne!(second_id, first_id);
    assert_eq!(status.restored_from.unwrap().path, "latest");
    assert_eq!(
        cluster.restore_from("counts").await.as_deref(),
        Some("latest")
    );
    assert_eq!(
        runs_restored_from(&cluster, "counts", &second_id).await,
        [Some(final_savepoint.clone())]
    );

    // A point that is not there: checked through the running job, which goes on.
    let missing = format!(
        "s3://{}/{}/counts/{first_id}/savepoints/sp-missing",
        cluster.s3.bucket, cluster.namespace
    );
    cluster
        .patch_spec(
            "counts",
            serde_json::json!({"restoreFrom": {"path": missing}}),
        )
        .await;
    let degraded = cluster
        .wait_for("counts", "the missing point reported", &mut phases, |job| {
            condition(job, "Degraded").is_some_and(|c| c.reason == "RestoreFailed")
        })
        .await;
    let message = &condition(&degraded, "Degraded").unwrap().message;
    assert!(
        message.contains("no savepoint or checkpoint at"),
        "{message}"
    );
    let status = degraded.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Running));
    assert_eq!(status.job_id.as_deref(), Some(second_id.as_str()));
    assert_eq!(condition(&degraded, "Ready").unwrap().status, "False");

    // One that is: the running job is replaced by a deployment restoring it.
    cluster
        .patch_spec(
            "counts",
            serde_json::json!({"restoreFrom": {"path": final_savepoint, "nonce": 1}}),
        )
        .await;
    let replaced = cluster
        .wait_for(
            "counts",
            "running from the chosen point",
            &mut phases,
            |job| {
                running_at(job, 2)
                    && job
                        .status
                        .as_ref()
                        .is_some_and(|s| s.job_id.as_deref() != Some(second_id.as_str()))
            },
        )
        .await;
    let third_id = replaced.status.clone().unwrap().job_id.unwrap();
    assert_eq!(
        runs_restored_from(&cluster, "counts", &third_id).await,
        [Some(final_savepoint)]
    );
    assert_eq!(condition(&replaced, "Degraded").unwrap().status, "False");
}

/// Issue 17 (automatic rollback): a changed spec whose pods cannot start (an
/// image the node does not have) is rolled back, with `rollbackOnFailure`, to
/// the spec that ran, restored from the change's savepoint, and the job says so
/// instead of waiting forever.
#[tokio::test]
async fn a_change_that_cannot_start_is_rolled_back_to_the_spec_that_ran() {
    let Some(cluster) = NodeCluster::new("rollback", None).await else {
        return;
    };
    let mut config = cluster.config();
    config.decide.step_timeout = Duration::from_secs(20);
    let _operator = start_operator(&cluster.client, config);
    cluster.apply_job("counts", 1, WORD_COUNT, "  rollbackOnFailure: true\n");
    let mut phases = BTreeSet::new();
    cluster
        .wait_for("counts", "running at 1", &mut phases, |job| {
            running_at(job, 1)
        })
        .await;

    cluster
        .patch_spec(
            "counts",
            serde_json::json!({"image": "strom.local/missing:1", "parallelism": 2}),
        )
        .await;
    phases.clear();
    let rolled_back = cluster
        .wait_for("counts", "rolled back", &mut phases, |job| {
            job.status.as_ref().is_some_and(|s| {
                s.phase == Some(JobPhase::Running)
                    && s.rolled_back_revision.is_some()
                    && s.change.is_none()
            }) && condition(job, "Ready").is_some_and(|c| c.reason == "RolledBack")
        })
        .await;
    assert!(phases.contains("Restoring"), "{phases:?}");
    let status = rolled_back.status.clone().unwrap();
    assert_eq!(status.parallelism, Some(1));
    assert_eq!(condition(&rolled_back, "Ready").unwrap().status, "False");
    assert_eq!(
        condition(&rolled_back, "Degraded").unwrap().reason,
        "RolledBack"
    );
    let savepoint = status.last_savepoint.expect("the change's savepoint");
    assert_eq!(
        cluster.restore_from("counts").await.as_deref(),
        Some(savepoint.path.as_str())
    );
    assert_eq!(cluster.replicas("counts").await, Some(1));
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let set = sets.get("counts").await.unwrap();
    let image = set.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some(cluster.image.as_str()));
    let events = cluster.events().await;
    assert!(
        events.iter().any(
            |(reason, note)| reason == "RollingBack" && note.contains("did not run within 20s")
        ),
        "{events:#?}"
    );
}
