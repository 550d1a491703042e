//! The Secrets a job references, and whether they hold every key it needs. Pure:
//! the Secrets' names, key names and resource versions come from the observer;
//! values never reach this module.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use strom_crds::StreamJobSpec;

/// Keys of `state.storageSecret` the runtime reads as environment.
pub const STORAGE_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
/// A key of `state.storageSecret` passed on when present.
pub const STORAGE_OPTIONAL_KEY: &str = "AWS_SESSION_TOKEN";

/// What a Secret key is needed for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// The connection to the named Kafka cluster.
    KafkaCluster(String),
    /// Checkpoints and savepoints on object storage.
    ObjectStorage,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KafkaCluster(name) => write!(f, "Kafka cluster {name}"),
            Self::ObjectStorage => f.write_str("object storage"),
        }
    }
}

/// One key of one Secret that a job needs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequiredKey {
    /// Name of the Secret, in the job's namespace.
    pub secret: String,
    /// Key within the Secret.
    pub key: String,
    /// What it is for.
    pub purpose: Purpose,
}

/// Every Secret key `spec` needs, Kafka clusters first, in manifest order.
pub fn required_keys(spec: &StreamJobSpec) -> Vec<RequiredKey> {
    let mut keys: Vec<RequiredKey> = spec
        .kafka_clusters
        .iter()
        .flat_map(|cluster| {
            cluster.secret_keys().into_iter().map(|key| RequiredKey {
                secret: key.secret_name,
                key: key.key,
                purpose: Purpose::KafkaCluster(cluster.name.clone()),
            })
        })
        .collect();
    if let Some(secret) = &spec.state.storage_secret {
        keys.extend(STORAGE_KEYS.map(|key| RequiredKey {
            secret: secret.name.clone(),
            key: key.to_owned(),
            purpose: Purpose::ObjectStorage,
        }));
    }
    keys
}

/// Names of every Secret `spec` references.
pub fn referenced_secrets(spec: &StreamJobSpec) -> BTreeSet<String> {
    required_keys(spec)
        .into_iter()
        .map(|key| key.secret)
        .collect()
}

/// What the observer saw of one Secret: its version and key names, no values.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretSeen {
    /// `metadata.resourceVersion`: changes whenever the Secret does.
    pub resource_version: String,
    /// The keys of its `data`.
    pub keys: BTreeSet<String>,
}

/// A Secret or key a job needs and its namespace lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingCredential {
    /// The Secret.
    pub secret: String,
    /// The key it lacks; `None` when the Secret itself is missing.
    pub key: Option<String>,
    /// What it is needed for.
    pub purpose: Purpose,
}

impl fmt::Display for MissingCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            None => write!(f, "Secret {:?} ({}) not found", self.secret, self.purpose),
            Some(key) => write!(
                f,
                "Secret {:?} ({}) has no key {key:?}",
                self.secret, self.purpose
            ),
        }
    }
}

/// The referenced Secrets, all present with every key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedCredentials {
    /// The Secrets' names and resource versions, `name=version` joined by `,`:
    /// a rotated Secret gives another version, and so another deployment target.
    pub version: String,
}

/// Checks that every key `spec` needs is in the Secrets seen (by name).
pub fn resolve(
    spec: &StreamJobSpec,
    secrets: &BTreeMap<String, SecretSeen>,
) -> Result<ResolvedCredentials, Vec<MissingCredential>> {
    let mut missing: Vec<MissingCredential> = Vec::new();
    for required in required_keys(spec) {
        let key = match secrets.get(&required.secret) {
            None => None,
            Some(seen) if seen.keys.contains(&required.key) => continue,
            Some(_) => Some(required.key),
        };
        let entry = MissingCredential {
            secret: required.secret,
            key,
            purpose: required.purpose,
        };
        if !missing.contains(&entry) {
            missing.push(entry);
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let version = referenced_secrets(spec)
        .iter()
        .map(|name| format!("{name}={}", secrets[name].resource_version))
        .collect::<Vec<_>>()
        .join(",");
    Ok(ResolvedCredentials { version })
}

/// One sentence naming every missing Secret and key.
pub fn describe_missing(missing: &[MissingCredential]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StreamJobSpec {
        serde_json::from_value(serde_json::json!({
            "pipeline": {"name": "kafka-copy"},
            "kafkaClusters": [
                {"name": "a", "bootstrapServers": "a:9092"},
                {"name": "b", "bootstrapServers": "b:9093", "authentication": {
                    "type": "scram-sha-512", "username": "app",
                    "passwordSecret": {"secretName": "b-app", "password": "password"}}},
                {"name": "c", "bootstrapServers": "c:9094",
                 "tls": {"trustedCertificates": [{"secretName": "c-ca", "certificate": "ca.crt"}]},
                 "authentication": {"type": "tls", "certificateAndKey":
                    {"secretName": "c-app", "certificate": "user.crt", "key": "user.key"}}},
            ],
            "state": {"storage": "s3://bucket/jobs", "storageSecret": {"name": "s3"}},
        }))
        .unwrap()
    }

    fn seen(version: &str, keys: &[&str]) -> SecretSeen {
        SecretSeen {
            resource_version: version.into(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn all_secrets() -> BTreeMap<String, SecretSeen> {
        BTreeMap::from([
            ("b-app".into(), seen("11", &["password"])),
            ("c-ca".into(), seen("12", &["ca.crt"])),
            (
                "c-app".into(),
                seen("13", &["user.crt", "user.key", "ca.crt"]),
            ),
            (
                "s3".into(),
                seen("14", &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
            ),
        ])
    }

    #[test]
    fn every_key_of_every_cluster_and_the_storage_is_required() {
        let keys: Vec<(String, String)> = required_keys(&spec())
            .into_iter()
            .map(|k| (k.secret, k.key))
            .collect();
        let expected = [
            ("b-app", "password"),
            ("c-ca", "ca.crt"),
            ("c-app", "user.crt"),
            ("c-app", "user.key"),
            ("s3", "AWS_ACCESS_KEY_ID"),
            ("s3", "AWS_SECRET_ACCESS_KEY"),
        ];
        assert_eq!(keys, expected.map(|(s, k)| (s.to_owned(), k.to_owned())));
    }

    #[test]
    fn present_secrets_resolve_to_their_versions() {
        let resolved = resolve(&spec(), &all_secrets()).unwrap();
        assert_eq!(resolved.version, "b-app=11,c-app=13,c-ca=12,s3=14");
    }

    #[test]
    fn a_missing_secret_and_a_missing_key_are_both_named() {
        let mut secrets = all_secrets();
        secrets.remove("b-app");
        secrets.insert("c-app".into(), seen("13", &["user.crt"]));
        let missing = resolve(&spec(), &secrets).unwrap_err();
        assert_eq!(
            describe_missing(&missing),
            "Secret \"b-app\" (Kafka cluster b) not found; \
             Secret \"c-app\" (Kafka cluster c) has no key \"user.key\""
        );
    }

    #[test]
    fn a_rotated_secret_changes_the_version() {
        let before = resolve(&spec(), &all_secrets()).unwrap().version;
        let mut secrets = all_secrets();
        secrets.get_mut("b-app").unwrap().resource_version = "99".into();
        assert_ne!(resolve(&spec(), &secrets).unwrap().version, before);
    }
}
