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

pub use routes::{ControlState, metrics_router, router};

/// The token a job's control API requires of requests that change the job. Its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlToken(String);

impl ControlToken {
    /// The token `text`; `None` when empty.
    pub fn new(text: String) -> Option<Self> {
        (!text.is_empty()).then_some(Self(text))
    }

    /// The token itself, to compare or send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(<redacted>)")
    }
}
