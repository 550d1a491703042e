//! What can go wrong in a reconcile.

/// An error of one reconcile; the job is looked at again after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the apiserver failed.
    #[error("{action}: {source}")]
    Kubernetes {
        /// What the operator was doing, e.g. "applying StatefulSet clicks".
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A StreamJob without a name or namespace (never from the apiserver).
    #[error("StreamJob without {0}")]
    MissingMetadata(&'static str),
    /// An object the operator was making went meanwhile (collected after a
    /// deleted job of the same name); made again on the next look.
    #[error("{0} went while it was being made")]
    Gone(String),
    /// An object the operator makes for a job exists and belongs to someone
    /// else: the job cannot deploy until it is removed.
    #[error("{0}")]
    Foreign(String),
    /// Another operator replica took the leader Lease.
    #[error("lost leadership: {0}")]
    LostLeadership(String),
}

impl Error {
    /// Whether the apiserver refused a write because the object changed since it
    /// was read (409): the next look reads it again.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::Kubernetes { source: kube::Error::Api(status), .. } if status.code == 409
        )
    }

    /// The `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            _ if self.is_conflict() => "conflict",
            Self::Kubernetes { .. } => "kubernetes",
            Self::MissingMetadata(_) => "invalid_object",
            Self::LostLeadership(_) => "leadership",
            Self::Gone(_) => "conflict",
            Self::Foreign(_) => "invalid_object",
        }
    }

    /// Wraps a client error with what the operator was doing.
    pub fn kubernetes(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kubernetes { action, source }
    }
}
