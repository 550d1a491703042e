//! Flink's built-in scalar functions that DataFusion lacks, or has under the same
//! name with another meaning, registered as DataFusion functions.
//!
//! | Flink | Notes |
//! |---|---|
//! | `SPLIT_INDEX(s, delimiter, i)` | 0-based; the delimiter may be the code (1 to 255) of a character |
//! | `LOCATE(needle, s [, from])` | 1-based, 0 when not found |
//! | `CONCAT(s1, s2, ...)` | null if any argument is null (DataFusion's skips nulls) |
//! | `REGEXP_EXTRACT(s, regex [, group])` | group 0 (the whole match) by default |
//! | `REGEXP_REPLACE(s, regex, replacement)` | every match, the replacement taken literally |
//! | `MOD(a, b)` | integers; the sign of `a`, the type of `b` |
//! | `IF(condition, a, b)` | the common type of `a` and `b` |
//! | `IFNULL(a, b)` | the common type of `a` and `b` |
//! | `DATE_FORMAT(timestamp or string, pattern)` | Java pattern letters, see [`java_pattern`] |
//! | `TO_TIMESTAMP(s [, pattern])` | TIMESTAMP(3) |
//! | `TO_TIMESTAMP_LTZ(epoch [, precision])`, `TO_TIMESTAMP_LTZ(s [, pattern])` | TIMESTAMP_LTZ(3); precision 0 (seconds) or 3 (milliseconds, the default) |
//! | `LOCALTIMESTAMP` | TIMESTAMP(3), now in UTC |
//! | `FLOOR(t TO unit)`, `CEIL(t TO unit)` | `t`'s type; Flink's results where they surprise (`time_units.rs`) |
//! | `TIMESTAMPADD(unit, n, t)` | `t`'s type |
//! | `TIMESTAMPDIFF(unit, t1, t2)` | INT: whole units from `t1` to `t2` |
//! | `TO_DATE(s [, pattern])` | DATE |
//! | `FROM_UNIXTIME(seconds [, pattern])` | STRING |
//! | `UNIX_TIMESTAMP([s [, pattern]])` | BIGINT seconds |
//! | `YEAR`, `QUARTER`, `MONTH`, `WEEK`, `DAYOFYEAR`, `DAYOFMONTH`, `DAYOFWEEK`, `HOUR`, `MINUTE`, `SECOND` | BIGINT |
//!
//! DataFusion's own `CHAR_LENGTH`, `CONCAT_WS`, `INSTR` and `POSITION(a IN b)`
//! already have Flink's meaning and are left alone. `CAST(x AS STRING)` of a
//! BOOLEAN or TIMESTAMP writes Flink's form (see [`cast_to_string`]).
//!
//! What Flink does, these do: a null argument gives null, an index out of range
//! gives null, a string that does not parse gives null (`UNIX_TIMESTAMP` gives
//! `Long.MIN_VALUE`, as Flink documents), `MOD` by zero fails the job as Flink's
//! does. Where they differ:
//! - The session time zone is UTC: `TIMESTAMP_LTZ` values, `FROM_UNIXTIME` and
//!   `UNIX_TIMESTAMP` are read and written in UTC (Flink's default is the
//!   machine's zone; `table.local-time-zone` is not read yet).
//! - Regular expressions are Rust's (the `regex` crate), not Java's: no
//!   look-around and no back-references, and `\d`, `\w`, `\s` take any
//!   Unicode digit, letter, space. A literal regular expression that does
//!   not compile is refused when the query is planned, naming the function and
//!   the error; one that comes from a column gives null, as Flink does.
//! - A literal date pattern with letters outside [`java_pattern`]'s set is
//!   refused when planned; a pattern from a column that does not translate fails
//!   the job, as an invalid pattern does in Flink.
//! - Dates that do not exist (February 30) give null where Java's parsers
//!   resolve them (`SimpleDateFormat` rolls them over to March,
//!   `DateTimeFormatter` moves them to the month's last day), except in Flink's
//!   default timestamp format (`TO_TIMESTAMP` without a pattern, or when its
//!   pattern does not fit), read as `DateTimeFormatter` reads it: February 30
//!   is February 29.
//! - `IF` computes both branches before choosing (it is a function here, not a
//!   `CASE`), so an error in the branch not taken still fails.

mod args;
mod builtin;
mod cast;
mod conditional;
mod datetime;
pub mod java_pattern;
mod numeric;
mod regexp;
mod strings;
#[cfg(test)]
mod tests;
mod time_units;

pub use time_units::{CEIL_TO, FLOOR_TO};

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::ScalarUDF;

/// Adds Flink's built-ins to the planner's functions, replacing DataFusion's
/// functions of the same name (`to_timestamp`, `date_format`, ...).
pub fn register(state: &mut SessionState) {
    for function in builtins() {
        state
            .register_udf(Arc::new(ScalarUDF::new_from_impl(function)))
            .expect("a SessionState registers any function");
    }
}

/// The function that writes a value of `data_type` as Flink's `CAST(value AS
/// STRING)` does, where Arrow's cast writes it otherwise (a BOOLEAN as `TRUE`,
/// a TIMESTAMP as `yyyy-MM-dd HH:mm:ss.SSS`); `None` where Arrow's cast
/// writes what Flink does. It is not registered: no SQL calls it by name.
pub fn cast_to_string(data_type: &DataType) -> Option<ScalarUDF> {
    cast::writes_differently(data_type).then(|| ScalarUDF::new_from_impl(cast::cast_to_string()))
}

/// Every built-in of this module.
fn builtins() -> Vec<builtin::Builtin> {
    let mut all = vec![
        strings::split_index(),
        strings::locate(),
        strings::concat(),
        regexp::regexp_extract(),
        regexp::regexp_replace(),
        numeric::modulo(),
        conditional::if_function(),
        conditional::if_null(),
        datetime::date_format(),
        datetime::to_timestamp(),
        datetime::to_date(),
        datetime::from_unixtime(),
        datetime::unix_timestamp(),
        datetime::to_timestamp_ltz(),
        datetime::localtimestamp(),
        time_units::floor_to(),
        time_units::ceil_to(),
        time_units::timestampadd(),
        time_units::timestampdiff(),
    ];
    all.extend(datetime::date_parts());
    all
}
