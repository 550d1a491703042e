//! The controller: watches StreamJobs, what they own (StatefulSets, Services,
//! ConfigMaps), their pods and the Secrets they reference, and reconciles each job
//! by observe -> decide -> act.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use strom_crds::StreamJob;
use tracing::Instrument;

use crate::Error;
use crate::act::{Actor, FINALIZER};
use crate::control_api::ControlClient;
use crate::credentials::referenced_secrets;
use crate::decide::{self, Input};
use crate::labels::JOB_LABEL;
use crate::metrics::Metrics;
use crate::observe::{ControlAccess, observe};
use crate::resources::{Names, ResourceSettings};
use crate::validation;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Timeouts, limits and intervals of the decisions.
    pub decide: decide::Settings,
    /// Image and pull policy of runtime pods.
    pub resources: ResourceSettings,
    /// How control APIs are reached.
    pub control_access: ControlAccess,
    /// Names this instance in Events.
    pub instance: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            decide: decide::Settings::default(),
            resources: ResourceSettings::default(),
            control_access: ControlAccess::ServiceDns,
            instance: "strom-operator".into(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The apiserver.
    pub client: Client,
    /// Names the operator in the Events it publishes.
    pub reporter: Reporter,
    /// Reconciles, failures, durations.
    pub metrics: Arc<Metrics>,
    /// Calls control APIs.
    pub control: ControlClient,
    /// The operator's configuration.
    pub config: Config,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = config.namespace.clone();
    let namespace = namespace.as_deref();
    let reporter = Reporter {
        controller: "strom-operator".into(),
        instance: Some(config.instance.clone()),
    };
    let context = Arc::new(Context {
        reporter,
        client: client.clone(),
        metrics,
        control: ControlClient::default(),
        config,
    });
    let controller = Controller::new(
        api::<StreamJob>(&client, namespace),
        watcher::Config::default(),
    );
    let jobs = controller.store();
    let owned = watcher::Config::default().labels(JOB_LABEL);
    controller
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<ConfigMap>(&client, namespace), owned.clone())
        .watches(api::<Pod>(&client, namespace), owned, |pod| {
            let job = pod.labels().get(JOB_LABEL)?.clone();
            Some(ObjectRef::new(&job).within(&pod.namespace()?))
        })
        // Secrets are watched by their metadata only: no Secret's values are held
        // by the watch; a reconcile reads the referenced ones and keeps digests.
        .watches(
            api::<PartialObjectMeta<Secret>>(&client, namespace),
            watcher::Config::default(),
            move |secret| jobs_referencing(&jobs, &secret),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        })
        .await;
}

/// The jobs in `secret`'s namespace that reference it.
fn jobs_referencing(
    jobs: &Store<StreamJob>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<StreamJob>> {
    let name = secret.name_any();
    let namespace = secret.namespace();
    jobs.state()
        .iter()
        .filter(|job| {
            job.namespace() == namespace
                && (referenced_secrets(&job.spec).contains(&name)
                    || Names::of(job).control_secret() == name)
        })
        .map(|job| ObjectRef::from_obj(job.as_ref()))
        .collect()
}

/// One reconcile of one job: observe, decide, record the status, act.
pub async fn reconcile(job: Arc<StreamJob>, context: Arc<Context>) -> Result<Requeue, Error> {
    let name = job
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("a name"))?;
    let namespace = job
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("a namespace"))?;
    let span = tracing::info_span!("reconcile", job = %name, namespace = %namespace);
    let started = Instant::now();
    context.metrics.reconciles.inc();
    let result = reconcile_job(&job, &context, &name).instrument(span).await;
    context
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_job(job: &StreamJob, context: &Context, name: &str) -> Result<Requeue, Error> {
    let config = &context.config;
    let observed = observe(
        &context.client,
        job,
        &context.control,
        &config.control_access,
    )
    .await?;
    let control_url = observed.control_url.clone();
    let pods_token = observed
        .deployment
        .stateful_set
        .as_ref()
        .map(|set| set.token);
    let default_status = Default::default();
    let status = job.status.as_ref().unwrap_or(&default_status);
    let new_job_id = uuid::Uuid::new_v4().to_string();
    let spec_error = validation::spec_error(&job.spec).await;
    let input = Input {
        name,
        generation: job.metadata.generation.unwrap_or_default(),
        spec: &job.spec,
        status,
        deleting: job.metadata.deletion_timestamp.is_some(),
        has_finalizer: job.finalizers().iter().any(|f| f == FINALIZER),
        spec_error,
        credentials: observed.credentials,
        deployment: observed.deployment,
        runtime: observed.runtime,
        now: Timestamp::now(),
        new_job_id: &new_job_id,
        default_image: &config.resources.default_image,
        restore_check: observed.restore_check,
    };
    let decision = decide::decide(&input, &config.decide);
    tracing::debug!(action = ?decision.action, phase = ?decision.status.phase, "decided");
    let actor = Actor {
        client: &context.client,
        // A Recorder per reconcile: a long-lived one merges Events of the same
        // reason into a series that keeps the first note for minutes, so "Running
        // at parallelism 3" would read "... 2". The decisions publish only on
        // transitions, so there is nothing to merge.
        recorder: &Recorder::new(context.client.clone(), context.reporter.clone()),
        control: &context.control,
        resources: &config.resources,
    };
    // Status first (each step is recorded before it is taken); a job whose
    // finalizer comes off is about to go and needs none. The finalizer update
    // needs the resource version the status write left.
    let job = if decision.action == decide::Action::RemoveFinalizer {
        job.clone()
    } else {
        actor.record_status(job, &decision.status).await?
    };
    actor.publish(&job, &decision.events).await;
    if let Some(pods_token) = pods_token {
        // Best effort: a Secret that cannot be made again (quota, admission) must
        // not keep the decided action (a teardown, a finalizer's removal) from
        // being taken; the savepoints it blocks fail within their deadlines.
        match actor.restore_control_secret(&job, pods_token).await {
            Ok(None) => {}
            Ok(Some(note)) => {
                let event = decide::Event {
                    warning: true,
                    reason: "ControlSecretRestored",
                    note,
                };
                actor.publish(&job, &[event]).await;
            }
            Err(error) => tracing::warn!(%error, "cannot make the control Secret again"),
        }
    }
    let acted = actor
        .act(
            &job,
            &decision.status,
            &decision.action,
            control_url.as_deref(),
        )
        .await;
    let after = match acted {
        Ok(after) => after,
        Err(Error::Kubernetes {
            action,
            source: kube::Error::Api(refusal),
        }) if is_refusal(refusal.code) && decision.action != decide::Action::RemoveFinalizer => {
            // Refused, not failed: the user sees why (a condition, an Event), and
            // the next look tries again.
            let (status, event) = decide::record_refused_action(
                decision.status.clone(),
                &decision.action,
                &refusal.message,
                job.metadata.generation.unwrap_or_default(),
                Timestamp::now(),
            );
            actor.record_status(&job, &status).await?;
            actor.publish(&job, event.as_slice()).await;
            return Err(Error::Kubernetes {
                action,
                source: kube::Error::Api(refusal),
            });
        }
        Err(Error::Foreign(message)) => {
            // Someone else's object in the way: said as a refusal is.
            let (status, event) = decide::record_refused_action(
                decision.status.clone(),
                &decision.action,
                &message,
                job.metadata.generation.unwrap_or_default(),
                Timestamp::now(),
            );
            actor.record_status(&job, &status).await?;
            actor.publish(&job, event.as_slice()).await;
            return Err(Error::Foreign(message));
        }
        Err(error) => return Err(error),
    };
    if let Some(after) = after {
        actor.record_status(&job, &after).await?;
    }
    Ok(match decision.requeue {
        decide::Requeue::After(wait) => Requeue::requeue(wait),
        decide::Requeue::OnChange => Requeue::await_change(),
    })
}

/// Whether an apiserver answer of `code` refuses the action for a reason the user
/// must see (invalid, forbidden, denied by admission, over quota), rather than a
/// race (409) or throttling (429) the next look gets past.
fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && code != 409 && code != 429
}

/// After a failed reconcile: counted, logged, and tried again after a while.
pub fn error_policy(job: Arc<StreamJob>, error: &Error, context: Arc<Context>) -> Requeue {
    context.metrics.failed(error);
    if error.is_conflict() {
        // Decided on a read the job has moved past (its status is written only
        // if it is unchanged since): decided again on a fresh read.
        tracing::debug!(job = %job.name_any(), %error, "the job changed; looking again");
        return Requeue::requeue(std::time::Duration::from_secs(1));
    }
    tracing::warn!(job = %job.name_any(), %error, "reconcile failed");
    Requeue::requeue(std::time::Duration::from_secs(5))
}
