//! The exactly-once file sink through crashes of the `strom` process: kill -9
//! mid-run, and failpoints just before and just after a checkpoint completes. After
//! a restart from the latest checkpoint, every result is in the output exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{assert_each_running_count_once, clicks_per_user_output, files_in};

const SPLITS: u64 = 16;
const PER_SPLIT: u64 = 1000;
const USERS: u64 = 200;
const SEED: u64 = 42;

struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    /// A bounded clicks-per-user job at parallelism 2 writing to an exactly-once
    /// file sink; 16 000 clicks at 6 000/s last under three seconds.
    fn new() -> Self {
        Self::with_slots_per_pod(2)
    }

    /// The same job in 2 / `slots_per_pod` processes.
    fn with_slots_per_pod(slots_per_pod: u32) -> Self {
        Self::with(slots_per_pod, 2)
    }

    /// The same job in 2 / `slots_per_pod` processes, keeping `retained` checkpoints.
    fn with(slots_per_pod: u32, retained: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(
            r#"apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks
spec:
  parallelism: 2
  slotsPerPod: {slots_per_pod}
  pipeline:
    name: clicks-per-user
    args:
      clicksPerSecond: "6000"
      clicksPerSplit: "{PER_SPLIT}"
      users: "{USERS}"
      seed: "{SEED}"
      outputPath: file://{out}
  state:
    checkpointInterval: 100ms
    retainedCheckpoints: {retained}
    storage: file://{state}
"#,
            out = dir.path().join("out").display(),
            state = dir.path().join("state").display(),
        );
        std::fs::write(dir.path().join("job.yaml"), manifest).unwrap();
        Self { dir }
    }

    fn command(&self, failpoints: Option<&str>) -> Command {
        self.command_in("work", failpoints)
    }

    /// `strom run` of the job from empty state (no `--resume`), into the same
    /// storage and output folders.
    fn command_fresh(&self, failpoints: Option<&str>) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
        command
            .arg("run")
            .arg(self.dir.path().join("job.yaml"))
            .arg("--work-dir")
            .arg(self.dir.path().join("work-fresh"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.env_remove("FAILPOINTS");
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        command
    }

    /// `strom run --resume` of the job with RocksDB's working folder `work_dir`.
    fn command_in(&self, work_dir: &str, failpoints: Option<&str>) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
        command
            .arg("run")
            .arg(self.dir.path().join("job.yaml"))
            .arg("--resume")
            .arg("--work-dir")
            .arg(self.dir.path().join(work_dir))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.env_remove("FAILPOINTS");
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        command
    }

    /// Process `index` of the job run as `peers.len()` processes.
    fn process_command(&self, index: usize, peers: &[String]) -> Command {
        let mut command = self.command_in(&format!("work-{index}"), None);
        command.args(["--process", &index.to_string(), "--peers", &peers.join(",")]);
        command
    }

    /// Runs the job to its end (restoring from the latest checkpoint, if any).
    fn run_to_end(&self) {
        let output = self.command(None).output().unwrap();
        assert!(
            output.status.success(),
            "the restarted job failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.dir.path().join("state").join("clicks")
    }

    /// The completed checkpoints' folders (`chk-<run>-<epoch>`), oldest first.
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

    fn staged_files(&self) -> Vec<PathBuf> {
        files_in(&self.dir.path().join("out").join("_staging"))
    }

    /// Checks that the output holds every running count of every user exactly once.
    fn assert_exactly_once(&self) {
        let output = self.dir.path().join("out");
        assert_each_running_count_once(&output, SPLITS, PER_SPLIT, USERS, SEED);
        assert!(self.staged_files().is_empty(), "staged output left behind");
    }

    fn output(&self) -> BTreeMap<(u64, u64), u32> {
        clicks_per_user_output(&self.dir.path().join("out"))
    }
}

#[test]
fn kill_9_mid_run_then_restart_resumes_with_each_result_once() {
    let job = Job::new();
    let mut child = job.command(None).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.completed_checkpoints().len() < 2 {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before it was killed"
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !job.output().is_empty(),
        "nothing was committed before the kill"
    );

    job.run_to_end();
    job.assert_exactly_once();
}

/// Crashes the job at `failpoint` on the fourth checkpoint, restarts it, and checks
/// the output. Returns what the crash left in the staging folder.
fn crash_at(failpoint: &str) -> (Job, usize) {
    let job = Job::new();
    let crashed = job
        .command(Some(&format!("{failpoint}=3*off->return")))
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.code(),
        Some(137),
        "the failpoint did not crash the job: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    let staged = job.staged_files().len();
    job.run_to_end();
    job.assert_exactly_once();
    (job, staged)
}

#[test]
fn a_crash_just_before_a_checkpoint_completes_loses_and_doubles_nothing() {
    let (job, staged) = crash_at("before-checkpoint-complete");
    // The crash left output staged for a checkpoint that never completed.
    assert!(staged > 0, "nothing was staged when the job crashed");
    assert!(!job.completed_checkpoints().is_empty());
}

#[test]
fn a_crash_after_a_checkpoint_completes_but_before_its_commit_commits_on_recovery() {
    let job = Job::new();
    let crashed = job
        .command(Some("after-checkpoint-complete=3*off->return"))
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.code(),
        Some(137),
        "the failpoint did not crash the job"
    );
    // The newest checkpoint completed, and its output is still staged: the commit
    // window the recovery must close.
    let newest = job.completed_checkpoints().pop().unwrap();
    let manifest =
        std::fs::read_to_string(job.checkpoints_dir().join(newest).join("_manifest")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let pending: Vec<String> = manifest["operators"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|subtask| subtask["pendingCommits"].as_array().unwrap().clone())
        .map(|commit| commit["staged"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !pending.is_empty(),
        "the crashed checkpoint had no output to commit"
    );
    for staged in &pending {
        let path = staged.strip_prefix("file://").unwrap();
        assert!(
            Path::new(path).exists(),
            "{staged} was committed before the crash"
        );
    }

    job.run_to_end();
    job.assert_exactly_once();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn kill_9_of_one_of_two_processes_then_restart_of_the_job_resumes_with_each_result_once() {
    let job = Job::with_slots_per_pod(1);
    // The first run's stderr is not read (the survivor's panic report could fill
    // the pipe); the restart's is, to show why it failed if it does.
    let start = |job: &Job, stderr: fn() -> Stdio| {
        let peers: Vec<String> = (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let children: Vec<_> = (0..2)
            .map(|i| {
                job.process_command(i, &peers)
                    .stderr(stderr())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
    };
    let mut children = start(&job, Stdio::null);
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.completed_checkpoints().len() < 2 {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        thread::sleep(Duration::from_millis(20));
    }
    children[1].kill().unwrap(); // SIGKILL of process 1 only
    children[1].wait().unwrap();
    // Process 0 loses its peer and fails; the job is restarted as a whole.
    let survivor = children[0].wait().unwrap();
    assert!(!survivor.success(), "process 0 went on without its peer");
    assert!(
        job.output().len() < (SPLITS * PER_SPLIT) as usize,
        "the job had finished before the kill"
    );

    let restarted = start(&job, Stdio::piped);
    for child in restarted {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    job.assert_exactly_once();
}

/// Issue 14, point 3: two runs of the job into the same output folder (a stateless
/// restart: no restore) both keep their output. Part names carry the run, so the
/// second run's parts never replace the first's.
#[test]
fn a_second_run_into_the_same_output_folder_keeps_the_first_runs_output() {
    let job = Job::new();
    job.run_to_end();
    job.assert_exactly_once();
    let first = job.output();

    let fresh = job.command_fresh(None).output().unwrap();
    assert!(
        fresh.status.success(),
        "the second run failed: {}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let both = job.output();
    let not_twice: Vec<_> = both
        .iter()
        .filter(|(_, times)| **times != 2)
        .take(5)
        .collect();
    assert!(
        not_twice.is_empty(),
        "after two runs, results not there exactly twice (e.g. {not_twice:?})"
    );
    assert_eq!(both.len(), first.len());
}

/// Runs the job once with `failpoints` set (it must end by itself) and checks that
/// every result is committed exactly once and nothing stays staged. Every
/// checkpoint is retained, so garbage collection (which commits what it removes)
/// cannot make up for a commit the coordinator dropped.
fn run_with_storage_errors(failpoints: &str) {
    let job = Job::with(2, 1000);
    let output = job.command(Some(failpoints)).output().unwrap();
    assert!(
        output.status.success(),
        "the job failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    job.assert_exactly_once();
}

/// Issue 14, point 4: a commit of staged output that fails (a storage error) is
/// retried, not dropped.
#[test]
fn output_whose_commit_failed_is_committed_by_a_retry() {
    run_with_storage_errors("checkpoint-commit=2*off->2*return");
}

/// Issue 14, point 4: when the manifest of a checkpoint cannot be written, that
/// checkpoint does not exist, and its staged output is committed with the next one.
#[test]
fn output_of_a_checkpoint_whose_manifest_write_failed_is_committed_with_the_next() {
    run_with_storage_errors("checkpoint-write=2*off->1*return");
}

/// Issue 14, point 8: the processes of one job restore one point. Started with
/// different restore settings (process 0 resuming the latest checkpoint, process 1
/// from empty state), the job fails loudly instead of running on mixed state.
#[test]
fn processes_that_would_restore_different_points_fail_loudly() {
    let job = Job::with_slots_per_pod(1);
    job.run_to_end();
    let peers: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut resuming = job.process_command(0, &peers);
    let mut fresh = job.command_fresh(None);
    fresh.args(["--process", "1", "--peers", &peers.join(",")]);
    let children = [resuming.spawn().unwrap(), fresh.spawn().unwrap()];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut outputs = Vec::new();
    for mut child in children {
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("a process neither ran nor failed within a minute");
            }
            thread::sleep(Duration::from_millis(20));
        }
        outputs.push(child.wait_with_output().unwrap());
    }
    assert!(
        outputs.iter().all(|output| !output.status.success()),
        "the job ran with processes restoring different points"
    );
    let stderr = String::from_utf8_lossy(&outputs[1].stderr);
    assert!(
        stderr.contains("every process must restore the same point"),
        "process 1 did not say why: {stderr}"
    );
    // Nothing was written twice.
    job.assert_exactly_once();
}
