//! Event-time windows on the real engine: tumbling, hopping and session windows give
//! the results computed directly from the input, at every parallelism and across a
//! stop with savepoint and restores at other parallelisms; allowed lateness keeps
//! late records, and without it they are dropped and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{local_config, run_then_stop, start};
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{
    EventTimes, Generator, JobConfig, JobControl, PipelineFn, RestoreFrom, WindowKind,
    WindowResult, run_job,
};
use strom_runtime::pipelines::mix;

const SPLITS: u32 = 8;
const USERS: u64 = 40;
const START: u64 = 1_700_000_000_000;

/// Click `n` of split `split`: (user, event time). Times advance 10 ms per click
/// and arrive up to 90 ms out of order (the sources allow 100 ms); every 7th click of split 0 is `late_by`
/// behind.
fn click(split: u32, n: u64, late_by: u64) -> (u64, u64) {
    let user = mix(5, u64::from(split), n) % USERS;
    let jitter = mix(6, u64::from(split), n) % 90;
    let mut time = START + n * 10 + jitter;
    if split == 0 && n % 7 == 6 {
        time -= late_by.min(time - START);
    }
    (user, time)
}

type Results = Arc<Mutex<Vec<WindowResult<u64, u64>>>>;

fn pipeline(
    kind: WindowKind,
    per_split: u64,
    rate: Option<u64>,
    late_by: u64,
    lateness: Duration,
    results: Results,
) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut clicks =
            Generator::new(SPLITS, move |split, n| click(split, n, late_by)).bounded(per_split);
        if let Some(rate) = rate {
            clicks = clicks.rate(rate);
        }
        let event_times = EventTimes {
            timestamp: Box::new(|click: &(u64, u64)| click.1),
            max_out_of_orderness: Duration::from_millis(100),
            idle_timeout: None,
            max_drift: None,
        };
        let results = Arc::clone(&results);
        pipeline
            .source_with_event_times("clicks", clicks, event_times)?
            .key_by(|click: &(u64, u64)| click.0)
            .window(kind, |click| click.1)
            .allowed_lateness(lateness)
            .count("clicks-per-window")?
            .sink(move |_, batch| results.lock().unwrap().extend(batch));
        Ok(())
    })
}

fn config(state: &Path, parallelism: u32, restore: RestoreFrom) -> JobConfig {
    local_config(
        state,
        "windows",
        parallelism,
        Duration::from_millis(50),
        2,
        restore,
    )
}

/// The windows and counts computed directly from the input.
fn expected(kind: WindowKind, per_split: u64) -> BTreeSet<(u64, u64, u64, u64)> {
    let mut times: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for split in 0..SPLITS {
        for n in 0..per_split {
            let (user, time) = click(split, n, 0);
            times.entry(user).or_default().push(time);
        }
    }
    let mut windows: BTreeMap<(u64, u64, u64), u64> = BTreeMap::new();
    for (user, mut times) in times {
        times.sort_unstable();
        match kind {
            WindowKind::Tumbling { size } => {
                let size = size.as_millis() as u64;
                for time in times {
                    let start = time - time % size;
                    *windows.entry((user, start, start + size)).or_default() += 1;
                }
            }
            WindowKind::Hopping { size, slide } => {
                let (size, slide) = (size.as_millis() as u64, slide.as_millis() as u64);
                for time in times {
                    let mut start = time - time % slide;
                    loop {
                        if start + size > time {
                            *windows.entry((user, start, start + size)).or_default() += 1;
                        }
                        if start < slide || start + size <= time {
                            break;
                        }
                        start -= slide;
                    }
                }
            }
            WindowKind::Session { gap } => {
                let gap = gap.as_millis() as u64;
                let mut session: Option<(u64, u64, u64)> = None;
                for time in times {
                    session = match session {
                        Some((start, end, count)) if time < end => {
                            Some((start, end.max(time + gap), count + 1))
                        }
                        Some((start, end, count)) => {
                            windows.insert((user, start, end), count);
                            Some((time, time + gap, 1))
                        }
                        None => Some((time, time + gap, 1)),
                    };
                }
                if let Some((start, end, count)) = session {
                    windows.insert((user, start, end), count);
                }
            }
        }
    }
    windows
        .into_iter()
        .map(|((user, start, end), count)| (user, start, end, count))
        .collect()
}

/// The results as a set, checking that no window was emitted twice.
fn as_set(results: &[WindowResult<u64, u64>]) -> BTreeSet<(u64, u64, u64, u64)> {
    let set: BTreeSet<_> = results
        .iter()
        .map(|r| (r.key, r.start, r.end, r.value))
        .collect();
    assert_eq!(
        set.len(),
        results.len(),
        "a window was emitted more than once"
    );
    set
}

const TUMBLING: WindowKind = WindowKind::Tumbling {
    size: Duration::from_secs(1),
};
const HOPPING: WindowKind = WindowKind::Hopping {
    size: Duration::from_secs(2),
    slide: Duration::from_millis(500),
};
const SESSION: WindowKind = WindowKind::Session {
    gap: Duration::from_millis(250),
};

#[test]
fn tumbling_hopping_and_session_windows_match_the_input_at_parallelism_1_2_and_4() {
    let per_split = 600;
    for kind in [TUMBLING, HOPPING, SESSION] {
        let expected = expected(kind, per_split);
        for parallelism in [1, 2, 4] {
            let state = tempfile::tempdir().unwrap();
            let results = Results::default();
            let control = Arc::new(JobControl::default());
            let report = run_job(
                config(state.path(), parallelism, RestoreFrom::Nothing),
                // Rate-limited, so records come in many small batches, each followed
                // by a watermark: out-of-order records meet watermarks often.
                pipeline(
                    kind,
                    per_split,
                    Some(20_000),
                    0,
                    Duration::ZERO,
                    Arc::clone(&results),
                ),
                Arc::clone(&control),
            )
            .unwrap();
            assert_eq!(report.records_in, per_split * u64::from(SPLITS));
            assert_eq!(
                late_records(&control),
                0,
                "{kind:?} at parallelism {parallelism}: records were late"
            );
            let got = as_set(&results.lock().unwrap());
            assert_eq!(got, expected, "{kind:?} at parallelism {parallelism}");
        }
    }
}

#[test]
fn windows_survive_stop_with_savepoint_and_restore_at_2_then_4_then_1() {
    let per_split = 1500;
    for kind in [TUMBLING, SESSION] {
        let state = tempfile::tempdir().unwrap();
        let results = Results::default();
        let rate = Some(8000); // 12 000 clicks: 1.5 s
        let first = run_then_stop(
            config(state.path(), 2, RestoreFrom::Nothing),
            pipeline(
                kind,
                per_split,
                rate,
                0,
                Duration::ZERO,
                Arc::clone(&results),
            ),
        );
        let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
        let second = run_then_stop(
            config(state.path(), 4, RestoreFrom::Snapshot(savepoint)),
            pipeline(
                kind,
                per_split,
                rate,
                0,
                Duration::ZERO,
                Arc::clone(&results),
            ),
        );
        let savepoint = second.snapshots.savepoints.last().unwrap().location.clone();
        let third = run_job(
            config(state.path(), 1, RestoreFrom::Snapshot(savepoint)),
            pipeline(
                kind,
                per_split,
                None,
                0,
                Duration::ZERO,
                Arc::clone(&results),
            ),
            Arc::default(),
        )
        .unwrap();
        assert_eq!(
            first.records_in + second.records_in + third.records_in,
            per_split * u64::from(SPLITS)
        );
        assert!(
            first.records_in > 0 && second.records_in > 0,
            "a run read nothing"
        );
        let got = as_set(&results.lock().unwrap());
        assert_eq!(got, expected(kind, per_split), "{kind:?} across restores");
    }
}

#[test]
fn allowed_lateness_keeps_late_records_and_without_it_they_are_dropped_and_counted() {
    let per_split = 600;
    let late_by = 1500;
    // Every late record is within 2 s of its window's end: kept, and its window
    // emitted again with the record counted. The last emission is the full count.
    let state = tempfile::tempdir().unwrap();
    let results = Results::default();
    run_job(
        config(state.path(), 1, RestoreFrom::Nothing),
        pipeline(
            TUMBLING,
            per_split,
            None,
            late_by,
            Duration::from_secs(3),
            Arc::clone(&results),
        ),
        Arc::default(),
    )
    .unwrap();
    let mut last: BTreeMap<(u64, u64, u64), u64> = BTreeMap::new();
    for result in results.lock().unwrap().iter() {
        let entry = last
            .entry((result.key, result.start, result.end))
            .or_default();
        *entry = (*entry).max(result.value);
    }
    let mut expected_with_late: BTreeMap<(u64, u64, u64), u64> = BTreeMap::new();
    for split in 0..SPLITS {
        for n in 0..per_split {
            let (user, time) = click(split, n, late_by);
            let start = time - time % 1000;
            *expected_with_late
                .entry((user, start, start + 1000))
                .or_default() += 1;
        }
    }
    assert_eq!(last, expected_with_late);
    assert!(
        results.lock().unwrap().len() > last.len(),
        "no window was emitted again for a late record"
    );

    // Without allowed lateness the same records are dropped, and counted.
    let state = tempfile::tempdir().unwrap();
    let results = Results::default();
    let control = Arc::new(JobControl::default());
    run_job(
        config(state.path(), 1, RestoreFrom::Nothing),
        pipeline(
            TUMBLING,
            per_split,
            None,
            late_by,
            Duration::ZERO,
            Arc::clone(&results),
        ),
        Arc::clone(&control),
    )
    .unwrap();
    let total: u64 = as_set(&results.lock().unwrap()).iter().map(|r| r.3).sum();
    let dropped = late_records(&control);
    assert!(dropped > 0, "no record was late");
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &control.metrics.registry()).unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("strom_watermark_lag_seconds{")
                && line.contains("operator=\"clicks-per-window\"")),
        "no watermark lag reported:\n{metrics}"
    );
    assert_eq!(
        total + dropped,
        per_split * u64::from(SPLITS),
        "records lost besides the late ones"
    );
}

/// The records the job's window operators dropped as too late.
fn late_records(control: &JobControl) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &control.metrics.registry()).unwrap();
    text.lines()
        .filter(|line| line.starts_with("strom_late_records_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Issue 14, point 14: a restore goes on from the watermark the savepoint was taken
/// at. Restored at watermark 0, a late record right after the restore reopened a
/// window that had fired and been dropped before the savepoint, and the window was
/// emitted a second time (with the late record alone) — output that depended on
/// whether the job was restored.
#[test]
fn a_restore_goes_on_from_the_savepoints_watermark_and_never_fires_a_window_twice() {
    let per_split = 1500;
    let late_by = 5000;
    let uninterrupted = {
        let state = tempfile::tempdir().unwrap();
        let results = Results::default();
        let control = Arc::new(JobControl::default());
        run_job(
            config(state.path(), 1, RestoreFrom::Nothing),
            pipeline(
                TUMBLING,
                per_split,
                None,
                late_by,
                Duration::ZERO,
                Arc::clone(&results),
            ),
            Arc::clone(&control),
        )
        .unwrap();
        assert!(late_records(&control) > 0, "no record was late");
        as_windows_emitted_once(&results.lock().unwrap())
    };

    let state = tempfile::tempdir().unwrap();
    let results = Results::default();
    let (control, job) = start(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline(
            TUMBLING,
            per_split,
            Some(8000),
            late_by,
            Duration::ZERO,
            Arc::clone(&results),
        ),
    );
    // Stopped once windows have fired (and been dropped): the late records the
    // restored run reads first belong to them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while results.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no window fired within 30 s");
        thread::sleep(Duration::from_millis(5));
    }
    control.request_stop();
    let first = job.join().unwrap().unwrap();
    assert!(
        first.records_in < per_split * u64::from(SPLITS),
        "the first run read everything"
    );
    let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    // Without a rate limit the restored sources read large batches at once: late
    // records reach the window operator before any new watermark does.
    run_job(
        config(state.path(), 1, RestoreFrom::Snapshot(savepoint)),
        pipeline(
            TUMBLING,
            per_split,
            None,
            late_by,
            Duration::ZERO,
            Arc::clone(&results),
        ),
        Arc::default(),
    )
    .unwrap();
    let restored = as_windows_emitted_once(&results.lock().unwrap());
    // Which records are late depends on how sources batch them (a batch's records
    // all arrive before its watermark), so counts may differ by a late record; the
    // windows themselves may not.
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        uninterrupted.keys().collect::<Vec<_>>(),
        "the restore changed which windows fired"
    );
}

/// Each window's count, checking that no window was emitted more than once.
fn as_windows_emitted_once(results: &[WindowResult<u64, u64>]) -> BTreeMap<(u64, u64, u64), u64> {
    let mut windows = BTreeMap::new();
    for result in results {
        let previous = windows.insert((result.key, result.start, result.end), result.value);
        assert!(
            previous.is_none(),
            "window {:?} of key {} emitted twice: {:?} then {}",
            (result.start, result.end),
            result.key,
            previous,
            result.value
        );
    }
    windows
}
