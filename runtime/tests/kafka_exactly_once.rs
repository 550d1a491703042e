//! Exactly-once from Kafka to Kafka through crashes and rescales, with the `strom`
//! binary as a pod runs it: the built-in `kafka-copy` pipeline (or the same copy
//! in SQL: two `kafka` tables UNION ALL into a third) reads cluster A
//! (plaintext) and B (SCRAM) and writes C (mTLS) in transactions. While input keeps
//! arriving, the job is killed with SIGKILL, crashed by failpoints just before and
//! just after a checkpoint completes, or rescaled 2 -> 5 -> 1 through savepoints;
//! a `read_committed` consumer of C then sees every input record exactly once.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use strom_e2e::KafkaClusters;
use strom_runtime::connectors::kafka::ClusterConnection;

mod common;

use common::kafka::{
    clusters, clusters_yaml, connection, consume_all, consume_available, counts, create_topic,
    delete_groups_starting_with, once_each, produce_with, producer, unique, values,
};

/// Input records per source cluster, written in batches while the job runs.
const PER_CLUSTER: usize = 6000;
const BATCH: usize = 300;

/// A kafka-copy job and its topics.
struct Job {
    dir: tempfile::TempDir,
    clusters: KafkaClusters,
    a: ClusterConnection,
    b: ClusterConnection,
    c: ClusterConnection,
    from_a: String,
    from_b: String,
    to_c: String,
    /// The name of the operator writing C.
    sink: &'static str,
}

/// What the job runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Program {
    /// The built-in `kafka-copy` pipeline.
    Pipeline,
    /// The copy as Flink SQL over `kafka` tables (values as `raw` strings).
    Sql,
}

impl Job {
    fn new(clusters: KafkaClusters) -> Self {
        Self::running(clusters, Program::Pipeline)
    }

    fn running(clusters: KafkaClusters, program: Program) -> Self {
        let (a, b, c) = (
            connection(&clusters, "a"),
            connection(&clusters, "b"),
            connection(&clusters, "c"),
        );
        let (from_a, from_b, to_c) = (unique("eo-a"), unique("eo-b"), unique("eo-c"));
        create_topic(&a, &from_a, 3);
        create_topic(&b, &from_b, 2);
        create_topic(&c, &to_c, 4);
        let dir = tempfile::tempdir().unwrap();
        let (program_yaml, sink) = match program {
            Program::Pipeline => (
                format!(
                    "  pipeline:
    name: kafka-copy
    args:
      from: a/{from_a},b/{from_b}
      to: c/{to_c}
      delivery: exactly-once
"
                ),
                "to",
            ),
            Program::Sql => (
                format!(
                    "  sql: |
    CREATE TABLE from_a (v STRING) WITH ('connector' = 'kafka', 'cluster' = 'a',
      'topic' = '{from_a}', 'format' = 'raw', 'scan.startup.mode' = 'earliest-offset');
    CREATE TABLE from_b (v STRING) WITH ('connector' = 'kafka', 'cluster' = 'b',
      'topic' = '{from_b}', 'format' = 'raw', 'scan.startup.mode' = 'earliest-offset');
    CREATE TABLE to_c (v STRING) WITH ('connector' = 'kafka', 'cluster' = 'c',
      'topic' = '{to_c}', 'format' = 'raw', 'sink.delivery-guarantee' = 'exactly-once');
    INSERT INTO to_c SELECT v FROM from_a UNION ALL SELECT v FROM from_b;
"
                ),
                "sink-to_c",
            ),
        };
        let manifest = format!(
            r#"apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: {name}
spec:
  parallelism: 2
  kafkaClusters:
{clusters}{program_yaml}  state:
    checkpointInterval: 200ms
    retainedCheckpoints: 2
    storage: file://{state}
"#,
            name = unique("copy"),
            clusters = clusters_yaml(&clusters, 4),
            state = dir.path().join("state").display(),
        );
        std::fs::write(dir.path().join("job.yaml"), manifest).unwrap();
        Self {
            dir,
            clusters,
            a,
            b,
            c,
            from_a,
            from_b,
            to_c,
            sink,
        }
    }

    /// `strom run` of the job with `args`, its Secrets mounted where the test
    /// clusters' are. Its output goes to `<log>.out` and `<log>.err` in the job's
    /// folder (files, not pipes: a full pipe would stall a job nobody reads).
    fn command(&self, args: &[&str], failpoints: Option<&str>, log: &str) -> Command {
        let file = |suffix: &str| {
            std::fs::File::create(self.dir.path().join(format!("{log}.{suffix}"))).unwrap()
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
        command
            .arg("run")
            .arg(self.dir.path().join("job.yaml"))
            .args(args)
            .env("STROM_SECRETS_DIR", &self.clusters.secrets)
            .env_remove("FAILPOINTS")
            .stdout(file("out"))
            .stderr(file("err"));
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        command
    }

    /// What the run logged as `log` wrote to its standard output and error.
    fn logged(&self, log: &str) -> (String, String) {
        let read = |suffix: &str| {
            std::fs::read_to_string(self.dir.path().join(format!("{log}.{suffix}")))
                .unwrap_or_default()
        };
        (read("out"), read("err"))
    }

    fn work_dir(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Writes the input in batches on another thread, as a live stream would.
    fn write_input(&self) -> thread::JoinHandle<()> {
        let (a, b) = (self.a.clone(), self.b.clone());
        let (from_a, from_b) = (self.from_a.clone(), self.from_b.clone());
        thread::spawn(move || {
            let (to_a, to_b) = (producer(&a), producer(&b));
            let (a_values, b_values) = (values("a", PER_CLUSTER), values("b", PER_CLUSTER));
            for (a_batch, b_batch) in a_values.chunks(BATCH).zip(b_values.chunks(BATCH)) {
                produce_with(&to_a, &from_a, a_batch, None);
                produce_with(&to_b, &from_b, b_batch, None);
                thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// The first value of `field` (`name: `, say) in the job's manifest.
    fn manifest_field(&self, field: &str) -> String {
        let manifest = std::fs::read_to_string(self.dir.path().join("job.yaml")).unwrap();
        manifest
            .lines()
            .find_map(|line| line.trim().strip_prefix(field))
            .unwrap()
            .to_owned()
    }

    fn checkpoints_dir(&self) -> PathBuf {
        PathBuf::from(self.manifest_field("storage: file://")).join(self.manifest_field("name: "))
    }

    /// Moves the job's state to a new, empty folder: as a stateless redeploy (a new
    /// job id) does, the job's next run starts from nothing, at epoch 1, under the
    /// same name (and so the same transactional ids).
    fn use_new_state_folder(&self, folder: &str) {
        let path = self.dir.path().join("job.yaml");
        let manifest = std::fs::read_to_string(&path).unwrap();
        let state = self.dir.path().join(folder);
        let manifest: String = manifest
            .lines()
            .map(|line| match line.trim().strip_prefix("storage: ") {
                Some(_) => format!("    storage: file://{}\n", state.display()),
                None => format!("{line}\n"),
            })
            .collect();
        std::fs::write(path, manifest).unwrap();
    }

    /// The folders (`chk-<run>-<epoch>`) of the completed checkpoints still kept,
    /// oldest first.
    fn completed_checkpoints(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.checkpoints_dir()) else {
            return Vec::new();
        };
        let mut completed: Vec<String> = entries
            .filter_map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                let complete = name.starts_with("chk-") && entry.path().join("_manifest").exists();
                complete.then_some(name)
            })
            .collect();
        completed.sort();
        completed
    }

    /// Waits until `count` checkpoints newer than any completed before completed.
    fn wait_for_new_checkpoints(&self, child: &mut Child, count: usize) {
        let before = self.completed_checkpoints().pop().unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < count {
            assert!(Instant::now() < deadline, "no checkpoint within a minute");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the job ended ({status}) before it was stopped");
            }
            seen.extend(
                self.completed_checkpoints()
                    .into_iter()
                    .filter(|checkpoint| *checkpoint > before),
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many prepared transactions the sink's state in the newest completed
    /// checkpoint lists: those recovery must see committed.
    fn prepared_in_newest_checkpoint(&self) -> usize {
        let Some(newest) = self.completed_checkpoints().pop() else {
            return 0;
        };
        let manifest = self.checkpoints_dir().join(newest).join("_manifest");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
        manifest["operators"][self.sink]
            .as_array()
            .unwrap()
            .iter()
            .map(|subtask| {
                let state: serde_json::Value =
                    serde_json::from_str(subtask["operatorState"].as_str().unwrap()).unwrap();
                state["prepared"].as_array().unwrap().len()
            })
            .sum()
    }

    /// Checks that C holds every input record exactly once.
    fn assert_exactly_once(&self) {
        let expected: Vec<String> = values("a", PER_CLUSTER)
            .into_iter()
            .chain(values("b", PER_CLUSTER))
            .collect();
        let written = consume_all(&self.c, &self.to_c, 4, expected.len());
        assert_eq!(counts(written), once_each(&expected));
    }

    /// Runs the job with `args` until C holds all the input, then kills it.
    fn run_until_complete(&self, args: &[&str]) {
        self.run_until_c_holds(args, 2 * PER_CLUSTER);
    }

    /// Runs the job with `args` until C holds `expected` records, then kills it.
    fn run_until_c_holds(&self, args: &[&str], expected: usize) {
        self.run_until(args, &format!("{expected} records"), |written| {
            written.len() >= expected
        });
    }

    /// Runs the job with `args` until what C holds for `read_committed` readers
    /// satisfies `done` (described by `what`), within 90 s, then kills it.
    fn run_until(&self, args: &[&str], what: &str, done: impl Fn(&[String]) -> bool) {
        let mut child = self.command(args, None, "last").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let written = consume_available(&self.c, &self.to_c, 4);
            if done(&written) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the job ended ({status}): {}", self.logged("last").1);
            }
            if Instant::now() >= deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!(
                    "C holds {} records, not {what}, after 90 s; the job said:\n{}",
                    written.len(),
                    self.logged("last").1
                );
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops the run logged as `log` with a savepoint (SIGINT, as Ctrl-C) and
    /// returns where the savepoint is.
    fn stop_with_savepoint(&self, mut child: Child, log: &str) -> String {
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        let (out, err) = self.logged(log);
        assert!(status.success(), "the stop failed: {err}");
        out.lines()
            .find_map(|line| line.strip_prefix("savepoint: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no savepoint in:\n{out}"))
            .to_owned()
    }
}

/// One at a time: each test runs a job of two workers and a producer, which is all
/// two cores can take without the tests' time limits turning into load tests.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's turn (see [`ONE_AT_A_TIME`]).
fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn job() -> Option<(Job, std::sync::MutexGuard<'static, ()>)> {
    program_job(Program::Pipeline)
}

fn program_job(program: Program) -> Option<(Job, std::sync::MutexGuard<'static, ()>)> {
    let turn = turn();
    clusters().map(|clusters| (Job::running(clusters, program), turn))
}

#[test]
fn kill_9_mid_stream_then_restart_writes_every_record_once() {
    kill_9_mid_stream(Program::Pipeline);
}

#[test]
fn a_sql_job_killed_mid_stream_then_restarted_writes_every_record_once() {
    kill_9_mid_stream(Program::Sql);
}

fn kill_9_mid_stream(program: Program) {
    let Some((job, _turn)) = program_job(program) else {
        return;
    };
    let input = job.write_input();
    let mut child = job
        .command(
            &["--resume", "--work-dir", &job.work_dir("w1")],
            None,
            "first",
        )
        .spawn()
        .unwrap();
    job.wait_for_new_checkpoints(&mut child, 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    input.join().unwrap();
    job.run_until_complete(&["--resume", "--work-dir", &job.work_dir("w2")]);
    job.assert_exactly_once();
}

/// Crashes the job at `failpoint` on its fourth checkpoint that holds output while
/// input arrives, restarts it, and checks C. The failpoints count only checkpoints
/// with output awaiting commit, so the crash lands in its window by construction.
fn crash_at(failpoint: &str) -> Option<Job> {
    crash_program_at(Program::Pipeline, failpoint)
}

fn crash_program_at(program: Program, failpoint: &str) -> Option<Job> {
    let (job, _turn) = program_job(program)?;
    let mut child = job
        .command(
            &["--resume", "--work-dir", &job.work_dir("w1")],
            Some(&format!("{failpoint}=3*off->return")),
            "crashed",
        )
        .spawn()
        .unwrap();
    // The input starts once the job runs: a job that started after all of it
    // was written (a loaded machine) read it in fewer than four checkpoints, so
    // the failpoint never fired and the job ran on, waited on without a deadline.
    job.wait_for_new_checkpoints(&mut child, 1);
    let input = job.write_input();
    let deadline = Instant::now() + Duration::from_secs(120);
    let crashed = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "the failpoint {failpoint} did not crash the job within 2 minutes: {}",
                job.logged("crashed").1
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        crashed.code(),
        Some(137),
        "the failpoint did not crash the job: {}",
        job.logged("crashed").1
    );
    let prepared = job.prepared_in_newest_checkpoint();
    input.join().unwrap();
    job.run_until_complete(&["--resume", "--work-dir", &job.work_dir("w2")]);
    job.assert_exactly_once();
    assert!(
        failpoint != "after-checkpoint-complete" || prepared > 0,
        "the crash left no prepared transaction of a completed checkpoint to commit"
    );
    Some(job)
}

#[test]
fn a_crash_just_before_a_checkpoint_completes_writes_every_record_once() {
    crash_at("before-checkpoint-complete");
}

#[test]
fn a_crash_after_a_checkpoint_completes_but_before_its_transactions_commit_writes_every_record_once()
 {
    crash_at("after-checkpoint-complete");
}

#[test]
fn a_sql_job_crashed_after_a_checkpoint_completes_writes_every_record_once() {
    crash_program_at(Program::Sql, "after-checkpoint-complete");
}

#[test]
fn rescales_from_2_to_5_to_1_mid_stream_write_every_record_once() {
    let Some((job, _turn)) = job() else { return };
    let input = job.write_input();
    let mut first = job
        .command(
            &["--parallelism", "2", "--work-dir", &job.work_dir("w2")],
            None,
            "at-2",
        )
        .spawn()
        .unwrap();
    job.wait_for_new_checkpoints(&mut first, 2);
    let savepoint = job.stop_with_savepoint(first, "at-2");

    let mut second = job
        .command(
            &[
                "--from-savepoint",
                &savepoint,
                "--parallelism",
                "5",
                "--work-dir",
                &job.work_dir("w5"),
            ],
            None,
            "at-5",
        )
        .spawn()
        .unwrap();
    job.wait_for_new_checkpoints(&mut second, 2);
    let savepoint = job.stop_with_savepoint(second, "at-5");

    input.join().unwrap();
    job.run_until_complete(&[
        "--from-savepoint",
        &savepoint,
        "--parallelism",
        "1",
        "--work-dir",
        &job.work_dir("w1"),
    ]);
    job.assert_exactly_once();
}

/// Issue 14, point 1: the marker that tells recovery whether a prepared transaction
/// committed belongs to the run that prepared it. A first lineage of the job runs
/// to high epochs and stops; a stateless redeploy of it (new state, epochs from 1,
/// same transactional ids) crashes right after its first checkpoint with output
/// completes, before committing: its transactions are the first of their slots, so
/// each slot's marker is still the first lineage's, at a higher epoch. Recovery
/// must still commit them.
#[test]
fn a_redeployed_job_recovers_its_first_transactions_whatever_an_earlier_lineage_left() {
    let Some((job, _turn)) = job() else { return };
    let input = job.write_input();
    let mut first = job
        .command(&["--work-dir", &job.work_dir("first")], None, "first")
        .spawn()
        .unwrap();
    input.join().unwrap();
    job.wait_for_new_checkpoints(&mut first, 3);
    job.stop_with_savepoint(first, "first");
    // The first lineage copied everything once.
    job.assert_exactly_once();

    job.use_new_state_folder("state-redeployed");
    let crashed = job
        .command(
            &["--resume", "--work-dir", &job.work_dir("second")],
            Some("after-checkpoint-complete=return"),
            "second",
        )
        .status()
        .unwrap();
    assert_eq!(
        crashed.code(),
        Some(137),
        "the failpoint did not crash the job: {}",
        job.logged("second").1
    );
    assert!(
        job.prepared_in_newest_checkpoint() > 0,
        "the crash left no prepared transaction of a completed checkpoint"
    );
    job.run_until_c_holds(
        &["--resume", "--work-dir", &job.work_dir("recovered")],
        4 * PER_CLUSTER,
    );
    // Both lineages copied everything: each record twice, none lost.
    let expected: Vec<String> = values("a", PER_CLUSTER)
        .into_iter()
        .chain(values("b", PER_CLUSTER))
        .collect();
    let written = consume_all(&job.c, &job.to_c, 4, 2 * expected.len());
    let twice: std::collections::BTreeMap<String, usize> =
        expected.into_iter().map(|value| (value, 2)).collect();
    assert_eq!(counts(written), twice);
}

/// Issue 14, point 12: a redeploy with new state (a stateless upgrade: a new job id)
/// at a lower parallelism fences the transactions that the earlier deployment's
/// higher subtasks left open, so `read_committed` readers are not held back until
/// those transactions time out (15 minutes).
#[test]
fn a_stateless_redeploy_at_lower_parallelism_fences_the_old_higher_subtasks() {
    let Some((job, _turn)) = job() else { return };
    let input = job.write_input();
    let mut first = job
        .command(
            &["--parallelism", "3", "--work-dir", &job.work_dir("at-3")],
            None,
            "at-3",
        )
        .spawn()
        .unwrap();
    job.wait_for_new_checkpoints(&mut first, 2);
    first.kill().unwrap(); // SIGKILL: its open transactions stay open
    first.wait().unwrap();
    input.join().unwrap();

    job.use_new_state_folder("state-redeployed");
    let expected: std::collections::BTreeSet<String> = values("a", PER_CLUSTER)
        .into_iter()
        .chain(values("b", PER_CLUSTER))
        .collect();
    job.run_until(
        &["--parallelism", "1", "--work-dir", &job.work_dir("at-1")],
        "every input record",
        |written| {
            let seen: std::collections::BTreeSet<&String> = written.iter().collect();
            expected.iter().all(|value| seen.contains(value))
        },
    );
    // The second deployment copied everything from the start; the first, part of
    // it: nothing lost, nothing three times.
    let written = counts(consume_available(&job.c, &job.to_c, 4));
    assert_eq!(written.len(), expected.len());
    assert!(written.values().all(|&times| times <= 2));
}

/// Runs a fresh job while its input flows and stops it with a savepoint (with
/// `failpoints`; `crashes`: the failpoints end it with exit code 137 after the
/// savepoint) until the savepoint holds kept records of prepared transactions,
/// at most 5 times: a stop that came when no records had been read since the last
/// commit leaves nothing prepared to keep. Returns the job (its input all written)
/// and the savepoint's folder.
fn job_with_a_savepoint_keeping_records(failpoints: &str, crashes: bool) -> Option<(Job, PathBuf)> {
    let clusters = clusters()?;
    for attempt in 1..=5 {
        let job = Job::new(clusters.clone());
        let mut first = job
            .command(
                &["--work-dir", &job.work_dir("first")],
                Some(failpoints),
                "first",
            )
            .spawn()
            .unwrap();
        job.wait_for_new_checkpoints(&mut first, 1);
        let input = job.write_input();
        thread::sleep(Duration::from_millis(800));
        let pid = first.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = first.wait().unwrap();
        input.join().unwrap();
        let expected = if crashes { Some(137) } else { Some(0) };
        assert_eq!(
            status.code(),
            expected,
            "the first run: {}",
            job.logged("first").1
        );
        let savepoints: Vec<PathBuf> = std::fs::read_dir(job.checkpoints_dir().join("savepoints"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("_manifest").exists())
            .collect();
        assert_eq!(savepoints.len(), 1, "one savepoint: {savepoints:?}");
        let kept = common::files_in(&savepoints[0].join("kafka-transactions").join("to"));
        if kept
            .iter()
            .any(|file| file.extension().is_some_and(|e| e == "records"))
        {
            return Some((job, savepoints[0].clone()));
        }
        eprintln!("attempt {attempt}: the stop came with nothing prepared; again");
    }
    panic!("5 stops in a row came with nothing prepared to keep");
}

/// Removes what `savepoint` of `job` may not rely on after a while — the
/// checkpoints it was taken with (later runs went on and retention removed them),
/// and the transactions' markers (the brokers' offset retention expired them) —
/// then restores it, runs to the end of the input and checks every record is in C
/// once.
fn restore_after_the_markers_expired(job: &Job, savepoint: &std::path::Path) {
    for checkpoint in job.completed_checkpoints() {
        std::fs::remove_dir_all(job.checkpoints_dir().join(checkpoint)).unwrap();
    }
    let prefix = format!("strom-{}-to-", job.manifest_field("name: "));
    let expired = delete_groups_starting_with(&job.c, &prefix);
    assert!(expired > 0, "no marker group of {prefix}* to expire");
    job.run_until_complete(&[
        "--from-savepoint",
        &savepoint.display().to_string(),
        "--work-dir",
        &job.work_dir("restored"),
    ]);
    job.assert_exactly_once();
}

/// A savepoint restored after the brokers expired its transactions' markers (their
/// offset retention, 7 days by default) did not send the records of transactions
/// that had committed again: the savepoint keeps its own copy of their records, and
/// with neither marker nor a sign of the commit, recovery took them as never
/// committed. The job's own copy, deleted only once its transaction committed, is
/// that sign for a savepoint of the job's own storage.
#[test]
fn a_savepoint_restored_after_its_markers_expired_sends_nothing_twice() {
    let _turn = turn();
    // Commits after the stop request held back 2 s each: the transactions of the
    // stop's final checkpoint are still prepared when its savepoint is copied; the
    // job then commits them and deletes its own copy of their records.
    let Some((job, savepoint)) =
        job_with_a_savepoint_keeping_records("kafka-sink-commit-after-stop=sleep(2000)", false)
    else {
        return;
    };
    restore_after_the_markers_expired(&job, &savepoint);
}

/// The other side of the rule above: a savepoint's transaction that never
/// committed (the job crashed between the stop's savepoint and its commits) is sent
/// from the savepoint's copy when restored after the markers expired, since the
/// job's own copy of its records is still there.
#[test]
fn a_savepoint_restored_after_its_markers_expired_sends_what_never_committed() {
    let _turn = turn();
    let Some((job, savepoint)) = job_with_a_savepoint_keeping_records(
        "kafka-sink-commit-after-stop=sleep(2000);after-stop-savepoint=return",
        true,
    ) else {
        return;
    };
    restore_after_the_markers_expired(&job, &savepoint);
}
