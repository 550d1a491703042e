//! Checkpoints and savepoints on a real S3 server (MinIO from `e2e/infra`), through
//! the `strom` binary as a pod runs it: credentials from `AWS_*` environment
//! variables, endpoint and region from `state.storageOptions`. A job stopped with a
//! savepoint at parallelism 2 and restored from it at 3 writes every result once.

use std::path::Path;
use std::process::{Command, Output};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use strom_e2e::S3Server;

mod common;

use common::assert_each_running_count_once;

const SPLITS: u64 = 16;
const PER_SPLIT: u64 = 1000;
const USERS: u64 = 200;
const SEED: u64 = 7;

/// A clicks-per-user manifest whose state lives under `s3://<bucket>/<prefix>`.
fn manifest(server: &S3Server, prefix: &str, out: &Path) -> String {
    format!(
        r#"apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks
spec:
  parallelism: 2
  pipeline:
    name: clicks-per-user
    args:
      clicksPerSecond: "6000"
      clicksPerSplit: "{PER_SPLIT}"
      users: "{USERS}"
      seed: "{SEED}"
      outputPath: file://{out}
  state:
    checkpointInterval: 200ms
    storage: s3://{bucket}/{prefix}
    storageSecret:
      name: s3-credentials
    storageOptions:
      endpoint: {endpoint}
      region: {region}
      allow_http: "true"
"#,
        out = out.display(),
        bucket = server.bucket,
        endpoint = server.endpoint,
        region = server.region,
    )
}

/// The S3 server, and a folder holding `job.yaml`: the job with its state under a
/// new prefix (returned) of the bucket and its output in `out/`.
fn job_on_s3() -> Option<(S3Server, tempfile::TempDir, String)> {
    let server = S3Server::from_env().expect("the S3 server")?;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("runtime-tests/{}", uuid::Uuid::new_v4().simple());
    let manifest = manifest(&server, &prefix, &dir.path().join("out"));
    std::fs::write(dir.path().join("job.yaml"), manifest).unwrap();
    Some((server, dir, prefix))
}

/// `strom run` of the manifest with the server's keys in the environment, as the
/// operator passes `state.storageSecret` to a pod.
fn strom_run(server: &S3Server, dir: &Path, secret_access_key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("run")
        .arg(dir.join("job.yaml"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &server.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret_access_key)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("FAILPOINTS")
        .output()
        .unwrap()
}

fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Every object under `prefix` in the bucket.
async fn objects(server: &S3Server, prefix: &str) -> Vec<String> {
    server
        .store()
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_stopped_with_a_savepoint_on_s3_resumes_at_another_parallelism() {
    let Some((server, dir, prefix)) = job_on_s3() else {
        return;
    };
    let out = dir.path().join("out");
    let work = |name: &str| dir.path().join(name).display().to_string();

    // 16 000 clicks at 6 000/s last under three seconds: the stop lands mid-run.
    let first = strom_run(
        &server,
        dir.path(),
        &server.secret_access_key,
        &["--stop-after", "1s", "--work-dir", &work("work-1")],
    );
    let report = succeeded(&first, "the first run");
    let savepoint = report
        .lines()
        .find_map(|line| line.strip_prefix("savepoint: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no savepoint in the report:\n{report}"))
        .to_owned();
    assert!(
        savepoint.starts_with(&format!("s3://{}/{prefix}/", server.bucket)),
        "the savepoint is not on S3: {savepoint}"
    );

    let second = strom_run(
        &server,
        dir.path(),
        &server.secret_access_key,
        &[
            "--from-savepoint",
            &savepoint,
            "--parallelism",
            "3",
            "--work-dir",
            &work("work-2"),
        ],
    );
    succeeded(&second, "the restored run");
    assert_each_running_count_once(&out, SPLITS, PER_SPLIT, USERS, SEED);

    let stored = objects(&server, &prefix).await;
    for expected in ["/savepoints/sp-", "/_manifest", "/shared/"] {
        assert!(
            stored.iter().any(|name| name.contains(expected)),
            "nothing like {expected} on S3: {stored:#?}"
        );
    }
}

#[test]
fn a_wrong_secret_key_fails_the_job_with_a_clear_error_that_hides_it() {
    let Some((server, dir, prefix)) = job_on_s3() else {
        return;
    };
    let wrong = "wrong-secret-key-0123456789";
    let output = strom_run(
        &server,
        dir.path(),
        wrong,
        &["--work-dir", &dir.path().join("work").display().to_string()],
    );
    assert!(!output.status.success(), "the job ran with a wrong key");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Not on a terminal, the log is JSON lines: the failure is one of them.
    let error = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["level"] == "ERROR" && line["fields"]["command"] == "strom run")
        .map(|line| {
            line["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error.contains(&format!("s3://{}/{prefix}", server.bucket)),
        "the error does not name the storage: {error}"
    );
    assert!(
        stderr.contains("SignatureDoesNotMatch"),
        "the error does not say the key was refused: {stderr}"
    );
    assert!(
        !stderr.contains(wrong),
        "the error shows the secret: {stderr}"
    );
}
