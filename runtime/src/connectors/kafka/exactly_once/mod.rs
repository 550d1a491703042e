//! The exactly-once Kafka sink: two-phase commit tied to checkpoints.
//!
//! The records of the epochs up to checkpoint epoch `C` go into one Kafka
//! transaction, which also commits the marker offset `C` for a group named after
//! its transactional id and the run that opened it (`<id>.<run>`: epochs restart
//! with every run, so a marker of another run — an earlier lineage of a redeployed
//! job, or the abandoned future of a restored older savepoint — says nothing about
//! this run's transactions). When the input passes `C` the transaction is
//! *prepared*: flushed, its records kept in a file beside the checkpoints
//! (written on the I/O runtime; the sink acknowledges `C` once it is written),
//! and listed in the sink's snapshot of `C`. Once checkpoint `C` completes, it
//! is committed.
//!
//! librdkafka cannot resume a transaction another producer opened, so recovery does
//! not finish a prepared transaction: it fences the transactional id (which aborts
//! whatever was left open), reads the marker, and — if the transaction of a
//! completed checkpoint never committed — sends the kept records again in a new
//! transaction with the marker. Transactions of checkpoints that never completed
//! are aborted by the fencing and never re-sent.
//!
//! Transactional ids are `<prefix>-<subtask>-<slot>`, a few slots per subtask so
//! that records of the next checkpoint flow while the last one awaits its commit;
//! the prefix names the job by namespace and name, so same-named jobs of two
//! namespaces never fence each other. When every slot waits for its checkpoint
//! (checkpoints completing slowly), records of the next checkpoint are held in
//! memory and its acknowledgement with them; the worker thread never waits, since
//! the checkpoint it would wait for may need another operator of the same thread.
//! Every parallelism the sink ever ran at is recorded beside the checkpoints, and
//! the highest in Kafka (a group's offset, with the transactional ids), so a
//! restore at any parallelism, and a redeploy with new state, fences every id that
//! may hold an open transaction.
//!
//! This module is the sink operator and its transactions; `names` names what it
//! keeps (ids, groups, files), `recovery` finishes what earlier runs left.

mod names;
mod recovery;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::scheduling::SyncActivator;

use self::names::{default_prefix, marker_group, records_file_name, sink_folder, transactional_id};
use self::recovery::transactions_to_finish;
use super::sink::{DeliveryErrors, KafkaOutput, KafkaSinkConfig, fail_now, send};
use crate::checkpoint::{RunId, SnapshotAck, SnapshotId, StorageError, SubtaskSnapshot};
use crate::connectors::kafka::retry::with_retries;
use crate::exec::context::TaskContext;
use crate::exec::control::OperatorLabel;
use crate::exec::item::Item;
use crate::state::codec;

/// Transactions one subtask may have open or prepared at once.
pub const SLOTS_PER_SUBTASK: u32 = 4;

/// Slots whose producers are made when the sink starts, side by side (the
/// others when first needed): one transaction open while the last one awaits
/// its commit. Making a producer waits for the broker (`init_transactions`,
/// hundreds of milliseconds), which held up the first checkpoints' records when
/// each was made on first use.
const SLOTS_AT_START: u32 = 2;

/// How long a transaction may stay open before the brokers abort it: longer than
/// the longest recovery (a restart, fencing, re-sending one checkpoint's records).
/// It must not exceed the brokers' `transaction.max.timeout.ms` (15 minutes by
/// default).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long transactional calls (init, commit, offsets) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a sink with prepared transactions looks whether their checkpoints
/// completed.
const COMPLETION_POLL: Duration = Duration::from_millis(50);

/// A prepared transaction, as the sink's snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Prepared {
    /// Its transactional id.
    transactional_id: String,
    /// The run that opened it, which names its marker group with the id (the
    /// legacy run for state written before runs existed).
    #[serde(default)]
    run: RunId,
    /// The checkpoint epoch it belongs to (the marker offset).
    epoch: u64,
    /// Where its records are kept, under the job's folder.
    records: String,
}

/// The sink's non-keyed state in a checkpoint, per subtask.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SinkState {
    /// The subtask it belongs to.
    subtask: u32,
    /// Prepared transactions not yet known to be committed, oldest first.
    prepared: Vec<Prepared>,
}

/// One producer of the pool, with the transaction it holds.
struct Slot {
    transactional_id: String,
    producer: BaseProducer<DeliveryErrors>,
    group: ConsumerGroupMetadata,
    /// The checkpoint epoch of its open or prepared transaction.
    state: SlotState,
    /// Records were sent since the producer last flushed.
    unflushed: bool,
    /// The checkpoint epoch of its last prepared transaction and the bytes of
    /// the records it kept (see [`open_transaction`]).
    last_kept: Option<(u64, usize)>,
}

enum SlotState {
    Idle,
    Open { epoch: u64, records: KeptRecords },
    Prepared(Prepared),
}

/// The records sent in an open transaction, encoded as they are sent: the
/// bytes of a `Vec<KafkaOutput>` in the state format, which is what recovery
/// reads back (a sequence is its length, as a `u64`, then its elements).
#[derive(Debug, Default)]
struct KeptRecords {
    count: u64,
    /// The encoded records, after 8 bytes left for the count.
    bytes: Vec<u8>,
}

impl KeptRecords {
    /// Records kept in a buffer of `capacity` bytes to start with.
    fn with_capacity(capacity: usize) -> Self {
        Self {
            count: 0,
            bytes: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, record: &KafkaOutput) {
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(&[0; 8]);
        }
        codec::append_bytes(&mut self.bytes, record)
            .expect("records encode: their fields know their length");
        self.count += 1;
    }

    /// The encoded `Vec<KafkaOutput>`.
    fn into_bytes(mut self) -> Vec<u8> {
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(&[0; 8]);
        }
        self.bytes[..8].copy_from_slice(&self.count.to_le_bytes());
        self.bytes
    }
}

/// A kept-records file written, or why not: its checkpoint epoch and the result.
type Written = (u64, Result<(), StorageError>);

/// Writes the kept records of prepared transactions to object storage on the
/// I/O runtime, one file at a time in the order queued, so the worker goes on
/// with the next checkpoint's records meanwhile (the write took 10–200 ms per
/// second of records on the worker thread).
struct RecordsWriter {
    requests: tokio::sync::mpsc::UnboundedSender<(u64, String, Vec<u8>)>,
    results: std::sync::mpsc::Receiver<Written>,
}

impl RecordsWriter {
    /// Starts the writing task; `activator` wakes the sink when a write ends.
    fn start(ctx: &TaskContext, activator: SyncActivator) -> Self {
        let (requests, mut incoming) =
            tokio::sync::mpsc::unbounded_channel::<(u64, String, Vec<u8>)>();
        let (done, results) = std::sync::mpsc::channel();
        let storage = ctx.storage.clone();
        ctx.io.spawn(async move {
            while let Some((epoch, file, bytes)) = incoming.recv().await {
                let result = storage.put_object(&file, bytes).await;
                if done.send((epoch, result)).is_err() {
                    break;
                }
                let _ = activator.activate();
            }
        });
        Self { requests, results }
    }

    /// Queues the kept records of checkpoint `epoch`'s transaction.
    fn write(&self, epoch: u64, file: String, bytes: Vec<u8>) -> Result<(), String> {
        self.requests
            .send((epoch, file, bytes))
            .map_err(|_| Self::STOPPED.to_owned())
    }

    /// The writes ended since the last call, in the order queued; an error when
    /// the writing task is gone (it ends only with this writer otherwise), as
    /// its checkpoints would never be acknowledged.
    fn finished(&self) -> Result<Vec<Written>, String> {
        let mut written = Vec::new();
        loop {
            match self.results.try_recv() {
                Ok(result) => written.push(result),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(written),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(Self::STOPPED.to_owned());
                }
            }
        }
    }

    const STOPPED: &str = "the task writing kept records stopped";
}

/// A checkpoint's acknowledgement, given once its kept records are written.
struct PendingAck {
    epoch: u64,
    ack: SnapshotAck,
    written: bool,
}

/// Talks to Kafka for one subtask of the sink.
struct Transactions {
    ctx: TaskContext,
    operator: String,
    config: KafkaSinkConfig,
    prefix: String,
    /// The prefix a job restored from state of format 1 used when it differs (ids
    /// did not name the namespace then): fenced too, once.
    earlier_prefix: Option<String>,
}

impl Transactions {
    fn fail(&self, error: impl std::fmt::Display) -> ! {
        fail_now(&self.ctx, &self.operator, &self.config, &error.to_string())
    }

    /// A transactional producer for `id`, its previous instances fenced and their
    /// open transaction aborted.
    fn producer(&self, id: &str) -> BaseProducer<DeliveryErrors> {
        let producer: BaseProducer<DeliveryErrors> = self
            .config
            .connection
            .client_config([
                ("client.id", format!("{}-{id}", self.config.client_id)),
                ("transactional.id", id.to_owned()),
                (
                    "transaction.timeout.ms",
                    TRANSACTION_TIMEOUT.as_millis().to_string(),
                ),
                ("partitioner", self.config.partitioner.clone()),
                ("linger.ms", "5".to_owned()),
            ])
            .create_with_context(DeliveryErrors::default())
            .unwrap_or_else(|error: KafkaError| {
                self.fail(format!("cannot create a producer: {error}"))
            });
        producer
            .init_transactions(CALL_TIMEOUT)
            .unwrap_or_else(|error| {
                self.fail(format!("cannot initialize transactional id {id}: {error}"))
            });
        producer
    }

    /// A consumer of the marker group `group` (never joined).
    fn marker_consumer(&self, group: &str) -> BaseConsumer {
        self.config
            .connection
            .client_config([
                ("group.id", group.to_owned()),
                (
                    "client.id",
                    format!("{}-{group}-marker", self.config.client_id),
                ),
                ("enable.auto.commit", "false".to_owned()),
            ])
            .create()
            .unwrap_or_else(|error: KafkaError| {
                self.fail(format!("cannot create a consumer: {error}"))
            })
    }

    fn marker_partition(&self, epoch: Option<u64>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        let offset = epoch.map_or(Offset::Invalid, |epoch| Offset::Offset(epoch as i64));
        list.add_partition_offset(&self.config.topic, 0, offset)
            .expect("a valid offset");
        list
    }

    /// The newest checkpoint epoch whose transaction committed with marker `group`.
    fn committed_epoch(&self, group: &str) -> Option<u64> {
        let consumer = self.marker_consumer(group);
        // A group's coordinator may be loading or moving (NotCoordinator): retried.
        let committed = with_retries(&self.config.connection.name, || {
            consumer.committed_offsets(self.marker_partition(None), CALL_TIMEOUT)
        })
        .unwrap_or_else(|error| self.fail(format!("cannot read the marker {group}: {error}")));
        committed
            .find_partition(&self.config.topic, 0)
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) if offset >= 0 => Some(offset as u64),
                _ => None,
            })
    }

    fn run<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.ctx.io.block_on(future)
    }

    /// Deletes the job's copy of committed records (the object store retries
    /// transient errors). Once the transaction's marker has expired, a copy left
    /// behind reads as a transaction that never committed, and a restore of a
    /// savepoint would send it again; recovery deletes it at the next start.
    fn delete_records(&self, relative: &str) {
        if let Err(error) = self.run(self.ctx.storage.delete_object(relative)) {
            tracing::warn!(%error, records = relative, "cannot delete kept records of a committed transaction; they stay behind");
        }
    }

    /// The slots `0..count`, their producers made side by side.
    fn new_slots(&self, count: u32) -> Vec<Slot> {
        std::thread::scope(|scope| {
            let making: Vec<_> = (0..count)
                .map(|slot| scope.spawn(move || self.new_slot(slot)))
                .collect();
            making
                .into_iter()
                .map(|made| {
                    made.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    fn new_slot(&self, slot: u32) -> Slot {
        let id = transactional_id(&self.prefix, self.ctx.subtask, slot);
        let producer = self.producer(&id);
        let group = self
            .marker_consumer(&marker_group(&id, self.ctx.run.id))
            .group_metadata()
            .expect("a consumer with a group id has group metadata");
        Slot {
            transactional_id: id,
            producer,
            group,
            state: SlotState::Idle,
            unflushed: false,
            last_kept: None,
        }
    }

    /// Prepares the open transaction of `slot`: the marker, a flush, and the
    /// kept records queued on `writer` (the checkpoint's acknowledgement waits
    /// for their write). Returns whether there was an open transaction.
    fn prepare(&self, slot: &mut Slot, writer: &RecordsWriter) -> bool {
        let SlotState::Open { epoch, records } =
            std::mem::replace(&mut slot.state, SlotState::Idle)
        else {
            return false;
        };
        let started = Instant::now();
        slot.producer
            .send_offsets_to_transaction(
                &self.marker_partition(Some(epoch)),
                &slot.group,
                CALL_TIMEOUT,
            )
            .unwrap_or_else(|error| self.fail(format!("marker: {error}")));
        let marked = Instant::now();
        slot.producer
            .flush(CALL_TIMEOUT)
            .unwrap_or_else(|error| self.fail(format!("flush: {error}")));
        tracing::debug!(
            operator = self.operator,
            subtask = self.ctx.subtask,
            epoch,
            marker_ms = (marked - started).as_secs_f64() * 1e3,
            flush_ms = marked.elapsed().as_secs_f64() * 1e3,
            "transaction prepared"
        );
        if let Some(error) = slot.producer.context().take() {
            self.fail(error);
        }
        let checkpoint = SnapshotId {
            run: self.ctx.run.id,
            epoch,
        };
        let file = format!(
            "{}/{}",
            sink_folder(&self.operator),
            records_file_name(&checkpoint, self.ctx.subtask, &slot.transactional_id)
        );
        let bytes = records.into_bytes();
        slot.last_kept = Some((epoch, bytes.len()));
        writer
            .write(epoch, file.clone(), bytes)
            .unwrap_or_else(|error| self.fail(error));
        slot.state = SlotState::Prepared(Prepared {
            transactional_id: slot.transactional_id.clone(),
            run: self.ctx.run.id,
            epoch,
            records: file,
        });
        true
    }

    fn commit(&self, slot: &mut Slot) {
        let SlotState::Prepared(prepared) = std::mem::replace(&mut slot.state, SlotState::Idle)
        else {
            return;
        };
        // Tests hold back the commits that follow a stop request with it
        // (`kafka-sink-commit-after-stop=sleep(ms)`), so the stop's savepoint is
        // copied before the job commits its last transactions.
        fail::fail_point!(
            "kafka-sink-commit-after-stop",
            self.ctx.control.stop_requested(),
            |_| {}
        );
        let started = Instant::now();
        slot.producer
            .commit_transaction(CALL_TIMEOUT)
            .unwrap_or_else(|error| {
                self.fail(format!("commit of checkpoint {}: {error}", prepared.epoch))
            });
        let committed = Instant::now();
        self.delete_records(&prepared.records);
        tracing::debug!(
            operator = self.operator,
            subtask = self.ctx.subtask,
            epoch = prepared.epoch,
            commit_ms = (committed - started).as_secs_f64() * 1e3,
            delete_ms = committed.elapsed().as_secs_f64() * 1e3,
            "transaction committed"
        );
    }

    /// The newest completed checkpoint of this run, if it is at or after `oldest`
    /// (the oldest prepared transaction's), as the coordinator's broadcast told
    /// this process.
    fn completed_up_to(&self, oldest: u64) -> Option<u64> {
        self.ctx
            .control
            .completed_checkpoint()
            .filter(|&completed| completed >= oldest)
    }
}

/// Builds the exactly-once Kafka sink `operator`. Returns its snapshot
/// acknowledgements.
pub fn exactly_once_kafka_sink<'scope, T: 'static>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    ctx: &TaskContext,
    operator: &str,
    config: KafkaSinkConfig,
    mut serialize: impl FnMut(&T) -> KafkaOutput + 'static,
) -> Stream<'scope, u64, Vec<SnapshotAck>> {
    let found = transactions_to_finish(ctx, operator)
        .unwrap_or_else(|error| fail_now(ctx, operator, &config, &error));
    let prefix = config.transactional_id_prefix.clone().unwrap_or_else(|| {
        default_prefix(
            ctx.settings.namespace.as_deref(),
            &ctx.settings.name,
            operator,
        )
    });
    let restored_format_1 = ctx
        .restore
        .as_ref()
        .is_some_and(|restore| restore.manifest.format_version == 1);
    let earlier_prefix = (restored_format_1 && config.transactional_id_prefix.is_none())
        .then(|| default_prefix(None, &ctx.settings.name, operator))
        .filter(|earlier| *earlier != prefix);
    let kafka = Transactions {
        ctx: ctx.clone(),
        operator: operator.to_owned(),
        config,
        prefix,
        earlier_prefix,
    };
    kafka.recover(&found);
    let first_slots = kafka.new_slots(SLOTS_AT_START);

    let mut builder = OperatorBuilder::new(
        format!("Kafka exactly-once sink {operator}"),
        stream.scope(),
    );
    let activator = stream
        .scope()
        .activator_for(builder.operator_info().address);
    let writer = RecordsWriter::start(
        ctx,
        stream
            .scope()
            .worker()
            .sync_activator_for(builder.operator_info().address.to_vec()),
    );
    let mut input = builder.new_input(stream, Local);
    let (mut ack_output, acks) = builder.new_output::<Vec<SnapshotAck>>();
    let ctx = ctx.clone();
    let operator = operator.to_owned();
    let series = OperatorLabel::new(&operator, ctx.subtask);

    builder.build(move |capabilities| {
        let mut ack_cap = capabilities.into_iter().next().map(|mut cap| {
            cap.downgrade(&ctx.start_epoch);
            cap
        });
        let mut slots: Vec<Slot> = first_slots;
        // The slot holding the open transaction of each checkpoint epoch.
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        // Records of checkpoint epochs for which no slot was free, oldest first.
        let mut waiting: BTreeMap<u64, Vec<KafkaOutput>> = BTreeMap::new();
        let mut next_epoch = ctx.start_epoch;
        let mut last_poll = Instant::now();
        // Acknowledgements of prepared checkpoints, oldest first, given in order
        // once their kept records are written.
        let mut unacked: VecDeque<PendingAck> = VecDeque::new();

        move |frontiers| {
            input.for_each(|stamp, batch| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                let checkpoint = ctx.settings.next_checkpoint_epoch(epoch);
                let mut outputs = Vec::new();
                for item in batch.drain(..) {
                    if let Item::Record(record) = item {
                        outputs.push(serialize(&record));
                    }
                }
                ctx.control.add_records_out(&series, outputs.len() as u64);
                let slot = match open.get(&checkpoint) {
                    Some(&index) => Some(index),
                    // Records of a later checkpoint never pass those waiting.
                    None if waiting.is_empty() => open_transaction(&kafka, &mut slots, checkpoint)
                        .inspect(|&index| {
                            open.insert(checkpoint, index);
                        }),
                    None => None,
                };
                match slot {
                    Some(index) => {
                        kafka.flush_earlier(&mut slots, &open, checkpoint);
                        kafka.send_all(&mut slots[index], outputs);
                    }
                    None => waiting.entry(checkpoint).or_default().extend(outputs),
                }
            });
            for slot in &slots {
                slot.producer.poll(Duration::ZERO);
                if let Some(error) = slot.producer.context().take() {
                    kafka.fail(error);
                }
            }
            let frontier = frontiers[0].frontier().first().copied();
            // Prepared transactions of completed checkpoints: commit them. When the
            // input has ended (the job's final checkpoint is complete), commit now.
            let due = frontier.is_none() || last_poll.elapsed() >= COMPLETION_POLL;
            if due {
                last_poll = Instant::now();
                commit_completed(&kafka, &mut slots);
            }
            if frontier.is_none() {
                // The job ends after its final checkpoint completed, which every
                // process learns before it is told to shut down: nothing prepared
                // may be left. Should it be, say so (a restart commits it).
                let left: Vec<u64> = prepared_of(&slots).iter().map(|p| p.epoch).collect();
                if !left.is_empty() {
                    ctx.control.record_failure(format!(
                        "sink {operator}: the transactions of checkpoints {left:?} were not committed by the end of the job; a restart from the latest checkpoint commits them"
                    ));
                }
                let unsent: Vec<u64> = unacked.iter().map(|pending| pending.epoch).collect();
                if !unsent.is_empty() {
                    ctx.control.record_failure(format!(
                        "sink {operator}: checkpoints {unsent:?} were not acknowledged by the end of the job (their kept records were still being written)"
                    ));
                }
            }
            // Records that waited for a slot, oldest checkpoint first, as slots free.
            while let Some(entry) = waiting.first_entry() {
                let checkpoint = *entry.key();
                let Some(index) = open_transaction(&kafka, &mut slots, checkpoint) else {
                    break;
                };
                open.insert(checkpoint, index);
                kafka.flush_earlier(&mut slots, &open, checkpoint);
                kafka.send_all(&mut slots[index], entry.remove());
            }
            // Checkpoint epochs the input has passed: prepare and acknowledge them,
            // up to the first whose records still wait for a slot. Once the input has
            // ended the job is shutting down: its last checkpoint is acknowledged
            // already, and there is nothing more to acknowledge.
            if frontier.is_none() {
                ack_cap = None;
            }
            if let (Some(cap), Some(until)) = (ack_cap.as_mut(), frontier) {
                let held = waiting
                    .keys()
                    .next()
                    .map_or(until, |&first| first.min(until));
                while next_epoch < held {
                    let epoch = ctx.settings.next_checkpoint_epoch(next_epoch);
                    if epoch >= held {
                        break;
                    }
                    let writing = open
                        .remove(&epoch)
                        .is_some_and(|index| kafka.prepare(&mut slots[index], &writer));
                    let state = SinkState {
                        subtask: ctx.subtask,
                        prepared: prepared_of(&slots),
                    };
                    let awaits_commit = state.prepared.iter().any(|p| p.epoch == epoch);
                    let ack = SnapshotAck {
                        operator: operator.clone(),
                        epoch,
                        snapshot: SubtaskSnapshot {
                            subtask: ctx.subtask,
                            operator_state: Some(
                                serde_json::to_string(&state).expect("state serializes"),
                            ),
                            awaits_commit,
                            objects: state.prepared.iter().map(|p| p.records.clone()).collect(),
                            ..SubtaskSnapshot::default()
                        },
                        drained: None,
                    };
                    unacked.push_back(PendingAck {
                        epoch,
                        ack,
                        written: !writing,
                    });
                    next_epoch = epoch + 1;
                }
                let written = writer.finished().unwrap_or_else(|error| kafka.fail(error));
                for (epoch, result) in written {
                    result.unwrap_or_else(|error| kafka.fail(error));
                    unacked
                        .iter_mut()
                        .find(|pending| pending.epoch == epoch)
                        .expect("each write is of a checkpoint waiting for it")
                        .written = true;
                }
                while unacked.front().is_some_and(|pending| pending.written) {
                    let PendingAck { epoch, ack, .. } =
                        unacked.pop_front().expect("looked at above");
                    ack_output
                        .activate()
                        .give(&cap.delayed(&epoch), &mut vec![ack]);
                }
                let held = unacked
                    .front()
                    .map_or(held, |pending| pending.epoch.min(held));
                if held > *cap.time() {
                    cap.downgrade(&held);
                }
            }
            // Waiting for checkpoints to complete: look again soon, whether or not
            // input arrives (sources are held back while this sink holds back).
            let prepared_pending = slots
                .iter()
                .any(|slot| matches!(slot.state, SlotState::Prepared(_)));
            if prepared_pending || !waiting.is_empty() {
                activator.activate_after(COMPLETION_POLL);
            }
        }
    });
    acks
}

impl Transactions {
    /// Flushes the producers of the transactions open for checkpoints before
    /// `checkpoint`, so that what they were sent is in the topic before anything
    /// of a later checkpoint: each transaction has a producer of its own, and
    /// without this a later update of a key (an upsert) could land before an
    /// earlier one.
    fn flush_earlier(&self, slots: &mut [Slot], open: &BTreeMap<u64, usize>, checkpoint: u64) {
        for (_, &index) in open.range(..checkpoint) {
            let slot = &mut slots[index];
            if slot.unflushed {
                slot.producer
                    .flush(CALL_TIMEOUT)
                    .unwrap_or_else(|error| self.fail(format!("flush: {error}")));
                slot.unflushed = false;
            }
        }
    }

    /// Sends `records` in the open transaction of `slot`.
    fn send_all(&self, slot: &mut Slot, records: Vec<KafkaOutput>) {
        slot.unflushed |= !records.is_empty();
        let SlotState::Open { records: kept, .. } = &mut slot.state else {
            unreachable!("records go to an open slot")
        };
        for record in records {
            send(&slot.producer, &self.config.topic, &record)
                .unwrap_or_else(|error| self.fail(error));
            kept.push(&record);
        }
    }
}

/// The prepared transactions of `slots`, oldest first.
fn prepared_of(slots: &[Slot]) -> Vec<Prepared> {
    let mut prepared: Vec<Prepared> = slots
        .iter()
        .filter_map(|slot| match &slot.state {
            SlotState::Prepared(prepared) => Some(prepared.clone()),
            _ => None,
        })
        .collect();
    prepared.sort_by_key(|prepared| prepared.epoch);
    prepared
}

/// Commits the prepared transactions whose checkpoints have completed, oldest first.
fn commit_completed(kafka: &Transactions, slots: &mut [Slot]) {
    let prepared = prepared_of(slots);
    let Some(oldest) = prepared.first() else {
        return;
    };
    let Some(completed) = kafka.completed_up_to(oldest.epoch) else {
        return;
    };
    let mut ready: Vec<&mut Slot> = slots
        .iter_mut()
        .filter(|slot| matches!(&slot.state, SlotState::Prepared(p) if p.epoch <= completed))
        .collect();
    ready.sort_by_key(|slot| match &slot.state {
        SlotState::Prepared(p) => p.epoch,
        _ => 0,
    });
    for slot in ready {
        kafka.commit(slot);
    }
}

/// Begins the transaction of `checkpoint` on an idle slot (made if the pool is not
/// full) and returns the slot; `None` when every slot holds a transaction (the
/// records wait: this never blocks the worker thread). Its kept-records buffer
/// starts a little larger than the last prepared transaction's, of any slot
/// (grown by doubling, the buffer was copied and its fresh pages faulted in at
/// each step: 5–8 % of an exactly-once passthrough's samples).
fn open_transaction(kafka: &Transactions, slots: &mut Vec<Slot>, checkpoint: u64) -> Option<usize> {
    let last_kept = slots
        .iter()
        .filter_map(|slot| slot.last_kept)
        .max_by_key(|(epoch, _)| *epoch)
        .map_or(0, |(_, bytes)| bytes);
    let index = match slots
        .iter()
        .position(|slot| matches!(slot.state, SlotState::Idle))
    {
        Some(index) => index,
        None if (slots.len() as u32) < SLOTS_PER_SUBTASK => {
            slots.push(kafka.new_slot(slots.len() as u32));
            slots.len() - 1
        }
        None => return None,
    };
    let slot = &mut slots[index];
    slot.producer
        .begin_transaction()
        .unwrap_or_else(|error| kafka.fail(format!("begin: {error}")));
    slot.state = SlotState::Open {
        epoch: checkpoint,
        records: KeptRecords::with_capacity(last_kept + last_kept / 8),
    };
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records kept as they are sent are the bytes recovery decodes, the same as
    /// the whole list encoded at once (the format of files already written).
    #[test]
    fn kept_records_are_the_encoded_list_recovery_reads() {
        let records = vec![
            KafkaOutput {
                key: Some(b"k".to_vec()),
                value: Some(b"v1".to_vec()),
                headers: vec![("h".to_owned(), b"x".to_vec())],
                partition: Some(3),
            },
            KafkaOutput::default(),
        ];
        let mut kept = KeptRecords::default();
        for record in &records {
            kept.push(record);
        }
        let bytes = kept.into_bytes();
        assert_eq!(bytes, codec::to_bytes(&records).unwrap());
        let decoded: Vec<KafkaOutput> = codec::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, records);
        let none = KeptRecords::default().into_bytes();
        assert_eq!(none, codec::to_bytes(&Vec::<KafkaOutput>::new()).unwrap());
    }
}
