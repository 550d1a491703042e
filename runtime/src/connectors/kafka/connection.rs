//! How a job connects to one of its named Kafka clusters: the librdkafka properties
//! built from a `spec.kafkaClusters` entry and the Secrets it references, which are
//! mounted as files (a folder per Secret, a file per key).
//!
//! Secret values (SASL passwords) live only in [`ClusterConnection`]'s properties:
//! its `Debug` output, and every error of this module, name the Secret and key but
//! never the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use strom_crds::{AuthenticationType, KafkaAuthentication, KafkaCluster};

/// Where the operator mounts Secrets in a runtime pod: `<root>/<secret>/<key>`.
pub const DEFAULT_SECRETS_ROOT: &str = "/etc/strom/secrets";

/// librdkafka properties whose values are secrets: never printed.
const SECRET_PROPERTIES: &[&str] = &["sasl.password", "ssl.key.password", "ssl.key.pem"];

/// Why a cluster connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// A source or sink names a cluster the job does not define.
    #[error("Kafka cluster {name:?} is not in spec.kafkaClusters (the job has: {known})")]
    UnknownCluster {
        /// The name asked for.
        name: String,
        /// The clusters the job defines, comma-separated.
        known: String,
    },
    /// A key of a Secret the cluster needs is not mounted or not readable.
    #[error(
        "Kafka cluster {cluster}: cannot read key {key:?} of Secret {secret:?} \
         (mounted at {}): {source}", path.display()
    )]
    Secret {
        /// The cluster.
        cluster: String,
        /// The Secret's name.
        secret: String,
        /// The key within the Secret.
        key: String,
        /// Where the key was looked for.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

/// The mounted Secrets of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMounts {
    root: PathBuf,
    per_cluster: bool,
}

impl SecretMounts {
    /// Secrets mounted under `root`, one folder per Secret: `<root>/<secret>/<key>`
    /// (how a developer or a test lays them out).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            per_cluster: false,
        }
    }

    /// Secrets mounted under `root` as the operator mounts them in a pod, one
    /// folder per cluster: `<root>/<cluster>/<secret>/<key>`.
    pub fn per_cluster(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            per_cluster: true,
        }
    }

    /// Where the key `key` of the Secret `secret` is mounted for `cluster`.
    pub fn path(&self, cluster: &str, secret: &str, key: &str) -> PathBuf {
        let root = if self.per_cluster {
            self.root.join(cluster)
        } else {
            self.root.clone()
        };
        root.join(secret).join(key)
    }

    /// The path of a key that must exist (a certificate or key file librdkafka reads
    /// itself), checked now so that a missing one is named clearly.
    fn existing_path(
        &self,
        cluster: &str,
        secret: &str,
        key: &str,
    ) -> Result<PathBuf, ConnectionError> {
        let path = self.path(cluster, secret, key);
        std::fs::metadata(&path)
            .map(|_| path.clone())
            .map_err(|source| secret_error(cluster, secret, key, &path, source))
    }

    /// The value of a key, less one trailing newline (which editors add to files
    /// written by hand).
    fn value(&self, cluster: &str, secret: &str, key: &str) -> Result<String, ConnectionError> {
        let path = self.path(cluster, secret, key);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| secret_error(cluster, secret, key, &path, source))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
    }
}

fn secret_error(
    cluster: &str,
    secret: &str,
    key: &str,
    path: &Path,
    source: std::io::Error,
) -> ConnectionError {
    ConnectionError::Secret {
        cluster: cluster.to_owned(),
        secret: secret.to_owned(),
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    }
}

/// Everything a Kafka client of one named cluster is configured with.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConnection {
    /// The cluster's name in `spec.kafkaClusters`.
    pub name: String,
    /// The authentication mechanism, for error messages.
    pub mechanism: AuthenticationType,
    /// The SASL user, if any, for error messages.
    pub username: Option<String>,
    properties: BTreeMap<String, String>,
}

impl ClusterConnection {
    /// The connection to `cluster`, its credentials read from `secrets`.
    pub fn new(cluster: &KafkaCluster, secrets: &SecretMounts) -> Result<Self, ConnectionError> {
        let name = cluster.name.clone();
        let mut properties = BTreeMap::new();
        let mut set = |key: &str, value: String| {
            properties.insert(key.to_owned(), value);
        };
        set("bootstrap.servers", cluster.bootstrap_servers.clone());
        let tls = cluster.tls.is_some();
        if let Some(tls) = &cluster.tls {
            // Several CAs go to librdkafka as one PEM bundle.
            let mut bundle = String::new();
            for ca in &tls.trusted_certificates {
                bundle.push_str(&secrets.value(&name, &ca.secret_name, &ca.certificate)?);
                bundle.push('\n');
            }
            if !bundle.is_empty() {
                set("ssl.ca.pem", bundle);
            }
        }
        let mechanism = cluster
            .authentication
            .as_ref()
            .map_or(AuthenticationType::None, KafkaAuthentication::mechanism);
        let mut username = None;
        let protocol = match &cluster.authentication {
            None | Some(KafkaAuthentication::Anonymous) => {
                if tls {
                    "ssl"
                } else {
                    "plaintext"
                }
            }
            Some(
                KafkaAuthentication::Plain(sasl)
                | KafkaAuthentication::ScramSha256(sasl)
                | KafkaAuthentication::ScramSha512(sasl),
            ) => {
                let sasl_mechanism = match mechanism {
                    AuthenticationType::Plain => "PLAIN",
                    AuthenticationType::ScramSha256 => "SCRAM-SHA-256",
                    _ => "SCRAM-SHA-512",
                };
                set("sasl.mechanism", sasl_mechanism.to_owned());
                set("sasl.username", sasl.username.clone());
                let secret = &sasl.password_secret;
                set(
                    "sasl.password",
                    secrets.value(&name, &secret.secret_name, &secret.password)?,
                );
                username = Some(sasl.username.clone());
                if tls { "sasl_ssl" } else { "sasl_plaintext" }
            }
            Some(KafkaAuthentication::Tls(certificate_and_key)) => {
                let secret = &certificate_and_key.secret_name;
                let certificate =
                    secrets.existing_path(&name, secret, &certificate_and_key.certificate)?;
                let key = secrets.existing_path(&name, secret, &certificate_and_key.key)?;
                set("ssl.certificate.location", path_text(&certificate));
                set("ssl.key.location", path_text(&key));
                "ssl"
            }
        };
        set("security.protocol", protocol.to_owned());
        for (key, value) in &cluster.config {
            set(key, value.clone());
        }
        Ok(Self {
            name,
            mechanism,
            username,
            properties,
        })
    }

    /// The connection named `name` among the job's `clusters`.
    pub fn find(
        clusters: &[KafkaCluster],
        name: &str,
        secrets: &SecretMounts,
    ) -> Result<Self, ConnectionError> {
        let cluster = clusters
            .iter()
            .find(|cluster| cluster.name == name)
            .ok_or_else(|| ConnectionError::UnknownCluster {
                name: name.to_owned(),
                known: clusters
                    .iter()
                    .map(|cluster| cluster.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Self::new(cluster, secrets)
    }

    /// A connection from raw librdkafka properties (tests, benchmarks).
    pub fn from_properties(
        name: &str,
        properties: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            mechanism: AuthenticationType::None,
            username: None,
            properties: properties.into_iter().collect(),
        }
    }

    /// A librdkafka client configuration for this cluster, with `extra` properties
    /// (client id, consumer or producer settings) on top.
    pub fn client_config<'a>(
        &self,
        extra: impl IntoIterator<Item = (&'a str, String)>,
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        for (key, value) in extra {
            config.set(key, value);
        }
        config
    }

    /// This connection with the client settings `extra` added (a SQL table's
    /// `properties.*`; never connection or security settings, which planning
    /// refuses).
    pub fn with_properties(&self, extra: &BTreeMap<String, String>) -> Self {
        let mut connection = self.clone();
        for (key, value) in extra {
            connection.properties.insert(key.clone(), value.clone());
        }
        connection
    }

    /// Who connects, for error messages: the mechanism and user, never the secret.
    pub fn identity(&self) -> String {
        match &self.username {
            Some(user) => format!("{} as user {user:?}", self.mechanism),
            None => self.mechanism.to_string(),
        }
    }
}

impl fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if SECRET_PROPERTIES.contains(&key.as_str()) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("ClusterConnection")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .field("properties", &properties)
            .finish()
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> KafkaCluster {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn mounts(files: &[(&str, &str, &str)]) -> (tempfile::TempDir, SecretMounts) {
        let dir = tempfile::tempdir().unwrap();
        for (secret, key, value) in files {
            std::fs::create_dir_all(dir.path().join(secret)).unwrap();
            std::fs::write(dir.path().join(secret).join(key), value).unwrap();
        }
        let mounts = SecretMounts::new(dir.path());
        (dir, mounts)
    }

    fn property(connection: &ClusterConnection, key: &str) -> Option<String> {
        connection.client_config([]).get(key).map(ToOwned::to_owned)
    }

    #[test]
    fn pods_find_each_clusters_keys_in_its_own_folder() {
        let pod = SecretMounts::per_cluster("/etc/strom/secrets");
        assert_eq!(
            pod.path("us", "us-reader", "password"),
            Path::new("/etc/strom/secrets/us/us-reader/password")
        );
        let local = SecretMounts::new("/secrets");
        assert_eq!(
            local.path("us", "us-reader", "password"),
            Path::new("/secrets/us-reader/password")
        );
    }

    #[test]
    fn plaintext_needs_no_secrets() {
        let (_dir, mounts) = mounts(&[]);
        let connection = ClusterConnection::new(
            &cluster("{name: a, bootstrapServers: 'k:9092', config: {client.rack: z1}}"),
            &mounts,
        )
        .unwrap();
        assert_eq!(
            property(&connection, "security.protocol").as_deref(),
            Some("plaintext")
        );
        assert_eq!(property(&connection, "client.rack").as_deref(), Some("z1"));
    }

    #[test]
    fn scram_reads_the_password_and_never_shows_it() {
        let (_dir, mounts) = mounts(&[("b-app", "password", "s3cr3t\n")]);
        let connection = ClusterConnection::new(
            &cluster(
                "{name: b, bootstrapServers: 'k:9093', authentication: {type: scram-sha-512, \
                 username: app, passwordSecret: {secretName: b-app, password: password}}}",
            ),
            &mounts,
        )
        .unwrap();
        assert_eq!(
            property(&connection, "security.protocol").as_deref(),
            Some("sasl_plaintext")
        );
        assert_eq!(
            property(&connection, "sasl.mechanism").as_deref(),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(
            property(&connection, "sasl.password").as_deref(),
            Some("s3cr3t")
        );
        let debug = format!("{connection:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(connection.identity(), "scram-sha-512 as user \"app\"");
    }

    #[test]
    fn mutual_tls_points_at_the_mounted_files_and_bundles_the_cas() {
        let (dir, mounts) = mounts(&[
            ("c-ca", "ca.crt", "CA ONE"),
            ("c-ca-2", "ca.crt", "CA TWO"),
            ("c-app", "user.crt", "CERT"),
            ("c-app", "user.key", "KEY"),
        ]);
        let connection = ClusterConnection::new(
            &cluster(
                "{name: c, bootstrapServers: 'k:9094', tls: {trustedCertificates: \
                 [{secretName: c-ca, certificate: ca.crt}, {secretName: c-ca-2, certificate: ca.crt}]}, \
                 authentication: {type: tls, certificateAndKey: \
                 {secretName: c-app, certificate: user.crt, key: user.key}}}",
            ),
            &mounts,
        )
        .unwrap();
        assert_eq!(
            property(&connection, "security.protocol").as_deref(),
            Some("ssl")
        );
        assert_eq!(
            property(&connection, "ssl.ca.pem").as_deref(),
            Some("CA ONE\nCA TWO\n")
        );
        assert_eq!(
            property(&connection, "ssl.key.location"),
            Some(path_text(&dir.path().join("c-app/user.key")))
        );
    }

    #[test]
    fn a_missing_secret_key_is_named_without_a_value() {
        let (_dir, mounts) = mounts(&[("c-app", "user.crt", "CERT")]);
        let error = ClusterConnection::new(
            &cluster(
                "{name: c, bootstrapServers: 'k:9094', tls: {}, authentication: {type: tls, \
                 certificateAndKey: {secretName: c-app, certificate: user.crt, key: user.key}}}",
            ),
            &mounts,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message
                .starts_with("Kafka cluster c: cannot read key \"user.key\" of Secret \"c-app\""),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_cluster_lists_the_known_ones() {
        let (_dir, mounts) = mounts(&[]);
        let clusters = [cluster("{name: a, bootstrapServers: 'k:9092'}")];
        let error = ClusterConnection::find(&clusters, "eu", &mounts).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Kafka cluster \"eu\" is not in spec.kafkaClusters (the job has: a)"
        );
    }
}
