//! The `SET 'key' = 'value'` options of a script that change how its queries
//! run: what Strom implements, what it ignores because only performance or a
//! batch job depends on it, and what it refuses because ignoring it would
//! change the results (Flink's `table.exec.*` and `table.optimizer.*` keys).
//!
//! Keys outside those two families (`pipeline.name`, `parallelism.default`,
//! ...) are accepted and ignored as before: they configure the Flink cluster,
//! which Strom's own job settings replace.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::{Position, SqlError, SqlResult};

/// Idle state retention of updating operators (Flink's `table.exec.state.ttl`).
pub const STATE_TTL: &str = "table.exec.state.ttl";

/// How long a source split may be idle before watermarks go on without it.
pub const SOURCE_IDLE_TIMEOUT: &str = "table.exec.source.idle-timeout";

/// What Strom does with a `table.exec.*` or `table.optimizer.*` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    /// Strom implements it; its value must parse.
    Implemented,
    /// Only performance (or a batch job, or Flink's plan) depends on it.
    Ignored,
    /// Accepted at the listed values (Flink's default, and any Strom behaves
    /// as): another value would change the results.
    OnlyAt(&'static [&'static str]),
}

/// Every `table.exec.*` / `table.optimizer.*` key Strom knows, and what it
/// does with it (docs/architecture.md lists the same).
const KEYS: &[(&str, Handling)] = &[
    (STATE_TTL, Handling::Implemented),
    (SOURCE_IDLE_TIMEOUT, Handling::Implemented),
    // Mini-batches only group the work: the results are the same.
    ("table.exec.mini-batch.enabled", Handling::Ignored),
    ("table.exec.mini-batch.allow-latency", Handling::Ignored),
    ("table.exec.mini-batch.size", Handling::Ignored),
    // Parallelism, buffers, caches and operator names.
    ("table.exec.resource.default-parallelism", Handling::Ignored),
    ("table.exec.sink.keyed-shuffle", Handling::Ignored),
    ("table.exec.rank.topn-cache-size", Handling::Ignored),
    ("table.exec.window-agg.buffer-size-limit", Handling::Ignored),
    (
        "table.exec.interval-join.min-cleanup-interval",
        Handling::Ignored,
    ),
    (
        "table.exec.simplify-operator-name-enabled",
        Handling::Ignored,
    ),
    ("table.exec.uid.generation", Handling::Ignored),
    ("table.exec.uid.format", Handling::Ignored),
    ("table.exec.legacy-transformation-uids", Handling::Ignored),
    (
        "table.exec.deduplicate.mini-batch.compact-changes-enabled",
        Handling::Ignored,
    ),
    // Lookup joins and asynchronous functions, which Strom does not have (a
    // query using them is refused where it is planned).
    ("table.exec.async-lookup.buffer-capacity", Handling::Ignored),
    ("table.exec.async-lookup.timeout", Handling::Ignored),
    ("table.exec.async-lookup.output-mode", Handling::Ignored),
    (
        "table.exec.async-lookup.key-ordered-enabled",
        Handling::Ignored,
    ),
    ("table.exec.async-scalar.buffer-capacity", Handling::Ignored),
    ("table.exec.async-scalar.timeout", Handling::Ignored),
    ("table.exec.async-scalar.retry-strategy", Handling::Ignored),
    ("table.exec.async-scalar.retry-delay", Handling::Ignored),
    ("table.exec.async-scalar.max-attempts", Handling::Ignored),
    ("table.exec.async-table.buffer-capacity", Handling::Ignored),
    ("table.exec.async-table.timeout", Handling::Ignored),
    // Batch execution only.
    ("table.exec.disabled-operators", Handling::Ignored),
    ("table.exec.shuffle-mode", Handling::Ignored),
    ("table.exec.sort.default-limit", Handling::Ignored),
    ("table.exec.sort.max-num-file-handles", Handling::Ignored),
    ("table.exec.sort.async-merge-enabled", Handling::Ignored),
    ("table.exec.spill-compression.enabled", Handling::Ignored),
    ("table.exec.spill-compression.block-size", Handling::Ignored),
    ("table.exec.range-sort.enabled", Handling::Ignored),
    ("table.exec.non-temporal-sort.enabled", Handling::Ignored),
    // How Flink's optimizer shapes the plan; Strom plans its own.
    ("table.optimizer.agg-phase-strategy", Handling::Ignored),
    (
        "table.optimizer.distinct-agg.split.enabled",
        Handling::Ignored,
    ),
    (
        "table.optimizer.distinct-agg.split.bucket-num",
        Handling::Ignored,
    ),
    ("table.optimizer.incremental-agg-enabled", Handling::Ignored),
    ("table.optimizer.reuse-sub-plan-enabled", Handling::Ignored),
    ("table.optimizer.reuse-source-enabled", Handling::Ignored),
    ("table.optimizer.reuse-sink-enabled", Handling::Ignored),
    (
        "table.optimizer.reuse-optimize-block-with-digest-enabled",
        Handling::Ignored,
    ),
    (
        "table.optimizer.source.predicate-pushdown-enabled",
        Handling::Ignored,
    ),
    (
        "table.optimizer.source.aggregate-pushdown-enabled",
        Handling::Ignored,
    ),
    (
        "table.optimizer.source.report-statistics-enabled",
        Handling::Ignored,
    ),
    ("table.optimizer.join-reorder-enabled", Handling::Ignored),
    (
        "table.optimizer.bushy-join-reorder-threshold",
        Handling::Ignored,
    ),
    (
        "table.optimizer.join.broadcast-threshold",
        Handling::Ignored,
    ),
    ("table.optimizer.multiple-input-enabled", Handling::Ignored),
    (
        "table.optimizer.dynamic-filtering.enabled",
        Handling::Ignored,
    ),
    ("table.optimizer.runtime-filter.enabled", Handling::Ignored),
    (
        "table.optimizer.union-all-as-breakpoint-enabled",
        Handling::Ignored,
    ),
    (
        "table.optimizer.sql2rel.project-merge.enabled",
        Handling::Ignored,
    ),
    (
        "table.optimizer.adaptive-broadcast-join.strategy",
        Handling::Ignored,
    ),
    (
        "table.optimizer.skewed-join-optimization.strategy",
        Handling::Ignored,
    ),
    // Ignoring any other value would change the results.
    (
        "table.exec.sink.not-null-enforcer",
        Handling::OnlyAt(&["error"]),
    ),
    (
        "table.exec.sink.type-length-enforcer",
        Handling::OnlyAt(&["ignore"]),
    ),
    (
        "table.exec.sink.upsert-materialize",
        Handling::OnlyAt(&["auto", "none"]),
    ),
    (
        "table.exec.source.cdc-events-duplicate",
        Handling::OnlyAt(&["false"]),
    ),
    (
        "table.exec.legacy-cast-behaviour",
        Handling::OnlyAt(&["disabled"]),
    ),
    (
        "table.exec.emit.early-fire.enabled",
        Handling::OnlyAt(&["false"]),
    ),
    (
        "table.exec.emit.late-fire.enabled",
        Handling::OnlyAt(&["false"]),
    ),
    (
        "table.exec.emit.allow-lateness",
        Handling::OnlyAt(&["0", "0 ms"]),
    ),
    (
        "table.exec.deduplicate.insert-update-after-sensitive-enabled",
        Handling::OnlyAt(&["true"]),
    ),
    (
        "table.optimizer.non-deterministic-update.strategy",
        Handling::OnlyAt(&["ignore"]),
    ),
];

/// Checks `SET 'key' = 'value'` (at `at`): an implemented key's value must
/// parse, a key whose value Strom would not honour is refused naming it.
pub fn check(key: &str, value: &str, at: Option<Position>) -> SqlResult<()> {
    if !key.starts_with("table.exec.") && !key.starts_with("table.optimizer.") {
        return Ok(());
    }
    match KEYS.iter().find(|(known, _)| *known == key) {
        Some((_, Handling::Implemented)) => duration(key, value, at).map(|_| ()),
        Some((_, Handling::Ignored)) => Ok(()),
        Some((_, Handling::OnlyAt(values))) => {
            let given = value.trim().to_ascii_lowercase();
            if values.contains(&given.as_str()) {
                Ok(())
            } else {
                Err(SqlError::new(
                    format!(
                        "SET '{key}' = '{value}' is not supported: Strom runs as '{key}' = '{}' does",
                        values[0]
                    ),
                    at,
                ))
            }
        }
        None => Err(SqlError::new(
            format!(
                "SET '{key}': Strom does not implement this option and cannot tell whether ignoring it would change the results; remove it (docs/architecture.md lists the options Strom takes)"
            ),
            at,
        )),
    }
}

/// `table.exec.state.ttl`: how long a key's state may go unread and unwritten
/// before it is dropped; none (`0`, Flink's default) keeps state for ever.
pub fn state_ttl(settings: &BTreeMap<String, String>) -> SqlResult<Option<Duration>> {
    optional_duration(settings, STATE_TTL)
}

/// A state TTL in whole milliseconds (at least 1), as the keyed SQL operators
/// compare it with [`processing_time_ms`].
pub fn ttl_millis(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// The processing time (the wall clock) in milliseconds since the epoch: what
/// a state TTL is measured in, as in Flink.
pub fn processing_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// `table.exec.source.idle-timeout`; none (`0`, Flink's default) never takes a
/// split for idle.
pub fn source_idle_timeout(settings: &BTreeMap<String, String>) -> SqlResult<Option<Duration>> {
    optional_duration(settings, SOURCE_IDLE_TIMEOUT)
}

fn optional_duration(
    settings: &BTreeMap<String, String>,
    key: &str,
) -> SqlResult<Option<Duration>> {
    match settings.get(key) {
        None => Ok(None),
        Some(value) => Ok(Some(duration(key, value, None)?).filter(|value| !value.is_zero())),
    }
}

fn duration(key: &str, value: &str, at: Option<Position>) -> SqlResult<Duration> {
    parse_duration(value).ok_or_else(|| {
        SqlError::new(
            format!(
                "SET '{key}' = '{value}': expected a duration such as '5 s' or '500 ms' ('1 h', '30 min', '1 d'; a number without a unit is milliseconds)"
            ),
            at,
        )
    })
}

/// A duration as Flink's `TimeUtils.parseDuration` reads one: a number and a
/// unit label (`d`, `h`, `min`/`m`, `s`, `ms`, `µs`, `ns` and their long forms,
/// singular or plural, any case), spaces allowed between; a number alone is
/// milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit = text[digits..].trim().to_lowercase();
    let nanos: u64 = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        "h" | "hour" | "hours" => 3_600_000_000_000,
        "min" | "m" | "minute" | "minutes" => 60_000_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "µs" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        _ => return None,
    };
    Some(Duration::from_nanos(number.checked_mul(nanos)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_flink_reads_them() {
        let ms = |millis| Some(Duration::from_millis(millis));
        for (text, expected) in [
            ("1 h", ms(3_600_000)),
            ("3600000 ms", ms(3_600_000)),
            ("1d", ms(86_400_000)),
            ("2 DAYS", ms(172_800_000)),
            ("30 min", ms(1_800_000)),
            ("30m", ms(1_800_000)),
            ("10 s", ms(10_000)),
            ("5 seconds", ms(5_000)),
            ("1500", ms(1_500)),
            (" 0 ", ms(0)),
            ("7 µs", Some(Duration::from_micros(7))),
            ("7ns", Some(Duration::from_nanos(7))),
        ] {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
        for text in ["", "h", "1 hr", "-1 s", "1.5 s", "PT1H"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn keys_are_taken_ignored_or_refused() {
        assert!(check(STATE_TTL, "1 h", None).is_ok());
        assert!(
            check(STATE_TTL, "an hour", None)
                .unwrap_err()
                .message
                .contains(STATE_TTL)
        );
        assert!(check("table.exec.mini-batch.enabled", "true", None).is_ok());
        assert!(check("table.optimizer.agg-phase-strategy", "TWO_PHASE", None).is_ok());
        assert!(check("table.exec.sink.not-null-enforcer", "ERROR", None).is_ok());
        let refused = check("table.exec.sink.not-null-enforcer", "DROP", None).unwrap_err();
        assert!(
            refused
                .message
                .contains("'table.exec.sink.not-null-enforcer' = 'DROP'"),
            "{refused}"
        );
        let unknown = check("table.exec.made-up", "1", None).unwrap_err();
        assert!(unknown.message.contains("table.exec.made-up"), "{unknown}");
        assert!(check("pipeline.name", "anything", None).is_ok());
    }

    #[test]
    fn a_zero_ttl_keeps_state_for_ever() {
        let mut settings = BTreeMap::new();
        assert_eq!(state_ttl(&settings).unwrap(), None);
        settings.insert(STATE_TTL.to_owned(), "0 ms".to_owned());
        assert_eq!(state_ttl(&settings).unwrap(), None);
        settings.insert(STATE_TTL.to_owned(), "1 h".to_owned());
        assert_eq!(
            state_ttl(&settings).unwrap(),
            Some(Duration::from_secs(3_600))
        );
    }
}
