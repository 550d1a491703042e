//! [`SqlBatch`]: the Arrow record batches SQL operators exchange. Between threads
//! of a process a batch moves as it is; between processes it travels as Arrow IPC.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of the column a changelog stream's batches carry last: each row's
/// [`RowKind`] as an `Int8`. Insert-only streams carry none.
pub const OP_COLUMN: &str = "__op";

/// What a row of a changelog does, as Flink's `RowKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the row as it was before an update.
    UpdateBefore = 1,
    /// `+U`: the row as it is after an update.
    UpdateAfter = 2,
    /// `-D`: a row removed.
    Delete = 3,
}

impl RowKind {
    /// The kind of the op column value `code`.
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => Self::UpdateBefore,
            2 => Self::UpdateAfter,
            3 => Self::Delete,
            _ => Self::Insert,
        }
    }

    /// How Flink prints it: `+I`, `-U`, `+U`, `-D`.
    pub fn short_string(self) -> &'static str {
        match self {
            Self::Insert => "+I",
            Self::UpdateBefore => "-U",
            Self::UpdateAfter => "+U",
            Self::Delete => "-D",
        }
    }
}

/// The rows of two batches of `schema` in `order`: `(batch, row)` pairs, as
/// `arrow::compute::interleave` takes them.
pub fn interleave_batches(
    schema: &SchemaRef,
    batches: [&RecordBatch; 2],
    order: &[(usize, usize)],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = (0..schema.fields().len())
        .map(|column| {
            arrow::compute::interleave(
                &[
                    batches[0].column(column).as_ref(),
                    batches[1].column(column).as_ref(),
                ],
                order,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// `schema` with the op column added last.
pub fn with_op_column(schema: &arrow::datatypes::Schema) -> SchemaRef {
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        OP_COLUMN,
        DataType::Int8,
        false,
    )));
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// The kinds of a changelog batch's rows (its last column).
pub fn row_kinds(batch: &RecordBatch) -> Vec<RowKind> {
    let column = batch.column(batch.num_columns() - 1);
    let codes = column
        .as_any()
        .downcast_ref::<arrow::array::Int8Array>()
        .expect("a changelog batch ends with its op column");
    codes
        .values()
        .iter()
        .map(|&code| RowKind::from_code(code))
        .collect()
}

/// A batch of rows of one schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlBatch(pub RecordBatch);

impl SqlBatch {
    /// The number of rows.
    pub fn num_rows(&self) -> usize {
        self.0.num_rows()
    }

    /// The batch's schema.
    pub fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &[u32]) -> SqlBatch {
        let indices = UInt32Array::from(indices.to_vec());
        SqlBatch(take_record_batch(&self.0, &indices).expect("indices are rows of the batch"))
    }
}

impl Serialize for SqlBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &self.0.schema())
            .map_err(serde::ser::Error::custom)?;
        writer.write(&self.0).map_err(serde::ser::Error::custom)?;
        writer.finish().map_err(serde::ser::Error::custom)?;
        drop(writer);
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for SqlBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        let mut reader =
            StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(D::Error::custom)?;
        let batch = reader
            .next()
            .ok_or_else(|| D::Error::custom("an Arrow IPC stream without a batch"))?
            .map_err(D::Error::custom)?;
        Ok(SqlBatch(batch))
    }
}

/// The values of a timestamp column in milliseconds since the epoch (whatever its
/// unit), as an array of milliseconds.
pub fn timestamps_ms(column: &ArrayRef) -> TimestampMillisecondArray {
    let target = DataType::Timestamp(TimeUnit::Millisecond, None);
    let cast = arrow::compute::cast(column, &target).expect("timestamps cast to milliseconds");
    cast.as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("cast to milliseconds")
        .clone()
}

/// The watermark (milliseconds) a restored window operator goes on from: none
/// yet (`i64::MIN`) when the snapshot had none (0).
pub fn restored_watermark(watermark: crate::exec::EventTime) -> i64 {
    if watermark == 0 {
        i64::MIN
    } else {
        i64::try_from(watermark).unwrap_or(i64::MAX)
    }
}

/// The largest event time (milliseconds) in `column`, if any row has one.
pub fn max_event_time(column: &ArrayRef) -> Option<i64> {
    arrow::compute::max(&timestamps_ms(column))
}

/// An empty batch of `schema`.
pub fn empty(schema: &SchemaRef) -> SqlBatch {
    SqlBatch(RecordBatch::new_empty(Arc::clone(schema)))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn batches_travel_as_arrow_ipc() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let batch = SqlBatch(
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from(vec![1, 2, 3])),
                    Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                ],
            )
            .unwrap(),
        );
        let bytes = bincode::serialize(&batch).unwrap();
        let back: SqlBatch = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, batch);
        assert_eq!(batch.take(&[2, 0]).num_rows(), 2);
    }
}
