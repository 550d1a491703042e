//! The control API's routes and handlers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::checkpoint::{
    CheckpointStorage, StorageError, check_state_format, locate_snapshot, newest_snapshot,
    read_manifest,
};
use crate::exec::control::{JobControl, SavepointStatus};

/// What the handlers read and act on.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// The job's name.
    pub job: String,
    /// The job's parallelism.
    pub parallelism: u32,
    /// The job's number of key groups: what a point it restores must have.
    pub max_parallelism: u32,
    /// The job's shared state in this process (process 0).
    pub control: Arc<JobControl>,
    /// The job's checkpoint storage.
    pub storage: CheckpointStorage,
    /// The token requests that change the job (stop, savepoints) must carry as
    /// `Authorization: Bearer <token>`; any caller may when `None` (a local run).
    pub token: Option<super::ControlToken>,
}

/// An error answer: a status and a message, as JSON.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The control API's router.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/v1/job", get(job_status))
        .route(
            "/v1/savepoints",
            post(trigger_savepoint).get(list_savepoints),
        )
        .route("/v1/savepoints/{id}", get(savepoint_status))
        .route("/v1/stop", post(stop_with_savepoint))
        .route("/v1/checkpoints", get(list_checkpoints))
        .route("/v1/restore-point", get(restore_point))
        .route("/metrics", get(metrics))
        .route(READY_PATH, get(ready))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /v1/job".into(),
            )
        })
        .with_state(state)
}

async fn job_status(State(state): State<ControlState>) -> Json<serde_json::Value> {
    let control = &state.control;
    let snapshots = control.snapshots();
    let phase = if snapshots.failure.is_some() {
        "failed"
    } else if control.is_shutting_down() {
        "finished"
    } else if control.stop_requested() {
        "stopping"
    } else {
        "running"
    };
    Json(json!({
        "job": state.job,
        "state": phase,
        "parallelism": state.parallelism,
        "epoch": control.epoch(),
        "recordsIn": control.records_in(),
        "recordsOut": control.records_out(),
        "lastCheckpoint": snapshots.last_checkpoint,
        "savepoints": snapshots.savepoints,
        "lastError": snapshots.last_error,
        "failure": snapshots.failure,
    }))
}

/// The longest `Idempotency-Key` taken.
const MAX_KEY_LENGTH: usize = 256;

/// Refuses a request without the control API's token, when it has one.
fn authorize(state: &ControlState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let Some(expected) = token.current() else {
        tracing::warn!(
            ?token,
            "the control token cannot be read: refusing the request"
        );
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the job's control token cannot be read yet; try again".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this request needs the job's control token (Authorization: Bearer)".into(),
        )),
    }
}

/// Whether two secrets are equal, in a time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn trigger_savepoint(
    State(state): State<ControlState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    // A client that may ask again (after a crash, or from a stale view) sends a
    // key: the same key answers the first request.
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LENGTH => Some(key.to_owned()),
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
                    ),
                ));
            }
        },
    };
    if state.control.stop_requested() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "the job is stopping; its final savepoint is already requested".into(),
        ));
    }
    let id = state.control.request_savepoint(key.as_deref());
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "pending" })),
    )
        .into_response())
}

/// The query of `POST /v1/stop`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StopQuery {
    /// Whether the savepoint is handed over to the next run, which restores it at
    /// once and completes it (`handOver=true`: the operator's rescales), rather
    /// than copied before the job ends.
    #[serde(default)]
    hand_over: bool,
}

async fn stop_with_savepoint(
    State(state): State<ControlState>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<StopQuery>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let stopping = state.control.stop_requested();
    // Asked again, the same request answers (a plain stop after a handing-over
    // one makes it plain: the job is deleted during a rescale).
    let id = if query.hand_over {
        state.control.request_stop_handing_over()
    } else {
        state.control.request_stop()
    };
    let status = if stopping { "stopping" } else { "pending" };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": status })),
    )
        .into_response())
}

async fn list_savepoints(State(state): State<ControlState>) -> Json<serde_json::Value> {
    Json(json!({ "savepoints": state.control.savepoint_requests() }))
}

async fn savepoint_status(
    State(state): State<ControlState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("savepoint id {id:?} is not a number"),
        )
    })?;
    let request = state
        .control
        .savepoint_requests()
        .into_iter()
        .find(|request| request.id == id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no savepoint request {id}")))?;
    let status = match request.status {
        SavepointStatus::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    Ok((status, Json(request)).into_response())
}

async fn list_checkpoints(
    State(state): State<ControlState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let unavailable = |error: crate::checkpoint::StorageError| {
        ApiError(StatusCode::BAD_GATEWAY, error.to_string())
    };
    let mut checkpoints = Vec::new();
    for id in state
        .storage
        .completed_checkpoints()
        .await
        .map_err(unavailable)?
    {
        let location = state.storage.checkpoint_location(&id);
        // Collected between the listing and the read: no longer retained.
        let Ok(manifest) = state.storage.read_manifest(&location).await else {
            continue;
        };
        checkpoints.push(json!({
            "epoch": id.epoch,
            "run": id.run.to_string(),
            "location": state.storage.url_of(&location.dir),
            "stateBytes": manifest.state_size(),
            "completedAtMs": manifest.completed_at_ms,
            "parallelism": manifest.parallelism,
        }));
    }
    Ok(Json(json!({ "checkpoints": checkpoints })))
}

/// The query of `GET /v1/restore-point`: one of the two.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestorePointQuery {
    /// A savepoint's or retained checkpoint's URL.
    path: Option<String>,
    /// The folder of a job (`<state.storage>/<job>`): its newest savepoint or
    /// checkpoint is meant.
    latest_of: Option<String>,
}

/// Whether the job could restore a point, read with the job's own storage
/// credentials: asked by the operator before it replaces the job's pods to
/// restore `restoreFrom`. Answers the point's URL (the newest one's, for
/// `latestOf`), kind and epoch; 404 when it is not there, 409 when the job
/// cannot restore it (other key groups, a newer format). Needs the token: the
/// job reads what it is asked to.
async fn restore_point(
    State(state): State<ControlState>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<RestorePointQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let options = state.storage.options();
    let unavailable = |error: StorageError| ApiError(StatusCode::BAD_GATEWAY, error.to_string());
    let is_url = |text: &Option<String>| {
        text.as_deref()
            .is_none_or(|text| text.starts_with("s3://") || text.starts_with("file:///"))
    };
    if !is_url(&query.path) || !is_url(&query.latest_of) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "path and latestOf must be URLs: s3://... or file:///...".into(),
        ));
    }
    let (url, manifest) = match (query.path, query.latest_of) {
        (Some(path), None) => {
            let (store, location) = locate_snapshot(&path, options)
                .map_err(|error| ApiError(StatusCode::BAD_REQUEST, error.to_string()))?;
            match read_manifest(&store, &location).await {
                Ok(manifest) => (path, manifest),
                Err(StorageError::ObjectStore {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => {
                    return Err(ApiError(
                        StatusCode::NOT_FOUND,
                        format!("no savepoint or checkpoint at {path}"),
                    ));
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
        (None, Some(job_url)) => match newest_snapshot(&job_url, options).await {
            Ok(Some(newest)) => (newest.url, newest.manifest),
            Ok(None) => {
                return Err(ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no savepoint or completed checkpoint under {job_url}"),
                ));
            }
            Err(error) => return Err(unavailable(error)),
        },
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give one of the query parameters path and latestOf".into(),
            ));
        }
    };
    check_state_format(&manifest, &url)
        .map_err(|error| ApiError(StatusCode::CONFLICT, error.to_string()))?;
    if manifest.max_parallelism != state.max_parallelism {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{url} has {} key groups (maxParallelism) and the job {}: a job's \
                 maxParallelism is fixed, so it cannot restore it",
                manifest.max_parallelism, state.max_parallelism
            ),
        ));
    }
    Ok(Json(json!({
        "path": url,
        "kind": manifest.kind,
        "epoch": manifest.epoch,
        "completedAtMs": manifest.completed_at_ms,
        "parallelism": manifest.parallelism,
    })))
}

/// The router of every process but process 0: its metrics only (the control API
/// is process 0's), so that each pod of a job is scraped for its own workers.
pub fn metrics_router(control: Arc<JobControl>) -> Router {
    let ready = Arc::clone(&control);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let control = Arc::clone(&control);
                async move { metrics_answer(&control) }
            }),
        )
        .route(
            READY_PATH,
            get(move || {
                let control = Arc::clone(&ready);
                async move { ready_answer(&control) }
            }),
        )
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "this process serves /metrics and /ready only; the control API is process 0's"
                    .into(),
            )
        })
}

/// Where a process answers whether it is ready: its pod's readiness probe.
pub const READY_PATH: &str = "/ready";

async fn metrics(State(state): State<ControlState>) -> Result<Response, ApiError> {
    metrics_answer(&state.control)
}

async fn ready(State(state): State<ControlState>) -> Response {
    ready_answer(&state.control)
}

/// 200 once every worker of this process has built its operators and restored
/// their state, or once the job failed (so the operator asks the control API and
/// reports why); 503 before (a pod restoring a large state is not ready yet).
fn ready_answer(control: &JobControl) -> Response {
    if control.running_since().is_some() || control.failure().is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "building operators and restoring state\n",
        )
            .into_response()
    }
}

fn metrics_answer(control: &JobControl) -> Result<Response, ApiError> {
    let registry = control.metrics.registry();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_stop_after_a_handing_over_one_makes_it_plain() {
        // The operator asks again, plainly, when the job is deleted during a
        // rescale's stop: the same request answers, and its savepoint is copied.
        let control = Arc::new(JobControl::default());
        let state = ControlState {
            job: "clicks".into(),
            parallelism: 1,
            max_parallelism: 128,
            control: Arc::clone(&control),
            storage: CheckpointStorage::open("file:///nowhere", &Default::default()).unwrap(),
            token: None,
        };
        let stop = |hand_over| {
            let answer = tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(stop_with_savepoint(
                    State(state.clone()),
                    axum::http::HeaderMap::new(),
                    axum::extract::Query(StopQuery { hand_over }),
                ));
            let Ok(answer) = answer else {
                panic!("the stop was refused")
            };
            assert_eq!(answer.status(), StatusCode::ACCEPTED);
        };
        stop(true);
        assert!(control.stop_hands_over());
        stop(false);
        assert!(!control.stop_hands_over());
        // A handing-over ask after a plain one leaves it plain.
        stop(true);
        assert!(!control.stop_hands_over());
        let stops = control.savepoint_requests();
        assert_eq!(stops.iter().filter(|request| request.stop).count(), 1);
    }

    #[test]
    fn a_process_is_ready_once_all_its_workers_built_their_operators() {
        let control = JobControl::default();
        assert_eq!(
            ready_answer(&control).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        control.worker_built(2);
        assert_eq!(
            ready_answer(&control).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        control.worker_built(2);
        assert_eq!(ready_answer(&control).status(), StatusCode::OK);

        let failed = JobControl::default();
        failed.record_failure("restoring: no such file".into());
        assert_eq!(ready_answer(&failed).status(), StatusCode::OK);
    }
}
