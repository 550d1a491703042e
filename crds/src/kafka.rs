//! Kafka cluster connections of a StreamJob.
//!
//! The credential references copy the shapes of Strimzi's `KafkaClientAuthentication`
//! (`passwordSecret`, `certificateAndKey`, `trustedCertificates`), so the Secrets that a
//! Strimzi `KafkaUser` or `Kafka` resource creates plug in unchanged. Only references
//! live here: the operator mounts the referenced keys as files, one directory per
//! cluster, and the runtime reads them from there.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most Kafka clusters one job may name. A bound keeps the apiserver's CEL cost
/// estimate of the uniqueness rule small.
pub const MAX_KAFKA_CLUSTERS: usize = 16;

/// One named Kafka cluster that the job's sources and sinks refer to by `name`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.authentication) || self.authentication.type != 'tls' || has(self.tls)")
        .message("authentication type tls (client certificate) needs tls to be set on the cluster")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaCluster {
    /// Name by which SQL tables (`cluster = '<name>'`) and pipelines refer to this
    /// cluster. A lowercase DNS label (it names the directory its credentials are
    /// mounted in), unique within the job.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("size(self) <= 63 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("cluster name must be a lowercase DNS label: a-z, 0-9 and '-', at most 63 characters"))]
    pub name: String,

    /// Comma-separated `host:port` list of bootstrap brokers, e.g.
    /// `kafka-eu-kafka-bootstrap:9093`.
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.matches('^[^,: ]+:[0-9]+(,[^,: ]+:[0-9]+)*$')")
        .message("bootstrapServers must be a comma-separated list of host:port"))]
    pub bootstrap_servers: String,

    /// TLS settings. When present, connections to this cluster use TLS
    /// (SSL or SASL_SSL); when absent, they are plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,

    /// How the job authenticates to this cluster. Absent means no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<KafkaAuthentication>,

    /// Extra librdkafka client properties (e.g. `client.rack`, `fetch.max.bytes`),
    /// applied to every consumer and producer of this cluster. Properties that carry
    /// secrets (`sasl.password`, `ssl.key.password`, ...) are refused: reference a
    /// Secret through `authentication` instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    #[x_kube(validation = Rule::new(
        "!self.exists(k, k in ['sasl.password', 'sasl.oauthbearer.client.secret', 'ssl.key.password', 'ssl.key.pem', 'ssl.keystore.password', 'ssl_key'])")
        .message("config may not hold secrets (sasl.password, ssl.key.password, ...): reference a Secret through authentication or tls"))]
    pub config: BTreeMap<String, String>,
}

/// TLS settings of a Kafka cluster connection.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// CA certificates that the brokers' certificates are checked against, each from a
    /// Secret (Strimzi's `<cluster>-cluster-ca-cert` works as is). Empty means the
    /// system's trusted CAs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_certificates: Vec<CertSecretSource>,
}

/// Client authentication to a Kafka cluster, shaped like Strimzi's
/// `KafkaClientAuthentication`: `type` picks the mechanism and the other fields give
/// its credentials.
///
/// In a manifest it is written as [`AuthenticationFields`], one flat object, which
/// is what Kubernetes' structural schemas can describe and what Strimzi users know.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(try_from = "AuthenticationFields", into = "AuthenticationFields")]
pub enum KafkaAuthentication {
    /// No client authentication (the same as leaving `authentication` out).
    Anonymous,
    /// SASL PLAIN with a username and a password from a Secret.
    Plain(SaslCredentials),
    /// SASL SCRAM-SHA-256 with a username and a password from a Secret.
    ScramSha256(SaslCredentials),
    /// SASL SCRAM-SHA-512 with a username and a password from a Secret (what a
    /// Strimzi `KafkaUser` with `scram-sha-512` authentication creates).
    ScramSha512(SaslCredentials),
    /// TLS client certificate (mutual TLS). Needs `tls` on the cluster. The Secret
    /// keys are what a Strimzi `KafkaUser` with `tls` authentication creates
    /// (`user.crt`, `user.key`).
    Tls(CertAndKeySecretSource),
}

/// Username and password of a SASL mechanism.
#[derive(Clone, Debug, PartialEq)]
pub struct SaslCredentials {
    /// SASL username.
    pub username: String,
    /// Secret key that holds the password.
    pub password_secret: PasswordSecretSource,
}

impl KafkaAuthentication {
    /// The mechanism, as written in the manifest's `type` field.
    pub fn mechanism(&self) -> AuthenticationType {
        match self {
            Self::Anonymous => AuthenticationType::None,
            Self::Plain(_) => AuthenticationType::Plain,
            Self::ScramSha256(_) => AuthenticationType::ScramSha256,
            Self::ScramSha512(_) => AuthenticationType::ScramSha512,
            Self::Tls(_) => AuthenticationType::Tls,
        }
    }
}

impl JsonSchema for KafkaAuthentication {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        AuthenticationFields::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        AuthenticationFields::json_schema(generator)
    }
}

/// [`KafkaAuthentication`] as written in a manifest: one object whose `type` picks the
/// mechanism, with CEL rules for which fields each mechanism needs.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!(self.type in ['plain', 'scram-sha-256', 'scram-sha-512']) || (has(self.username) && has(self.passwordSecret))")
        .message(NEEDS_USERNAME_AND_PASSWORD),
    validation = Rule::new("self.type in ['plain', 'scram-sha-256', 'scram-sha-512'] || (!has(self.username) && !has(self.passwordSecret))")
        .message(ONLY_SASL_HAS_PASSWORD),
    validation = Rule::new("self.type != 'tls' || has(self.certificateAndKey)")
        .message(NEEDS_CERTIFICATE_AND_KEY),
    validation = Rule::new("self.type == 'tls' || !has(self.certificateAndKey)")
        .message(ONLY_TLS_HAS_CERTIFICATE),
)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationFields {
    /// Mechanism: `none`, `plain` (SASL PLAIN), `scram-sha-256`, `scram-sha-512`
    /// (SASL SCRAM) or `tls` (client certificate).
    pub r#type: AuthenticationType,
    /// SASL username; for `plain`, `scram-sha-256` and `scram-sha-512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret key that holds the SASL password; for `plain`, `scram-sha-256` and
    /// `scram-sha-512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<PasswordSecretSource>,
    /// Secret keys that hold the client certificate and its private key, PEM encoded;
    /// for `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_and_key: Option<CertAndKeySecretSource>,
}

const NEEDS_USERNAME_AND_PASSWORD: &str =
    "authentication types plain, scram-sha-256 and scram-sha-512 need username and passwordSecret";
const ONLY_SASL_HAS_PASSWORD: &str = "username and passwordSecret apply only to authentication types plain, scram-sha-256 and scram-sha-512";
const NEEDS_CERTIFICATE_AND_KEY: &str = "authentication type tls needs certificateAndKey";
const ONLY_TLS_HAS_CERTIFICATE: &str = "certificateAndKey applies only to authentication type tls";

/// The mechanisms of [`KafkaAuthentication`], as written in `type`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    /// No client authentication.
    #[serde(rename = "none")]
    None,
    /// SASL PLAIN.
    #[serde(rename = "plain")]
    Plain,
    /// SASL SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SASL SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// TLS client certificate.
    #[serde(rename = "tls")]
    Tls,
}

impl AuthenticationType {
    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Plain => "plain",
            Self::ScramSha256 => "scram-sha-256",
            Self::ScramSha512 => "scram-sha-512",
            Self::Tls => "tls",
        }
    }
}

impl std::fmt::Display for AuthenticationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<AuthenticationFields> for KafkaAuthentication {
    type Error = &'static str;

    /// Applies the same rules as the CEL rules of [`AuthenticationFields`], with the
    /// same messages.
    fn try_from(fields: AuthenticationFields) -> Result<Self, Self::Error> {
        let AuthenticationFields {
            r#type,
            username,
            password_secret,
            certificate_and_key,
        } = fields;
        let sasl = matches!(
            r#type,
            AuthenticationType::Plain
                | AuthenticationType::ScramSha256
                | AuthenticationType::ScramSha512
        );
        if !sasl && (username.is_some() || password_secret.is_some()) {
            return Err(ONLY_SASL_HAS_PASSWORD);
        }
        if r#type != AuthenticationType::Tls && certificate_and_key.is_some() {
            return Err(ONLY_TLS_HAS_CERTIFICATE);
        }
        let credentials = || match (username, password_secret) {
            (Some(username), Some(password_secret)) => Ok(SaslCredentials {
                username,
                password_secret,
            }),
            _ => Err(NEEDS_USERNAME_AND_PASSWORD),
        };
        Ok(match r#type {
            AuthenticationType::None => Self::Anonymous,
            AuthenticationType::Plain => Self::Plain(credentials()?),
            AuthenticationType::ScramSha256 => Self::ScramSha256(credentials()?),
            AuthenticationType::ScramSha512 => Self::ScramSha512(credentials()?),
            AuthenticationType::Tls => {
                Self::Tls(certificate_and_key.ok_or(NEEDS_CERTIFICATE_AND_KEY)?)
            }
        })
    }
}

impl From<KafkaAuthentication> for AuthenticationFields {
    fn from(authentication: KafkaAuthentication) -> Self {
        let r#type = authentication.mechanism();
        let (username, password_secret, certificate_and_key) = match authentication {
            KafkaAuthentication::Anonymous => (None, None, None),
            KafkaAuthentication::Plain(sasl)
            | KafkaAuthentication::ScramSha256(sasl)
            | KafkaAuthentication::ScramSha512(sasl) => {
                (Some(sasl.username), Some(sasl.password_secret), None)
            }
            KafkaAuthentication::Tls(certificate_and_key) => {
                (None, None, Some(certificate_and_key))
            }
        };
        Self {
            r#type,
            username,
            password_secret,
            certificate_and_key,
        }
    }
}

/// A key of a Secret that holds a password (Strimzi's `PasswordSecretSource`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretSource {
    /// Name of the Secret, in the StreamJob's namespace.
    pub secret_name: String,
    /// Key within the Secret whose value is the password (Strimzi's `KafkaUser`
    /// Secrets use `password`).
    pub password: String,
}

/// Keys of one Secret that hold a client certificate and its private key, PEM encoded
/// (Strimzi's `CertAndKeySecretSource`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertAndKeySecretSource {
    /// Name of the Secret, in the StreamJob's namespace.
    pub secret_name: String,
    /// Key within the Secret whose value is the certificate (e.g. `user.crt`).
    pub certificate: String,
    /// Key within the Secret whose value is the private key (e.g. `user.key`).
    pub key: String,
}

/// A key of a Secret that holds a PEM certificate (Strimzi's `CertSecretSource`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertSecretSource {
    /// Name of the Secret, in the StreamJob's namespace.
    pub secret_name: String,
    /// Key within the Secret whose value is the certificate (e.g. `ca.crt`).
    pub certificate: String,
}

/// One key of one Secret that a job needs, e.g. to mount it as a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the job's namespace.
    pub secret_name: String,
    /// Key within the Secret.
    pub key: String,
}

impl KafkaCluster {
    /// Every Secret key this cluster's connection needs: CA certificates, password,
    /// client certificate and key.
    pub fn secret_keys(&self) -> Vec<SecretKeyRef> {
        let key = |secret_name: &str, key: &str| SecretKeyRef {
            secret_name: secret_name.to_owned(),
            key: key.to_owned(),
        };
        let mut keys: Vec<SecretKeyRef> = self
            .tls
            .iter()
            .flat_map(|tls| &tls.trusted_certificates)
            .map(|ca| key(&ca.secret_name, &ca.certificate))
            .collect();
        match &self.authentication {
            None | Some(KafkaAuthentication::Anonymous) => {}
            Some(
                KafkaAuthentication::Plain(sasl)
                | KafkaAuthentication::ScramSha256(sasl)
                | KafkaAuthentication::ScramSha512(sasl),
            ) => keys.push(key(
                &sasl.password_secret.secret_name,
                &sasl.password_secret.password,
            )),
            Some(KafkaAuthentication::Tls(certificate_and_key)) => {
                let CertAndKeySecretSource {
                    secret_name,
                    certificate,
                    key: private_key,
                } = certificate_and_key;
                keys.push(key(secret_name, certificate));
                keys.push(key(secret_name, private_key));
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn authentication(value: serde_json::Value) -> Result<KafkaAuthentication, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn each_mechanism_reads_from_strimzi_shaped_fields() {
        let scram = authentication(json!({
            "type": "scram-sha-512",
            "username": "app",
            "passwordSecret": {"secretName": "app-user", "password": "password"}
        }))
        .unwrap();
        assert_eq!(scram.mechanism(), AuthenticationType::ScramSha512);

        let tls = authentication(json!({
            "type": "tls",
            "certificateAndKey": {"secretName": "app-user", "certificate": "user.crt", "key": "user.key"}
        }))
        .unwrap();
        assert_eq!(tls.mechanism(), AuthenticationType::Tls);
        assert_eq!(
            authentication(json!({"type": "none"})).unwrap(),
            KafkaAuthentication::Anonymous
        );
    }

    #[test]
    fn fields_of_another_mechanism_are_refused_with_the_cel_message() {
        let error = authentication(json!({"type": "plain", "username": "app"})).unwrap_err();
        assert!(error.contains(NEEDS_USERNAME_AND_PASSWORD), "{error}");
        let error = authentication(json!({"type": "none", "username": "app"})).unwrap_err();
        assert!(error.contains(ONLY_SASL_HAS_PASSWORD), "{error}");
        let error = authentication(json!({"type": "tls"})).unwrap_err();
        assert!(error.contains(NEEDS_CERTIFICATE_AND_KEY), "{error}");
    }

    #[test]
    fn authentication_writes_back_as_it_was_read() {
        let written = json!({
            "type": "scram-sha-256",
            "username": "app",
            "passwordSecret": {"secretName": "app-user", "password": "password"}
        });
        let read = authentication(written.clone()).unwrap();
        assert_eq!(serde_json::to_value(read).unwrap(), written);
    }

    #[test]
    fn secret_keys_lists_ca_password_and_client_certificate() {
        let cluster: KafkaCluster = serde_json::from_value(json!({
            "name": "c",
            "bootstrapServers": "kafka:9094",
            "tls": {"trustedCertificates": [{"secretName": "c-ca", "certificate": "ca.crt"}]},
            "authentication": {
                "type": "tls",
                "certificateAndKey": {"secretName": "app", "certificate": "user.crt", "key": "user.key"}
            }
        }))
        .unwrap();
        let keys: Vec<(String, String)> = cluster
            .secret_keys()
            .into_iter()
            .map(|k| (k.secret_name, k.key))
            .collect();
        let expected = [("c-ca", "ca.crt"), ("app", "user.crt"), ("app", "user.key")];
        assert_eq!(keys, expected.map(|(s, k)| (s.to_owned(), k.to_owned())));
    }
}
