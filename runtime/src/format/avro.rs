//! Avro records: the binary encoding of one schema (Avro "datums", no container
//! file), plain or in the Confluent Schema Registry wire format (a zero magic byte,
//! the schema id as 4 big-endian bytes, then the datum).
//!
//! A job knows its schemas by id rather than asking a registry: records written
//! with another known schema (an older or newer version) are resolved to the job's
//! schema by Avro's rules; an unknown id is a malformed record.

use std::collections::BTreeMap;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FormatError;

/// The first byte of a record in the Confluent wire format.
const CONFLUENT_MAGIC: u8 = 0;

/// The length of the Confluent wire format header: magic byte and schema id.
const CONFLUENT_HEADER: usize = 5;

/// How Avro records are framed.
#[derive(Debug, Clone, PartialEq)]
pub enum AvroWire {
    /// The Avro binary encoding alone; every record is written with the format's
    /// schema.
    Plain,
    /// The Confluent Schema Registry wire format.
    Confluent {
        /// The registry id of the format's own schema: records are written with it.
        id: u32,
        /// Other schemas records may have been written with, by registry id.
        writer_schemas: BTreeMap<u32, Schema>,
    },
}

/// Avro records of one schema.
#[derive(Debug, Clone)]
pub struct AvroFormat {
    /// The schema records are written with and read as.
    schema: Schema,
    wire: AvroWire,
}

impl AvroFormat {
    /// Plain Avro records of `schema` (Avro's JSON schema text).
    pub fn new(schema: &str) -> Result<Self, FormatError> {
        Ok(Self {
            schema: parse(schema)?,
            wire: AvroWire::Plain,
        })
    }

    /// The same format in the Confluent wire format, the schema having id `id` in
    /// the registry.
    pub fn confluent(mut self, id: u32) -> Self {
        self.wire = AvroWire::Confluent {
            id,
            writer_schemas: BTreeMap::new(),
        };
        self
    }

    /// Also reads records written with `schema` (registry id `id`), resolving them
    /// to this format's schema. Only for the Confluent wire format.
    pub fn with_writer_schema(mut self, id: u32, schema: &str) -> Result<Self, FormatError> {
        let schema = parse(schema)?;
        match &mut self.wire {
            AvroWire::Confluent { writer_schemas, .. } => {
                writer_schemas.insert(id, schema);
                Ok(self)
            }
            AvroWire::Plain => Err(FormatError::WireFormat(
                "writer schemas by id need the Confluent wire format".to_owned(),
            )),
        }
    }

    /// The framing.
    pub fn wire(&self) -> &AvroWire {
        &self.wire
    }

    /// Decodes one record.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, FormatError> {
        let (writer, mut datum) = match &self.wire {
            AvroWire::Plain => (&self.schema, bytes),
            AvroWire::Confluent { id, writer_schemas } => {
                let (written_with, datum) = split_confluent(bytes)?;
                let writer = if written_with == *id {
                    &self.schema
                } else {
                    writer_schemas
                        .get(&written_with)
                        .ok_or(FormatError::UnknownSchemaId(written_with))?
                };
                (writer, datum)
            }
        };
        let reader = (!std::ptr::eq(writer, &self.schema)).then_some(&self.schema);
        let value = GenericDatumReader::builder(writer)
            .maybe_reader_schema(reader)
            .build()
            .and_then(|decoder| decoder.read_value(&mut datum))
            .map_err(avro_error)?;
        if !datum.is_empty() {
            return Err(FormatError::Avro(format!(
                "{} bytes left after the record",
                datum.len()
            )));
        }
        apache_avro::from_value(&value).map_err(avro_error)
    }

    /// Encodes one record with the format's schema.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, FormatError> {
        let mut bytes = match &self.wire {
            AvroWire::Plain => Vec::new(),
            AvroWire::Confluent { id, .. } => {
                let mut header = vec![CONFLUENT_MAGIC];
                header.extend_from_slice(&id.to_be_bytes());
                header
            }
        };
        let datum = GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|encoder| encoder.write_ser_to_vec(value))
            .map_err(avro_error)?;
        bytes.extend(datum);
        Ok(bytes)
    }
}

/// The schema id and the datum of a record in the Confluent wire format.
pub(crate) fn split_confluent(bytes: &[u8]) -> Result<(u32, &[u8]), FormatError> {
    if bytes.len() < CONFLUENT_HEADER {
        return Err(FormatError::WireFormat(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        )));
    }
    if bytes[0] != CONFLUENT_MAGIC {
        return Err(FormatError::WireFormat(format!(
            "magic byte {}, not 0",
            bytes[0]
        )));
    }
    let id = u32::from_be_bytes(bytes[1..CONFLUENT_HEADER].try_into().expect("4 bytes"));
    Ok((id, &bytes[CONFLUENT_HEADER..]))
}

fn parse(schema: &str) -> Result<Schema, FormatError> {
    Schema::parse_str(schema).map_err(|error| FormatError::Avro(format!("bad schema: {error}")))
}

fn avro_error(error: apache_avro::Error) -> FormatError {
    FormatError::Avro(error.to_string())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::format::Format;

    const CLICK_V1: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "user", "type": "string"},
        {"name": "page", "type": "long"}
    ]}"#;

    const CLICK_V2: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "user", "type": "string"},
        {"name": "page", "type": "long"},
        {"name": "referrer", "type": ["null", "string"], "default": null}
    ]}"#;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Click {
        user: String,
        page: i64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ClickV2 {
        user: String,
        page: i64,
        referrer: Option<String>,
    }

    #[test]
    fn plain_avro_is_the_binary_encoding_of_the_spec() {
        let format = Format::Avro(Box::new(AvroFormat::new(CLICK_V1).unwrap()));
        let click = Click {
            user: "ann".into(),
            page: -2,
        };
        // Avro: a string is its zigzag length then UTF-8; a long is zigzag varint.
        let expected = [6, b'a', b'n', b'n', 3];
        assert_eq!(format.encode(&click).unwrap(), expected);
        assert_eq!(format.decode::<Click>(&expected).unwrap(), click);
        assert!(matches!(
            format.decode::<Click>(&[6, b'a']),
            Err(FormatError::Avro(_))
        ));
        assert!(matches!(
            format.decode::<Click>(&[6, b'a', b'n', b'n', 3, 9]),
            Err(FormatError::Avro(_))
        ));
    }

    #[test]
    fn the_confluent_wire_format_has_a_header_and_resolves_known_writer_schemas() {
        let v2 = AvroFormat::new(CLICK_V2).unwrap().confluent(12);
        let format = Format::Avro(Box::new(v2.clone()));
        let click = ClickV2 {
            user: "ann".into(),
            page: 1,
            referrer: Some("x".into()),
        };
        let bytes = format.encode(&click).unwrap();
        // Magic byte, id 12 big-endian, the datum (a union's branch index first).
        assert_eq!(bytes, [0, 0, 0, 0, 12, 6, b'a', b'n', b'n', 2, 2, 2, b'x']);
        assert_eq!(format.decode::<ClickV2>(&bytes).unwrap(), click);

        // A record of version 1 (id 11), known to the job: read with the default.
        let v1_record = [0, 0, 0, 0, 11, 6, b'a', b'n', b'n', 4];
        assert_eq!(
            format.decode::<ClickV2>(&v1_record),
            Err(FormatError::UnknownSchemaId(11))
        );
        let format = Format::Avro(Box::new(v2.with_writer_schema(11, CLICK_V1).unwrap()));
        assert_eq!(
            format.decode::<ClickV2>(&v1_record).unwrap(),
            ClickV2 {
                user: "ann".into(),
                page: 2,
                referrer: None
            }
        );
        assert!(matches!(
            format.decode::<ClickV2>(&[1, 0, 0, 0, 12, 6]),
            Err(FormatError::WireFormat(_))
        ));
        assert!(matches!(
            format.decode::<ClickV2>(&[0, 0]),
            Err(FormatError::WireFormat(_))
        ));
    }
}
