//! Rescale timings (suite `rescale`): a job holding a known size of keyed state,
//! on the e2e cluster (kind, the operator installed by its chart, state on MinIO),
//! rescaled by `kubectl patch` and timed phase by phase; next to it, Flink's
//! stop-with-savepoint and restore at the new parallelism on the same MinIO
//! (`bench/flink`'s `Rescale`, in one MiniCluster).
//!
//! Strom's phases, from a `kubectl get --watch` of the job and its new pods' logs:
//! savepoint (the patch until the operator tears down: its reaction, the final
//! checkpoint, the upload and the savepoint's copy), teardown (until the old pods
//! are gone and the new deployment applied), start (until the last new pod's
//! process has started and found its peers: scheduling, container start), restore
//! (until the last pod has its operators built and their state restored: download
//! and RocksDB). Total: the patch until the job is Running at the new parallelism
//! and every pod has restored its state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use strom_e2e::pods::{PodServices, TestNamespace, http_get};
use strom_e2e::stack::S3Server;
use strom_runtime::pipelines::KEYED_STATE_SPLITS;

use crate::java::JavaProject;

/// Bytes of each key's value (a multiple of 8).
const VALUE_BYTES: u64 = 100;
/// How long the fill, its checkpoint and the restores may take (the rescale's
/// steps wait as long as the e2e helpers do: 300 s each).
const STEP: Duration = Duration::from_secs(900);
/// Checkpoint interval of both systems' jobs.
const CHECKPOINT_INTERVAL_SECONDS: u64 = 10;

/// One system's rescale of one state size.
#[derive(Debug, Clone)]
pub struct RescaleRun {
    /// `Strom` or `Flink`.
    pub system: &'static str,
    /// State asked for, MB.
    pub state_mb: u64,
    /// Keys written.
    pub keys: u64,
    /// The savepoint's bytes on MinIO.
    pub savepoint_bytes: u64,
    /// Seconds of each phase: savepoint, teardown, start, restore.
    pub phases: [f64; 4],
    /// Of the restore, the longest download of a subtask's state (Strom; Flink
    /// does not say).
    pub download: Option<f64>,
    /// Of the savepoint, the copy of the final checkpoint into the savepoint's
    /// folder (Strom, from process 0's log; about nothing where the savepoint is
    /// handed over).
    pub savepoint_copy: Option<f64>,
    /// For a savepoint handed over (Strom), how long after the restore the new
    /// run had copied its files in and made it self-contained.
    pub copied_in_after: Option<f64>,
    /// From the request to running restored at the new parallelism.
    pub total: f64,
}

/// Keys of about `state_mb` MB of state: a multiple of the generator's splits.
fn keys_of(state_mb: u64) -> u64 {
    (state_mb * 1_000_000 / (VALUE_BYTES + 8)).next_multiple_of(u64::from(KEYED_STATE_SPLITS))
}

/// Rescales each state size from `from` to `to` on Strom and on Flink.
pub fn run(
    flink: &JavaProject,
    state_mb: &[u64],
    from: u32,
    to: u32,
) -> anyhow::Result<Vec<RescaleRun>> {
    let services = PodServices::from_env().context(
        "the rescale suite needs the e2e cluster: e2e/infra/stack.sh up, \
         source ~/.cache/strom/run/env.sh, and the images loaded (e2e/kind/kind.sh image)",
    )?;
    let io = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let namespace = TestNamespace::new(services, "rescale");
    namespace.install_operator();
    namespace.create_s3_secret();
    let s3 = &namespace.services.s3;
    let mut runs = Vec::new();
    for &mb in state_mb {
        let prefix = format!("bench-rescale-{}-{mb}", std::process::id());
        let run = strom_rescale(&namespace, s3, &io, &prefix, mb, from, to);
        io.block_on(delete_prefix(s3, &prefix))?;
        let run = run?;
        println!("Strom, {mb} MB, {from} -> {to}: {run:?}");
        runs.push(run);
        let prefix = format!("{prefix}-flink");
        let run = flink_rescale(flink, s3, &io, &prefix, mb, from, to);
        io.block_on(delete_prefix(s3, &prefix))?;
        let run = run?;
        println!("Flink, {mb} MB, {from} -> {to}: {run:?}");
        runs.push(run);
    }
    Ok(runs)
}

/// Strom's rescale of a `keyed-state` job of `mb` MB on the e2e cluster.
fn strom_rescale(
    namespace: &TestNamespace,
    s3: &S3Server,
    io: &tokio::runtime::Runtime,
    prefix: &str,
    mb: u64,
    from: u32,
    to: u32,
) -> anyhow::Result<RescaleRun> {
    let keys = keys_of(mb);
    let name = format!("state-{mb}mb");
    let job = json!({
        "apiVersion": "strom.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": name},
        "spec": {
            "parallelism": from,
            "slotsPerPod": 1,
            "pipeline": {
                "name": "keyed-state",
                "args": {"keys": keys.to_string(), "valueBytes": VALUE_BYTES.to_string()},
            },
            "state": namespace
                .services
                .state_spec(prefix, &format!("{CHECKPOINT_INTERVAL_SECONDS}s")),
        },
    });
    namespace.apply(&job);
    let mut phases = Vec::new();
    namespace.wait_running_at(&name, i64::from(from), from as usize, &mut phases);

    // The values written, then a checkpoint after them (a running job's state is
    // mostly on storage already, as Flink's is below).
    let pod_ips = || -> Vec<String> {
        namespace
            .runtime_pods(&name)
            .iter()
            .filter_map(|pod| pod["status"]["podIP"].as_str().map(str::to_owned))
            .collect()
    };
    let deadline = std::time::Instant::now() + STEP;
    let metric = |ip: &str, name: &str| -> u64 {
        http_get(ip, 8081, "/metrics")
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    while pod_ips()
        .iter()
        .map(|ip| metric(ip, "strom_records_in_total"))
        .sum::<u64>()
        < keys
    {
        if std::time::Instant::now() > deadline {
            bail!("{name} did not write its {keys} values in {STEP:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
    let pod_0 = namespace.get_json(&["pod", &format!("{name}-0")]);
    let pod_0_ip = pod_0["status"]["podIP"]
        .as_str()
        .context("pod 0 has no IP")?
        .to_owned();
    let checkpoints = metric(&pod_0_ip, "strom_checkpoints_total");
    while metric(&pod_0_ip, "strom_checkpoints_total") == checkpoints {
        if std::time::Instant::now() > deadline {
            bail!("{name} completed no checkpoint after its values in {STEP:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }

    let watch = watch_phases(namespace, &name)?;
    // Process 0 coordinates checkpoints and copies savepoints: its log says how
    // long the stop's savepoint copy took.
    let leader_log = {
        let mut command = namespace.services.plane.kubectl();
        command.args(["-n", &namespace.name, "logs", "-f", &format!("{name}-0")]);
        Follow::start(command)?
    };
    let deadline = std::time::Instant::now() + STEP;
    let patched = SystemTime::now();
    namespace.patch_spec(&name, &format!(r#"{{"parallelism":{to}}}"#));
    let found = namespace.wait_running_at(&name, i64::from(to), to as usize, &mut phases);
    let seen = phases_seen(watch.stop());
    let written = leader_log
        .stop()
        .iter()
        .filter(|(at, _)| *at >= patched)
        .filter_map(|(_, line)| logged(line, "savepoint written").pop())
        .next_back();
    let savepoint_copy = written
        .as_ref()
        .and_then(|event| event["fields"]["duration_ms"].as_f64())
        .map(|ms| ms / 1000.0);
    let handed_over = written
        .as_ref()
        .is_some_and(|event| event["fields"]["handed_over"] == json!(true));
    let first = |phase: &str, parallelism: Option<u32>| -> anyhow::Result<SystemTime> {
        seen.iter()
            .find(|(at, p, n)| {
                *at >= patched && p == phase && parallelism.is_none_or(|q| *n == Some(q))
            })
            .map(|(at, _, _)| *at)
            .with_context(|| format!("the watch did not see {phase}: {seen:?}"))
    };
    let torn_down = first("Rescaling", None)?;
    let restoring = first("Restoring", None)?;
    let running = first("Running", Some(to))?;
    // Running says the pods are up and the control API answers; each pod's log
    // says when it had restored its state.
    let mut started = Vec::new();
    let mut restored = Vec::new();
    let mut download: f64 = 0.0;
    for pod in 0..to {
        let pod = format!("{name}-{pod}");
        let log = loop {
            let log = namespace.kubectl(&["logs", &pod]);
            if !logged(&log, "operators built, state restored").is_empty() {
                break log;
            }
            if std::time::Instant::now() > deadline {
                bail!("{pod} did not restore its state in {STEP:?}");
            }
            thread::sleep(Duration::from_millis(200));
        };
        started.push(logged_at(&log, "job starting")?);
        restored.push(logged_at(&log, "operators built, state restored")?);
        for event in logged(&log, "keyed state restored") {
            let seconds = event["fields"]["download_seconds"].as_f64().unwrap_or(0.0);
            download = download.max(seconds);
        }
    }
    let started = started.into_iter().max().context("no pods")?;
    let restored = restored.into_iter().max().context("no pods")?;
    // A savepoint handed over is completed by the new run's process 0 after its
    // first checkpoint: its size is measured once it holds its files.
    let copied_in_after = if handed_over {
        let copied_in = loop {
            let log = namespace.kubectl(&["logs", &format!("{name}-0")]);
            if !logged(&log, COPIED_IN).is_empty() {
                break logged_at(&log, COPIED_IN)?;
            }
            if std::time::Instant::now() > deadline {
                bail!("{name} did not complete its savepoint in {STEP:?}");
            }
            thread::sleep(Duration::from_millis(200));
        };
        Some(
            copied_in
                .duration_since(restored)
                .unwrap_or_default()
                .as_secs_f64(),
        )
    } else {
        None
    };
    let savepoint = found["status"]["lastSavepoint"]["path"]
        .as_str()
        .context("no savepoint in the job's status")?
        .to_owned();
    let savepoint_bytes = io.block_on(bytes_under(s3, &savepoint))?;
    namespace.kubectl(&[
        "delete",
        "streamjob",
        &name,
        "--wait=true",
        "--timeout=300s",
    ]);
    let seconds =
        |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default().as_secs_f64();
    Ok(RescaleRun {
        system: "Strom",
        state_mb: mb,
        keys,
        savepoint_bytes,
        phases: [
            seconds(patched, torn_down),
            seconds(torn_down, restoring),
            seconds(restoring, started),
            seconds(started, restored),
        ],
        download: Some(download),
        savepoint_copy,
        copied_in_after,
        total: seconds(patched, running.max(restored)),
    })
}

/// Flink's stop-with-savepoint and restore of the same state, on the same MinIO.
fn flink_rescale(
    flink: &JavaProject,
    s3: &S3Server,
    io: &tokio::runtime::Runtime,
    prefix: &str,
    mb: u64,
    from: u32,
    to: u32,
) -> anyhow::Result<RescaleRun> {
    let keys = keys_of(mb);
    let mut command = flink.java("strom.bench.flink.Rescale");
    command
        .args(["--keys", &keys.to_string()])
        .args(["--value-bytes", &VALUE_BYTES.to_string()])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args([
            "--checkpoint-interval-ms",
            &(CHECKPOINT_INTERVAL_SECONDS * 1000).to_string(),
        ])
        .args(["--storage", &format!("s3://{}/{prefix}", s3.bucket)])
        .args(["--s3-endpoint", &s3.endpoint])
        .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key);
    let output = flink.output(command)?;
    let line = output
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .context("Flink's Rescale printed no result line")?;
    let result: Value = serde_json::from_str(line)?;
    let phase = |name: &str| -> anyhow::Result<f64> {
        result[name]
            .as_f64()
            .with_context(|| format!("no {name} in {line}"))
    };
    let phases = [
        phase("savepoint_seconds")?,
        phase("teardown_seconds")?,
        phase("start_seconds")?,
        phase("restore_seconds")?,
    ];
    let savepoint = result["savepoint"].as_str().context("no savepoint path")?;
    Ok(RescaleRun {
        system: "Flink",
        state_mb: mb,
        keys,
        savepoint_bytes: io.block_on(bytes_under(s3, savepoint))?,
        phases,
        download: None,
        savepoint_copy: None,
        copied_in_after: None,
        total: phases.iter().sum(),
    })
}

/// The phases a `kubectl get --watch` of a StreamJob shows, each with when it
/// was seen: (time, phase, parallelism).
type Seen = Vec<(SystemTime, String, Option<u32>)>;

/// A kubectl command that prints lines until it is stopped (`--watch`, `logs
/// -f`), in the background: each line with when it came.
struct Follow {
    child: Child,
    lines: Arc<Mutex<Vec<(SystemTime, String)>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Follow {
    /// Starts `command` and waits for its first line (what it follows as it is
    /// now), so nothing after this returns is missed.
    fn start(mut command: std::process::Command) -> anyhow::Result<Self> {
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().context("cannot run kubectl")?;
        let stdout = child.stdout.take().context("no kubectl output")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let at = SystemTime::now();
                    lines.lock().expect("follow lock").push((at, line));
                }
            })
        };
        let mut follow = Self {
            child,
            lines,
            reader: Some(reader),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while follow.lines.lock().expect("follow lock").is_empty() {
            if std::time::Instant::now() > deadline {
                follow.end();
                bail!("kubectl printed nothing in 30 s: {:?}", command);
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(follow)
    }

    /// Ends the command: the lines it printed.
    fn stop(mut self) -> Vec<(SystemTime, String)> {
        self.end();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *self.lines.lock().expect("follow lock"))
    }

    fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        // A wait that failed leaves no kubectl behind.
        self.end();
    }
}

/// A `kubectl get streamjob --watch` of `job`'s phase and parallelism.
fn watch_phases(namespace: &TestNamespace, job: &str) -> anyhow::Result<Follow> {
    let mut command = namespace.services.plane.kubectl();
    command
        .args(["-n", &namespace.name, "get", "streamjob", job, "--watch"])
        .args([
            "-o",
            r#"jsonpath={.status.phase} {.status.parallelism}{"\n"}"#,
        ]);
    Follow::start(command)
}

/// The phases a [`watch_phases`] saw.
fn phases_seen(lines: Vec<(SystemTime, String)>) -> Seen {
    lines
        .into_iter()
        .map(|(at, line)| {
            let mut words = line.split_whitespace();
            let phase = words.next().unwrap_or_default().to_owned();
            let parallelism = words.next().and_then(|p| p.parse().ok());
            (at, phase, parallelism)
        })
        .collect()
}

/// The lines of the runtime's JSON log `log` that say `message`.
fn logged(log: &str, message: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["fields"]["message"] == message)
        .collect()
}

/// What the runtime logs once a savepoint handed over to it holds its files.
const COPIED_IN: &str = "borrowed savepoint completed: it holds its own copies now";

/// When the runtime's JSON log `log` says `message` (its last such line).
fn logged_at(log: &str, message: &str) -> anyhow::Result<SystemTime> {
    let line = logged(log, message)
        .pop()
        .with_context(|| format!("the pod's log has no {message:?}"))?;
    let at: k8s_openapi::jiff::Timestamp = line["timestamp"]
        .as_str()
        .context("a log line without a timestamp")?
        .parse()?;
    Ok(SystemTime::from(at))
}

/// The folder of an `s3://bucket/path` URL in `s3`'s bucket.
fn path_in_bucket(s3: &S3Server, url: &str) -> anyhow::Result<StorePath> {
    let path = url
        .strip_prefix(&format!("s3://{}/", s3.bucket))
        .with_context(|| format!("{url} is not in bucket {}", s3.bucket))?;
    Ok(StorePath::from(path.trim_end_matches('/')))
}

/// Bytes of the objects under `url`.
async fn bytes_under(s3: &S3Server, url: &str) -> anyhow::Result<u64> {
    let prefix = path_in_bucket(s3, url)?;
    let objects: Vec<_> = s3.store().list(Some(&prefix)).try_collect().await?;
    Ok(objects.iter().map(|object| object.size).sum())
}

/// Deletes everything under `prefix` in `s3`'s bucket.
async fn delete_prefix(s3: &S3Server, prefix: &str) -> anyhow::Result<()> {
    let store = s3.store();
    let objects: Vec<_> = store
        .list(Some(&StorePath::from(prefix)))
        .try_collect()
        .await?;
    for object in objects {
        store.delete(&object.location).await?;
    }
    Ok(())
}

/// The Markdown section of the rescale runs.
pub fn report(runs: &[RescaleRun], from: u32, to: u32, versions: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let sizes: Vec<String> = runs
        .iter()
        .map(|run| run.state_mb.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    writeln!(out, "## Rescale: Strom and Flink\n")?;
    writeln!(
        out,
        "Written by `cargo run --release -p strom-bench -- --suite rescale --state-mb {} \
         --parallelism {from},{to}` ({versions}). Keyed state of {VALUE_BYTES}-byte \
         incompressible values, one per key, checkpoints every {CHECKPOINT_INTERVAL_SECONDS} s \
         on MinIO (the test services' single server on this machine); each job is stopped \
         with a savepoint once its values and a checkpoint after them are written, and \
         restored at the new parallelism. Strom: the `keyed-state` pipeline on the e2e \
         kind cluster, rescaled by `kubectl patch` through the operator. Flink: the same \
         job (DataStream, RocksDB, incremental checkpoints, native-format savepoint) in \
         one MiniCluster, stop-with-savepoint then a new job restored from it.\n",
        sizes.join(",")
    )?;
    writeln!(
        out,
        "Phases. Strom, from a `kubectl get --watch` of the job and its new pods' logs: \
         savepoint = the patch until the operator tears the old pods down (its reaction, \
         the final checkpoint, the savepoint's manifest; of which copy: the copy of the \
         files into the savepoint's folder before the stop, from process 0's log, about \
         nothing now that a rescale hands its savepoint over); copied in = when the new run \
         had copied the files in after its first checkpoint, in seconds after the \
         restore, while the job runs (not part of the total); teardown = until the \
         old pods are gone and the new ones created; start = until the last new pod's \
         process has started and found its peers (scheduling, container start); restore = until the last pod has \
         downloaded and opened its state (of which download: the longest download of one \
         subtask's files, from the runtime's log); total = the patch until the job is Running at \
         the new parallelism and every pod has restored its state. Flink, in its JVM: \
         savepoint = stop-with-savepoint until its path is known (Flink answers once \
         the job has finished, so its teardown is inside it); teardown = until the \
         job's result is known; start = the new job's submission until every task is \
         INITIALIZING; restore = until every task is RUNNING. Flink's MiniCluster starts \
         no process and no pod: its start is task deployment in a running JVM.\n"
    )?;
    writeln!(
        out,
        "| state | system | keys | savepoint size | savepoint | of which copy | teardown | start | restore | of which download | total | Strom / Flink | copied in |"
    )?;
    writeln!(
        out,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let flink_totals: BTreeMap<u64, f64> = runs
        .iter()
        .filter(|run| run.system == "Flink")
        .map(|run| (run.state_mb, run.total))
        .collect();
    for run in runs {
        let ratio = match (run.system, flink_totals.get(&run.state_mb)) {
            ("Strom", Some(flink)) => format!("{:.2}", run.total / flink),
            _ => String::new(),
        };
        let [savepoint, teardown, start, restore] = run.phases;
        writeln!(
            out,
            "| {} MB | {} | {} | {:.0} MB | {savepoint:.1} s | {} | {teardown:.1} s | {start:.1} s | {restore:.1} s | {} | {:.1} s | {ratio} | {} |",
            run.state_mb,
            run.system,
            run.keys,
            run.savepoint_bytes as f64 / 1e6,
            seconds_or_blank(run.savepoint_copy),
            seconds_or_blank(run.download),
            run.total,
            seconds_or_blank(run.copied_in_after),
        )?;
    }
    Ok(out)
}

/// `1.5 s`, or nothing when not known.
fn seconds_or_blank(seconds: Option<f64>) -> String {
    seconds.map_or_else(String::new, |seconds| format!("{seconds:.1} s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fill_the_state_size_in_whole_splits() {
        assert_eq!(keys_of(100) % u64::from(KEYED_STATE_SPLITS), 0);
        let bytes = keys_of(1000) * (VALUE_BYTES + 8);
        assert!((1_000_000_000..1_000_002_000).contains(&bytes), "{bytes}");
    }

    #[test]
    fn log_times_are_read_from_the_runtimes_json_lines() {
        let log = concat!(
            "not json\n",
            r#"{"timestamp":"2026-12-07T11:40:00.250000Z","level":"INFO","fields":{"message":"job starting"}}"#,
            "\n",
            r#"{"timestamp":"2026-12-07T11:40:02.500000Z","level":"INFO","fields":{"message":"operators built, state restored","workers":1}}"#,
        );
        let started = logged_at(log, "job starting").unwrap();
        let restored = logged_at(log, "operators built, state restored").unwrap();
        assert_eq!(
            restored.duration_since(started).unwrap(),
            Duration::from_millis(2250)
        );
        assert!(logged_at(log, "checkpoint completed").is_err());
        let restored = logged(log, "operators built, state restored");
        assert_eq!(restored.len(), 1);
        assert_eq!(restored[0]["fields"]["workers"], 1);
    }
}
