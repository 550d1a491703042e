//! The names the exactly-once sink gives what it keeps: transactional ids, the
//! consumer groups of its markers and of the parallelisms it ran at, and the
//! folder and files of kept records. Pure functions, so recovery reads back
//! exactly what a run wrote.

use std::collections::BTreeSet;

use crate::checkpoint::{RunId, SnapshotId};

/// The transactional id of `slot` of `subtask`.
pub(super) fn transactional_id(prefix: &str, subtask: u32, slot: u32) -> String {
    format!("{prefix}-{subtask}-{slot}")
}

/// The default prefix of the sink's transactional ids: the job by namespace (where
/// it has one) and name, and the sink.
pub(super) fn default_prefix(namespace: Option<&str>, job: &str, operator: &str) -> String {
    match namespace {
        Some(namespace) => format!("strom-{namespace}.{job}-{operator}"),
        None => format!("strom-{job}-{operator}"),
    }
}

/// The consumer group whose committed offset (on the output's partition 0) is the
/// highest parallelism the sink ran at under `prefix`.
pub(super) fn parallelism_group(prefix: &str) -> String {
    format!("{prefix}.parallelism")
}

/// The consumer group whose committed offset marks the newest committed checkpoint
/// of transactions `run` opened under `transactional_id`.
pub(super) fn marker_group(transactional_id: &str, run: RunId) -> String {
    if run == RunId::LEGACY {
        transactional_id.to_owned()
    } else {
        format!("{transactional_id}.{run}")
    }
}

/// The folder under the job's folder that holds a sink's kept records and the
/// parallelisms it ran at.
pub(super) fn sink_folder(operator: &str) -> String {
    format!("kafka-transactions/{operator}")
}

/// The parallelisms recorded in a sink folder's listing.
pub(super) fn recorded_parallelisms(names: &[String]) -> BTreeSet<u32> {
    names
        .iter()
        .filter_map(|name| name.strip_prefix("parallelism-")?.parse().ok())
        .collect()
}

/// The old subtasks (of every parallelism in `parallelisms`) whose transactional ids
/// `subtask` of `parallelism` fences at start: each old subtask goes to exactly one
/// new one.
pub(super) fn subtasks_to_fence(
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

/// The name of the file keeping the records of the transaction `id` of
/// `checkpoint` of `subtask`: `<run>-<epoch>-<subtask>-<slot>.records`.
pub(super) fn records_file_name(checkpoint: &SnapshotId, subtask: u32, id: &str) -> String {
    format!(
        "{}-{:020}-{subtask}-{}.records",
        checkpoint.run,
        checkpoint.epoch,
        id.rsplit('-').next().unwrap_or("0")
    )
}

/// The checkpoint a kept-records file belongs to; files named before runs existed
/// (`<epoch>-<subtask>-<slot>.records`) belong to the legacy run.
pub(super) fn records_file_checkpoint(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(".records")?;
    let (rest, _slot) = stem.rsplit_once('-')?;
    let (checkpoint, _subtask) = rest.rsplit_once('-')?;
    SnapshotId::parse_name(checkpoint)
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
