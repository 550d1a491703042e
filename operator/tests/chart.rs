//! The Helm chart (`charts/strom-operator`), rendered by Helm built from its Go
//! module: it lints, its values are checked against values.schema.json, and the
//! operator runs on the real apiserver with nothing but the rights the chart grants
//! its ServiceAccount.

mod common;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use strom_crds::JobPhase;
use strom_e2e::{ControlPlane, service, workspace_root};
use strom_operator::act::FINALIZER;
use strom_operator::leader::{LeaderElection, Leadership};

use common::*;

fn helm() -> Option<String> {
    service("STROM_HELM", "Helm (e2e/infra/helm.sh)").unwrap()
}

fn chart() -> String {
    workspace_root()
        .join("charts/strom-operator")
        .to_string_lossy()
        .into_owned()
}

/// Runs helm with `args`: its standard output, or its error output on failure.
fn run_helm(helm: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(helm).args(args).output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn the_chart_lints_and_its_values_are_checked_against_the_schema() {
    let Some(helm) = helm() else {
        return;
    };
    let chart = chart();
    run_helm(&helm, &["lint", "--strict", &chart]).unwrap();

    let all = run_helm(&helm, &["template", "strom", &chart, "--namespace", "ops"]).unwrap();
    assert!(all.contains("kind: ClusterRole\n"), "{all}");
    assert!(all.contains("kind: Deployment"), "{all}");
    assert!(all.contains("image: \"strom-operator:0.1.0\""), "{all}");
    assert!(all.contains("value: \"strom-runtime:0.1.0\""), "{all}");

    let one = run_helm(
        &helm,
        &[
            "template",
            "strom",
            &chart,
            "--namespace",
            "ops",
            "--set",
            "watchNamespace=jobs",
        ],
    )
    .unwrap();
    assert!(!one.contains("kind: ClusterRole"), "{one}");
    assert!(one.contains("kind: Role\n"), "{one}");
    assert!(one.contains("namespace: jobs"), "{one}");

    let refused = run_helm(
        &helm,
        &["template", "strom", &chart, "--set", "replicas=-1"],
    )
    .unwrap_err();
    assert!(refused.contains("replicas"), "{refused}");
    let refused = run_helm(
        &helm,
        &["template", "strom", &chart, "--set", "imagee.tag=x"],
    )
    .unwrap_err();
    assert!(refused.contains("imagee"), "{refused}");
}

/// A client that authenticates as the ServiceAccount `account` of `namespace`.
async fn client_as(control_plane: &ControlPlane, namespace: &str, account: &str) -> Client {
    let token = control_plane
        .run_kubectl(&[
            "create",
            "token",
            account,
            "-n",
            namespace,
            "--duration",
            "1h",
        ])
        .unwrap();
    let mut kubeconfig = Kubeconfig::read_from(&control_plane.kubeconfig).unwrap();
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = &mut user.auth_info {
            // Whichever way the kubeconfig holds the administrator's certificate:
            // as files (the host cluster) or inline (kind).
            auth.client_certificate = None;
            auth.client_key = None;
            auth.client_certificate_data = None;
            auth.client_key_data = None;
            auth.token = Some(token.trim().to_owned().into());
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn the_operator_runs_with_the_rights_the_chart_grants_and_no_more() {
    let Some(helm) = helm() else {
        return;
    };
    let Some((control_plane, admin, namespace)) = cluster("chart").await else {
        return;
    };
    // The chart in this namespace, watching it (a Role rather than a ClusterRole,
    // so tests do not share one), without the Deployment's pods.
    let rendered = run_helm(
        &helm,
        &[
            "template",
            "strom",
            &chart(),
            "--namespace",
            &namespace,
            "--set",
            &format!("watchNamespace={namespace}"),
            "--set",
            "replicas=0",
        ],
    )
    .unwrap();
    apply_text(&control_plane, &namespace, &rendered);
    let client = client_as(&control_plane, &namespace, "strom-strom-operator").await;

    // The Lease, in the operator's namespace.
    let leader = LeaderElection::new(
        client.clone(),
        &namespace,
        "strom-operator-leader",
        "chart-test",
        Duration::from_secs(15),
    );
    assert_eq!(leader.try_acquire().await.unwrap(), Leadership::Leading);

    // A whole reconcile as the ServiceAccount: finalizer, status, objects, Events.
    let _operator = start_operator(&client, test_config(&namespace));
    let path = workspace_root().join("examples/multi-cluster.yaml");
    control_plane
        .run_kubectl(&["apply", "-n", &namespace, "-f", &path.to_string_lossy()])
        .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), &namespace);
    eventually("the StatefulSet", || async {
        sets.get_opt("global-orders").await.unwrap()
    })
    .await;
    let deployed = eventually("the job deploying", || async {
        let job = job(&admin, &namespace, "global-orders").await?;
        (job.status.as_ref()?.phase == Some(JobPhase::Deploying)).then_some(job)
    })
    .await;
    assert!(deployed.finalizers().contains(&FINALIZER.to_owned()));
    let events: Api<Event> = Api::namespaced(admin.clone(), &namespace);
    eventually("the Deploying Event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Deploying"))
    })
    .await;
    assert_eq!(
        condition(&deployed, "CredentialsResolved").unwrap().status,
        "True"
    );

    // Deletion: the finalizer comes off.
    delete_job(&admin, &namespace, "global-orders").await;

    // And no more: the ServiceAccount reads no Secret outside its namespace.
    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "default");
    let refused = elsewhere.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "{refused}"
    );
}
