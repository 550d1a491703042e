//! Recovery of the exactly-once sink at start: the prepared transactions of
//! completed checkpoints are committed (their kept records sent again where they
//! never committed), every transactional id an earlier run may have left a
//! transaction open under is fenced, and kept records no checkpoint will commit
//! are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use rdkafka::Offset;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;

use super::names::{
    marker_group, parallelism_group, recorded_parallelisms, records_file_checkpoint, sink_folder,
    subtasks_to_fence, transactional_id,
};
use super::{CALL_TIMEOUT, Prepared, SLOTS_PER_SUBTASK, SinkState, Transactions};
use crate::checkpoint::{Manifest, SnapshotId, SnapshotKind, check_state_format, read_object_at};
use crate::connectors::kafka::retry::with_retries;
use crate::connectors::kafka::sink::{KafkaOutput, send};
use crate::exec::context::TaskContext;
use crate::state::codec;

/// A prepared transaction found in a completed checkpoint or savepoint, for
/// recovery.
pub(super) struct Found {
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
pub(super) fn transactions_to_finish(
    ctx: &TaskContext,
    operator: &str,
) -> Result<Vec<Found>, String> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut add = |manifest: &Manifest,
                   store: &Arc<dyn ObjectStore>,
                   base: &ObjectPath,
                   (own, job_copy_decides): (bool, bool)|
     -> Result<(), String> {
        // Kept records are decoded in this runtime's state format.
        if !manifest.operator_states(operator).is_empty() {
            check_state_format(manifest, &manifest.id().to_string())
                .map_err(|error| error.to_string())?;
        }
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
        let this_jobs = is_under(&restore.url, &storage.url_of(storage.root()));
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

/// Whether the snapshot at `url` lies under the job's root `root_url`, on a path
/// boundary (`…/clicks-eu` is not under `…/clicks`).
fn is_under(url: &str, root_url: &str) -> bool {
    url.strip_prefix(root_url.trim_end_matches('/'))
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

impl Transactions {
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
        // A group's coordinator may be loading or moving (NotCoordinator): retried.
        let cluster = &self.config.connection.name;
        let recorded = with_retries(cluster, || {
            consumer.committed_offsets(self.marker_partition(None), CALL_TIMEOUT)
        })
        .unwrap_or_else(|error| self.fail(format!("cannot read {group}: {error}")))
        .find_partition(&self.config.topic, 0)
        .and_then(|element| match element.offset() {
            Offset::Offset(offset) if offset > 0 => u32::try_from(offset).ok(),
            _ => None,
        })
        .unwrap_or(0);
        let highest = recorded.max(parallelism);
        with_retries(cluster, || {
            consumer.commit(
                &self.marker_partition(Some(u64::from(highest))),
                CommitMode::Sync,
            )
        })
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
    pub(super) fn recover(&self, found: &[Found]) {
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
        // The job's own copy goes once the transaction is committed: its absence
        // is what says so once the marker has expired.
        if found.own || found.job_copy_decides {
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
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn a_snapshot_is_the_jobs_own_only_under_its_root() {
        let root = "s3://bucket/state/clicks";
        assert!(is_under("s3://bucket/state/clicks/savepoints/sp-1", root));
        assert!(is_under(
            "s3://bucket/state/clicks/savepoints/sp-1",
            "s3://bucket/state/clicks/"
        ));
        assert!(!is_under(
            "s3://bucket/state/clicks-eu/savepoints/sp-1",
            root
        ));
        assert!(!is_under("s3://other/state/clicks/savepoints/sp-1", root));
        assert!(!is_under(root, root));
    }
}
