//! `strom validate` on the examples and on a broken manifest, and the log of
//! `strom run`, through the binary.

use std::process::Command;

fn strom() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strom"))
}

fn workspace_file(path: &str) -> String {
    strom_e2e::workspace_root().join(path).display().to_string()
}

#[test]
fn the_examples_validate_and_are_summarized() {
    let out = strom()
        .args(["validate", &workspace_file("examples/multi-cluster.yaml")])
        .output()
        .expect("strom runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("StreamJob global-orders (sql), parallelism 4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("on 2 pod(s), kafka clusters [eu, us, analytics]"),
        "{stdout}"
    );
}

#[test]
fn a_broken_manifest_fails_with_the_apiserver_message() {
    let out = strom()
        .args([
            "validate",
            &workspace_file("examples/kafka-sql.yaml"),
            &workspace_file("crds/tests/invalid/duplicate-cluster-names.yaml"),
        ])
        .output()
        .expect("strom runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spec: kafkaClusters names must be unique"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("views-per-country"));
}

#[test]
fn a_local_example_validates_for_a_local_run_only() {
    let local = workspace_file("examples/local-clicks.yaml");
    let out = strom()
        .args(["validate", &local])
        .output()
        .expect("strom runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("file:// storage must be a folder on state.volume"),
        "{stderr}"
    );
    let out = strom()
        .args(["validate", "--local", &local])
        .output()
        .expect("strom runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("clicks-per-user"), "{stdout}");
}

#[test]
fn a_missing_file_is_named() {
    let out = strom()
        .args(["validate", "/no/such/job.yaml"])
        .output()
        .expect("strom runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/no/such/job.yaml: cannot read the file"),
        "{stderr}"
    );
}

/// A `.sql` script validates as `strom run` and `strom explain` take it: as a job
/// named after the file with a manifest's defaults; a broken one fails with the
/// line and column of its error.
#[test]
fn sql_scripts_validate_like_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("Clicks_Per_User.sql");
    std::fs::write(
        &good,
        "CREATE TABLE clicks (user_id BIGINT, url STRING) WITH ('connector' = 'datagen');\n\
         CREATE TABLE out (user_id BIGINT, n BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO out SELECT user_id, COUNT(*) FROM clicks GROUP BY user_id;\n",
    )
    .unwrap();
    let out = strom()
        .args(["validate", &good.display().to_string()])
        .output()
        .expect("strom runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Clicks_Per_User.sql: ok: StreamJob clicks-per-user (sql), parallelism 1"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE clicks (user_id BIGINT) WITH ('connector' = 'datagen');\n\
         INSERT INTO out SELECT user_id FROM clicks;\n",
    )
    .unwrap();
    let out = strom()
        .args(["validate", &bad.display().to_string()])
        .output()
        .expect("strom runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.sql: spec.sql: "), "{stderr}");
    assert!(stderr.contains("line 2, column 1"), "{stderr}");
}

/// `strom run` logs JSON lines on stderr when asked (and in pods, where stderr
/// is not a terminal): the run's start and each completed checkpoint, with
/// their fields; `STROM_LOG` filters them.
#[test]
fn strom_run_logs_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("seq.sql");
    std::fs::write(
        &script,
        "CREATE TABLE seq (n BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000',
           'number-of-rows' = '3000', 'fields.n.kind' = 'sequence', 'fields.n.start' = '1',
           'fields.n.end' = '3000');
         CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT n FROM seq;",
    )
    .unwrap();
    let run = |filter: &str| {
        let out = strom()
            .current_dir(dir.path())
            .env("STROM_LOG", filter)
            .args(["run", "--log-format", "json", "--work-dir"])
            .arg(dir.path().join("work"))
            .arg(&script)
            .output()
            .expect("strom runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Progress lines share stderr: the log's lines are the JSON objects in it.
        String::from_utf8_lossy(&out.stderr)
            .split(['\n', '\r'])
            .filter_map(|line| line.find('{').map(|start| &line[start..]))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .collect::<Vec<_>>()
    };
    let lines = run("info");
    let message = |line: &serde_json::Value| line["fields"]["message"].as_str().map(str::to_owned);
    let started = lines
        .iter()
        .find(|line| message(line).as_deref() == Some("run started from empty state"))
        .unwrap_or_else(|| panic!("no run start in {lines:?}"));
    assert_eq!(started["level"], "INFO");
    assert!(started["fields"]["run"].is_string(), "{started}");
    let checkpoint = lines
        .iter()
        .find(|line| message(line).as_deref() == Some("checkpoint completed"))
        .unwrap_or_else(|| panic!("no checkpoint in {lines:?}"));
    assert!(
        checkpoint["fields"]["epoch"].as_u64().is_some(),
        "{checkpoint}"
    );
    assert_eq!(checkpoint["target"], "strom_runtime::exec::coordinator");
    // Filtered to warnings: no info lines.
    assert!(run("warn").iter().all(|line| line["level"] != "INFO"));
}

/// A job that fails logs JSON lines to the end: the worker's panic and the
/// command's failure are error events with their causes, no plain text.
#[test]
fn a_failing_job_logs_its_panic_and_failure_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("part-0.json"), "{\"n\": 1}\nnot json at all\n").unwrap();
    let script = dir.path().join("bad-input.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE numbers (n BIGINT) WITH ('connector' = 'filesystem',
               'path' = 'file://{}', 'format' = 'json');
             CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT n FROM numbers;",
            input.display()
        ),
    )
    .unwrap();
    let out = strom()
        .current_dir(dir.path())
        .args(["run", "--log-format", "json", "--work-dir"])
        .arg(dir.path().join("work"))
        .arg(&script)
        .output()
        .expect("strom runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .split(['\n', '\r'])
        .filter_map(|line| line.find('{').map(|start| &line[start..]))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let errors: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    let message = |line: &serde_json::Value| line["fields"]["message"].to_string();
    assert!(
        errors
            .iter()
            .any(|line| message(line).contains("panicked: source")
                && message(line).contains("not json at all")
                && line["fields"]["location"].is_string()),
        "no panic event in {errors:?}"
    );
    let failed = errors
        .iter()
        .find(|line| line["fields"]["command"] == "strom run")
        .unwrap_or_else(|| panic!("no failure event in {errors:?}"));
    assert!(message(failed).contains("not json at all"), "{failed}");
    assert!(
        !stderr.contains("panicked at"),
        "plain-text panic on stderr: {stderr}"
    );
}
