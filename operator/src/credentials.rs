//! The Secrets a job references, and whether they hold every key it needs. Pure:
//! the Secrets' names, key names and digests of their values come from the
//! observer; values never reach this module.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};
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

/// Every Secret key the job's pods read: the required ones and, when `spec` names
/// a storage Secret, its optional session token.
fn used_keys(spec: &StreamJobSpec) -> BTreeSet<(String, String)> {
    let mut keys: BTreeSet<(String, String)> = required_keys(spec)
        .into_iter()
        .map(|key| (key.secret, key.key))
        .collect();
    if let Some(secret) = &spec.state.storage_secret {
        keys.insert((secret.name.clone(), STORAGE_OPTIONAL_KEY.to_owned()));
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

/// What the observer saw of one Secret: its keys and a digest of each value, never
/// the values.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretSeen {
    /// Each key of its `data`, with [`value_digest`] of its value.
    pub keys: BTreeMap<String, String>,
}

impl SecretSeen {
    /// The keys and digests of a Secret whose `data` is `values`; the values
    /// themselves are not kept.
    pub fn of<'a>(values: impl IntoIterator<Item = (&'a String, &'a [u8])>) -> Self {
        Self {
            keys: values
                .into_iter()
                .map(|(key, value)| (key.clone(), value_digest(value)))
                .collect(),
        }
    }
}

/// The SHA-256 of a Secret value, in hex: tells a changed value from an unchanged
/// one without keeping it.
pub fn value_digest(value: &[u8]) -> String {
    hex(&Sha256::digest(value))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
    /// Each referenced Secret's name and a digest of the values the job reads
    /// from it, `name=digest` joined by `,`. A changed value gives another
    /// version, and so another deployment target; a write that changes no value
    /// the job reads (labels, other keys) gives the same. The digest covers every
    /// value of the Secret the job reads at once and is salted with its names, so
    /// it tells nothing about any one value.
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
            Some(seen) if seen.keys.contains_key(&required.key) => continue,
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
    let used = used_keys(spec);
    let version = referenced_secrets(spec)
        .iter()
        .map(|name| {
            let mut digest = Sha256::new();
            for (_, key) in used.iter().filter(|(secret, _)| secret == name) {
                let value = secrets[name].keys.get(key).map_or("absent", String::as_str);
                digest.update(format!("{name}\0{key}\0{value}\0"));
            }
            format!("{name}={DIGEST_PREFIX}{}", &hex(&digest.finalize())[..16])
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok(ResolvedCredentials { version })
}

/// What each entry of a [`ResolvedCredentials::version`] holds after `name=`.
const DIGEST_PREFIX: &str = "sha256:";

/// Whether `version` is made of digests (as [`resolve`] makes it), rather than the
/// resource versions an older operator recorded. One without Secrets is both.
pub fn is_digest_version(version: &str) -> bool {
    version.is_empty()
        || version.split(',').all(|entry| {
            entry
                .split_once('=')
                .is_some_and(|(_, value)| value.starts_with(DIGEST_PREFIX))
        })
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

    /// A Secret holding `keys`, each with the value `value`.
    fn seen(value: &str, keys: &[&str]) -> SecretSeen {
        SecretSeen {
            keys: keys
                .iter()
                .map(|k| ((*k).to_owned(), value_digest(value.as_bytes())))
                .collect(),
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
    fn present_secrets_resolve_to_a_digest_each_without_their_values() {
        let version = resolve(&spec(), &all_secrets()).unwrap().version;
        let names: Vec<&str> = version
            .split(',')
            .map(|entry| entry.split_once('=').unwrap().0)
            .collect();
        assert_eq!(names, ["b-app", "c-app", "c-ca", "s3"]);
        assert!(is_digest_version(&version));
        assert!(!is_digest_version("b-app=11,c-app=13"));
        for value in ["11", "12", "13", "14"] {
            assert!(!version.contains(&value_digest(value.as_bytes())));
        }
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
        secrets.insert("b-app".into(), seen("99", &["password"]));
        assert_ne!(resolve(&spec(), &secrets).unwrap().version, before);
    }

    #[test]
    fn a_key_the_job_does_not_read_leaves_the_version() {
        let before = resolve(&spec(), &all_secrets()).unwrap().version;
        let mut secrets = all_secrets();
        // c-app's ca.crt is not read: its trusted certificates come from c-ca.
        let c_app = secrets.get_mut("c-app").unwrap();
        c_app
            .keys
            .insert("ca.crt".into(), value_digest(b"another CA"));
        c_app.keys.insert("note".into(), value_digest(b"rotated"));
        assert_eq!(resolve(&spec(), &secrets).unwrap().version, before);
    }

    #[test]
    fn the_optional_session_token_is_a_value_the_job_reads() {
        let before = resolve(&spec(), &all_secrets()).unwrap().version;
        let mut secrets = all_secrets();
        let s3 = secrets.get_mut("s3").unwrap();
        s3.keys
            .insert(STORAGE_OPTIONAL_KEY.into(), value_digest(b"token"));
        let with_token = resolve(&spec(), &secrets).unwrap().version;
        assert_ne!(with_token, before);
        let s3 = secrets.get_mut("s3").unwrap();
        s3.keys
            .insert(STORAGE_OPTIONAL_KEY.into(), value_digest(b"token-2"));
        assert_ne!(resolve(&spec(), &secrets).unwrap().version, with_token);
    }
}
