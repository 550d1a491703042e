//! `strom-operator`: the Kubernetes operator that runs StreamJobs.
//!
//! Reads its cluster from `KUBECONFIG` or the pod's service account, takes the
//! leader Lease, serves `/metrics` and `/healthz`, and reconciles StreamJobs until
//! it is stopped or loses the Lease.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use strom_operator::controller::{self, Config};
use strom_operator::leader::LeaderElection;
use strom_operator::metrics::Metrics;
use strom_operator::observe::ControlAccess;

/// The Strom operator.
#[derive(Parser, Debug)]
#[command(name = "strom-operator", version, about)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "STROM_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Runtime image of jobs that do not name one.
    #[arg(long, env = "STROM_RUNTIME_IMAGE")]
    runtime_image: Option<String>,
    /// Pull policy of the runtime image.
    #[arg(long, env = "STROM_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    image_pull_policy: String,
    /// Where `/metrics` and `/healthz` are served.
    #[arg(long, env = "STROM_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long the leader Lease holds without renewal, in seconds: how long the
    /// other replica waits after the leader dies.
    #[arg(long, env = "STROM_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// How long a savepoint may take, in seconds.
    #[arg(long, env = "STROM_SAVEPOINT_TIMEOUT_SECONDS", default_value_t = 300)]
    savepoint_timeout: u64,
    /// How long a deployment's pods may take to run, and old pods to go, before
    /// the job is reported stuck (Degraded, a Warning Event), in seconds.
    #[arg(long, env = "STROM_STEP_TIMEOUT_SECONDS", default_value_t = 300)]
    step_timeout: u64,
    /// Failed savepoint attempts after which a rescale or upgrade is given up
    /// (the job keeps running its previous spec, Degraded, until the spec changes).
    #[arg(long, env = "STROM_MAX_SAVEPOINT_ATTEMPTS", default_value_t = 5)]
    max_savepoint_attempts: i32,
    /// Reach every job's control API at this URL instead of its Service's DNS name
    /// (an operator run outside the cluster, through a port-forward).
    #[arg(long, env = "STROM_CONTROL_URL", conflicts_with = "control_via_pod_ip")]
    control_url: Option<String>,
    /// Reach each job's control API at its pod 0's IP address instead of its
    /// Service's DNS name (an operator on a node, without cluster DNS).
    #[arg(long, env = "STROM_CONTROL_VIA_POD_IP")]
    control_via_pod_ip: bool,
    /// Log as JSON lines (in pods).
    #[arg(long, env = "STROM_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (KUBECONFIG or in-cluster service account)")?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("strom-operator-{}", uuid::Uuid::new_v4()));
    let metrics = Arc::new(Metrics::default());
    serve_metrics(args.metrics_address, Arc::clone(&metrics)).await?;

    let leader = LeaderElection::new(
        client.clone(),
        &args.lease_namespace,
        "strom-operator-leader",
        &identity,
        Duration::from_secs(args.lease_duration.max(1)),
    );
    let acquired = leader.acquire().await?;
    tracing::info!(%identity, "leading: reconciling StreamJobs");

    let mut config = Config {
        namespace: args.namespace,
        instance: identity,
        ..Config::default()
    };
    if let Some(image) = args.runtime_image {
        config.resources.default_image = image;
    }
    config.resources.image_pull_policy = args.image_pull_policy;
    config.decide.savepoint_timeout = Duration::from_secs(args.savepoint_timeout);
    config.decide.step_timeout = Duration::from_secs(args.step_timeout);
    config.decide.max_savepoint_attempts = args.max_savepoint_attempts.max(1);
    if let Some(url) = args.control_url {
        config.control_access = ControlAccess::Fixed(url);
    } else if args.control_via_pod_ip {
        config.control_access = ControlAccess::PodIp;
    }

    let keeper = leader.clone();
    let (lost_sender, lost) = tokio::sync::oneshot::channel();
    let keeping = tokio::spawn(async move {
        let error = keeper.keep(acquired).await;
        let _ = lost_sender.send(error);
    });
    let (stop_sender, stop) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop.await;
    };
    let mut controller = tokio::spawn(controller::run(client, config, metrics, shutdown));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    tokio::select! {
        error = lost => {
            // Another may lead soon: nothing more is written, in-flight
            // reconciles included.
            controller.abort();
            let error = error.map_or_else(|_| "the Lease keeper ended".to_owned(), |e| e.to_string());
            anyhow::bail!("{error}");
        }
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        _ = terminate.recv() => tracing::info!("terminated: stopping"),
    }
    // Stopped on request, still leading: in-flight reconciles end (within a
    // third of the Lease), then the Lease is given up so a successor (the next
    // pod of a rolling update) leads at once.
    let _ = stop_sender.send(());
    let last_writes = leader.duration / 3;
    if tokio::time::timeout(last_writes, &mut controller)
        .await
        .is_err()
    {
        tracing::warn!("reconciles still running at exit were cut short");
        controller.abort();
    }
    keeping.abort();
    if let Err(error) = leader.release().await {
        tracing::warn!(%error, "cannot release the Lease; a successor waits for it to expire");
    }
    tracing::info!("stopped; Lease released");
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve_metrics(address: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use axum::routing::get;
    let router = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move { metrics.encode() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot serve metrics on {address}"))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(())
}
