//! The binary encoding of everything Strom persists through serde: keys (whose
//! bytes are hashed to key groups), state values and a Kafka sink's kept records.
//! It is ours and versioned — [`STATE_FORMAT`], recorded in every manifest — so a
//! change of encoding is a migration a restore performs, never a silent re-shard of
//! saved state by a dependency upgrade.
//!
//! Format 1, byte for byte (the layout bincode 1's defaults wrote, so state saved
//! before this module reads unchanged):
//! - integers and floats: fixed width, little-endian (`u64`: 8 bytes; `i128`: 16);
//! - `bool`: one byte, 0 or 1; `char`: its UTF-8 bytes;
//! - strings and byte strings: length as `u64`, then the bytes;
//! - sequences and maps: length as `u64`, then the elements (a map's as key, value);
//! - `Option`: byte 0 (`None`) or 1 followed by the value;
//! - enums: the variant's index as `u32`, then its fields;
//! - structs, tuples, newtypes: their fields in order, nothing around them; unit: nothing.
//!
//! The encoding is not self-describing: a value decodes only as the type it was
//! encoded from, and bytes left over after it are an error (a corrupt value).

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// The state format this runtime writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl ser::Error for CodecError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        CodecError(message.to_string())
    }
}

impl de::Error for CodecError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        CodecError(message.to_string())
    }
}

/// Encodes `value` in the current state format.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut encoder = Encoder { out: Vec::new() };
    value.serialize(&mut encoder)?;
    Ok(encoder.out)
}

/// Appends the encoding of `value` to `out` (as [`to_bytes`] would make it); on
/// an error `out` is left as it was.
pub fn append_bytes<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), CodecError> {
    let length = out.len();
    let mut encoder = Encoder {
        out: std::mem::take(out),
    };
    let result = value.serialize(&mut encoder);
    *out = encoder.out;
    if result.is_err() {
        out.truncate(length);
    }
    result
}

/// Decodes a value of type `T` from `bytes` (all of them) in the current state format.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut decoder = Decoder { input: bytes };
    let value = T::deserialize(&mut decoder)?;
    if !decoder.input.is_empty() {
        return Err(CodecError(format!(
            "{} bytes left over after the value",
            decoder.input.len()
        )));
    }
    Ok(value)
}

struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    fn length(&mut self, length: usize) {
        self.out.extend_from_slice(&(length as u64).to_le_bytes());
    }

    fn variant(&mut self, index: u32) {
        self.out.extend_from_slice(&index.to_le_bytes());
    }
}

fn unknown_length() -> CodecError {
    CodecError("sequences and maps must know their length to be encoded".into())
}

impl ser::Serializer for &mut Encoder {
    type Ok = ();
    type Error = CodecError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), CodecError> {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CodecError> {
        self.out.push(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), CodecError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CodecError> {
        let mut buffer = [0; 4];
        self.out
            .extend_from_slice(v.encode_utf8(&mut buffer).as_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CodecError> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CodecError> {
        self.length(v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), CodecError> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CodecError> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CodecError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CodecError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), CodecError> {
        self.variant(index);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        self.variant(index);
        value.serialize(self)
    }
    fn serialize_seq(self, length: Option<usize>) -> Result<Self, CodecError> {
        self.length(length.ok_or_else(unknown_length)?);
        Ok(self)
    }
    fn serialize_tuple(self, _length: usize) -> Result<Self, CodecError> {
        Ok(self)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _length: usize,
    ) -> Result<Self, CodecError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _length: usize,
    ) -> Result<Self, CodecError> {
        self.variant(index);
        Ok(self)
    }
    fn serialize_map(self, length: Option<usize>) -> Result<Self, CodecError> {
        self.length(length.ok_or_else(unknown_length)?);
        Ok(self)
    }
    fn serialize_struct(self, _name: &'static str, _length: usize) -> Result<Self, CodecError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _length: usize,
    ) -> Result<Self, CodecError> {
        self.variant(index);
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Sequences, tuples, maps and structs: their elements in order.
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Encoder {
            type Ok = ();
            type Error = CodecError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), CodecError> {
                Ok(())
            }
        }
    )*};
}
elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Encoder {
    type Ok = ();
    type Error = CodecError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CodecError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CodecError> {
        Ok(())
    }
}

/// Structs: their fields in order, without names.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Encoder {
            type Ok = ();
            type Error = CodecError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _name: &'static str,
                value: &T,
            ) -> Result<(), CodecError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), CodecError> {
                Ok(())
            }
        }
    )*};
}
fields!(SerializeStruct, SerializeStructVariant);

struct Decoder<'de> {
    input: &'de [u8],
}

impl<'de> Decoder<'de> {
    fn take(&mut self, count: usize) -> Result<&'de [u8], CodecError> {
        if self.input.len() < count {
            return Err(CodecError(format!(
                "the value ends early: {count} bytes needed, {} left",
                self.input.len()
            )));
        }
        let (taken, rest) = self.input.split_at(count);
        self.input = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn length(&mut self) -> Result<usize, CodecError> {
        let length = u64::from_le_bytes(self.array()?);
        // Every element takes at least... nothing (units), so the length is only
        // checked against what an index can hold; decoding then runs out of bytes.
        usize::try_from(length).map_err(|_| CodecError(format!("length {length} too large")))
    }

    fn bytes(&mut self) -> Result<&'de [u8], CodecError> {
        let length = self.length()?;
        self.take(length)
    }

    fn str(&mut self) -> Result<&'de str, CodecError> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|error| CodecError(format!("a string is not UTF-8: {error}")))
    }
}

macro_rules! numbers {
    ($($method:ident: $type:ty => $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
            visitor.$visit(<$type>::from_le_bytes(self.array()?))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, CodecError> {
        Err(CodecError(
            "the state format is not self-describing: decode into a concrete type".into(),
        ))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.take(1)?[0] {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            other => Err(CodecError(format!("{other} is not a bool"))),
        }
    }

    numbers!(
        deserialize_i8: i8 => visit_i8,
        deserialize_i16: i16 => visit_i16,
        deserialize_i32: i32 => visit_i32,
        deserialize_i64: i64 => visit_i64,
        deserialize_i128: i128 => visit_i128,
        deserialize_u8: u8 => visit_u8,
        deserialize_u16: u16 => visit_u16,
        deserialize_u32: u32 => visit_u32,
        deserialize_u64: u64 => visit_u64,
        deserialize_u128: u128 => visit_u128,
        deserialize_f32: f32 => visit_f32,
        deserialize_f64: f64 => visit_f64
    );

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let first = *self.input.first().ok_or_else(|| {
            CodecError("the value ends early: a char needed, nothing left".into())
        })?;
        let width = match first.leading_ones() {
            0 => 1,
            2..=4 => first.leading_ones() as usize,
            _ => return Err(CodecError(format!("byte {first:#04x} starts no char"))),
        };
        let bytes = self.take(width)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|error| CodecError(format!("a char is not UTF-8: {error}")))?;
        visitor.visit_char(text.chars().next().expect("one char decoded"))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.take(1)?[0] {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            other => Err(CodecError(format!("{other} is not an option's tag"))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let length = self.length()?;
        visitor.visit_seq(Elements {
            decoder: self,
            left: length,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_seq(Elements {
            decoder: self,
            left: length,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(length, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let length = self.length()?;
        visitor.visit_map(Elements {
            decoder: self,
            left: length,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, CodecError> {
        Err(CodecError(
            "the state format holds no identifiers: fields are in order".into(),
        ))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, CodecError> {
        Err(CodecError(
            "the state format is not self-describing: nothing can be skipped".into(),
        ))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or map, `left` of them still to decode.
struct Elements<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = CodecError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, CodecError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // A length read from the bytes only bounds a pre-allocation when it could
        // fit in what is left (a corrupt length must not allocate gigabytes).
        Some(self.left.min(self.decoder.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = CodecError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, CodecError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, CodecError> {
        seed.deserialize(&mut *self.decoder)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.decoder.input.len()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = CodecError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), CodecError> {
        let index = u32::from_le_bytes(self.array()?);
        let variant = seed.deserialize(index.into_deserializer())?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = CodecError;

    fn unit_variant(self) -> Result<(), CodecError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, CodecError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, length, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Shape {
        Empty,
        Circle(f64),
        Pair(u8, i16),
        Named { id: u32, label: Option<String> },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Everything {
        flag: bool,
        small: i8,
        big: u128,
        negative: i64,
        ratio: f32,
        letter: char,
        text: String,
        list: Vec<u16>,
        map: BTreeMap<String, Vec<Shape>>,
        tuple: (u8, (), Option<bool>),
        shapes: Vec<Shape>,
        nested: Option<Box<Everything>>,
    }

    fn everything() -> Everything {
        Everything {
            flag: true,
            small: -3,
            big: u128::MAX - 5,
            negative: -1_234_567_890_123,
            ratio: 0.25,
            letter: 'é',
            text: "clicks ✓".into(),
            list: vec![1, 65_535],
            map: BTreeMap::from([("a".into(), vec![Shape::Empty]), ("🙂".into(), vec![])]),
            tuple: (7, (), Some(false)),
            shapes: vec![
                Shape::Circle(1.5),
                Shape::Pair(9, -9),
                Shape::Named {
                    id: 4,
                    label: Some("x".into()),
                },
                Shape::Named { id: 5, label: None },
            ],
            nested: Some(Box::new(Everything {
                nested: None,
                letter: '\u{10FFFF}',
                ..everything_flat()
            })),
        }
    }

    fn everything_flat() -> Everything {
        Everything {
            flag: false,
            small: 0,
            big: 0,
            negative: 0,
            ratio: 0.0,
            letter: 'a',
            text: String::new(),
            list: Vec::new(),
            map: BTreeMap::new(),
            tuple: (0, (), None),
            shapes: Vec::new(),
            nested: None,
        }
    }

    #[test]
    fn every_serde_shape_round_trips() {
        let value = everything();
        let bytes = to_bytes(&value).unwrap();
        assert_eq!(from_bytes::<Everything>(&bytes).unwrap(), value);
    }

    /// Format 1's bytes are pinned: state saved in it must read back unchanged
    /// whatever the serde version, and a key's bytes decide its key group.
    #[test]
    fn format_1_writes_pinned_bytes() {
        let cases: [(Vec<u8>, &str); 9] = [
            (to_bytes(&42u64).unwrap(), "2a00000000000000"),
            (to_bytes(&-2i32).unwrap(), "feffffff"),
            (to_bytes(&"ab").unwrap(), "02000000000000006162"),
            (to_bytes(&(3u32, true, 'é')).unwrap(), "0300000001c3a9"),
            (to_bytes(&Some(1u8)).unwrap(), "0101"),
            (to_bytes(&None::<u8>).unwrap(), "00"),
            (
                to_bytes(&vec![1u16, 2]).unwrap(),
                "020000000000000001000200",
            ),
            (to_bytes(&1.0f64).unwrap(), "000000000000f03f"),
            (
                to_bytes(&Shape::Named { id: 1, label: None }).unwrap(),
                "030000000100000000",
            ),
        ];
        for (bytes, pinned) in cases {
            assert_eq!(hex(&bytes), pinned);
        }
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics_or_huge_allocations() {
        let bytes = to_bytes(&everything()).unwrap();
        // Every truncation fails cleanly.
        for end in 0..bytes.len() {
            assert!(from_bytes::<Everything>(&bytes[..end]).is_err(), "{end}");
        }
        // Trailing bytes are corruption too.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(from_bytes::<Everything>(&longer).is_err());
        // A length of 2^63 elements fails without allocating them.
        let mut huge = vec![0, 0, 0, 0, 0, 0, 0, 0x80];
        huge.extend_from_slice(&[1, 2, 3]);
        assert!(from_bytes::<Vec<u64>>(&huge).is_err());
        assert!(from_bytes::<String>(&huge).is_err());
        // Tags out of range.
        assert!(from_bytes::<bool>(&[2]).is_err());
        assert!(from_bytes::<Option<u8>>(&[2, 0]).is_err());
        assert!(from_bytes::<Shape>(&[9, 0, 0, 0]).is_err());
        assert!(from_bytes::<String>(&[1, 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
    }

    /// Format 1 is byte for byte what bincode 1 wrote (its default options), so
    /// every checkpoint and savepoint written before this module reads unchanged.
    #[test]
    fn format_1_reads_and_writes_what_bincode_1_wrote() {
        let value = everything();
        let legacy = bincode::serialize(&value).unwrap();
        assert_eq!(hex(&to_bytes(&value).unwrap()), hex(&legacy));
        assert_eq!(from_bytes::<Everything>(&legacy).unwrap(), value);
    }
}
