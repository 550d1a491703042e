//! The whole life of a job with running pods, on the node of `e2e/infra/node.sh`
//! (containerd, kubelet, CoreDNS) and state on MinIO: deploy, run, `kubectl scale`
//! through stop-with-savepoint -> teardown -> restore at the new parallelism, then
//! delete with a final savepoint.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use strom_crds::{JobPhase, SavepointReason, StreamJob};
use strom_e2e::{S3Server, service};

use common::*;

/// How long a job may take to deploy or to go through a rescale.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Waits until `check` holds for the job, recording every phase it passes through.
async fn wait_for_job(
    client: &Client,
    namespace: &str,
    what: &str,
    phases: &mut BTreeSet<String>,
    check: impl Fn(&StreamJob) -> bool,
) -> StreamJob {
    let deadline = tokio::time::Instant::now() + CYCLE_TIMEOUT;
    loop {
        if let Some(job) = job(client, namespace, "counts").await {
            // Each phase once, as first seen, to explain a failure.
            if let Some(phase) = job.status.as_ref().and_then(|s| s.phase)
                && phases.insert(format!("{phase:?}"))
            {
                eprintln!("{what}: {phase:?}");
            }
            if check(&job) {
                return job;
            }
            if tokio::time::Instant::now() >= deadline {
                let pods = describe_pods(client, namespace).await;
                panic!(
                    "timed out waiting for {what}; status: {:#?}\npods: {pods}",
                    job.status
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pods' phases and container states, to explain a timeout.
async fn describe_pods(client: &Client, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
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

fn running_at(job: &StreamJob, parallelism: i32) -> bool {
    let status = job.status.as_ref();
    status.and_then(|s| s.phase) == Some(JobPhase::Running)
        && status.and_then(|s| s.parallelism) == Some(parallelism)
        && condition(job, "Ready").is_some_and(|c| c.status == "True")
}

#[tokio::test]
async fn a_job_runs_rescales_through_a_savepoint_and_takes_a_final_one_on_delete() {
    let Some((control_plane, client, namespace)) = cluster("cycle").await else {
        return;
    };
    let node_ip = service("STROM_NODE_HOST_IP", "the e2e node").unwrap();
    let image = service("STROM_RUNTIME_IMAGE", "the runtime image on the e2e node").unwrap();
    let s3 = S3Server::from_env().unwrap();
    let (Some(node_ip), Some(image), Some(s3)) = (node_ip, image, s3) else {
        return;
    };

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let credentials = Secret {
        metadata: ObjectMeta {
            name: Some("s3-creds".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            [
                ("AWS_ACCESS_KEY_ID".to_owned(), s3.access_key_id.clone()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    s3.secret_access_key.clone(),
                ),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &credentials)
        .await
        .unwrap();

    let mut config = test_config(&namespace);
    config.resources.default_image = image;
    config.resources.image_pull_policy = "Never".into();
    config.decide.savepoint_timeout = Duration::from_secs(60);
    let _operator = start_operator(&client, config);

    let port = s3.endpoint.rsplit(':').next().unwrap().to_owned();
    apply_text(
        &control_plane,
        &namespace,
        &format!(
            r#"
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata: {{name: counts}}
spec:
  parallelism: 2
  pipeline:
    name: word-count
    args: {{sentencesPerSecond: "200", seed: "3"}}
  state:
    checkpointInterval: 1s
    storage: s3://{bucket}/{namespace}
    storageSecret: {{name: s3-creds}}
    storageOptions:
      endpoint: http://{node_ip}:{port}
      region: {region}
      allow_http: "true"
"#,
            bucket = s3.bucket,
            region = s3.region,
        ),
    );

    let mut phases = BTreeSet::new();
    let running = wait_for_job(&client, &namespace, "running at 2", &mut phases, |job| {
        running_at(job, 2)
    })
    .await;
    let job_id = running.status.unwrap().job_id.unwrap();

    control_plane
        .run_kubectl(&[
            "scale",
            "-n",
            &namespace,
            "streamjob/counts",
            "--replicas=3",
        ])
        .unwrap();
    phases.clear();
    let rescaled = wait_for_job(&client, &namespace, "running at 3", &mut phases, |job| {
        running_at(job, 3)
    })
    .await;
    let status = rescaled.status.clone().unwrap();
    for phase in ["Savepointing", "Restoring", "Running"] {
        assert!(phases.contains(phase), "{phase} not seen in {phases:?}");
    }
    assert_eq!(status.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(status.change, None);
    let savepoint = status.last_savepoint.clone().expect("a savepoint");
    assert_eq!(savepoint.reason, SavepointReason::Rescale);
    let storage = format!("s3://{}/{namespace}/counts/{job_id}/", s3.bucket);
    assert!(
        savepoint.path.starts_with(&storage),
        "{} is not under {storage}",
        savepoint.path
    );

    // The new pods restore from that savepoint.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let set = sets.get("counts").await.unwrap();
    assert_eq!(set.spec.as_ref().unwrap().replicas, Some(3));
    let env = set.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let restore = env.iter().find(|e| e.name == "STROM_RESTORE_FROM").unwrap();
    assert_eq!(restore.value.as_deref(), Some(savepoint.path.as_str()));

    // Deleting it takes a final savepoint, then the job and its pods go.
    let jobs: Api<StreamJob> = Api::namespaced(client.clone(), &namespace);
    jobs.delete("counts", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the job gone", || async {
        job(&client, &namespace, "counts")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let all: Vec<(String, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("StreamJob"))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    let notes: Vec<&String> = all
        .iter()
        .filter(|(reason, _)| reason == "SavepointCompleted")
        .map(|(_, note)| note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("savepoint for a rescale")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("savepoint for deleting")),
        "{all:#?}"
    );
}
