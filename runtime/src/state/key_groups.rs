//! Key groups: the unit in which keyed state is partitioned and moved on rescale.
//!
//! A key hashes to one of `maxParallelism` key groups; subtask `i` of `parallelism`
//! owns a contiguous range of them (Flink's model). State is stored under its key
//! group, so restoring at another parallelism moves whole key groups and never
//! rehashes a key. `maxParallelism` is therefore fixed for the life of a job.
//!
//! The hash must be the same in every process, on every run and in every version of
//! Strom: it is xxHash64 with a fixed seed over the key's bytes, never Rust's
//! randomly seeded `DefaultHasher`. A test pins known values.

use std::ops::Range;

use strom_crds::stream_job::MAX_MAX_PARALLELISM;
use xxhash_rust::xxh64::xxh64;

/// Seed of the key hash. Changing it would scatter every saved state: never change it.
const KEY_HASH_SEED: u64 = 0x5354_524f_4d4b_4731; // "STROMKG1"

/// The most key groups a job may have: the StreamJob API's limit on `maxParallelism`.
pub const MAX_KEY_GROUPS: u32 = MAX_MAX_PARALLELISM as u32;

/// One key group, in `0..maxParallelism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGroup(pub u16);

impl KeyGroup {
    /// The key group of a key, given as the bytes of its stable encoding.
    pub fn of_key(key: &[u8], max_parallelism: u32) -> Self {
        debug_assert!((1..=MAX_KEY_GROUPS).contains(&max_parallelism));
        let group = xxh64(key, KEY_HASH_SEED) % u64::from(max_parallelism);
        Self(group as u16) // < max_parallelism <= MAX_KEY_GROUPS, which fits in u16
    }

    /// The key group as an index.
    pub fn index(self) -> u32 {
        u32::from(self.0)
    }
}

/// A contiguous range of key groups, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: u32,
    /// One past the last key group of the range.
    pub end: u32,
}

impl KeyGroupRange {
    /// Whether the range holds `group`.
    pub fn contains(self, group: KeyGroup) -> bool {
        (self.start..self.end).contains(&group.index())
    }

    /// Number of key groups in the range.
    pub fn len(self) -> u32 {
        self.end - self.start
    }

    /// Whether the range holds no key group.
    pub fn is_empty(self) -> bool {
        self.start >= self.end
    }

    /// The key groups both ranges hold.
    pub fn intersection(self, other: Self) -> Self {
        let start = self.start.max(other.start);
        Self {
            start,
            end: self.end.min(other.end).max(start),
        }
    }

    /// The range as indices.
    pub fn indices(self) -> Range<u32> {
        self.start..self.end
    }
}

/// Why a parallelism and a number of key groups do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitioningError {
    /// maxParallelism is 0 or above [`MAX_KEY_GROUPS`].
    #[error("maxParallelism {0} is outside 1..={MAX_KEY_GROUPS}")]
    MaxParallelism(u32),
    /// parallelism is 0 or above maxParallelism, so some subtask would own no key group.
    #[error("parallelism {parallelism} is outside 1..={max_parallelism} (maxParallelism)")]
    Parallelism {
        /// The parallelism asked for.
        parallelism: u32,
        /// The job's number of key groups.
        max_parallelism: u32,
    },
}

/// How a job's key groups are split among its subtasks at one parallelism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioning {
    parallelism: u32,
    max_parallelism: u32,
}

impl Partitioning {
    /// `parallelism` subtasks over `max_parallelism` key groups.
    pub fn new(parallelism: u32, max_parallelism: u32) -> Result<Self, PartitioningError> {
        if !(1..=MAX_KEY_GROUPS).contains(&max_parallelism) {
            return Err(PartitioningError::MaxParallelism(max_parallelism));
        }
        if !(1..=max_parallelism).contains(&parallelism) {
            return Err(PartitioningError::Parallelism {
                parallelism,
                max_parallelism,
            });
        }
        Ok(Self {
            parallelism,
            max_parallelism,
        })
    }

    /// Number of subtasks.
    pub fn parallelism(self) -> u32 {
        self.parallelism
    }

    /// Number of key groups.
    pub fn max_parallelism(self) -> u32 {
        self.max_parallelism
    }

    /// The key group of a key.
    pub fn key_group(self, key: &[u8]) -> KeyGroup {
        KeyGroup::of_key(key, self.max_parallelism)
    }

    /// The subtask that owns a key group: `group * parallelism / maxParallelism`.
    pub fn subtask_of(self, group: KeyGroup) -> u32 {
        (u64::from(group.index()) * u64::from(self.parallelism) / u64::from(self.max_parallelism))
            as u32
    }

    /// The subtask that owns a key.
    pub fn subtask_of_key(self, key: &[u8]) -> u32 {
        self.subtask_of(self.key_group(key))
    }

    /// The key groups subtask `subtask` owns: exactly those for which
    /// [`subtask_of`](Self::subtask_of) gives `subtask`.
    pub fn key_groups_of(self, subtask: u32) -> KeyGroupRange {
        debug_assert!(subtask < self.parallelism);
        // The smallest group g with g * p / m >= i is ceil(i * m / p).
        let boundary = |i: u32| {
            let (i, p, m) = (
                u64::from(i),
                u64::from(self.parallelism),
                u64::from(self.max_parallelism),
            );
            (i * m).div_ceil(p) as u32
        };
        KeyGroupRange {
            start: boundary(subtask),
            end: boundary(subtask + 1),
        }
    }

    /// The subtasks of this partitioning whose key groups overlap `range`: on a
    /// rescale, the old subtasks whose state a new subtask restores from.
    pub fn subtasks_overlapping(self, range: KeyGroupRange) -> Range<u32> {
        if range.is_empty() {
            return 0..0;
        }
        let first = self.subtask_of(KeyGroup(range.start as u16));
        let last = self.subtask_of(KeyGroup((range.end - 1) as u16));
        first..last + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any valid (parallelism, maxParallelism).
    fn partitionings() -> impl Strategy<Value = Partitioning> {
        (1..=MAX_KEY_GROUPS)
            .prop_flat_map(|max| (1..=max, Just(max)))
            .prop_map(|(p, max)| Partitioning::new(p, max).unwrap())
    }

    #[test]
    fn the_key_hash_never_changes() {
        // Saved state depends on these values; a change here is a breaking change.
        let groups: Vec<u16> = ["", "user-1", "user-42", "a much longer key with spaces"]
            .iter()
            .map(|key| KeyGroup::of_key(key.as_bytes(), 128).0)
            .collect();
        assert_eq!(groups, PINNED_GROUPS);
    }

    /// xxHash64 with [`KEY_HASH_SEED`], modulo 128, as the reference implementation
    /// (Python's `xxhash` package) computes it.
    const PINNED_GROUPS: [u16; 4] = [6, 62, 83, 124];

    #[test]
    fn keys_spread_evenly_over_key_groups() {
        let mut counts = [0u32; 128];
        for i in 0..128_000u32 {
            counts[KeyGroup::of_key(&i.to_le_bytes(), 128).0 as usize] += 1;
        }
        // 1000 expected per group; a uniform hash stays well within ±15%.
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "min {min}, max {max}");
    }

    #[test]
    fn invalid_partitionings_are_refused() {
        assert_eq!(
            Partitioning::new(1, 0),
            Err(PartitioningError::MaxParallelism(0))
        );
        assert_eq!(
            Partitioning::new(1, 40000),
            Err(PartitioningError::MaxParallelism(40000))
        );
        assert!(matches!(
            Partitioning::new(0, 128),
            Err(PartitioningError::Parallelism { .. })
        ));
        assert!(matches!(
            Partitioning::new(129, 128),
            Err(PartitioningError::Parallelism { .. })
        ));
    }

    #[test]
    fn ranges_match_flink_for_a_known_case() {
        let partitioning = Partitioning::new(3, 128).unwrap();
        let ranges: Vec<(u32, u32)> = (0..3)
            .map(|i| partitioning.key_groups_of(i))
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(ranges, [(0, 43), (43, 86), (86, 128)]);
    }

    proptest! {
        #[test]
        fn subtask_ranges_tile_all_key_groups(partitioning in partitionings()) {
            let mut next = 0;
            for subtask in 0..partitioning.parallelism() {
                let range = partitioning.key_groups_of(subtask);
                prop_assert_eq!(range.start, next);
                prop_assert!(!range.is_empty(), "subtask {} owns no key group", subtask);
                next = range.end;
            }
            prop_assert_eq!(next, partitioning.max_parallelism());
        }

        #[test]
        fn a_key_group_lies_in_the_range_of_its_subtask(
            partitioning in partitionings(),
            group in 0..MAX_KEY_GROUPS,
        ) {
            let group = KeyGroup((group % partitioning.max_parallelism()) as u16);
            let subtask = partitioning.subtask_of(group);
            prop_assert!(subtask < partitioning.parallelism());
            prop_assert!(partitioning.key_groups_of(subtask).contains(group));
        }

        #[test]
        fn a_rescale_reads_exactly_the_overlapping_old_subtasks(
            max in 1..=1024u32,
            old in 1..=1024u32,
            new in 1..=1024u32,
        ) {
            let (old, new) = (old.min(max), new.min(max));
            let old = Partitioning::new(old, max).unwrap();
            let new = Partitioning::new(new, max).unwrap();
            for subtask in 0..new.parallelism() {
                let range = new.key_groups_of(subtask);
                let sources = old.subtasks_overlapping(range);
                for old_subtask in 0..old.parallelism() {
                    let overlaps = !old.key_groups_of(old_subtask).intersection(range).is_empty();
                    prop_assert_eq!(overlaps, sources.contains(&old_subtask));
                }
            }
        }
    }
}
