//! Issue 14, point 14: drained sources (a stop whose savepoint keeps failing, say)
//! take one quick final checkpoint, then checkpoint at the job's interval again:
//! they used to close a checkpoint epoch every 20 ms, so each retry of the failing
//! savepoint wrote a checkpoint and a savepoint attempt 50 times a second.
//!
//! A test binary of its own: the failpoint is process-wide.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{checkpoints_completed, local_config, start, wait_for_a_checkpoint};
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{Generator, PipelineFn, RestoreFrom};

#[test]
fn a_stop_whose_savepoint_keeps_failing_retries_at_the_checkpoint_interval() {
    let state = tempfile::tempdir().unwrap();
    let pipeline: PipelineFn = Arc::new(|pipeline: &mut Pipeline<'_>| {
        pipeline
            .source(
                "numbers",
                Generator::new(4, |split, n| u64::from(split) + n).rate(2000),
            )?
            .key_by(|n: &u64| n % 10)
            .count("counts")?
            .sink(|_, _| {});
        Ok(())
    });
    let config = local_config(
        state.path(),
        "retries",
        2,
        Duration::from_millis(200),
        2,
        RestoreFrom::Nothing,
    );
    let (control, job) = start(config, pipeline);
    wait_for_a_checkpoint(&control);
    fail::cfg("savepoint-write", "return").unwrap();
    control.request_stop();
    thread::sleep(Duration::from_millis(500));
    let before = checkpoints_completed(&control);
    thread::sleep(Duration::from_secs(2));
    let during = checkpoints_completed(&control) - before;
    fail::cfg("savepoint-write", "off").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the stop did not end once savepoints worked"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let report = job.join().unwrap().unwrap();
    assert!(
        !report.snapshots.savepoints.is_empty(),
        "no savepoint at the end"
    );
    // 2 s at a 200 ms interval: about 10, not 100.
    assert!(
        during <= 15,
        "{during} checkpoints in 2 s while the stop's savepoint kept failing"
    );
}
