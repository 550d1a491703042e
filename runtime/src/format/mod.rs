//! Record formats: how the bytes of a record (a Kafka value or key) become a typed
//! value and back. JSON, raw bytes, UTF-8 text, and Avro ([`avro`]), optionally in
//! the Confluent Schema Registry wire format.
//!
//! Decoding goes through serde: `Format::Json.decode::<Click>(bytes)`. A record that
//! does not decode gives a [`FormatError`]; what the job then does with it is the
//! source's [`OnMalformed`](crate::exec::malformed::OnMalformed) policy.

pub mod avro;
pub mod schema_registry;

use serde::Serialize;
use serde::de::value::{SeqDeserializer, StrDeserializer};
use serde::de::{DeserializeOwned, IntoDeserializer, Visitor};

pub use avro::{AvroFormat, AvroWire};

/// How the bytes of a record are read and written.
#[derive(Debug, Clone)]
pub enum Format {
    /// One JSON document per record.
    Json,
    /// The bytes as they are: decodes into `Vec<u8>` (or `serde_bytes` types).
    Raw,
    /// UTF-8 text: decodes into `String`.
    Text,
    /// Avro's binary encoding of one schema, plain or in the Confluent wire format.
    Avro(Box<AvroFormat>),
}

/// Why a record could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The record has no value (a tombstone) where one is needed.
    #[error("the record has no value")]
    Missing,
    /// Not valid JSON, or JSON of another shape than the type expects.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Not valid UTF-8 text.
    #[error("invalid UTF-8 text: {0}")]
    Text(String),
    /// Not valid Avro of the schema, or a value the schema cannot hold.
    #[error("invalid Avro: {0}")]
    Avro(String),
    /// A Confluent wire format header that is missing or wrong.
    #[error("not in the Confluent wire format: {0}")]
    WireFormat(String),
    /// A Confluent wire format record written with a schema the job does not know.
    #[error("written with schema id {0}, which is not among the job's schemas")]
    UnknownSchemaId(u32),
    /// A value the format cannot represent (e.g. a number as raw bytes).
    #[error("{format} cannot hold this value: {reason}")]
    Unrepresentable {
        /// The format.
        format: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl Format {
    /// The format's name, as manifests and SQL `WITH` options spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Raw => "raw",
            Self::Text => "text",
            Self::Avro(_) => "avro",
        }
    }

    /// Decodes `bytes` into a `T`.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, FormatError> {
        match self {
            Self::Json => {
                serde_json::from_slice(bytes).map_err(|error| FormatError::Json(error.to_string()))
            }
            Self::Raw => T::deserialize(RawDeserializer(bytes))
                .map_err(|error| unrepresentable("raw", error)),
            Self::Text => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|error| FormatError::Text(error.to_string()))?;
                let text: StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
                T::deserialize(text).map_err(|error| unrepresentable("text", error))
            }
            Self::Avro(avro) => avro.decode(bytes),
        }
    }

    /// Decodes an optional record part (a Kafka value or key): a missing one is
    /// [`FormatError::Missing`].
    pub fn decode_present<T: DeserializeOwned>(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<T, FormatError> {
        self.decode(bytes.ok_or(FormatError::Missing)?)
    }

    /// Encodes `value`.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::Json => {
                serde_json::to_vec(value).map_err(|error| FormatError::Json(error.to_string()))
            }
            Self::Raw => match to_json_value(value, "raw")? {
                serde_json::Value::String(text) => Ok(text.into_bytes()),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        item.as_u64()
                            .and_then(|byte| u8::try_from(byte).ok())
                            .ok_or_else(|| unrepresentable("raw", "a sequence of non-bytes"))
                    })
                    .collect(),
                other => Err(unrepresentable("raw", kind_of(&other))),
            },
            Self::Text => match to_json_value(value, "text")? {
                serde_json::Value::String(text) => Ok(text.into_bytes()),
                other => Err(unrepresentable("text", kind_of(&other))),
            },
            Self::Avro(avro) => avro.encode(value),
        }
    }
}

fn to_json_value<T: Serialize>(
    value: &T,
    format: &'static str,
) -> Result<serde_json::Value, FormatError> {
    serde_json::to_value(value).map_err(|error| unrepresentable(format, error))
}

fn kind_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a sequence",
        serde_json::Value::Object(_) => "a map or struct",
    }
    .to_owned()
}

fn unrepresentable(format: &'static str, reason: impl std::fmt::Display) -> FormatError {
    FormatError::Unrepresentable {
        format,
        reason: reason.to_string(),
    }
}

/// Presents raw bytes to serde: as bytes to types that take them (`ByteBuf`), as a
/// sequence of `u8` to those that want one (`Vec<u8>`).
struct RawDeserializer<'a>(&'a [u8]);

impl<'de> serde::Deserializer<'de> for RawDeserializer<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        SeqDeserializer::new(self.0.iter().copied()).deserialize_seq(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Click {
        user: String,
        page: u32,
    }

    #[test]
    fn json_round_trips_and_names_what_is_wrong() {
        let click = Click {
            user: "ann".into(),
            page: 7,
        };
        let bytes = Format::Json.encode(&click).unwrap();
        assert_eq!(bytes, br#"{"user":"ann","page":7}"#);
        assert_eq!(Format::Json.decode::<Click>(&bytes).unwrap(), click);
        let error = Format::Json
            .decode::<Click>(br#"{"user":"ann"}"#)
            .unwrap_err();
        assert!(
            error.to_string().contains("missing field `page`"),
            "{error}"
        );
        assert!(matches!(
            Format::Json.decode::<Click>(b"not json"),
            Err(FormatError::Json(_))
        ));
    }

    #[test]
    fn raw_and_text_carry_bytes_and_strings() {
        let bytes = vec![0u8, 159, 146, 150];
        assert_eq!(Format::Raw.decode::<Vec<u8>>(&bytes).unwrap(), bytes);
        assert_eq!(Format::Raw.encode(&bytes).unwrap(), bytes);
        assert_eq!(Format::Text.decode::<String>(b"hello").unwrap(), "hello");
        assert_eq!(Format::Text.encode(&"hello").unwrap(), b"hello");
        assert!(matches!(
            Format::Text.decode::<String>(&bytes),
            Err(FormatError::Text(_))
        ));
        assert!(matches!(
            Format::Text.encode(&42),
            Err(FormatError::Unrepresentable { format: "text", .. })
        ));
        assert_eq!(
            Format::Json.decode_present::<u32>(None),
            Err(FormatError::Missing)
        );
    }
}
