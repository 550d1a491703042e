//! Backpressure: a source does not run far ahead of a slow keyed operator on another
//! worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use strom_runtime::api::Pipeline;
use strom_runtime::exec::{
    Generator, JobConfig, JobControl, JobSettings, PipelineFn, Processes, RestoreFrom, run_job,
};
use strom_runtime::pipelines::mix;
use strom_runtime::state::Partitioning;

const RECORDS: u64 = 2_000_000;

#[test]
fn a_source_waits_for_a_slow_operator_on_another_worker() {
    let state = tempfile::tempdir().unwrap();
    let processed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&processed);
    // Every record has the same key: one worker does all the (slow) keyed work while
    // the other worker's source has nothing else to do.
    let pipeline: PipelineFn = Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let counter = Arc::clone(&counter);
        pipeline
            .source(
                "events",
                Generator::new(8, |split, n| (u64::from(split), n)).bounded(RECORDS / 8),
            )?
            .key_by(|_: &(u64, u64)| 0u64)
            .process(
                "slow",
                move |_key: &u64,
                      (split, n): (u64, u64),
                      state: &mut Option<u64>,
                      out: &mut Vec<u64>| {
                    // A few microseconds of work per record.
                    let mut x = split ^ n;
                    for i in 0..100 {
                        x = mix(x, i, n);
                    }
                    *state = Some(x);
                    counter.fetch_add(1, Ordering::Relaxed);
                    out.push(x);
                },
            )?
            .sink(|_, _| {});
        Ok(())
    });
    let config = JobConfig {
        settings: JobSettings {
            name: "backpressure".into(),
            namespace: None,
            partitioning: Partitioning::new(2, 128).unwrap(),
            checkpoint_interval: Duration::from_secs(1),
            retained_checkpoints: 1,
            savepoint_retention: Default::default(),
            local_dir: state.path().join("local"),
            storage_options: BTreeMap::new(),
            allow_non_restored_state: false,
        },
        storage_url: format!("file://{}", state.path().join("storage").display()),
        restore: RestoreFrom::Nothing,
        processes: Processes::Local,
        control_address: None,
        control_token: None,
    };
    let control = Arc::new(JobControl::default());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (control, processed, done) = (
            Arc::clone(&control),
            Arc::clone(&processed),
            Arc::clone(&done),
        );
        thread::spawn(move || {
            let mut widest = 0;
            while !done.load(Ordering::Relaxed) {
                let ahead = control
                    .records_in()
                    .saturating_sub(processed.load(Ordering::Relaxed));
                widest = widest.max(ahead);
                thread::sleep(Duration::from_millis(5));
            }
            widest
        })
    };
    let report = run_job(config, pipeline, Arc::clone(&control)).unwrap();
    done.store(true, Ordering::Relaxed);
    let widest = sampler.join().unwrap();
    assert_eq!(report.records_in, RECORDS);
    assert_eq!(processed.load(Ordering::Relaxed), RECORDS);
    eprintln!("source ran at most {widest} records ahead of the keyed operator");
    assert!(
        widest < RECORDS / 5,
        "the sources ran {widest} records ahead of the keyed operator (of {RECORDS})"
    );
}
