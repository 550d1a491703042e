//! Helpers shared by the runtime's integration tests.

pub mod kafka;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use strom_runtime::exec::{
    JobConfig, JobControl, JobReport, JobSettings, PipelineFn, Processes, RestoreFrom, run_job,
};
use strom_runtime::pipelines::mix;
use strom_runtime::state::Partitioning;

/// A job `name` run in this process at `parallelism` (128 key groups), state under
/// `state` (object storage in `storage/`, RocksDB in `local-<parallelism>/`).
#[allow(dead_code)] // Not every test file uses every helper.
pub fn local_config(
    state: &Path,
    name: &str,
    parallelism: u32,
    checkpoint_interval: Duration,
    retained_checkpoints: usize,
    restore: RestoreFrom,
) -> JobConfig {
    JobConfig {
        settings: JobSettings {
            name: name.into(),
            namespace: None,
            partitioning: Partitioning::new(parallelism, 128).unwrap(),
            checkpoint_interval,
            retained_checkpoints,
            savepoint_retention: Default::default(),
            local_dir: state.join(format!("local-{parallelism}")),
            storage_options: BTreeMap::new(),
            allow_non_restored_state: false,
        },
        storage_url: format!("file://{}", state.join("storage").display()),
        restore,
        processes: Processes::Local,
        control_address: None,
        control_token: None,
    }
}

/// The job run on a thread of its own, and its control.
pub type RunningJob = (
    Arc<JobControl>,
    thread::JoinHandle<Result<JobReport, strom_runtime::exec::JobError>>,
);

/// Starts the job on a thread of its own.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn start(config: JobConfig, pipeline: PipelineFn) -> RunningJob {
    let control = Arc::new(JobControl::default());
    let job = {
        let control = Arc::clone(&control);
        thread::spawn(move || run_job(config, pipeline, control))
    };
    (control, job)
}

/// Waits (a minute at most) until the job's first checkpoint has completed.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn wait_for_a_checkpoint(control: &JobControl) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.snapshots().last_checkpoint.is_none() {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (a minute at most) until the job has read `records` records.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn wait_for_records(control: &JobControl, records: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.records_in() < records {
        assert!(
            Instant::now() < deadline,
            "the job read {} of {records} records within a minute",
            control.records_in()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// How many checkpoints the job has completed (its `strom_checkpoints_total`).
#[allow(dead_code)] // Not every test file uses every helper.
pub fn checkpoints_completed(control: &JobControl) -> u64 {
    control
        .metrics_text()
        .lines()
        .filter(|line| line.starts_with("strom_checkpoints_total"))
        .find_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Runs until the first checkpoint has completed, then stops with a savepoint.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn run_then_stop(config: JobConfig, pipeline: PipelineFn) -> JobReport {
    let (control, job) = start(config, pipeline);
    wait_for_a_checkpoint(&control);
    stop_and_join(&control, job)
}

/// Runs until it has read a record and completed a checkpoint after that, then
/// stops with a savepoint. A restored run stopped at its first checkpoint may
/// not have read anything yet on a loaded machine; tests that need every run
/// of a sequence to read use this.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn run_read_then_stop(config: JobConfig, pipeline: PipelineFn) -> JobReport {
    let (control, job) = start(config, pipeline);
    wait_for_records(&control, 1);
    let before = checkpoints_completed(&control);
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoints_completed(&control) <= before {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        thread::sleep(Duration::from_millis(10));
    }
    stop_and_join(&control, job)
}

/// Stops the job with a savepoint and waits (a minute at most) for its report.
pub fn stop_and_join(
    control: &JobControl,
    job: thread::JoinHandle<Result<JobReport, strom_runtime::exec::JobError>>,
) -> JobReport {
    control.request_stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.is_finished() {
        assert!(
            Instant::now() < deadline,
            "no savepoint within a minute of the stop: {:?}",
            control.snapshots().last_error
        );
        thread::sleep(Duration::from_millis(10));
    }
    job.join().unwrap().unwrap()
}

/// The files (not folders) directly in `dir`; none if it does not exist.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every `user U: N clicks` line in the committed `part-*` files of the built-in
/// `clicks-per-user` pipeline's output folder, and how often each appears.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn clicks_per_user_output(dir: &Path) -> BTreeMap<(u64, u64), u32> {
    let mut lines = BTreeMap::new();
    for file in files_in(dir) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let rest = line.strip_prefix("user ").unwrap();
            let (user, clicks) = rest.split_once(": ").unwrap();
            let clicks = clicks.trim_end_matches(" clicks").parse().unwrap();
            *lines.entry((user.parse().unwrap(), clicks)).or_insert(0) += 1;
        }
    }
    lines
}

/// Checks that the `clicks-per-user` output in `dir` holds every running count of
/// every user exactly once, for the input of `splits` x `per_split` clicks of
/// `users` users generated with `seed`.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn assert_each_running_count_once(
    dir: &Path,
    splits: u64,
    per_split: u64,
    users: u64,
    seed: u64,
) {
    let mut expected = BTreeMap::new();
    for split in 0..splits {
        for n in 0..per_split {
            *expected.entry(mix(seed, split, n) % users).or_insert(0u64) += 1;
        }
    }
    let output = clicks_per_user_output(dir);
    let twice: Vec<_> = output.iter().filter(|(_, times)| **times > 1).collect();
    assert!(
        twice.is_empty(),
        "results written more than once: {twice:?}"
    );
    let mut per_user: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (user, count) in output.keys() {
        per_user.entry(*user).or_default().push(*count);
    }
    for (user, total) in &expected {
        let counts = per_user.remove(user).unwrap_or_default();
        assert_eq!(
            counts,
            (1..=*total).collect::<Vec<_>>(),
            "user {user}: results missing"
        );
    }
    assert!(
        per_user.is_empty(),
        "results for unknown users: {per_user:?}"
    );
}

/// Checks that for every user the running counts seen are exactly 1..=n (none
/// missing, none twice), and returns the final count per user.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn final_counts(output: &[(u64, u64)]) -> BTreeMap<u64, u64> {
    let mut per_user: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(user, count) in output {
        per_user.entry(user).or_default().push(count);
    }
    per_user
        .into_iter()
        .map(|(user, mut counts)| {
            counts.sort_unstable();
            let expected: Vec<u64> = (1..=counts.len() as u64).collect();
            assert_eq!(
                counts, expected,
                "user {user}: counts reset, skipped or repeated"
            );
            (user, *counts.last().unwrap())
        })
        .collect()
}
