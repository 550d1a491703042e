//! Flink's `avro` format for SQL tables: rows as plain Avro records (the binary
//! encoding of one datum, no container file, no registry header) of a schema
//! derived from the table's columns, as Flink's `AvroSchemaConverter.convertToSchema`
//! derives it.
//!
//! The derived schema is a record named `org.apache.flink.avro.generated.record`;
//! a nested ROW is a record named after the path to it (`…record_<field>`); a
//! nullable type is the union `["null", T]` (fields of it default to null). Types:
//!
//! | SQL | Avro |
//! |---|---|
//! | `BOOLEAN` | boolean |
//! | `TINYINT`, `SMALLINT`, `INT` | int |
//! | `BIGINT` | long |
//! | `FLOAT`, `DOUBLE` | float, double |
//! | `STRING`, `VARCHAR`, `CHAR` | string |
//! | `BYTES`, `VARBINARY`, `BINARY` | bytes |
//! | `DECIMAL(p, s)` | bytes, logical type decimal(p, s) |
//! | `DATE` | int, logical type date |
//! | `TIME(0..3)` | int, logical type time-millis |
//! | `TIMESTAMP(0..3)`, `TIMESTAMP(4..6)` | long, timestamp-millis, timestamp-micros |
//! | `ROW<...>`, `ARRAY<T>`, `MAP<STRING, V>` | record, array, map |
//!
//! Other types (`TIMESTAMP_LTZ`, `TIMESTAMP(7..9)`, maps with other keys) are
//! refused when the table is planned.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Decimal, Schema};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, ListArray, MapArray,
    RecordBatch, StringArray, StructArray, Time32MillisecondArray, TimestampMicrosecondArray,
    TimestampMillisecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, SchemaRef, Time32MillisecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType,
};
use serde_json::json;

use crate::format::avro::split_confluent;
use crate::format::schema_registry::{RegistryError, RegistrySchemas};

/// The full name Flink gives the top-level record of a derived schema.
const RECORD_NAME: &str = "org.apache.flink.avro.generated.record";

/// A column whose type the `avro` format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column} is {data_type}, which Avro cannot hold: {reason}")]
pub struct UnsupportedColumn {
    /// The column (a dotted path for a field of a ROW).
    pub column: String,
    /// Its type, as Arrow names it.
    pub data_type: String,
    /// Why, and what would do.
    pub reason: String,
}

/// Why an Avro record did not decode into a row, or a row did not encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvroRowError {
    /// Not the binary encoding of a datum of the schema (or, in the Confluent
    /// wire format, no valid header).
    #[error("not an Avro record of the table's schema: {0}")]
    Malformed(String),
    /// A decoded value of another shape than the column's (a bug: the schema is
    /// derived from the columns).
    #[error("column {column}: {reason}")]
    Shape {
        /// The column (a dotted path for a field of a ROW).
        column: String,
        /// What was found.
        reason: String,
    },
    /// The schema registry did not give a record's writer schema, or did not
    /// register the table's schema.
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// A record written with a schema that does not resolve to the table's (a
    /// field the table reads that the writer's schema lacks without a default,
    /// a type that does not promote).
    #[error("written with schema id {id}, which does not resolve to the table's schema: {reason}")]
    Incompatible {
        /// The writer schema's registry id.
        id: u32,
        /// Avro's reason.
        reason: String,
    },
    /// A row that is not a record of the schema (a null in a NOT NULL column).
    #[error("a row that is not a record of the table's schema: {0}")]
    Unwritable(String),
}

/// The largest value (string, bytes, array) an Avro record may declare.
const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// Rows of some columns as Avro records of the schema derived from them: plain
/// (Flink's `avro`) or in the Confluent wire format with a schema registry
/// (Flink's `avro-confluent`).
#[derive(Debug, Clone, PartialEq)]
pub struct AvroRows {
    /// The derived Avro schema: records are written with it and read as it.
    schema: Schema,
    /// The same as JSON text (with the fields' defaults), as registered.
    text: String,
    /// The columns.
    columns: SchemaRef,
    /// For the Confluent wire format: the registry and subject.
    confluent: Option<ConfluentWire>,
}

/// The Confluent wire format of a table's records: a zero byte, the writer
/// schema's registry id (4 bytes, big-endian), the datum.
#[derive(Debug, Clone, PartialEq)]
struct ConfluentWire {
    /// The registry, with the schemas learnt from it.
    registry: RegistrySchemas,
    /// The subject the table's schema is registered under when written.
    subject: String,
    /// The id it got, once registered (shared by the clones of the format).
    id: Arc<OnceLock<u32>>,
}

impl AvroRows {
    /// The format for rows of `columns`, or the first column it cannot hold.
    pub fn derive(columns: &SchemaRef) -> Result<Self, UnsupportedColumn> {
        // A malformed length prefix must not make the reader allocate gigabytes
        // (the library's default allows 512 MiB per value); no Kafka record is
        // larger than this. The first call sets the limit for the process.
        apache_avro::util::max_allocation_bytes(MAX_VALUE_BYTES);
        let fields = columns
            .fields()
            .iter()
            .map(|field| record_field(field, RECORD_NAME, field.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let text = json!({"type": "record", "name": RECORD_NAME, "fields": fields});
        let schema = Schema::parse(&text).map_err(|error| UnsupportedColumn {
            column: columns
                .fields()
                .iter()
                .map(|field| field.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
            data_type: "a row".to_owned(),
            reason: format!("the derived schema is not valid Avro ({error}); column names must be Avro names ([A-Za-z_][A-Za-z0-9_]*)"),
        })?;
        Ok(Self {
            schema,
            text: text.to_string(),
            columns: Arc::clone(columns),
            confluent: None,
        })
    }

    /// The same rows in the Confluent wire format: written with the derived
    /// schema registered under `subject` in `registry`, read with the writer
    /// schema the registry gives for each record's id, resolved to the derived
    /// one.
    pub fn in_confluent_wire(mut self, registry: RegistrySchemas, subject: String) -> Self {
        self.confluent = Some(ConfluentWire {
            registry,
            subject,
            id: Arc::default(),
        });
        self
    }

    /// The derived Avro schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The subject written records' schema is registered under, in the
    /// Confluent wire format.
    pub fn subject(&self) -> Option<&str> {
        self.confluent.as_ref().map(|wire| wire.subject.as_str())
    }

    /// Registers the schema records are written with, in the Confluent wire
    /// format (once per process; nothing to do for plain records), and returns
    /// its id.
    pub fn register(&self) -> Result<Option<u32>, RegistryError> {
        let Some(wire) = &self.confluent else {
            return Ok(None);
        };
        if let Some(&id) = wire.id.get() {
            return Ok(Some(id));
        }
        let id = wire
            .registry
            .registry()
            .register(&wire.subject, &self.text)?;
        Ok(Some(*wire.id.get_or_init(|| id)))
    }

    /// Decodes one plain record (the whole of `bytes`).
    pub fn decode(&self, bytes: &[u8]) -> Result<Value, AvroRowError> {
        Decoder::new(&self.schema, None)?.decode(bytes)
    }

    /// Decodes records (each value the whole of a record); the first that does
    /// not decode fails with its index. In the Confluent wire format each
    /// record is read with its writer schema, fetched from the registry the
    /// first time its id is seen.
    pub fn decode_all(&self, records: &[&[u8]]) -> Result<Vec<Value>, (usize, AvroRowError)> {
        let Some(wire) = &self.confluent else {
            let decoder = Decoder::new(&self.schema, None).map_err(|error| (0, error))?;
            return records
                .iter()
                .enumerate()
                .map(|(row, bytes)| decoder.decode(bytes).map_err(|error| (row, error)))
                .collect();
        };
        let framed = records
            .iter()
            .enumerate()
            .map(|(row, bytes)| {
                split_confluent(bytes)
                    .map_err(|error| (row, AvroRowError::Malformed(error.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The writer schemas of this batch, then a decoder per schema.
        let mut writers: HashMap<u32, Arc<Schema>> = HashMap::new();
        for (row, (id, _)) in framed.iter().enumerate() {
            if !writers.contains_key(id) {
                let schema = wire
                    .registry
                    .schema(*id)
                    .map_err(|error| (row, error.into()))?;
                writers.insert(*id, schema);
            }
        }
        let mut decoders = HashMap::with_capacity(writers.len());
        for (id, writer) in &writers {
            let resolve = **writer != self.schema;
            let decoder =
                Decoder::new(writer, resolve.then_some(&self.schema)).map_err(|error| {
                    let row = framed.iter().position(|(of, _)| of == id).unwrap_or(0);
                    (
                        row,
                        AvroRowError::Incompatible {
                            id: *id,
                            reason: error.to_string(),
                        },
                    )
                })?;
            decoders.insert(*id, (decoder, resolve));
        }
        framed
            .iter()
            .enumerate()
            .map(|(row, (id, datum))| {
                let (decoder, resolved) = &decoders[id];
                decoder.decode(datum).map_err(|error| {
                    // A datum its writer schema reads failed in the resolution.
                    let readable = *resolved
                        && Decoder::new(&writers[id], None)
                            .and_then(|decoder| decoder.decode(datum))
                            .is_ok();
                    match error {
                        AvroRowError::Malformed(reason) if readable => {
                            (row, AvroRowError::Incompatible { id: *id, reason })
                        }
                        other => (row, other),
                    }
                })
            })
            .collect()
    }

    /// The rows of decoded `records` (each a value [`decode`](Self::decode) gave).
    pub fn to_batch(&self, records: &[Value]) -> Result<RecordBatch, AvroRowError> {
        let columns = self
            .columns
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let values: Vec<&Value> = records
                    .iter()
                    .map(|record| match record {
                        Value::Record(fields) => fields
                            .get(index)
                            .map_or(&Value::Null, |(_, value)| unwrap_union(value)),
                        _ => &Value::Null,
                    })
                    .collect();
                column(&values, field, field.name())
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.columns), columns).map_err(|error| {
            AvroRowError::Shape {
                column: "*".to_owned(),
                reason: error.to_string(),
            }
        })
    }

    /// Each row of `batch` (of the format's columns) as an Avro record; in the
    /// Confluent wire format with the id of the registered schema (registered
    /// now if [`register`](Self::register) was not called).
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, AvroRowError> {
        let header = match self.register()? {
            Some(id) => confluent_header(id),
            None => Vec::new(),
        };
        let mut columns: Vec<std::vec::IntoIter<Value>> = batch
            .columns()
            .iter()
            .zip(self.columns.fields())
            .map(|(array, field)| values(array.as_ref(), field).into_iter())
            .collect();
        let writer = GenericDatumWriter::builder(&self.schema)
            .build()
            .map_err(|error| AvroRowError::Unwritable(error.to_string()))?;
        (0..batch.num_rows())
            .map(|_| {
                let record = Value::Record(
                    self.columns
                        .fields()
                        .iter()
                        .zip(&mut columns)
                        .map(|(field, values)| {
                            (field.name().clone(), values.next().unwrap_or(Value::Null))
                        })
                        .collect(),
                );
                let mut bytes = header.clone();
                writer
                    .write_value_ref(&mut bytes, &record)
                    .map_err(|error| AvroRowError::Unwritable(error.to_string()))?;
                Ok(bytes)
            })
            .collect()
    }
}

/// Decodes datums written with one schema, resolved to another where they differ.
struct Decoder<'a> {
    reader: GenericDatumReader<'a>,
    /// The schema decoded values conform to.
    schema: &'a Schema,
}

impl<'a> Decoder<'a> {
    /// Datums of `writer`, read as `reader` when given.
    fn new(writer: &'a Schema, reader: Option<&'a Schema>) -> Result<Self, AvroRowError> {
        let decoder = GenericDatumReader::builder(writer)
            .maybe_reader_schema(reader)
            .build()
            .map_err(|error| AvroRowError::Malformed(error.to_string()))?;
        Ok(Self {
            reader: decoder,
            schema: reader.unwrap_or(writer),
        })
    }

    /// One datum, the whole of `bytes`.
    fn decode(&self, mut bytes: &[u8]) -> Result<Value, AvroRowError> {
        let value = self
            .reader
            .read_value(&mut bytes)
            .map_err(|error| AvroRowError::Malformed(error.to_string()))?;
        if !bytes.is_empty() {
            return Err(AvroRowError::Malformed(format!(
                "{} bytes left after the record",
                bytes.len()
            )));
        }
        // The decoder reads a string cut short as null rather than failing.
        if !value.validate(self.schema) {
            return Err(AvroRowError::Malformed(
                "the record ends inside a value".to_owned(),
            ));
        }
        Ok(value)
    }
}

/// The Confluent wire format's header of records written with schema `id`.
fn confluent_header(id: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(5);
    header.push(0);
    header.extend_from_slice(&id.to_be_bytes());
    header
}

/// The field `field` of the record named `record` (a full name), as schema JSON.
fn record_field(
    field: &Field,
    record: &str,
    path: &str,
) -> Result<serde_json::Value, UnsupportedColumn> {
    let schema = type_schema(field, &format!("{record}_{}", field.name()), path)?;
    Ok(if field.is_nullable() {
        json!({"name": field.name(), "type": schema, "default": null})
    } else {
        json!({"name": field.name(), "type": schema})
    })
}

/// The schema JSON of `field`'s type (a union with null when nullable); a ROW in
/// it is a record named `name`; `path` names the column in errors.
fn type_schema(
    field: &Field,
    name: &str,
    path: &str,
) -> Result<serde_json::Value, UnsupportedColumn> {
    let refuse = |reason: &str| UnsupportedColumn {
        column: path.to_owned(),
        data_type: field.data_type().to_string(),
        reason: reason.to_owned(),
    };
    let schema = match field.data_type() {
        DataType::Boolean => json!("boolean"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => json!("int"),
        DataType::Int64 => json!("long"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        DataType::Utf8 => json!("string"),
        DataType::Binary => json!("bytes"),
        DataType::Decimal128(precision, scale) => {
            if *scale < 0 {
                return Err(refuse("a negative scale"));
            }
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        DataType::Date32 => json!({"type": "int", "logicalType": "date"}),
        DataType::Time32(TimeUnit::Millisecond) => {
            json!({"type": "int", "logicalType": "time-millis"})
        }
        DataType::Timestamp(unit, None) => match unit {
            TimeUnit::Millisecond => json!({"type": "long", "logicalType": "timestamp-millis"}),
            TimeUnit::Microsecond => json!({"type": "long", "logicalType": "timestamp-micros"}),
            TimeUnit::Second | TimeUnit::Nanosecond => {
                return Err(refuse(
                    "Avro timestamps have at most 6 fractional digits; use TIMESTAMP(3) or TIMESTAMP(6)",
                ));
            }
        },
        DataType::Timestamp(_, Some(_)) => {
            return Err(refuse(
                "TIMESTAMP_LTZ is not taken by the avro format yet; use TIMESTAMP(3)",
            ));
        }
        DataType::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|child| record_field(child, name, &format!("{path}.{}", child.name())))
                .collect::<Result<Vec<_>, _>>()?;
            json!({"type": "record", "name": name, "fields": fields})
        }
        DataType::List(item) => {
            json!({"type": "array", "items": type_schema(item, name, &format!("{path}[]"))?})
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(refuse("a map without key and value"));
            };
            if kv[0].data_type() != &DataType::Utf8 {
                return Err(refuse("Avro map keys are strings; use MAP<STRING, ...>"));
            }
            json!({"type": "map", "values": type_schema(&kv[1], name, &format!("{path}[]"))?})
        }
        _ => return Err(refuse("the avro format has no mapping for this type")),
    };
    Ok(if field.is_nullable() {
        json!(["null", schema])
    } else {
        schema
    })
}

/// The value of a union branch (nullable types are unions with null).
fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        value => value,
    }
}

/// Each value as `T` by `get`, `Value::Null` as null; `what` names the
/// expected value in errors.
fn each<T>(
    values: &[&Value],
    path: &str,
    what: &str,
    get: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<Option<T>>, AvroRowError> {
    values
        .iter()
        .map(|value| match value {
            Value::Null => Ok(None),
            value => get(value).map(Some).ok_or_else(|| AvroRowError::Shape {
                column: path.to_owned(),
                reason: format!("expected {what}, got {value:?}"),
            }),
        })
        .collect()
}

/// The column of `field` holding `values` (union branches already taken).
fn column(values: &[&Value], field: &Field, path: &str) -> Result<ArrayRef, AvroRowError> {
    let valid = || {
        NullBuffer::from(
            values
                .iter()
                .map(|value| **value != Value::Null)
                .collect::<Vec<_>>(),
        )
    };
    Ok(match field.data_type() {
        DataType::Boolean => Arc::new(BooleanArray::from(each(
            values,
            path,
            "a boolean",
            |v| match v {
                Value::Boolean(b) => Some(*b),
                _ => None,
            },
        )?)),
        // Flink narrows an Avro int to TINYINT and SMALLINT the same way.
        DataType::Int8 => Arc::new(Int8Array::from(each(
            values,
            path,
            "an int",
            |v| match v {
                Value::Int(i) => Some(*i as i8),
                _ => None,
            },
        )?)),
        DataType::Int16 => Arc::new(Int16Array::from(each(
            values,
            path,
            "an int",
            |v| match v {
                Value::Int(i) => Some(*i as i16),
                _ => None,
            },
        )?)),
        DataType::Int32 => Arc::new(Int32Array::from(each(
            values,
            path,
            "an int",
            |v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            },
        )?)),
        DataType::Int64 => Arc::new(Int64Array::from(each(
            values,
            path,
            "a long",
            |v| match v {
                Value::Long(i) => Some(*i),
                _ => None,
            },
        )?)),
        DataType::Float32 => Arc::new(Float32Array::from(each(
            values,
            path,
            "a float",
            |v| match v {
                Value::Float(f) => Some(*f),
                _ => None,
            },
        )?)),
        DataType::Float64 => Arc::new(Float64Array::from(each(
            values,
            path,
            "a double",
            |v| match v {
                Value::Double(f) => Some(*f),
                _ => None,
            },
        )?)),
        DataType::Utf8 => Arc::new(StringArray::from(each(
            values,
            path,
            "a string",
            |v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            },
        )?)),
        DataType::Binary => Arc::new(BinaryArray::from_iter(each(
            values,
            path,
            "bytes",
            |v| match v {
                Value::Bytes(b) => Some(b.clone()),
                _ => None,
            },
        )?)),
        DataType::Decimal128(precision, scale) => {
            Arc::new(
                Decimal128Array::from(each(values, path, "a decimal of at most 16 bytes", |v| {
                    match v {
                        Value::Decimal(decimal) => unscaled(decimal),
                        _ => None,
                    }
                })?)
                .with_precision_and_scale(*precision, *scale)
                .map_err(|error| AvroRowError::Shape {
                    column: path.to_owned(),
                    reason: error.to_string(),
                })?,
            )
        }
        DataType::Date32 => Arc::new(Date32Array::from(each(
            values,
            path,
            "a date",
            |v| match v {
                Value::Date(days) => Some(*days),
                _ => None,
            },
        )?)),
        DataType::Time32(TimeUnit::Millisecond) => Arc::new(Time32MillisecondArray::from(each(
            values,
            path,
            "a time-millis",
            |v| match v {
                Value::TimeMillis(millis) => Some(*millis),
                _ => None,
            },
        )?)),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            Arc::new(TimestampMillisecondArray::from(each(
                values,
                path,
                "a timestamp-millis",
                |v| match v {
                    Value::TimestampMillis(millis) => Some(*millis),
                    _ => None,
                },
            )?))
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            Arc::new(TimestampMicrosecondArray::from(each(
                values,
                path,
                "a timestamp-micros",
                |v| match v {
                    Value::TimestampMicros(micros) => Some(*micros),
                    _ => None,
                },
            )?))
        }
        DataType::Struct(fields) => {
            let children = fields
                .iter()
                .enumerate()
                .map(|(index, child)| {
                    let child_values: Vec<&Value> = values
                        .iter()
                        .map(|value| match value {
                            Value::Record(record) => record
                                .get(index)
                                .map_or(&Value::Null, |(_, value)| unwrap_union(value)),
                            _ => &Value::Null,
                        })
                        .collect();
                    column(&child_values, child, &format!("{path}.{}", child.name()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(
                StructArray::try_new(fields.clone(), children, Some(valid()))
                    .map_err(|error| shape(path, error))?,
            )
        }
        DataType::List(item) => {
            let mut lengths = Vec::with_capacity(values.len());
            let mut items = Vec::new();
            for value in values {
                match value {
                    Value::Array(array) => {
                        lengths.push(array.len());
                        items.extend(array.iter().map(unwrap_union));
                    }
                    _ => lengths.push(0),
                }
            }
            let items = column(&items, item, &format!("{path}[]"))?;
            Arc::new(
                ListArray::try_new(
                    Arc::clone(item),
                    OffsetBuffer::from_lengths(lengths),
                    items,
                    Some(valid()),
                )
                .map_err(|error| shape(path, error))?,
            )
        }
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!("a map's entries are a struct");
            };
            let mut lengths = Vec::with_capacity(values.len());
            let mut keys = Vec::new();
            let mut items = Vec::new();
            for value in values {
                match value {
                    Value::Map(map) => {
                        // Sorted, so that equal maps give equal rows.
                        let mut pairs: Vec<_> = map.iter().collect();
                        pairs.sort_by(|a, b| a.0.cmp(b.0));
                        lengths.push(pairs.len());
                        for (key, item) in pairs {
                            keys.push(key.as_str());
                            items.push(unwrap_union(item));
                        }
                    }
                    _ => lengths.push(0),
                }
            }
            let items = column(&items, &kv[1], &format!("{path}[]"))?;
            let entries_array = StructArray::try_new(
                kv.clone(),
                vec![Arc::new(StringArray::from(keys)), items],
                None,
            )
            .map_err(|error| shape(path, error))?;
            Arc::new(
                MapArray::try_new(
                    Arc::clone(entries),
                    OffsetBuffer::from_lengths(lengths),
                    entries_array,
                    Some(valid()),
                    *sorted,
                )
                .map_err(|error| shape(path, error))?,
            )
        }
        other => {
            return Err(AvroRowError::Shape {
                column: path.to_owned(),
                reason: format!("{other} has no Avro mapping"),
            });
        }
    })
}

fn shape(path: &str, error: arrow::error::ArrowError) -> AvroRowError {
    AvroRowError::Shape {
        column: path.to_owned(),
        reason: error.to_string(),
    }
}

/// The unscaled value of an Avro decimal (big-endian two's complement), if it
/// fits 128 bits.
fn unscaled(decimal: &Decimal) -> Option<i128> {
    let bytes = Vec::<u8>::try_from(decimal).ok()?;
    let negative = bytes.first().is_some_and(|byte| byte & 0x80 != 0);
    let sign = if negative { 0xFF } else { 0 };
    // Bytes beyond 16 may only repeat the sign.
    let excess = bytes.len().saturating_sub(16);
    if bytes[..excess].iter().any(|&byte| byte != sign) {
        return None;
    }
    let bytes = &bytes[excess..];
    let mut wide = [sign; 16];
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    let value = i128::from_be_bytes(wide);
    (value.is_negative() == negative).then_some(value)
}

/// The shortest big-endian two's complement bytes of `value`.
fn decimal_bytes(value: i128) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let sign = if value < 0 { 0xFF } else { 0 };
    let mut start = 0;
    while start < 15 && bytes[start] == sign && (bytes[start + 1] & 0x80 == sign & 0x80) {
        start += 1;
    }
    bytes[start..].to_vec()
}

/// The Avro values of `array` (of `field`), one per row; unions with null
/// where the field is nullable.
fn values(array: &dyn Array, field: &Field) -> Vec<Value> {
    let plain: Vec<Value> = match field.data_type() {
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Boolean))
            .collect(),
        DataType::Int8 => array
            .as_primitive::<Int8Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Int(v.into())))
            .collect(),
        DataType::Int16 => array
            .as_primitive::<Int16Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Int(v.into())))
            .collect(),
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Int))
            .collect(),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Long))
            .collect(),
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Float))
            .collect(),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Double))
            .collect(),
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::String(v.to_owned())))
            .collect(),
        DataType::Binary => array
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Bytes(v.to_vec())))
            .collect(),
        DataType::Decimal128(..) => array
            .as_primitive::<Decimal128Type>()
            .iter()
            .map(|v| {
                v.map_or(Value::Null, |v| {
                    Value::Decimal(Decimal::from(decimal_bytes(v)))
                })
            })
            .collect(),
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Date))
            .collect(),
        DataType::Time32(TimeUnit::Millisecond) => array
            .as_primitive::<Time32MillisecondType>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::TimeMillis))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => array
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::TimestampMillis))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::TimestampMicros))
            .collect(),
        DataType::Struct(fields) => {
            let array = array.as_struct();
            let mut children: Vec<std::vec::IntoIter<Value>> = array
                .columns()
                .iter()
                .zip(fields)
                .map(|(child, field)| values(child.as_ref(), field).into_iter())
                .collect();
            (0..array.len())
                .map(|row| {
                    let record: Vec<(String, Value)> = fields
                        .iter()
                        .zip(&mut children)
                        .map(|(field, values)| {
                            (
                                field.name().clone(),
                                values.next().expect("a value per row"),
                            )
                        })
                        .collect();
                    if array.is_null(row) {
                        Value::Null
                    } else {
                        Value::Record(record)
                    }
                })
                .collect()
        }
        DataType::List(item) => {
            let array = array.as_list::<i32>();
            let items = values(array.values().as_ref(), item);
            let offsets = array.value_offsets();
            (0..array.len())
                .map(|row| {
                    if array.is_null(row) {
                        return Value::Null;
                    }
                    let range = offsets[row] as usize..offsets[row + 1] as usize;
                    Value::Array(items[range].to_vec())
                })
                .collect()
        }
        DataType::Map(_, _) => {
            let array = array.as_map();
            let DataType::Struct(kv) = array.entries().data_type() else {
                unreachable!("a map's entries are a struct");
            };
            let items = values(array.values().as_ref(), &kv[1]);
            let keys = array.keys().as_string::<i32>();
            let offsets = array.value_offsets();
            (0..array.len())
                .map(|row| {
                    if array.is_null(row) {
                        return Value::Null;
                    }
                    let range = offsets[row] as usize..offsets[row + 1] as usize;
                    Value::Map(
                        range
                            .map(|entry| (keys.value(entry).to_owned(), items[entry].clone()))
                            .collect::<HashMap<_, _>>(),
                    )
                })
                .collect()
        }
        other => unreachable!("{other} has no Avro schema, so no format of it was derived"),
    };
    if field.is_nullable() {
        plain
            .into_iter()
            .map(|value| match value {
                Value::Null => Value::Union(0, Box::new(Value::Null)),
                value => Value::Union(1, Box::new(value)),
            })
            .collect()
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Fields, Schema as ArrowSchema};

    use super::*;

    fn columns(fields: Vec<Field>) -> SchemaRef {
        Arc::new(ArrowSchema::new(fields))
    }

    /// `inner ROW<a INT NOT NULL, tags ARRAY<STRING>>`.
    fn inner_row() -> DataType {
        DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, false),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
                true,
            ),
        ]))
    }

    fn map_of(value: DataType) -> DataType {
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", value, true),
            ])),
            false,
        );
        DataType::Map(Arc::new(entries), false)
    }

    /// One column of every type the format takes.
    fn every_type() -> SchemaRef {
        columns(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("flag", DataType::Boolean, true),
            Field::new("tiny", DataType::Int8, true),
            Field::new("small", DataType::Int16, true),
            Field::new("n", DataType::Int32, true),
            Field::new("f", DataType::Float32, true),
            Field::new("d", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("raw", DataType::Binary, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("at", DataType::Time32(TimeUnit::Millisecond), true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("us", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("inner", inner_row(), true),
            Field::new("m", map_of(DataType::Float64), true),
        ])
    }

    #[test]
    fn the_schema_is_the_one_flink_derives_from_the_columns() {
        let rows = AvroRows::derive(&every_type()).unwrap();
        let nullable = |schema: serde_json::Value| json!(["null", schema]);
        let field = |name: &str, schema: serde_json::Value| json!({"name": name, "type": nullable(schema), "default": null});
        let expected = json!({
            "type": "record",
            "name": "record",
            "namespace": "org.apache.flink.avro.generated",
            "fields": [
                {"name": "id", "type": "long"},
                field("flag", json!("boolean")),
                field("tiny", json!("int")),
                field("small", json!("int")),
                field("n", json!("int")),
                field("f", json!("float")),
                field("d", json!("double")),
                field("name", json!("string")),
                field("raw", json!("bytes")),
                field("price", json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2})),
                field("day", json!({"type": "int", "logicalType": "date"})),
                field("at", json!({"type": "int", "logicalType": "time-millis"})),
                field("ts", json!({"type": "long", "logicalType": "timestamp-millis"})),
                field("us", json!({"type": "long", "logicalType": "timestamp-micros"})),
                field("inner", json!({
                    "type": "record",
                    "name": "record_inner",
                    "namespace": "org.apache.flink.avro.generated",
                    "fields": [
                        {"name": "a", "type": "int"},
                        field("tags", json!({"type": "array", "items": ["null", "string"]})),
                    ]
                })),
                field("m", json!({"type": "map", "values": ["null", "double"]})),
            ]
        });
        let expected = Schema::parse(&expected).unwrap();
        assert_eq!(rows.schema(), &expected);
        // Equality is by canonical form, which drops defaults: check them too.
        let derived = serde_json::to_value(rows.schema()).unwrap();
        assert_eq!(derived["fields"][1]["default"], serde_json::Value::Null);
        assert!(derived["fields"][1].get("default").is_some(), "{derived}");
        assert!(derived["fields"][0].get("default").is_none(), "{derived}");
        assert_eq!(
            derived["fields"][14]["type"][1]["name"], "record_inner",
            "{derived}"
        );
    }

    #[test]
    fn types_avro_cannot_hold_are_refused_naming_the_column() {
        let cases = [
            (
                Field::new(
                    "t",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    true,
                ),
                "column t is Timestamp(ms, \"UTC\")",
            ),
            (
                Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
                "at most 6 fractional digits",
            ),
            (Field::new("m", map_of(DataType::Int32), true), ""),
            (
                Field::new(
                    "r",
                    DataType::Struct(Fields::from(vec![Field::new("x", DataType::UInt8, true)])),
                    true,
                ),
                "column r.x is UInt8",
            ),
        ];
        for (field, expected) in cases {
            let result = AvroRows::derive(&columns(vec![field.clone()]));
            if expected.is_empty() {
                assert!(result.is_ok(), "{field}");
            } else {
                let error = result.unwrap_err().to_string();
                assert!(error.contains(expected), "{field}: {error}");
            }
        }
        let int_keys = DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", DataType::Int32, false),
                    Field::new("value", DataType::Utf8, true),
                ])),
                false,
            )),
            false,
        );
        let error = AvroRows::derive(&columns(vec![Field::new("m", int_keys, true)]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("column m is Map") && error.contains("MAP<STRING"),
            "{error}"
        );
    }

    #[test]
    fn records_are_the_avro_binary_encoding_of_the_spec() {
        let schema = columns(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let rows = AvroRows::derive(&schema).unwrap();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int32Array::from(vec![1, -2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        // An int is a zigzag varint; a union its branch index (zigzag) then the
        // branch's value; a string its zigzag length then UTF-8.
        let expected: [&[u8]; 2] = [&[2, 2, 2, b'x'], &[3, 0]];
        assert_eq!(rows.encode(&batch).unwrap(), expected);
        let decoded: Vec<Value> = expected
            .iter()
            .map(|bytes| rows.decode(bytes).unwrap())
            .collect();
        assert_eq!(rows.to_batch(&decoded).unwrap(), batch);
        for malformed in [&[2, 4][..], &[2, 2, 4, b'x'], &[2, 0, 0]] {
            assert!(
                matches!(rows.decode(malformed), Err(AvroRowError::Malformed(_))),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn every_type_round_trips_with_nulls_and_nested_rows() {
        let schema = every_type();
        let rows = AvroRows::derive(&schema).unwrap();
        let inner = {
            let DataType::Struct(fields) = inner_row() else {
                unreachable!()
            };
            let mut tags = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new())
                .with_field(Field::new("element", DataType::Utf8, true));
            tags.append_value([Some("x"), None]);
            tags.append_null();
            tags.append_value(Vec::<Option<&str>>::new());
            StructArray::try_new(
                fields,
                vec![
                    Arc::new(Int32Array::from(vec![7, 0, 9])),
                    Arc::new(tags.finish()),
                ],
                Some(NullBuffer::from(vec![true, false, true])),
            )
            .unwrap()
        };
        let map = {
            let mut map = arrow::array::MapBuilder::new(
                None,
                arrow::array::StringBuilder::new(),
                arrow::array::Float64Builder::new(),
            );
            map.keys().append_value("a");
            map.values().append_value(1.5);
            map.keys().append_value("b");
            map.values().append_null();
            map.append(true).unwrap();
            map.append(false).unwrap();
            map.append(true).unwrap();
            map.finish()
        };
        let map = MapArray::try_new(
            match schema.field(15).data_type() {
                DataType::Map(entries, _) => Arc::clone(entries),
                _ => unreachable!(),
            },
            map.offsets().clone(),
            StructArray::try_new(
                match schema.field(15).data_type() {
                    DataType::Map(entries, _) => match entries.data_type() {
                        DataType::Struct(kv) => kv.clone(),
                        _ => unreachable!(),
                    },
                    _ => unreachable!(),
                },
                map.entries().columns().to_vec(),
                None,
            )
            .unwrap(),
            map.nulls().cloned(),
            false,
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, i64::MIN, i64::MAX])),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
                Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
                Arc::new(Int16Array::from(vec![Some(-300), None, Some(300)])),
                Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(i32::MAX)])),
                Arc::new(Float32Array::from(vec![Some(1.5), None, Some(-0.25)])),
                Arc::new(Float64Array::from(vec![Some(2.5), None, Some(1e300)])),
                Arc::new(StringArray::from(vec![Some("ünï"), None, Some("")])),
                Arc::new(BinaryArray::from(vec![
                    Some(&[0u8, 255][..]),
                    None,
                    Some(&[][..]),
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), None, Some(-9_999_999_999)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Date32Array::from(vec![Some(19_000), None, Some(-1)])),
                Arc::new(Time32MillisecondArray::from(vec![
                    Some(3_600_000),
                    None,
                    Some(0),
                ])),
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_700_000_000_123),
                    None,
                    Some(-1),
                ])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_700_000_000_123_456),
                    None,
                    Some(1),
                ])),
                Arc::new(inner),
                Arc::new(map),
            ],
        )
        .unwrap();
        let decoded: Vec<Value> = rows
            .encode(&batch)
            .unwrap()
            .iter()
            .map(|bytes| rows.decode(bytes).unwrap())
            .collect();
        let back = rows.to_batch(&decoded).unwrap();
        assert_eq!(back, batch);
        // A slice (as a sink may be given) encodes its own rows.
        let decoded: Vec<Value> = rows
            .encode(&batch.slice(1, 2))
            .unwrap()
            .iter()
            .map(|bytes| rows.decode(bytes).unwrap())
            .collect();
        assert_eq!(rows.to_batch(&decoded).unwrap(), batch.slice(1, 2));
    }

    #[test]
    fn decimals_are_big_endian_twos_complement() {
        for value in [
            0,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i128::MAX,
            i128::MIN,
        ] {
            let bytes = decimal_bytes(value);
            assert_eq!(
                unscaled(&Decimal::from(&bytes)),
                Some(value),
                "{value}: {bytes:?}"
            );
        }
        assert_eq!(decimal_bytes(128), [0, 128]);
        assert_eq!(decimal_bytes(-129), [0xFF, 0x7F]);
        assert_eq!(unscaled(&Decimal::from([0xFF; 20])), Some(-1));
        assert_eq!(unscaled(&Decimal::from([1; 17])), None);
    }
}
