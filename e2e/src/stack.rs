//! The services of `e2e/infra/stack.sh`, as tests see them: addresses from the
//! environment the scripts export, credentials from the files they wrote (laid out
//! as Kubernetes mounts Secrets: a folder per Secret, a file per key).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::services::{ServiceError, service};

/// The three Kafka clusters of `e2e/infra/kafka.sh`, as this machine or as pods reach
/// them ([`KafkaClusters::from_env`], [`KafkaClusters::pods_from_env`]).
#[derive(Debug, Clone)]
pub struct KafkaClusters {
    /// Bootstrap address of cluster A: PLAINTEXT, no authorization.
    pub a: String,
    /// Bootstrap address of cluster B: SASL_PLAINTEXT with SCRAM-SHA-512 users.
    pub b: String,
    /// Cluster B's listener for the same users with SCRAM-SHA-256.
    pub b_sha256: String,
    /// Bootstrap address of cluster C: SSL with client certificates.
    pub c: String,
    /// Cluster C's SASL_SSL listener: one-way TLS (the client checks the broker's
    /// certificate, signed by C's CA) and SCRAM-SHA-512 users, whose passwords are
    /// in `kafka-c-scram-<user>/password`.
    pub c_one_way: String,
    /// The folder of mounted Secrets: `kafka-b-<user>/password`,
    /// `kafka-c-<user>/{user.crt,user.key,ca.crt}`, `kafka-c-scram-<user>/password`,
    /// `kafka-c-cluster-ca-cert/ca.crt`.
    pub secrets: PathBuf,
}

impl KafkaClusters {
    /// The clusters as this machine reaches them, or `None` outside CI when the
    /// scripts did not run.
    pub fn from_env() -> Result<Option<Self>, ServiceError> {
        Self::load("", "")
    }

    /// The same listeners as pods of the e2e cluster reach them (the host's address
    /// for pods), or `None` outside CI when the scripts did not run.
    pub fn pods_from_env() -> Result<Option<Self>, ServiceError> {
        Self::load("_POD", " for pods")
    }

    fn load(variant: &str, what: &str) -> Result<Option<Self>, ServiceError> {
        let listener = |name: &str, description: &str| {
            service(
                &format!("STROM_KAFKA_{name}{variant}_BOOTSTRAP"),
                &format!("{description}{what}"),
            )
        };
        let Some(a) = listener("A", "Kafka cluster A")? else {
            return Ok(None);
        };
        let Some(b) = listener("B", "Kafka cluster B")? else {
            return Ok(None);
        };
        let Some(b_sha256) = listener("B_SHA256", "Kafka cluster B's SCRAM-SHA-256 listener")?
        else {
            return Ok(None);
        };
        let Some(c) = listener("C", "Kafka cluster C")? else {
            return Ok(None);
        };
        let Some(c_one_way) = listener("C_ONE_WAY", "Kafka cluster C's SASL_SSL listener")? else {
            return Ok(None);
        };
        let Some(secrets) = service("STROM_KAFKA_SECRETS", "the Kafka users' Secrets")? else {
            return Ok(None);
        };
        Ok(Some(Self {
            a,
            b,
            b_sha256,
            c,
            c_one_way,
            secrets: secrets.into(),
        }))
    }

    /// Where the key `key` of the Secret `secret` is mounted.
    pub fn secret_file(&self, secret: &str, key: &str) -> PathBuf {
        self.secrets.join(secret).join(key)
    }

    /// The value of the key `key` of the Secret `secret`.
    pub fn secret_value(&self, secret: &str, key: &str) -> Result<String, ServiceError> {
        read(&self.secret_file(secret, key), "a Kafka user")
    }
}

/// The S3-compatible server of `e2e/infra/minio.sh`.
#[derive(Clone)]
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// A bucket that exists and that these keys may use.
    pub bucket: String,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (never printed: see the `Debug` impl).
    pub secret_access_key: String,
}

impl S3Server {
    /// The server, or `None` outside CI when the scripts did not run.
    pub fn from_env() -> Result<Option<Self>, ServiceError> {
        let what = "the S3 server";
        let Some(endpoint) = service("STROM_S3_ENDPOINT", what)? else {
            return Ok(None);
        };
        let Some(bucket) = service("STROM_S3_BUCKET", what)? else {
            return Ok(None);
        };
        let Some(region) = service("STROM_S3_REGION", what)? else {
            return Ok(None);
        };
        let Some(credentials) = service("STROM_S3_CREDENTIALS", what)? else {
            return Ok(None);
        };
        let credentials = PathBuf::from(credentials);
        Ok(Some(Self {
            endpoint,
            bucket,
            region,
            access_key_id: read(&credentials.join("AWS_ACCESS_KEY_ID"), what)?,
            secret_access_key: read(&credentials.join("AWS_SECRET_ACCESS_KEY"), what)?,
        }))
    }
}

impl S3Server {
    /// A client of the bucket, as the runtime makes one.
    pub fn store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .build()
            .expect("an S3 client of the test server")
    }
}

impl fmt::Debug for S3Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The Kubernetes control plane of `e2e/infra/kubernetes.sh`.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// A kubeconfig of a cluster administrator (`system:masters`).
    pub kubeconfig: PathBuf,
    /// The `kubectl` built with the control plane.
    pub kubectl: PathBuf,
}

impl ControlPlane {
    /// The control plane, or `None` outside CI when the scripts did not run.
    pub fn from_env() -> Result<Option<Self>, ServiceError> {
        let what = "the Kubernetes control plane";
        let Some(kubeconfig) = service("STROM_KUBECONFIG", what)? else {
            return Ok(None);
        };
        let Some(kubectl) = service("STROM_KUBECTL", what)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            kubeconfig: kubeconfig.into(),
            kubectl: kubectl.into(),
        }))
    }

    /// A `kubectl` command against this control plane; each of its requests
    /// gives up after 90 s (an apiserver that stopped answering fails the test
    /// instead of hanging it).
    pub fn kubectl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=90s");
        command
    }

    /// Runs kubectl with `args`; its standard output, or what it printed on failure.
    pub fn run_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let output = self
            .kubectl()
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.kubectl.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "kubectl {} failed: {stdout}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Installs the StreamJob CRD of the Helm chart (server-side apply) and waits
    /// until the apiserver serves it.
    pub fn install_stream_job_crd(&self) -> Result<(), String> {
        let crd = crate::workspace_root().join(STREAM_JOB_CRD);
        let crd = crd.to_string_lossy();
        self.run_kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &crd])?;
        // Polled rather than `kubectl wait` (or a jsonpath filter), which fail at
        // once on a CRD whose status has no conditions yet (just created).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let crd = self.run_kubectl(&["get", "crd/streamjobs.strom.dev", "-o", "json"])?;
            let crd: serde_json::Value = serde_json::from_str(&crd)
                .map_err(|e| format!("kubectl printed a CRD that is not JSON: {e}"))?;
            let conditions = crd["status"]["conditions"].as_array().cloned();
            let established = conditions.iter().flatten().any(|condition| {
                condition["type"] == "Established" && condition["status"] == "True"
            });
            if established {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "the StreamJob CRD was not Established within 60 s (conditions: {conditions:?})"
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// The StreamJob CRD in the Helm chart, relative to the workspace root.
pub const STREAM_JOB_CRD: &str = "charts/strom-operator/crds/streamjobs.strom.dev.yaml";

/// The content of a file the scripts wrote, without a trailing newline.
fn read(path: &Path, what: &str) -> Result<String, ServiceError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end().to_owned())
        .map_err(|source| ServiceError::Unreadable {
            path: path.to_owned(),
            what: what.to_owned(),
            source,
        })
}
