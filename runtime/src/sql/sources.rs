//! Table sources as split sources of [`SqlBatch`]es: `datagen` rows and the
//! lines of `filesystem` files decoded by their format, with the table's
//! computed columns added.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, SchemaRef};

use super::batch::{RowKind, SqlBatch, interleave_batches};
use super::connectors::{DatagenOptions, FieldGenerator, ParseErrors, TextFormat};
use super::lower::Computed;
use crate::exec::control::OperatorMetrics;
use crate::exec::{FileSource, ReadStatus, SourceError, SplitId, SplitSource};
use crate::pipelines::mix;

/// Computes a table's full rows (computed columns added) from its stored ones.
#[derive(Clone)]
pub struct ReadProjection {
    /// The table's columns, each computed from the stored ones.
    pub columns: Vec<Computed>,
    /// The table's schema.
    pub schema: SchemaRef,
}

impl ReadProjection {
    /// The table's full rows of the stored rows `batch` of an upsert source, whose
    /// deletes (`kinds`) hold only their key: a delete's computed columns are
    /// not computed (they would be computed over placeholders, and may fail:
    /// `100 / x` of a tombstone's `x = 0`) but null, or their type's default
    /// where NOT NULL. Only the key of a delete is read downstream.
    pub(super) fn apply_upserts(
        &self,
        batch: RecordBatch,
        kinds: &[RowKind],
    ) -> Result<RecordBatch, SourceError> {
        let deletes =
            BooleanArray::from_iter(kinds.iter().map(|kind| Some(*kind == RowKind::Delete)));
        if deletes.true_count() == 0 {
            return self.apply(batch);
        }
        let error = |error: arrow::error::ArrowError| SourceError(error.to_string());
        let upserts = arrow::compute::not(&deletes).map_err(error)?;
        let computed =
            self.apply(arrow::compute::filter_record_batch(&batch, &upserts).map_err(error)?)?;
        let deleted = arrow::compute::filter_record_batch(&batch, &deletes).map_err(error)?;
        let deleted = self.keys_only(&deleted)?;
        // Back in the records' order.
        let (mut next_upsert, mut next_delete) = (0, 0);
        let order: Vec<(usize, usize)> = kinds
            .iter()
            .map(|kind| {
                if *kind == RowKind::Delete {
                    next_delete += 1;
                    (1, next_delete - 1)
                } else {
                    next_upsert += 1;
                    (0, next_upsert - 1)
                }
            })
            .collect();
        interleave_batches(&self.schema, [&computed, &deleted], &order).map_err(error)
    }

    /// The stored columns of `batch` as they are, its computed ones null (or
    /// their type's default where NOT NULL).
    fn keys_only(&self, batch: &RecordBatch) -> Result<RecordBatch, SourceError> {
        let rows = batch.num_rows();
        let columns = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column
                    .expr
                    .is::<datafusion::physical_expr::expressions::Column>()
                {
                    return column.evaluate(batch).map_err(SourceError);
                }
                let value = if field.is_nullable() {
                    datafusion::common::ScalarValue::try_from(field.data_type())
                } else {
                    datafusion::common::ScalarValue::new_default(field.data_type())
                };
                value
                    .and_then(|value| value.to_array_of_size(rows))
                    .map_err(|error| SourceError(format!("column {}: {error}", field.name())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|error| SourceError(error.to_string()))
    }

    /// The table's full rows of the stored rows `batch`.
    pub(super) fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, SourceError> {
        let columns = self
            .columns
            .iter()
            .map(|column| column.evaluate(&batch).map_err(SourceError))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|error| SourceError(error.to_string()))
    }
}

/// Rows of the `datagen` connector: `splits` sequences, row `n` of split `s`
/// being row `n * splits + s` of the table, so the rows are the same at every
/// parallelism.
pub struct DatagenSource {
    options: DatagenOptions,
    stored: SchemaRef,
    projection: Option<ReadProjection>,
    splits: u32,
    started: Option<Instant>,
}

impl DatagenSource {
    /// A generator of the stored columns `stored`.
    pub fn new(
        options: DatagenOptions,
        stored: SchemaRef,
        projection: Option<ReadProjection>,
        splits: u32,
    ) -> Self {
        Self {
            options,
            stored,
            projection,
            splits: splits.max(1),
            started: None,
        }
    }

    fn column(&self, field: usize, rows: &[u64]) -> ArrayRef {
        let data_type = self.stored.field(field).data_type();
        match &self.options.fields[field] {
            FieldGenerator::Sequence { start, .. } => {
                let values = rows.iter().map(|&row| start + row as i64);
                match data_type {
                    DataType::Utf8 => {
                        Arc::new(StringArray::from_iter_values(values.map(|v| v.to_string())))
                    }
                    _ => arrow::compute::cast(
                        &(Arc::new(Int64Array::from_iter_values(values)) as ArrayRef),
                        data_type,
                    )
                    .expect("sequences are whole numbers"),
                }
            }
            FieldGenerator::Random {
                min,
                max,
                length,
                max_past,
                null_rate,
            } => {
                let random = |row: u64| mix(0x5eed, field as u64, row);
                let unit = |row: u64| (random(row) >> 11) as f64 / (1u64 << 53) as f64;
                let nulls: Vec<bool> = rows
                    .iter()
                    .map(|&row| {
                        *null_rate > 0.0
                            && (mix(0x0011, field as u64, row) >> 11) as f64 / (1u64 << 53) as f64
                                <= *null_rate
                    })
                    .collect();
                let number = |row: u64, low: f64, high: f64| {
                    let low = min.unwrap_or(low);
                    let high = max.unwrap_or(high);
                    low + (unit(row) * (high - low + 1.0)).floor()
                };
                let array: ArrayRef = match data_type {
                    DataType::Boolean => Arc::new(BooleanArray::from_iter(
                        rows.iter().map(|&r| Some(random(r) % 2 == 0)),
                    )),
                    DataType::Int8 => Arc::new(Int8Array::from_iter_values(
                        rows.iter()
                            .map(|&r| number(r, i8::MIN as f64, i8::MAX as f64) as i8),
                    )),
                    DataType::Int16 => Arc::new(Int16Array::from_iter_values(
                        rows.iter()
                            .map(|&r| number(r, i16::MIN as f64, i16::MAX as f64) as i16),
                    )),
                    DataType::Int32 => Arc::new(Int32Array::from_iter_values(
                        rows.iter()
                            .map(|&r| number(r, i32::MIN as f64, i32::MAX as f64) as i32),
                    )),
                    DataType::Int64 => Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|&r| number(r, -1e15, 1e15) as i64),
                    )),
                    DataType::Float32 => {
                        Arc::new(Float32Array::from_iter_values(rows.iter().map(|&r| {
                            (min.unwrap_or(0.0)
                                + unit(r) * (max.unwrap_or(1.0) - min.unwrap_or(0.0)))
                                as f32
                        })))
                    }
                    DataType::Float64 => {
                        Arc::new(Float64Array::from_iter_values(rows.iter().map(|&r| {
                            min.unwrap_or(0.0) + unit(r) * (max.unwrap_or(1.0) - min.unwrap_or(0.0))
                        })))
                    }
                    DataType::Timestamp(_, _) => {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        let past = max_past.as_millis() as u64;
                        let values = rows.iter().map(|&r| {
                            now - if past == 0 {
                                0
                            } else {
                                (random(r) % past) as i64
                            }
                        });
                        let array: ArrayRef =
                            Arc::new(TimestampMillisecondArray::from_iter_values(values));
                        arrow::compute::cast(&array, data_type).expect("timestamps cast")
                    }
                    DataType::Utf8 => {
                        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
                        Arc::new(StringArray::from_iter_values(rows.iter().map(|&r| {
                            (0..*length as u64)
                                .map(|i| {
                                    LETTERS[(mix(random(r), i, 1) % LETTERS.len() as u64) as usize]
                                        as char
                                })
                                .collect::<String>()
                        })))
                    }
                    other => {
                        let numbers: ArrayRef = Arc::new(Float64Array::from_iter_values(
                            rows.iter().map(|&r| number(r, 0.0, 1e6)),
                        ));
                        arrow::compute::cast(&numbers, other)
                            .unwrap_or_else(|_| arrow::array::new_null_array(other, rows.len()))
                    }
                };
                if nulls.iter().any(|null| *null) {
                    let keep =
                        BooleanArray::from(nulls.iter().map(|null| !null).collect::<Vec<_>>());
                    arrow::compute::nullif(&array, &arrow::compute::not(&keep).expect("not"))
                        .expect("nullif")
                } else {
                    array
                }
            }
        }
    }
}

impl SplitSource for DatagenSource {
    type Record = SqlBatch;
    type Position = u64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        Ok((0..self.splits)
            .map(|split| SplitId::new("", split))
            .collect())
    }

    fn start(&mut self, _split: &SplitId, _discovered_later: bool) -> Result<u64, SourceError> {
        Ok(0)
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut u64,
        max: usize,
        out: &mut Vec<SqlBatch>,
    ) -> Result<ReadStatus, SourceError> {
        let splits = u64::from(self.splits);
        let index = u64::from(split.index);
        let rows_of_split = self
            .options
            .number_of_rows
            .map(|total| total / splits + u64::from(index < total % splits));
        let mut end = *position + max as u64;
        let mut limited = false;
        if let Some(rate) = self.options.rows_per_second {
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = (started.elapsed().as_secs_f64() * rate as f64 / splits as f64) as u64;
            if allowed < end {
                end = allowed.max(*position);
                limited = true;
            }
        }
        if let Some(count) = rows_of_split {
            end = end.min(count);
        }
        if end > *position {
            let rows: Vec<u64> = (*position..end).map(|n| n * splits + index).collect();
            let columns = (0..self.stored.fields().len())
                .map(|field| self.column(field, &rows))
                .collect();
            let batch = RecordBatch::try_new(Arc::clone(&self.stored), columns)
                .map_err(|error| SourceError(error.to_string()))?;
            let batch = match &self.projection {
                Some(projection) => projection.apply(batch)?,
                None => batch,
            };
            out.push(SqlBatch(batch));
            *position = end;
        }
        Ok(match rows_of_split {
            Some(count) if *position >= count => ReadStatus::Ended,
            _ if limited => ReadStatus::Idle,
            _ => ReadStatus::More,
        })
    }

    fn count(record: &SqlBatch) -> u64 {
        record.num_rows() as u64
    }
}

/// The lines of a folder's files, decoded as JSON lines or CSV into batches.
pub struct FileTableSource {
    files: FileSource,
    format: TextFormat,
    parse_errors: ParseErrors,
    stored: SchemaRef,
    projection: Option<ReadProjection>,
    table: String,
    /// Where skipped records are counted.
    metrics: OperatorMetrics,
    lines: Vec<String>,
}

impl FileTableSource {
    /// The files of `dir`, decoded into rows of `stored`; skipped records are
    /// counted in `metrics`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        files: FileSource,
        format: TextFormat,
        parse_errors: ParseErrors,
        stored: SchemaRef,
        projection: Option<ReadProjection>,
        table: &str,
        metrics: OperatorMetrics,
    ) -> Self {
        Self {
            files,
            format,
            parse_errors,
            stored,
            projection,
            table: table.to_owned(),
            metrics,
            lines: Vec::new(),
        }
    }
}

/// Decodes `values` (JSON objects or CSV rows, one per value) into one batch of
/// `schema`, and says which values the rows are of. A value that does not decode
/// to exactly one row fails the job, naming `table` and `where_is(index)`, or is
/// skipped, by `parse_errors`.
pub(super) fn decode_text(
    format: TextFormat,
    schema: &SchemaRef,
    values: &[&[u8]],
    parse_errors: ParseErrors,
    table: &str,
    where_is: impl Fn(usize) -> String,
) -> Result<(RecordBatch, Vec<usize>), SourceError> {
    if let Ok(batch) = decode_values(format, schema, values) {
        return Ok((batch, (0..values.len()).collect()));
    }
    // Value by value, each with a decoder of its own, to find the ones that do
    // not decode (a decoder's state is not to be trusted after an error).
    let mut good = Vec::new();
    let mut kept = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match decode_values(format, schema, std::slice::from_ref(value)) {
            Ok(batch) => {
                good.push(batch);
                kept.push(index);
            }
            Err(_) if parse_errors == ParseErrors::Skip => {}
            Err((_, error)) => {
                let name = match format {
                    TextFormat::Json => "json",
                    TextFormat::Csv => "csv",
                };
                return Err(SourceError(format!(
                    "table {table}: the record at {} does not parse as {name} ({error}); set '{name}.ignore-parse-errors' = 'true' to skip such records: {:?}",
                    where_is(index),
                    String::from_utf8_lossy(value)
                )));
            }
        }
    }
    let batch = arrow::compute::concat_batches(schema, &good)
        .map_err(|error| SourceError(error.to_string()))?;
    Ok((batch, kept))
}

/// Decodes `values` with one decoder, checking that each value is read whole and
/// gives exactly one row; the first that does not fails with its index.
fn decode_values(
    format: TextFormat,
    schema: &SchemaRef,
    values: &[&[u8]],
) -> Result<RecordBatch, (usize, String)> {
    // Room for one row more than expected: a value of two rows shows.
    let capacity = values.len() + 1;
    let whole = |index: usize, consumed: usize, value: &[u8]| {
        if consumed == value.len() {
            Ok(())
        } else {
            Err((index, "more than one row in one record".to_owned()))
        }
    };
    let one_row = |index: usize, before: usize, after: usize| {
        if after == before + 1 {
            Ok(())
        } else {
            Err((index, format!("{} rows in one record", after - before)))
        }
    };
    let batch = match format {
        TextFormat::Json => {
            let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
                .with_batch_size(capacity)
                .build_decoder()
                .map_err(|error| (0, error.to_string()))?;
            for (index, value) in values.iter().enumerate() {
                let before = decoder.len();
                let consumed = decoder
                    .decode(value)
                    .map_err(|error| (index, error.to_string()))?;
                whole(index, consumed, value)?;
                if decoder.has_partial_record() {
                    return Err((index, "an incomplete JSON value".to_owned()));
                }
                one_row(index, before, decoder.len())?;
            }
            decoder.flush().map_err(|error| (0, error.to_string()))?
        }
        TextFormat::Csv => {
            let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(schema))
                .with_batch_size(capacity)
                .build_decoder();
            for (index, value) in values.iter().enumerate() {
                // A value's own line break ends its row as ours would.
                let value = value.strip_suffix(b"\n").unwrap_or(value);
                let value = value.strip_suffix(b"\r").unwrap_or(value);
                let before = capacity - decoder.capacity();
                let consumed = decoder
                    .decode(value)
                    .map_err(|error| (index, error.to_string()))?;
                whole(index, consumed, value)?;
                // The line break ends the value's row (a quoted field may hold one).
                let ended = decoder
                    .decode(b"\n")
                    .map_err(|error| (index, error.to_string()))?;
                if ended != 1 {
                    return Err((index, "more than one row in one record".to_owned()));
                }
                one_row(index, before, capacity - decoder.capacity())?;
            }
            decoder.flush().map_err(|error| (0, error.to_string()))?
        }
    };
    let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema)));
    if batch.num_rows() == values.len() {
        Ok(batch)
    } else {
        Err((
            0,
            format!("{} rows for {} records", batch.num_rows(), values.len()),
        ))
    }
}

impl SplitSource for FileTableSource {
    type Record = SqlBatch;
    type Position = u64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        self.files.discover()
    }

    fn start(&mut self, split: &SplitId, discovered_later: bool) -> Result<u64, SourceError> {
        self.files.start(split, discovered_later)
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut u64,
        max: usize,
        out: &mut Vec<SqlBatch>,
    ) -> Result<ReadStatus, SourceError> {
        let mut lines = std::mem::take(&mut self.lines);
        lines.clear();
        let mut after = *position;
        let status = self.files.read(split, &mut after, max, &mut lines)?;
        lines.retain(|line| !line.trim().is_empty());
        if !lines.is_empty() {
            let values: Vec<&[u8]> = lines.iter().map(|line| line.as_bytes()).collect();
            let (batch, kept) = decode_text(
                self.format,
                &self.stored,
                &values,
                self.parse_errors,
                &self.table,
                |_| split.to_string(),
            )?;
            for _ in kept.len()..values.len() {
                self.metrics.add_malformed_record();
            }
            let batch = match &self.projection {
                Some(projection) => projection.apply(batch)?,
                None => batch,
            };
            out.push(SqlBatch(batch));
        }
        *position = after;
        self.lines = lines;
        Ok(status)
    }

    fn count(record: &SqlBatch) -> u64 {
        record.num_rows() as u64
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;
    use arrow::datatypes::{Field, Schema};
    use datafusion::common::DFSchema;
    use datafusion::execution::context::ExecutionProps;
    use datafusion::logical_expr::{col, lit};

    use super::*;
    use crate::sql::physical::physical_expr;

    #[test]
    fn a_tombstones_computed_columns_are_not_computed() {
        let stored = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("x", DataType::Int32, false),
        ]);
        let df = DFSchema::try_from(stored.clone()).unwrap();
        let props = ExecutionProps::new();
        let computed = |expr: datafusion::logical_expr::Expr| {
            let physical = physical_expr(&expr, &df, &props).unwrap();
            Computed::new(physical, expr.to_string(), &stored)
        };
        let projection = ReadProjection {
            columns: vec![
                computed(col("id")),
                computed(col("x")),
                computed(lit(100) / col("x")),
            ],
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("x", DataType::Int32, false),
                Field::new("r", DataType::Int32, true),
            ])),
        };
        // An upsert, a tombstone (x a placeholder 0), an upsert.
        let batch = RecordBatch::try_new(
            Arc::new(stored.clone()),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Int32Array::from(vec![4, 0, 5])),
            ],
        )
        .unwrap();
        let kinds = [RowKind::UpdateAfter, RowKind::Delete, RowKind::UpdateAfter];
        assert!(projection.apply(batch.clone()).is_err(), "100 / 0 fails");
        let rows = projection.apply_upserts(batch, &kinds).unwrap();
        let ids = rows
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            [Some("a"), Some("b"), Some("c")]
        );
        let r = rows
            .column(2)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [Some(25), None, Some(20)]);
    }
}
