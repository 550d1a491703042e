//! The actor: records a decision's status, publishes its Events, and takes its
//! action. The only writer of a StreamJob's status.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strom_crds::{StreamJob, StreamJobStatus};

use crate::Error;
use crate::control_api::ControlClient;
use crate::decide::{Action, Event, PodsToken, record_savepoint_request};
use crate::labels::pod_selector;
use crate::resources::{self, CONTROL_TOKEN_KEY, Names, ResourceSettings};

/// The field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "strom-operator";
/// The operator's finalizer on StreamJobs.
pub const FINALIZER: &str = "strom.dev/final-savepoint";

/// What the actor needs.
pub struct Actor<'a> {
    /// The apiserver.
    pub client: &'a Client,
    /// Publishes Events.
    pub recorder: &'a Recorder,
    /// Calls control APIs.
    pub control: &'a ControlClient,
    /// Image and pull policy.
    pub resources: &'a ResourceSettings,
}

impl Actor<'_> {
    /// Writes `status` (when it differs from the job's) by server-side apply,
    /// only if the job is still at the resource version it was read at: a status
    /// decided on a stale read (by a replica that lost the Lease, or from a
    /// lagging cache) is refused (409) rather than written over a newer one.
    /// Returns the job as the apiserver now holds it (a new resource version).
    pub async fn record_status(
        &self,
        job: &StreamJob,
        status: &StreamJobStatus,
    ) -> Result<StreamJob, Error> {
        if job.status.as_ref() == Some(status) {
            return Ok(job.clone());
        }
        let names = Names::of(job);
        let api: Api<StreamJob> = Api::namespaced(self.client.clone(), &names.namespace);
        let patch = serde_json::json!({
            "apiVersion": "strom.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"resourceVersion": job.resource_version()},
            "status": status,
        });
        api.patch_status(
            &names.job,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kubernetes(format!(
            "writing the status of {}",
            names.job
        )))
    }

    /// Publishes `events` about `job`. A failure to publish is logged, not fatal.
    pub async fn publish(&self, job: &StreamJob, events: &[Event]) {
        let reference = job.object_ref(&());
        for event in events {
            let published = self
                .recorder
                .publish(
                    &KubeEvent {
                        type_: if event.warning {
                            EventType::Warning
                        } else {
                            EventType::Normal
                        },
                        reason: event.reason.to_owned(),
                        note: Some(truncate(&event.note, MAX_NOTE_BYTES)),
                        action: event.reason.to_owned(),
                        secondary: None,
                    },
                    &reference,
                )
                .await;
            if let Err(error) = published {
                tracing::warn!(%error, reason = event.reason, "cannot publish an Event");
            }
        }
    }

    /// Takes `action`; returns the status to record after it, when the action
    /// produced something to record (a savepoint request's id).
    pub async fn act(
        &self,
        job: &StreamJob,
        status: &StreamJobStatus,
        action: &Action,
        control_url: Option<&str>,
    ) -> Result<Option<StreamJobStatus>, Error> {
        let names = Names::of(job);
        match action {
            Action::Nothing => {}
            Action::AddFinalizer => self.set_finalizer(job, true).await?,
            Action::RemoveFinalizer => self.set_finalizer(job, false).await?,
            Action::Deploy(deployment) => {
                let objects = resources::build(job, deployment, self.resources);
                self.ensure_control_secret(job, &names).await?;
                self.apply(&names, &objects.network_policy).await?;
                self.apply(&names, &objects.config_map).await?;
                self.apply(&names, &objects.peers_service).await?;
                self.apply(&names, &objects.api_service).await?;
                self.apply(&names, &objects.stateful_set).await?;
            }
            Action::TearDown => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &names.namespace);
                let deleted = api
                    .delete(&names.stateful_set(), &DeleteParams::foreground())
                    .await;
                ignore_not_found(deleted.map(|_| ())).map_err(Error::kubernetes(format!(
                    "deleting StatefulSet {}",
                    names.job
                )))?;
            }
            Action::ExpectState => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &names.namespace);
                let patch = serde_json::json!({
                    "data": {resources::EXPECT_STATE_KEY: "true"}
                });
                let patched = api
                    .patch(
                        &names.config_map(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                ignore_not_found(patched.map(|_| ())).map_err(Error::kubernetes(format!(
                    "updating ConfigMap {}",
                    names.config_map()
                )))?;
            }
            Action::RestartPods => self.restart_pods(&names).await?,
            Action::StopWithSavepoint | Action::TriggerSavepoint => {
                let Some(base) = control_url else {
                    tracing::warn!(job = names.job, "no address of the control API yet");
                    return Ok(None);
                };
                let token = crate::observe::control_token(self.client, &names).await?;
                let token = token.as_deref();
                let requested = if *action == Action::StopWithSavepoint {
                    let hand_over = crate::decide::stop_hands_over(status);
                    self.control
                        .stop_with_savepoint(base, token, hand_over)
                        .await
                } else {
                    // Keyed by the nonce: a request asked again (after an operator
                    // restart, or from a status read before its id was recorded)
                    // is the same request.
                    let key = match &status.manual_savepoint {
                        Some(periodic) if periodic.periodic => {
                            format!("savepointInterval-{}", periodic.requested_at.0.as_second())
                        }
                        manual => format!(
                            "savepointTriggerNonce-{}",
                            manual.as_ref().map_or(0, |m| m.nonce)
                        ),
                    };
                    self.control.trigger_savepoint(base, &key, token).await
                };
                // Not an error of the reconcile: the decision times the savepoint
                // out and retries; the next look asks again.
                match requested {
                    Ok(id) => {
                        return Ok(Some(record_savepoint_request(status.clone(), action, id)));
                    }
                    Err(message) => {
                        tracing::warn!(job = names.job, %message, "savepoint request failed");
                    }
                }
            }
        }
        Ok(None)
    }

    async fn apply<K>(&self, names: &Names, object: &K) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + Serialize
            + DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &names.namespace);
        let name = object.meta().name.clone().unwrap_or_default();
        let mut value = serde_json::to_value(object)
            .unwrap_or_else(|e| unreachable!("objects always serialize: {e}"));
        value["apiVersion"] = K::api_version(&()).into();
        value["kind"] = K::kind(&()).into();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .map_err(Error::kubernetes(format!(
            "applying {} {name}",
            K::kind(&())
        )))?;
        Ok(())
    }

    /// Makes the job's control Secret again, with a new token, if it is gone (or
    /// its token is) while the job has a StatefulSet: without it the operator
    /// cannot stop the job or take a savepoint, and a restarting pod cannot start.
    /// Pods that read the token from their mounted copy of the Secret take the
    /// new one when the kubelet updates it (within about a minute), without a
    /// restart. Pods deployed before the token file hold the old token until they
    /// restart: they are not restarted here, outside the job's steps (a stop with
    /// savepoint may be under way); the Event says how. Returns the Event's note
    /// when the Secret was made again.
    pub async fn restore_control_secret(
        &self,
        job: &StreamJob,
        pods: PodsToken,
    ) -> Result<Option<String>, Error> {
        let names = Names::of(job);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &names.namespace);
        let name = names.control_secret();
        let existing = api
            .get_opt(&name)
            .await
            .map_err(Error::kubernetes(format!("reading Secret {name}")))?;
        match existing {
            None => self.ensure_control_secret(job, &names).await?,
            Some(secret) => {
                let has_token = secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(CONTROL_TOKEN_KEY))
                    .is_some_and(|token| !token.0.is_empty());
                let ours = job
                    .uid()
                    .is_some_and(|uid| secret.owner_references().iter().any(|o| o.uid == uid));
                if has_token || !ours {
                    return Ok(None);
                }
                let patch = serde_json::json!({
                    "stringData": {CONTROL_TOKEN_KEY: new_control_token()},
                    "metadata": {"resourceVersion": secret.metadata.resource_version},
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kubernetes(format!(
                        "restoring the token of Secret {name}"
                    )))?;
            }
        }
        let made = format!("Secret {name} or its token was gone; made a new token");
        Ok(Some(match pods {
            PodsToken::File => format!(
                "{made}, which the running pods read from their mounted copy within about a minute"
            ),
            PodsToken::Environment => format!(
                "{made}. The pods were deployed before the token file and hold the old one: \
                 stops and savepoints are refused until they restart (kubectl delete pods -l \
                 {}; they go on from the latest checkpoint)",
                pod_selector(&names.job)
            ),
            PodsToken::Unguarded => format!(
                "{made}; the pods, deployed before the token, take it at their next deployment"
            ),
        }))
    }

    /// Deletes the job's pods; its StatefulSet makes them again.
    async fn restart_pods(&self, names: &Names) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &names.namespace);
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&pod_selector(&names.job)),
        )
        .await
        .map_err(Error::kubernetes(format!(
            "restarting the pods of {}",
            names.job
        )))?;
        Ok(())
    }

    /// Makes the job's control Secret with a fresh random token, unless it is
    /// there: pods of every deployment of the job share it. One left by a
    /// deleted job of the same name (owned by it, so about to be collected) is
    /// adopted: the new pods would take its token, and lose it with it.
    async fn ensure_control_secret(&self, job: &StreamJob, names: &Names) -> Result<(), Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &names.namespace);
        let name = names.control_secret();
        let failed = |what: &str| Error::kubernetes(format!("{what} Secret {name}"));
        let secret = resources::control_secret(job, new_control_token());
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(failed("creating")(error)),
        }
        let Some(existing) = api.get_opt(&name).await.map_err(failed("reading"))? else {
            // Collected since: made again on the next look.
            return Err(Error::Gone(format!("Secret {name}")));
        };
        let owners = secret.metadata.owner_references.clone().unwrap_or_default();
        let ours = existing
            .owner_references()
            .iter()
            .any(|owner| owners.iter().any(|o| o.uid == owner.uid));
        if ours {
            return Ok(());
        }
        if existing.metadata.deletion_timestamp.is_some() {
            return Err(Error::Gone(format!("Secret {name}")));
        }
        // Only the Secret of an earlier StreamJob of this name is taken over;
        // anyone else's is left alone, and the job says why it cannot deploy.
        let earlier_job =
            |owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
                owner.kind == "StreamJob" && owner.name == names.job
            };
        let refs = existing.owner_references();
        if refs.is_empty() || !refs.iter().all(earlier_job) {
            return Err(Error::Foreign(format!(
                "Secret {name} exists and is not this job's control Secret: delete or rename it"
            )));
        }
        // Only if it is still the one read: a Secret collected since is made again
        // on the next look.
        let adopt = serde_json::json!({
            "metadata": {
                "ownerReferences": owners,
                "resourceVersion": existing.metadata.resource_version,
            }
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&adopt))
            .await
            .map_err(failed("adopting"))?;
        Ok(())
    }

    /// Puts the finalizer on the job or takes it off. Reads the job afresh first:
    /// the controller's cache may lag behind the last write, and a patch built
    /// from a stale copy would be refused (or drop another's finalizer).
    async fn set_finalizer(&self, job: &StreamJob, present: bool) -> Result<(), Error> {
        let names = Names::of(job);
        let action = format!("updating the finalizers of {}", names.job);
        let api: Api<StreamJob> = Api::namespaced(self.client.clone(), &names.namespace);
        let Some(current) = api
            .get_opt(&names.job)
            .await
            .map_err(Error::kubernetes(action.clone()))?
        else {
            return Ok(()); // Gone: nothing left to finalize.
        };
        let has = current.finalizers().iter().any(|f| f == FINALIZER);
        if has == present {
            return Ok(());
        }
        let mut finalizers: Vec<String> = current
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if present {
            finalizers.push(FINALIZER.to_owned());
        }
        // The resource version makes this fail, rather than drop another's
        // finalizer, if the list changed since it was read.
        let patch = serde_json::json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": current.resource_version(),
            }
        });
        let patched = api
            .patch(&names.job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ());
        ignore_not_found(patched).map_err(Error::kubernetes(action))
    }
}

/// The longest note an Event may carry.
const MAX_NOTE_BYTES: usize = 1024;

/// `text` cut to at most `limit` bytes (at a character boundary), marked with `…`
/// when cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn ignore_not_found(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    }
}

/// A fresh random control token (256 bits, hex).
fn new_control_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_to_the_events_limit_at_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let cut = truncate(&long, MAX_NOTE_BYTES);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
