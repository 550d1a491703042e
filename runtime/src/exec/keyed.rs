//! The keyed stateful operator: records routed by key group, state per key in
//! RocksDB, applied epoch by epoch and snapshotted at every epoch boundary.
//!
//! Epoch-exact snapshots: records of epoch e+1 may arrive before the input frontier
//! has passed e. The operator stashes records by epoch and applies an epoch only
//! once the frontier has passed it, then snapshots, so the snapshot of e holds
//! exactly the effect of epochs up to e.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;

use rocksdb::WriteBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;
use timely::ExchangeData;
use timely::dataflow::Stream;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::context::TaskContext;
use super::exchange::by_key_group;
use super::snapshot::Uploader;
use crate::checkpoint::{SnapshotAck, SnapshotFile, SubtaskSnapshot, download_files};
use crate::state::{KeyGroup, KeyedStore, RestoreSource, StateError, TableId, store_key};

/// The table holding each key's value state.
const VALUE_TABLE: TableId = TableId(0);

/// Encodes a key to the stable bytes that are hashed to its key group and stored.
pub fn encode_key<K: Serialize>(key: &K) -> Vec<u8> {
    bincode::serialize(key).expect("keys serialize with bincode")
}

/// Opens the operator's store: restored from the job's restore point when it has
/// state for this operator, empty otherwise.
fn open_store(ctx: &TaskContext, operator: &str) -> Result<KeyedStore, StateError> {
    let dir = ctx.operator_dir(operator);
    let range = ctx.partitioning().key_groups_of(ctx.subtask);
    let Some(restore) = &ctx.restore else {
        return KeyedStore::create(&dir.join("db"), range);
    };
    let Some(old_subtasks) = restore.manifest.operators.get(operator) else {
        return KeyedStore::create(&dir.join("db"), range);
    };
    let mut sources = Vec::new();
    for old in old_subtasks {
        let Some(old_range) = old.key_groups else {
            continue;
        };
        if old_range.intersection(range).is_empty() {
            continue;
        }
        let local = dir.join(format!("restore-{}", old.subtask));
        ctx.io
            .block_on(download_files(
                &restore.store,
                &restore.location.base,
                &old.files,
                &local,
            ))
            .map_err(|error| StateError::Io {
                operation: "download snapshot",
                path: local.clone(),
                source: std::io::Error::other(error.to_string()),
            })?;
        sources.push(RestoreSource {
            dir: local,
            key_groups: old_range,
        });
    }
    let store = KeyedStore::restore(&dir.join("db"), range, &sources)?;
    for source in sources {
        let _ = fs::remove_dir_all(source.dir);
    }
    Ok(store)
}

/// Keyed value state: RocksDB plus the values touched since the last flush, which
/// are written in one batch.
struct ValueStates<S> {
    store: KeyedStore,
    max_parallelism: u32,
    touched: HashMap<Vec<u8>, Option<S>>,
    /// Whether anything was written since the last snapshot.
    changed_since_snapshot: bool,
}

impl<S: Serialize + DeserializeOwned> ValueStates<S> {
    /// The state of the key whose stable encoding is `encoded`.
    fn value(&mut self, encoded: &[u8]) -> Result<&mut Option<S>, StateError> {
        use std::collections::hash_map::Entry;
        let group = KeyGroup::of_key(encoded, self.max_parallelism);
        match self.touched.entry(store_key(group, VALUE_TABLE, encoded)) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let value =
                    match self.store.get(entry.key())? {
                        Some(bytes) => Some(bincode::deserialize(&bytes).map_err(|source| {
                            StateError::Decode {
                                table: VALUE_TABLE,
                                source,
                            }
                        })?),
                        None => None,
                    };
                Ok(entry.insert(value))
            }
        }
    }

    /// Writes the touched values to RocksDB.
    fn flush(&mut self) -> Result<(), StateError> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in self.touched.drain() {
            match value {
                Some(value) => {
                    batch.put(key, bincode::serialize(&value).expect("state serializes"))
                }
                None => batch.delete(key),
            }
        }
        self.store.write(batch)?;
        self.changed_since_snapshot = true;
        Ok(())
    }
}

/// How many touched keys are kept in memory before they are written to RocksDB.
const MAX_TOUCHED_KEYS: usize = 100_000;

/// A snapshot waiting for its upload (or reusing the previous one's files).
enum PendingAck {
    Uploading,
    Ready(Vec<SnapshotFile>),
}

/// Builds the keyed operator `operator` on `stream`: records are routed to the
/// subtask owning `key`'s key group, and `logic(key, record, state, output)` runs
/// for each, in epoch order, with the key's value state (`None` when absent;
/// setting it to `None` deletes it). Returns the output stream and the stream of
/// snapshot acknowledgements for the checkpoint coordinator.
#[allow(clippy::type_complexity)]
pub fn keyed_process<'scope, T, K, S, O>(
    stream: Stream<'scope, u64, Vec<T>>,
    ctx: &TaskContext,
    operator: &str,
    key: impl Fn(&T) -> K + Clone + 'static,
    mut logic: impl FnMut(&K, T, &mut Option<S>, &mut Vec<O>) + 'static,
) -> Result<
    (
        Stream<'scope, u64, Vec<O>>,
        Stream<'scope, u64, Vec<SnapshotAck>>,
    ),
    StateError,
>
where
    T: ExchangeData + Clone,
    K: Serialize + 'static,
    S: Serialize + DeserializeOwned + 'static,
    O: Clone + 'static,
{
    let partitioning = ctx.partitioning();
    let mut states = ValueStates::<S> {
        store: open_store(ctx, operator)?,
        max_parallelism: partitioning.max_parallelism(),
        touched: HashMap::new(),
        changed_since_snapshot: true,
    };
    let key_groups = states.store.key_groups();
    let route_key = key.clone();
    let scope = stream.scope();
    let mut builder = OperatorBuilder::new(format!("Keyed {operator}"), scope);
    let info = builder.operator_info();
    let mut input = builder.new_input(
        stream,
        by_key_group(partitioning, move |record: &T| {
            encode_key(&route_key(record))
        }),
    );
    let (mut data_output, data_stream) = builder.new_output::<Vec<O>>();
    let (mut ack_output, ack_stream) = builder.new_output::<Vec<SnapshotAck>>();

    let ctx = ctx.clone();
    let operator = operator.to_owned();
    let activator = scope.worker().sync_activator_for(info.address.to_vec());
    let uploader = Uploader::start(
        &ctx.io,
        ctx.storage.clone(),
        operator.clone(),
        ctx.subtask,
        activator,
    );
    let snapshot_root = ctx.operator_dir(&operator).join("snapshots");
    // Runs the user's logic on `records` and returns what it emitted.
    let mut run_logic = {
        let (ctx, operator) = (ctx.clone(), operator.clone());
        move |states: &mut ValueStates<S>, records: Vec<T>| -> Vec<O> {
            let mut outputs = Vec::new();
            for record in records {
                let record_key = key(&record);
                let value = states
                    .value(&encode_key(&record_key))
                    .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                logic(&record_key, record, value, &mut outputs);
            }
            outputs
        }
    };

    builder.build(move |capabilities| {
        let mut caps: Option<Vec<Capability<u64>>> = Some(
            capabilities
                .into_iter()
                .map(|mut cap| {
                    cap.downgrade(&ctx.start_epoch);
                    cap
                })
                .collect(),
        );
        let mut next_epoch = ctx.start_epoch;
        let mut stash: BTreeMap<u64, Vec<T>> = BTreeMap::new();
        let mut last_files: Vec<SnapshotFile> = Vec::new();
        let mut pending: VecDeque<(u64, PendingAck)> = VecDeque::new();

        move |frontiers| {
            input.for_each_stamp(|stamp, batches| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                let records = stash.entry(epoch).or_default();
                for batch in batches {
                    records.append(batch);
                }
            });
            let Some(held) = caps.as_mut() else { return };
            let frontier = frontiers[0].frontier().first().copied();

            // Epochs the frontier has passed: apply what is left of each, in order,
            // and snapshot it.
            let until = frontier.unwrap_or(u64::MAX);
            while next_epoch < until {
                let epoch = next_epoch;
                let records = stash.remove(&epoch).unwrap_or_default();
                if frontier.is_none() && records.is_empty() && stash.is_empty() {
                    break;
                }
                let mut outputs = run_logic(&mut states, records);
                if !outputs.is_empty() {
                    data_output
                        .activate()
                        .give(&held[0].delayed(&epoch), &mut outputs);
                }
                states
                    .flush()
                    .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                if frontier.is_some() {
                    if states.changed_since_snapshot {
                        let local = states
                            .store
                            .snapshot(&snapshot_root.join(epoch.to_string()))
                            .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                        uploader.upload(epoch, local);
                        pending.push_back((epoch, PendingAck::Uploading));
                        states.changed_since_snapshot = false;
                    } else {
                        pending.push_back((epoch, PendingAck::Ready(Vec::new())));
                    }
                }
                next_epoch += 1;
            }
            // The current epoch: every earlier one is applied, so its records can be
            // applied now; it is snapshotted once the frontier passes it.
            if let Some(current) = frontier
                && let Some(records) = stash.remove(&current)
            {
                let mut outputs = run_logic(&mut states, records);
                if !outputs.is_empty() {
                    data_output
                        .activate()
                        .give(&held[0].delayed(&current), &mut outputs);
                }
                if states.touched.len() >= MAX_TOUCHED_KEYS {
                    states
                        .flush()
                        .unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                }
            }

            // Acknowledge finished snapshots in epoch order.
            for (epoch, result) in uploader.finished() {
                let files = result.unwrap_or_else(|e| fail_now(&ctx, &operator, &e));
                if let Some(entry) = pending.iter_mut().find(|(e, _)| *e == epoch) {
                    entry.1 = PendingAck::Ready(files);
                }
            }
            while matches!(pending.front(), Some((_, PendingAck::Ready(_)))) {
                let Some((epoch, PendingAck::Ready(files))) = pending.pop_front() else {
                    unreachable!("the front was checked to be ready")
                };
                // An epoch without changes reuses the previous snapshot's files.
                if !files.is_empty() {
                    last_files = files;
                }
                let ack = SnapshotAck {
                    operator: operator.clone(),
                    epoch,
                    snapshot: SubtaskSnapshot {
                        subtask: ctx.subtask,
                        key_groups: Some(key_groups),
                        files: last_files.clone(),
                        operator_state: None,
                        pending_commits: Vec::new(),
                    },
                    drained: None,
                };
                ack_output
                    .activate()
                    .give(&held[1].delayed(&epoch), &mut vec![ack]);
            }

            match frontier {
                Some(frontier) => {
                    // Before the sources have started the first epoch, the frontier
                    // is below it.
                    let data_time = frontier.max(*held[0].time());
                    held[0].downgrade(&data_time);
                    let oldest_pending = pending.front().map_or(frontier, |(epoch, _)| *epoch);
                    let ack_time = oldest_pending.min(frontier).max(*held[1].time());
                    held[1].downgrade(&ack_time);
                }
                // The input has ended: the job is shutting down, nothing more to acknowledge.
                None => caps = None,
            }
        }
    });
    Ok((data_stream, ack_stream))
}

/// Records that `operator` failed and stops the worker: a failed state operation
/// leaves the operator without a consistent state to go on from.
fn fail_now(ctx: &TaskContext, operator: &str, error: &dyn std::fmt::Display) -> ! {
    let message = format!("operator {operator}: {error}");
    ctx.control.record_failure(message.clone());
    panic!("{message}");
}
