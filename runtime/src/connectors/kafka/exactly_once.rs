//! The exactly-once Kafka sink: two-phase commit tied to checkpoints.
//!
//! The records of the epochs up to checkpoint epoch `C` go into one Kafka
//! transaction, which also commits the marker offset `C` for a group named after
//! its transactional id and the run that opened it (`<id>.<run>`: epochs restart
//! with every run, so a marker of another run — an earlier lineage of a redeployed
//! job, or the abandoned future of a restored older savepoint — says nothing about
//! this run's transactions). When the input passes `C` the transaction is
//! *prepared*: flushed, its records kept in a file beside the checkpoints, and
//! listed in the sink's snapshot of `C`. Once checkpoint `C` completes, it is
//! committed.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::sink::{DeliveryErrors, KafkaOutput, KafkaSinkConfig, fail_now, send};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::checkpoint::{
    Manifest, RunId, SnapshotAck, SnapshotId, SnapshotKind, SubtaskSnapshot, read_object_at,
};
use crate::exec::context::TaskContext;
use crate::exec::item::Item;
use crate::state::codec;

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

/// The transactional id of `slot` of `subtask`.
fn transactional_id(prefix: &str, subtask: u32, slot: u32) -> String {
    format!("{prefix}-{subtask}-{slot}")
}

/// The default prefix of the sink's transactional ids: the job by namespace (where
/// it has one) and name, and the sink.
fn default_prefix(namespace: Option<&str>, job: &str, operator: &str) -> String {
    match namespace {
        Some(namespace) => format!("strom-{namespace}.{job}-{operator}"),
        None => format!("strom-{job}-{operator}"),
    }
}

/// The consumer group whose committed offset (on the output's partition 0) is the
/// highest parallelism the sink ran at under `prefix`.
fn parallelism_group(prefix: &str) -> String {
    format!("{prefix}.parallelism")
}

/// The consumer group whose committed offset marks the newest committed checkpoint
/// of transactions `run` opened under `transactional_id`.
fn marker_group(transactional_id: &str, run: RunId) -> String {
    if run == RunId::LEGACY {
        transactional_id.to_owned()
    } else {
        format!("{transactional_id}.{run}")
    }
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

/// A prepared transaction found in a completed checkpoint or savepoint, for
/// recovery.
struct Found {
    prepared: Prepared,
    /// The old subtask that prepared it.
    subtask: u32,
    /// Where its kept records are: the snapshot's store, and the folder its paths
    /// are relative to (the job's root, or a savepoint's own folder).
    store: Arc<dyn ObjectStore>,
    base: ObjectPath,
    /// Whether the records are the job's own (deleted once finished), not a
    /// savepoint's copy (kept, so the savepoint stays restorable).
    own: bool,
    /// For a savepoint's copy: whether the savepoint is this job's (stored under
    /// its root), so the job's own copy of the records — deleted only once the
    /// transaction committed — says whether it committed after its marker expired.
    job_copy_decides: bool,
}

/// The prepared transactions of `operator` recovery must finish: those of every
/// completed checkpoint of the job's storage and of the restored point, each once
/// (the job's own copy of its kept records preferred), oldest first.
fn transactions_to_finish(ctx: &TaskContext, operator: &str) -> Result<Vec<Found>, String> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut add = |manifest: &Manifest,
                   store: &Arc<dyn ObjectStore>,
                   base: &ObjectPath,
                   (own, job_copy_decides): (bool, bool)|
     -> Result<(), String> {
        for state in manifest.operator_states(operator) {
            let state: SinkState = serde_json::from_str(state).map_err(|error| {
                format!("unreadable state in checkpoint {}: {error}", manifest.id())
            })?;
            for prepared in state.prepared {
                found
                    .entry(prepared.records.clone())
                    .or_insert_with(|| Found {
                        prepared,
                        subtask: state.subtask,
                        store: Arc::clone(store),
                        base: base.clone(),
                        own,
                        job_copy_decides,
                    });
            }
        }
        Ok(())
    };
    let storage = &ctx.storage;
    let completed = ctx
        .io
        .block_on(storage.completed_manifests())
        .map_err(|error| error.to_string())?;
    for manifest in &completed {
        add(manifest, storage.store(), storage.root(), (true, false))?;
    }
    if let Some(restore) = &ctx.restore {
        // A checkpoint of the job's own storage resolves against its root; a
        // savepoint, or a checkpoint of another job's storage, against its own.
        let this_jobs = restore.url.starts_with(&storage.url_of(storage.root()));
        let own = restore.manifest.kind == SnapshotKind::Checkpoint
            && restore.location.base == *storage.root()
            && this_jobs;
        add(
            &restore.manifest,
            &restore.store,
            &restore.location.base,
            (own, !own && this_jobs),
        )?;
    }
    let mut found: Vec<Found> = found.into_values().collect();
    found.sort_by_key(|found| (found.prepared.run, found.prepared.epoch));
    Ok(found)
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
        let committed = consumer
            .committed_offsets(self.marker_partition(None), CALL_TIMEOUT)
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

    /// Records that this sink runs at the job's parallelism, before any of its
    /// transactions opens, and returns every parallelism recorded so far: beside the
    /// checkpoints, and in Kafka with the transactional ids (the highest one), so a
    /// redeploy with new state — a new job id, a stateless upgrade — still fences
    /// every id an earlier deployment may have left a transaction open under.
    fn record_parallelism(&self) -> BTreeSet<u32> {
        let folder = sink_folder(&self.operator);
        let parallelism = self.ctx.partitioning().parallelism();
        let marker = format!("{folder}/parallelism-{parallelism}");
        self.run(self.ctx.storage.put_object(&marker, Vec::new()))
            .unwrap_or_else(|error| self.fail(error));
        let names = self
            .run(self.ctx.storage.list_folder(&folder))
            .unwrap_or_else(|error| self.fail(error));
        let mut recorded = recorded_parallelisms(&names);
        recorded.insert(self.record_parallelism_in_kafka(parallelism));
        recorded
    }

    /// Raises the highest parallelism recorded in Kafka under the prefix to at least
    /// `parallelism` (committing it again, so it never expires while the job runs
    /// now and then) and returns it.
    fn record_parallelism_in_kafka(&self, parallelism: u32) -> u32 {
        let group = parallelism_group(&self.prefix);
        let consumer = self.marker_consumer(&group);
        let recorded = consumer
            .committed_offsets(self.marker_partition(None), CALL_TIMEOUT)
            .unwrap_or_else(|error| self.fail(format!("cannot read {group}: {error}")))
            .find_partition(&self.config.topic, 0)
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) if offset > 0 => u32::try_from(offset).ok(),
                _ => None,
            })
            .unwrap_or(0);
        let highest = recorded.max(parallelism);
        consumer
            .commit(
                &self.marker_partition(Some(u64::from(highest))),
                CommitMode::Sync,
            )
            .unwrap_or_else(|error| self.fail(format!("cannot record {group}: {error}")));
        highest
    }

    /// Finishes what earlier runs left, for the old subtasks this subtask takes
    /// over: the prepared transactions of completed checkpoints (`found`: the
    /// restored point's and those of every completed checkpoint of the job's
    /// storage, also an abandoned run's — each manifest is a commit decision) are
    /// committed, their records sent again if they never were; every other
    /// transaction any earlier run may have left open is aborted. Subtask 0 then
    /// removes the kept records no checkpoint will commit.
    fn recover(&self, found: &[Found]) {
        let parallelism = self.ctx.partitioning().parallelism();
        let subtask = self.ctx.subtask;
        let parallelisms = self.record_parallelism();
        let mut finished = BTreeSet::new();
        for found in found
            .iter()
            .filter(|found| found.subtask % parallelism == subtask)
        {
            self.finish(found);
            finished.insert(found.prepared.transactional_id.clone());
        }
        for old in subtasks_to_fence(&parallelisms, subtask, parallelism) {
            for slot in 0..SLOTS_PER_SUBTASK {
                for prefix in std::iter::once(&self.prefix).chain(&self.earlier_prefix) {
                    let id = transactional_id(prefix, old, slot);
                    if !finished.contains(&id) {
                        drop(self.producer(&id));
                    }
                }
            }
        }
        if subtask == 0 {
            self.remove_unfinished_records(found);
        }
    }

    /// Commits `found`'s transaction unless its marker shows it committed: fences
    /// its id, then sends its kept records again with the marker in a new
    /// transaction. Kept records that are gone while the marker is too (markers
    /// expire with the brokers' offset retention) mean it committed long ago:
    /// records are only deleted once their transaction committed.
    fn finish(&self, found: &Found) {
        let prepared = &found.prepared;
        let producer = self.producer(&prepared.transactional_id);
        let marker = marker_group(&prepared.transactional_id, prepared.run);
        let committed = self.committed_epoch(&marker);
        if committed.is_some_and(|committed| committed >= prepared.epoch) {
            tracing::info!(id = %prepared.transactional_id, epoch = prepared.epoch, "transaction already committed");
        } else if committed.is_none() && found.job_copy_decides && !self.job_copy_exists(prepared) {
            tracing::info!(id = %prepared.transactional_id, epoch = prepared.epoch, "no marker, and the job deleted its copy of the kept records: committed before its marker expired");
        } else {
            let kept = self
                .run(read_object_at(&found.store, &found.base, &prepared.records))
                .unwrap_or_else(|error| self.fail(error));
            let Some(bytes) = kept else {
                if committed.is_none() {
                    tracing::info!(id = %prepared.transactional_id, epoch = prepared.epoch, "no marker and no kept records: committed before its marker expired");
                    return;
                }
                self.fail(format!(
                    "the kept records {} of checkpoint {} are missing, and the transaction {} did not commit",
                    prepared.records, prepared.epoch, prepared.transactional_id
                ));
            };
            let records: Vec<KafkaOutput> = codec::from_bytes(&bytes).unwrap_or_else(|error| {
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
                .marker_consumer(&marker)
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
        if found.own {
            self.delete_records(&prepared.records);
        }
    }

    /// Deletes the kept records that no checkpoint will commit: those of this job's
    /// earlier runs (other runs writing here are not this job's to judge) for
    /// checkpoints that never completed. Records the restored point lists, and
    /// those of any completed checkpoint, stay.
    fn remove_unfinished_records(&self, found: &[Found]) {
        let storage = &self.ctx.storage;
        let folder = sink_folder(&self.operator);
        let names = self
            .run(storage.list_folder(&folder))
            .unwrap_or_else(|error| self.fail(error));
        let runs = self
            .run(storage.known_runs())
            .unwrap_or_else(|error| self.fail(error));
        let completed: BTreeSet<SnapshotId> = self
            .run(storage.completed_checkpoints())
            .unwrap_or_else(|error| self.fail(error))
            .into_iter()
            .collect();
        let needed: BTreeSet<&str> = found
            .iter()
            .map(|found| found.prepared.records.as_str())
            .collect();
        for name in names {
            let Some(checkpoint) = records_file_checkpoint(&name) else {
                continue;
            };
            let path = format!("{folder}/{name}");
            let unfinished = checkpoint.run != self.ctx.run.id
                && runs.contains(&checkpoint.run)
                && !completed.contains(&checkpoint)
                && !needed.contains(path.as_str());
            if unfinished {
                self.delete_records(&path);
            }
        }
    }

    /// Whether the job's own copy of `prepared`'s kept records is still in its
    /// storage (the job deletes it only once the transaction committed).
    fn job_copy_exists(&self, prepared: &Prepared) -> bool {
        self.run(self.ctx.storage.object_exists(&prepared.records))
            .unwrap_or_else(|error| self.fail(error))
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
            .marker_consumer(&marker_group(&id, self.ctx.run.id))
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
        let checkpoint = SnapshotId {
            run: self.ctx.run.id,
            epoch,
        };
        let file = format!(
            "{}/{}",
            sink_folder(&self.operator),
            records_file_name(&checkpoint, self.ctx.subtask, &slot.transactional_id)
        );
        let bytes =
            codec::to_bytes(&records).expect("records encode: their fields know their length");
        self.run(self.ctx.storage.put_object(&file, bytes))
            .unwrap_or_else(|error| self.fail(error));
        slot.state = SlotState::Prepared(Prepared {
            transactional_id: slot.transactional_id.clone(),
            run: self.ctx.run.id,
            epoch,
            records: file,
        });
    }

    fn commit(&self, slot: &mut Slot) {
        let SlotState::Prepared(prepared) = std::mem::replace(&mut slot.state, SlotState::Idle)
        else {
            return;
        };
        // Tests hold commits back with it (`kafka-sink-commit=sleep(ms)`).
        fail::fail_point!("kafka-sink-commit");
        slot.producer
            .commit_transaction(CALL_TIMEOUT)
            .unwrap_or_else(|error| {
                self.fail(format!("commit of checkpoint {}: {error}", prepared.epoch))
            });
        self.delete_records(&prepared.records);
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

/// The name of the file keeping the records of the transaction `id` of
/// `checkpoint` of `subtask`: `<run>-<epoch>-<subtask>-<slot>.records`.
fn records_file_name(checkpoint: &SnapshotId, subtask: u32, id: &str) -> String {
    format!(
        "{}-{:020}-{subtask}-{}.records",
        checkpoint.run,
        checkpoint.epoch,
        id.rsplit('-').next().unwrap_or("0")
    )
}

/// The checkpoint a kept-records file belongs to; files named before runs existed
/// (`<epoch>-<subtask>-<slot>.records`) belong to the legacy run.
fn records_file_checkpoint(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(".records")?;
    let (rest, _slot) = stem.rsplit_once('-')?;
    let (checkpoint, _subtask) = rest.rsplit_once('-')?;
    SnapshotId::parse_name(checkpoint)
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

    let mut builder = OperatorBuilder::new(
        format!("Kafka exactly-once sink {operator}"),
        stream.scope(),
    );
    let activator = stream
        .scope()
        .activator_for(builder.operator_info().address);
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
        // Records of checkpoint epochs for which no slot was free, oldest first.
        let mut waiting: BTreeMap<u64, Vec<KafkaOutput>> = BTreeMap::new();
        let mut next_epoch = ctx.start_epoch;
        let mut last_poll = Instant::now();

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
                ctx.control.add_records_out(&operator, outputs.len() as u64);
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
                    Some(index) => kafka.send_all(&mut slots[index], outputs),
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
            }
            // Records that waited for a slot, oldest checkpoint first, as slots free.
            while let Some(entry) = waiting.first_entry() {
                let checkpoint = *entry.key();
                let Some(index) = open_transaction(&kafka, &mut slots, checkpoint) else {
                    break;
                };
                open.insert(checkpoint, index);
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
                    if let Some(index) = open.remove(&epoch) {
                        kafka.prepare(&mut slots[index]);
                    }
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
                    ack_output
                        .activate()
                        .give(&cap.delayed(&epoch), &mut vec![ack]);
                    next_epoch = epoch + 1;
                }
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
    /// Sends `records` in the open transaction of `slot`.
    fn send_all(&self, slot: &mut Slot, records: Vec<KafkaOutput>) {
        let SlotState::Open { records: kept, .. } = &mut slot.state else {
            unreachable!("records go to an open slot")
        };
        for record in records {
            send(&slot.producer, &self.config.topic, &record)
                .unwrap_or_else(|error| self.fail(error));
            kept.push(record);
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
/// records wait: this never blocks the worker thread).
fn open_transaction(kafka: &Transactions, slots: &mut Vec<Slot>, checkpoint: u64) -> Option<usize> {
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
        records: Vec::new(),
    };
    Some(index)
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
        let checkpoint = SnapshotId {
            run: RunId {
                sequence: 4,
                nonce: 0xbeef,
            },
            epoch: 40,
        };
        let names = vec![
            "parallelism-2".to_owned(),
            "parallelism-5".to_owned(),
            records_file_name(&checkpoint, 3, "strom-job-out-3-1"),
        ];
        assert_eq!(recorded_parallelisms(&names), [2, 5].into());
        assert_eq!(names[2], "000004-0000beef-00000000000000000040-3-1.records");
        assert_eq!(records_file_checkpoint(&names[2]), Some(checkpoint));
        assert_eq!(
            records_file_checkpoint("00000000000000000040-3-1.records"),
            Some(SnapshotId {
                run: RunId::LEGACY,
                epoch: 40
            })
        );
        assert_eq!(records_file_checkpoint("parallelism-2"), None);
    }

    /// Issue 14, point 1: markers are per run; transactional ids per namespace.
    #[test]
    fn markers_name_the_run_and_ids_the_namespace() {
        let run = RunId {
            sequence: 2,
            nonce: 0xa,
        };
        assert_eq!(
            marker_group("strom-j-out-0-1", run),
            "strom-j-out-0-1.000002-0000000a"
        );
        assert_eq!(
            marker_group("strom-j-out-0-1", RunId::LEGACY),
            "strom-j-out-0-1"
        );
        assert_ne!(
            default_prefix(Some("team-a"), "clicks", "out"),
            default_prefix(Some("team-b"), "clicks", "out")
        );
        assert_eq!(default_prefix(None, "clicks", "out"), "strom-clicks-out");
    }
}
