//! The arguments of Flink's built-ins: the types a parameter takes and the one
//! it reads, and reading an argument row by row, column or constant alike.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Int64Array, PrimitiveArray, StringArray,
    StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::binary::try_type_union_resolution;

/// A parameter of a built-in: the types it takes and the one it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    /// A string of any Arrow string type, read as Utf8.
    String,
    /// An integer (TINYINT to BIGINT), read as Int64.
    Integer,
    /// An integer read at its own type (`MOD` returns its divisor's type).
    ExactInteger,
    /// Any number, truncated to Int64 (the seconds of `FROM_UNIXTIME`).
    Number,
    /// Any number, read as an integer (Int64), FLOAT, DOUBLE or DECIMAL as it
    /// is (the epoch of `TO_TIMESTAMP_LTZ`, which reads each its own way).
    AnyNumber,
    /// A BOOLEAN.
    Boolean,
    /// A DATE.
    Date,
    /// A TIMESTAMP or TIMESTAMP_LTZ of any precision, read as it is.
    Timestamp,
    /// A TIME.
    Time,
    /// Any type: the `Any` arguments of a call are cast to their common type.
    Any,
}

impl Param {
    /// The parameter in Flink's words, for messages.
    pub fn flink_name(self) -> &'static str {
        match self {
            Param::String => "STRING",
            Param::Integer | Param::ExactInteger => "INT",
            Param::Number | Param::AnyNumber => "NUMERIC",
            Param::Boolean => "BOOLEAN",
            Param::Date => "DATE",
            Param::Timestamp => "TIMESTAMP",
            Param::Time => "TIME",
            Param::Any => "ANY",
        }
    }

    /// The type an argument of type `given` is read as, if this parameter
    /// takes it. A NULL literal goes anywhere.
    fn read_as(self, given: &DataType) -> Option<DataType> {
        use DataType::*;
        let integer = matches!(
            given,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32
        );
        match self {
            Param::String => matches!(given, Utf8 | LargeUtf8 | Utf8View | Null).then_some(Utf8),
            Param::Integer => (integer || given == &Null).then_some(Int64),
            Param::ExactInteger => match given {
                Int8 | Int16 | Int32 | Int64 => Some(given.clone()),
                _ => (integer || given == &Null).then_some(Int64),
            },
            Param::Number => (given.is_numeric() || given == &Null).then_some(Int64),
            Param::AnyNumber => match given {
                Float32 | Float64 | Decimal128(_, _) => Some(given.clone()),
                Float16 => Some(Float32),
                UInt64 => None,
                _ => (integer || given == &Null).then_some(Int64),
            },
            Param::Boolean => matches!(given, Boolean | Null).then_some(Boolean),
            Param::Date => match given {
                Date32 | Date64 => Some(given.clone()),
                Null => Some(Date32),
                _ => None,
            },
            Param::Timestamp => match given {
                Timestamp(_, _) => Some(given.clone()),
                Null => Some(Timestamp(TimeUnit::Millisecond, None)),
                _ => None,
            },
            Param::Time => match given {
                Time32(_) | Time64(_) => Some(given.clone()),
                Null => Some(Time32(TimeUnit::Millisecond)),
                _ => None,
            },
            Param::Any => Some(given.clone()),
        }
    }
}

/// The types the arguments are read as under the first of `forms` that takes
/// `given`; `None` if none does.
pub fn resolve(forms: &[&[Param]], given: &[DataType]) -> Option<Vec<DataType>> {
    forms.iter().find_map(|form| resolve_form(form, given))
}

fn resolve_form(form: &[Param], given: &[DataType]) -> Option<Vec<DataType>> {
    if form.len() != given.len() {
        return None;
    }
    let mut types = form
        .iter()
        .zip(given)
        .map(|(param, data_type)| param.read_as(data_type))
        .collect::<Option<Vec<_>>>()?;
    let any: Vec<usize> = (0..form.len())
        .filter(|&index| form[index] == Param::Any)
        .collect();
    if any.len() > 1 {
        let given_any: Vec<DataType> = any.iter().map(|&index| types[index].clone()).collect();
        // As in Flink, an approximate number (DOUBLE) among exact ones makes them
        // all DOUBLE (`IFNULL(score, 0.0)` of a DOUBLE score is a DOUBLE).
        let common = if given_any.iter().all(DataType::is_numeric)
            && given_any.iter().any(DataType::is_floating)
        {
            vec![DataType::Float64; given_any.len()]
        } else {
            try_type_union_resolution(&given_any).ok()?
        };
        for (index, data_type) in any.into_iter().zip(common) {
            types[index] = data_type;
        }
    }
    Some(types)
}

/// Arrow types in Flink's names, comma-separated: "STRING, BIGINT".
pub fn flink_type_list(types: &[DataType]) -> String {
    types.iter().map(flink_type).collect::<Vec<_>>().join(", ")
}

/// An Arrow type in Flink's name (the reverse of `sql::types`).
pub fn flink_type(data_type: &DataType) -> String {
    use DataType::*;
    let precision = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    match data_type {
        Null => "NULL".into(),
        Boolean => "BOOLEAN".into(),
        Int8 => "TINYINT".into(),
        Int16 => "SMALLINT".into(),
        Int32 => "INT".into(),
        Int64 => "BIGINT".into(),
        Float32 => "FLOAT".into(),
        Float64 => "DOUBLE".into(),
        Decimal128(p, s) | Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        Utf8 | LargeUtf8 | Utf8View => "STRING".into(),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "BYTES".into(),
        Date32 | Date64 => "DATE".into(),
        Time32(_) | Time64(_) => "TIME".into(),
        Timestamp(unit, None) => format!("TIMESTAMP({})", precision(unit)),
        Timestamp(unit, Some(_)) => format!("TIMESTAMP_LTZ({})", precision(unit)),
        List(_) | LargeList(_) | FixedSizeList(_, _) => "ARRAY".into(),
        Map(_, _) => "MAP".into(),
        Struct(_) => "ROW".into(),
        other => other.to_string(),
    }
}

/// The non-null string of a literal argument, if it is one.
pub fn literal_string(value: Option<&ScalarValue>) -> Option<&str> {
    match value? {
        ScalarValue::Utf8(text) | ScalarValue::LargeUtf8(text) | ScalarValue::Utf8View(text) => {
            text.as_deref()
        }
        _ => None,
    }
}

/// A batch of calls of a built-in, as [`super::builtin::Evaluate`] computes it.
pub struct Call<'a> {
    /// The function's name, for messages.
    pub name: &'static str,
    /// The arguments, read as their parameters say.
    pub args: &'a [ColumnarValue],
    /// How many values to compute: the batch's rows, or 1 when every argument
    /// is a constant.
    pub rows: usize,
    /// The result type.
    pub return_type: &'a DataType,
}

impl<'a> Call<'a> {
    /// Whether the call has an argument at `index` (optional arguments).
    pub fn has(&self, index: usize) -> bool {
        index < self.args.len()
    }

    /// The argument at `index`, as an array of [`Self::rows`] values.
    pub fn array(&self, index: usize) -> Result<ArrayRef> {
        self.args[index].to_array(self.rows)
    }

    /// The STRING argument at `index`.
    pub fn strings(&self, index: usize) -> Result<Strings<'a>> {
        match &self.args[index] {
            ColumnarValue::Scalar(ScalarValue::Utf8(value)) => {
                Ok(Strings::Constant(value.as_deref()))
            }
            ColumnarValue::Array(array) => match array.as_string_opt::<i32>() {
                Some(strings) => Ok(Strings::Column(strings)),
                None => self.unexpected(index, "STRING"),
            },
            _ => self.unexpected(index, "STRING"),
        }
    }

    /// The integer argument at `index` (read as Int64).
    pub fn integers(&self, index: usize) -> Result<Integers<'a>> {
        match &self.args[index] {
            ColumnarValue::Scalar(ScalarValue::Int64(value)) => Ok(Integers::Constant(*value)),
            ColumnarValue::Array(array) => match array.as_primitive_opt::<Int64Type>() {
                Some(integers) => Ok(Integers::Column(integers)),
                None => self.unexpected(index, "BIGINT"),
            },
            _ => self.unexpected(index, "BIGINT"),
        }
    }

    /// The DATE or TIMESTAMP argument at `index`, as date-times in UTC (the
    /// session time zone).
    pub fn date_times(&self, index: usize) -> Result<DateTimes> {
        let array = self.args[index].to_array(1)?;
        let to_date_time: fn(i64) -> Option<NaiveDateTime> = match array.data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => from_seconds,
            DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => from_millis,
            DataType::Timestamp(TimeUnit::Microsecond, _) => from_micros,
            DataType::Timestamp(TimeUnit::Nanosecond, _) => from_nanos,
            DataType::Date32 => from_days,
            _ => return self.unexpected(index, "DATE or TIMESTAMP"),
        };
        let values = cast(&array, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone();
        Ok(match &self.args[index] {
            ColumnarValue::Scalar(_) => DateTimes::Constant(
                values
                    .is_valid(0)
                    .then(|| to_date_time(values.value(0)))
                    .flatten(),
            ),
            ColumnarValue::Array(_) => DateTimes::Column {
                values,
                to_date_time,
            },
        })
    }

    fn unexpected<T>(&self, index: usize, expected: &str) -> Result<T> {
        internal_err!(
            "{}: argument {} is {}, not the {expected} it was planned as",
            self.name,
            index + 1,
            flink_type(&self.args[index].data_type())
        )
    }
}

fn from_seconds(seconds: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(seconds, 0).map(|at| at.naive_utc())
}

fn from_millis(millis: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(millis).map(|at| at.naive_utc())
}

fn from_micros(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|at| at.naive_utc())
}

fn from_nanos(nanos: i64) -> Option<NaiveDateTime> {
    Some(DateTime::from_timestamp_nanos(nanos).naive_utc())
}

fn from_days(days: i64) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_epoch_days(i32::try_from(days).ok()?)?;
    Some(date.and_time(NaiveTime::MIN))
}

/// A STRING argument: a column, or one value for every row.
pub enum Strings<'a> {
    /// The same value in every row.
    Constant(Option<&'a str>),
    /// A value per row.
    Column(&'a StringArray),
}

impl<'a> Strings<'a> {
    /// The value at `row`; `None` for null.
    pub fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            Strings::Constant(value) => *value,
            Strings::Column(array) => array.is_valid(row).then(|| array.value(row)),
        }
    }
}

/// An integer argument: a column, or one value for every row.
pub enum Integers<'a> {
    /// The same value in every row.
    Constant(Option<i64>),
    /// A value per row.
    Column(&'a Int64Array),
}

impl Integers<'_> {
    /// The value at `row`; `None` for null.
    pub fn get(&self, row: usize) -> Option<i64> {
        match self {
            Integers::Constant(value) => *value,
            Integers::Column(array) => array.is_valid(row).then(|| array.value(row)),
        }
    }
}

/// A DATE or TIMESTAMP argument as date-times in UTC.
pub enum DateTimes {
    /// The same value in every row.
    Constant(Option<NaiveDateTime>),
    /// A value per row, as stored (days, or seconds to nanoseconds since the
    /// epoch) and how to read it.
    Column {
        /// The stored values.
        values: Int64Array,
        /// Reads a stored value; `None` outside chrono's range.
        to_date_time: fn(i64) -> Option<NaiveDateTime>,
    },
}

impl DateTimes {
    /// The value at `row`; `None` for null.
    pub fn get(&self, row: usize) -> Option<NaiveDateTime> {
        match self {
            DateTimes::Constant(value) => *value,
            DateTimes::Column {
                values,
                to_date_time,
            } => values
                .is_valid(row)
                .then(|| to_date_time(values.value(row)))
                .flatten(),
        }
    }
}

/// A STRING column of `rows` values, `value(row)` each.
pub fn string_results<S: AsRef<str>>(
    rows: usize,
    mut value: impl FnMut(usize) -> Option<S>,
) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(rows, rows * 16);
    for row in 0..rows {
        builder.append_option(value(row));
    }
    Arc::new(builder.finish())
}

/// A STRING column of `rows` values, `value(row)` each, or the first error.
pub fn try_string_results<S: AsRef<str>>(
    rows: usize,
    mut value: impl FnMut(usize) -> Result<Option<S>>,
) -> Result<ArrayRef> {
    let mut builder = StringBuilder::with_capacity(rows, rows * 16);
    for row in 0..rows {
        builder.append_option(value(row)?);
    }
    Ok(Arc::new(builder.finish()))
}

/// A column of `rows` date-times, `value(row)` each, of `data_type`: a
/// TIMESTAMP or TIMESTAMP_LTZ of any precision (in UTC, the session time
/// zone) or a DATE (the date-time's day). A date-time the type cannot hold is
/// null.
pub fn try_date_time_results(
    rows: usize,
    data_type: &DataType,
    mut value: impl FnMut(usize) -> Result<Option<NaiveDateTime>>,
) -> Result<ArrayRef> {
    let to_stored: fn(NaiveDateTime) -> Option<i64> = match data_type {
        DataType::Timestamp(TimeUnit::Second, _) => |at| Some(at.and_utc().timestamp()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => |at| Some(at.and_utc().timestamp_millis()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => |at| Some(at.and_utc().timestamp_micros()),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => |at| at.and_utc().timestamp_nanos_opt(),
        DataType::Date32 => |at| Some(i64::from(at.date().to_epoch_days())),
        other => return internal_err!("date-times of type {other}"),
    };
    let mut stored = Vec::with_capacity(rows);
    for row in 0..rows {
        stored.push(value(row)?.and_then(to_stored));
    }
    let stored: ArrayRef = Arc::new(Int64Array::from(stored));
    if data_type == &DataType::Date32 {
        let days = cast(&stored, &DataType::Int32)?;
        return Ok(cast(&days, data_type)?);
    }
    Ok(cast(&stored, data_type)?)
}

/// A column of `T` of `rows` values, `value(row)` each.
pub fn primitive_results<T: ArrowPrimitiveType>(
    rows: usize,
    value: impl FnMut(usize) -> Option<T::Native>,
) -> ArrayRef {
    Arc::new((0..rows).map(value).collect::<PrimitiveArray<T>>())
}

/// A column of `T` of `rows` values, `value(row)` each, or the first error.
pub fn try_primitive_results<T: ArrowPrimitiveType>(
    rows: usize,
    value: impl FnMut(usize) -> Result<Option<T::Native>>,
) -> Result<ArrayRef> {
    let values = (0..rows)
        .map(value)
        .collect::<Result<PrimitiveArray<T>>>()?;
    Ok(Arc::new(values))
}
