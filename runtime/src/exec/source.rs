//! Sources: inputs divided into a fixed number of splits (Kafka partitions,
//! generator streams), spread over subtasks, with positions kept in checkpoints.
//!
//! A source closes an epoch every checkpoint interval: it reports the positions of
//! its splits at the end of the epoch and moves its capabilities to the next one.
//! Positions are non-keyed state: on restore, each split's position goes to whichever
//! subtask owns the split at the new parallelism.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use timely::ExchangeData;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::{Scope, Stream};

use super::context::TaskContext;
use super::item::{EventTime, Item, Watermark};
use crate::checkpoint::{SnapshotAck, SubtaskSnapshot};

/// What a read from a split found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// More records may be available right away.
    More,
    /// Nothing to read now; try again later.
    Idle,
    /// The split has ended: nothing more will come.
    Ended,
}

/// An input divided into splits that can be read independently from a position.
pub trait SplitSource: 'static {
    /// The records it produces.
    type Record: ExchangeData + Clone;
    /// Where a split is read from next (e.g. an offset).
    type Position: Serialize + DeserializeOwned + Clone + 'static;

    /// The number of splits; fixed for the life of the job.
    fn splits(&self) -> u32;

    /// The position of a split that has never been read.
    fn start(&self, split: u32) -> Self::Position;

    /// Reads at most `max` records of `split` from `position` into `out`, advancing
    /// `position` past them.
    fn read(
        &mut self,
        split: u32,
        position: &mut Self::Position,
        max: usize,
        out: &mut Vec<Self::Record>,
    ) -> ReadStatus;
}

/// The splits subtask `subtask` of `parallelism` reads: every split `s` with
/// `s % parallelism == subtask`.
pub fn splits_of(splits: u32, subtask: u32, parallelism: u32) -> impl Iterator<Item = u32> {
    (subtask..splits).step_by(parallelism as usize)
}

/// How a source's records get event times, and its watermarks: per split, the
/// largest event time read so far less `max_out_of_orderness`; per subtask, the
/// least over its splits that have not ended.
pub struct EventTimes<T> {
    /// The event time of a record, in milliseconds.
    pub timestamp: Box<dyn Fn(&T) -> EventTime>,
    /// How far behind the largest event time read a split's records may still come.
    pub max_out_of_orderness: Duration,
}

/// One split a subtask reads.
struct SplitState<P> {
    split: u32,
    position: P,
    ended: bool,
    /// The largest event time read from the split.
    max_event_time: Option<EventTime>,
}

/// The subtask's watermark: the least over its splits that have not ended (none
/// read yet holds it at 0); past every time once all have ended.
fn source_watermark<P>(splits: &[SplitState<P>], max_out_of_orderness: u64) -> EventTime {
    splits
        .iter()
        .filter(|split| !split.ended)
        .map(|split| {
            split
                .max_event_time
                .map_or(0, |time| time.saturating_sub(max_out_of_orderness))
        })
        .min()
        .unwrap_or(EventTime::MAX)
}

/// How many epochs the rest of the dataflow may be behind a source before the
/// source stops reading (backpressure).
const MAX_EPOCHS_IN_FLIGHT: u64 = 3;

/// The most records a source emits per scheduling before yielding to other operators.
const RECORDS_PER_ACTIVATION: usize = 4096;

/// How soon a drained source closes its next epoch: the job waits for an epoch in
/// which every source is drained to take its final checkpoint.
const DRAINED_EPOCH_INTERVAL: Duration = Duration::from_millis(20);

/// The positions of a subtask's splits, as stored in a checkpoint.
type Positions<P> = BTreeMap<u32, P>;

/// The split positions recorded for `operator` in the restore point, from every old
/// subtask, whatever the old parallelism was.
fn restored_positions<P: DeserializeOwned>(
    ctx: &TaskContext,
    operator: &str,
) -> Result<Positions<P>, serde_json::Error> {
    let mut positions = Positions::new();
    if let Some(restore) = &ctx.restore {
        for state in restore.manifest.operator_states(operator) {
            positions.extend(serde_json::from_str::<Positions<P>>(state)?);
        }
    }
    Ok(positions)
}

/// Builds the source operator `operator`, with watermarks when `event_times` is
/// given. It stops reading while `progress` (the frontier of the job's outputs) is
/// more than a few epochs behind it. Returns the record stream and the stream of snapshot acknowledgements
/// (one per epoch, carrying the split positions).
#[allow(clippy::type_complexity)]
pub fn split_source<'scope, S: SplitSource>(
    scope: Scope<'scope, u64>,
    ctx: &TaskContext,
    operator: &str,
    mut source: S,
    event_times: Option<EventTimes<S::Record>>,
    progress: ProbeHandle<u64>,
) -> Result<
    (
        Stream<'scope, u64, Vec<Item<S::Record>>>,
        Stream<'scope, u64, Vec<SnapshotAck>>,
    ),
    serde_json::Error,
> {
    let parallelism = ctx.partitioning().parallelism();
    let restored = restored_positions::<S::Position>(ctx, operator)?;
    let mut splits: Vec<SplitState<S::Position>> =
        splits_of(source.splits(), ctx.subtask, parallelism)
            .map(|split| SplitState {
                split,
                position: restored
                    .get(&split)
                    .cloned()
                    .unwrap_or_else(|| source.start(split)),
                ended: false,
                max_event_time: None,
            })
            .collect();

    let mut builder = OperatorBuilder::new(format!("Source {operator}"), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address);
    let (mut data_output, data_stream) = builder.new_output::<Vec<Item<S::Record>>>();
    let (mut ack_output, ack_stream) = builder.new_output::<Vec<SnapshotAck>>();
    let ctx = ctx.clone();
    let operator = operator.to_owned();

    builder.build(move |capabilities| {
        let mut epoch = ctx.start_epoch;
        let mut caps = Some(
            capabilities
                .into_iter()
                .map(|mut cap| {
                    cap.downgrade(&epoch);
                    cap
                })
                .collect::<Vec<_>>(),
        );
        let epoch_length = ctx.settings.epoch_length();
        let mut epoch_ends_at = Instant::now() + epoch_length;
        let mut read = Vec::new();
        let mut batch = Vec::new();
        let mut watermark: EventTime = 0;
        let mut held_back_since: Option<Instant> = None;
        ctx.control.observe_epoch(epoch);

        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            if ctx.control.is_shutting_down() {
                caps = None;
                return;
            }
            let drained = ctx.control.stop_requested() || splits.iter().all(|split| split.ended);
            // Backpressure: no reading while the rest of the dataflow is more than a
            // few epochs behind this source.
            let held_back = progress.less_than(&epoch.saturating_sub(MAX_EPOCHS_IN_FLIGHT));
            match (held_back, held_back_since) {
                (true, None) => held_back_since = Some(Instant::now()),
                (false, Some(since)) => {
                    ctx.control.add_backpressure(&operator, since.elapsed());
                    held_back_since = None;
                }
                _ => {}
            }
            let mut more = false;
            if !drained && !held_back {
                let share = RECORDS_PER_ACTIVATION / splits.len().max(1);
                for split in splits.iter_mut().filter(|split| !split.ended) {
                    match source.read(split.split, &mut split.position, share.max(1), &mut read) {
                        ReadStatus::More => more = true,
                        ReadStatus::Idle => {}
                        ReadStatus::Ended => split.ended = true,
                    }
                    if let Some(times) = &event_times {
                        let newest = read.iter().map(|record| (times.timestamp)(record)).max();
                        split.max_event_time = split.max_event_time.max(newest);
                    }
                    batch.extend(read.drain(..).map(Item::Record));
                }
                ctx.control.add_records_in(&operator, batch.len() as u64);
            }
            // Also when drained: a subtask without splits, or whose splits all
            // ended, reports a watermark past every time.
            if let Some(times) = &event_times {
                let delay = times.max_out_of_orderness.as_millis() as u64;
                let now = source_watermark(&splits, delay);
                if now > watermark {
                    watermark = now;
                    batch.push(Item::Watermark(Watermark {
                        from: ctx.subtask,
                        to: None,
                        at: watermark,
                    }));
                }
            }
            if !batch.is_empty() {
                data_output.activate().give(&held[0], &mut batch);
                batch.clear();
            }

            let now = Instant::now();
            if drained {
                // Nothing more to read: close epochs soon, whatever the interval, so
                // the final checkpoint comes quickly.
                epoch_ends_at = epoch_ends_at.min(now + DRAINED_EPOCH_INTERVAL);
            }
            if now >= epoch_ends_at && ctx.settings.is_checkpoint_epoch(epoch) {
                // The positions at the end of a checkpoint epoch go into its checkpoint.
                let positions: Positions<S::Position> = splits
                    .iter()
                    .map(|split| (split.split, split.position.clone()))
                    .collect();
                let ack = SnapshotAck {
                    operator: operator.clone(),
                    epoch,
                    snapshot: SubtaskSnapshot {
                        subtask: ctx.subtask,
                        operator_state: Some(
                            serde_json::to_string(&positions).expect("positions serialize"),
                        ),
                        ..SubtaskSnapshot::default()
                    },
                    drained: Some(drained),
                };
                ack_output.activate().give(&held[1], &mut vec![ack]);
            }
            if now >= epoch_ends_at {
                // A drained source goes straight to the next checkpoint epoch: the
                // final checkpoint comes soon, whatever the interval.
                epoch = if drained {
                    ctx.settings.next_checkpoint_epoch(epoch + 1)
                } else {
                    epoch + 1
                };
                for cap in held.iter_mut() {
                    cap.downgrade(&epoch);
                }
                ctx.control.observe_epoch(epoch);
                epoch_ends_at = now
                    + if drained {
                        DRAINED_EPOCH_INTERVAL
                    } else {
                        epoch_length
                    };
            }
            if more {
                activator.activate();
            } else if held_back {
                activator.activate_after(Duration::from_millis(1));
            } else {
                activator.activate_after(
                    epoch_ends_at
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(10)),
                );
            }
        }
    });
    Ok((data_stream, ack_stream))
}

/// Generated records: `splits` independent sequences, record `n` of split `s` given
/// by `make(s, n)`, optionally bounded and rate-limited. The same seed-free function
/// gives the same records on every run and at every parallelism.
pub struct Generator<T> {
    splits: u32,
    records_per_split: Option<u64>,
    records_per_second_per_split: Option<f64>,
    make: Box<dyn FnMut(u32, u64) -> T>,
    started: Option<(Instant, BTreeMap<u32, u64>)>,
}

impl<T> Generator<T> {
    /// A generator of `splits` sequences of records made by `make(split, n)`.
    pub fn new(splits: u32, make: impl FnMut(u32, u64) -> T + 'static) -> Self {
        Self {
            splits,
            records_per_split: None,
            records_per_second_per_split: None,
            make: Box::new(make),
            started: None,
        }
    }

    /// Ends each split after `count` records.
    pub fn bounded(mut self, count: u64) -> Self {
        self.records_per_split = Some(count);
        self
    }

    /// Limits the whole job to `records_per_second`, spread evenly over the splits.
    pub fn rate(mut self, records_per_second: u64) -> Self {
        self.records_per_second_per_split =
            Some(records_per_second as f64 / self.splits.max(1) as f64);
        self
    }
}

impl<T: ExchangeData + Clone> SplitSource for Generator<T> {
    type Record = T;
    type Position = u64;

    fn splits(&self) -> u32 {
        self.splits
    }

    fn start(&self, _split: u32) -> u64 {
        0
    }

    fn read(&mut self, split: u32, position: &mut u64, max: usize, out: &mut Vec<T>) -> ReadStatus {
        let mut end = *position + max as u64;
        let mut limited = false;
        if let Some(rate) = self.records_per_second_per_split {
            let (started, first) = self
                .started
                .get_or_insert_with(|| (Instant::now(), BTreeMap::new()));
            let first = *first.entry(split).or_insert(*position);
            let allowed = first + (started.elapsed().as_secs_f64() * rate) as u64;
            if allowed < end {
                end = allowed;
                limited = true;
            }
        }
        if let Some(count) = self.records_per_split {
            end = end.min(count);
        }
        while *position < end {
            out.push((self.make)(split, *position));
            *position += 1;
        }
        match self.records_per_split {
            Some(count) if *position >= count => ReadStatus::Ended,
            _ if limited => ReadStatus::Idle,
            _ => ReadStatus::More,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_is_read_by_exactly_one_subtask() {
        for parallelism in 1..6 {
            let mut seen: Vec<u32> = (0..parallelism)
                .flat_map(|subtask| splits_of(16, subtask, parallelism))
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..16).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_bounded_generator_resumes_from_its_position() {
        let mut generator = Generator::new(2, |split, n| (split, n)).bounded(5);
        let mut position = 0;
        let mut out = Vec::new();
        assert_eq!(
            generator.read(1, &mut position, 3, &mut out),
            ReadStatus::More
        );
        assert_eq!(
            generator.read(1, &mut position, 3, &mut out),
            ReadStatus::Ended
        );
        assert_eq!(out, (0..5).map(|n| (1, n)).collect::<Vec<_>>());
        assert_eq!(position, 5);
    }
}
