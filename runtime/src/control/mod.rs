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

mod routes;

pub use routes::{ControlState, metrics_router, router};
