//! Sources: inputs divided into splits (Kafka partitions, files, generator streams),
//! spread over subtasks, with positions kept in checkpoints.
//!
//! A source closes an epoch every checkpoint interval: it reports the positions of
//! its splits at the end of the epoch and moves its capabilities to the next one.
//! Positions are non-keyed state: on restore, each split's position goes to whichever
//! subtask owns the split at the new parallelism. Sources whose splits can grow (new
//! Kafka partitions) are asked for their splits again every discovery interval; every
//! subtask discovers on its own and takes the new splits it owns, so no coordination
//! is needed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::ExchangeData;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::{Scope, Stream};
use xxhash_rust::xxh64::xxh64;

use super::alignment::{Alignment, AlignmentReport, deliver_reports, worth_reporting};
use super::context::TaskContext;
use super::control::OperatorLabel;
use super::item::{EventTime, Item, Watermark};
use crate::checkpoint::{SnapshotAck, SubtaskSnapshot};

/// What a read from a split found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// More records may be available right away.
    More,
    /// Nothing to read now; try again later.
    Idle,
    /// Nothing to read before this instant, when the next record is due (a
    /// paced generator): the source wakes then rather than at its idle poll, so a
    /// record waits for no poll.
    IdleUntil(Instant),
    /// The split has ended: nothing more will come.
    Ended,
}

/// A split: its group (a topic, a folder; empty for a generator) and its index in
/// the group (a partition, a file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SplitId {
    /// The group the split belongs to.
    pub group: String,
    /// The split's index in its group.
    pub index: u32,
}

impl SplitId {
    /// Split `index` of `group`.
    pub fn new(group: impl Into<String>, index: u32) -> Self {
        Self {
            group: group.into(),
            index,
        }
    }

    /// The subtask that reads this split at `parallelism`. A group's splits go round
    /// robin over the subtasks from a start that depends on the group's name, so each
    /// group spreads evenly, several groups do not all start at subtask 0, and a split
    /// added later never moves the others (Flink's Kafka source does the same).
    pub fn owner(&self, parallelism: u32) -> u32 {
        let parallelism = u64::from(parallelism.max(1));
        let start = xxh64(self.group.as_bytes(), 0) % parallelism;
        ((start + u64::from(self.index)) % parallelism) as u32
    }
}

impl std::fmt::Display for SplitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.index)
        } else {
            write!(f, "{}/{}", self.group, self.index)
        }
    }
}

/// Why a source cannot go on: the job fails with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// An input divided into splits that can be read independently from a position.
pub trait SplitSource: 'static {
    /// The records it produces.
    type Record: ExchangeData + Clone;
    /// Where a split is read from next (e.g. an offset).
    type Position: Serialize + DeserializeOwned + Clone + 'static;

    /// Every split that exists now. Asked when the source starts and then every
    /// [`discovery_interval`](Self::discovery_interval); splits are never removed.
    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError>;

    /// How often to look for new splits; `None` (the default): the splits are fixed.
    fn discovery_interval(&self) -> Option<Duration> {
        None
    }

    /// Where `split` is read from when no checkpoint holds a position for it.
    /// `discovered_later` says the split appeared after the job's first run started
    /// (a Kafka partition added while it ran, or while it was down before a
    /// restore), which is read from its beginning whatever the start setting.
    fn start(
        &mut self,
        split: &SplitId,
        discovered_later: bool,
    ) -> Result<Self::Position, SourceError>;

    /// This subtask reads `splits` from now on, from these positions, besides those
    /// it already reads.
    fn assign(&mut self, splits: &[(SplitId, Self::Position)]) -> Result<(), SourceError> {
        let _ = splits;
        Ok(())
    }

    /// Reads at most `max` records of `split` from `position` into `out`, advancing
    /// `position` past them.
    fn read(
        &mut self,
        split: &SplitId,
        position: &mut Self::Position,
        max: usize,
        out: &mut Vec<Self::Record>,
    ) -> Result<ReadStatus, SourceError>;

    /// The split a restored checkpoint names `split`, as this source names it now
    /// (a source whose split names changed maps the old names); by default the
    /// same.
    fn restored_split(&self, split: SplitId) -> SplitId {
        split
    }

    /// How many records `record` counts as in metrics (a batch of rows: its rows).
    fn count(record: &Self::Record) -> u64 {
        let _ = record;
        1
    }

    /// A checkpoint that holds these positions of this subtask's splits completed
    /// (a Kafka source may commit them to Kafka, for lag monitoring).
    fn checkpoint_completed(&mut self, positions: &[(SplitId, Self::Position)]) {
        let _ = positions;
    }
}

/// How a source's records get event times, and its watermarks: per split, the
/// largest event time read so far less `max_out_of_orderness`; per subtask, the
/// least over its splits that have not ended and are not idle.
pub struct EventTimes<T> {
    /// The event time of a record, in milliseconds.
    pub timestamp: Box<dyn Fn(&T) -> EventTime>,
    /// How far behind the largest event time read a split's records may still come.
    pub max_out_of_orderness: Duration,
    /// A split that has given no record for this long stops holding the subtask's
    /// watermark back, until it gives one again. `None`: splits never count as idle.
    /// While every split of a subtask is idle, its watermark stays where it is.
    pub idle_timeout: Option<Duration>,
    /// Watermark alignment (as Flink's `withWatermarkAlignment`): a subtask stops
    /// reading while it reads more than this far ahead in event time of the
    /// source's other subtasks that have records waiting (`exec::alignment`).
    /// It keeps windows and timers from piling up when the subtasks read a
    /// backlog at different speeds, at the price of pacing the fastest subtask
    /// to the slowest. `None`: subtasks read as fast as each can.
    pub max_drift: Option<Duration>,
}

/// One split a subtask reads.
struct SplitState<P> {
    id: SplitId,
    position: P,
    ended: bool,
    /// The largest event time read from the split.
    max_event_time: Option<EventTime>,
    /// When the split last gave a record (or was assigned).
    last_record_at: Instant,
    /// When a read last found more records waiting right away.
    backlog_seen_at: Option<Instant>,
    /// Whether it has records waiting, as its last read found (with a short
    /// memory: a Kafka partition catching up finds its fetch queue empty now and
    /// then). Kept while the subtask does not read.
    waiting: bool,
}

impl<P> SplitState<P> {
    fn new(id: SplitId, position: P) -> Self {
        Self {
            id,
            position,
            ended: false,
            max_event_time: None,
            last_record_at: Instant::now(),
            backlog_seen_at: None,
            waiting: false,
        }
    }

    /// Notes what a read at `now` found: more records waiting right away or not.
    fn note_backlog(&mut self, more: bool, now: Instant) {
        if more {
            self.backlog_seen_at = Some(now);
        }
        self.waiting = self
            .backlog_seen_at
            .is_some_and(|seen| now.saturating_duration_since(seen) < BACKLOG_MEMORY);
    }
}

/// How long a split that found records waiting counts as still having some.
const BACKLOG_MEMORY: Duration = Duration::from_millis(100);

/// Where a subtask reads in event time, for watermark alignment: the least of the
/// largest event times read from its splits with records waiting. `None` when
/// none has any: an idle split, or one caught up, says nothing about how far
/// ahead the subtask reads, and must not hold the other subtasks back.
fn reading_at<P>(splits: &[SplitState<P>]) -> Option<EventTime> {
    splits
        .iter()
        .filter(|split| split.waiting && !split.ended)
        .filter_map(|split| split.max_event_time)
        .min()
}

/// The subtask's watermark: the least over its splits that have not ended and are
/// not idle (a split read from but not yet giving records holds it at 0); past every
/// time once all have ended. `None` while every split that has not ended is idle.
fn source_watermark<P>(
    splits: &[SplitState<P>],
    max_out_of_orderness: u64,
    idle_timeout: Option<Duration>,
    now: Instant,
) -> Option<EventTime> {
    let live: Vec<&SplitState<P>> = splits.iter().filter(|split| !split.ended).collect();
    if live.is_empty() {
        return Some(EventTime::MAX);
    }
    live.iter()
        .filter(|split| idle_timeout.is_none_or(|idle| now - split.last_record_at < idle))
        .map(|split| {
            split
                .max_event_time
                .map_or(0, |time| time.saturating_sub(max_out_of_orderness))
        })
        .min()
}

/// How many epochs the rest of the dataflow may be behind a source before the
/// source stops reading (backpressure).
const MAX_EPOCHS_IN_FLIGHT: u64 = 3;

/// The most records a source emits per scheduling before yielding to other operators.
const RECORDS_PER_ACTIVATION: usize = 4096;

/// How soon a drained source closes its next epoch: the job waits for an epoch in
/// which every source is drained to take its final checkpoint.
const DRAINED_EPOCH_INTERVAL: Duration = Duration::from_millis(20);

/// How often a source with positions awaiting a checkpoint looks whether it completed.
const CHECKPOINT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How often a source whose splits have nothing to read looks again.
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The shortest wait for a record due soon ([`ReadStatus::IdleUntil`]): records
/// due closer together than this go out together, in one batch.
const MIN_WAKE_INTERVAL: Duration = Duration::from_millis(1);

/// When a source's epochs end: one epoch length after another from the moment the
/// source started, whatever delays its activations had.
struct EpochClock {
    started: Instant,
    first_epoch: u64,
    length: Duration,
}

impl EpochClock {
    /// The epoch the clock is in at `now`.
    fn due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started).as_nanos();
        self.first_epoch + (elapsed / self.length.as_nanos().max(1)) as u64
    }

    /// When `epoch` ends by the clock.
    fn end_of(&self, epoch: u64) -> Instant {
        let epochs = epoch.saturating_sub(self.first_epoch) + 1;
        let nanos = self.length.as_nanos().saturating_mul(u128::from(epochs));
        self.started + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The positions of a subtask's splits, as stored in a checkpoint.
type Positions<P> = Vec<(SplitId, P)>;

/// The split positions recorded for `operator` in the restore point, from every old
/// subtask, whatever the old parallelism was.
fn restored_positions<P: DeserializeOwned>(
    ctx: &TaskContext,
    operator: &str,
) -> Result<BTreeMap<SplitId, P>, serde_json::Error> {
    let mut positions = BTreeMap::new();
    if let Some(restore) = &ctx.restore {
        for state in restore.manifest.operator_states(operator) {
            positions.extend(serde_json::from_str::<Positions<P>>(state)?);
        }
    }
    Ok(positions)
}

/// Why a source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SourceBuildError {
    /// The positions in the restore point are not what this source stores.
    #[error("unreadable positions in the restore point: {0}")]
    Positions(#[from] serde_json::Error),
    /// The source could not list or open its splits.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// The splits this subtask owns among `discovered` that it does not read yet, each
/// from its restored position or its start.
fn new_splits<S: SplitSource>(
    source: &mut S,
    discovered: Vec<SplitId>,
    known: &mut BTreeSet<SplitId>,
    restored: &BTreeMap<SplitId, S::Position>,
    subtask: u32,
    parallelism: u32,
    discovered_later: bool,
) -> Result<Vec<SplitState<S::Position>>, SourceError> {
    let mut added = Vec::new();
    for split in discovered {
        if split.owner(parallelism) != subtask || !known.insert(split.clone()) {
            continue;
        }
        let position = match restored.get(&split) {
            Some(position) => position.clone(),
            None => source.start(&split, discovered_later)?,
        };
        added.push(SplitState::new(split, position));
    }
    let assigned: Vec<(SplitId, S::Position)> = added
        .iter()
        .map(|split| (split.id.clone(), split.position.clone()))
        .collect();
    if !assigned.is_empty() {
        source.assign(&assigned)?;
    }
    Ok(added)
}

/// Hands the positions of the newest completed checkpoint among `awaiting` to the
/// source, and forgets those of every completed one.
fn report_completed<S: SplitSource>(
    ctx: &TaskContext,
    source: &mut S,
    awaiting: &mut BTreeMap<u64, Positions<S::Position>>,
) {
    if awaiting.is_empty() {
        return;
    }
    if let Some(completed) = ctx.control.completed_checkpoint() {
        let still_awaiting = awaiting.split_off(&(completed + 1));
        let done = std::mem::replace(awaiting, still_awaiting);
        if let Some((_, positions)) = done.into_iter().next_back() {
            source.checkpoint_completed(&positions);
        }
    }
}

/// Records that source `operator` failed and stops the worker: the job restarts from
/// its latest checkpoint.
fn fail_now(ctx: &TaskContext, operator: &str, error: &SourceError) -> ! {
    let message = format!("source {operator}: {error}");
    ctx.control.record_failure(message.clone());
    panic!("{message}");
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
    SourceBuildError,
> {
    let parallelism = ctx.partitioning().parallelism();
    let restored: BTreeMap<SplitId, S::Position> =
        restored_positions::<S::Position>(ctx, operator)?
            .into_iter()
            .map(|(split, position)| (source.restored_split(split), position))
            .collect();
    let mut known = BTreeSet::new();
    let discovered = source.discover()?;
    // Splits a restored checkpoint knows are not new, even if discovered late. When
    // the restored point holds this source's positions, a split it has no position
    // for appeared while the job was down: it is read from its start, as one
    // discovered while running is (the start setting only applies to a first run).
    let restored_this_source = ctx
        .restore
        .as_ref()
        .is_some_and(|restore| restore.manifest.operators.contains_key(operator));
    let mut splits = new_splits(
        &mut source,
        discovered,
        &mut known,
        &restored,
        ctx.subtask,
        parallelism,
        restored_this_source,
    )?;
    let discovery_interval = source.discovery_interval();
    let mut next_discovery = discovery_interval.map(|interval| Instant::now() + interval);

    let peers = scope.peers() as u32;
    let mut builder = OperatorBuilder::new(format!("Source {operator}"), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address);
    let (mut data_output, data_stream) = builder.new_output::<Vec<Item<S::Record>>>();
    let (mut ack_output, ack_stream) = builder.new_output::<Vec<SnapshotAck>>();
    let (mut alignment_output, alignment_stream) = builder.new_output::<Vec<AlignmentReport>>();
    let max_drift = event_times
        .as_ref()
        .and_then(|times| times.max_drift)
        .map(|drift| drift.as_millis() as u64);
    let aligned = max_drift.is_some();
    let alignment = Rc::new(RefCell::new(Alignment::new(
        ctx.subtask,
        max_drift.unwrap_or(0),
    )));
    if aligned {
        deliver_reports(alignment_stream, Rc::clone(&alignment));
    }
    let ctx = ctx.clone();
    let operator = operator.to_owned();
    let series = OperatorLabel::new(&operator, ctx.subtask);

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
        let mut clock = EpochClock {
            started: Instant::now(),
            first_epoch: epoch,
            length: epoch_length,
        };
        let mut epoch_ends_at = clock.end_of(epoch);
        let mut read = Vec::new();
        let mut batch = Vec::new();
        let mut watermark: EventTime = 0;
        let mut held_back_since: Option<Instant> = None;
        // What was last told to the other subtasks (watermark alignment).
        let mut reported: Option<Option<EventTime>> = None;
        // Positions of checkpoint epochs whose checkpoints have not completed yet.
        let mut awaiting_checkpoint: BTreeMap<u64, Positions<S::Position>> = BTreeMap::new();
        let mut next_checkpoint_poll = Instant::now();
        ctx.control.observe_epoch(epoch);

        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            if ctx.control.is_shutting_down() {
                // The job's last checkpoint has completed: report it before leaving.
                report_completed(&ctx, &mut source, &mut awaiting_checkpoint);
                caps = None;
                return;
            }
            let now = Instant::now();
            if next_discovery.is_some_and(|at| now >= at) {
                let found = source.discover().and_then(|discovered| {
                    new_splits(
                        &mut source,
                        discovered,
                        &mut known,
                        &restored,
                        ctx.subtask,
                        parallelism,
                        true,
                    )
                });
                match found {
                    Ok(added) => splits.extend(added),
                    Err(error) => fail_now(&ctx, &operator, &error),
                }
                next_discovery = discovery_interval.map(|interval| now + interval);
            }
            let drained = ctx.control.stop_requested()
                || (discovery_interval.is_none() && splits.iter().all(|split| split.ended));
            // Backpressure: no reading while the rest of the dataflow is more than a
            // few epochs behind this source.
            let held_back = progress.less_than(&epoch.saturating_sub(MAX_EPOCHS_IN_FLIGHT));
            match (held_back, held_back_since) {
                (true, None) => held_back_since = Some(now),
                (false, Some(since)) => {
                    ctx.control.add_backpressure(&series, since.elapsed());
                    held_back_since = None;
                }
                _ => {}
            }
            // Watermark alignment: no reading while further ahead of the other
            // subtasks with records waiting than the allowed drift.
            let aligning = aligned
                && !drained
                && reading_at(&splits).is_some_and(|at| alignment.borrow().holds_back(at));
            if held_back || aligning {
                // Time spent not reading does not make a split with records
                // waiting idle (its records would be late once read again).
                for split in splits.iter_mut().filter(|split| split.waiting) {
                    split.last_record_at = now;
                }
            }
            let mut more = false;
            // The earliest instant a split said its next record is due.
            let mut next_due: Option<Instant> = None;
            if !drained && !held_back && !aligning {
                let share = RECORDS_PER_ACTIVATION / splits.len().max(1);
                for split in splits.iter_mut().filter(|split| !split.ended) {
                    let status =
                        source.read(&split.id, &mut split.position, share.max(1), &mut read);
                    split.note_backlog(matches!(status, Ok(ReadStatus::More)), now);
                    match status {
                        Ok(ReadStatus::More) => more = true,
                        Ok(ReadStatus::Idle) => {}
                        Ok(ReadStatus::IdleUntil(due)) => {
                            next_due = Some(next_due.map_or(due, |next| next.min(due)));
                        }
                        Ok(ReadStatus::Ended) => split.ended = true,
                        Err(error) => fail_now(&ctx, &operator, &error),
                    }
                    if !read.is_empty() {
                        split.last_record_at = now;
                    }
                    if let Some(times) = &event_times {
                        let newest = read.iter().map(|record| (times.timestamp)(record)).max();
                        split.max_event_time = split.max_event_time.max(newest);
                    }
                    batch.extend(read.drain(..).map(Item::Record));
                }
                let records = batch
                    .iter()
                    .map(|item| match item {
                        Item::Record(record) => S::count(record),
                        Item::Watermark(_) => 0,
                    })
                    .sum();
                ctx.control.add_records_in(&series, records);
            }
            // Also when drained: a subtask without splits, or whose splits all
            // ended, reports a watermark past every time.
            if let Some(times) = &event_times {
                let delay = times.max_out_of_orderness.as_millis() as u64;
                let current = source_watermark(&splits, delay, times.idle_timeout, now);
                if let Some(current) = current.filter(|&current| current > watermark) {
                    watermark = current;
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
            if aligned {
                let behind_at = reading_at(&splits).filter(|_| !drained);
                if worth_reporting(reported, behind_at, max_drift.unwrap_or(0)) {
                    reported = Some(behind_at);
                    let mut reports: Vec<AlignmentReport> = (0..peers)
                        .filter(|&to| to != ctx.subtask)
                        .map(|to| AlignmentReport {
                            from: ctx.subtask,
                            to,
                            behind_at,
                        })
                        .collect();
                    if !reports.is_empty() {
                        alignment_output.activate().give(&held[2], &mut reports);
                    }
                }
            }

            // Nothing more to read: close epochs soon, whatever the interval, so the
            // final checkpoint comes quickly; at the job's pace once a checkpoint of
            // drained sources did not end the job (its retries would otherwise
            // write a checkpoint every few milliseconds).
            let hurry = drained && !ctx.control.drained_sources_paced();
            if hurry {
                epoch_ends_at = epoch_ends_at.min(now + DRAINED_EPOCH_INTERVAL);
            }
            if now >= epoch_ends_at && held_back && !drained {
                // A source held back does not end (nor acknowledge) its epoch
                // either, and takes up the clock again from here once released.
                // Each process's clock starts when its dataflow is built, so a source
                // that started earlier than the others runs ahead of them; without
                // this it stayed more than MAX_EPOCHS_IN_FLIGHT ahead of the frontier
                // they hold, and so held back, for good, reading nothing.
                clock = EpochClock {
                    started: now,
                    first_epoch: epoch,
                    length: epoch_length,
                };
                epoch_ends_at = clock.end_of(epoch);
            }
            if now >= epoch_ends_at && ctx.settings.is_checkpoint_epoch(epoch) {
                // The positions at the end of a checkpoint epoch go into its checkpoint.
                let positions: Positions<S::Position> = splits
                    .iter()
                    .map(|split| (split.id.clone(), split.position.clone()))
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
                tracing::debug!(
                    operator,
                    subtask = ctx.subtask,
                    epoch,
                    watermark,
                    "checkpoint epoch closed"
                );
                awaiting_checkpoint.insert(epoch, positions);
            }
            if !awaiting_checkpoint.is_empty() && now >= next_checkpoint_poll {
                next_checkpoint_poll = now + CHECKPOINT_POLL_INTERVAL;
                report_completed(&ctx, &mut source, &mut awaiting_checkpoint);
            }
            if now >= epoch_ends_at {
                // A drained source goes straight to the next checkpoint epoch: the
                // final checkpoint comes soon, whatever the interval. Otherwise the
                // epoch follows the clock, so that a source that ran late (its
                // worker busy building or restoring) catches up with the sources of
                // other workers instead of holding them back for good; it never
                // skips a checkpoint epoch, which it must acknowledge.
                epoch = if hurry {
                    ctx.settings.next_checkpoint_epoch(epoch + 1)
                } else {
                    clock
                        .due(now)
                        .clamp(epoch + 1, ctx.settings.next_checkpoint_epoch(epoch + 1))
                };
                for cap in held.iter_mut() {
                    cap.downgrade(&epoch);
                }
                ctx.control.observe_epoch(epoch);
                epoch_ends_at = if drained {
                    now + DRAINED_EPOCH_INTERVAL
                } else {
                    clock.end_of(epoch)
                };
            }
            if more {
                activator.activate();
            } else if held_back || aligning {
                activator.activate_after(Duration::from_millis(1));
            } else {
                let mut wait = epoch_ends_at
                    .saturating_duration_since(now)
                    .min(IDLE_POLL_INTERVAL);
                if let Some(due) = next_due {
                    wait = wait.min(due.saturating_duration_since(now).max(MIN_WAKE_INTERVAL));
                }
                activator.activate_after(wait);
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
    /// Whether a bounded split idles after its records instead of ending.
    keep_open: bool,
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
            keep_open: false,
            make: Box::new(make),
            started: None,
        }
    }

    /// Ends each split after `count` records.
    pub fn bounded(mut self, count: u64) -> Self {
        self.records_per_split = Some(count);
        self
    }

    /// Keeps each bounded split open after its records: it idles instead of
    /// ending, so the job runs on (and can be savepointed and rescaled) with its
    /// input read.
    pub fn keep_open(mut self) -> Self {
        self.keep_open = true;
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

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        Ok((0..self.splits)
            .map(|split| SplitId::new("", split))
            .collect())
    }

    fn start(&mut self, _split: &SplitId, _discovered_later: bool) -> Result<u64, SourceError> {
        Ok(0)
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut u64,
        max: usize,
        out: &mut Vec<T>,
    ) -> Result<ReadStatus, SourceError> {
        let split = split.index;
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
        Ok(match self.records_per_split {
            Some(count) if *position >= count && self.keep_open => ReadStatus::Idle,
            Some(count) if *position >= count => ReadStatus::Ended,
            _ if limited => ReadStatus::Idle,
            _ => ReadStatus::More,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_is_read_by_exactly_one_subtask_and_groups_spread_evenly() {
        for parallelism in 1..9 {
            for group in ["", "orders", "clicks"] {
                let mut load = vec![0; parallelism as usize];
                for index in 0..24 {
                    let owner = SplitId::new(group, index).owner(parallelism);
                    load[owner as usize] += 1;
                }
                let (least, most) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(most - least <= 1, "{group} at {parallelism}: {load:?}");
            }
        }
        // A split added later leaves the owners of the others as they were.
        let before: Vec<u32> = (0..3).map(|i| SplitId::new("t", i).owner(8)).collect();
        let after: Vec<u32> = (0..4).map(|i| SplitId::new("t", i).owner(8)).collect();
        assert_eq!(before[..], after[..3]);
    }

    #[test]
    fn a_late_source_catches_up_with_the_clock() {
        let started = Instant::now();
        let clock = EpochClock {
            started,
            first_epoch: 100,
            length: Duration::from_millis(20),
        };
        assert_eq!(clock.due(started), 100);
        assert_eq!(clock.due(started + Duration::from_millis(1_819)), 190);
        assert_eq!(clock.end_of(100), started + Duration::from_millis(20));
        assert_eq!(clock.end_of(190), started + Duration::from_millis(1_820));
    }

    #[test]
    fn idle_splits_stop_holding_the_watermark_back() {
        let now = Instant::now();
        let mut active = SplitState::new(SplitId::new("t", 0), 0u64);
        active.max_event_time = Some(10_000);
        let mut idle = SplitState::new(SplitId::new("t", 1), 0u64);
        idle.max_event_time = Some(2_000);
        idle.last_record_at = now - Duration::from_secs(60);
        let splits = [active, idle];
        assert_eq!(source_watermark(&splits, 1_000, None, now), Some(1_000));
        let timeout = Some(Duration::from_secs(30));
        assert_eq!(source_watermark(&splits, 1_000, timeout, now), Some(9_000));
        // Every split idle: the watermark stays where it was.
        assert_eq!(source_watermark(&splits[1..], 1_000, timeout, now), None);
        // Every split ended: past every time.
        let mut ended = SplitState::new(SplitId::new("t", 2), 0u64);
        ended.ended = true;
        assert_eq!(
            source_watermark(&[ended], 1_000, timeout, now),
            Some(EventTime::MAX)
        );
    }

    #[test]
    fn a_bounded_generator_resumes_from_its_position() {
        let mut generator = Generator::new(2, |split, n| (split, n)).bounded(5);
        let mut position = 0;
        let mut out = Vec::new();
        let split = SplitId::new("", 1);
        assert_eq!(
            generator.read(&split, &mut position, 3, &mut out),
            Ok(ReadStatus::More)
        );
        assert_eq!(
            generator.read(&split, &mut position, 3, &mut out),
            Ok(ReadStatus::Ended)
        );
        assert_eq!(out, (0..5).map(|n| (1, n)).collect::<Vec<_>>());
        assert_eq!(position, 5);
    }

    #[test]
    fn a_generator_kept_open_idles_after_its_records() {
        let mut generator = Generator::new(1, |_, n| n).bounded(2).keep_open();
        let (split, mut position, mut out) = (SplitId::new("", 0), 0, Vec::new());
        for _ in 0..2 {
            assert_eq!(
                generator.read(&split, &mut position, 10, &mut out),
                Ok(ReadStatus::Idle)
            );
        }
        assert_eq!(out, vec![0, 1]);
    }
}
