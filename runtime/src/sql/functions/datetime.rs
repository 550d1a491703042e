//! Flink's date and time functions: formatting and parsing with Java patterns
//! (`DATE_FORMAT`, `TO_TIMESTAMP`, `TO_TIMESTAMP_LTZ`, `TO_DATE`,
//! `FROM_UNIXTIME`, `UNIX_TIMESTAMP`), epochs (`TO_TIMESTAMP_LTZ`), the time
//! now (`LOCALTIMESTAMP`) and fields of dates and times (`YEAR` to `SECOND`).
//!
//! Flink parses in two ways, and so do these: `TO_TIMESTAMP` with a pattern
//! parses the whole string (Java's `DateTimeFormatter`), falling back to the
//! default format; `UNIX_TIMESTAMP`, `TO_DATE` with a pattern and
//! `DATE_FORMAT` of a string read the longest start of the string that fits
//! (Java's `SimpleDateFormat`), ignoring the rest. Fields the pattern lacks
//! default to 1970-01-01 00:00:00. Date-times are in UTC, the session time
//! zone.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::compute::kernels::temporal::{DatePart, date_part};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int64Type, TimeUnit,
    TimestampMillisecondType,
};
use chrono::format::{Item, Parsed, StrftimeItems, parse, parse_and_remainder};
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use datafusion::common::{
    Result, ScalarValue, exec_datafusion_err, exec_err, internal_err, plan_err,
};

use super::args::{
    Call, Integers, Param, Strings, literal_string, primitive_results, try_primitive_results,
    try_string_results,
};
use super::builtin::{Builtin, Returns};
use super::java_pattern::to_strftime;

/// Flink's default pattern of `FROM_UNIXTIME`, `UNIX_TIMESTAMP` and of the
/// strings `DATE_FORMAT` reads.
const DEFAULT_PATTERN: &str = "yyyy-MM-dd HH:mm:ss";

/// `DATE_FORMAT(timestamp, pattern)`, `DATE_FORMAT(string, pattern)`: the
/// timestamp (or the string read as `yyyy-MM-dd HH:mm:ss`) written with a
/// Java pattern; null when the string does not parse.
pub fn date_format() -> Builtin {
    Builtin::new(
        "DATE_FORMAT",
        &[
            &[Param::Timestamp, Param::String],
            &[Param::Date, Param::String],
            &[Param::String, Param::String],
        ],
        Returns::Type(DataType::Utf8),
        evaluate_date_format,
    )
    .checking_literals(|literals| check_pattern("DATE_FORMAT", literals, 1))
}

fn evaluate_date_format(call: &Call<'_>) -> Result<ArrayRef> {
    let mut patterns = Patterns::of(call, 1, DEFAULT_PATTERN)?;
    if call.args[0].data_type() == DataType::Utf8 {
        let texts = call.strings(0)?;
        try_string_results(call.rows, |row| {
            let Some(at) = texts.get(row).and_then(parse_default_prefix) else {
                return Ok(None);
            };
            Ok(patterns.get(row)?.and_then(|items| format(at, items)))
        })
    } else {
        let date_times = call.date_times(0)?;
        try_string_results(call.rows, |row| {
            let Some(at) = date_times.get(row) else {
                return Ok(None);
            };
            Ok(patterns.get(row)?.and_then(|items| format(at, items)))
        })
    }
}

/// `TO_TIMESTAMP(string [, pattern])`: the string as a TIMESTAMP(3), read
/// with the Java pattern or, failing that or without one, Flink's default
/// format (`yyyy-[M]M-[d]d[ [H]H:[m]m:[s]s[.fraction]]`); null when neither
/// fits.
pub fn to_timestamp() -> Builtin {
    Builtin::new(
        "TO_TIMESTAMP",
        &[&[Param::String], &[Param::String, Param::String]],
        Returns::Type(DataType::Timestamp(TimeUnit::Millisecond, None)),
        evaluate_to_timestamp,
    )
    .checking_literals(|literals| check_pattern("TO_TIMESTAMP", literals, 1))
}

fn evaluate_to_timestamp(call: &Call<'_>) -> Result<ArrayRef> {
    let texts = call.strings(0)?;
    let millis = |at: NaiveDateTime| at.and_utc().timestamp_millis();
    if !call.has(1) {
        return Ok(primitive_results::<TimestampMillisecondType>(
            call.rows,
            |row| parse_default_timestamp(texts.get(row)?).map(millis),
        ));
    }
    let mut patterns = Patterns::of(call, 1, DEFAULT_PATTERN)?;
    try_primitive_results::<TimestampMillisecondType>(call.rows, |row| {
        let Some(text) = texts.get(row) else {
            return Ok(None);
        };
        let Some(items) = patterns.get(row)? else {
            return Ok(None);
        };
        Ok(parse_whole(text, items)
            .or_else(|| parse_default_timestamp(text.trim()))
            .map(millis))
    })
}

/// The earliest and latest epoch milliseconds Flink's timestamps hold
/// (`0000-01-01 00:00:00.000` and `9999-12-31 23:59:59.999` UTC).
const EPOCH_MILLIS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// The same range in seconds.
const EPOCH_SECONDS: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

/// `TO_TIMESTAMP_LTZ(epoch [, precision])`: epoch seconds (precision 0) or
/// milliseconds (3, the default) as a TIMESTAMP_LTZ(3); null outside years 0
/// to 9999. How the epoch is read depends on its type, as in Flink's
/// `DateTimeUtils.toTimestampData`: an integer or DOUBLE of seconds is
/// multiplied by 1000 (a DOUBLE keeps its milliseconds), a DECIMAL is cut to
/// whole seconds or milliseconds and a FLOAT to a whole number first, toward
/// zero. A precision other than 0 or 3 is refused when it is a literal and
/// fails the job otherwise, as Flink's does.
///
/// `TO_TIMESTAMP_LTZ(string [, pattern])`: the string read as `TO_TIMESTAMP`
/// reads it, in UTC (the session time zone).
pub fn to_timestamp_ltz() -> Builtin {
    Builtin::new(
        "TO_TIMESTAMP_LTZ",
        &[
            &[Param::AnyNumber],
            &[Param::AnyNumber, Param::Integer],
            &[Param::String],
            &[Param::String, Param::String],
        ],
        Returns::Type(DataType::Timestamp(
            TimeUnit::Millisecond,
            Some("UTC".into()),
        )),
        evaluate_to_timestamp_ltz,
    )
    .checking_literals(check_epoch_precision)
}

fn check_epoch_precision(literals: &[Option<&ScalarValue>]) -> Result<()> {
    match literals.get(1).copied().flatten() {
        Some(ScalarValue::Int64(Some(precision))) if ![0, 3].contains(precision) => plan_err!(
            "TO_TIMESTAMP_LTZ: the precision is {precision}; it takes 0 (epoch seconds) or 3 (epoch milliseconds)"
        ),
        _ => Ok(()),
    }
}

fn evaluate_to_timestamp_ltz(call: &Call<'_>) -> Result<ArrayRef> {
    let epochs = call.array(0)?;
    if epochs.data_type() == &DataType::Utf8 {
        let local = evaluate_to_timestamp(call)?;
        return Ok(cast(&local, call.return_type)?);
    }
    let precisions = if call.has(1) {
        call.integers(1)?
    } else {
        Integers::Constant(Some(3))
    };
    let millis = epoch_millis(&epochs)?;
    let values = (0..call.rows)
        .map(|row| {
            let Some(precision) = precisions.get(row) else {
                return Ok(None);
            };
            let Some(epoch) = &millis[row] else {
                return Ok(None);
            };
            let millis = match precision {
                0 => epoch.of_seconds(),
                3 => epoch.of_millis(),
                other => {
                    return exec_err!(
                        "TO_TIMESTAMP_LTZ: the precision is {other}; it takes 0 (epoch seconds) or 3 (epoch milliseconds)"
                    );
                }
            };
            Ok(millis.filter(|millis| EPOCH_MILLIS.contains(millis)))
        })
        .collect::<Result<Vec<Option<i64>>>>()?;
    let values: ArrayRef = Arc::new(Int64Array::from(values));
    Ok(cast(&values, call.return_type)?)
}

/// An epoch of `TO_TIMESTAMP_LTZ`, as its type has it read.
enum Epoch {
    /// An integer (or a FLOAT or DECIMAL of seconds, cut to one).
    Whole(i64),
    /// A DOUBLE.
    Double(f64),
    /// A DECIMAL's whole part in milliseconds, and in seconds times 1000.
    Decimal {
        millis: Option<i64>,
        seconds: Option<i64>,
    },
}

impl Epoch {
    /// Epoch milliseconds of epoch seconds.
    fn of_seconds(&self) -> Option<i64> {
        match *self {
            Epoch::Whole(seconds) => EPOCH_SECONDS.contains(&seconds).then(|| seconds * 1000),
            // Java's `(long) (v * 1000)`: toward zero, saturating.
            Epoch::Double(seconds) => {
                let in_range = *EPOCH_SECONDS.start() as f64 <= seconds
                    && seconds <= *EPOCH_SECONDS.end() as f64;
                in_range.then_some((seconds * 1000.0) as i64)
            }
            Epoch::Decimal { seconds, .. } => seconds,
        }
    }

    /// Epoch milliseconds of epoch milliseconds.
    fn of_millis(&self) -> Option<i64> {
        match *self {
            Epoch::Whole(millis) => Some(millis),
            Epoch::Double(millis) => Some(millis as i64),
            Epoch::Decimal { millis, .. } => millis,
        }
    }
}

/// The epochs of `TO_TIMESTAMP_LTZ`'s first argument, row by row.
fn epoch_millis(epochs: &ArrayRef) -> Result<Vec<Option<Epoch>>> {
    Ok(match epochs.data_type() {
        DataType::Float64 => epochs
            .as_primitive::<Float64Type>()
            .iter()
            .map(|value| value.map(Epoch::Double))
            .collect(),
        // Flink reads a FLOAT as `value.longValue()` first.
        DataType::Float32 => epochs
            .as_primitive::<Float32Type>()
            .iter()
            .map(|value| value.map(|value| Epoch::Whole(value as i64)))
            .collect(),
        DataType::Decimal128(_, scale) => {
            let divisor = 10_i128.checked_pow(u32::from(scale.unsigned_abs()));
            epochs
                .as_primitive::<Decimal128Type>()
                .iter()
                .map(|value| {
                    let value = value?;
                    // Cut toward zero to a whole number.
                    let whole = match (*scale >= 0, divisor) {
                        (true, Some(divisor)) => Some(value / divisor),
                        (false, Some(factor)) => value.checked_mul(factor),
                        (_, None) => Some(0),
                    };
                    let whole = whole.and_then(|whole| i64::try_from(whole).ok());
                    Some(Epoch::Decimal {
                        millis: whole,
                        seconds: whole.and_then(|seconds| seconds.checked_mul(1000)),
                    })
                })
                .collect()
        }
        _ => cast(epochs, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .iter()
            .map(|value| value.map(Epoch::Whole))
            .collect(),
    })
}

/// `LOCALTIMESTAMP`: the date-time now in UTC (the session time zone), as a
/// TIMESTAMP(3), computed again for each row as Flink's streaming mode does.
pub fn localtimestamp() -> Builtin {
    Builtin::new(
        "LOCALTIMESTAMP",
        &[&[]],
        Returns::Type(DataType::Timestamp(TimeUnit::Millisecond, None)),
        evaluate_localtimestamp,
    )
    .volatile()
}

fn evaluate_localtimestamp(call: &Call<'_>) -> Result<ArrayRef> {
    let now = chrono::Utc::now().timestamp_millis();
    Ok(primitive_results::<TimestampMillisecondType>(
        call.rows,
        |_| Some(now),
    ))
}

/// `TO_DATE(string [, pattern])`: the string as a DATE, read with the Java
/// pattern, or without one as Flink reads dates (`y[-m[-d]]`, anything after a
/// space ignored); null when it does not parse.
pub fn to_date() -> Builtin {
    Builtin::new(
        "TO_DATE",
        &[&[Param::String], &[Param::String, Param::String]],
        Returns::Type(DataType::Date32),
        evaluate_to_date,
    )
    .checking_literals(|literals| check_pattern("TO_DATE", literals, 1))
}

fn evaluate_to_date(call: &Call<'_>) -> Result<ArrayRef> {
    let texts = call.strings(0)?;
    if !call.has(1) {
        return Ok(primitive_results::<Date32Type>(call.rows, |row| {
            parse_flink_date(texts.get(row)?).map(|date| date.to_epoch_days())
        }));
    }
    let mut patterns = Patterns::of(call, 1, DEFAULT_PATTERN)?;
    try_primitive_results::<Date32Type>(call.rows, |row| {
        let Some(text) = texts.get(row) else {
            return Ok(None);
        };
        let Some(items) = patterns.get(row)? else {
            return Ok(None);
        };
        Ok(parse_prefix(text, items).map(|at| at.date().to_epoch_days()))
    })
}

/// `FROM_UNIXTIME(seconds [, pattern])`: seconds since the epoch written with
/// a Java pattern (`yyyy-MM-dd HH:mm:ss` by default), in UTC.
pub fn from_unixtime() -> Builtin {
    Builtin::new(
        "FROM_UNIXTIME",
        &[&[Param::Number], &[Param::Number, Param::String]],
        Returns::Type(DataType::Utf8),
        evaluate_from_unixtime,
    )
    .checking_literals(|literals| check_pattern("FROM_UNIXTIME", literals, 1))
}

fn evaluate_from_unixtime(call: &Call<'_>) -> Result<ArrayRef> {
    let seconds = call.integers(0)?;
    let mut patterns = Patterns::of(call, 1, DEFAULT_PATTERN)?;
    try_string_results(call.rows, |row| {
        let Some(at) = seconds
            .get(row)
            .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
        else {
            return Ok(None);
        };
        Ok(patterns
            .get(row)?
            .and_then(|items| format(at.naive_utc(), items)))
    })
}

/// `UNIX_TIMESTAMP()`: the seconds since the epoch now.
/// `UNIX_TIMESTAMP(string [, pattern])`: the string, read with a Java pattern
/// (`yyyy-MM-dd HH:mm:ss` by default) in UTC unless it holds an offset, in
/// seconds since the epoch; `Long.MIN_VALUE` when it does not parse, as Flink
/// documents.
pub fn unix_timestamp() -> Builtin {
    Builtin::new(
        "UNIX_TIMESTAMP",
        &[&[], &[Param::String], &[Param::String, Param::String]],
        Returns::Type(DataType::Int64),
        evaluate_unix_timestamp,
    )
    .volatile()
    .checking_literals(|literals| check_pattern("UNIX_TIMESTAMP", literals, 1))
}

fn evaluate_unix_timestamp(call: &Call<'_>) -> Result<ArrayRef> {
    if !call.has(0) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|error| {
                exec_datafusion_err!("UNIX_TIMESTAMP: the clock is before 1970: {error}")
            })?;
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        return Ok(primitive_results::<Int64Type>(call.rows, |_| Some(seconds)));
    }
    let texts = call.strings(0)?;
    let mut patterns = Patterns::of(call, 1, DEFAULT_PATTERN)?;
    try_primitive_results::<Int64Type>(call.rows, |row| {
        let Some(text) = texts.get(row) else {
            return Ok(None);
        };
        let Some(items) = patterns.get(row)? else {
            return Ok(None);
        };
        Ok(Some(match parse_prefix(text, items) {
            // Java's division: toward zero.
            Some(at) => at.and_utc().timestamp_millis() / 1000,
            None => i64::MIN,
        }))
    })
}

/// A field of dates and times as Flink names it: `YEAR(date)`, ... (BIGINT).
struct DatePartFunction {
    name: &'static str,
    part: DatePart,
    forms: &'static [&'static [Param]],
}

const DATE_FIELD: &[&[Param]] = &[&[Param::Date], &[Param::Timestamp]];
const TIME_FIELD: &[&[Param]] = &[&[Param::Timestamp], &[Param::Time]];

const DATE_PARTS: &[DatePartFunction] = &[
    DatePartFunction {
        name: "YEAR",
        part: DatePart::Year,
        forms: DATE_FIELD,
    },
    DatePartFunction {
        name: "QUARTER",
        part: DatePart::Quarter,
        forms: DATE_FIELD,
    },
    DatePartFunction {
        name: "MONTH",
        part: DatePart::Month,
        forms: DATE_FIELD,
    },
    // ISO 8601 weeks, as Flink's.
    DatePartFunction {
        name: "WEEK",
        part: DatePart::Week,
        forms: DATE_FIELD,
    },
    DatePartFunction {
        name: "DAYOFYEAR",
        part: DatePart::DayOfYear,
        forms: DATE_FIELD,
    },
    DatePartFunction {
        name: "DAYOFMONTH",
        part: DatePart::Day,
        forms: DATE_FIELD,
    },
    // 1 for Sunday to 7 for Saturday.
    DatePartFunction {
        name: "DAYOFWEEK",
        part: DatePart::DayOfWeekSunday1,
        forms: DATE_FIELD,
    },
    DatePartFunction {
        name: "HOUR",
        part: DatePart::Hour,
        forms: TIME_FIELD,
    },
    DatePartFunction {
        name: "MINUTE",
        part: DatePart::Minute,
        forms: TIME_FIELD,
    },
    DatePartFunction {
        name: "SECOND",
        part: DatePart::Second,
        forms: TIME_FIELD,
    },
];

/// `YEAR`, `QUARTER`, `MONTH`, `WEEK`, `DAYOFYEAR`, `DAYOFMONTH`, `DAYOFWEEK`
/// of a DATE or TIMESTAMP; `HOUR`, `MINUTE`, `SECOND` of a TIMESTAMP or TIME.
pub fn date_parts() -> Vec<Builtin> {
    DATE_PARTS
        .iter()
        .map(|function| {
            Builtin::new(
                function.name,
                function.forms,
                Returns::Type(DataType::Int64),
                evaluate_date_part,
            )
        })
        .collect()
}

fn evaluate_date_part(call: &Call<'_>) -> Result<ArrayRef> {
    let Some(function) = DATE_PARTS
        .iter()
        .find(|function| function.name == call.name)
    else {
        return internal_err!("{} is not a date part", call.name);
    };
    let parts = date_part(&call.array(0)?, function.part)?;
    Ok(cast(&parts, &DataType::Int64)?)
}

/// Refuses a literal Java pattern (the argument at `index`) that does not
/// translate.
fn check_pattern(function: &str, literals: &[Option<&ScalarValue>], index: usize) -> Result<()> {
    match literal_string(literals.get(index).copied().flatten()) {
        Some(pattern) => match compile(pattern) {
            Ok(_) => Ok(()),
            Err(error) => plan_err!("{function}: {error}"),
        },
        None => Ok(()),
    }
}

/// A Java pattern as chrono's items.
fn compile(pattern: &str) -> std::result::Result<Vec<Item<'static>>, String> {
    let strftime = to_strftime(pattern).map_err(|error| error.to_string())?;
    StrftimeItems::new(&strftime)
        .parse_to_owned()
        .map_err(|error| format!("date pattern '{pattern}' (as '{strftime}'): {error}"))
}

/// The Java patterns of a call, translated once each.
struct Patterns<'a> {
    function: &'static str,
    patterns: Strings<'a>,
    compiled: HashMap<&'a str, Vec<Item<'static>>>,
}

impl<'a> Patterns<'a> {
    /// The patterns of the argument at `index`, or `default` when the call
    /// has no such argument.
    fn of(call: &Call<'a>, index: usize, default: &'static str) -> Result<Self> {
        let patterns = if call.has(index) {
            call.strings(index)?
        } else {
            Strings::Constant(Some(default))
        };
        Ok(Self {
            function: call.name,
            patterns,
            compiled: HashMap::new(),
        })
    }

    /// The pattern at `row`: `None` when null, an error when it does not
    /// translate (Flink fails on an invalid pattern too).
    fn get(&mut self, row: usize) -> Result<Option<&[Item<'static>]>> {
        let Some(pattern) = self.patterns.get(row) else {
            return Ok(None);
        };
        if !self.compiled.contains_key(pattern) {
            let items = compile(pattern)
                .map_err(|error| exec_datafusion_err!("{}: {error}", self.function))?;
            self.compiled.insert(pattern, items);
        }
        Ok(self.compiled.get(pattern).map(Vec::as_slice))
    }
}

/// `at` written with `items`; `None` if they need what a date-time lacks.
fn format(at: NaiveDateTime, items: &[Item<'static>]) -> Option<String> {
    let mut text = String::new();
    write!(text, "{}", at.and_utc().format_with_items(items.iter())).ok()?;
    Some(text)
}

/// The whole of `text` read with `items` (`DateTimeFormatter.parse`); an
/// offset in it is ignored, as Flink ignores it.
fn parse_whole(text: &str, items: &[Item<'static>]) -> Option<NaiveDateTime> {
    let mut parsed = Parsed::new();
    parse(&mut parsed, text, items.iter()).ok()?;
    local_date_time(parsed)
}

/// The start of `text` read with `items` (`SimpleDateFormat.parse`), in UTC:
/// an offset in it is applied.
fn parse_prefix(text: &str, items: &[Item<'static>]) -> Option<NaiveDateTime> {
    let mut parsed = Parsed::new();
    parse_and_remainder(&mut parsed, text, items.iter()).ok()?;
    let offset = parsed.offset();
    let local = local_date_time(parsed)?;
    match offset {
        Some(seconds) => local.checked_sub_signed(chrono::TimeDelta::seconds(i64::from(seconds))),
        None => Some(local),
    }
}

/// The start of `text` read as `yyyy-MM-dd HH:mm:ss`.
fn parse_default_prefix(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_and_remainder(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|(at, _)| at)
}

/// The date-time of parsed fields, those missing taken from
/// 1970-01-01 00:00:00 (Flink's and Java's defaults).
fn local_date_time(mut parsed: Parsed) -> Option<NaiveDateTime> {
    let no_year = parsed.year().is_none()
        && parsed.year_div_100().is_none()
        && parsed.year_mod_100().is_none();
    if no_year {
        parsed.set_year(1970).ok()?;
    }
    if parsed.month().is_none() && parsed.ordinal().is_none() {
        parsed.set_month(1).ok()?;
    }
    if parsed.day().is_none() && parsed.ordinal().is_none() {
        parsed.set_day(1).ok()?;
    }
    match (parsed.hour_div_12(), parsed.hour_mod_12()) {
        (None, None) => parsed.set_hour(0).ok()?,
        // `hh` without `a`: before noon.
        (None, Some(_)) => parsed.set_ampm(false).ok()?,
        _ => {}
    }
    if parsed.minute().is_none() {
        parsed.set_minute(0).ok()?;
    }
    if parsed.second().is_none() {
        parsed.set_second(0).ok()?;
    }
    if parsed.nanosecond().is_none() {
        parsed.set_nanosecond(0).ok()?;
    }
    parsed.to_naive_datetime_with_offset(0).ok()
}

/// Flink's default timestamp format (`TO_TIMESTAMP` without a pattern):
/// `yyyy-[M]M-[d]d`, then optionally ` [H]H:[m]m:[s]s` and a fraction of up to
/// nine digits, and nothing else.
fn parse_default_timestamp(text: &str) -> Option<NaiveDateTime> {
    let mut rest = text;
    let date = read_date(&mut rest)?;
    if rest.is_empty() {
        return date.and_hms_opt(0, 0, 0);
    }
    expect(&mut rest, ' ')?;
    let hour = digits(&mut rest, 1, 2)?;
    expect(&mut rest, ':')?;
    let minute = digits(&mut rest, 1, 2)?;
    expect(&mut rest, ':')?;
    let second = digits(&mut rest, 1, 2)?;
    let mut nanos = 0;
    if expect(&mut rest, '.').is_some() {
        let fraction =
            &rest[..rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len()];
        if fraction.len() > 9 {
            return None;
        }
        rest = &rest[fraction.len()..];
        nanos = format!("{fraction:0<9}").parse().ok()?;
    }
    if !rest.is_empty() {
        return None;
    }
    date.and_hms_nano_opt(hour, minute, second, nanos)
}

/// `yyyy-[M]M-[d]d` at the start of `rest`, resolved as java.time's SMART
/// resolver does (see [`smart_date`]).
fn read_date(rest: &mut &str) -> Option<NaiveDate> {
    let year = digits(rest, 4, 9)?;
    expect(rest, '-')?;
    let month = digits(rest, 1, 2)?;
    expect(rest, '-')?;
    let day = digits(rest, 1, 2)?;
    smart_date(i32::try_from(year).ok()?, month, day)
}

/// The date of `year`, `month` and `day` as java.time's SMART resolver (the
/// default of `DateTimeFormatter`) makes it: a day of 1 to 31 past the end of
/// its month is the month's last day (February 30 is February 29 or 28), where
/// a day of 32, month 13 and the like do not parse.
fn smart_date(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    if !(1..=31).contains(&day) {
        return None;
    }
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    first.with_day(day.min(u32::from(first.num_days_in_month())))
}

/// `min` to `max` ASCII digits at the start of `rest`, consumed.
fn digits(rest: &mut &str, min: usize, max: usize) -> Option<u32> {
    let count = rest
        .bytes()
        .take(max)
        .take_while(u8::is_ascii_digit)
        .count();
    if count < min {
        return None;
    }
    let (number, after) = rest.split_at(count);
    *rest = after;
    number.parse().ok()
}

/// `c` at the start of `rest`, consumed.
fn expect(rest: &mut &str, c: char) -> Option<()> {
    *rest = rest.strip_prefix(c)?;
    Some(())
}

/// How Flink reads a date without a pattern (`TO_DATE(string)`): whatever
/// follows a space is ignored, then `year[-month[-day]]`, each part digits
/// between optional spaces, month and day 1 by default.
fn parse_flink_date(text: &str) -> Option<NaiveDate> {
    let text = match text.find(' ') {
        Some(space) if space > 0 => &text[..space],
        _ => text,
    };
    let mut parts = text.splitn(3, '-');
    let mut number = |default: u32| match parts.next() {
        None => Some(default),
        Some(part) => {
            let part = part.trim();
            let digits_only = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            digits_only.then(|| part.parse().ok()).flatten()
        }
    };
    let year: u32 = number(0)?;
    let month = number(1)?;
    let day = number(1)?;
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    fn items(pattern: &str) -> Vec<Item<'static>> {
        compile(pattern).unwrap()
    }

    #[test]
    fn the_default_timestamp_format_is_flinks_lenient_one() {
        let parse = parse_default_timestamp;
        assert_eq!(
            parse("2024-01-02 03:04:05"),
            Some(at("2024-01-02 03:04:05"))
        );
        assert_eq!(parse("2024-1-2 3:4:5"), Some(at("2024-01-02 03:04:05")));
        assert_eq!(parse("2024-01-02"), Some(at("2024-01-02 00:00:00")));
        assert_eq!(
            parse("2024-01-02 03:04:05.123456789"),
            Some(at("2024-01-02 03:04:05.123456789"))
        );
        assert_eq!(
            parse("2024-01-02 03:04:05.5"),
            Some(at("2024-01-02 03:04:05.5"))
        );
        // Days past the end of the month are its last, as java.time's SMART
        // resolver makes them.
        assert_eq!(
            parse("2024-02-30 10:00:00"),
            Some(at("2024-02-29 10:00:00"))
        );
        assert_eq!(parse("2023-02-31"), Some(at("2023-02-28 00:00:00")));
        assert_eq!(parse("2024-04-31"), Some(at("2024-04-30 00:00:00")));
        for bad in [
            "",
            "2024-01-02 03:04",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05 ",
            "2024-13-02",
            "2024-02-32",
            "2024-02-00",
            "2024-00-10",
            "24-01-02",
            "2024-01-02 03:04:05.1234567890",
            "abc",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_smart_resolver_moves_only_days_29_to_31_to_the_months_end() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(smart_date(2024, 2, 29), date(2024, 2, 29));
        assert_eq!(smart_date(2024, 2, 30), date(2024, 2, 29));
        assert_eq!(smart_date(2023, 2, 29), date(2023, 2, 28));
        assert_eq!(smart_date(2023, 2, 31), date(2023, 2, 28));
        assert_eq!(smart_date(2024, 6, 31), date(2024, 6, 30));
        assert_eq!(smart_date(2024, 12, 31), date(2024, 12, 31));
        assert_eq!(smart_date(2024, 1, 15), date(2024, 1, 15));
        assert_eq!(smart_date(2024, 2, 32), None);
        assert_eq!(smart_date(2024, 2, 0), None);
        assert_eq!(smart_date(2024, 13, 1), None);
        assert_eq!(smart_date(2024, 0, 1), None);
    }

    #[test]
    fn dates_without_a_pattern_are_read_as_flink_reads_them() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(parse_flink_date("2024-03-05"), date(2024, 3, 5));
        assert_eq!(parse_flink_date("2024-3-5"), date(2024, 3, 5));
        assert_eq!(parse_flink_date("2024-03-05 10:11:12"), date(2024, 3, 5));
        assert_eq!(parse_flink_date("2024-03"), date(2024, 3, 1));
        assert_eq!(parse_flink_date("2024"), date(2024, 1, 1));
        assert_eq!(parse_flink_date(" 2024-03-05"), date(2024, 3, 5));
        assert_eq!(parse_flink_date("2024-02-30"), None);
        assert_eq!(parse_flink_date("2024-03-05-01"), None);
        assert_eq!(parse_flink_date("x"), None);
        assert_eq!(parse_flink_date(""), None);
    }

    #[test]
    fn missing_fields_default_to_the_epoch() {
        assert_eq!(
            parse_whole("2024-05", &items("yyyy-MM")),
            Some(at("2024-05-01 00:00:00"))
        );
        assert_eq!(
            parse_whole("13:14", &items("HH:mm")),
            Some(at("1970-01-01 13:14:00"))
        );
        assert_eq!(
            parse_whole("2024-05-06 01:02:03 PM", &items("yyyy-MM-dd hh:mm:ss a")),
            Some(at("2024-05-06 13:02:03"))
        );
        assert_eq!(
            parse_whole("2024-05-06 01:02:03", &items("yyyy-MM-dd hh:mm:ss")),
            Some(at("2024-05-06 01:02:03"))
        );
    }

    #[test]
    fn whole_and_prefix_parsing_differ_as_javas_parsers_do() {
        let default = items(DEFAULT_PATTERN);
        let text = "2024-01-02 03:04:05.678";
        assert_eq!(parse_whole(text, &default), None);
        assert_eq!(
            parse_prefix(text, &default),
            Some(at("2024-01-02 03:04:05"))
        );
        // An offset in the text: applied by the prefix reading (to UTC), ignored
        // by the whole one.
        let zoned = items("yyyy-MM-dd HH:mm:ss Z");
        assert_eq!(
            parse_prefix("2024-01-02 03:04:05 +0200", &zoned),
            Some(at("2024-01-02 01:04:05"))
        );
        assert_eq!(
            parse_whole("2024-01-02 03:04:05 +0200", &zoned),
            Some(at("2024-01-02 03:04:05"))
        );
    }

    #[test]
    fn formatting_writes_javas_fields() {
        let moment = at("2024-03-05 14:07:09.012345678");
        let cases = [
            ("yyyy-MM-dd HH:mm:ss", "2024-03-05 14:07:09"),
            ("yyyy-MM-dd HH:mm:ss.SSS", "2024-03-05 14:07:09.012"),
            ("yyyyMMdd", "20240305"),
            ("yy/M/d H:m:s", "24/3/5 14:7:9"),
            ("EEE, dd MMM yyyy hh:mm a", "Tue, 05 Mar 2024 02:07 PM"),
            ("EEEE MMMM D", "Tuesday March 65"),
            ("'week day' E", "week day Tue"),
            ("HH:mm:ss.SSSSSS Z", "14:07:09.012345 +0000"),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                format(moment, &items(pattern)).as_deref(),
                Some(expected),
                "{pattern}"
            );
        }
    }
}
