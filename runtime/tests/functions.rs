//! Keyed process functions with value, map and list state and event-time timers:
//! the same results at every parallelism and across a stop with savepoint and
//! restores at other parallelisms.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{local_config, run_then_stop};
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{
    EventTime, EventTimes, Generator, JobConfig, KeyState, KeyedFunction, PipelineFn, RestoreFrom,
    run_job,
};
use strom_runtime::pipelines::mix;
use strom_runtime::state::StateError;

const SPLITS: u32 = 8;
const USERS: u64 = 30;
const START: u64 = 1_700_000_000_000;
const BUCKET: u64 = 500;

/// Click `n` of split `split`: (user, event time), up to 90 ms out of order.
fn click(split: u32, n: u64) -> (u64, u64) {
    let user = mix(8, u64::from(split), n) % USERS;
    (user, START + n * 10 + mix(9, u64::from(split), n) % 90)
}

/// What a timer reports: user, timer time, clicks since the previous timer, clicks
/// before the timer in all, distinct pages seen before the timer.
type Report = (u64, u64, u64, u64, u64);

/// Keeps each user's click times in list state and a timer per 500 ms bucket; when a
/// timer fires, moves the clicks before it into per-page counts (map state) and a
/// running total (value state), and reports.
struct ClicksPerBucket;

impl KeyedFunction<u64, (u64, u64), Report> for ClicksPerBucket {
    fn process(
        &mut self,
        _user: &u64,
        (_, time): (u64, u64),
        state: &mut KeyState<'_>,
        _out: &mut Vec<Report>,
    ) -> Result<(), StateError> {
        state.list_push(time)?;
        state.register_timer(time - time % BUCKET + BUCKET)
    }

    fn on_timer(
        &mut self,
        user: &u64,
        timer: EventTime,
        state: &mut KeyState<'_>,
        out: &mut Vec<Report>,
    ) -> Result<(), StateError> {
        let (before, after): (Vec<u64>, Vec<u64>) =
            state.list::<u64>()?.into_iter().partition(|&t| t < timer);
        state.set_list(&after);
        for time in &before {
            let page = time % 7;
            let seen: u64 = state.map_get(&page)?.unwrap_or(0);
            state.map_put(&page, &(seen + 1));
        }
        let total = state.value::<u64>()?.unwrap_or(0) + before.len() as u64;
        state.set_value(&total);
        let pages = state.map_entries::<u64, u64>()?.len() as u64;
        out.push((*user, timer, before.len() as u64, total, pages));
        Ok(())
    }
}

type Reports = Arc<Mutex<Vec<Report>>>;

fn pipeline(per_split: u64, rate: Option<u64>, reports: Reports) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut clicks = Generator::new(SPLITS, click).bounded(per_split);
        if let Some(rate) = rate {
            clicks = clicks.rate(rate);
        }
        let event_times = EventTimes {
            timestamp: Box::new(|click: &(u64, u64)| click.1),
            max_out_of_orderness: Duration::from_millis(100),
            idle_timeout: None,
            max_drift: None,
        };
        let reports = Arc::clone(&reports);
        pipeline
            .source_with_event_times("clicks", clicks, event_times)?
            .key_by(|click: &(u64, u64)| click.0)
            .process_function("clicks-per-bucket", ClicksPerBucket)?
            .sink(move |_, batch| reports.lock().unwrap().extend(batch));
        Ok(())
    })
}

fn config(state: &Path, parallelism: u32, restore: RestoreFrom) -> JobConfig {
    local_config(
        state,
        "functions",
        parallelism,
        Duration::from_millis(60),
        2,
        restore,
    )
}

/// The reports computed directly from the input.
fn expected(per_split: u64) -> BTreeSet<Report> {
    let mut times: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for split in 0..SPLITS {
        for n in 0..per_split {
            let (user, time) = click(split, n);
            times.entry(user).or_default().push(time);
        }
    }
    let mut reports = BTreeSet::new();
    for (user, times) in times {
        let timers: BTreeSet<u64> = times.iter().map(|t| t - t % BUCKET + BUCKET).collect();
        let mut previous = 0;
        for timer in timers {
            let since = times
                .iter()
                .filter(|&&t| t >= previous && t < timer)
                .count() as u64;
            let total = times.iter().filter(|&&t| t < timer).count() as u64;
            let pages = times
                .iter()
                .filter(|&&t| t < timer)
                .map(|t| t % 7)
                .collect::<BTreeSet<_>>()
                .len() as u64;
            reports.insert((user, timer, since, total, pages));
            previous = timer;
        }
    }
    reports
}

fn as_set(reports: &[Report]) -> BTreeSet<Report> {
    let set: BTreeSet<Report> = reports.iter().copied().collect();
    assert_eq!(set.len(), reports.len(), "a timer reported twice");
    set
}

#[test]
fn process_functions_give_the_same_reports_at_parallelism_1_2_and_4() {
    let per_split = 500;
    let expected = expected(per_split);
    for parallelism in [1, 2, 4] {
        let state = tempfile::tempdir().unwrap();
        let reports = Reports::default();
        run_job(
            config(state.path(), parallelism, RestoreFrom::Nothing),
            pipeline(per_split, Some(20_000), Arc::clone(&reports)),
            Arc::default(),
        )
        .unwrap();
        assert_eq!(
            as_set(&reports.lock().unwrap()),
            expected,
            "at parallelism {parallelism}"
        );
    }
}

#[test]
fn process_function_state_and_timers_survive_restores_at_2_then_4_then_1() {
    let per_split = 1200;
    let state = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let rate = Some(8000);
    let first = run_then_stop(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline(per_split, rate, Arc::clone(&reports)),
    );
    let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    let second = run_then_stop(
        config(state.path(), 4, RestoreFrom::Snapshot(savepoint)),
        pipeline(per_split, rate, Arc::clone(&reports)),
    );
    let savepoint = second.snapshots.savepoints.last().unwrap().location.clone();
    let third = run_job(
        config(state.path(), 1, RestoreFrom::Snapshot(savepoint)),
        pipeline(per_split, None, Arc::clone(&reports)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        first.records_in + second.records_in + third.records_in,
        per_split * u64::from(SPLITS)
    );
    assert_eq!(as_set(&reports.lock().unwrap()), expected(per_split));
}

/// Registers, for every click, a timer 5 s before it (at or below the watermark for
/// every click after the first seconds), and reports each timer that fires.
struct TimerInThePast;

impl KeyedFunction<u64, (u64, u64), (u64, u64)> for TimerInThePast {
    fn process(
        &mut self,
        _user: &u64,
        (_, time): (u64, u64),
        state: &mut KeyState<'_>,
        _out: &mut Vec<(u64, u64)>,
    ) -> Result<(), StateError> {
        state.register_timer(time - 5_000)
    }

    fn on_timer(
        &mut self,
        user: &u64,
        timer: EventTime,
        _state: &mut KeyState<'_>,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), StateError> {
        out.push((*user, timer));
        Ok(())
    }
}

/// Issue 14, point 7: a timer registered at or below the current watermark fires
/// (at the next watermark, as in Flink), whether or not the job was restored.
#[test]
fn timers_registered_at_or_below_the_watermark_fire() {
    let per_split = 2000;
    let state = tempfile::tempdir().unwrap();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&fired);
    let pipeline: PipelineFn = Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let event_times = EventTimes {
            timestamp: Box::new(|click: &(u64, u64)| click.1),
            max_out_of_orderness: Duration::from_millis(100),
            idle_timeout: None,
            max_drift: None,
        };
        let sink = Arc::clone(&sink);
        pipeline
            .source_with_event_times(
                "clicks",
                Generator::new(SPLITS, click).bounded(per_split),
                event_times,
            )?
            .key_by(|click: &(u64, u64)| click.0)
            .process_function("timers-in-the-past", TimerInThePast)?
            .sink(move |_, batch| sink.lock().unwrap().extend(batch));
        Ok(())
    });
    run_job(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline,
        Arc::default(),
    )
    .unwrap();

    let mut expected = BTreeSet::new();
    for split in 0..SPLITS {
        for n in 0..per_split {
            let (user, time) = click(split, n);
            expected.insert((user, time - 5_000));
        }
    }
    // A timer set again after it fired fires again: compare the sets.
    let fired_set: BTreeSet<(u64, u64)> = fired.lock().unwrap().iter().copied().collect();
    let missing = expected.difference(&fired_set).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} timers never fired",
        expected.len()
    );
    assert_eq!(fired_set, expected);
}
