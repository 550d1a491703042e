//! Runs and lineages: every start of a job (from nothing, from its latest checkpoint,
//! from a savepoint) is a new run with its own id. Epochs restart with each run (at 1,
//! or one past the restored epoch), so an epoch alone names nothing: checkpoints,
//! staged sink output and part files are named by run and epoch together.
//!
//! A run id orders runs too: its sequence is one past every sequence the job's
//! storage holds when the run starts, so "the newest checkpoint" of a folder that
//! several runs wrote into is the newest of the newest run — never an abandoned
//! run's checkpoint whose epochs happen to be higher.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Identifies one run of a job: a sequence that orders the runs of one storage
/// folder, and a random nonce that tells apart runs that never met (two jobs
/// writing one output folder, a run that left no trace for the next to count).
///
/// Written `<sequence:06>-<nonce:08x>` (e.g. `000003-1a2b3c4d`), so names that
/// embed it sort by sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId {
    /// Orders the runs of one storage folder: one past the highest found at start.
    pub sequence: u32,
    /// Random, so that two runs with the same sequence still differ.
    pub nonce: u32,
}

impl RunId {
    /// The run of manifests written before runs existed (format version 1).
    pub const LEGACY: RunId = RunId {
        sequence: 0,
        nonce: 0,
    };

    /// A new run ordered after every run in `existing`.
    pub fn after<'a>(existing: impl IntoIterator<Item = &'a RunId>) -> RunId {
        let sequence = existing
            .into_iter()
            .map(|run| run.sequence)
            .max()
            .map_or(1, |highest| highest + 1);
        RunId {
            sequence,
            nonce: rand_nonce(),
        }
    }
}

fn rand_nonce() -> u32 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}-{:08x}", self.sequence, self.nonce)
    }
}

/// A text that is not a run id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a run id (expected <sequence>-<8 hex digits>)")]
pub struct RunIdError(String);

impl FromStr for RunId {
    type Err = RunIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RunIdError(text.to_owned());
        let (sequence, nonce) = text.split_once('-').ok_or_else(error)?;
        if nonce.len() != 8 || sequence.is_empty() {
            return Err(error());
        }
        Ok(RunId {
            sequence: sequence.parse().map_err(|_| error())?,
            nonce: u32::from_str_radix(nonce, 16).map_err(|_| error())?,
        })
    }
}

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A point in a job's history: the state after `epoch` of run `run`. Points of one
/// storage folder order by run, then epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct SnapshotId {
    /// The run that took it.
    pub run: RunId,
    /// The epoch it covers.
    pub epoch: u64,
}

impl SnapshotId {
    /// The point a name part `<run>-<epoch>` stands for; a bare `<epoch>` (names
    /// written before runs existed) is of the legacy run. Checkpoint folders,
    /// staged sink output and kept Kafka records are named so.
    pub fn parse_name(text: &str) -> Option<SnapshotId> {
        match text.rsplit_once('-') {
            Some((run, epoch)) => Some(SnapshotId {
                run: run.parse().ok()?,
                epoch: epoch.parse().ok()?,
            }),
            None => Some(SnapshotId {
                run: RunId::LEGACY,
                epoch: text.parse().ok()?,
            }),
        }
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {} epoch {}", self.run, self.epoch)
    }
}

/// What a run is: its id, and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// This run.
    pub id: RunId,
    /// The points this run's lineage was explicitly restored from (savepoints,
    /// checkpoints given by path), oldest first. A run that resumes the job's own
    /// latest checkpoint inherits the ancestry of the run it goes on from, so the
    /// list grows with restores the user (or the operator) asked for, not with
    /// every restart.
    pub ancestry: Vec<SnapshotId>,
}

/// The point a run restores, as [`RunInfo::start`] takes it.
#[derive(Clone, Copy, Debug)]
pub struct Restored<'a> {
    /// The point.
    pub point: SnapshotId,
    /// The ancestry of the run that took it.
    pub ancestry: &'a [SnapshotId],
    /// Whether it was named explicitly (recorded in the new run's ancestry) rather
    /// than found as the job's latest checkpoint (a resume).
    pub explicit: bool,
}

impl RunInfo {
    /// A run restoring `restored`, or starting from nothing, ordered after every
    /// run in `existing` and the restored point's.
    pub fn start<'a>(
        restored: Option<Restored<'_>>,
        existing: impl IntoIterator<Item = &'a RunId>,
    ) -> RunInfo {
        let mut ancestry = Vec::new();
        let mut runs: Vec<RunId> = existing.into_iter().copied().collect();
        if let Some(restored) = restored {
            ancestry.extend_from_slice(restored.ancestry);
            if restored.explicit {
                ancestry.push(restored.point);
            }
            runs.push(restored.point.run);
        }
        RunInfo {
            id: RunId::after(&runs),
            ancestry,
        }
    }
}

/// What the job's storage records of a run when it starts (`runs/<run>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run.
    pub run: RunInfo,
    /// The URL of the point it restored, if any.
    pub restored_from: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sequence: u32, nonce: u32) -> RunId {
        RunId { sequence, nonce }
    }

    #[test]
    fn run_ids_read_back_and_their_names_sort_by_sequence() {
        let ids = [run(2, 0xffff_ffff), run(10, 0), run(100, 7)];
        let names: Vec<String> = ids.iter().map(RunId::to_string).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "000002-ffffffff");
        for (id, name) in ids.iter().zip(&names) {
            assert_eq!(&name.parse::<RunId>().unwrap(), id);
        }
        for bad in ["", "12", "12-xyz", "12-0000000", "-00000000", "a-00000000"] {
            assert!(bad.parse::<RunId>().is_err(), "{bad:?} parsed");
        }
        let json = serde_json::to_string(&ids[0]).unwrap();
        assert_eq!(json, "\"000002-ffffffff\"");
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), ids[0]);
    }

    #[test]
    fn a_new_run_comes_after_every_run_it_knows_of() {
        assert_eq!(RunId::after(&[]).sequence, 1);
        assert_eq!(
            RunId::after(&[run(3, 1), run(9, 2), run(4, 3)]).sequence,
            10
        );
        // Restoring a point of another folder with a higher sequence.
        let restored = Restored {
            point: SnapshotId {
                run: run(12, 0),
                epoch: 40,
            },
            ancestry: &[],
            explicit: true,
        };
        let started = RunInfo::start(Some(restored), &[run(3, 1)]);
        assert_eq!(started.id.sequence, 13);
        // Points of one folder order by run first: a new run's early epochs come
        // after an abandoned run's late ones.
        let abandoned = SnapshotId {
            run: run(1, 9),
            epoch: 500,
        };
        let restored = SnapshotId {
            run: run(2, 0),
            epoch: 20,
        };
        assert!(abandoned < restored);
    }

    #[test]
    fn only_explicit_restores_grow_the_ancestry() {
        let savepoint = SnapshotId {
            run: run(1, 1),
            epoch: 30,
        };
        let rescaled = RunInfo::start(
            Some(Restored {
                point: savepoint,
                ancestry: &[],
                explicit: true,
            }),
            &[],
        );
        assert_eq!(rescaled.ancestry, vec![savepoint]);
        // A pod restarting resumes the rescaled run's checkpoint: same ancestry.
        let resumed = RunInfo::start(
            Some(Restored {
                point: SnapshotId {
                    run: rescaled.id,
                    epoch: 90,
                },
                ancestry: &rescaled.ancestry,
                explicit: false,
            }),
            &[rescaled.id],
        );
        assert_eq!(resumed.ancestry, vec![savepoint]);
        assert!(resumed.id > rescaled.id);
    }
}
