//! Flink's functions of a unit of time: `FLOOR(t TO unit)`, `CEIL(t TO unit)`,
//! `TIMESTAMPADD(unit, n, t)` and `TIMESTAMPDIFF(unit, t1, t2)`, for the units
//! SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER and YEAR.
//!
//! The unit is a keyword in SQL; [`crate::sql::flink_syntax`] rewrites it into
//! a string literal (and `FLOOR(t TO unit)` into `floor_to(t, 'UNIT')`), which
//! these functions read. Date-times are in UTC, the session time zone, and
//! computed in milliseconds as Flink's are (a TIMESTAMP(6)'s microseconds are
//! dropped by `FLOOR`, `CEIL` and `TIMESTAMPDIFF`, kept by `TIMESTAMPADD`).
//!
//! Where Flink (Calcite's `DateTimeUtils`) computes something unexpected, so
//! do these, for the same results:
//! - `CEIL` to WEEK, MONTH, QUARTER or YEAR looks at the date alone:
//!   `CEIL(TIMESTAMP '2024-03-01 10:00:00' TO MONTH)` is `2024-03-01 00:00:00`;
//!   and `CEIL` to QUARTER of the first day of a quarter other than the first
//!   is the next quarter (`2024-04-01` gives `2024-07-01`).
//! - `TIMESTAMPDIFF` in MONTH, QUARTER or YEAR counts the months between the
//!   dates and takes one off when the dates are the same day of the month and
//!   the later time of day is `t1`'s, so a negative difference can be one more
//!   month than a whole one (`TIMESTAMPDIFF(MONTH, TIMESTAMP '2024-02-01
//!   10:00:00', TIMESTAMP '2024-01-01 00:00:00')` is -2).
//! - `TIMESTAMPDIFF` is an INT: a difference of more than 2^31 units wraps.
//!
//! Weeks start on Sunday. Before 1970, `FLOOR` and `CEIL` take the day a
//! date-time is in, where Flink's integer division takes the next day for
//! date-times after midnight (a bug not copied).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::DataType;
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};

use super::args::{Call, Param, Strings, literal_string, try_date_time_results};
use super::builtin::{Builtin, Returns};

/// The name DataFusion knows `FLOOR(t TO unit)` by: `floor_to(t, 'UNIT')`.
pub const FLOOR_TO: &str = "floor_to";

/// The name DataFusion knows `CEIL(t TO unit)` by: `ceil_to(t, 'UNIT')`.
pub const CEIL_TO: &str = "ceil_to";

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A unit of time of these functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// The units, as Flink names them, for messages.
const UNIT_NAMES: &str = "SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER, YEAR";

impl Unit {
    /// The unit named so (upper or lower case, singular or plural).
    pub fn named(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_uppercase();
        Some(match name.strip_suffix('S').unwrap_or(&name) {
            "SECOND" => Unit::Second,
            "MINUTE" => Unit::Minute,
            "HOUR" => Unit::Hour,
            "DAY" => Unit::Day,
            "WEEK" => Unit::Week,
            "MONTH" => Unit::Month,
            "QUARTER" => Unit::Quarter,
            "YEAR" => Unit::Year,
            _ => return None,
        })
    }

    /// Its length in milliseconds, for units shorter than a month.
    fn millis(self) -> Option<i64> {
        match self {
            Unit::Second => Some(1_000),
            Unit::Minute => Some(60_000),
            Unit::Hour => Some(3_600_000),
            Unit::Day => Some(MILLIS_PER_DAY),
            Unit::Week => Some(7 * MILLIS_PER_DAY),
            Unit::Month | Unit::Quarter | Unit::Year => None,
        }
    }

    /// Its length in months, for the others.
    fn months(self) -> i32 {
        match self {
            Unit::Quarter => 3,
            Unit::Year => 12,
            _ => 1,
        }
    }
}

/// `FLOOR(t TO unit)`: the start of the unit `t` is in, of `t`'s type.
pub fn floor_to() -> Builtin {
    Builtin::new(
        "FLOOR",
        &[&[Param::Timestamp, Param::String]],
        Returns::ArgumentType(0),
        |call| round_to(call, floor),
    )
    .called_in_sql(FLOOR_TO)
    .checking_literals(|literals| check_unit("FLOOR", literals, 1))
}

/// `CEIL(t TO unit)`: `t` if it starts a unit, else the start of the next.
pub fn ceil_to() -> Builtin {
    Builtin::new(
        "CEIL",
        &[&[Param::Timestamp, Param::String]],
        Returns::ArgumentType(0),
        |call| round_to(call, ceil),
    )
    .called_in_sql(CEIL_TO)
    .checking_literals(|literals| check_unit("CEIL", literals, 1))
}

/// `TIMESTAMPADD(unit, n, t)`: `t` plus `n` units, of `t`'s type; a month
/// added to a day its month lacks is the month's last day (January 31 plus a
/// month is February 28 or 29). A DATE plus hours, minutes or seconds is a
/// TIMESTAMP(3), as in Flink (the unit a literal; otherwise a DATE takes DAY or
/// longer units).
pub fn timestampadd() -> Builtin {
    Builtin::new(
        "TIMESTAMPADD",
        &[
            &[Param::String, Param::Integer, Param::Timestamp],
            &[Param::String, Param::Integer, Param::Date],
        ],
        Returns::Derived(|types, literals| {
            let unit = literal_string(literals.first().copied().flatten()).and_then(Unit::named);
            match (&types[2], unit) {
                (DataType::Date32, Some(Unit::Second | Unit::Minute | Unit::Hour)) => {
                    DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None)
                }
                (other, _) => other.clone(),
            }
        }),
        evaluate_timestampadd,
    )
    .checking_literals(|literals| check_unit("TIMESTAMPADD", literals, 0))
}

/// `TIMESTAMPDIFF(unit, t1, t2)`: the whole units from `t1` to `t2` (INT),
/// negative when `t2` is earlier.
pub fn timestampdiff() -> Builtin {
    Builtin::new(
        "TIMESTAMPDIFF",
        &[
            &[Param::String, Param::Timestamp, Param::Timestamp],
            &[Param::String, Param::Timestamp, Param::Date],
            &[Param::String, Param::Date, Param::Timestamp],
            &[Param::String, Param::Date, Param::Date],
        ],
        Returns::Type(DataType::Int32),
        evaluate_timestampdiff,
    )
    .checking_literals(|literals| check_unit("TIMESTAMPDIFF", literals, 0))
}

/// Refuses a literal unit (the argument at `index`) that is not one.
fn check_unit(function: &str, literals: &[Option<&ScalarValue>], index: usize) -> Result<()> {
    match literal_string(literals.get(index).copied().flatten()) {
        Some(name) if Unit::named(name).is_none() => {
            plan_err!("{function} takes the units {UNIT_NAMES}, not {name}")
        }
        _ => Ok(()),
    }
}

/// The units of a call, row by row.
struct Units<'a> {
    function: &'static str,
    names: Strings<'a>,
}

impl Units<'_> {
    /// The unit at `row`; `None` for null, an error for what is not a unit.
    fn get(&self, row: usize) -> Result<Option<Unit>> {
        let Some(name) = self.names.get(row) else {
            return Ok(None);
        };
        match Unit::named(name) {
            Some(unit) => Ok(Some(unit)),
            None => exec_err!("{} takes the units {UNIT_NAMES}, not {name}", self.function),
        }
    }
}

fn round_to(
    call: &Call<'_>,
    round: fn(NaiveDateTime, Unit) -> Option<NaiveDateTime>,
) -> Result<ArrayRef> {
    let date_times = call.date_times(0)?;
    let units = Units {
        function: call.name,
        names: call.strings(1)?,
    };
    try_date_time_results(call.rows, call.return_type, |row| {
        let (Some(at), Some(unit)) = (date_times.get(row), units.get(row)?) else {
            return Ok(None);
        };
        Ok(round(at, unit))
    })
}

/// Epoch milliseconds of a date-time (its sub-milliseconds dropped).
fn millis(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_millis()
}

fn from_millis(millis: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp_millis(millis).map(|at| at.naive_utc())
}

/// The day a date-time is in.
fn day_of(at: NaiveDateTime) -> NaiveDate {
    at.date()
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(chrono::NaiveTime::MIN)
}

/// `FLOOR(at TO unit)`.
pub fn floor(at: NaiveDateTime, unit: Unit) -> Option<NaiveDateTime> {
    if let Some(length) = unit.millis().filter(|_| unit != Unit::Week) {
        let millis = millis(at);
        return from_millis(millis - millis.rem_euclid(length));
    }
    let date = day_of(at);
    let (year, month) = (date.year(), date.month());
    let start = match unit {
        Unit::Week => date.checked_sub_signed(TimeDelta::days(i64::from(
            date.weekday().num_days_from_sunday(),
        )))?,
        Unit::Month => NaiveDate::from_ymd_opt(year, month, 1)?,
        Unit::Quarter => NaiveDate::from_ymd_opt(year, month - (month - 1) % 3, 1)?,
        _ => NaiveDate::from_ymd_opt(year, 1, 1)?,
    };
    Some(midnight(start))
}

/// `CEIL(at TO unit)`, as Flink's `DateTimeUtils` computes it (see the module
/// documentation for WEEK and longer units).
pub fn ceil(at: NaiveDateTime, unit: Unit) -> Option<NaiveDateTime> {
    if let Some(length) = unit.millis().filter(|_| unit != Unit::Week) {
        let millis = millis(at);
        let rest = millis.rem_euclid(length);
        let up = if rest > 0 { length - rest } else { 0 };
        return from_millis(millis.checked_add(up)?);
    }
    let date = day_of(at);
    let (year, month, day) = (date.year(), date.month(), date.day());
    let first_of = |year: i32, month: u32| {
        // Month 13 is the next year's January, as in Flink's day arithmetic.
        let (year, month) = if month > 12 {
            (year + 1, month - 12)
        } else {
            (year, month)
        };
        NaiveDate::from_ymd_opt(year, month, 1)
    };
    let end = match unit {
        Unit::Week => {
            let from_sunday = i64::from(date.weekday().num_days_from_sunday());
            if from_sunday > 0 {
                date.checked_add_signed(TimeDelta::days(7 - from_sunday))?
            } else {
                date
            }
        }
        Unit::Month => first_of(year, if day > 1 { month + 1 } else { month })?,
        Unit::Quarter => {
            let quarter = month.div_ceil(3);
            // Flink's test: past January 1 (not past the quarter's first day).
            let quarter = if month > 1 || day > 1 {
                quarter + 1
            } else {
                quarter
            };
            first_of(year, quarter * 3 - 2)?
        }
        _ => first_of(if month > 1 || day > 1 { year + 1 } else { year }, 1)?,
    };
    Some(midnight(end))
}

fn evaluate_timestampadd(call: &Call<'_>) -> Result<ArrayRef> {
    let units = Units {
        function: call.name,
        names: call.strings(0)?,
    };
    let counts = call.integers(1)?;
    let date_times = call.date_times(2)?;
    let date = call.return_type == &DataType::Date32;
    try_date_time_results(call.rows, call.return_type, |row| {
        let (Some(unit), Some(count), Some(at)) =
            (units.get(row)?, counts.get(row), date_times.get(row))
        else {
            return Ok(None);
        };
        if date && matches!(unit, Unit::Second | Unit::Minute | Unit::Hour) {
            return exec_err!(
                "TIMESTAMPADD adds {unit:?} to a TIMESTAMP, not to a DATE; cast the DATE to a TIMESTAMP"
            );
        }
        Ok(add(at, unit, count))
    })
}

/// `TIMESTAMPADD(unit, count, at)`; `None` out of range.
pub fn add(at: NaiveDateTime, unit: Unit, count: i64) -> Option<NaiveDateTime> {
    match unit.millis() {
        Some(length) => {
            at.checked_add_signed(TimeDelta::try_milliseconds(count.checked_mul(length)?)?)
        }
        None => {
            let months = count.checked_mul(i64::from(unit.months()))?;
            let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
            if months >= 0 {
                at.checked_add_months(magnitude)
            } else {
                at.checked_sub_months(magnitude)
            }
        }
    }
}

fn evaluate_timestampdiff(call: &Call<'_>) -> Result<ArrayRef> {
    let units = Units {
        function: call.name,
        names: call.strings(0)?,
    };
    let starts = call.date_times(1)?;
    let ends = call.date_times(2)?;
    let values = (0..call.rows)
        .map(|row| {
            let (Some(unit), Some(start), Some(end)) =
                (units.get(row)?, starts.get(row), ends.get(row))
            else {
                return Ok(None);
            };
            Ok(difference(unit, start, end))
        })
        .collect::<Result<Int32Array>>()?;
    Ok(Arc::new(values))
}

/// `TIMESTAMPDIFF(unit, start, end)`: as Flink's generated code computes it,
/// Java's integer arithmetic included (division toward zero, the INT wrapped).
pub fn difference(unit: Unit, start: NaiveDateTime, end: NaiveDateTime) -> Option<i32> {
    let (start, end) = (millis(start), millis(end));
    match unit.millis() {
        Some(length) => Some((end.wrapping_sub(start) / length) as i32),
        None => Some(subtract_months(end, start)? / unit.months()),
    }
}

/// The months from epoch milliseconds `t1` to `t0`: Calcite's
/// `DateTimeUtils.subtractMonths(long, long)`.
fn subtract_months(t0: i64, t1: i64) -> Option<i32> {
    let millis0 = t0.rem_euclid(MILLIS_PER_DAY);
    let day0 = i32::try_from(t0.div_euclid(MILLIS_PER_DAY)).ok()?;
    let millis1 = t1.rem_euclid(MILLIS_PER_DAY);
    let day1 = i32::try_from(t1.div_euclid(MILLIS_PER_DAY)).ok()?;
    let mut months = subtract_months_of_days(day0, day1)?;
    if add_months(day1, months)? == day0 && millis0 < millis1 {
        months -= 1;
    }
    Some(months)
}

/// The months from epoch day `date1` to `date0`: Calcite's
/// `DateTimeUtils.subtractMonths(int, int)`.
fn subtract_months_of_days(date0: i32, date1: i32) -> Option<i32> {
    if date0 < date1 {
        return Some(-subtract_months_of_days(date1, date0)?);
    }
    // No month has more than 31 days: an estimate no more than the months.
    let mut months = (date0 - date1) / 31;
    loop {
        if add_months(date1, months)? >= date0 {
            return Some(months);
        }
        if add_months(date1, months + 1)? > date0 {
            return Some(months);
        }
        months += 1;
    }
}

/// Epoch day `date` plus `months`, the day kept or, where the month lacks it,
/// the month's last.
fn add_months(date: i32, months: i32) -> Option<i32> {
    let date = NaiveDate::from_epoch_days(date)?;
    let magnitude = Months::new(months.unsigned_abs());
    let moved = if months >= 0 {
        date.checked_add_months(magnitude)
    } else {
        date.checked_sub_months(magnitude)
    }?;
    Some(moved.to_epoch_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    fn text(at: Option<NaiveDateTime>) -> String {
        at.unwrap().format("%Y-%m-%d %H:%M:%S%.3f").to_string()
    }

    #[test]
    fn units_are_named_as_in_sql() {
        assert_eq!(Unit::named("month"), Some(Unit::Month));
        assert_eq!(Unit::named("DAYS"), Some(Unit::Day));
        assert_eq!(Unit::named("QUARTER"), Some(Unit::Quarter));
        assert_eq!(Unit::named("MILLENNIUM"), None);
        assert_eq!(Unit::named(""), None);
    }

    #[test]
    fn floor_takes_the_start_of_the_unit() {
        // A Tuesday.
        let moment = at("2024-05-14 13:47:21.250");
        let cases = [
            (Unit::Second, "2024-05-14 13:47:21.000"),
            (Unit::Minute, "2024-05-14 13:47:00.000"),
            (Unit::Hour, "2024-05-14 13:00:00.000"),
            (Unit::Day, "2024-05-14 00:00:00.000"),
            // Weeks start on Sunday.
            (Unit::Week, "2024-05-12 00:00:00.000"),
            (Unit::Month, "2024-05-01 00:00:00.000"),
            (Unit::Quarter, "2024-04-01 00:00:00.000"),
            (Unit::Year, "2024-01-01 00:00:00.000"),
        ];
        for (unit, expected) in cases {
            assert_eq!(text(floor(moment, unit)), expected, "{unit:?}");
        }
        // Before the epoch: the start of the day the moment is in.
        assert_eq!(
            text(floor(at("1969-12-31 23:59:59.999"), Unit::Day)),
            "1969-12-31 00:00:00.000"
        );
        assert_eq!(
            text(floor(at("1969-12-31 12:00:00"), Unit::Month)),
            "1969-12-01 00:00:00.000"
        );
        // On a boundary, the moment itself.
        let start = at("2024-01-01 00:00:00");
        for unit in [Unit::Second, Unit::Day, Unit::Month, Unit::Year] {
            assert_eq!(floor(start, unit), Some(start), "{unit:?}");
        }
    }

    #[test]
    fn ceil_takes_the_next_start_as_flink_computes_it() {
        let moment = at("2024-05-14 13:47:21.250");
        let cases = [
            (Unit::Second, "2024-05-14 13:47:22.000"),
            (Unit::Minute, "2024-05-14 13:48:00.000"),
            (Unit::Hour, "2024-05-14 14:00:00.000"),
            (Unit::Day, "2024-05-15 00:00:00.000"),
            (Unit::Week, "2024-05-19 00:00:00.000"),
            (Unit::Month, "2024-06-01 00:00:00.000"),
            (Unit::Quarter, "2024-07-01 00:00:00.000"),
            (Unit::Year, "2025-01-01 00:00:00.000"),
        ];
        for (unit, expected) in cases {
            assert_eq!(text(ceil(moment, unit)), expected, "{unit:?}");
        }
        // On a boundary, the moment itself.
        let start = at("2024-01-01 00:00:00");
        for unit in [
            Unit::Second,
            Unit::Hour,
            Unit::Day,
            Unit::Month,
            Unit::Quarter,
            Unit::Year,
        ] {
            assert_eq!(ceil(start, unit), Some(start), "{unit:?}");
        }
        assert_eq!(
            text(ceil(at("2024-05-12 00:00:00"), Unit::Week)),
            "2024-05-12 00:00:00.000"
        );
        assert_eq!(
            text(ceil(at("1969-12-31 23:59:59.001"), Unit::Second)),
            "1970-01-01 00:00:00.000"
        );
        assert_eq!(
            text(ceil(at("2024-12-02 00:00:00"), Unit::Month)),
            "2025-01-01 00:00:00.000"
        );
        assert_eq!(
            text(ceil(at("2024-11-15 00:00:00"), Unit::Quarter)),
            "2025-01-01 00:00:00.000"
        );
        // Flink's quirks: WEEK and longer look at the date alone, and a
        // quarter's first day (but January 1's) goes to the next quarter.
        assert_eq!(
            text(ceil(at("2024-03-01 10:00:00"), Unit::Month)),
            "2024-03-01 00:00:00.000"
        );
        assert_eq!(
            text(ceil(at("2024-01-01 10:00:00"), Unit::Year)),
            "2024-01-01 00:00:00.000"
        );
        assert_eq!(
            text(ceil(at("2024-04-01 00:00:00"), Unit::Quarter)),
            "2024-07-01 00:00:00.000"
        );
    }

    #[test]
    fn timestampadd_adds_units_and_clamps_months() {
        let moment = at("2024-01-31 10:00:00.500");
        let cases = [
            (Unit::Second, 90, "2024-01-31 10:01:30.500"),
            (Unit::Minute, -61, "2024-01-31 08:59:00.500"),
            (Unit::Hour, 14, "2024-02-01 00:00:00.500"),
            (Unit::Day, -31, "2023-12-31 10:00:00.500"),
            (Unit::Week, 2, "2024-02-14 10:00:00.500"),
            // January 31 plus a month: February's last day.
            (Unit::Month, 1, "2024-02-29 10:00:00.500"),
            (Unit::Month, 13, "2025-02-28 10:00:00.500"),
            (Unit::Month, -2, "2023-11-30 10:00:00.500"),
            (Unit::Quarter, 1, "2024-04-30 10:00:00.500"),
            (Unit::Year, -1, "2023-01-31 10:00:00.500"),
        ];
        for (unit, count, expected) in cases {
            assert_eq!(text(add(moment, unit, count)), expected, "{unit:?} {count}");
        }
        assert_eq!(add(moment, Unit::Year, i64::MAX), None);
        assert_eq!(add(moment, Unit::Second, i64::MAX), None);
    }

    #[test]
    fn timestampdiff_counts_whole_units_as_flink_does() {
        let diff = |unit, start, end| difference(unit, at(start), at(end)).unwrap();
        let start = "2024-01-01 00:00:00";
        assert_eq!(diff(Unit::Second, start, "2024-01-01 00:00:59.999"), 59);
        assert_eq!(diff(Unit::Minute, start, "2024-01-01 01:30:00"), 90);
        assert_eq!(diff(Unit::Hour, start, "2024-01-02 23:59:59"), 47);
        assert_eq!(diff(Unit::Day, start, "2024-01-02 23:59:59"), 1);
        assert_eq!(diff(Unit::Week, start, "2024-01-15 00:00:00"), 2);
        // Toward zero.
        assert_eq!(diff(Unit::Day, "2024-01-02 23:59:59", start), -1);
        assert_eq!(diff(Unit::Hour, "2024-01-01 00:59:59", start), 0);
        // Months: whole ones, the time of day counted on the same day of the month.
        assert_eq!(diff(Unit::Month, start, "2024-02-01 00:00:00"), 1);
        assert_eq!(diff(Unit::Month, start, "2024-01-31 23:59:59"), 0);
        assert_eq!(
            diff(Unit::Month, "2024-01-01 10:00:00", "2024-03-01 09:00:00"),
            1
        );
        assert_eq!(
            diff(Unit::Month, "2024-01-31 00:00:00", "2024-02-29 00:00:00"),
            1
        );
        assert_eq!(diff(Unit::Quarter, start, "2024-12-31 00:00:00"), 3);
        assert_eq!(diff(Unit::Year, start, "2025-12-31 00:00:00"), 1);
        assert_eq!(diff(Unit::Year, "2025-12-31 00:00:00", start), -1);
        assert_eq!(diff(Unit::Month, "2024-03-15 00:00:00", start), -2);
        // Flink's quirk: a negative difference across a later time of day.
        assert_eq!(diff(Unit::Month, "2024-02-01 10:00:00", start), -2);
        // An INT: wrapped.
        assert_eq!(
            diff(Unit::Second, "1970-01-01 00:00:00", "2100-01-01 00:00:00"),
            (4_102_444_800_i64 as i32)
        );
    }
}
