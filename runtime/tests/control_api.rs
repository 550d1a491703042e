//! The control API of a running job: status, savepoints, checkpoints, metrics,
//! stop with savepoint, and JSON errors.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use strom_runtime::api::Pipeline;
use strom_runtime::control::ControlToken;
use strom_runtime::exec::control::OperatorLabel;
use strom_runtime::exec::{
    Generator, JobConfig, JobControl, JobSettings, PipelineFn, Processes, RestoreFrom, run_job,
};
use strom_runtime::state::Partitioning;

/// Sends one HTTP/1.1 request and returns the status and the body.
fn request(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request_with(address, method, path, "")
}

/// Sends one HTTP/1.1 request with `headers` (lines ending in CRLF).
fn request_with(address: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: strom\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn json(address: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = request(address, method, path);
    let body =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, body)
}

/// An address nothing listens on yet.
fn free_address() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// A control token the operator makes again (its Secret was deleted) reaches a
/// running job through the mounted file, read at each request: no restart.
#[test]
fn a_token_file_is_read_at_each_request() {
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let address = free_address();
    let pipeline = paced_clicks();
    let token = Some(ControlToken::from_file(&token_file));
    let config = api_job_config("rotated", 1, state.path(), address, token);
    let job = thread::spawn(move || run_job(config, pipeline, Arc::default()));
    wait_for("the control API", || TcpStream::connect(address).is_ok());

    let bearer = |token: &str| format!("Authorization: Bearer {token}\r\n");
    let save = |token: &str| request_with(address, "POST", "/v1/savepoints", &bearer(token)).0;
    assert_eq!(save("first-token"), 202);
    // No token to be read (the file gone): every request refused.
    std::fs::remove_file(&token_file).unwrap();
    let (status, body) = request_with(address, "POST", "/v1/savepoints", &bearer("first-token"));
    assert_eq!(status, 401);
    assert!(body.contains("cannot be read yet"), "{body}");
    // Made again with a new token: the new one is taken, the old one no more.
    std::fs::write(&token_file, "second-token").unwrap();
    assert_eq!(save("first-token"), 401);
    assert_eq!(save("second-token"), 202);
    let stop = request_with(address, "POST", "/v1/stop", &bearer("second-token"));
    assert_eq!(stop.0, 202, "{}", stop.1);
    job.join().unwrap().unwrap();
}

/// Clicks generated at 1000 a second into a sink that drops them: a job that runs
/// until it is stopped.
fn paced_clicks() -> PipelineFn {
    Arc::new(|pipeline: &mut Pipeline<'_>| {
        pipeline
            .source("clicks", Generator::new(2, |_, n| n % 10).rate(1000))?
            .sink(|_, _| {});
        Ok(())
    })
}

/// Job `name` at `parallelism` in one process, state under `state`, checkpoints
/// every 100 ms, serving its control API on `address` (guarded by `token`).
fn api_job_config(
    name: &str,
    parallelism: u32,
    state: &Path,
    address: SocketAddr,
    token: Option<ControlToken>,
) -> JobConfig {
    JobConfig {
        settings: JobSettings {
            name: name.into(),
            namespace: None,
            partitioning: Partitioning::new(parallelism, 128).unwrap(),
            checkpoint_interval: Duration::from_millis(100),
            retained_checkpoints: 2,
            savepoint_retention: Default::default(),
            local_dir: state.join("local"),
            storage_options: BTreeMap::new(),
            allow_non_restored_state: false,
        },
        storage_url: format!("file://{}", state.join("storage").display()),
        restore: RestoreFrom::Nothing,
        processes: Processes::Local,
        control_address: Some(address),
        control_token: token,
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within a minute");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_control_api_reports_takes_savepoints_and_stops_the_job() {
    let state = tempfile::tempdir().unwrap();
    let address = free_address();
    let pipeline: PipelineFn = Arc::new(|pipeline: &mut Pipeline<'_>| {
        pipeline
            .source(
                "clicks",
                Generator::new(8, |split, n| (u64::from(split) + n) % 50).rate(5000),
            )?
            .key_by(|user: &u64| *user)
            .count("per-user")?
            .sink(|_, _| {});
        Ok(())
    });
    let config = api_job_config("api", 2, state.path(), address, None);
    let control = Arc::new(JobControl::default());
    let job = {
        let control = Arc::clone(&control);
        thread::spawn(move || run_job(config, pipeline, control))
    };

    wait_for("a completed checkpoint", || {
        TcpStream::connect(address).is_ok()
            && !json(address, "GET", "/v1/job").1["lastCheckpoint"].is_null()
    });
    let (status, body) = json(address, "GET", "/v1/job");
    assert_eq!(status, 200);
    assert_eq!(body["state"], "running");
    assert_eq!(body["parallelism"], 2);
    assert!(body["epoch"].as_u64().unwrap() >= 2, "{body}");
    assert_eq!(request(address, "GET", "/ready"), (200, "ready\n".into()));

    let (status, body) = json(address, "POST", "/v1/savepoints");
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_u64().unwrap();
    let mut savepoint = Value::Null;
    wait_for("the savepoint", || {
        savepoint = json(address, "GET", &format!("/v1/savepoints/{id}")).1;
        savepoint["status"] == "completed"
    });
    let location = savepoint["savepoint"]["location"].as_str().unwrap();
    let manifest = location.strip_prefix("file://").unwrap().to_owned() + "/_manifest";
    assert!(
        std::path::Path::new(&manifest).exists(),
        "{manifest} missing"
    );

    // Whether the job could restore a point, as the operator asks before it
    // replaces the job's pods for spec.restoreFrom (issue 17, point 9).
    let (status, body) = json(
        address,
        "GET",
        &format!("/v1/restore-point?path={location}"),
    );
    assert_eq!(
        (status, body["path"].as_str()),
        (200, Some(location)),
        "{body}"
    );
    assert_eq!(body["kind"], "savepoint");
    let gone = format!("file://{}/savepoints/sp-gone", state.path().display());
    let (status, body) = json(address, "GET", &format!("/v1/restore-point?path={gone}"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"],
        format!("no savepoint or checkpoint at {gone}")
    );
    let folder = format!("file://{}", state.path().join("storage").display());
    let (status, body) = json(
        address,
        "GET",
        &format!("/v1/restore-point?latestOf={folder}"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["path"].as_str().unwrap().starts_with(&folder),
        "{body}"
    );
    let empty = format!("file://{}/other-job", state.path().display());
    let (status, body) = json(
        address,
        "GET",
        &format!("/v1/restore-point?latestOf={empty}"),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(address, "GET", "/v1/restore-point").0, 400);

    // Asked twice with one Idempotency-Key (an operator retrying after a crash,
    // or reading a stale status): one request, one savepoint.
    let keyed = |key: &str| {
        let (status, body) = request_with(
            address,
            "POST",
            "/v1/savepoints",
            &format!("Idempotency-Key: {key}\r\n"),
        );
        assert_eq!(status, 202, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let first = keyed("savepointTriggerNonce-7");
    assert_eq!(keyed("savepointTriggerNonce-7"), first);
    assert_ne!(keyed("savepointTriggerNonce-8"), first);
    let (_, requests) = json(address, "GET", "/v1/savepoints");
    let with_key = |key: &str| {
        requests["savepoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|request| request["key"] == key)
            .count()
    };
    assert_eq!(
        (
            with_key("savepointTriggerNonce-7"),
            with_key("savepointTriggerNonce-8")
        ),
        (1, 1),
        "{requests}"
    );
    wait_for("the keyed savepoints", || {
        json(address, "GET", &format!("/v1/savepoints/{first}")).1["status"] == "completed"
    });

    let (status, body) = json(address, "GET", "/v1/checkpoints");
    assert_eq!(status, 200);
    let checkpoints = body["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty() && checkpoints.len() <= 2, "{body}");

    let (status, metrics) = request(address, "GET", "/metrics");
    assert_eq!(status, 200);
    // Every metric is labelled with the job and the process, per-operator ones
    // also with the subtask (both of this process's).
    for (name, label, value) in [
        (
            "strom_records_in_total{",
            "operator=\"clicks\",subtask=\"0\"",
            None,
        ),
        (
            "strom_records_in_total{",
            "operator=\"clicks\",subtask=\"1\"",
            None,
        ),
        ("strom_checkpoints_total{", "process=\"0\"", None),
        ("strom_savepoints_total{", "job_name=\"", None),
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(name)
                && line.contains(label)
                && line.contains("job_name=\"")
                && value.is_none_or(|value: &str| line.ends_with(&format!(" {value}")))),
            "/metrics lacks {name}{label}…}} {value:?}:\n{metrics}"
        );
    }

    let (status, body) = json(address, "GET", "/v1/savepoints/seven");
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "savepoint id \"seven\" is not a number")
    );
    let (status, body) = json(address, "GET", "/v1/savepoints/99");
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (404, "no savepoint request 99")
    );
    let (status, body) = json(address, "GET", "/v1/jobs");
    assert_eq!(status, 404);
    assert!(body["error"].is_string());

    // The operator's stop before a rescale: the savepoint is handed over.
    let (status, body) = json(address, "POST", "/v1/stop?handOver=true");
    assert_eq!(status, 202, "{body}");
    let stop_id = body["id"].as_u64().unwrap();
    let report = job.join().unwrap().unwrap();
    assert!(control.stop_hands_over(), "handOver=true was not passed on");
    // The first, the keyed ones' (one or two checkpoints), the stop's.
    assert!(
        report.snapshots.savepoints.len() >= 3,
        "the stop took no savepoint: {:?}",
        report.snapshots.savepoints
    );
    let stop = control
        .savepoint_requests()
        .into_iter()
        .find(|r| r.id == stop_id)
        .unwrap();
    assert!(
        stop.stop
            && matches!(
                stop.status,
                strom_runtime::exec::control::SavepointStatus::Completed { .. }
            )
    );
}

/// The Grafana dashboard of the chart queries only metrics the runtime exports (a
/// renamed metric would leave a panel empty).
#[test]
fn the_dashboard_queries_only_metrics_the_runtime_exports() {
    // Families show once they have a series: one of each.
    let control = JobControl::default();
    let source = OperatorLabel::new("source", 0);
    let window = OperatorLabel::new("window", 1);
    control.add_records_in(&source, 1);
    control.add_records_out(&OperatorLabel::new("sink", 0), 1);
    control.add_backpressure(&source, Duration::from_millis(5));
    control.observe_watermark(&window, 0);
    control.add_late_record(&window);
    control.add_malformed_record(&source);
    strom_runtime::connectors::kafka::source::KAFKA_CONSUMER_LAG
        .get_or_create(&strom_runtime::connectors::kafka::source::PartitionLabel {
            cluster: "a".into(),
            topic: "t".into(),
            partition: 0,
        })
        .set(0);
    let exported = control.metrics_text();
    let path = strom_e2e::workspace_root().join("charts/strom-operator/dashboards/strom-jobs.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(start) = rest.find("strom_") {
                let name: String = rest[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[start + name.len()..];
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 8, "{queried:?}");
    for name in queried {
        // Counters are declared without their `_total` suffix.
        let declared = name.strip_suffix("_total").unwrap_or(&name);
        assert!(
            exported
                .lines()
                .any(|line| line.starts_with(&format!("# TYPE {declared} "))),
            "the dashboard queries {name}, which the runtime does not export:\n{exported}"
        );
    }
}

/// Issue 17, point 7: a job with a control token (in pods, every job the operator
/// runs) is changed only by who holds it; reading and metrics stay open.
#[test]
fn requests_that_change_a_job_need_its_control_token() {
    let state = tempfile::tempdir().unwrap();
    let address = free_address();
    let pipeline = paced_clicks();
    let token = ControlToken::new("s3cr3t-token".into());
    let config = api_job_config("guarded", 1, state.path(), address, token);
    let job = thread::spawn(move || run_job(config, pipeline, Arc::default()));
    wait_for("the control API", || TcpStream::connect(address).is_ok());

    assert_eq!(request(address, "GET", "/v1/job").0, 200);
    assert_eq!(request(address, "GET", "/metrics").0, 200);
    // The job reads what this is asked to, with its storage credentials.
    let probe = "/v1/restore-point?path=s3://elsewhere/sp-1";
    assert_eq!(request(address, "GET", probe).0, 401);
    for path in ["/v1/savepoints", "/v1/stop"] {
        let (status, body) = request(address, "POST", path);
        assert_eq!(status, 401, "{path} without the token: {body}");
        assert!(!body.contains("s3cr3t"), "{body}");
        let wrong = "Authorization: Bearer s3cr3t-tokem\r\n";
        assert_eq!(request_with(address, "POST", path, wrong).0, 401, "{path}");
    }
    let right = "Authorization: Bearer s3cr3t-token\r\n";
    assert_eq!(
        request_with(address, "POST", "/v1/savepoints", right).0,
        202
    );
    assert_eq!(request_with(address, "POST", "/v1/stop", right).0, 202);
    let report = job.join().unwrap().unwrap();
    assert!(!report.snapshots.savepoints.is_empty());
}
