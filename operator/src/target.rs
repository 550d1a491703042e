//! What a deployment of a job runs: the parts of its spec that need new pods when
//! they change, the runtime image, and the versions of the Secrets it mounts.

use serde::{Deserialize, Serialize};
use strom_crds::{DesiredState, StreamJobSpec};

/// The spec a deployment runs, with the Secrets' versions it was made from. Two
/// deployments with equal targets run the same thing; any difference (parallelism,
/// image, SQL, clusters, a rotated Secret, a new `restartNonce`) needs a redeploy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The spec, less the fields that never need new pods (`desiredState`,
    /// `savepointTriggerNonce`, `savepointTimeout`, `savepointInterval`,
    /// `rollbackOnFailure`; `restoreFrom` is acted on by itself), with
    /// `image` always set: the
    /// job's own or the operator's default. An operator with another default
    /// image so makes another target, and its jobs are redeployed through a
    /// savepoint when it starts, not silently at their next rescale.
    pub spec: StreamJobSpec,
    /// Digests of the values the job reads from its Secrets (see
    /// [`crate::credentials::ResolvedCredentials::version`]); never the values.
    pub credentials_version: String,
    /// Stands for a deployment recorded in a form this operator cannot read (by
    /// another version): equal to no target, so the job is redeployed through a
    /// savepoint. Never recorded.
    #[serde(skip)]
    pub unreadable: bool,
}

impl Target {
    /// The target of `spec` with Secrets at `credentials_version`, run by
    /// `default_image` unless the spec names an image.
    pub fn new(
        spec: &StreamJobSpec,
        credentials_version: impl Into<String>,
        default_image: &str,
    ) -> Self {
        let mut spec = spec.clone();
        spec.desired_state = DesiredState::Running;
        spec.savepoint_trigger_nonce = None;
        spec.savepoint_timeout = None;
        spec.savepoint_interval = None;
        spec.rollback_on_failure = false;
        spec.restore_from = None;
        spec.image.get_or_insert_with(|| default_image.to_owned());
        Self {
            spec,
            credentials_version: credentials_version.into(),
            unreadable: false,
        }
    }

    /// What runs when `status.lastReconciledSpec` does not read as a target: the
    /// spec that runs is unknown but for its parallelism (`status.parallelism`),
    /// so it is taken as `spec` at `parallelism`, marked [`Self::unreadable`].
    pub fn unreadable(spec: &StreamJobSpec, parallelism: i32) -> Self {
        let mut spec = spec.clone();
        spec.parallelism = parallelism;
        Self {
            spec,
            credentials_version: String::new(),
            unreadable: true,
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

    /// Completes a target recorded by an older operator with what it left out:
    /// the image (recorded only when the job named one; `running` is what its
    /// StatefulSet runs, or the default when none is there) and digests of the
    /// Secrets' values (it recorded their resource versions instead; `current`
    /// is taken for them, so the first look after an upgrade sees no rotation).
    /// An operator upgrade alone so redeploys nothing; a new default image still
    /// does, at the first look, through the job's upgrade mode.
    pub fn complete_older_record(&mut self, running: &str, current: Option<&str>) {
        self.spec.image.get_or_insert_with(|| running.to_owned());
        if let Some(current) = current
            && !crate::credentials::is_digest_version(&self.credentials_version)
        {
            current.clone_into(&mut self.credentials_version);
        }
    }

    /// A short hash naming this target, written on the objects it deploys.
    pub fn revision(&self) -> String {
        let seed = u64::from(self.unreadable);
        format!(
            "{:016x}",
            xxhash_rust::xxh64::xxh64(self.to_json().as_bytes(), seed)
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

    const IMAGE: &str = "strom-runtime:1";

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
        assert_eq!(
            Target::new(&spec(2), "v1", IMAGE),
            Target::new(&changed, "v1", IMAGE)
        );
        assert_eq!(
            Target::new(&spec(2), "v1", IMAGE).revision(),
            Target::new(&changed, "v1", IMAGE).revision()
        );
    }

    #[test]
    fn the_savepoint_timeout_and_interval_do_not_change_the_target() {
        let mut changed = spec(2);
        changed.savepoint_timeout = Some("20m".parse().unwrap());
        changed.savepoint_interval = Some("1h".parse().unwrap());
        assert_eq!(
            Target::new(&spec(2), "v1", IMAGE),
            Target::new(&changed, "v1", IMAGE)
        );
    }

    #[test]
    fn a_new_parallelism_is_a_rescale_and_anything_else_an_upgrade() {
        let old = Target::new(&spec(2), "v1", IMAGE);
        assert!(old.is_rescale_to(&Target::new(&spec(4), "v1", IMAGE)));
        assert!(!old.is_rescale_to(&Target::new(&spec(4), "v2", IMAGE)));
        assert!(!old.is_rescale_to(&Target::new(&spec(2), "v2", IMAGE)));
        assert_ne!(
            old.revision(),
            Target::new(&spec(2), "v2", IMAGE).revision()
        );
    }

    #[test]
    fn a_target_reads_back_from_status() {
        let target = Target::new(&spec(3), "s3-creds=41", IMAGE);
        assert_eq!(Target::from_json(&target.to_json()), Some(target));
        assert_eq!(Target::from_json("not json"), None);
    }

    #[test]
    fn the_image_is_part_of_the_target_whoever_names_it() {
        let by_default = Target::new(&spec(2), "v1", IMAGE);
        assert_eq!(by_default.spec.image.as_deref(), Some(IMAGE));
        let new_default = Target::new(&spec(2), "v1", "strom-runtime:2");
        assert_ne!(by_default, new_default);
        assert!(!by_default.is_rescale_to(&Target::new(&spec(4), "v1", "strom-runtime:2")));
        let mut named = spec(2);
        named.image = Some("mine:7".into());
        assert_eq!(
            Target::new(&named, "v1", IMAGE),
            Target::new(&named, "v1", "strom-runtime:2")
        );
    }

    #[test]
    fn an_unreadable_deployment_equals_no_target() {
        let unreadable = Target::unreadable(&spec(2), 2);
        let mut same_spec = Target::new(&spec(2), "", IMAGE);
        same_spec.spec.image = None;
        assert_eq!(unreadable.spec, same_spec.spec);
        assert_ne!(unreadable, same_spec);
        assert_ne!(unreadable.revision(), same_spec.revision());
        assert!(!unreadable.is_rescale_to(&Target::new(&spec(4), "", IMAGE)));
    }
}
