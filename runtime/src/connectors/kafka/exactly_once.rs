//! The exactly-once Kafka sink: two-phase commit tied to checkpoints.
//!
//! The records of the epochs up to checkpoint epoch `C` go into one Kafka
//! transaction, which also commits the marker offset `C` for a group named after
//! its transactional id. When the input passes `C` the transaction is *prepared*:
//! flushed, its records kept in a file beside the checkpoints, and listed in the
//! sink's snapshot of `C`. Once checkpoint `C` completes, it is committed.
//!
//! librdkafka cannot resume a transaction another producer opened, so recovery does
//! not finish a prepared transaction: it fences the transactional id (which aborts
//! whatever was left open), reads the marker, and — if the transaction of a
//! completed checkpoint never committed — sends the kept records again in a new
//! transaction with the marker. Transactions of checkpoints that never completed
//! are aborted by the fencing and never re-sent.
//!
//! Transactional ids are `<prefix>-<subtask>-<slot>`, a few slots per subtask so
//! that records of the next checkpoint flow while the last one awaits its commit.
//! Every parallelism the sink ever ran at is recorded beside the checkpoints, so a
//! restore at any parallelism fences every id that may hold an open transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::sink::{DeliveryErrors, KafkaOutput, KafkaSinkConfig, fail_now, send};
use crate::checkpoint::{SnapshotAck, SubtaskSnapshot};
use crate::exec::context::TaskContext;
use crate::exec::item::Item;

/// Transactions one subtask may have open or prepared at once.
pub const SLOTS_PER_SUBTASK: u32 = 4;

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
    /// Its transactional id (also the marker group).
    transactional_id: String,
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

/// The transactional id of `slot` of `subtask`.
fn transactional_id(prefix: &str, subtask: u32, slot: u32) -> String {
    format!("{prefix}-{subtask}-{slot}")
}

/// The folder under the job's folder that holds a sink's kept records and the
/// parallelisms it ran at.
fn sink_folder(operator: &str) -> String {
    format!("kafka-transactions/{operator}")
}

/// The parallelisms recorded in a sink folder's listing.
fn recorded_parallelisms(names: &[String]) -> BTreeSet<u32> {
    names
        .iter()
        .filter_map(|name| name.strip_prefix("parallelism-")?.parse().ok())
        .collect()
}

/// The old subtasks (of every parallelism in `parallelisms`) whose transactional ids
/// `subtask` of `parallelism` fences at start: each old subtask goes to exactly one
/// new one.
fn subtasks_to_fence(
    parallelisms: &BTreeSet<u32>,
    subtask: u32,
    parallelism: u32,
) -> BTreeSet<u32> {
    let most = parallelisms
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(parallelism);
    (0..most)
        .filter(|old| old % parallelism == subtask)
        .collect()
}

/// One producer of the pool, with the transaction it holds.
struct Slot {
    transactional_id: String,
    producer: BaseProducer<DeliveryErrors>,
    group: ConsumerGroupMetadata,
    /// The checkpoint epoch of its open or prepared transaction.
    state: SlotState,
}

enum SlotState {
    Idle,
    Open {
        epoch: u64,
        records: Vec<KafkaOutput>,
    },
    Prepared(Prepared),
}

/// Talks to Kafka for one subtask of the sink.
struct Transactions {
    ctx: TaskContext,
    operator: String,
    config: KafkaSinkConfig,
    prefix: String,
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

    /// A consumer of the marker group `id` (never joined).
    fn marker_consumer(&self, id: &str) -> BaseConsumer {
        self.config
            .connection
            .client_config([
                ("group.id", id.to_owned()),
                (
                    "client.id",
                    format!("{}-{id}-marker", self.config.client_id),
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

    /// The newest checkpoint epoch whose transaction committed under `id`.
    fn committed_epoch(&self, id: &str) -> Option<u64> {
        let consumer = self.marker_consumer(id);
        let committed = consumer
            .committed_offsets(self.marker_partition(None), CALL_TIMEOUT)
            .unwrap_or_else(|error| self.fail(format!("cannot read the marker of {id}: {error}")));
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

    /// Records that this sink runs at the job's parallelism, before any of its
    /// transactions opens, and returns every parallelism recorded so far.
    fn record_parallelism(&self) -> BTreeSet<u32> {
        let folder = sink_folder(&self.operator);
        let parallelism = self.ctx.partitioning().parallelism();
        let marker = format!("{folder}/parallelism-{parallelism}");
        self.run(self.ctx.storage.put_object(&marker, Vec::new()))
            .unwrap_or_else(|error| self.fail(error));
        let names = self
            .run(self.ctx.storage.list_folder(&folder))
            .unwrap_or_else(|error| self.fail(error));
        recorded_parallelisms(&names)
    }

    /// Finishes what the restored checkpoint left, for the old subtasks this subtask
    /// takes over: prepared transactions of completed checkpoints are committed
    /// (their records sent again if they never were), every other transaction any
    /// earlier run may have left open is aborted.
    fn recover(&self, restored: &[SinkState], restored_epoch: Option<u64>) {
        let parallelism = self.ctx.partitioning().parallelism();
        let subtask = self.ctx.subtask;
        let parallelisms = self.record_parallelism();
        let mine: Vec<&SinkState> = restored
            .iter()
            .filter(|state| state.subtask % parallelism == subtask)
            .collect();
        let mut finished = BTreeSet::new();
        for state in &mine {
            for prepared in &state.prepared {
                self.finish(prepared);
                finished.insert(prepared.transactional_id.clone());
            }
        }
        for old in subtasks_to_fence(&parallelisms, subtask, parallelism) {
            for slot in 0..SLOTS_PER_SUBTASK {
                let id = transactional_id(&self.prefix, old, slot);
                if !finished.contains(&id) {
                    drop(self.producer(&id));
                }
            }
            self.remove_unfinished_records(old, restored_epoch);
        }
    }

    /// Commits `prepared` unless its marker shows it committed: fences its id, then
    /// sends its kept records again with the marker in a new transaction.
    fn finish(&self, prepared: &Prepared) {
        let producer = self.producer(&prepared.transactional_id);
        if self
            .committed_epoch(&prepared.transactional_id)
            .is_some_and(|committed| committed >= prepared.epoch)
        {
            tracing::info!(id = %prepared.transactional_id, epoch = prepared.epoch, "transaction already committed");
        } else {
            let bytes = self
                .run(self.ctx.storage.get_object(&prepared.records))
                .unwrap_or_else(|error| self.fail(error));
            let records: Vec<KafkaOutput> = bincode::deserialize(&bytes).unwrap_or_else(|error| {
                self.fail(format!("kept records {}: {error}", prepared.records))
            });
            tracing::info!(
                id = %prepared.transactional_id,
                epoch = prepared.epoch,
                records = records.len(),
                "re-sending the records of a completed checkpoint"
            );
            producer
                .begin_transaction()
                .unwrap_or_else(|error| self.fail(format!("begin: {error}")));
            for record in &records {
                send(&producer, &self.config.topic, record)
                    .unwrap_or_else(|error| self.fail(error));
            }
            let group = self
                .marker_consumer(&prepared.transactional_id)
                .group_metadata()
                .expect("a consumer with a group id has group metadata");
            producer
                .send_offsets_to_transaction(
                    &self.marker_partition(Some(prepared.epoch)),
                    &group,
                    CALL_TIMEOUT,
                )
                .unwrap_or_else(|error| self.fail(format!("marker: {error}")));
            producer
                .commit_transaction(CALL_TIMEOUT)
                .unwrap_or_else(|error| self.fail(format!("commit: {error}")));
        }
        self.delete_records(&prepared.records);
    }

    /// Deletes the kept records of `old`'s transactions of checkpoints after the
    /// restored one: those checkpoints never completed.
    fn remove_unfinished_records(&self, old: u32, restored_epoch: Option<u64>) {
        let folder = sink_folder(&self.operator);
        let names = self
            .run(self.ctx.storage.list_folder(&folder))
            .unwrap_or_else(|error| self.fail(error));
        for name in names {
            let Some((epoch, subtask)) = records_file_owner(&name) else {
                continue;
            };
            if subtask == old && restored_epoch.is_none_or(|restored| epoch > restored) {
                self.delete_records(&format!("{folder}/{name}"));
            }
        }
    }

    fn delete_records(&self, relative: &str) {
        if let Err(error) = self.run(self.ctx.storage.delete_object(relative)) {
            tracing::warn!(%error, "cannot delete kept records; they stay behind");
        }
    }

    fn new_slot(&self, slot: u32) -> Slot {
        let id = transactional_id(&self.prefix, self.ctx.subtask, slot);
        let producer = self.producer(&id);
        let group = self
            .marker_consumer(&id)
            .group_metadata()
            .expect("a consumer with a group id has group metadata");
        Slot {
            transactional_id: id,
            producer,
            group,
            state: SlotState::Idle,
        }
    }

    /// Prepares the open transaction of `slot`: the marker, a flush, the records
    /// kept. Returns what the snapshot records.
    fn prepare(&self, slot: &mut Slot) {
        let SlotState::Open { epoch, records } =
            std::mem::replace(&mut slot.state, SlotState::Idle)
        else {
            return;
        };
        slot.producer
            .send_offsets_to_transaction(
                &self.marker_partition(Some(epoch)),
                &slot.group,
                CALL_TIMEOUT,
            )
            .unwrap_or_else(|error| self.fail(format!("marker: {error}")));
        slot.producer
            .flush(CALL_TIMEOUT)
            .unwrap_or_else(|error| self.fail(format!("flush: {error}")));
        if let Some(error) = slot.producer.context().take() {
            self.fail(error);
        }
        let file = format!(
            "{}/{}",
            sink_folder(&self.operator),
            records_file_name(epoch, self.ctx.subtask, &slot.transactional_id)
        );
        let bytes = bincode::serialize(&records).expect("records serialize");
        self.run(self.ctx.storage.put_object(&file, bytes))
            .unwrap_or_else(|error| self.fail(error));
        slot.state = SlotState::Prepared(Prepared {
            transactional_id: slot.transactional_id.clone(),
            epoch,
            records: file,
        });
    }

    fn commit(&self, slot: &mut Slot) {
        let SlotState::Prepared(prepared) = std::mem::replace(&mut slot.state, SlotState::Idle)
        else {
            return;
        };
        slot.producer
            .commit_transaction(CALL_TIMEOUT)
            .unwrap_or_else(|error| {
                self.fail(format!("commit of checkpoint {}: {error}", prepared.epoch))
            });
        self.delete_records(&prepared.records);
    }

    /// The newest completed checkpoint, if it is at or after `oldest` (the oldest
    /// prepared transaction's), as this process knows or the storage shows.
    fn completed_up_to(&self, oldest: u64) -> Option<u64> {
        let known = self
            .ctx
            .control
            .snapshots()
            .last_checkpoint
            .map(|checkpoint| checkpoint.epoch);
        if known.is_some_and(|known| known >= oldest) {
            return known;
        }
        // Another process's coordinator completed it: the newest manifest says so
        // (older ones may already be collected).
        let completed = self
            .run(self.ctx.storage.completed_checkpoints())
            .unwrap_or_else(|error| self.fail(error));
        completed.last().copied().filter(|&newest| newest >= oldest)
    }
}

/// The name of the file keeping the records of the transaction `id` of checkpoint
/// `epoch` of `subtask`.
fn records_file_name(epoch: u64, subtask: u32, id: &str) -> String {
    format!(
        "{epoch:020}-{subtask}-{}.records",
        id.rsplit('-').next().unwrap_or("0")
    )
}

/// The checkpoint epoch and subtask of a kept-records file.
fn records_file_owner(name: &str) -> Option<(u64, u32)> {
    let stem = name.strip_suffix(".records")?;
    let mut parts = stem.split('-');
    let epoch = parts.next()?.parse().ok()?;
    let subtask = parts.next()?.parse().ok()?;
    Some((epoch, subtask))
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
    let restored: Vec<SinkState> = ctx
        .restore
        .iter()
        .flat_map(|restore| restore.manifest.operator_states(operator))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| {
            fail_now(
                ctx,
                operator,
                &config,
                &format!("unreadable state in the restore point: {error}"),
            )
        });
    let restored_epoch = ctx.restore.as_ref().map(|restore| restore.manifest.epoch);
    let prefix = config
        .transactional_id_prefix
        .clone()
        .unwrap_or_else(|| format!("strom-{}-{operator}", ctx.settings.name));
    let kafka = Transactions {
        ctx: ctx.clone(),
        operator: operator.to_owned(),
        config,
        prefix,
    };
    kafka.recover(&restored, restored_epoch);

    let mut builder = OperatorBuilder::new(
        format!("Kafka exactly-once sink {operator}"),
        stream.scope(),
    );
    let mut input = builder.new_input(stream, Local);
    let (mut ack_output, acks) = builder.new_output::<Vec<SnapshotAck>>();
    let ctx = ctx.clone();
    let operator = operator.to_owned();

    builder.build(move |capabilities| {
        let mut ack_cap = capabilities.into_iter().next().map(|mut cap| {
            cap.downgrade(&ctx.start_epoch);
            cap
        });
        let mut slots: Vec<Slot> = Vec::new();
        // The slot holding the open transaction of each checkpoint epoch.
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        let mut next_epoch = ctx.start_epoch;
        let mut last_poll = Instant::now();

        move |frontiers| {
            input.for_each(|stamp, batch| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                let checkpoint = ctx.settings.next_checkpoint_epoch(epoch);
                let index = match open.get(&checkpoint) {
                    Some(&index) => index,
                    None => {
                        let index = idle_slot(&kafka, &mut slots);
                        let slot = &mut slots[index];
                        slot.producer
                            .begin_transaction()
                            .unwrap_or_else(|error| kafka.fail(format!("begin: {error}")));
                        slot.state = SlotState::Open {
                            epoch: checkpoint,
                            records: Vec::new(),
                        };
                        open.insert(checkpoint, index);
                        index
                    }
                };
                let slot = &mut slots[index];
                let SlotState::Open { records, .. } = &mut slot.state else {
                    unreachable!("an open slot")
                };
                let mut written = 0;
                for item in batch.drain(..) {
                    let Item::Record(record) = item else { continue };
                    let output = serialize(&record);
                    send(&slot.producer, &kafka.config.topic, &output).unwrap_or_else(|error| kafka.fail(error));
                    records.push(output);
                    written += 1;
                }
                ctx.control.add_records_out(&operator, written);
            });
            for slot in &slots {
                slot.producer.poll(Duration::ZERO);
                if let Some(error) = slot.producer.context().take() {
                    kafka.fail(error);
                }
            }
            let frontier = frontiers[0].frontier().first().copied();
            // Checkpoint epochs the input has passed: prepare and acknowledge them.
            // Once the input has ended the job is shutting down: its last checkpoint
            // is acknowledged already, and there is nothing more to acknowledge.
            if frontier.is_none() {
                ack_cap = None;
            }
            if let (Some(cap), Some(until)) = (ack_cap.as_mut(), frontier) {
                while next_epoch < until {
                    let epoch = ctx.settings.next_checkpoint_epoch(next_epoch);
                    if epoch >= until {
                        break;
                    }
                    if let Some(index) = open.remove(&epoch) {
                        kafka.prepare(&mut slots[index]);
                    }
                    let state = SinkState {
                        subtask: ctx.subtask,
                        prepared: prepared_of(&slots),
                    };
                    let ack = SnapshotAck {
                        operator: operator.clone(),
                        epoch,
                        snapshot: SubtaskSnapshot {
                            subtask: ctx.subtask,
                            operator_state: Some(serde_json::to_string(&state).expect("state serializes")),
                            ..SubtaskSnapshot::default()
                        },
                        drained: None,
                    };
                    ack_output.activate().give(&cap.delayed(&epoch), &mut vec![ack]);
                    next_epoch = epoch + 1;
                }
                if until > *cap.time() {
                    cap.downgrade(&until);
                }
            }
            // Prepared transactions of completed checkpoints: commit them. When the
            // input has ended (the job's final checkpoint is complete), commit now.
            let prepared = prepared_of(&slots);
            let due = frontier.is_none() || last_poll.elapsed() >= COMPLETION_POLL;
            if let (Some(oldest), true) = (prepared.first(), due) {
                last_poll = Instant::now();
                if let Some(completed) = kafka.completed_up_to(oldest.epoch) {
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
            }
        }
    });
    acks
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

/// An idle slot, made if there are fewer than the pool's size; otherwise waits for a
/// prepared transaction to commit.
fn idle_slot(kafka: &Transactions, slots: &mut Vec<Slot>) -> usize {
    loop {
        if let Some(index) = slots
            .iter()
            .position(|slot| matches!(slot.state, SlotState::Idle))
        {
            return index;
        }
        if (slots.len() as u32) < SLOTS_PER_SUBTASK {
            slots.push(kafka.new_slot(slots.len() as u32));
            return slots.len() - 1;
        }
        let prepared = prepared_of(slots);
        let Some(oldest) = prepared.first() else {
            kafka.fail("every transaction slot is open: checkpoints are not completing");
        };
        match kafka.completed_up_to(oldest.epoch) {
            Some(completed) => {
                for slot in slots.iter_mut() {
                    if matches!(&slot.state, SlotState::Prepared(p) if p.epoch <= completed) {
                        kafka.commit(slot);
                    }
                }
            }
            None => std::thread::sleep(COMPLETION_POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_old_subtask_is_fenced_by_exactly_one_new_one() {
        let recorded: BTreeSet<u32> = [2, 5, 1].into();
        for parallelism in 1..7 {
            let mut fenced: Vec<u32> = (0..parallelism)
                .flat_map(|subtask| subtasks_to_fence(&recorded, subtask, parallelism))
                .collect();
            fenced.sort_unstable();
            let most = parallelism.max(5);
            assert_eq!(fenced, (0..most).collect::<Vec<_>>(), "at {parallelism}");
        }
    }

    #[test]
    fn parallelisms_and_record_files_are_read_back_from_their_names() {
        let names = vec![
            "parallelism-2".to_owned(),
            "parallelism-5".to_owned(),
            records_file_name(40, 3, "strom-job-out-3-1"),
        ];
        assert_eq!(recorded_parallelisms(&names), [2, 5].into());
        assert_eq!(records_file_owner(&names[2]), Some((40, 3)));
        assert_eq!(records_file_owner("parallelism-2"), None);
    }
}
