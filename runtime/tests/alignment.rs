//! Watermark alignment on the real engine: source subtasks reading a backlog as
//! fast as they can stay within a bounded event-time distance of each other, so
//! downstream operators hold little in front of their watermark; a subtask with
//! an idle split beside a busy one does not stop the others; a subtask that runs
//! out of input holds nobody back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::local_config;
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{
    EventTimes, KeyState, KeyedFunction, PipelineFn, ReadStatus, RestoreFrom, SourceError, SplitId,
    SplitSource, run_job,
};
use strom_runtime::state::StateError;

const START: u64 = 1_700_000_000_000;
/// Leads are measured once the watermark is this far past the start (split 0
/// covers 200 s).
const MEASURED_FROM: u64 = 100_000;
const PER_SPLIT: u64 = 200_000;

/// A record: key, event time, split.
type Event = (u64, u64, u32);

/// Splits read as fast as they can be: split 0 moves 1 ms of event time a
/// record, split 1 3 ms (so, unaligned, the subtask reading it runs ahead by
/// about 2 ms a record), and, if there is one, split 2, beside split 0 on the
/// same subtask, gives nothing until split 0 has ended (an idle partition: it
/// holds that subtask's watermark at 0 meanwhile).
struct TwoPaces {
    idle_split: bool,
    split_0_ended: bool,
}

impl SplitSource for TwoPaces {
    type Record = Event;
    type Position = u64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        // Splits of one group go round robin over the subtasks: 0 and 2 together.
        let splits = if self.idle_split { 3 } else { 2 };
        Ok((0..splits).map(|index| SplitId::new("", index)).collect())
    }

    fn start(&mut self, _split: &SplitId, _later: bool) -> Result<u64, SourceError> {
        Ok(0)
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut u64,
        max: usize,
        out: &mut Vec<Event>,
    ) -> Result<ReadStatus, SourceError> {
        let pace = match split.index {
            0 => 1,
            1 => 3,
            _ if self.split_0_ended => return Ok(ReadStatus::Ended),
            _ => return Ok(ReadStatus::Idle),
        };
        let count = (max as u64).min(PER_SPLIT - *position);
        for n in *position..*position + count {
            out.push((n % 64, START + n * pace, split.index));
        }
        *position += count;
        if *position < PER_SPLIT {
            return Ok(ReadStatus::More);
        }
        if split.index == 0 {
            self.split_0_ended = true;
        }
        Ok(ReadStatus::Ended)
    }
}

/// What the keyed operator saw.
#[derive(Default)]
struct Seen {
    /// Records of each split.
    records: [u64; 3],
    /// Records of split 1 when the last record of split 0 came.
    split_1_when_split_0_ended: Option<u64>,
    /// The largest distance from a record's event time to the operator's
    /// watermark when it came, once the watermark is past `MEASURED_FROM`.
    largest_lead: u64,
}

/// Notes each record.
struct Note(Arc<Mutex<Seen>>);

impl KeyedFunction<u64, Event, ()> for Note {
    fn process(
        &mut self,
        _key: &u64,
        (_, time, split): Event,
        state: &mut KeyState<'_>,
        _out: &mut Vec<()>,
    ) -> Result<(), StateError> {
        let mut seen = self.0.lock().unwrap();
        seen.records[split as usize] += 1;
        if split == 0 && seen.records[0] == PER_SPLIT {
            seen.split_1_when_split_0_ended = Some(seen.records[1]);
        }
        // From the middle of split 0 on: a subtask reads freely until the other's
        // first report reaches it, so the start may be further apart.
        if state.watermark() >= START + MEASURED_FROM {
            seen.largest_lead = seen
                .largest_lead
                .max(time.saturating_sub(state.watermark()));
        }
        Ok(())
    }
}

fn pipeline(idle_split: bool, seen: Arc<Mutex<Seen>>) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let source = TwoPaces {
            idle_split,
            split_0_ended: false,
        };
        let event_times = EventTimes {
            timestamp: Box::new(|event: &Event| event.1),
            max_out_of_orderness: Duration::from_millis(10),
            idle_timeout: None,
            max_drift: Some(Duration::from_secs(1)),
        };
        let seen = Arc::clone(&seen);
        pipeline
            .source_with_event_times("events", source, event_times)?
            .key_by(|event: &Event| event.0)
            .process_function("note", Note(seen))?
            .sink(|_, _| {});
        Ok(())
    })
}

/// Runs the job at parallelism 2 to its end; what it saw.
fn run(idle_split: bool) -> Seen {
    let state = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = local_config(
        state.path(),
        "alignment",
        2,
        Duration::from_secs(3600),
        1,
        RestoreFrom::Nothing,
    );
    run_job(
        config,
        pipeline(idle_split, Arc::clone(&seen)),
        Arc::default(),
    )
    .unwrap();
    Arc::into_inner(seen).unwrap().into_inner().unwrap()
}

/// Split 1 was read alongside split 0 (about a third of it by the time split 0
/// ended, aligned in event time), not stopped until split 0 ended (then only its
/// first reads had come, before it heard from split 0's subtask: 4 096-24 576
/// records, seen with the subtask's watermark as where it reads).
fn assert_read_alongside(seen: &Seen) {
    let alongside = seen.split_1_when_split_0_ended.unwrap();
    assert!(
        alongside >= PER_SPLIT / 5,
        "only {alongside} records of split 1 had come when split 0 ended"
    );
}

#[test]
fn subtasks_reading_a_backlog_stay_within_the_drift_of_each_other() {
    let seen = run(false);
    // Every record came: split 1 read its last 400 s of event time after split 0
    // ended (nothing waiting there any more).
    assert_eq!(seen.records, [PER_SPLIT, PER_SPLIT, 0]);
    assert_read_alongside(&seen);
    // Measured past the middle of split 0, a record's lead over the watermark
    // is bounded by the drift (1 s), one read of split 1 (4096 records, 12 s),
    // the out-of-orderness, and records in flight (reads of split 1 the keyed
    // operators have not caught up with, and epochs of the two subtasks that
    // close at different times: up to three reads seen on a loaded machine).
    // Unaligned: 310-370 s.
    assert!(
        seen.largest_lead < 100_000,
        "a record came {} ms ahead of the watermark",
        seen.largest_lead
    );
}

#[test]
fn an_idle_split_beside_a_busy_one_holds_no_other_subtask_back() {
    let seen = run(true);
    assert_eq!(seen.records, [PER_SPLIT, PER_SPLIT, 0]);
    // The idle split holds its subtask's watermark at 0, but where that subtask
    // reads is split 0's time: split 1 keeps pace with it.
    assert_read_alongside(&seen);
}
