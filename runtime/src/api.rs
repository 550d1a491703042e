//! The DataStream API: a typed pipeline over timely streams of record batches
//! (`Vec<T>` containers), with keyed state and checkpoints handled by the runtime.
//!
//! ```
//! use strom_runtime::api::{BuildError, Pipeline};
//! use strom_runtime::exec::Generator;
//!
//! fn clicks_per_user(pipeline: &mut Pipeline<'_>) -> Result<(), BuildError> {
//!     let users = Generator::new(16, |split, n| (u64::from(split) * 31 + n) % 100);
//!     pipeline
//!         .source("clicks", users)?
//!         .filter(|user| user % 2 == 0)
//!         .key_by(|user| *user)
//!         .count("clicks-per-user")?
//!         .sink(|_epoch, counts| println!("{counts:?}"));
//!     Ok(())
//! }
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use timely::ExchangeData;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{Scope, Stream};

use crate::checkpoint::{SnapshotAck, SnapshotKind, StorageError};
use crate::connectors::kafka::exactly_once::exactly_once_kafka_sink;
use crate::connectors::kafka::sink::at_least_once_kafka_sink;
use crate::connectors::kafka::{Delivery, KafkaOutput, KafkaSinkConfig};
use crate::exec::context::TaskContext;
use crate::exec::control::OperatorLabel;
use crate::exec::coordinator::coordinator;
use crate::exec::file_sink::exactly_once_file_sink;
use crate::exec::function::{FunctionLogic, KeyedFunction};
use crate::exec::item::{self, EventTime, Item, per_record};
use crate::exec::keyed::{KeyedLogic, ValueProcess, encode_key, keyed_operator};
use crate::exec::malformed::{InputRecord, OnMalformed, dead_letter, failure_message};
use crate::exec::source::{EventTimes, SourceBuildError, SplitSource, split_source};
use crate::exec::window::{Aggregation, WindowKind, WindowLogic, WindowResult};
use crate::format::FormatError;
use crate::state::StateError;

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Two stateful operators or sources share a name; names identify state in
    /// checkpoints, so each must be unique.
    #[error("operator name {0:?} is used twice; state is kept per operator name")]
    DuplicateName(String),
    /// An operator's state could not be opened or restored.
    #[error("operator {operator}: {source}")]
    State {
        /// The operator.
        operator: String,
        /// What failed.
        source: StateError,
    },
    /// A sink's output folder could not be used.
    #[error("sink {operator}: {source}")]
    Sink {
        /// The sink.
        operator: String,
        /// What failed.
        source: Box<StorageError>,
    },
    /// A source could not start: unreadable positions in the restore point, or
    /// splits it could not list or open.
    #[error("source {operator}: {source}")]
    Source {
        /// The source.
        operator: String,
        /// What failed.
        source: SourceBuildError,
    },
    /// The checkpoint restored holds transactions of sinks the job does not
    /// have: output of a completed checkpoint that only those sinks commit.
    #[error(
        "cannot restore: the checkpoint holds transactions that sinks this job does not have must still commit: {}; the job's operators: {}. Restore it with the sinks it was taken with, then change the job from a savepoint",
        sinks.join(", "),
        operators.join(", ")
    )]
    UncommittedOutput {
        /// The snapshot's sinks with commits no operator of the job takes over.
        sinks: Vec<String>,
        /// The job's operators.
        operators: Vec<String>,
    },
    /// The restore point holds state of operators the job does not have.
    #[error(
        "cannot restore: the snapshot holds state of operators this job does not have: {}; the job's operators: {}. A changed query or pipeline removed or renamed them; to restore without their state, set spec.allowNonRestoredState: true",
        unclaimed.join(", "),
        operators.join(", ")
    )]
    UnclaimedState {
        /// The snapshot's operators with state that no operator of the job claims.
        unclaimed: Vec<String>,
        /// The job's operators.
        operators: Vec<String>,
    },
}

/// What the stateful parts of a pipeline register while it is built.
struct Registry<'scope> {
    acks: Vec<Stream<'scope, u64, Vec<SnapshotAck>>>,
    operators: Vec<String>,
    /// The frontier of the job's outputs (sinks and keyed operators), which sources
    /// consult for backpressure.
    progress: ProbeHandle<u64>,
}

/// A pipeline being built on one worker: the entry point for sources.
pub struct Pipeline<'scope> {
    scope: Scope<'scope, u64>,
    ctx: TaskContext,
    registry: Rc<RefCell<Registry<'scope>>>,
}

impl<'scope> Pipeline<'scope> {
    pub(crate) fn new(scope: Scope<'scope, u64>, ctx: TaskContext) -> Self {
        Self {
            scope,
            ctx,
            registry: Rc::new(RefCell::new(Registry {
                acks: Vec::new(),
                operators: Vec::new(),
                progress: ProbeHandle::new(),
            })),
        }
    }

    /// The worker's view of the job (subtask, settings).
    pub fn context(&self) -> &TaskContext {
        &self.ctx
    }

    /// Adds the source `name` reading `source`; its split positions are checkpointed.
    pub fn source<S: SplitSource>(
        &mut self,
        name: &str,
        source: S,
    ) -> Result<DataStream<'scope, S::Record>, BuildError> {
        self.add_source(name, source, None)
    }

    /// Adds the source `name` reading `source`, with event times and watermarks
    /// (needed by windows).
    pub fn source_with_event_times<S: SplitSource>(
        &mut self,
        name: &str,
        source: S,
        event_times: EventTimes<S::Record>,
    ) -> Result<DataStream<'scope, S::Record>, BuildError> {
        self.add_source(name, source, Some(event_times))
    }

    fn add_source<S: SplitSource>(
        &mut self,
        name: &str,
        source: S,
        event_times: Option<EventTimes<S::Record>>,
    ) -> Result<DataStream<'scope, S::Record>, BuildError> {
        register(&self.registry, name)?;
        let progress = self.registry.borrow().progress.clone();
        let (stream, acks) =
            split_source(self.scope, &self.ctx, name, source, event_times, progress).map_err(
                |source| BuildError::Source {
                    operator: name.to_owned(),
                    source,
                },
            )?;
        self.registry.borrow_mut().acks.push(acks);
        Ok(DataStream {
            stream,
            ctx: self.ctx.clone(),
            registry: Rc::clone(&self.registry),
        })
    }

    /// Completes the pipeline: checks that every operator state of the restore
    /// point is claimed by an operator (unless the job allows dropping it), and
    /// connects every operator's snapshots to the checkpoint coordinator.
    pub(crate) fn finish(self) -> Result<(), BuildError> {
        let registry = self.registry.borrow();
        if let Some(restore) = &self.ctx.restore {
            let claimed = |operator: &&str| registry.operators.iter().any(|o| o == operator);
            // A checkpoint's transactions are committed by their sink when it
            // is restored (the run that took it may have crashed before): output
            // already promised, never dropped, even when dropping state is
            // allowed. A savepoint's were committed by the run that took it.
            let uncommitted: Vec<String> = match restore.manifest.kind {
                SnapshotKind::Savepoint => Vec::new(),
                SnapshotKind::Checkpoint => restore
                    .manifest
                    .operators_awaiting_commit()
                    .filter(|operator| !claimed(operator))
                    .map(str::to_owned)
                    .collect(),
            };
            let unclaimed: Vec<String> = restore
                .manifest
                .operators_with_state()
                .filter(|operator| !claimed(operator))
                .map(str::to_owned)
                .collect();
            if !uncommitted.is_empty() {
                return Err(BuildError::UncommittedOutput {
                    sinks: uncommitted,
                    operators: registry.operators.clone(),
                });
            }
            if !unclaimed.is_empty() && !self.ctx.settings.allow_non_restored_state {
                return Err(BuildError::UnclaimedState {
                    unclaimed,
                    operators: registry.operators.clone(),
                });
            }
        }
        let acks = registry.acks.iter().cloned();
        let all = acks.reduce(|all, next| all.concat(next));
        if let Some(all) = all {
            coordinator(all, &self.ctx, registry.operators.clone());
        }
        Ok(())
    }
}

fn register(registry: &Rc<RefCell<Registry<'_>>>, name: &str) -> Result<(), BuildError> {
    let mut registry = registry.borrow_mut();
    if registry.operators.iter().any(|existing| existing == name) {
        return Err(BuildError::DuplicateName(name.to_owned()));
    }
    registry.operators.push(name.to_owned());
    Ok(())
}

/// A stream of records of type `T`, flowing in batches.
pub struct DataStream<'scope, T> {
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    ctx: TaskContext,
    registry: Rc<RefCell<Registry<'scope>>>,
}

/// The same stream, for one more consumer (another sink, say): every consumer
/// gets every record.
impl<'scope, T: Clone + 'static> Clone for DataStream<'scope, T> {
    fn clone(&self) -> Self {
        DataStream {
            stream: self.stream.clone(),
            ctx: self.ctx.clone(),
            registry: Rc::clone(&self.registry),
        }
    }
}

impl<'scope, T: ExchangeData + Clone> DataStream<'scope, T> {
    fn with<U>(&self, stream: Stream<'scope, u64, Vec<Item<U>>>) -> DataStream<'scope, U> {
        DataStream {
            stream,
            ctx: self.ctx.clone(),
            registry: Rc::clone(&self.registry),
        }
    }

    /// Transforms each record.
    pub fn map<U: ExchangeData + Clone>(
        self,
        mut f: impl FnMut(T) -> U + 'static,
    ) -> DataStream<'scope, U> {
        let stream = per_record(self.stream.clone(), "Map", move |record, out| {
            out.push(Item::Record(f(record)))
        });
        self.with(stream)
    }

    /// Keeps the records for which `f` holds.
    pub fn filter(self, mut f: impl FnMut(&T) -> bool + 'static) -> DataStream<'scope, T> {
        let stream = per_record(self.stream.clone(), "Filter", move |record, out| {
            if f(&record) {
                out.push(Item::Record(record));
            }
        });
        self.with(stream)
    }

    /// Turns each record into any number of records.
    pub fn flat_map<U, I>(self, mut f: impl FnMut(T) -> I + 'static) -> DataStream<'scope, U>
    where
        U: ExchangeData + Clone,
        I: IntoIterator<Item = U>,
    {
        let stream = per_record(self.stream.clone(), "FlatMap", move |record, out| {
            out.extend(f(record).into_iter().map(Item::Record))
        });
        self.with(stream)
    }

    /// Merges this stream with `other`.
    pub fn union(self, other: DataStream<'scope, T>) -> DataStream<'scope, T> {
        let stream = item::union(self.stream.clone(), other.stream);
        self.with(stream)
    }

    /// The stream, with its progress observed for the sources' backpressure.
    fn observed(&self) -> Stream<'scope, u64, Vec<Item<T>>> {
        self.stream
            .clone()
            .probe_with(&self.registry.borrow().progress)
    }

    /// Partitions the stream by `key`: the keyed operators that follow see every
    /// record of a key on the same subtask, with that key's state.
    pub fn key_by<K, F>(self, key: F) -> KeyedStream<'scope, T, F>
    where
        K: Serialize + 'static,
        F: Fn(&T) -> K + Clone + 'static,
    {
        KeyedStream { input: self, key }
    }

    /// Hands each batch to `sink(epoch, batch)` on the worker that holds it. Output is
    /// at least once: after a failure, epochs after the restored checkpoint are
    /// replayed.
    pub fn sink(self, mut sink: impl FnMut(u64, Vec<T>) + 'static) {
        let control = self.ctx.control.clone();
        let series = OperatorLabel::new("sink", self.ctx.subtask);
        let stream = self.observed();
        stream.sink(Local, "Sink", move |(input, _frontier)| {
            input.for_each_stamp(|stamp, batches| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                for batch in batches {
                    let records: Vec<T> = batch
                        .drain(..)
                        .filter_map(|item| match item {
                            Item::Record(record) => Some(record),
                            Item::Watermark(_) => None,
                        })
                        .collect();
                    control.add_records_out(&series, records.len() as u64);
                    if !records.is_empty() {
                        sink(epoch, records);
                    }
                }
            });
        });
    }

    /// Writes `format(record)` lines into files in the folder at `url` (`file://`
    /// or `s3://`), exactly once: an epoch's output becomes visible (as
    /// `part-<epoch>-<subtask>.txt`) when the checkpoint covering it completes.
    pub fn sink_files(
        self,
        name: &str,
        url: &str,
        format: impl FnMut(&T, &mut String) + 'static,
    ) -> Result<(), BuildError> {
        register(&self.registry, name)?;
        let acks = exactly_once_file_sink(self.observed(), &self.ctx, name, url, format).map_err(
            |source| BuildError::Sink {
                operator: name.to_owned(),
                source: Box::new(source),
            },
        )?;
        self.registry.borrow_mut().acks.push(acks);
        Ok(())
    }

    /// Writes `serialize(record)` to a Kafka topic. At least once
    /// ([`Delivery::AtLeastOnce`](crate::connectors::kafka::Delivery)): a checkpoint
    /// completes only when every record before it has been delivered, so after a
    /// failure the records since the restored checkpoint are written again. Exactly
    /// once: in transactions committed when their checkpoints complete.
    pub fn sink_kafka(
        self,
        name: &str,
        config: KafkaSinkConfig,
        serialize: impl FnMut(&T) -> KafkaOutput + 'static,
    ) -> Result<(), BuildError> {
        register(&self.registry, name)?;
        let stream = self.observed();
        let acks = match config.delivery {
            Delivery::AtLeastOnce => {
                at_least_once_kafka_sink(stream, &self.ctx, name, config, serialize)
            }
            // Its acknowledgements hold back while its records wait for a
            // transaction slot (checkpoints completing slowly): observed, so the
            // sources hold back too rather than fill its memory.
            Delivery::ExactlyOnce => {
                exactly_once_kafka_sink(stream, &self.ctx, name, config, serialize)
                    .probe_with(&self.registry.borrow().progress)
            }
        };
        self.registry.borrow_mut().acks.push(acks);
        Ok(())
    }

    /// Parses each record with `parse`, e.g.
    /// `|record: &KafkaRecord| Format::Json.decode_present(record.value.as_deref())`;
    /// a record that does not parse follows `on_malformed`. `name` names the step in
    /// errors, metrics and dead-letter headers; a dead-letter topic is written by the
    /// sink operator `<name>-dead-letters`, at least once.
    pub fn parse<U: ExchangeData + Clone>(
        self,
        name: &str,
        mut parse: impl FnMut(&T) -> Result<U, FormatError> + 'static,
        on_malformed: OnMalformed,
    ) -> Result<DataStream<'scope, U>, BuildError>
    where
        T: InputRecord,
    {
        let ctx = self.ctx.clone();
        let operator = name.to_owned();
        let series = OperatorLabel::new(name, ctx.subtask);
        let policy = on_malformed.clone();
        let parsed = per_record(
            self.stream.clone(),
            "Parse",
            move |record: T, out| match parse(&record) {
                Ok(value) => out.push(Item::Record(Ok::<U, KafkaOutput>(value))),
                Err(error) => match &policy {
                    OnMalformed::Fail => {
                        let message = failure_message(&record, &operator, &error);
                        ctx.control.record_failure(message.clone());
                        panic!("{message}");
                    }
                    OnMalformed::Skip => ctx.control.add_malformed_record(&series),
                    OnMalformed::DeadLetter(_) => out.push(Item::Record(Err(dead_letter(
                        &record,
                        &operator,
                        &error.to_string(),
                    )))),
                },
            },
        );
        let parsed = self.with(parsed);
        if let OnMalformed::DeadLetter(config) = on_malformed {
            let refused = self.with(parsed.stream.clone());
            refused.flat_map(Result::err).sink_kafka(
                &format!("{name}-dead-letters"),
                config,
                Clone::clone,
            )?;
        }
        Ok(parsed.flat_map(Result::ok))
    }

    /// The worker's view of the job (subtask, settings, control).
    pub fn context(&self) -> &TaskContext {
        &self.ctx
    }

    /// The underlying timely stream (records and watermarks), for operators the API
    /// does not offer yet.
    pub fn timely(&self) -> &Stream<'scope, u64, Vec<Item<T>>> {
        &self.stream
    }
}

impl<'scope, T: ExchangeData + Clone> DataStream<'scope, T> {
    /// Adds the keyed operator `name` running `logic`, records routed by `route`.
    fn keyed<O, L>(
        self,
        name: &str,
        route: impl Fn(&T) -> Vec<u8> + 'static,
        logic: L,
    ) -> Result<DataStream<'scope, O>, BuildError>
    where
        O: ExchangeData + Clone,
        L: KeyedLogic<T, O>,
    {
        let partitioning = self.ctx.partitioning();
        self.keyed_by_subtask(
            name,
            move |record: &T| partitioning.subtask_of_key(&route(record)),
            logic,
        )
    }

    /// Adds the keyed operator `name` running `logic`, each record sent to subtask
    /// `subtask_of(record)`, which must own the key groups of its keys.
    pub(crate) fn keyed_by_subtask<O, L>(
        self,
        name: &str,
        subtask_of: impl Fn(&T) -> u32 + 'static,
        logic: L,
    ) -> Result<DataStream<'scope, O>, BuildError>
    where
        O: ExchangeData + Clone,
        L: KeyedLogic<T, O>,
    {
        register(&self.registry, name)?;
        let (stream, acks) =
            keyed_operator(self.stream.clone(), &self.ctx, name, subtask_of, logic).map_err(
                |source| BuildError::State {
                    operator: name.to_owned(),
                    source,
                },
            )?;
        self.registry.borrow_mut().acks.push(acks);
        let stream = {
            let progress = &self.registry.borrow().progress;
            stream.probe_with(progress)
        };
        Ok(self.with(stream))
    }
}

/// A stream partitioned by key.
pub struct KeyedStream<'scope, T, F> {
    input: DataStream<'scope, T>,
    key: F,
}

impl<'scope, T, K, F> KeyedStream<'scope, T, F>
where
    T: ExchangeData + Clone,
    K: Serialize + Clone + ExchangeData + 'static,
    F: Fn(&T) -> K + Clone + 'static,
{
    /// The stateful operator `name`: `logic(key, record, state, output)` runs for each
    /// record with its key's value state (`None` when absent; set it to `None` to
    /// delete it). State is checkpointed and restored at any parallelism.
    pub fn process<S, O>(
        self,
        name: &str,
        logic: impl FnMut(&K, T, &mut Option<S>, &mut Vec<O>) + 'static,
    ) -> Result<DataStream<'scope, O>, BuildError>
    where
        S: Serialize + DeserializeOwned + 'static,
        O: ExchangeData + Clone,
    {
        let route = self.key.clone();
        let logic = ValueProcess::new(self.key, logic);
        self.input
            .keyed(name, move |record| encode_key(&route(record)), logic)
    }

    /// The keyed process function `name`: `function.process` runs for each record
    /// and `function.on_timer` for each timer the watermark reaches, with the key's
    /// value, map and list state ([`KeyState`](crate::exec::KeyState)).
    pub fn process_function<O>(
        self,
        name: &str,
        function: impl KeyedFunction<K, T, O>,
    ) -> Result<DataStream<'scope, O>, BuildError>
    where
        K: DeserializeOwned,
        O: ExchangeData + Clone,
    {
        let route = self.key.clone();
        let logic = FunctionLogic::new(self.key, function);
        self.input
            .keyed(name, move |record| encode_key(&route(record)), logic)
    }

    /// Groups the stream into event-time windows of `kind`, using each record's
    /// `timestamp` (milliseconds). The source must produce watermarks
    /// ([`Pipeline::source_with_event_times`]).
    pub fn window(
        self,
        kind: WindowKind,
        timestamp: impl Fn(&T) -> EventTime + 'static,
    ) -> WindowedStream<'scope, T, F> {
        WindowedStream {
            keyed: self,
            kind,
            timestamp: Box::new(timestamp),
            allowed_lateness: Duration::ZERO,
        }
    }

    /// The running count of records per key: emits `(key, count)` for every record.
    pub fn count(self, name: &str) -> Result<DataStream<'scope, (K, u64)>, BuildError> {
        self.process(name, |key: &K, _record, count: &mut Option<u64>, out| {
            let next = count.unwrap_or(0) + 1;
            *count = Some(next);
            out.push((key.clone(), next));
        })
    }

    /// The running reduction of records per key: emits `(key, reduced)` for every
    /// record, where `reduced = reduce(previous, record)`.
    pub fn reduce(
        self,
        name: &str,
        mut reduce: impl FnMut(&T, T) -> T + 'static,
    ) -> Result<DataStream<'scope, (K, T)>, BuildError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.process(
            name,
            move |key: &K, record: T, state: &mut Option<T>, out| {
                let next = match state.take() {
                    Some(previous) => reduce(&previous, record),
                    None => record,
                };
                out.push((key.clone(), next.clone()));
                *state = Some(next);
            },
        )
    }
}

/// A keyed stream grouped into event-time windows.
pub struct WindowedStream<'scope, T, F> {
    keyed: KeyedStream<'scope, T, F>,
    kind: WindowKind,
    timestamp: Box<dyn Fn(&T) -> EventTime>,
    allowed_lateness: Duration,
}

impl<'scope, T, K, F> WindowedStream<'scope, T, F>
where
    T: ExchangeData + Clone,
    K: Serialize + DeserializeOwned + Clone + ExchangeData + 'static,
    F: Fn(&T) -> K + Clone + 'static,
{
    /// Keeps fired tumbling and hopping windows for `lateness` more event time: a
    /// late record in that time updates its window and emits it again.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// The windowed aggregation `name`: each window's records folded into an
    /// accumulator (`init`, `add`; `merge` joins the accumulators of sessions that
    /// grow together), emitted as a [`WindowResult`] when the watermark passes the
    /// window's end.
    pub fn aggregate<A>(
        self,
        name: &str,
        init: impl Fn() -> A + 'static,
        add: impl Fn(&mut A, &T) + 'static,
        merge: impl Fn(A, A) -> A + 'static,
    ) -> Result<DataStream<'scope, WindowResult<K, A>>, BuildError>
    where
        A: ExchangeData + Serialize + DeserializeOwned + Clone,
    {
        let input = self.keyed.input;
        let key = self.keyed.key;
        let route = key.clone();
        let logic = WindowLogic::new(
            name,
            key,
            self.timestamp,
            self.kind,
            self.allowed_lateness,
            Aggregation {
                init: Box::new(init),
                add: Box::new(add),
                merge: Box::new(merge),
            },
            input.ctx.operator_metrics(name),
        );
        input.keyed(name, move |record| encode_key(&route(record)), logic)
    }

    /// The number of records per window.
    pub fn count(self, name: &str) -> Result<DataStream<'scope, WindowResult<K, u64>>, BuildError> {
        self.aggregate(name, || 0, |count, _| *count += 1, |a, b| a + b)
    }
}
