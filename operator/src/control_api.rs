//! Client of a runtime job's control API (served by its pod 0): the job's state,
//! its savepoint requests, stop with savepoint, trigger a savepoint.

use std::time::Duration;

use serde::Deserialize;

use crate::decide::{RestoreCheck, RuntimeReport, RuntimeState, SavepointOutcome, SavepointSeen};

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A client of control APIs, shared by every job.
#[derive(Clone, Debug)]
pub struct ControlClient {
    http: reqwest::Client,
}

impl Default for ControlClient {
    fn default() -> Self {
        // No connection is kept between calls: a kept connection outlives the pod
        // it was made to (a rescale replaces pod 0 behind the same Service name),
        // and an operator in the cluster was seen asking such a connection for
        // minutes, answered 404, while the new pod 0 ran. A call or two per
        // reconcile does not need the pool.
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http }
    }
}

/// `GET /v1/job`, the parts the operator reads.
#[derive(Deserialize)]
struct JobAnswer {
    state: String,
    #[serde(default)]
    failure: Option<String>,
    #[serde(default, rename = "lastCheckpoint")]
    last_checkpoint: Option<serde_json::Value>,
}

/// `GET /v1/savepoints`.
#[derive(Deserialize)]
struct SavepointsAnswer {
    savepoints: Vec<SavepointAnswer>,
}

#[derive(Deserialize)]
struct SavepointAnswer {
    id: i64,
    stop: bool,
    status: String,
    #[serde(default)]
    savepoint: Option<SavepointLocation>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct SavepointLocation {
    location: String,
}

/// The answer of `POST /v1/stop` and `POST /v1/savepoints`.
#[derive(Deserialize)]
struct RequestAnswer {
    id: i64,
}

impl ControlClient {
    /// The job's state and savepoint requests, from the API at `base`
    /// (`http://host:port`).
    pub async fn report(&self, base: &str) -> Result<RuntimeReport, String> {
        let job: JobAnswer = self.get(&format!("{base}/v1/job")).await?;
        let list: SavepointsAnswer = self.get(&format!("{base}/v1/savepoints")).await?;
        let state = match job.state.as_str() {
            "running" => RuntimeState::Running,
            "stopping" => RuntimeState::Stopping,
            "finished" => RuntimeState::Finished,
            _ => RuntimeState::Failed(job.failure.unwrap_or(job.state)),
        };
        let savepoints = list
            .savepoints
            .into_iter()
            .map(|answer| SavepointSeen {
                id: answer.id,
                stop: answer.stop,
                outcome: match (answer.status.as_str(), answer.savepoint) {
                    ("completed", Some(savepoint)) => {
                        SavepointOutcome::Completed(savepoint.location)
                    }
                    ("pending", _) => SavepointOutcome::Pending,
                    _ => SavepointOutcome::Failed(
                        answer.error.unwrap_or_else(|| answer.status.clone()),
                    ),
                },
            })
            .collect();
        Ok(RuntimeReport {
            state,
            savepoints,
            checkpointed: job.last_checkpoint.is_some_and(|c| !c.is_null()),
        })
    }

    /// Asks the job to stop with a savepoint, with its control `token`; the
    /// request's id. Asking again answers the same id. With `hand_over`, the job
    /// writes the savepoint without copying its files (the next run, restoring
    /// it at once, completes it); a runtime that predates it copies as before.
    pub async fn stop_with_savepoint(
        &self,
        base: &str,
        token: Option<&str>,
        hand_over: bool,
    ) -> Result<i64, String> {
        let query = if hand_over { "?handOver=true" } else { "" };
        self.post(&format!("{base}/v1/stop{query}"), None, token)
            .await
    }

    /// Asks the job for a savepoint without stopping; the request's id. Asking
    /// again with the same `key` answers the same id (one savepoint, however
    /// often the operator asks).
    pub async fn trigger_savepoint(
        &self,
        base: &str,
        key: &str,
        token: Option<&str>,
    ) -> Result<i64, String> {
        self.post(&format!("{base}/v1/savepoints"), Some(key), token)
            .await
    }

    /// Asks the job whether it can restore the point `query` names (`path`, or
    /// `latestOf` a job's folder), read with its storage credentials: the
    /// point's URL, or why not.
    pub async fn check_restore_point(
        &self,
        base: &str,
        query: (&str, &str),
        token: Option<&str>,
    ) -> RestoreCheck {
        let url = format!("{base}/v1/restore-point");
        let mut request = self.http.get(&url).query(&[query]);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = async {
            let response = request.send().await.map_err(describe)?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.map_err(describe)?;
            let field = |name: &str| body.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            match (status.is_success(), field("path"), field("error")) {
                (true, Some(path), _) => Ok(path),
                (false, _, Some(error)) if error.starts_with("no such endpoint") => Err(
                    "the job's runtime is too old to check restore points (it has no \
                     /v1/restore-point): run it on a newer image first"
                        .to_owned(),
                ),
                (_, _, Some(error)) => Err(error),
                _ => Err(format!("{url}: {status}: unexpected answer {body}")),
            }
        };
        match answer.await {
            Ok(path) => RestoreCheck::Found(path),
            Err(error) => RestoreCheck::Failed(error),
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, String> {
        let response = self.http.get(url).send().await.map_err(describe)?;
        let response = response.error_for_status().map_err(describe)?;
        response.json().await.map_err(describe)
    }

    /// POSTs to `url` with the job's control `token` (when it has one; the
    /// requests that change a job need it).
    async fn post(&self, url: &str, key: Option<&str>, token: Option<&str>) -> Result<i64, String> {
        let mut request = self.http.post(url);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(describe)?;
        let status = response.status();
        let text = response.text().await.map_err(describe)?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {text}"));
        }
        serde_json::from_str::<RequestAnswer>(&text)
            .map(|answer| answer.id)
            .map_err(|e| format!("{url}: unexpected answer {text:?}: {e}"))
    }
}

/// The error and its causes on one line (reqwest's own text omits them).
fn describe(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
