//! Helpers shared by the runtime's integration tests.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use strom_runtime::exec::{JobConfig, JobControl, JobReport, PipelineFn, run_job};

/// Runs until the first checkpoint has completed, then stops with a savepoint.
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
