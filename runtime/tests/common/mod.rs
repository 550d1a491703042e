//! Helpers shared by the runtime's integration tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use strom_runtime::exec::{
    JobConfig, JobControl, JobReport, JobSettings, PipelineFn, Processes, RestoreFrom, run_job,
};
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
            partitioning: Partitioning::new(parallelism, 128).unwrap(),
            checkpoint_interval,
            retained_checkpoints,
            local_dir: state.join(format!("local-{parallelism}")),
            storage_options: BTreeMap::new(),
        },
        storage_url: format!("file://{}", state.join("storage").display()),
        restore,
        processes: Processes::Local,
        control_address: None,
    }
}

/// Runs until the first checkpoint has completed, then stops with a savepoint.
#[allow(dead_code)] // Not every test file uses every helper.
pub fn run_then_stop(config: JobConfig, pipeline: PipelineFn) -> JobReport {
    let control = Arc::new(JobControl::default());
    let job = {
        let control = Arc::clone(&control);
        thread::spawn(move || run_job(config, pipeline, control))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.snapshots().last_checkpoint.is_none() {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        thread::sleep(Duration::from_millis(10));
    }
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
