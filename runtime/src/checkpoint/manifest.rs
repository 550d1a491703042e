//! What a completed checkpoint or savepoint holds, and the pure decisions made on
//! manifests: which files garbage collection may delete.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::run::{RunId, SnapshotId};
use crate::state::{KeyGroupRange, TableFileInfo};

/// The name of the file that completes a checkpoint or savepoint: written last, and a
/// checkpoint folder without it does not exist.
pub const MANIFEST_FILE: &str = "_manifest";

/// Whether a manifest describes a checkpoint or a savepoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// Taken periodically; shares table files with other checkpoints under
    /// `shared/`; removed by retention.
    Checkpoint,
    /// Taken on request; self-contained (every file under its own folder) — or,
    /// for a while, borrowed (see [`Manifest::borrowed`]); removed only by
    /// `state.retainedSavepoints` / `state.savepointMaxAge`.
    Savepoint,
}

/// A file of a snapshot stored in object storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file's name in the RocksDB folder (e.g. `000012.sst`, `CURRENT`).
    pub name: String,
    /// Where it is stored: relative to the job's root for a checkpoint, to the
    /// savepoint's folder for a savepoint.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// For a table file (`*.sst`), its place in the snapshot's RocksDB tree, so a
    /// restore fetches only the files holding its key groups; absent for other
    /// files and in snapshots written before Strom recorded it (then a restore
    /// fetches every file and lists them itself).
    #[serde(default)]
    pub table: Option<TableFileInfo>,
}

/// The state of one subtask of one operator at one epoch.
///
/// Also sent between processes (bincode) inside [`SnapshotAck`], so no field is
/// skipped when serializing and none is a free-form JSON value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubtaskSnapshot {
    /// The subtask's index.
    pub subtask: u32,
    /// The key groups of a keyed operator's subtask; `None` for non-keyed state.
    pub key_groups: Option<KeyGroupRange>,
    /// The RocksDB files of keyed state.
    pub files: Vec<SnapshotFile>,
    /// Non-keyed operator state (e.g. source positions), as JSON text.
    pub operator_state: Option<String>,
    /// Output staged by a sink that becomes visible once this checkpoint completes.
    pub pending_commits: Vec<PendingCommit>,
    /// Whether the subtask holds output of this checkpoint that only its completion
    /// makes visible, besides `pending_commits` (a prepared Kafka transaction).
    #[serde(default)]
    pub awaits_commit: bool,
    /// Objects the operator state refers to (a Kafka sink's kept records), by path
    /// relative to the snapshot's base: the job's root for a checkpoint; a
    /// savepoint holds its own copies, so it stays restorable whatever happens to
    /// the job's folder. An object gone when the savepoint is copied was used up
    /// (the transaction it kept committed), and is not copied.
    #[serde(default)]
    pub objects: Vec<String>,
    /// A keyed operator's input watermark when the snapshot was taken (ms since
    /// the Unix epoch; short of the end of input), so a restore goes on from it
    /// instead of taking records it had passed as on time. `None` for other
    /// operators and in snapshots written before it was recorded.
    #[serde(default)]
    pub watermark: Option<u64>,
}

/// A sink's staged output and where it goes when its checkpoint completes. The
/// checkpoint's manifest is the commit decision: a commit it lists is finished on
/// recovery, never dropped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PendingCommit {
    /// URL of the staged object.
    pub staged: String,
    /// URL the object is moved to, where readers see it.
    pub target: String,
}

/// A subtask's report that it has snapshotted an epoch (sent to the coordinator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotAck {
    /// The operator's stable id (the name given in the pipeline).
    pub operator: String,
    /// The epoch the snapshot covers: state after every epoch up to and including it.
    pub epoch: u64,
    /// The snapshot itself.
    pub snapshot: SubtaskSnapshot,
    /// For a source, whether it has emitted everything it will (its input ended, or
    /// a stop was requested); `None` for other operators.
    #[serde(default)]
    pub drained: Option<bool>,
}

/// The manifest format this runtime writes. Version 1 had no run identity (its
/// manifests read as run [`RunId::LEGACY`]); version 2 added `run` and `ancestry`.
/// A manifest of a newer version than [`BORROWED_MANIFEST_FORMAT_VERSION`] is
/// refused, not half-read.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// The format of a borrowed savepoint's manifest, and the newest this runtime
/// reads: version 3 added [`Manifest::borrowed`]. Only borrowed savepoints are
/// written with it, so a runtime that reads up to version 2 refuses them by their
/// version (its paths would not resolve there) and reads everything else.
pub const BORROWED_MANIFEST_FORMAT_VERSION: u32 = 3;

fn format_version_1() -> u32 {
    1
}

/// The manifest of a completed checkpoint or savepoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The manifest's format ([`MANIFEST_FORMAT_VERSION`] when written now).
    #[serde(default = "format_version_1")]
    pub format_version: u32,
    /// The encoding of the state's keys and values and of kept records
    /// ([`crate::state::codec::STATE_FORMAT`] when written now; 1 where absent). A new encoding raises
    /// it and `formatVersion` together, so a runtime that cannot read the state
    /// refuses the manifest rather than misreading it, and a newer one migrates.
    #[serde(default = "format_version_1")]
    pub state_format: u32,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// The job's name.
    pub job: String,
    /// The run that took it.
    #[serde(default)]
    pub run: RunId,
    /// The points the run's lineage restored from, oldest first.
    #[serde(default)]
    pub ancestry: Vec<SnapshotId>,
    /// The epoch covered: the state after every epoch up to and including it.
    pub epoch: u64,
    /// The parallelism the job ran at.
    pub parallelism: u32,
    /// The number of key groups (fixed for the job's life).
    pub max_parallelism: u32,
    /// Wall-clock completion time, milliseconds since the Unix epoch.
    pub completed_at_ms: u64,
    /// Per operator id, the snapshot of each subtask, ordered by subtask.
    pub operators: BTreeMap<String, Vec<SubtaskSnapshot>>,
    /// For a savepoint handed over to the run restoring it (a stop before a
    /// rescale, so the new pods need not wait for a copy): its files
    /// are still those of the checkpoint it was taken at, named relative to the
    /// job's root (the folder above `savepoints/`), and that checkpoint is pinned
    /// (`pins/`) until a run of the job copies them in and rewrites this manifest
    /// self-contained ([`super::CheckpointStorage::complete_borrowed_savepoints`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub borrowed: bool,
}

impl Manifest {
    /// The point in the job's history it holds.
    pub fn id(&self) -> SnapshotId {
        SnapshotId {
            run: self.run,
            epoch: self.epoch,
        }
    }

    /// Whether it was taken by a run whose lineage restored `point`: a run that
    /// restored it, or a later run going on from such a run's checkpoints.
    pub fn restored_through(&self, point: &SnapshotId) -> bool {
        self.ancestry.contains(point)
    }

    /// The operators that have state in this snapshot: files, operator state or
    /// sink commits.
    pub fn operators_with_state(&self) -> impl Iterator<Item = &str> {
        self.operators
            .iter()
            .filter(|(_, subtasks)| {
                subtasks.iter().any(|subtask| {
                    !subtask.files.is_empty()
                        || subtask.operator_state.is_some()
                        || !subtask.pending_commits.is_empty()
                        || subtask.awaits_commit
                })
            })
            .map(|(operator, _)| operator.as_str())
    }

    /// The sinks whose output of this snapshot becomes visible only when the sink
    /// itself commits it on restore (transactions), unlike the staged files any
    /// restore finishes ([`finish_commits`](super::finish_commits)).
    pub fn operators_awaiting_commit(&self) -> impl Iterator<Item = &str> {
        self.operators
            .iter()
            .filter(|(_, subtasks)| subtasks.iter().any(|subtask| subtask.awaits_commit))
            .map(|(operator, _)| operator.as_str())
    }

    /// Every stored file the manifest refers to.
    pub fn file_paths(&self) -> impl Iterator<Item = &str> {
        self.operators
            .values()
            .flatten()
            .flat_map(|subtask| subtask.files.iter().map(|file| file.path.as_str()))
    }

    /// The total size in bytes of the files the manifest refers to.
    pub fn state_size(&self) -> u64 {
        self.operators
            .values()
            .flatten()
            .flat_map(|subtask| &subtask.files)
            .map(|file| file.size)
            .sum()
    }

    /// Whether some output becomes visible only once this checkpoint completes: the
    /// window in which a crash must lead to a commit on recovery.
    pub fn holds_uncommitted_output(&self) -> bool {
        self.operators
            .values()
            .flatten()
            .any(|subtask| subtask.awaits_commit || !subtask.pending_commits.is_empty())
    }

    /// Every sink commit the manifest decides.
    pub fn pending_commits(&self) -> impl Iterator<Item = &PendingCommit> {
        self.operators
            .values()
            .flatten()
            .flat_map(|subtask| &subtask.pending_commits)
    }

    /// The non-keyed state (JSON text) of every subtask of `operator` that has one,
    /// in subtask order.
    pub fn operator_states(&self, operator: &str) -> Vec<&str> {
        self.operators
            .get(operator)
            .map(|subtasks| {
                subtasks
                    .iter()
                    .filter_map(|s| s.operator_state.as_deref())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The input watermark `operator` goes on from when restored from this
    /// snapshot: the least its subtasks recorded (they all saw the same watermarks
    /// by the epoch's end), 0 where one recorded none.
    pub fn watermark_of(&self, operator: &str) -> u64 {
        self.operators
            .get(operator)
            .into_iter()
            .flatten()
            .map(|subtask| subtask.watermark.unwrap_or(0))
            .min()
            .unwrap_or(0)
    }
}

/// What garbage collection deletes after a checkpoint completes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionPlan {
    /// The checkpoints to remove: their manifests go first, so a half-collected
    /// checkpoint never looks complete.
    pub checkpoints: Vec<SnapshotId>,
    /// Files (relative to the job's root) that a removed checkpoint refers to and no
    /// retained one does.
    pub files: BTreeSet<String>,
}

/// Decides what to delete so that only the newest `retained` checkpoints remain,
/// newest by run, then epoch: a run restored from an older point into the same
/// folder keeps its own checkpoints, whatever epochs an abandoned run reached.
///
/// A file is deleted only when a removed checkpoint refers to it and no retained
/// one does. Checkpoints share files — table files under `shared/`, and an epoch
/// without changes refers to the previous snapshot's files, private ones included —
/// so a removed checkpoint's folder may still hold files a retained one needs.
/// Files of checkpoints still being written are never in the plan, and savepoints
/// refer to a checkpoint's files only while it is `pinned`: the checkpoints being
/// copied into a savepoint, or lent to a borrowed one, are kept whatever their age.
pub fn plan_collection(
    completed: &[Manifest],
    retained: usize,
    pinned: &BTreeSet<SnapshotId>,
) -> CollectionPlan {
    let mut newest_first: Vec<&Manifest> = completed.iter().collect();
    newest_first.sort_by_key(|manifest| std::cmp::Reverse(manifest.id()));
    let (newest, older) = newest_first.split_at(retained.min(newest_first.len()));
    let (older_pinned, removed): (Vec<&Manifest>, Vec<&Manifest>) = older
        .iter()
        .partition(|manifest| pinned.contains(&manifest.id()));
    let kept = newest.iter().chain(&older_pinned);
    let referenced: BTreeSet<&str> = kept.flat_map(|m| m.file_paths()).collect();
    let files = removed
        .iter()
        .flat_map(|m| m.file_paths())
        .filter(|path| !referenced.contains(path))
        .map(str::to_owned)
        .collect();
    let mut checkpoints: Vec<SnapshotId> = removed.iter().map(|m| m.id()).collect();
    checkpoints.sort_unstable();
    CollectionPlan { checkpoints, files }
}

/// The folder, relative to the job's root, of table files shared between checkpoints.
pub const SHARED_DIR: &str = "shared";

/// The folder name of checkpoint `id`: `chk-<run>-<epoch>`, zero-padded so that
/// names sort by run, then epoch (`chk-<epoch>` for the legacy run).
pub fn checkpoint_dir_name(id: &SnapshotId) -> String {
    if id.run == RunId::LEGACY {
        format!("chk-{:020}", id.epoch)
    } else {
        format!("chk-{}-{:020}", id.run, id.epoch)
    }
}

/// The checkpoint a folder name is of, if it is one.
pub fn parse_checkpoint_dir_name(name: &str) -> Option<SnapshotId> {
    SnapshotId::parse_name(name.strip_prefix("chk-")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::codec::STATE_FORMAT;

    fn run(sequence: u32) -> RunId {
        RunId { sequence, nonce: 7 }
    }

    fn manifest(epoch: u64, files: &[&str]) -> Manifest {
        manifest_of(run(1), epoch, files)
    }

    fn manifest_of(run: RunId, epoch: u64, files: &[&str]) -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            state_format: STATE_FORMAT,
            kind: SnapshotKind::Checkpoint,
            job: "job".into(),
            run,
            ancestry: Vec::new(),
            epoch,
            parallelism: 1,
            max_parallelism: 128,
            completed_at_ms: 0,
            operators: BTreeMap::from([(
                "count".to_owned(),
                vec![SubtaskSnapshot {
                    subtask: 0,
                    key_groups: Some(KeyGroupRange { start: 0, end: 128 }),
                    files: files
                        .iter()
                        .map(|path| SnapshotFile {
                            name: path.rsplit('/').next().unwrap().to_owned(),
                            path: (*path).to_owned(),
                            size: 1,
                            table: None,
                        })
                        .collect(),
                    operator_state: None,
                    pending_commits: Vec::new(),
                    awaits_commit: false,
                    objects: Vec::new(),
                    watermark: None,
                }],
            )]),
            borrowed: false,
        }
    }

    #[test]
    fn collection_keeps_files_a_retained_checkpoint_refers_to() {
        let completed = [
            manifest(
                1,
                &["shared/a.sst", "shared/b.sst", "chk-1/count/0/CURRENT"],
            ),
            manifest(
                2,
                &["shared/a.sst", "shared/c.sst", "chk-2/count/0/CURRENT"],
            ),
            // No changes in epoch 3: it refers to epoch 2's files, private ones too.
            manifest(
                3,
                &["shared/a.sst", "shared/c.sst", "chk-2/count/0/CURRENT"],
            ),
            manifest(
                4,
                &["shared/a.sst", "shared/d.sst", "chk-4/count/0/CURRENT"],
            ),
        ];
        let files = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>();

        let ids = |epochs: &[u64]| -> Vec<SnapshotId> {
            epochs
                .iter()
                .map(|&epoch| SnapshotId { run: run(1), epoch })
                .collect()
        };
        let plan = plan_collection(&completed, 3, &BTreeSet::new());
        assert_eq!(plan.checkpoints, ids(&[1]));
        assert_eq!(
            plan.files,
            files(&["chk-1/count/0/CURRENT", "shared/b.sst"])
        );

        let plan = plan_collection(&completed, 2, &BTreeSet::new());
        assert_eq!(plan.checkpoints, ids(&[1, 2]));
        assert_eq!(
            plan.files,
            files(&["chk-1/count/0/CURRENT", "shared/b.sst"])
        );

        let plan = plan_collection(&completed, 1, &BTreeSet::new());
        assert_eq!(plan.checkpoints, ids(&[1, 2, 3]));
        assert_eq!(
            plan.files,
            files(&[
                "chk-1/count/0/CURRENT",
                "chk-2/count/0/CURRENT",
                "shared/b.sst",
                "shared/c.sst"
            ])
        );
    }

    /// Issue 14, point 14: a checkpoint being copied into a savepoint keeps its
    /// files while newer checkpoints complete and collection goes on.
    #[test]
    fn collection_keeps_a_pinned_checkpoint_and_its_files() {
        let completed = [
            manifest(1, &["shared/a.sst", "chk-1/count/0/CURRENT"]),
            manifest(2, &["shared/b.sst"]),
            manifest(3, &["shared/c.sst"]),
        ];
        let pinned = SnapshotId {
            run: run(1),
            epoch: 1,
        };
        let plan = plan_collection(&completed, 1, &BTreeSet::from([pinned]));
        assert_eq!(
            plan.checkpoints,
            vec![SnapshotId {
                run: run(1),
                epoch: 2
            }]
        );
        assert_eq!(plan.files, ["shared/b.sst".to_owned()].into());
    }

    #[test]
    fn state_of_a_newer_format_is_refused_as_such() {
        use crate::checkpoint::storage::{StorageError, check_state_format};
        let mut manifest = manifest(1, &[]);
        check_state_format(&manifest, "s3://b/job/chk-1").unwrap();
        manifest.state_format = STATE_FORMAT + 1;
        let error = check_state_format(&manifest, "s3://b/job/chk-1").unwrap_err();
        assert!(matches!(error, StorageError::NewerStateFormat { .. }));
        assert!(
            error
                .to_string()
                .contains(&format!("state in format {}", STATE_FORMAT + 1)),
            "{error}"
        );
    }

    #[test]
    fn collection_with_fewer_checkpoints_than_retained_deletes_nothing() {
        let completed = [manifest(7, &["shared/a.sst"])];
        assert_eq!(
            plan_collection(&completed, 3, &BTreeSet::new()),
            CollectionPlan::default()
        );
        assert_eq!(
            plan_collection(&[], 3, &BTreeSet::new()),
            CollectionPlan::default()
        );
    }

    /// Issue 14, point 2: retention ranks by run, then epoch.
    #[test]
    fn collection_keeps_the_newest_runs_checkpoints_whatever_their_epochs() {
        let completed = [
            manifest_of(run(1), 400, &["shared/old-400.sst"]),
            manifest_of(run(1), 500, &["shared/old-500.sst"]),
            manifest_of(run(2), 20, &["shared/new-20.sst"]),
            manifest_of(run(2), 30, &["shared/new-30.sst"]),
        ];
        let plan = plan_collection(&completed, 2, &BTreeSet::new());
        assert_eq!(
            plan.checkpoints,
            vec![
                SnapshotId {
                    run: run(1),
                    epoch: 400
                },
                SnapshotId {
                    run: run(1),
                    epoch: 500
                }
            ]
        );
    }

    #[test]
    fn checkpoint_folder_names_sort_by_run_then_epoch_and_read_back() {
        let ids = [
            SnapshotId {
                run: RunId::LEGACY,
                epoch: 900,
            },
            SnapshotId {
                run: run(1),
                epoch: 9,
            },
            SnapshotId {
                run: run(1),
                epoch: 10,
            },
            SnapshotId {
                run: run(2),
                epoch: 1,
            },
            SnapshotId {
                run: run(10),
                epoch: 1,
            },
        ];
        let names: Vec<String> = ids.iter().map(checkpoint_dir_name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (id, name) in ids.iter().zip(&names) {
            assert_eq!(parse_checkpoint_dir_name(name).as_ref(), Some(id));
        }
        // Folders of format 1 are still found.
        assert_eq!(
            parse_checkpoint_dir_name("chk-00000000000000000042"),
            Some(SnapshotId {
                run: RunId::LEGACY,
                epoch: 42
            })
        );
        assert_eq!(parse_checkpoint_dir_name("savepoints"), None);
        assert_eq!(parse_checkpoint_dir_name("chk-x-12"), None);
    }

    #[test]
    fn a_manifest_of_format_1_reads_as_the_legacy_run() {
        let mut json = serde_json::to_value(manifest(5, &[])).unwrap();
        let object = json.as_object_mut().unwrap();
        for field in ["formatVersion", "run", "ancestry"] {
            object.remove(field);
        }
        let read: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(read.format_version, 1);
        assert_eq!(
            read.id(),
            SnapshotId {
                run: RunId::LEGACY,
                epoch: 5
            }
        );
    }

    #[test]
    fn a_restored_operator_goes_on_from_the_least_watermark_its_subtasks_recorded() {
        let mut manifest = manifest(3, &[]);
        assert_eq!(manifest.watermark_of("count"), 0, "none recorded");
        let subtasks = manifest.operators.get_mut("count").unwrap();
        subtasks[0].watermark = Some(5_000);
        let mut second = subtasks[0].clone();
        second.subtask = 1;
        second.watermark = Some(4_000);
        subtasks.push(second);
        assert_eq!(manifest.watermark_of("count"), 4_000);
        assert_eq!(
            manifest.watermark_of("other"),
            0,
            "operator not in the snapshot"
        );
        manifest.operators.get_mut("count").unwrap()[1].watermark = None;
        assert_eq!(
            manifest.watermark_of("count"),
            0,
            "one subtask recorded none"
        );
    }
}
