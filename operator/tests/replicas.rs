//! Two `strom-operator` processes against the real apiserver: only the holder of
//! the leader Lease reconciles, and the other takes over when it dies.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use strom_e2e::ControlPlane;

use common::*;

/// A running operator process, killed when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(control_plane: &ControlPlane, namespace: &str, identity: &str) -> Operator {
    let child = Command::new(env!("CARGO_BIN_EXE_strom-operator"))
        .env("KUBECONFIG", &control_plane.kubeconfig)
        .env("RUST_LOG", "warn")
        .args(["--namespace", namespace, "--lease-namespace", namespace])
        .args(["--identity", identity, "--lease-duration", "3"])
        .args(["--metrics-address", "127.0.0.1:0", "--control-via-pod-ip"])
        .args(["--runtime-image", "strom-runtime:test"])
        .stdout(Stdio::null())
        .spawn()
        .expect("the operator binary starts");
    Operator(child)
}

async fn holder(client: &Client, namespace: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    leases
        .get_opt("strom-operator-leader")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

/// The instances that published Events about the job `name`.
async fn reporters(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut reporters: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reporting_instance)
        .collect();
    reporters.sort();
    reporters.dedup();
    reporters
}

fn job_manifest(name: &str) -> String {
    format!(
        "apiVersion: strom.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: {name}}}\n\
         spec: {{parallelism: 1, pipeline: {{name: word-count}}, \
         state: {{storage: s3://bucket/jobs}}}}\n"
    )
}

#[tokio::test]
async fn only_the_leader_reconciles_and_the_other_replica_takes_over_when_it_dies() {
    let Some((control_plane, client, namespace)) = cluster("replicas").await else {
        return;
    };
    let first = start(&control_plane, &namespace, "first");
    eventually("first to lead", || async {
        (holder(&client, &namespace).await.as_deref() == Some("first")).then_some(())
    })
    .await;
    let second = start(&control_plane, &namespace, "second");

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    apply_text(&control_plane, &namespace, &job_manifest("one"));
    eventually("job one deployed", || async {
        sets.get_opt("one").await.unwrap()
    })
    .await;
    // Renewed by the first all along; the second waited.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(holder(&client, &namespace).await.as_deref(), Some("first"));
    assert_eq!(reporters(&client, &namespace, "one").await, ["first"]);

    drop(first);
    eventually("second to take over", || async {
        (holder(&client, &namespace).await.as_deref() == Some("second")).then_some(())
    })
    .await;
    apply_text(&control_plane, &namespace, &job_manifest("two"));
    eventually("job two deployed", || async {
        sets.get_opt("two").await.unwrap()
    })
    .await;
    assert_eq!(reporters(&client, &namespace, "two").await, ["second"]);
    drop(second);
}
