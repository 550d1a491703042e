//! Issue 14, point 14: the copy of a savepoint does not hold up the checkpoints
//! after it, and a stop during a copy leaves each request its own savepoint. The coordinator copied each savepoint before it completed the next
//! checkpoint, so a slow copy (large state, slow object storage) stopped the job's
//! checkpoints — and the sink commits and Kafka transactions waiting on them —
//! for as long as it took. Garbage collection must still keep the files the copy
//! reads, however many checkpoints complete meanwhile.
//!
//! A test binary of its own: the failpoint is process-wide.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{checkpoints_completed, local_config, start, wait_for_a_checkpoint};
use strom_runtime::api::Pipeline;
use strom_runtime::exec::control::SavepointStatus;
use strom_runtime::exec::{Generator, PipelineFn, RestoreFrom, run_job};

fn pipeline(per_split: Option<u64>) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut numbers = Generator::new(4, |split, n| u64::from(split) * 1_000_000 + n);
        numbers = match per_split {
            Some(count) => numbers.bounded(count),
            None => numbers.rate(4000),
        };
        pipeline
            .source("numbers", numbers)?
            .key_by(|n: &u64| n % 100)
            .count("counts")?
            .sink(|_, _| {});
        Ok(())
    })
}

#[test]
fn checkpoints_go_on_while_a_savepoint_is_copied_and_the_copy_keeps_its_files() {
    let state = tempfile::tempdir().unwrap();
    // One retained checkpoint: collecting as usual during the copy would delete
    // the files of the checkpoint being copied.
    let config = local_config(
        state.path(),
        "slow-savepoint",
        2,
        Duration::from_millis(100),
        1,
        RestoreFrom::Nothing,
    );
    let (control, job) = start(config.clone(), pipeline(None));
    wait_for_a_checkpoint(&control);
    fail::cfg("savepoint-copy-delay", "return(3000)").unwrap();
    let request = control.request_savepoint(None);
    // The copy starts with the next checkpoint.
    thread::sleep(Duration::from_millis(500));
    let before = checkpoints_completed(&control);
    thread::sleep(Duration::from_secs(2));
    let during = checkpoints_completed(&control) - before;
    fail::cfg("savepoint-copy-delay", "off").unwrap();
    eprintln!("{during} checkpoints completed in 2 s while the savepoint was copied");
    assert!(
        during >= 5,
        "{during} checkpoints in 2 s at a 100 ms interval while a savepoint was copied"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let savepoint = loop {
        let status = control
            .savepoint_requests()
            .into_iter()
            .find(|r| r.id == request)
            .unwrap()
            .status;
        match status {
            SavepointStatus::Completed { savepoint } => break savepoint,
            SavepointStatus::Failed { error } => panic!("the savepoint failed: {error}"),
            SavepointStatus::Pending => {
                assert!(Instant::now() < deadline, "no savepoint within 30 s");
                thread::sleep(Duration::from_millis(20));
            }
        }
    };

    // A stop while a savepoint is copied: the stop waits for the copy, which
    // settles its own request, and then takes its own savepoint.
    fail::cfg("savepoint-copy-delay", "return(1000)").unwrap();
    let requested_at = checkpoints_completed(&control);
    let copied = control.request_savepoint(None);
    // Two checkpoints later the copy has started (it takes 1 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpoints_completed(&control) < requested_at + 2 {
        assert!(Instant::now() < deadline, "no checkpoint within 30 s");
        thread::sleep(Duration::from_millis(5));
    }
    let stop = control.request_stop();
    let report = job.join().unwrap().unwrap();
    fail::cfg("savepoint-copy-delay", "off").unwrap();
    let statuses: Vec<_> = control
        .savepoint_requests()
        .into_iter()
        .filter(|r| r.id == copied || r.id == stop)
        .map(|r| r.status)
        .collect();
    let [
        SavepointStatus::Completed { savepoint: of_copy },
        SavepointStatus::Completed { savepoint: of_stop },
    ] = statuses.as_slice()
    else {
        panic!("both savepoints complete: {statuses:?}");
    };
    assert!(
        of_copy.epoch < of_stop.epoch && of_copy.location != of_stop.location,
        "the copy's request got the stop's savepoint: {of_copy:?}, {of_stop:?}"
    );
    let epochs: Vec<u64> = report
        .snapshots
        .savepoints
        .iter()
        .map(|s| s.epoch)
        .collect();
    assert!(
        epochs.is_sorted() && report.snapshots.savepoints.last() == Some(of_stop),
        "savepoints out of order: {epochs:?}"
    );

    // The savepoints are whole: a job restores from each and runs to its end.
    for location in [savepoint.location, of_copy.location.clone()] {
        let mut restore = config.clone();
        restore.restore = RestoreFrom::Snapshot(location);
        run_job(restore, pipeline(Some(10)), Arc::default()).unwrap();
    }
}
