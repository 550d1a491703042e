//! What a deployment of a job runs: the parts of its spec that need new pods when
//! they change, and the versions of the Secrets it mounts.

use serde::{Deserialize, Serialize};
use strom_crds::{DesiredState, StreamJobSpec};

/// The spec a deployment runs, with the Secrets' versions it was made from. Two
/// deployments with equal targets run the same thing; any difference (parallelism,
/// image, SQL, clusters, a rotated Secret, a new `restartNonce`) needs a redeploy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The spec, less the fields that never need new pods (`desiredState`,
    /// `savepointTriggerNonce`, `savepointTimeout`).
    pub spec: StreamJobSpec,
    /// Resource versions of the referenced Secrets (see
    /// [`crate::credentials::ResolvedCredentials::version`]); never their values.
    pub credentials_version: String,
}

impl Target {
    /// The target of `spec` with Secrets at `credentials_version`.
    pub fn new(spec: &StreamJobSpec, credentials_version: impl Into<String>) -> Self {
        let mut spec = spec.clone();
        spec.desired_state = DesiredState::Running;
        spec.savepoint_trigger_nonce = None;
        spec.savepoint_timeout = None;
        Self {
            spec,
            credentials_version: credentials_version.into(),
        }
    }

    /// The target as recorded in `status.lastReconciledSpec`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| unreachable!("a target always serializes: {e}"))
    }

    /// The target recorded in `status.lastReconciledSpec`, if it reads as one.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// A short hash naming this target, written on the objects it deploys.
    pub fn revision(&self) -> String {
        format!(
            "{:016x}",
            xxhash_rust::xxh64::xxh64(self.to_json().as_bytes(), 0)
        )
    }

    /// Whether going from `self` to `next` changes only the parallelism (a rescale,
    /// rather than an upgrade).
    pub fn is_rescale_to(&self, next: &Target) -> bool {
        let mut same_parallelism = next.clone();
        same_parallelism.spec.parallelism = self.spec.parallelism;
        same_parallelism == *self && next.spec.parallelism != self.spec.parallelism
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(parallelism: i32) -> StreamJobSpec {
        serde_json::from_value(serde_json::json!({
            "parallelism": parallelism,
            "pipeline": {"name": "word-count"},
        }))
        .unwrap()
    }

    #[test]
    fn suspending_or_asking_for_a_savepoint_does_not_change_the_target() {
        let mut changed = spec(2);
        changed.desired_state = DesiredState::Suspended;
        changed.savepoint_trigger_nonce = Some(3);
        assert_eq!(Target::new(&spec(2), "v1"), Target::new(&changed, "v1"));
        assert_eq!(
            Target::new(&spec(2), "v1").revision(),
            Target::new(&changed, "v1").revision()
        );
    }

    #[test]
    fn the_savepoint_timeout_does_not_change_the_target() {
        let mut changed = spec(2);
        changed.savepoint_timeout = Some("20m".parse().unwrap());
        assert_eq!(Target::new(&spec(2), "v1"), Target::new(&changed, "v1"));
    }

    #[test]
    fn a_new_parallelism_is_a_rescale_and_anything_else_an_upgrade() {
        let old = Target::new(&spec(2), "v1");
        assert!(old.is_rescale_to(&Target::new(&spec(4), "v1")));
        assert!(!old.is_rescale_to(&Target::new(&spec(4), "v2")));
        assert!(!old.is_rescale_to(&Target::new(&spec(2), "v2")));
        assert_ne!(old.revision(), Target::new(&spec(2), "v2").revision());
    }

    #[test]
    fn a_target_reads_back_from_status() {
        let target = Target::new(&spec(3), "s3-creds=41");
        assert_eq!(Target::from_json(&target.to_json()), Some(target));
        assert_eq!(Target::from_json("not json"), None);
    }
}
