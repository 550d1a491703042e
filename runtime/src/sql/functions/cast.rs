//! `CAST(value AS STRING)` as Flink writes the values that Arrow's cast writes
//! otherwise: a BOOLEAN as `TRUE` or `FALSE` (Arrow: `true`), a TIMESTAMP or
//! TIMESTAMP_LTZ as `yyyy-MM-dd HH:mm:ss.SSS` (Arrow: ISO 8601, with a `T` and
//! no fraction on whole seconds).
//!
//! This is no SQL function: [`crate::sql::physical`] makes such casts calls of
//! it when it makes expressions physical.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{NaiveDateTime, Timelike};
use datafusion::common::{Result, internal_err};

use super::args::{Call, Param, string_results};
use super::builtin::{Builtin, Returns};

/// Whether Flink writes a value of `data_type` otherwise than Arrow's cast.
pub fn writes_differently(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Boolean | DataType::Timestamp(_, _))
}

/// The string form of a BOOLEAN or TIMESTAMP value, as Flink's cast to STRING.
pub fn cast_to_string() -> Builtin {
    Builtin::new(
        "CAST",
        &[&[Param::Boolean], &[Param::Timestamp]],
        Returns::Type(DataType::Utf8),
        evaluate_cast_to_string,
    )
}

fn evaluate_cast_to_string(call: &Call<'_>) -> Result<ArrayRef> {
    match call.args[0].data_type() {
        DataType::Boolean => {
            let values = call.array(0)?;
            let values = values.as_boolean();
            Ok(string_results(call.rows, |row| {
                values
                    .is_valid(row)
                    .then(|| if values.value(row) { "TRUE" } else { "FALSE" })
            }))
        }
        DataType::Timestamp(unit, _) => {
            let precision = precision(&unit);
            let date_times = call.date_times(0)?;
            Ok(string_results(call.rows, |row| {
                date_times
                    .get(row)
                    .map(|at| timestamp_string(at, precision))
            }))
        }
        other => internal_err!("CAST to STRING of {other} was planned as one Flink writes"),
    }
}

/// The digits of a second's fraction a timestamp of `unit` holds, the
/// precision of its Flink type (`TIMESTAMP(0)` to `TIMESTAMP(3)` are all
/// stored in milliseconds, so they are written as `TIMESTAMP(3)`).
fn precision(unit: &TimeUnit) -> usize {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// `at` as Flink writes a timestamp of `precision` (`DateTimeUtils
/// .formatTimestamp`): `yyyy-MM-dd HH:mm:ss`, then the nine digits of the
/// nanoseconds with trailing zeros dropped down to `precision` digits, after a
/// dot unless none remain.
fn timestamp_string(at: NaiveDateTime, precision: usize) -> String {
    let mut fraction = format!("{:09}", at.nanosecond());
    while fraction.len() > precision && fraction.ends_with('0') {
        fraction.pop();
    }
    let mut text = at.format("%Y-%m-%d %H:%M:%S").to_string();
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(&fraction);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn timestamps_keep_the_fraction_digits_of_their_precision() {
        let cases = [
            ("2024-01-01 00:00:16.5", 3, "2024-01-01 00:00:16.500"),
            ("2024-01-01 00:00:04", 3, "2024-01-01 00:00:04.000"),
            ("2024-01-01 00:00:04", 0, "2024-01-01 00:00:04"),
            ("2024-01-01 00:00:04", 6, "2024-01-01 00:00:04.000000"),
            ("2024-01-01 00:00:04.25", 9, "2024-01-01 00:00:04.250000000"),
            ("0999-12-31 23:59:59.123", 3, "0999-12-31 23:59:59.123"),
            // Digits beyond the precision are kept, as Flink keeps them (the
            // type's precision never lets them come).
            (
                "2024-01-01 00:00:04.123456",
                3,
                "2024-01-01 00:00:04.123456",
            ),
        ];
        for (value, precision, expected) in cases {
            assert_eq!(
                timestamp_string(at(value), precision),
                expected,
                "{value} at {precision}"
            );
        }
    }

    #[test]
    fn only_booleans_and_timestamps_are_written_otherwise() {
        assert!(writes_differently(&DataType::Boolean));
        assert!(writes_differently(&DataType::Timestamp(
            TimeUnit::Millisecond,
            None
        )));
        assert!(writes_differently(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into())
        )));
        for same in [
            DataType::Int64,
            DataType::Float64,
            DataType::Date32,
            DataType::Utf8,
            DataType::Null,
        ] {
            assert!(!writes_differently(&same), "{same}");
        }
    }
}
