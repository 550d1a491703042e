//! Which savepoints of a deployment are deleted when another completes
//! (`state.retainedSavepoints`, `state.savepointMaxAge`): pure, so every case is a
//! table test; [`super::CheckpointStorage::dispose_old_savepoints`] does the I/O.

use std::time::Duration;

/// How many savepoints of a deployment are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SavepointRetention {
    /// The newest this many are kept; all when `None`.
    pub max_count: Option<usize>,
    /// Older ones are deleted (the newest never); none for age when `None`.
    pub max_age: Option<Duration>,
}

/// A completed savepoint, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointAge {
    /// Its URL.
    pub url: String,
    /// When it completed, milliseconds since the Unix epoch.
    pub completed_at_ms: u64,
}

/// The savepoints among `savepoints` to delete at `now_ms`: beyond the newest
/// `max_count`, or older than `max_age` — never the newest, nor one in
/// `protected` (the point the deployment restored from).
pub fn savepoints_to_delete(
    savepoints: &[SavepointAge],
    retention: &SavepointRetention,
    protected: &[String],
    now_ms: u64,
) -> Vec<String> {
    let mut newest_first: Vec<&SavepointAge> = savepoints.iter().collect();
    newest_first.sort_by(|a, b| {
        b.completed_at_ms
            .cmp(&a.completed_at_ms)
            .then_with(|| b.url.cmp(&a.url))
    });
    let max_age_ms = retention
        .max_age
        .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
    newest_first
        .into_iter()
        .enumerate()
        .filter(|(rank, savepoint)| {
            let beyond_count = retention.max_count.is_some_and(|count| *rank >= count);
            let too_old = max_age_ms
                .is_some_and(|age| now_ms.saturating_sub(savepoint.completed_at_ms) > age);
            *rank > 0 && (beyond_count || too_old) && !protected.contains(&savepoint.url)
        })
        .map(|(_, savepoint)| savepoint.url.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    fn savepoints(hours_ago: &[u64], now_ms: u64) -> Vec<SavepointAge> {
        hours_ago
            .iter()
            .map(|hours| SavepointAge {
                url: format!("s3://b/job/run/savepoints/sp-{hours}h"),
                completed_at_ms: now_ms - hours * HOUR_MS,
            })
            .collect()
    }

    fn url(hours: u64) -> String {
        format!("s3://b/job/run/savepoints/sp-{hours}h")
    }

    #[test]
    fn the_oldest_beyond_the_count_go() {
        let now = 100 * HOUR_MS;
        let all = savepoints(&[5, 1, 3, 2, 4], now);
        let retention = SavepointRetention {
            max_count: Some(3),
            max_age: None,
        };
        let mut deleted = savepoints_to_delete(&all, &retention, &[], now);
        deleted.sort();
        assert_eq!(deleted, [url(4), url(5)]);
        assert!(savepoints_to_delete(&all, &SavepointRetention::default(), &[], now).is_empty());
    }

    #[test]
    fn those_older_than_the_age_go_but_never_the_newest() {
        let now = 100 * HOUR_MS;
        let retention = SavepointRetention {
            max_count: None,
            max_age: Some(Duration::from_secs(24 * 3600)),
        };
        let all = savepoints(&[1, 23, 25, 48], now);
        let mut deleted = savepoints_to_delete(&all, &retention, &[], now);
        deleted.sort();
        assert_eq!(deleted, [url(25), url(48)]);
        // All old: the newest stays.
        let old = savepoints(&[30, 40], now);
        assert_eq!(savepoints_to_delete(&old, &retention, &[], now), [url(40)]);
    }

    #[test]
    fn the_point_the_deployment_restored_from_stays() {
        let now = 100 * HOUR_MS;
        let all = savepoints(&[1, 2, 3], now);
        let retention = SavepointRetention {
            max_count: Some(1),
            max_age: None,
        };
        assert_eq!(
            savepoints_to_delete(&all, &retention, &[url(3)], now),
            [url(2)]
        );
    }
}
