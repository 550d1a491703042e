//! What the operator's tests against the real apiserver share: a fresh namespace
//! per test, a controller watching it, polling, applying manifests.

#![allow(dead_code)] // each test binary uses its own part

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use strom_crds::StreamJob;
use strom_e2e::ControlPlane;
use strom_operator::controller::{self, Config};
use strom_operator::metrics::Metrics;
use strom_operator::observe::ControlAccess;
use tokio::sync::oneshot;

/// The control plane, a client of it, and a fresh namespace with the StreamJob CRD
/// installed; `None` outside CI when the control plane is not running.
pub async fn cluster(test: &str) -> Option<(ControlPlane, Client, String)> {
    let control_plane = ControlPlane::from_env().expect("the control plane")?;
    control_plane
        .install_stream_job_crd()
        .expect("the CRD installs");
    let kubeconfig = Kubeconfig::read_from(&control_plane.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let namespace = format!("{test}-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    Some((control_plane, client, namespace))
}

/// The configuration tests run the operator with: watching `namespace` only,
/// looking often.
pub fn test_config(namespace: &str) -> Config {
    let mut config = Config {
        namespace: Some(namespace.to_owned()),
        control_access: ControlAccess::PodIp,
        instance: format!("test-{namespace}"),
        ..Config::default()
    };
    config.decide.step_interval = Duration::from_millis(300);
    config.decide.poll_interval = Duration::from_secs(1);
    config.resources.default_image = "strom-runtime:test".into();
    config
}

/// A controller run with `config`, until the returned sender is dropped.
pub fn start_operator(client: &Client, config: Config) -> oneshot::Sender<()> {
    // The operator's warnings, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,strom_operator=info")
        .try_init();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    tokio::spawn(controller::run(
        client.clone(),
        config,
        Arc::new(Metrics::default()),
        shutdown,
    ));
    stop
}

/// Polls `check` until it returns `Some`, for at most 30 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies every document of an example manifest into `namespace`.
pub fn apply_file(control_plane: &ControlPlane, namespace: &str, path: &std::path::Path) {
    control_plane
        .run_kubectl(&["apply", "-n", namespace, "-f", &path.to_string_lossy()])
        .unwrap();
}

pub fn apply_text(control_plane: &ControlPlane, namespace: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, text).unwrap();
    apply_file(control_plane, namespace, &path);
}

pub async fn job(client: &Client, namespace: &str, name: &str) -> Option<StreamJob> {
    Api::<StreamJob>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
}

pub fn condition<'a>(job: &'a StreamJob, kind: &str) -> Option<&'a Condition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
}

/// Deletes job `name` and waits until it is gone (its finalizer taken off).
pub async fn delete_job(client: &Client, namespace: &str, name: &str) {
    let jobs: Api<StreamJob> = Api::namespaced(client.clone(), namespace);
    jobs.delete(name, &DeleteParams::default()).await.unwrap();
    eventually("the job gone", || async {
        job(client, namespace, name).await.is_none().then_some(())
    })
    .await;
}
