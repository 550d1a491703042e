//! A failure in one subtask ends the whole job, with the failure as its error:
//! the other subtasks do not wait forever for the failed one's progress.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::local_config;
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{Generator, JobControl, PipelineFn, RestoreFrom, run_job};

/// Longer than the job takes to read its input by far.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `pipeline` as the job `name` at parallelism 2 with `control`, on a thread
/// of its own: its result, or `None` if it did not end within [`DEADLINE`].
fn run_with_deadline(
    name: &str,
    pipeline: PipelineFn,
    control: Arc<JobControl>,
) -> Option<Result<(), String>> {
    let state = tempfile::tempdir().unwrap();
    let config = local_config(
        state.path(),
        name,
        2,
        Duration::from_millis(100),
        2,
        RestoreFrom::Nothing,
    );
    let (done, ended) = mpsc::channel();
    thread::spawn(move || {
        let result = run_job(config, pipeline, control);
        let _ = done.send(result.map(|_| ()).map_err(|error| error.to_string()));
    });
    let result = ended.recv_timeout(DEADLINE).ok();
    drop(state);
    result
}

#[test]
fn a_panic_in_one_subtask_fails_the_job_on_every_subtask() {
    // Split 0 is read by one subtask only: the others read all of theirs and then
    // wait for the failed subtask's progress.
    let pipeline: PipelineFn = Arc::new(|pipeline: &mut Pipeline<'_>| {
        pipeline
            .source(
                "numbers",
                Generator::new(4, |split, n| (split, n)).bounded(2_000),
            )?
            .map(|(split, n): (u32, u64)| {
                assert!(!(split == 0 && n == 1_500), "record 1500 of split 0 is bad");
                n
            })
            .sink(|_, _| {});
        Ok(())
    });
    let result = run_with_deadline("failures", pipeline, Arc::default())
        .expect("the job did not end after one of its subtasks failed");
    let error = result.expect_err("the job succeeded although a subtask failed");
    assert!(error.contains("record 1500 of split 0 is bad"), "{error}");
}

#[test]
fn a_panic_while_one_worker_builds_the_pipeline_fails_the_job() {
    let pipeline: PipelineFn = Arc::new(|pipeline: &mut Pipeline<'_>| {
        assert!(
            pipeline.context().subtask != 1,
            "subtask 1 cannot build its pipeline"
        );
        pipeline
            .source("numbers", Generator::new(4, |_, n| n).bounded(1_000))?
            .sink(|_, _| {});
        Ok(())
    });
    let control = Arc::new(JobControl::default());
    let result = run_with_deadline("failures-build", pipeline, Arc::clone(&control))
        .expect("the job did not end after a worker failed to build");
    let error = result.expect_err("the job succeeded although a worker failed to build");
    assert!(
        error.contains("subtask 1 cannot build its pipeline"),
        "{error}"
    );

    // The same control runs the next job from a clean slate.
    let pipeline: PipelineFn = Arc::new(|pipeline: &mut Pipeline<'_>| {
        pipeline
            .source("numbers", Generator::new(4, |_, n| n).bounded(1_000))?
            .sink(|_, _| {});
        Ok(())
    });
    run_with_deadline("failures-after", pipeline, control)
        .expect("the next job did not end")
        .expect("a reused control runs the next job");
}
