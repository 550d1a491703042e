//! Tests of jobs in pods, driven as a user drives them: kubectl and Helm against the
//! e2e cluster (kind: `e2e/kind/kind.sh`), the operator installed by its chart in a
//! namespace of the test's own, Kafka and MinIO as pods reach them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::unique;
use crate::services::service;
use crate::stack::{ControlPlane, KafkaClusters, S3Server};
use crate::workspace_root;

/// How long one step (a deploy, a rescale, a recovery) may take.
pub const STEP: Duration = Duration::from_secs(300);

/// What a test in pods runs against, found in the environment the scripts export.
pub struct PodServices {
    /// The cluster's kubectl and kubeconfig.
    pub plane: ControlPlane,
    /// Helm.
    pub helm: PathBuf,
    /// The operator's image, loaded into the cluster.
    pub operator_image: String,
    /// The runtime's image, loaded into the cluster.
    pub runtime_image: String,
    /// The Kafka clusters as this machine reaches them (to produce and check).
    pub kafka: KafkaClusters,
    /// The same clusters as pods reach them (a job's bootstrap servers).
    pub kafka_for_pods: KafkaClusters,
    /// MinIO, as this machine reaches it.
    pub s3: S3Server,
    /// Where pods reach this machine's services (MinIO).
    pub host_for_pods: String,
}

impl PodServices {
    /// The services, or `None` outside CI when the scripts did not run.
    pub fn from_env() -> Option<Self> {
        let what = "the e2e cluster";
        Some(Self {
            plane: ControlPlane::from_env().unwrap()?,
            helm: service("STROM_HELM", "Helm").unwrap()?.into(),
            operator_image: service("STROM_OPERATOR_IMAGE", what).unwrap()?,
            runtime_image: service("STROM_RUNTIME_IMAGE", what).unwrap()?,
            kafka: KafkaClusters::from_env().unwrap()?,
            kafka_for_pods: KafkaClusters::pods_from_env().unwrap()?,
            s3: S3Server::from_env().unwrap()?,
            host_for_pods: service("STROM_NODE_HOST_IP", what).unwrap()?,
        })
    }

    /// `spec.state` of a job keeping its state in MinIO under `prefix`, as pods reach
    /// it, with the Secret `s3-creds` ([`TestNamespace::create_s3_secret`]).
    pub fn state_spec(&self, prefix: &str, checkpoint_interval: &str) -> Value {
        let port = self.s3.endpoint.rsplit(':').next().unwrap_or("80");
        serde_json::json!({
            "checkpointInterval": checkpoint_interval,
            "storage": format!("s3://{}/{prefix}", self.s3.bucket),
            "storageSecret": {"name": "s3-creds"},
            "storageOptions": {
                "endpoint": format!("http://{}:{port}", self.host_for_pods),
                "region": self.s3.region,
                "allow_http": "true",
            },
        })
    }
}

/// A namespace of the test's own, removed when it is dropped (also when the test
/// fails), unless `STROM_E2E_KEEP` is set to look at what is left.
pub struct TestNamespace {
    /// What the test runs against.
    pub services: PodServices,
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// A new namespace named `<prefix>-<random>`, enforcing Pod Security
    /// "restricted": the operator and the jobs' pods must pass it.
    pub fn new(services: PodServices, prefix: &str) -> Self {
        let namespace = Self {
            services,
            name: unique(prefix),
        };
        namespace.kubectl_global(&["create", "namespace", &namespace.name]);
        namespace.kubectl_global(&[
            "label",
            "namespace",
            &namespace.name,
            "pod-security.kubernetes.io/enforce=restricted",
        ]);
        namespace
    }

    /// kubectl in the namespace; its output, or a panic showing what it said.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        self.kubectl_global(&all)
    }

    /// kubectl without a namespace.
    pub fn kubectl_global(&self, args: &[&str]) -> String {
        self.services
            .plane
            .run_kubectl(args)
            .unwrap_or_else(|error| panic!("kubectl {args:?}: {error}"))
    }

    /// `kubectl get ARGS -o json`.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).unwrap()
    }

    /// Applies `object` (a manifest as JSON).
    pub fn apply(&self, object: &Value) {
        self.kubectl_with_manifest("apply", object)
            .unwrap_or_else(|error| panic!("kubectl apply: {error}"));
    }

    /// The Secret `name` with `data` (key to value), created (not applied: an
    /// applied object keeps its values in the last-applied annotation).
    pub fn create_secret(&self, name: &str, data: Value) {
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "Opaque",
            "stringData": data,
        });
        self.kubectl_with_manifest("create", &secret)
            .unwrap_or_else(|error| panic!("creating Secret {name}: {error}"));
    }

    /// `kubectl <verb> -f` of `object` in the namespace, from a file only this
    /// user reads (manifests may hold Secrets' values), removed afterwards.
    fn kubectl_with_manifest(&self, verb: &str, object: &Value) -> Result<String, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::env::temp_dir().join(format!("{}.json", unique("manifest")));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut out| out.write_all(object.to_string().as_bytes()))
            .unwrap_or_else(|error| panic!("writing {}: {error}", file.display()));
        let done = self.services.plane.run_kubectl(&[
            verb,
            "-n",
            &self.name,
            "-f",
            &file.to_string_lossy(),
        ]);
        let _ = std::fs::remove_file(&file);
        done
    }

    /// The Secret `s3-creds` with MinIO's keys, as jobs' `state.storageSecret`.
    pub fn create_s3_secret(&self) {
        let s3 = &self.services.s3;
        self.create_secret(
            "s3-creds",
            serde_json::json!({
                "AWS_ACCESS_KEY_ID": s3.access_key_id,
                "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
            }),
        );
    }

    /// Helm in the namespace; its output, or a panic showing what it said.
    pub fn helm(&self, args: &[&str]) -> String {
        let kubeconfig = self
            .services
            .plane
            .kubeconfig
            .to_string_lossy()
            .into_owned();
        let output = std::process::Command::new(&self.services.helm)
            .args(["--kubeconfig", &kubeconfig, "--namespace", &self.name])
            .args(args)
            .output()
            .expect("helm runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "helm {args:?}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    /// The chart, from this checkout, watching this namespace, with the images
    /// loaded into the cluster (there is no registry to pull from). Helm installs
    /// a chart's CRD only where there is none and never upgrades it (users apply
    /// it on upgrades, README), so the checkout's CRD is applied first: the
    /// operator writes the status fields of this checkout.
    pub fn install_operator(&self) {
        self.services
            .plane
            .install_stream_job_crd()
            .unwrap_or_else(|error| panic!("applying the StreamJob CRD: {error}"));
        let (operator_repository, operator_tag) = split_image(&self.services.operator_image);
        let (runtime_repository, runtime_tag) = split_image(&self.services.runtime_image);
        let chart = workspace_root().join("charts/strom-operator");
        self.helm(&[
            "install",
            "strom",
            &chart.to_string_lossy(),
            "--set",
            &format!("watchNamespace={}", self.name),
            "--set",
            &format!("image.repository={operator_repository},image.tag={operator_tag}"),
            "--set",
            &format!("runtimeImage.repository={runtime_repository},runtimeImage.tag={runtime_tag}"),
            "--set",
            "image.pullPolicy=Never,runtimeImage.pullPolicy=Never",
            "--set",
            "savepointTimeoutSeconds=120",
            "--wait",
            "--timeout",
            "180s",
        ]);
    }

    /// `kubectl patch streamjob JOB --type merge` with `spec` (JSON) as its spec.
    pub fn patch_spec(&self, job: &str, spec: &str) {
        let patch = format!(r#"{{"spec":{spec}}}"#);
        self.kubectl(&["patch", "streamjob", job, "--type", "merge", "-p", &patch]);
    }

    /// The StreamJob `job`, if it exists.
    pub fn job(&self, job: &str) -> Option<Value> {
        let found = self.kubectl(&["get", "streamjob", job, "--ignore-not-found", "-o", "json"]);
        (!found.trim().is_empty()).then(|| serde_json::from_str(&found).unwrap())
    }

    /// Waits until `check` holds for `job`, noting the phases it passes through.
    pub fn wait_for(
        &self,
        job: &str,
        what: &str,
        phases: &mut Vec<String>,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let found = self.job(job).expect("the job exists");
            let phase = found["status"]["phase"].as_str().unwrap_or("").to_owned();
            if phases.last() != Some(&phase) {
                eprintln!("{job} ({what}): {phase}");
                phases.push(phase);
            }
            if check(&found) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.diagnosis(job)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until `job` runs at `parallelism` on `pods` ready pods.
    pub fn wait_running_at(
        &self,
        job: &str,
        parallelism: i64,
        pods: usize,
        phases: &mut Vec<String>,
    ) -> Value {
        let found = self.wait_for(job, &format!("running at {parallelism}"), phases, |found| {
            running_at(found, parallelism)
        });
        let deadline = Instant::now() + STEP;
        // Exactly `pods` pods, every one ready: none more, ready or not.
        while self.ready_runtime_pods(job) != pods || self.runtime_pods(job).len() != pods {
            assert!(
                Instant::now() < deadline,
                "{pods} pod(s), all ready, expected at parallelism {parallelism}\n{}",
                self.diagnosis(job)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        found
    }

    /// What a failed wait shows: the job's status, the pods, the ends of their logs.
    pub fn diagnosis(&self, job: &str) -> String {
        let status = self
            .job(job)
            .map(|found| found["status"].clone())
            .unwrap_or_default();
        let mut text = format!(
            "job status: {status:#}\npods:\n{}",
            self.kubectl(&["get", "pods", "-o", "wide"])
        );
        for pod in self.runtime_pods(job) {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            for previous in ["--previous=false", "--previous=true"] {
                let logs = self
                    .services
                    .plane
                    .run_kubectl(&["-n", &self.name, "logs", name, previous, "--tail=15"])
                    .unwrap_or_else(|error| error);
                text.push_str(&format!("\nlogs of {name} ({previous}):\n{logs}"));
            }
        }
        text
    }

    /// The runtime pods of `job`.
    pub fn runtime_pods(&self, job: &str) -> Vec<Value> {
        let list = self.get_json(&["pods", "-l", &format!("strom.dev/job={job}")]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// How many of `job`'s runtime pods are ready (and not being deleted).
    pub fn ready_runtime_pods(&self, job: &str) -> usize {
        self.runtime_pods(job)
            .iter()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .filter(|pod| {
                pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count()
    }

    /// The StreamJobs' Events, oldest first, as (reason, message).
    pub fn events(&self) -> Vec<(String, String)> {
        let list = self.get_json(&[
            "events",
            "--field-selector",
            "involvedObject.kind=StreamJob",
        ]);
        let mut events: Vec<(String, String, String)> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|event| {
                let time = [
                    &event["eventTime"],
                    &event["firstTimestamp"],
                    &event["metadata"]["creationTimestamp"],
                ]
                .into_iter()
                .find_map(|t| t.as_str())
                .unwrap_or_default()
                .to_owned();
                (
                    time,
                    event["reason"].as_str().unwrap_or_default().to_owned(),
                    event["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        events.sort();
        events
            .into_iter()
            .map(|(_, reason, message)| (reason, message))
            .collect()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("STROM_E2E_KEEP").is_some() {
            eprintln!("STROM_E2E_KEEP is set: keeping namespace {}", self.name);
            return;
        }
        // The operator goes first (it would put a finalizer back), then the
        // finalizers of jobs a failed step left behind: they would keep the
        // namespace once the operator is gone.
        let plane = &self.services.plane;
        let kubeconfig = plane.kubeconfig.to_string_lossy().into_owned();
        let _ = std::process::Command::new(&self.services.helm)
            .args(["--kubeconfig", &kubeconfig, "--namespace", &self.name])
            .args(["uninstall", "strom", "--wait", "--timeout", "60s"])
            .output();
        if let Ok(jobs) = plane.run_kubectl(&["-n", &self.name, "get", "streamjobs", "-o", "name"])
        {
            for job in jobs.lines() {
                let _ = plane.run_kubectl(&[
                    "-n",
                    &self.name,
                    "patch",
                    job,
                    "--type",
                    "merge",
                    "-p",
                    r#"{"metadata":{"finalizers":[]}}"#,
                ]);
            }
        }
        let _ = plane.run_kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// `repository:tag` split in two (`latest` when there is no tag).
pub fn split_image(image: &str) -> (&str, &str) {
    image.rsplit_once(':').unwrap_or((image, "latest"))
}

/// Whether the job runs at `parallelism` and says it is ready.
pub fn running_at(job: &Value, parallelism: i64) -> bool {
    let status = &job["status"];
    status["phase"] == "Running"
        && status["parallelism"] == parallelism
        && status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The body of `GET path` from `host:port` (a pod: the e2e cluster routes its pod
/// network from this machine).
pub fn http_get(host: &str, port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("no address for {host}:{port}"));
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("connecting to {host}:{port}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path} from {host}: {head}"
    );
    body.to_owned()
}
