//! `kafka` tables: a topic's records decoded into batches of the table's rows
//! (the value by the table's format, `METADATA` columns from the record), and
//! rows encoded into the records the Kafka sink writes.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};

use super::avro_rows::{AvroRowError, AvroRows};
use super::batch::{RowKind, SqlBatch, interleave_batches, with_op_column};
use super::connectors::{KafkaFormat, ParseErrors, RegistryOptions, TextFormat};
use super::error::{SqlError, SqlResult};
use super::script::{ColumnDefinition, TableDefinition};
use super::sources::{ReadProjection, decode_text};
use crate::connectors::kafka::{KafkaOutput, KafkaRecord, KafkaSource};
use crate::exec::control::OperatorMetrics;
use crate::exec::{ReadStatus, SourceError, SplitId, SplitSource};

/// A value of the record a `METADATA` column holds (Flink's keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaMetadata {
    /// `topic`: the topic read.
    Topic,
    /// `partition`: the partition read.
    Partition,
    /// `offset`: the record's offset in its partition.
    Offset,
    /// `timestamp`: the record's timestamp (create or log-append time).
    Timestamp,
}

impl KafkaMetadata {
    /// Every key, as Flink names them.
    const KEYS: [(&'static str, Self); 4] = [
        ("topic", Self::Topic),
        ("partition", Self::Partition),
        ("offset", Self::Offset),
        ("timestamp", Self::Timestamp),
    ];

    fn from_key(key: &str) -> Option<Self> {
        Self::KEYS
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, metadata)| *metadata)
    }

    /// The type the value is read as (then cast to the column's).
    fn data_type(self) -> DataType {
        match self {
            Self::Topic => DataType::Utf8,
            Self::Partition => DataType::Int32,
            Self::Offset => DataType::Int64,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }

    /// The values of `records`.
    fn values(self, records: &[&KafkaRecord]) -> ArrayRef {
        match self {
            Self::Topic => Arc::new(StringArray::from_iter_values(
                records.iter().map(|record| record.topic.as_str()),
            )),
            Self::Partition => Arc::new(Int32Array::from_iter_values(
                records.iter().map(|record| record.partition),
            )),
            Self::Offset => Arc::new(Int64Array::from_iter_values(
                records.iter().map(|record| record.offset),
            )),
            Self::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(
                records.iter().map(|record| record.timestamp),
            )),
        }
    }
}

/// Where a stored column of a `kafka` table is in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnSource {
    /// The value's column of this index.
    Value(usize),
    /// A value of the record.
    Metadata(KafkaMetadata),
}

/// How a `kafka` table's stored columns map onto records: the physical columns
/// are the value's, encoded by the table's format; `METADATA` columns come from
/// the record (and are not written).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordLayout {
    format: KafkaFormat,
    /// The table's stored columns (physical and metadata ones), in order.
    stored: SchemaRef,
    /// The columns the value holds: the physical ones, in order.
    value: SchemaRef,
    /// For each stored column, where it comes from.
    columns: Vec<ColumnSource>,
    /// The value's Avro schema and codec, for format `avro`.
    avro: Option<AvroRows>,
    /// The record key written (`key.format`, `key.fields`); not read (the value
    /// holds every physical column, `'value.fields-include' = 'ALL'`).
    key: Option<KeyLayout>,
}

/// A record key: the stored columns `columns`, in the format `format`.
#[derive(Debug, Clone, PartialEq)]
struct KeyLayout {
    format: KafkaFormat,
    columns: Vec<usize>,
    /// The key's Avro schema and codec, for `'key.format' = 'avro'`.
    avro: Option<AvroRows>,
}

/// `key.format` and `key.fields` of a `kafka` table.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOptions {
    /// How the key is encoded.
    pub format: KafkaFormat,
    /// The physical columns it holds, in order.
    pub fields: Vec<String>,
    /// Where the key's schemas are, for `avro-confluent`.
    pub registry: Option<RegistryOptions>,
}

impl RecordLayout {
    /// The layout of the table `definition`, whose stored columns are `stored`,
    /// values in `format` (`registry` where it is `avro-confluent`).
    pub fn of_table(
        definition: &TableDefinition,
        stored: &SchemaRef,
        format: KafkaFormat,
        registry: Option<&RegistryOptions>,
        key: Option<&KeyOptions>,
    ) -> SqlResult<Self> {
        let mut value_fields = Vec::new();
        let mut columns = Vec::new();
        for column in &definition.columns {
            match column {
                ColumnDefinition::Physical { name, .. } => {
                    let field = stored
                        .field_with_name(name)
                        .expect("stored columns are the physical and metadata ones");
                    columns.push(ColumnSource::Value(value_fields.len()));
                    value_fields.push(field.clone());
                }
                ColumnDefinition::Metadata { name, key, at, .. } => {
                    let metadata = KafkaMetadata::from_key(key).ok_or_else(|| {
                        SqlError::new(
                            format!(
                                "table {}: column {name}: Kafka records have no metadata '{key}'; they have: {}",
                                definition.name,
                                KafkaMetadata::KEYS
                                    .iter()
                                    .map(|(key, _)| format!("'{key}'"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            *at,
                        )
                    })?;
                    let wanted = stored
                        .field_with_name(name)
                        .expect("stored columns are the physical and metadata ones")
                        .data_type();
                    if !arrow::compute::can_cast_types(&metadata.data_type(), wanted) {
                        return Err(SqlError::new(
                            format!(
                                "table {}: column {name}: metadata '{key}' cannot be read as {wanted}",
                                definition.name
                            ),
                            *at,
                        ));
                    }
                    columns.push(ColumnSource::Metadata(metadata));
                }
                ColumnDefinition::Computed { .. } => {}
            }
        }
        if format == KafkaFormat::Raw
            && !matches!(
                value_fields.as_slice(),
                [field] if matches!(field.data_type(), DataType::Utf8 | DataType::Binary)
            )
        {
            return Err(SqlError::new(
                format!(
                    "table {}: format 'raw' needs exactly one physical column, of type STRING or BYTES",
                    definition.name
                ),
                definition.at,
            ));
        }
        let value = Arc::new(Schema::new(value_fields));
        if let KafkaFormat::Text(TextFormat::Csv) = format {
            check_flat(definition, &value, "format")?;
        }
        let avro = avro_rows(definition, format, registry, &value, "format")?;
        let key = match key {
            None => None,
            Some(key) => Some(Self::key_layout(definition, &value, key)?),
        };
        Ok(Self {
            format,
            stored: Arc::clone(stored),
            value,
            columns,
            avro,
            key,
        })
    }

    /// The key of `key.fields`, each a physical column (of `value`, which holds
    /// them all).
    fn key_layout(
        definition: &TableDefinition,
        value: &SchemaRef,
        key: &KeyOptions,
    ) -> SqlResult<KeyLayout> {
        let refuse = |message: String| {
            SqlError::new(
                format!("table {}: {message}", definition.name),
                definition.at,
            )
        };
        let mut columns = Vec::new();
        for name in &key.fields {
            let is_physical = definition.columns.iter().any(|column| {
                matches!(column, ColumnDefinition::Physical { name: physical, .. } if physical == name)
            });
            if !is_physical {
                return Err(refuse(format!(
                    "'key.fields' names {name}, which is not a physical column of the table"
                )));
            }
            columns.push(
                value
                    .index_of(name)
                    .expect("the value holds every physical column"),
            );
        }
        if key.format == KafkaFormat::Text(TextFormat::Csv) {
            let fields: Vec<_> = columns.iter().map(|&c| value.field(c).clone()).collect();
            check_flat(definition, &Arc::new(Schema::new(fields)), "key.format")?;
        }
        if key.format == KafkaFormat::Raw
            && !matches!(
                columns.as_slice(),
                [column] if matches!(value.field(*column).data_type(), DataType::Utf8 | DataType::Binary)
            )
        {
            return Err(refuse(
                "'key.format' = 'raw' needs exactly one key field, of type STRING or BYTES"
                    .to_owned(),
            ));
        }
        let fields: Vec<_> = columns.iter().map(|&c| value.field(c).clone()).collect();
        let avro = avro_rows(
            definition,
            key.format,
            key.registry.as_ref(),
            &Arc::new(Schema::new(fields)),
            "key.format",
        )?;
        Ok(KeyLayout {
            format: key.format,
            columns,
            avro,
        })
    }

    /// The rows of `records` (tombstones skipped, as Flink does); a value that
    /// does not decode fails the job naming where it is, or is skipped and counted
    /// in the second result.
    pub fn decode(
        &self,
        records: &[KafkaRecord],
        parse_errors: ParseErrors,
        table: &str,
    ) -> Result<(RecordBatch, u64), SourceError> {
        let present: Vec<&KafkaRecord> = records
            .iter()
            .filter(|record| record.value.is_some())
            .collect();
        let (batch, kept) = self.decode_values(&present, parse_errors, table)?;
        Ok((batch, (present.len() - kept.len()) as u64))
    }

    /// The records of an `upsert-kafka` table as rows, in the records' order,
    /// each with its kind: a value is the row of its key (`+U`, an upsert), a
    /// tombstone (no value) a `-D` of the key's row, whose key columns come
    /// from the record key and whose other columns are null (their type's
    /// default where NOT NULL); the row deleted is the one the changelog
    /// normalize keeps for the key. A tombstone without a key deletes nothing
    /// and is dropped. A value or key that does not decode fails the job naming
    /// where it is, or is skipped and counted in the last result.
    pub fn decode_upserts(
        &self,
        records: &[KafkaRecord],
        parse_errors: ParseErrors,
        table: &str,
    ) -> Result<(RecordBatch, Vec<RowKind>, u64), SourceError> {
        let key = self.key.as_ref().ok_or_else(|| {
            SourceError(format!("table {table}: an upsert table has a record key"))
        })?;
        let present: Vec<&KafkaRecord> = records
            .iter()
            .filter(|record| record.value.is_some())
            .collect();
        let tombstones: Vec<&KafkaRecord> = records
            .iter()
            .filter(|record| record.value.is_none() && record.key.is_some())
            .collect();
        let (values, kept_values) = self.decode_values(&present, parse_errors, table)?;
        let (deletes, kept_deletes) =
            self.decode_tombstones(key, &tombstones, parse_errors, table)?;
        let skipped =
            (present.len() - kept_values.len() + tombstones.len() - kept_deletes.len()) as u64;
        // Back in the records' order: (batch, row) of each kept record.
        let mut value_rows = vec![None; present.len()];
        for (row, &index) in kept_values.iter().enumerate() {
            value_rows[index] = Some(row);
        }
        let mut delete_rows = vec![None; tombstones.len()];
        for (row, &index) in kept_deletes.iter().enumerate() {
            delete_rows[index] = Some(row);
        }
        let (mut next_value, mut next_tombstone) = (0, 0);
        let mut order = Vec::with_capacity(records.len());
        let mut kinds = Vec::with_capacity(records.len());
        for record in records {
            if record.value.is_some() {
                if let Some(row) = value_rows[next_value] {
                    order.push((0, row));
                    kinds.push(RowKind::UpdateAfter);
                }
                next_value += 1;
            } else if record.key.is_some() {
                if let Some(row) = delete_rows[next_tombstone] {
                    order.push((1, row));
                    kinds.push(RowKind::Delete);
                }
                next_tombstone += 1;
            }
        }
        let batch = interleave_batches(&self.stored, [&values, &deletes], &order)
            .map_err(|error| SourceError(format!("table {table}: {error}")))?;
        Ok((batch, kinds, skipped))
    }

    /// The rows of `present` (records with a value) and which of them they are.
    fn decode_values(
        &self,
        present: &[&KafkaRecord],
        parse_errors: ParseErrors,
        table: &str,
    ) -> Result<(RecordBatch, Vec<usize>), SourceError> {
        let values: Vec<&[u8]> = present
            .iter()
            .map(|record| record.value.as_deref().unwrap_or_default())
            .collect();
        let where_is = |row: usize| {
            let record = present[row];
            format!("{}/{}@{}", record.topic, record.partition, record.offset)
        };
        let (decoded, kept) = decode_with(
            self.format,
            self.avro.as_ref(),
            &self.value,
            &values,
            parse_errors,
            table,
            where_is,
        )?;
        let kept_records: Vec<&KafkaRecord> = kept.iter().map(|&row| present[row]).collect();
        let columns = self
            .columns
            .iter()
            .zip(self.stored.fields())
            .map(|(source, field)| match source {
                ColumnSource::Value(index) => Ok(Arc::clone(decoded.column(*index))),
                ColumnSource::Metadata(metadata) => {
                    arrow::compute::cast(&metadata.values(&kept_records), field.data_type())
                        .map_err(|error| SourceError(format!("table {table}: {error}")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&self.stored), columns)
            .map_err(|error| SourceError(format!("table {table}: {error}")))?;
        Ok((batch, kept))
    }

    /// The rows of `tombstones` (records with a key and no value): the key's
    /// columns from the record key, the other value columns null (their type's
    /// default where NOT NULL), metadata from the record.
    fn decode_tombstones(
        &self,
        key: &KeyLayout,
        tombstones: &[&KafkaRecord],
        parse_errors: ParseErrors,
        table: &str,
    ) -> Result<(RecordBatch, Vec<usize>), SourceError> {
        let keys: Vec<&[u8]> = tombstones
            .iter()
            .map(|record| record.key.as_deref().unwrap_or_default())
            .collect();
        let where_is = |row: usize| {
            let record = tombstones[row];
            format!(
                "the key at {}/{}@{}",
                record.topic, record.partition, record.offset
            )
        };
        let key_schema = Arc::new(Schema::new(
            key.columns
                .iter()
                .map(|&column| self.value.field(column).clone())
                .collect::<Vec<_>>(),
        ));
        let (decoded, kept) = decode_with(
            key.format,
            key.avro.as_ref(),
            &key_schema,
            &keys,
            parse_errors,
            table,
            where_is,
        )?;
        let rows = kept.len();
        let kept_records: Vec<&KafkaRecord> = kept.iter().map(|&row| tombstones[row]).collect();
        let columns = self
            .columns
            .iter()
            .zip(self.stored.fields())
            .map(|(source, field)| match source {
                ColumnSource::Value(index) => match key.columns.iter().position(|c| c == index) {
                    Some(position) => Ok(Arc::clone(decoded.column(position))),
                    None if field.is_nullable() => {
                        Ok(arrow::array::new_null_array(field.data_type(), rows))
                    }
                    None => datafusion::common::ScalarValue::new_default(field.data_type())
                        .and_then(|value| value.to_array_of_size(rows))
                        .map_err(|error| SourceError(format!("table {table}: {error}"))),
                },
                ColumnSource::Metadata(metadata) => {
                    arrow::compute::cast(&metadata.values(&kept_records), field.data_type())
                        .map_err(|error| SourceError(format!("table {table}: {error}")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&self.stored), columns)
            .map_err(|error| SourceError(format!("table {table}: {error}")))?;
        Ok((batch, kept))
    }

    /// The values as the one column of format `raw` (`schema`): bytes, or text
    /// that must be UTF-8.
    fn decode_raw(
        schema: &SchemaRef,
        values: &[&[u8]],
        parse_errors: ParseErrors,
        table: &str,
        where_is: impl Fn(usize) -> String,
    ) -> Result<(RecordBatch, Vec<usize>), SourceError> {
        let column: ArrayRef = if schema.field(0).data_type() == &DataType::Binary {
            Arc::new(BinaryArray::from_iter_values(values.iter().copied()))
        } else {
            let mut kept = Vec::new();
            let mut texts = Vec::new();
            for (row, value) in values.iter().enumerate() {
                match std::str::from_utf8(value) {
                    Ok(text) => {
                        kept.push(row);
                        texts.push(text);
                    }
                    Err(error) if parse_errors == ParseErrors::Fail => {
                        return Err(SourceError(format!(
                            "table {table}: the value at {} is not UTF-8 text ({error}); declare the column BYTES to read any bytes",
                            where_is(row)
                        )));
                    }
                    Err(_) => {}
                }
            }
            let batch = RecordBatch::try_new(
                Arc::clone(schema),
                vec![Arc::new(StringArray::from_iter_values(texts))],
            )
            .map_err(|error| SourceError(error.to_string()))?;
            return Ok((batch, kept));
        };
        let batch = RecordBatch::try_new(Arc::clone(schema), vec![column])
            .map_err(|error| SourceError(error.to_string()))?;
        Ok((batch, (0..values.len()).collect()))
    }

    /// The values as Avro records of the layout's schema (plain or in the
    /// Confluent wire format); one that is not fails the job naming where it is
    /// (Flink's Avro formats have no option to skip them).
    fn decode_avro(
        avro: &AvroRows,
        values: &[&[u8]],
        table: &str,
        where_is: impl Fn(usize) -> String,
    ) -> Result<(RecordBatch, Vec<usize>), SourceError> {
        let records = avro.decode_all(values).map_err(|(row, error)| {
            let at = where_is(row);
            SourceError(match error {
                AvroRowError::Registry(error) => {
                    format!("table {table}: the writer schema of the record at {at}: {error}")
                }
                error => {
                    format!("table {table}: the record at {at} does not parse as avro: {error}")
                }
            })
        })?;
        let batch = avro
            .to_batch(&records)
            .map_err(|error| SourceError(format!("table {table}: {error}")))?;
        Ok((batch, (0..values.len()).collect()))
    }

    /// One record per row of `batch` (the table's stored columns): the value
    /// holds the physical columns in the table's format, the key (if the table
    /// has `key.fields`) those columns in `key.format`. `batch` holds the table's
    /// physical columns (what a sink is given: metadata columns are not written).
    /// A row Avro cannot write (a registry that does not register the schema)
    /// fails naming the table.
    pub fn encode(&self, batch: &RecordBatch, table: &str) -> Result<Vec<KafkaOutput>, String> {
        debug_assert_eq!(batch.num_columns(), self.value.fields().len());
        let failed = |error: AvroRowError| format!("table {table}: writing a record: {error}");
        let values = encode_with(self.format, self.avro.as_ref(), batch).map_err(failed)?;
        let keys = match &self.key {
            Some(key) => encode_with(
                key.format,
                key.avro.as_ref(),
                &batch
                    .project(&key.columns)
                    .expect("the key's columns are among the value's"),
            )
            .map_err(|error| format!("table {table}: writing a record key: {error}"))?,
            None => vec![None; values.len()],
        };
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| KafkaOutput {
                key,
                value,
                headers: Vec::new(),
                partition: None,
            })
            .collect())
    }

    /// Registers the schemas the table's records are written with, for the
    /// `avro-confluent` format (value and key; nothing to do for the others):
    /// a sink does before it starts, so that a registry that refuses the schema
    /// (a change its compatibility rules forbid) fails the job at once.
    pub fn register_schemas(&self, table: &str) -> Result<(), String> {
        if let Some(avro) = &self.avro {
            avro.register()
                .map_err(|error| format!("table {table}: the value's schema: {error}"))?;
        }
        if let Some(avro) = self.key.as_ref().and_then(|key| key.avro.as_ref()) {
            avro.register()
                .map_err(|error| format!("table {table}: the key's schema: {error}"))?;
        }
        Ok(())
    }
}

/// `values` decoded in `format` as rows of `schema` (`avro` its codec, for
/// format `avro`), and which values the rows are of.
#[allow(clippy::too_many_arguments)]
fn decode_with(
    format: KafkaFormat,
    avro: Option<&AvroRows>,
    schema: &SchemaRef,
    values: &[&[u8]],
    parse_errors: ParseErrors,
    table: &str,
    where_is: impl Fn(usize) -> String,
) -> Result<(RecordBatch, Vec<usize>), SourceError> {
    match format {
        KafkaFormat::Text(format) => {
            decode_text(format, schema, values, parse_errors, table, where_is)
        }
        KafkaFormat::Raw => RecordLayout::decode_raw(schema, values, parse_errors, table, where_is),
        KafkaFormat::Avro | KafkaFormat::AvroConfluent => RecordLayout::decode_avro(
            avro.expect("tables of an Avro format have its codec"),
            values,
            table,
            where_is,
        ),
    }
}

/// The Avro codec of `columns` when `format` is `avro` (the format option
/// `option`), refusing a column Avro cannot hold.
fn avro_rows(
    definition: &TableDefinition,
    format: KafkaFormat,
    registry: Option<&RegistryOptions>,
    columns: &SchemaRef,
    option: &str,
) -> SqlResult<Option<AvroRows>> {
    let name = match format {
        KafkaFormat::Avro => "avro",
        KafkaFormat::AvroConfluent => "avro-confluent",
        KafkaFormat::Text(_) | KafkaFormat::Raw => return Ok(None),
    };
    let rows = AvroRows::derive(columns).map_err(|error| {
        SqlError::new(
            format!("table {}: {error} ('{option}' = '{name}')", definition.name),
            definition.at,
        )
    })?;
    Ok(Some(match registry {
        Some(registry) => {
            rows.in_confluent_wire(registry.registry.clone(), registry.subject.clone())
        }
        None => rows,
    }))
}

/// Each row of `batch` in `format`, with the Avro codec `avro` for the Avro
/// formats.
fn encode_with(
    format: KafkaFormat,
    avro: Option<&AvroRows>,
    batch: &RecordBatch,
) -> Result<Vec<Option<Vec<u8>>>, AvroRowError> {
    Ok(match (format, avro) {
        (KafkaFormat::Text(format), _) => encode_text(format, batch),
        (KafkaFormat::Raw, _) => encode_raw(batch),
        (KafkaFormat::Avro | KafkaFormat::AvroConfluent, Some(avro)) => {
            avro.encode(batch)?.into_iter().map(Some).collect()
        }
        (KafkaFormat::Avro | KafkaFormat::AvroConfluent, None) => {
            unreachable!("tables of an Avro format have its codec")
        }
    })
}

/// Refuses nested columns (ARRAY, ROW, MAP) in a CSV `option`: CSV has no form
/// for them.
pub(super) fn check_flat(
    definition: &TableDefinition,
    schema: &SchemaRef,
    option: &str,
) -> SqlResult<()> {
    match schema
        .fields()
        .iter()
        .find(|field| field.data_type().is_nested())
    {
        Some(field) => Err(SqlError::new(
            format!(
                "table {}: column {} is {}, which '{option}' = 'csv' cannot hold; use 'json'",
                definition.name,
                field.name(),
                field.data_type()
            ),
            definition.at,
        )),
        None => Ok(()),
    }
}

/// How timestamps are written: Flink's SQL form (`2024-01-01 10:00:00.123`),
/// which its JSON and CSV formats read by default.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";
/// The same with the zone of a `TIMESTAMP_LTZ` (always UTC here).
const TIMESTAMP_LTZ_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3fZ";

/// Each row of `batch` in `format`: a JSON object (explicit nulls) or a CSV line.
pub(super) fn encode_text(format: TextFormat, batch: &RecordBatch) -> Vec<Option<Vec<u8>>> {
    match format {
        TextFormat::Json => {
            let mut bytes = Vec::new();
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .with_timestamp_format(TIMESTAMP_FORMAT.to_owned())
                .with_timestamp_tz_format(TIMESTAMP_LTZ_FORMAT.to_owned())
                .build::<_, arrow::json::writer::LineDelimited>(&mut bytes);
            writer.write(batch).expect("rows encode as JSON");
            writer.finish().expect("rows encode as JSON");
            // JSON strings escape line breaks: each line is one row.
            bytes
                .split(|&byte| byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| Some(line.to_vec()))
                .collect()
        }
        TextFormat::Csv => (0..batch.num_rows())
            .map(|row| {
                // Row by row: a quoted field may hold a line break.
                let mut bytes = Vec::new();
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_owned())
                    .with_timestamp_tz_format(TIMESTAMP_LTZ_FORMAT.to_owned())
                    .build(&mut bytes);
                writer
                    .write(&batch.slice(row, 1))
                    .expect("rows encode as CSV");
                drop(writer);
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                Some(bytes)
            })
            .collect(),
    }
}

/// Each row of `batch`'s one column (STRING or BYTES) as its bytes, `None` when null.
fn encode_raw(batch: &RecordBatch) -> Vec<Option<Vec<u8>>> {
    let column = batch.column(0);
    (0..batch.num_rows())
        .map(|row| {
            if column.is_null(row) {
                return None;
            }
            Some(match column.as_any().downcast_ref::<StringArray>() {
                Some(text) => text.value(row).as_bytes().to_vec(),
                None => column
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .expect("raw columns are STRING or BYTES")
                    .value(row)
                    .to_vec(),
            })
        })
        .collect()
}

/// `batch` with the op column of `kinds` after its columns.
fn with_kinds(batch: RecordBatch, kinds: &[RowKind]) -> RecordBatch {
    let schema = with_op_column(&batch.schema());
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::Int8Array::from_iter_values(
        kinds.iter().map(|kind| *kind as i8),
    )));
    RecordBatch::try_new(schema, columns).expect("the rows and their kinds")
}

/// A `kafka` table read as batches of its rows: the records of a [`KafkaSource`],
/// decoded by the table's [`RecordLayout`], computed columns added.
pub struct KafkaTableSource {
    records: KafkaSource,
    layout: RecordLayout,
    projection: Option<ReadProjection>,
    parse_errors: ParseErrors,
    table: String,
    /// Where skipped records are counted.
    metrics: OperatorMetrics,
    buffer: Vec<KafkaRecord>,
    /// Whether the topic is read as upserts (`upsert-kafka`): batches carry the
    /// op column, `+U` for a value and `-D` for a tombstone.
    upserts: bool,
}

impl KafkaTableSource {
    /// The table `table` read from `records`; skipped records are counted in
    /// `metrics`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        records: KafkaSource,
        layout: RecordLayout,
        projection: Option<ReadProjection>,
        parse_errors: ParseErrors,
        table: &str,
        metrics: OperatorMetrics,
    ) -> Self {
        Self {
            records,
            layout,
            projection,
            parse_errors,
            table: table.to_owned(),
            metrics,
            buffer: Vec::new(),
            upserts: false,
        }
    }

    /// The source reading the topic as upserts (see
    /// [`RecordLayout::decode_upserts`]): its batches are the table's rows with
    /// the op column after them.
    pub fn reading_upserts(self) -> Self {
        Self {
            upserts: true,
            ..self
        }
    }
}

impl SplitSource for KafkaTableSource {
    type Record = SqlBatch;
    type Position = i64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        self.records.discover()
    }

    fn discovery_interval(&self) -> Option<Duration> {
        self.records.discovery_interval()
    }

    fn start(&mut self, split: &SplitId, discovered_later: bool) -> Result<i64, SourceError> {
        self.records.start(split, discovered_later)
    }

    fn assign(&mut self, splits: &[(SplitId, i64)]) -> Result<(), SourceError> {
        self.records.assign(splits)
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut i64,
        max: usize,
        out: &mut Vec<SqlBatch>,
    ) -> Result<ReadStatus, SourceError> {
        let mut records = std::mem::take(&mut self.buffer);
        records.clear();
        let mut after = *position;
        let status = self.records.read(split, &mut after, max, &mut records)?;
        if !records.is_empty() {
            let (batch, kinds, skipped) = if self.upserts {
                let (batch, kinds, skipped) =
                    self.layout
                        .decode_upserts(&records, self.parse_errors, &self.table)?;
                (batch, Some(kinds), skipped)
            } else {
                let (batch, skipped) =
                    self.layout
                        .decode(&records, self.parse_errors, &self.table)?;
                (batch, None, skipped)
            };
            for _ in 0..skipped {
                self.metrics.add_malformed_record();
            }
            if batch.num_rows() > 0 {
                let batch = match (&self.projection, &kinds) {
                    (Some(projection), Some(kinds)) => projection.apply_upserts(batch, kinds)?,
                    (Some(projection), None) => projection.apply(batch)?,
                    (None, _) => batch,
                };
                let batch = match kinds {
                    Some(kinds) => with_kinds(batch, &kinds),
                    None => batch,
                };
                out.push(SqlBatch(batch));
            }
        }
        *position = after;
        self.buffer = records;
        Ok(status)
    }

    fn restored_split(&self, split: SplitId) -> SplitId {
        self.records.restored_split(split)
    }

    fn count(record: &SqlBatch) -> u64 {
        record.num_rows() as u64
    }

    fn checkpoint_completed(&mut self, positions: &[(SplitId, i64)]) {
        self.records.checkpoint_completed(positions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::catalog::Catalog;
    use crate::sql::connectors::TableConnector;
    use crate::sql::script::parse_script;

    /// The layout and options of the `kafka` table `t` of `columns` and `options`.
    fn table(columns: &str, options: &str) -> SqlResult<(RecordLayout, ParseErrors)> {
        let script = format!(
            "CREATE TABLE t ({columns}) WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = 'x'{options});"
        );
        let (catalog, _) = Catalog::build(parse_script(&script)?)?;
        match &catalog.table("t").expect("t").connector {
            TableConnector::Kafka(options) => Ok((options.layout.clone(), options.parse_errors)),
            other => panic!("{other:?}"),
        }
    }

    fn record(offset: i64, value: Option<&str>) -> KafkaRecord {
        KafkaRecord {
            topic: "views".into(),
            partition: 2,
            offset,
            timestamp: Some(1_700_000_000_000 + offset),
            key: None,
            value: value.map(|value| value.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn tables_kafka_cannot_read_or_write_are_refused_naming_the_option_or_column() {
        let cases = [
            (
                "a INT, m INT METADATA FROM 'leader'",
                ", 'format' = 'json'",
                "Kafka records have no metadata 'leader'; they have: 'topic', 'partition', 'offset', 'timestamp'",
            ),
            (
                "a INT, p BOOLEAN METADATA FROM 'timestamp'",
                ", 'format' = 'json'",
                "metadata 'timestamp' cannot be read as Boolean",
            ),
            (
                "a STRING, b STRING",
                ", 'format' = 'raw'",
                "format 'raw' needs exactly one physical column",
            ),
            (
                "a STRING",
                ", 'format' = 'avro-confluent'",
                "the option 'avro-confluent.url' is required",
            ),
            (
                "a STRING",
                ", 'value.format' = 'avro-confluent', 'value.avro-confluent.url' = 'http://u:secret@registry'",
                "option 'value.avro-confluent.url' = '…': expected a schema registry URL: http://registry is not a schema registry URL: credentials in the URL are not taken",
            ),
            (
                "a STRING",
                ", 'format' = 'avro-confluent', 'avro-confluent.url' = 'http://registry', 'avro-confluent.basic-auth.user-info' = 'u:p'",
                "unsupported options for connector 'kafka': 'avro-confluent.basic-auth.user-info'",
            ),
            (
                "a STRING, ts TIMESTAMP_LTZ(3)",
                ", 'format' = 'avro'",
                "table t: column ts is Timestamp(ms, \"UTC\"), which Avro cannot hold",
            ),
            (
                "a STRING, m MAP<INT, STRING>",
                ", 'format' = 'json', 'key.format' = 'avro', 'key.fields' = 'm'",
                "column m is Map",
            ),
            (
                "a STRING",
                ", 'format' = 'json', 'properties.sasl.mechanism' = 'PLAIN'",
                "'properties.sasl.mechanism'",
            ),
            (
                "a STRING",
                ", 'format' = 'json', 'scan.bounded.mode' = 'specific-offsets'",
                "expected unbounded or latest-offset",
            ),
        ];
        for (columns, options, expected) in cases {
            let error = table(columns, options).unwrap_err().to_string();
            assert!(error.contains(expected), "{columns} {options}: {error}");
        }
    }

    #[test]
    fn avro_confluent_subjects_default_to_the_topic_and_take_flinks_option_names() {
        let subjects = |options: &str| {
            let (layout, _) = table("id BIGINT, name STRING", options).unwrap();
            let value = layout
                .avro
                .as_ref()
                .and_then(|avro| avro.subject().map(str::to_owned));
            let key = layout
                .key
                .as_ref()
                .and_then(|key| key.avro.as_ref())
                .and_then(|avro| avro.subject().map(str::to_owned));
            (value, key)
        };
        assert_eq!(
            subjects(
                ", 'value.format' = 'avro-confluent', 'value.avro-confluent.url' = 'http://r:8081',
                 'key.format' = 'avro-confluent', 'key.avro-confluent.url' = 'http://r:8081', 'key.fields' = 'id'"
            ),
            (Some("x-value".to_owned()), Some("x-key".to_owned()))
        );
        assert_eq!(
            subjects(
                ", 'format' = 'avro-confluent', 'avro-confluent.url' = 'http://r:8081', 'avro-confluent.subject' = 'clicks'"
            ),
            (Some("clicks".to_owned()), None)
        );
        // Flink's older option names.
        assert_eq!(
            subjects(
                ", 'format' = 'avro-confluent', 'avro-confluent.schema-registry.url' = 'http://r',
                 'avro-confluent.schema-registry.subject' = 'old'"
            ),
            (Some("old".to_owned()), None)
        );
        let error = table(
            "id BIGINT",
            ", 'format' = 'avro-confluent', 'avro-confluent.schema-registry.url' = 'ftp://r'",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("option 'avro-confluent.schema-registry.url' = '…'"),
            "{error}"
        );
    }

    #[test]
    fn primary_key_columns_are_not_null_as_in_flink() {
        let (layout, _) = table(
            "id BIGINT, name STRING, PRIMARY KEY (id) NOT ENFORCED",
            ", 'format' = 'json', 'key.format' = 'avro', 'key.fields' = 'id'",
        )
        .unwrap();
        assert!(!layout.stored.field(0).is_nullable());
        assert!(layout.stored.field(1).is_nullable());
        // The key's Avro schema is Flink's: `long`, not a union with null.
        let key = layout.key.as_ref().unwrap().avro.as_ref().unwrap();
        let expected = apache_avro::Schema::parse_str(
            r#"{"type": "record", "name": "record", "namespace": "org.apache.flink.avro.generated",
                "fields": [{"name": "id", "type": "long"}]}"#,
        )
        .unwrap();
        assert_eq!(key.schema(), &expected);
    }

    #[test]
    fn upsert_tables_need_a_primary_key_and_both_formats() {
        let error = |columns: &str, options: &str| {
            let script = format!(
                "CREATE TABLE t ({columns}) WITH ('connector' = 'upsert-kafka', 'cluster' = 'a', 'topic' = 'x'{options});"
            );
            match parse_script(&script).and_then(Catalog::build) {
                Ok(_) => panic!("{script} was accepted"),
                Err(error) => error.to_string(),
            }
        };
        let cases = [
            (
                "a STRING, n BIGINT",
                ", 'key.format' = 'json', 'value.format' = 'json'",
                "needs a PRIMARY KEY (...) NOT ENFORCED",
            ),
            (
                "a STRING, n BIGINT, PRIMARY KEY (a) NOT ENFORCED",
                ", 'value.format' = 'json'",
                "needs 'key.format'",
            ),
            (
                "a STRING, n BIGINT, PRIMARY KEY (a) NOT ENFORCED",
                ", 'key.format' = 'json', 'format' = 'json'",
                "'format' is not an option of connector 'upsert-kafka'",
            ),
            (
                "a STRING, n BIGINT, PRIMARY KEY (a) NOT ENFORCED",
                ", 'key.format' = 'json', 'value.format' = 'json', 'key.fields' = 'n'",
                "the key is the PRIMARY KEY",
            ),
        ];
        for (columns, options, expected) in cases {
            let error = error(columns, options);
            assert!(error.contains(expected), "{columns} {options}: {error}");
        }
        let script = "CREATE TABLE t (a STRING, n BIGINT, PRIMARY KEY (a) NOT ENFORCED) WITH ('connector' = 'upsert-kafka', 'cluster' = 'a', 'topic' = 'x', 'key.format' = 'raw', 'value.format' = 'json');";
        let (catalog, _) = Catalog::build(parse_script(script).unwrap()).unwrap();
        assert!(matches!(
            catalog.table("t").unwrap().connector,
            TableConnector::UpsertKafka(_)
        ));
    }

    #[test]
    fn values_and_metadata_decode_into_rows_tombstones_and_malformed_values_aside() {
        let (layout, _) = table(
            "country STRING, views BIGINT, p INT METADATA FROM 'partition', o BIGINT METADATA FROM 'offset' VIRTUAL, ts TIMESTAMP(3) METADATA FROM 'timestamp'",
            ", 'format' = 'json'",
        )
        .unwrap();
        let records = [
            record(10, Some(r#"{"country": "nl", "views": 3}"#)),
            record(11, None),
            record(12, Some("not json")),
            record(13, Some(r#"{"country": "be"}"#)),
        ];
        let (batch, skipped) = layout.decode(&records, ParseErrors::Skip, "t").unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            crate::sql::job::format_rows(&batch, "+I"),
            [
                "+I[nl, 3, 2, 10, 2023-11-14T22:13:20.010]",
                "+I[be, NULL, 2, 13, 2023-11-14T22:13:20.013]"
            ]
        );
        let error = layout
            .decode(&records, ParseErrors::Fail, "t")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("table t: the record at views/2@12 does not parse as json"),
            "{error}"
        );
        assert!(
            error.contains("'json.ignore-parse-errors' = 'true'"),
            "{error}"
        );
    }

    #[test]
    fn upserts_decode_in_record_order_with_tombstones_keyed_by_the_record_key() {
        let script = "CREATE TABLE t (id STRING NOT NULL, n BIGINT NOT NULL, s STRING, o BIGINT METADATA FROM 'offset' VIRTUAL, PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'upsert-kafka', 'cluster' = 'a', 'topic' = 'x', 'key.format' = 'json', 'value.format' = 'json', 'json.ignore-parse-errors' = 'true');";
        let (catalog, _) = Catalog::build(parse_script(script).unwrap()).unwrap();
        let TableConnector::UpsertKafka(options) = &catalog.table("t").unwrap().connector else {
            panic!("an upsert table");
        };
        let keyed = |offset: i64, key: Option<&str>, value: Option<&str>| KafkaRecord {
            key: key.map(|key| format!(r#"{{"id": "{key}"}}"#).into_bytes()),
            ..record(offset, value)
        };
        let records = [
            keyed(1, Some("a"), Some(r#"{"id": "a", "n": 1, "s": "x"}"#)),
            keyed(2, Some("a"), None),
            // A tombstone without a key deletes nothing.
            keyed(3, None, None),
            keyed(4, Some("b"), Some("not json")),
            keyed(5, Some("b"), Some(r#"{"id": "b", "n": 2}"#)),
            keyed(6, Some("c"), None),
        ];
        let (batch, kinds, skipped) = options
            .layout
            .decode_upserts(&records, ParseErrors::Skip, "t")
            .unwrap();
        assert_eq!(skipped, 1);
        let printed = crate::sql::job::format_changelog(&with_kinds(batch, &kinds), true);
        // The NOT NULL column of a tombstone holds its type's default.
        assert_eq!(
            printed,
            [
                "+U[a, 1, x, 1]",
                "-D[a, 0, NULL, 2]",
                "+U[b, 2, NULL, 5]",
                "-D[c, 0, NULL, 6]"
            ]
        );
    }

    /// A value holding two rows (or none) is malformed: its rows never shift the
    /// metadata of the records after it, and the records after it are not lost.
    #[test]
    fn a_value_of_other_than_one_row_is_malformed_and_shifts_nothing() {
        let (json, _) = table(
            "a BIGINT, o BIGINT METADATA FROM 'offset' VIRTUAL",
            ", 'format' = 'json'",
        )
        .unwrap();
        let records = [
            record(1, Some(r#"{"a": 1} {"a": 2}"#)),
            record(2, Some(r#"{"a": 3}"#)),
            record(3, Some("  ")),
            record(4, Some(r#"{"a": 4}"#)),
        ];
        let (batch, skipped) = json.decode(&records, ParseErrors::Skip, "t").unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(
            crate::sql::job::format_rows(&batch, "+I"),
            ["+I[3, 2]", "+I[4, 4]"]
        );
        let error = json
            .decode(&records, ParseErrors::Fail, "t")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the record at views/2@1 does not parse"),
            "{error}"
        );

        let (csv, _) = table(
            "a BIGINT, b STRING, o BIGINT METADATA FROM 'offset' VIRTUAL",
            ", 'format' = 'csv'",
        )
        .unwrap();
        let records = [
            record(7, Some("1,x\n2,y")),
            record(8, Some("3,\"multi\nline\"\n")),
            record(9, Some("4,z")),
        ];
        let (batch, skipped) = csv.decode(&records, ParseErrors::Skip, "t").unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            crate::sql::job::format_rows(&batch, "+I"),
            ["+I[3, multi\nline, 8]", "+I[4, z, 9]"]
        );
    }

    #[test]
    fn rows_encode_as_one_value_each_with_the_key_columns_as_key() {
        let columns = "country STRING, views BIGINT, p INT METADATA FROM 'partition'";
        let (json, _) = table(columns, ", 'format' = 'json'").unwrap();
        let records = [
            record(1, Some(r#"{"country": "nl", "views": 3}"#)),
            record(2, Some(r#"{"country": "a \"b\"\nc"}"#)),
        ];
        let (batch, _) = json.decode(&records, ParseErrors::Fail, "t").unwrap();
        // A sink is given the physical columns only.
        let batch = batch.project(&[0, 1]).unwrap();
        let values = |outputs: Vec<KafkaOutput>| -> Vec<String> {
            outputs
                .into_iter()
                .map(|output| String::from_utf8(output.value.unwrap()).unwrap())
                .collect()
        };
        assert_eq!(
            values(json.encode(&batch, "t").unwrap()),
            [
                r#"{"country":"nl","views":3}"#,
                r#"{"country":"a \"b\"\nc","views":null}"#
            ]
        );
        let (csv, _) = table(columns, ", 'format' = 'csv'").unwrap();
        assert_eq!(
            values(csv.encode(&batch, "t").unwrap()),
            ["nl,3", "\"a \"\"b\"\"\nc\","]
        );
        let (keyed, _) = table(
            columns,
            ", 'format' = 'json', 'key.format' = 'csv', 'key.fields' = 'views;country'",
        )
        .unwrap();
        let outputs = keyed.encode(&batch, "t").unwrap();
        let keys: Vec<Option<String>> = outputs
            .iter()
            .map(|output| {
                output
                    .key
                    .clone()
                    .map(|key| String::from_utf8(key).unwrap())
            })
            .collect();
        assert_eq!(
            keys,
            [
                Some("3,nl".to_owned()),
                Some(",\"a \"\"b\"\"\nc\"".to_owned())
            ]
        );
        assert_eq!(values(outputs)[0], r#"{"country":"nl","views":3}"#);
        let (raw, _) = table("line STRING", ", 'format' = 'raw'").unwrap();
        let (lines, _) = raw
            .decode(&[record(5, Some("any text"))], ParseErrors::Fail, "t")
            .unwrap();
        assert_eq!(values(raw.encode(&lines, "t").unwrap()), ["any text"]);
    }

    #[test]
    fn avro_values_decode_with_metadata_and_a_malformed_one_fails_the_job() {
        let (layout, parse_errors) = table(
            "name STRING, n INT NOT NULL, o BIGINT METADATA FROM 'offset' VIRTUAL",
            ", 'format' = 'avro', 'key.format' = 'avro', 'key.fields' = 'n'",
        )
        .unwrap();
        assert_eq!(parse_errors, ParseErrors::Fail);
        let avro = |offset: i64, value: &[u8]| KafkaRecord {
            value: Some(value.to_vec()),
            ..record(offset, None)
        };
        // name: union branch 1 then "ab", or branch 0 (null); n: a zigzag int.
        let values: [&[u8]; 2] = [&[2, 4, b'a', b'b', 6], &[0, 5]];
        let records = [avro(1, values[0]), record(2, None), avro(3, values[1])];
        let (batch, skipped) = layout.decode(&records, parse_errors, "t").unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(
            crate::sql::job::format_rows(&batch, "+I"),
            ["+I[ab, 3, 1]", "+I[NULL, -3, 3]"]
        );
        let outputs = layout
            .encode(&batch.project(&[0, 1]).unwrap(), "t")
            .unwrap();
        let written: Vec<(Vec<u8>, Vec<u8>)> = outputs
            .into_iter()
            .map(|output| (output.key.unwrap(), output.value.unwrap()))
            .collect();
        assert_eq!(
            written,
            [(vec![6], values[0].to_vec()), (vec![5], values[1].to_vec())]
        );
        let malformed = [avro(3, values[1]), avro(4, &[2, 9])];
        let error = layout
            .decode(&malformed, ParseErrors::Fail, "t")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("table t: the record at views/2@4 does not parse as avro"),
            "{error}"
        );
    }
}
