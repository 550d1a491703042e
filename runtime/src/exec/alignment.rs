//! Watermark alignment of a source's subtasks, when its `EventTimes` set a
//! `max_drift`: a subtask stops reading while it reads more than that far ahead
//! in event time of the other subtasks that still have records waiting.
//!
//! Why: epochs follow the clock, so the epoch backpressure bounds how far a source
//! runs ahead in epochs, not in records. Reading a backlog as fast as they can, two
//! subtasks drift apart in event time: the worker behind also handles the other's
//! records, so it falls further behind (60–160 s of event time after 10 s at
//! parallelism 2 in the runtime benchmark). Every operator waits on the slowest
//! watermark, and a window operator holds every window in between, written at
//! each checkpoint. Flink's answer is the same (`withWatermarkAlignment`), and
//! like it this is opt-in: it paces the fastest subtask to the slowest, which
//! costs a pipeline without windows or timers (Nexmark q0 at parallelism 2:
//! 2.2M events/s/core aligned, 3.3M not).
//!
//! Where a subtask reads is the least of the largest event times read from its
//! splits with records waiting (not its watermark: an idle split holds that
//! back, and would stop every other subtask). Each subtask sends every other one
//! where it reads ([`AlignmentReport`]); an operator on each worker keeps the
//! latest reports in an [`Alignment`] shared with the source subtask beside it,
//! so no dataflow cycle is needed. A subtask with nothing waiting (caught up,
//! idle, drained) holds nobody back: only a backlog is aligned, and the subtask
//! furthest behind never waits.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::item::EventTime;

/// What a source subtask tells another one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlignmentReport {
    /// The subtask that sends it.
    pub from: u32,
    /// The subtask it goes to.
    pub to: u32,
    /// Where the sender reads, in event time, while it has records waiting;
    /// `None` when it has none (caught up, idle, drained): then it holds nobody
    /// back.
    pub behind_at: Option<EventTime>,
}

/// The latest reports of the other subtasks of a source, as one subtask sees them.
#[derive(Debug)]
pub struct Alignment {
    subtask: u32,
    max_drift: u64,
    latest: BTreeMap<u32, Option<EventTime>>,
}

impl Alignment {
    /// What subtask `subtask` knows before any report: nobody holds it back.
    pub fn new(subtask: u32, max_drift: u64) -> Self {
        Self {
            subtask,
            max_drift,
            latest: BTreeMap::new(),
        }
    }

    /// Notes a report of another subtask (its latest wins; its own are ignored).
    pub fn update(&mut self, report: AlignmentReport) {
        if report.from != self.subtask {
            self.latest.insert(report.from, report.behind_at);
        }
    }

    /// Whether the subtask, reading at `reading_at`, waits for the others: more
    /// than the drift ahead of the least of those with records waiting.
    pub fn holds_back(&self, reading_at: EventTime) -> bool {
        self.latest
            .values()
            .flatten()
            .min()
            .is_some_and(|&least| reading_at > least.saturating_add(self.max_drift))
    }
}

/// Whether a subtask that last reported `reported` (`None`: nothing yet) tells
/// the others `behind_at`: when it starts or stops having records waiting, when
/// where it reads went back (a split further behind has records waiting again),
/// and when it moved forward a quarter of `max_drift` since (not at every read).
/// A report at most that stale cannot hold back the subtask furthest behind:
/// it is never more than the drift ahead of what the others know of it.
pub fn worth_reporting(
    reported: Option<Option<EventTime>>,
    behind_at: Option<EventTime>,
    max_drift: u64,
) -> bool {
    match (reported, behind_at) {
        (None, _) => true,
        (Some(Some(last)), Some(now)) => now < last || now >= last.saturating_add(max_drift / 4),
        (Some(last), now) => last.is_some() != now.is_some(),
    }
}

/// Delivers `reports` (each sent to the worker of its `to`) into `alignment`, on
/// every worker.
pub fn deliver_reports(
    reports: Stream<'_, u64, Vec<AlignmentReport>>,
    alignment: Rc<RefCell<Alignment>>,
) {
    let scope = reports.scope();
    let mut builder = OperatorBuilder::new("Watermark alignment".to_owned(), scope);
    let mut input = builder.new_input(
        reports,
        Exchange::new(|report: &AlignmentReport| u64::from(report.to)),
    );
    builder.build(move |_capabilities| {
        move |_frontiers| {
            input.for_each(|_, batch| {
                let mut alignment = alignment.borrow_mut();
                for report in batch.drain(..) {
                    alignment.update(report);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(from: u32, behind_at: Option<EventTime>) -> AlignmentReport {
        AlignmentReport {
            from,
            to: 0,
            behind_at,
        }
    }

    #[test]
    fn reports_go_out_on_a_change_of_backlog_or_a_quarter_of_the_drift() {
        let drift = 1_000;
        assert!(worth_reporting(None, None, drift));
        assert!(worth_reporting(None, Some(5), drift));
        assert!(worth_reporting(Some(None), Some(5), drift));
        assert!(worth_reporting(Some(Some(5)), None, drift));
        assert!(!worth_reporting(Some(None), None, drift));
        assert!(!worth_reporting(Some(Some(1_000)), Some(1_249), drift));
        assert!(worth_reporting(Some(Some(1_000)), Some(1_250), drift));
        // Back: at once.
        assert!(worth_reporting(Some(Some(1_000)), Some(999), drift));
    }

    #[test]
    fn a_subtask_waits_only_when_ahead_of_another_with_records_waiting() {
        let mut alignment = Alignment::new(0, 1_000);
        // Nobody reported: nothing to wait for.
        assert!(!alignment.holds_back(u64::MAX));
        alignment.update(report(1, Some(5_000)));
        alignment.update(report(2, Some(9_000)));
        assert!(!alignment.holds_back(6_000));
        assert!(alignment.holds_back(6_001));
        // Its own reports do not hold it back.
        alignment.update(report(0, Some(0)));
        assert!(!alignment.holds_back(6_000));
        // Subtask 1 caught up (nothing waiting): subtask 2 sets the bound.
        alignment.update(report(1, None));
        assert!(!alignment.holds_back(10_000));
        assert!(alignment.holds_back(10_001));
        // The latest report wins, lower or not.
        alignment.update(report(2, Some(2_000)));
        assert!(alignment.holds_back(3_001));
        alignment.update(report(2, None));
        assert!(!alignment.holds_back(u64::MAX));
    }
}
