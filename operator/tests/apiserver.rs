//! The operator against the real apiserver of `e2e/infra/kubernetes.sh`: each test
//! runs a controller watching a namespace of its own and drives it as a user would,
//! with manifests and `kubectl`. That control plane has no node, so runtime pods are
//! created but never run: these tests cover what the operator writes and how it
//! reacts, up to the point where a job would start (`cycle.rs` runs pods on a node).

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret, Service};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use strom_crds::JobPhase;
use strom_crds::manifest::parse_stream_job;
use strom_e2e::workspace_root;
use strom_operator::act::FINALIZER;
use strom_operator::leader::{LeaderElection, Leadership};
use strom_operator::resources::{self, ResourceSettings};
use strom_operator::target::Target;

use common::*;

/// Whether every field of `expected` is in `actual` with the same value (the
/// apiserver adds defaults, so `actual` may hold more).
fn contains(actual: &Value, expected: &Value) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let found = actual.get(key).ok_or(format!("{key} missing"))?;
                contains(found, value).map_err(|e| format!("{key}.{e}"))?;
            }
            Ok(())
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
                contains(a, e).map_err(|error| format!("[{i}].{error}"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!(": expected {expected}, found {actual}")),
    }
}

async fn assert_on_server<K>(client: &Client, namespace: &str, built: &K)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + serde::de::DeserializeOwned,
{
    let name = built.meta().name.clone().unwrap();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let found = eventually(&format!("{} {name}", K::kind(&())), || {
        let api = api.clone();
        let name = name.clone();
        async move { api.get_opt(&name).await.unwrap() }
    })
    .await;
    let mut expected = serde_json::to_value(built).unwrap();
    // Server-filled: the namespace is the test's, owner UIDs are checked apart.
    expected["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let found = serde_json::to_value(&found).unwrap();
    if let Err(difference) = contains(&found, &expected) {
        panic!(
            "{} {name} differs from what the operator builds: {difference}",
            K::kind(&())
        );
    }
}

#[tokio::test]
async fn objects_of_every_example_are_created_with_the_expected_shape_and_status() {
    let Some((control_plane, client, namespace)) = cluster("shape").await else {
        return;
    };
    let _operator = start_operator(&client, test_config(&namespace));
    for file in [
        "pipeline-word-count.yaml",
        "multi-cluster.yaml",
        "kafka-sql.yaml",
    ] {
        let path = workspace_root().join("examples").join(file);
        apply_file(&control_plane, &namespace, &path);
        let local = parse_stream_job(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = local.name_any();

        // Status first: it is recorded before the objects are applied.
        let deployed = eventually(&format!("{name} deploying"), || async {
            let job = job(&client, &namespace, &name).await?;
            (job.status.as_ref()?.phase == Some(JobPhase::Deploying)
                && job.status.as_ref()?.job_id.is_some())
            .then_some(job)
        })
        .await;
        let status = deployed.status.clone().unwrap();
        assert!(
            deployed.finalizers().contains(&FINALIZER.to_owned()),
            "{file}"
        );
        assert_eq!(status.observed_generation, deployed.metadata.generation);
        assert_eq!(
            status.selector.as_deref(),
            Some(format!("strom.dev/job={name},app.kubernetes.io/component=runtime").as_str())
        );
        for (kind, value) in [
            ("Progressing", "True"),
            ("Ready", "False"),
            ("CredentialsResolved", "True"),
        ] {
            let found = condition(&deployed, kind).unwrap_or_else(|| panic!("{file}: {kind}"));
            assert_eq!(found.status, value, "{file}: {kind}: {found:?}");
        }
        // Degraded only when a pod cannot start: the test cluster's one node has
        // no room for an example asking for more CPU than it has.
        let degraded = condition(&deployed, "Degraded").unwrap();
        assert!(
            degraded.status == "False"
                || (degraded.reason == "DeploymentStuck"
                    && degraded.message.contains("Insufficient")),
            "{file}: Degraded: {degraded:?}"
        );

        // The objects are what the builders make from the recorded target.
        let target = Target::from_json(status.last_reconciled_spec.as_deref().unwrap()).unwrap();
        let deployment = strom_operator::decide::Deployment {
            target,
            job_id: status.job_id.clone().unwrap(),
            restore_from: None,
            latest_of: None,
            expect_state: false,
        };
        let settings = ResourceSettings {
            default_image: "strom-runtime:test".into(),
            ..ResourceSettings::default()
        };
        let built = resources::build(&deployed, &deployment, &settings);
        assert_on_server(&client, &namespace, &built.config_map).await;
        assert_on_server(&client, &namespace, &built.peers_service).await;
        assert_on_server(&client, &namespace, &built.api_service).await;
        assert_on_server(&client, &namespace, &built.stateful_set).await;
        assert_on_server(&client, &namespace, &built.network_policy).await;
        // The control token: random, in a Secret the job owns, nowhere else.
        let control = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get(&format!("{name}-control"))
            .await
            .unwrap();
        let data = control.data.clone().unwrap();
        let token = String::from_utf8(data["token"].0.clone()).unwrap();
        assert_eq!(token.len(), 64, "{file}");
        assert_eq!(control.owner_references()[0].uid, deployed.uid().unwrap());
        let set = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
            .get(&name)
            .await
            .unwrap();
        let owner = &set.owner_references()[0];
        assert_eq!(owner.uid, deployed.uid().unwrap(), "{file}");
        assert_eq!(owner.controller, Some(true));

        // No Secret value is copied anywhere the operator writes.
        let config_map = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get(&format!("{name}-config"))
            .await
            .unwrap();
        let written = serde_json::to_string(&(&config_map, &set, &deployed.status)).unwrap();
        assert!(!written.contains("change-me-please"), "{file}");
        assert!(!written.contains(&token), "{file}");
    }
}

#[tokio::test]
async fn a_missing_secret_gives_the_condition_and_no_statefulset_until_it_appears() {
    let Some((control_plane, client, namespace)) = cluster("secret").await else {
        return;
    };
    let _operator = start_operator(&client, test_config(&namespace));
    apply_text(
        &control_plane,
        &namespace,
        r#"
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata: {name: orders}
spec:
  parallelism: 2
  pipeline: {name: kafka-copy}
  state: {storage: "s3://bucket/jobs"}
  kafkaClusters:
    - name: us
      bootstrapServers: kafka-us:9093
      authentication:
        type: scram-sha-512
        username: reader
        passwordSecret: {secretName: us-reader, password: password}
"#,
    );
    let waiting = eventually("CredentialsResolved=False", || async {
        let job = job(&client, &namespace, "orders").await?;
        condition(&job, "CredentialsResolved")
            .filter(|c| c.status == "False")
            .cloned()
    })
    .await;
    assert_eq!(
        waiting.message,
        "Secret \"us-reader\" (Kafka cluster us) not found"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let missing = eventually("a CredentialsMissing Event", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("CredentialsMissing"))
    })
    .await;
    assert_eq!(missing.type_.as_deref(), Some("Warning"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sets.get_opt("orders").await.unwrap().is_none());

    // A Secret without the key: named too.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some("us-reader".into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("user".to_owned(), "reader".to_owned())].into()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    eventually("the missing key named", || async {
        let job = job(&client, &namespace, "orders").await?;
        condition(&job, "CredentialsResolved")
            .filter(|c| {
                c.message == "Secret \"us-reader\" (Kafka cluster us) has no key \"password\""
            })
            .cloned()
    })
    .await;
    assert!(sets.get_opt("orders").await.unwrap().is_none());

    // The key appears: the job deploys, with no secret value in what was written.
    secret = secrets.get("us-reader").await.unwrap();
    secret.string_data = Some([("password".to_owned(), "s3cr3t-value".to_owned())].into());
    secrets
        .replace("us-reader", &PostParams::default(), &secret)
        .await
        .unwrap();
    let set = eventually("the StatefulSet", || async {
        sets.get_opt("orders").await.unwrap()
    })
    .await;
    let job = job(&client, &namespace, "orders").await.unwrap();
    assert_eq!(
        condition(&job, "CredentialsResolved").unwrap().status,
        "True"
    );
    let written = serde_json::to_string(&(&set, &job)).unwrap();
    assert!(!written.contains("s3cr3t-value"));

    // A write that changes no value the job uses (a label, a key it does not read)
    // leaves the job alone.
    let revision = |set: &StatefulSet| set.annotations()[resources::REVISION_ANNOTATION].clone();
    let first = revision(&set);
    let mut secret = secrets.get("us-reader").await.unwrap();
    secret.metadata.labels = Some([("team".to_owned(), "payments".to_owned())].into());
    secret.string_data = Some([("comment".to_owned(), "rotated monthly".to_owned())].into());
    secrets
        .replace("us-reader", &PostParams::default(), &secret)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let set = sets.get("orders").await.unwrap();
    assert_eq!(revision(&set), first, "a write to an unused key redeployed");

    // A rotated Secret rolls the job: a new target, a new StatefulSet revision.
    let mut secret = secrets.get("us-reader").await.unwrap();
    secret.string_data = Some([("password".to_owned(), "rotated".to_owned())].into());
    secrets
        .replace("us-reader", &PostParams::default(), &secret)
        .await
        .unwrap();
    eventually("a new revision after the rotation", || async {
        let set = sets.get_opt("orders").await.unwrap()?;
        (revision(&set) != first).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sql_that_does_not_compile_sets_spec_valid_false_and_deploys_nothing_until_fixed() {
    let Some((control_plane, client, namespace)) = cluster("sql").await else {
        return;
    };
    let _operator = start_operator(&client, test_config(&namespace));
    let manifest = |from: &str| {
        format!(
            r#"
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata: {{name: counts}}
spec:
  parallelism: 2
  state: {{storage: "s3://bucket/jobs"}}
  sql: |
    CREATE TABLE clicks (user_id STRING, url STRING)
      WITH ('connector' = 'datagen', 'number-of-rows' = '100');
    CREATE TABLE out (user_id STRING, n BIGINT) WITH ('connector' = 'print');
    INSERT INTO out SELECT user_id, COUNT(*) FROM {from} GROUP BY user_id;
"#
        )
    };
    apply_text(&control_plane, &namespace, &manifest("clickz"));
    let invalid = eventually("SpecValid=False", || async {
        let job = job(&client, &namespace, "counts").await?;
        condition(&job, "SpecValid")
            .filter(|c| c.status == "False")
            .cloned()
    })
    .await;
    assert_eq!(
        invalid.message,
        "spec.sql: SQL error at line 4, column 47: no table or view named clickz; the script creates: clicks, out"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let event = eventually("a SpecInvalid Event", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SpecInvalid"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.message.unwrap().contains("line 4, column 47"));
    let job_now = job(&client, &namespace, "counts").await.unwrap();
    let ready = condition(&job_now, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "SpecInvalid")
    );
    assert_eq!(job_now.status.unwrap().phase, None);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sets.get_opt("counts").await.unwrap().is_none());

    // Fixed: the job deploys.
    apply_text(&control_plane, &namespace, &manifest("clicks"));
    eventually("the StatefulSet", || async {
        sets.get_opt("counts").await.unwrap()
    })
    .await;
    let job_now = job(&client, &namespace, "counts").await.unwrap();
    assert_eq!(condition(&job_now, "SpecValid").unwrap().status, "True");
}

#[tokio::test]
async fn kubectl_scale_starts_the_cycle_and_redeploys_at_the_new_parallelism() {
    let Some((control_plane, client, namespace)) = cluster("scale").await else {
        return;
    };
    let _operator = start_operator(&client, test_config(&namespace));
    let path = workspace_root().join("examples/pipeline-word-count.yaml");
    apply_file(&control_plane, &namespace, &path);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let replicas = |set: &StatefulSet| set.spec.as_ref().and_then(|s| s.replicas);
    let set = eventually("the StatefulSet", || async {
        sets.get_opt("word-count").await.unwrap()
    })
    .await;
    assert_eq!(replicas(&set), Some(2)); // parallelism 4, 2 slots per pod
    let first_uid = set.uid();

    control_plane
        .run_kubectl(&[
            "scale",
            "-n",
            &namespace,
            "streamjob/word-count",
            "--replicas=8",
        ])
        .unwrap();
    // The pods never ran (no node), so no savepoint can be taken: the old
    // deployment is torn down and the new one restores from the latest checkpoint.
    let set = eventually("a new StatefulSet at parallelism 8", || async {
        let set = sets.get_opt("word-count").await.unwrap()?;
        (set.uid() != first_uid && replicas(&set) == Some(4)).then_some(set)
    })
    .await;
    let env = &set.spec.unwrap().template.spec.unwrap().containers[0].env;
    let peers = env
        .iter()
        .flatten()
        .find(|e| e.name == "STROM_PEERS")
        .and_then(|e| e.value.clone())
        .unwrap();
    assert_eq!(peers.split(',').count(), 4);
    let job = job(&client, &namespace, "word-count").await.unwrap();
    let status = job.status.unwrap();
    assert_eq!(status.phase, Some(JobPhase::Restoring));
    let target = Target::from_json(status.last_reconciled_spec.as_deref().unwrap()).unwrap();
    assert_eq!(target.spec.parallelism, 8);
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["Deploying", "Rescaling", "Restoring"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn an_operator_with_another_default_image_redeploys_its_jobs_visibly() {
    let Some((control_plane, client, namespace)) = cluster("image").await else {
        return;
    };
    let mut config = test_config(&namespace);
    config.resources.default_image = "strom-runtime:old".into();
    let operator = start_operator(&client, config.clone());
    let path = workspace_root().join("examples/pipeline-word-count.yaml");
    apply_file(&control_plane, &namespace, &path);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let image = |set: &StatefulSet| {
        let pod = set.spec.as_ref()?.template.spec.as_ref()?;
        pod.containers[0].image.clone()
    };
    let set = eventually("the StatefulSet", || async {
        sets.get_opt("word-count").await.unwrap()
    })
    .await;
    assert_eq!(image(&set).as_deref(), Some("strom-runtime:old"));

    // The operator is upgraded: its default image is part of what the job runs,
    // so the job is redeployed at once (through a savepoint, had it run), and
    // says so, rather than at its next rescale.
    drop(operator);
    tokio::time::sleep(Duration::from_millis(500)).await;
    config.resources.default_image = "strom-runtime:new".into();
    let _operator = start_operator(&client, config);
    eventually("the StatefulSet at the new image", || async {
        let set = sets.get_opt("word-count").await.unwrap()?;
        (image(&set).as_deref() == Some("strom-runtime:new")).then_some(())
    })
    .await;
    let job = job(&client, &namespace, "word-count").await.unwrap();
    let recorded = job.status.unwrap().last_reconciled_spec.unwrap();
    assert!(recorded.contains("strom-runtime:new"), "{recorded}");
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    eventually("an Event naming the image", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().find(|e| {
            e.message.as_deref().is_some_and(|note| {
                note.contains("strom-runtime:old") && note.contains("strom-runtime:new")
            })
        })
    })
    .await;
}

#[tokio::test]
async fn deleting_a_job_runs_the_finalizer_and_removes_what_it_owns() {
    let Some((control_plane, client, namespace)) = cluster("delete").await else {
        return;
    };
    let _operator = start_operator(&client, test_config(&namespace));
    let path = workspace_root().join("examples/pipeline-word-count.yaml");
    apply_file(&control_plane, &namespace, &path);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    eventually("the StatefulSet", || async {
        sets.get_opt("word-count").await.unwrap()
    })
    .await;
    let before = job(&client, &namespace, "word-count").await.unwrap();
    assert!(before.finalizers().contains(&FINALIZER.to_owned()));

    delete_job(&client, &namespace, "word-count").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    eventually("owned objects collected", || async {
        let set = sets.get_opt("word-count").await.unwrap();
        let api = services.get_opt("word-count-api").await.unwrap();
        (set.is_none() && api.is_none()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_of_two_candidates_leads_and_the_other_takes_over_an_expired_lease() {
    let Some((_control_plane, client, namespace)) = cluster("lease").await else {
        return;
    };
    let duration = Duration::from_secs(2);
    let first = LeaderElection::new(
        client.clone(),
        &namespace,
        "strom-operator-leader",
        "first",
        duration,
    );
    let second = LeaderElection::new(
        client.clone(),
        &namespace,
        "strom-operator-leader",
        "second",
        duration,
    );
    assert_eq!(first.try_acquire().await.unwrap(), Leadership::Leading);
    assert_eq!(
        second.try_acquire().await.unwrap(),
        Leadership::Following("first".into())
    );
    // Renewing keeps it.
    assert_eq!(first.try_acquire().await.unwrap(), Leadership::Leading);
    // Not renewed for longer than its duration: the other takes it over.
    tokio::time::sleep(duration + Duration::from_millis(1500)).await;
    assert_eq!(second.try_acquire().await.unwrap(), Leadership::Leading);
    assert_eq!(
        first.try_acquire().await.unwrap(),
        Leadership::Following("second".into())
    );
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_its_lease_can_be_taken_over() {
    // An apiserver that cannot be reached: every renewal fails.
    let unreachable = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = Client::try_from(unreachable).unwrap();
    let duration = Duration::from_secs(3);
    let leader = LeaderElection::new(client, "default", "strom-operator-leader", "me", duration);
    let started = tokio::time::Instant::now();
    let lost = leader.keep(started).await;
    let held = started.elapsed();
    // Another candidate takes the Lease over once it is `duration` old: the
    // leader must have stopped well before, leaving time for its last writes.
    assert!(
        held <= duration * 3 / 4,
        "led for {held:?} without renewing a Lease of {duration:?}: {lost}"
    );
}

#[tokio::test]
async fn a_status_written_from_a_stale_read_is_refused() {
    let Some((control_plane, client, namespace)) = cluster("stale").await else {
        return;
    };
    let path = workspace_root().join("examples/pipeline-word-count.yaml");
    apply_file(&control_plane, &namespace, &path);
    let read = job(&client, &namespace, "word-count").await.unwrap();
    // Another writer (a newer leader) changes the job after this read.
    let mut labelled = read.clone();
    labelled.metadata.labels = Some([("changed".to_owned(), "yes".to_owned())].into());
    let jobs: Api<strom_crds::StreamJob> = Api::namespaced(client.clone(), &namespace);
    jobs.replace("word-count", &PostParams::default(), &labelled)
        .await
        .unwrap();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "test".into(),
            instance: None,
        },
    );
    let control = strom_operator::control_api::ControlClient::default();
    let resources = ResourceSettings::default();
    let actor = strom_operator::act::Actor {
        client: &client,
        recorder: &recorder,
        control: &control,
        resources: &resources,
    };
    let status = strom_crds::StreamJobStatus {
        phase: Some(JobPhase::Running),
        ..Default::default()
    };
    match actor.record_status(&read, &status).await {
        Err(error) if error.is_conflict() => {}
        other => panic!("a status decided on a stale read: {other:?}"),
    }
    let now = job(&client, &namespace, "word-count").await.unwrap();
    assert_ne!(
        now.status.as_ref().and_then(|s| s.phase),
        Some(JobPhase::Running)
    );
    // Decided again on a fresh read: written.
    let written = actor.record_status(&now, &status).await.unwrap();
    assert_eq!(
        written.status.and_then(|s| s.phase),
        Some(JobPhase::Running)
    );
}

#[tokio::test]
async fn sigterm_stops_the_operator_and_releases_its_lease() {
    let Some((control_plane, client, namespace)) = cluster("sigterm").await else {
        return;
    };
    let mut operator = std::process::Command::new(env!("CARGO_BIN_EXE_strom-operator"))
        .env("KUBECONFIG", &control_plane.kubeconfig)
        .args(["--namespace", &namespace, "--lease-namespace", &namespace])
        .args(["--identity", "operator-1", "--lease-duration", "60"])
        .args(["--metrics-address", "127.0.0.1:0"])
        .spawn()
        .unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &namespace);
    let holder = |lease: Option<k8s_openapi::api::coordination::v1::Lease>| {
        lease.and_then(|l| l.spec?.holder_identity)
    };
    eventually("the operator leads", || async {
        let lease = leases.get_opt("strom-operator-leader").await.unwrap();
        (holder(lease).as_deref() == Some("operator-1")).then_some(())
    })
    .await;
    let pid = operator.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = operator.try_wait().unwrap() {
            break exit;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGTERM did not stop the operator"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(exit.success(), "SIGTERM ended the operator with {exit}");
    // Released: a successor leads at once, not a Lease duration (60 s) later.
    let lease = leases.get_opt("strom-operator-leader").await.unwrap();
    assert_eq!(holder(lease), None);
    let successor = LeaderElection::new(
        client.clone(),
        &namespace,
        "strom-operator-leader",
        "operator-2",
        Duration::from_secs(60),
    );
    assert_eq!(successor.try_acquire().await.unwrap(), Leadership::Leading);
}

/// A `<job>-control` Secret that is not the job's (made by someone else) keeps
/// the job from deploying, said in Degraded and an Event; once it is gone, the
/// job deploys with a control Secret of its own.
#[tokio::test]
async fn another_owners_control_secret_blocks_the_deploy_visibly() {
    let Some((control_plane, client, namespace)) = cluster("foreign-secret").await else {
        return;
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("orders-control".into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("token".to_owned(), "not-ours".to_owned())].into()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let _operator = start_operator(&client, test_config(&namespace));
    apply_text(
        &control_plane,
        &namespace,
        r#"
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata: {name: orders}
spec:
  parallelism: 1
  pipeline: {name: word-count}
  state: {storage: "s3://bucket/jobs"}
"#,
    );
    let degraded = eventually("Degraded=True naming the Secret", || async {
        let job = job(&client, &namespace, "orders").await?;
        condition(&job, "Degraded")
            .filter(|c| c.status == "True" && c.reason == "ActionRefused")
            .cloned()
    })
    .await;
    assert!(
        degraded
            .message
            .contains("Secret orders-control exists and is not this job's control Secret"),
        "{}",
        degraded.message
    );
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    assert!(sets.get_opt("orders").await.unwrap().is_none());
    let untouched = secrets.get("orders-control").await.unwrap();
    assert!(untouched.owner_references().is_empty());

    secrets
        .delete("orders-control", &Default::default())
        .await
        .unwrap();
    eventually("the StatefulSet deployed", || async {
        sets.get_opt("orders").await.unwrap()
    })
    .await;
    let ours = secrets.get("orders-control").await.unwrap();
    let job = job(&client, &namespace, "orders").await.unwrap();
    assert!(
        ours.owner_references()
            .iter()
            .any(|owner| Some(&owner.uid) == job.metadata.uid.as_ref())
    );
}

/// A control Secret deleted while the job has a StatefulSet is made again with a
/// new token; the Event says whether the pods take it as they run (the token
/// file) or only when restarted (deployed before the file: the token in their
/// environment), and how.
#[tokio::test]
async fn a_deleted_control_secret_is_made_again_with_a_new_token() {
    let Some((control_plane, client, namespace)) = cluster("control-secret").await else {
        return;
    };
    let _operator = start_operator(&client, test_config(&namespace));
    apply_text(
        &control_plane,
        &namespace,
        r#"
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata: {name: orders}
spec:
  parallelism: 1
  pipeline: {name: word-count}
  state: {storage: "s3://bucket/jobs"}
"#,
    );
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    eventually("the StatefulSet deployed", || async {
        sets.get_opt("orders").await.unwrap()
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let token = |secret: Secret| secret.data?.remove("token");
    let restored_note = |hint: &'static str| {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("ControlSecretRestored"))
                .filter_map(|e| e.message)
                .find(|note| note.contains(hint))
        }
    };

    for (pods_read_the_file, hint) in [
        (true, "which the running pods read from their mounted copy"),
        (
            false,
            "hold the old one: stops and savepoints are refused until they restart",
        ),
    ] {
        if !pods_read_the_file {
            // As an older operator deployed it: the token in the environment only.
            let mut set = sets.get("orders").await.unwrap();
            let pod = set.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
            let env = pod.containers[0].env.as_mut().unwrap();
            env.retain(|e| e.name != "STROM_CONTROL_TOKEN_FILE");
            set.metadata.managed_fields = None;
            sets.replace("orders", &PostParams::default(), &set)
                .await
                .unwrap();
        }
        let old_token = token(secrets.get("orders-control").await.unwrap());
        secrets
            .delete("orders-control", &Default::default())
            .await
            .unwrap();
        eventually("the control Secret made again", || async {
            let new_token = token(secrets.get_opt("orders-control").await.unwrap()?);
            (new_token.is_some() && new_token != old_token).then_some(())
        })
        .await;
        eventually(hint, || restored_note(hint)).await;
    }
}
