//! The control API, served over HTTP by process 0 of a job: status, savepoints,
//! stop with savepoint, checkpoints and Prometheus metrics. The operator drives
//! rescales through it.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /v1/job` | the job's status: state, epoch, last checkpoint, savepoints |
//! | `POST /v1/savepoints` | takes a savepoint of the next checkpoint (202, with its id; an `Idempotency-Key` header sent again answers the first request) |
//! | `GET /v1/savepoints`, `GET /v1/savepoints/{id}` | savepoint requests and their status |
//! | `POST /v1/stop` | stops with a savepoint (202, with the savepoint's id) |
//! | `GET /v1/checkpoints` | the retained completed checkpoints |
//! | `GET /metrics` | Prometheus metrics |
//!
//! Every other process of the job serves `GET /metrics` alone on the same port
//! ([`metrics_router`]): its own workers' metrics, labelled with `job_name` and `process`.
//!
//! Errors are JSON: `{"error": "..."}` with a 4xx or 5xx status.
//!
//! A job given a [`ControlToken`] (in pods, from the Secret the operator makes for
//! it) refuses the requests that change it (`POST`) without `Authorization:
//! Bearer <token>` (401); reading and metrics stay open.

mod routes;

use std::path::PathBuf;

pub use routes::{ControlState, metrics_router, router};

/// The token a job's control API requires of requests that change the job. Its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum ControlToken {
    /// A token given once, at start (`STROM_CONTROL_TOKEN`).
    Fixed(String),
    /// A file holding the token, read at each request (`STROM_CONTROL_TOKEN_FILE`):
    /// in a pod, the mounted copy of the job's control Secret, which the kubelet
    /// replaces when the Secret changes. A token the operator makes again (the
    /// Secret was deleted) so reaches running pods without restarting them.
    File(PathBuf),
}

impl ControlToken {
    /// The token `text`; `None` when empty.
    pub fn new(text: String) -> Option<Self> {
        (!text.is_empty()).then_some(Self::Fixed(text))
    }

    /// The token in the file at `path`, read when a request comes.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// The token now: `None` when its file cannot be read or is empty, and
    /// then every request that needs the token is refused.
    pub fn current(&self) -> Option<String> {
        match self {
            Self::Fixed(token) => Some(token.clone()),
            Self::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|token| !token.is_empty()),
        }
    }
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("ControlToken(<redacted>)"),
            Self::File(path) => write!(f, "ControlToken(file {})", path.display()),
        }
    }
}
