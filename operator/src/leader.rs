//! Leader election by a `coordination.k8s.io` Lease, so that two operator replicas
//! never reconcile at once: the holder renews the Lease; another takes it over only
//! once it has not been renewed for its whole duration. Updates carry the Lease's
//! resource version, so two candidates cannot both win. The holder gives up at its
//! renew deadline, two thirds of the duration after its last renewal, so it has
//! stopped before another can take over; a holder that stops releases the Lease,
//! so its successor need not wait.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::Error;

/// A candidate for leadership.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// The Lease.
    pub api: Api<Lease>,
    /// The Lease's name.
    pub lease: String,
    /// This candidate (e.g. its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
}

/// What one attempt to take or renew the Lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This candidate holds the Lease.
    Leading,
    /// Another does, named.
    Following(String),
}

impl LeaderElection {
    /// A candidate for the Lease `lease` in `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        lease: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease: lease.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Takes or renews the Lease, once.
    pub async fn try_acquire(&self) -> Result<Leadership, Error> {
        let now = Timestamp::now();
        let existing = self
            .api
            .get_opt(&self.lease)
            .await
            .map_err(Error::kubernetes(format!("reading Lease {}", self.lease)))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Leadership::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    Ok(Leadership::Following("another candidate".into()))
                }
                Err(error) => Err(Error::kubernetes(format!("creating Lease {}", self.lease))(
                    error,
                )),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let held_for = SignedDuration::from_secs(
            spec.lease_duration_seconds
                .map_or(self.duration.as_secs() as i64, i64::from),
        );
        let expired = renewed.is_none_or(|t| now.duration_since(t) > held_for);
        if holder != self.identity && !holder.is_empty() && !expired {
            return Ok(Leadership::Following(holder));
        }
        let (acquired, transitions) = if holder == self.identity {
            (
                spec.acquire_time.map_or(now, |t| t.0),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        match self
            .api
            .replace(&self.lease, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Leadership::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Leadership::Following("another candidate".into()))
            }
            Err(error) => Err(Error::kubernetes(format!("renewing Lease {}", self.lease))(
                error,
            )),
        }
    }

    fn spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Waits until this candidate leads; returns when the winning attempt began
    /// (the time the Lease records, to [`Self::keep`] it from).
    pub async fn acquire(&self) -> Result<tokio::time::Instant, Error> {
        loop {
            let attempt = tokio::time::Instant::now();
            match self.try_acquire().await? {
                Leadership::Leading => return Ok(attempt),
                Leadership::Following(holder) => {
                    tracing::info!(%holder, lease = self.lease, "waiting for leadership");
                    tokio::time::sleep(self.duration / 3).await;
                }
            }
        }
    }

    /// How long after its last renewal the holder gives leadership up when it
    /// cannot renew: two thirds of the Lease's duration (as client-go's 10 s of
    /// 15 s). The holder then stops at once; the last third is margin for clock
    /// skew and a request already on its way.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Renews the Lease every third of its duration from `renewed` (when the
    /// last successful attempt began); returns when leadership is lost: another
    /// holds the Lease, or it was not renewed within [`Self::renew_deadline`] of
    /// the last renewal (each attempt is cut off there).
    pub async fn keep(&self, mut renewed: tokio::time::Instant) -> Error {
        let deadline = self.renew_deadline();
        let not_renewed = |why: String| {
            Error::LostLeadership(format!(
                "Lease {} not renewed within {}s: {why}",
                self.lease,
                deadline.as_secs_f32()
            ))
        };
        loop {
            let left = deadline.saturating_sub(renewed.elapsed());
            tokio::time::sleep((self.duration / 3).min(left)).await;
            let attempt = tokio::time::Instant::now();
            let left = deadline.saturating_sub(renewed.elapsed());
            if left.is_zero() {
                return not_renewed("the last attempt failed".into());
            }
            match tokio::time::timeout(left, self.try_acquire()).await {
                // The Lease records the time taken at the attempt's start.
                Ok(Ok(Leadership::Leading)) => renewed = attempt,
                Ok(Ok(Leadership::Following(holder))) => {
                    return Error::LostLeadership(format!(
                        "Lease {} is held by {holder}",
                        self.lease
                    ));
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot renew the Lease; retrying"),
                Err(_) => return not_renewed("the renewal did not answer in time".into()),
            }
        }
    }

    /// Gives the Lease up, if this candidate holds it: its holder is cleared, so
    /// another candidate takes it at its next attempt. Called by a leader that
    /// stops (after its last write).
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.lease)
            .await
            .map_err(Error::kubernetes(format!("reading Lease {}", self.lease)))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.lease, &PostParams::default(), &lease)
            .await
        {
            // Changed since it was read: taken over by another already.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            result => result
                .map(|_| ())
                .map_err(Error::kubernetes(format!("releasing Lease {}", self.lease))),
        }
    }
}
