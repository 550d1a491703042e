//! `SPLIT_INDEX`, `LOCATE` and `CONCAT`.

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::Result;

use super::args::{Call, Integers, Param, Strings, primitive_results, string_results};
use super::builtin::{Builtin, Returns};

/// `SPLIT_INDEX(s, delimiter, index)`: the `index`-th (0-based) part of `s`
/// split at `delimiter`, or at the character whose code (1 to 255) the
/// delimiter is.
pub fn split_index() -> Builtin {
    Builtin::new(
        "SPLIT_INDEX",
        &[
            &[Param::String, Param::String, Param::Integer],
            &[Param::String, Param::Integer, Param::Integer],
        ],
        Returns::Type(DataType::Utf8),
        evaluate_split_index,
    )
}

fn evaluate_split_index(call: &Call<'_>) -> Result<ArrayRef> {
    let text = call.strings(0)?;
    let index = call.integers(2)?;
    let delimiters = if call.args[1].data_type() == DataType::Utf8 {
        Delimiters::Strings(call.strings(1)?)
    } else {
        Delimiters::Codes(call.integers(1)?)
    };
    Ok(string_results(call.rows, |row| {
        split_part(text.get(row)?, delimiters.get(row)?, index.get(row)?)
    }))
}

/// `CONCAT(s1, s2, ...)`: the strings one after the other; null if any is null
/// (Flink's rule, where DataFusion's `concat` skips nulls). Up to 16 arguments.
pub fn concat() -> Builtin {
    const S: Param = Param::String;
    Builtin::new(
        "CONCAT",
        &[
            &[S],
            &[S, S],
            &[S, S, S],
            &[S, S, S, S],
            &[S, S, S, S, S],
            &[S, S, S, S, S, S],
            &[S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S, S, S, S, S, S],
            &[S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S],
        ],
        Returns::Type(DataType::Utf8),
        evaluate_concat,
    )
}

fn evaluate_concat(call: &Call<'_>) -> Result<ArrayRef> {
    let parts = (0..call.args.len())
        .map(|index| call.strings(index))
        .collect::<Result<Vec<_>>>()?;
    let mut joined = String::new();
    Ok(string_results(call.rows, |row| {
        joined.clear();
        for part in &parts {
            joined.push_str(part.get(row)?);
        }
        Some(joined.clone())
    }))
}

/// What a string is split at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delimiter<'a> {
    /// A string: the whole of it. An empty one splits at each whitespace
    /// character.
    Text(&'a str),
    /// One character.
    Char(char),
}

/// The delimiter argument of `SPLIT_INDEX`: strings, or character codes.
enum Delimiters<'a> {
    Strings(Strings<'a>),
    Codes(Integers<'a>),
}

impl<'a> Delimiters<'a> {
    /// The delimiter at `row`: `None` for null, or for a code outside 1 to 255
    /// (Flink gives null then).
    fn get(&self, row: usize) -> Option<Delimiter<'a>> {
        match self {
            Delimiters::Strings(strings) => strings.get(row).map(Delimiter::Text),
            Delimiters::Codes(codes) => {
                let code = u8::try_from(codes.get(row)?)
                    .ok()
                    .filter(|&code| code > 0)?;
                Some(Delimiter::Char(char::from(code)))
            }
        }
    }
}

/// The `index`-th part of `text` split at `delimiter`, as Flink splits
/// (commons-lang's `splitByWholeSeparatorPreserveAllTokens`): empty parts are
/// kept, an empty text has no parts, a negative index has none.
fn split_part<'t>(text: &'t str, delimiter: Delimiter<'_>, index: i64) -> Option<&'t str> {
    let index = usize::try_from(index).ok()?;
    if text.is_empty() {
        return None;
    }
    match delimiter {
        Delimiter::Text("") => text.split(is_java_whitespace).nth(index),
        Delimiter::Text(delimiter) => text.split(delimiter).nth(index),
        Delimiter::Char(delimiter) => text.split(delimiter).nth(index),
    }
}

/// Java's `Character.isWhitespace`: Unicode spaces but the non-breaking ones,
/// and the ASCII separators U+001C to U+001F.
fn is_java_whitespace(c: char) -> bool {
    match c {
        '\u{00A0}' | '\u{2007}' | '\u{202F}' | '\u{0085}' => false,
        '\u{001C}'..='\u{001F}' => true,
        _ => c.is_whitespace(),
    }
}

/// `LOCATE(needle, s [, from])`: the 1-based position of the first `needle`
/// in `s` at or after position `from` (1 by default), 0 when there is none.
pub fn locate() -> Builtin {
    Builtin::new(
        "LOCATE",
        &[
            &[Param::String, Param::String],
            &[Param::String, Param::String, Param::Integer],
        ],
        Returns::Type(DataType::Int32),
        evaluate_locate,
    )
}

fn evaluate_locate(call: &Call<'_>) -> Result<ArrayRef> {
    let needle = call.strings(0)?;
    let text = call.strings(1)?;
    let from = if call.has(2) {
        call.integers(2)?
    } else {
        Integers::Constant(Some(1))
    };
    Ok(primitive_results::<Int32Type>(call.rows, |row| {
        Some(position(needle.get(row)?, text.get(row)?, from.get(row)?))
    }))
}

/// Flink's `position`: characters are counted, an empty needle is found at 1
/// wherever the search starts, a start before 1 searches from the first
/// character, one past the end finds nothing.
fn position(needle: &str, text: &str, from: i64) -> i32 {
    if needle.is_empty() {
        return 1;
    }
    let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(0);
    let Some((start, _)) = text.char_indices().nth(skip) else {
        return 0;
    };
    match text[start..].find(needle) {
        Some(offset) => {
            let chars = skip + text[start..start + offset].chars().count();
            i32::try_from(chars + 1).unwrap_or(i32::MAX)
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_part_keeps_empty_parts_as_flink_does() {
        let comma = Delimiter::Text(",");
        assert_eq!(split_part("a,b,c", comma, 0), Some("a"));
        assert_eq!(split_part("a,b,c", comma, 2), Some("c"));
        assert_eq!(split_part("a,b,c", comma, 3), None);
        assert_eq!(split_part("a,b,c", comma, -1), None);
        assert_eq!(split_part("a,,c", comma, 1), Some(""));
        assert_eq!(split_part("a,b,", comma, 2), Some(""));
        assert_eq!(split_part(",", comma, 1), Some(""));
        assert_eq!(split_part("abc", comma, 0), Some("abc"));
        // An empty string has no parts at all.
        assert_eq!(split_part("", comma, 0), None);
        // A multi-character delimiter is matched whole.
        assert_eq!(split_part("a::b:c", Delimiter::Text("::"), 1), Some("b:c"));
        // An empty delimiter splits at whitespace, each character on its own.
        assert_eq!(split_part("a b\tc", Delimiter::Text(""), 2), Some("c"));
        assert_eq!(split_part("a  b", Delimiter::Text(""), 1), Some(""));
        assert_eq!(split_part("a\u{00A0}b", Delimiter::Text(""), 1), None);
        assert_eq!(split_part("a|b", Delimiter::Char('|'), 1), Some("b"));
    }

    #[test]
    fn position_counts_characters_from_one() {
        assert_eq!(position("b", "abc", 1), 2);
        assert_eq!(position("x", "abc", 1), 0);
        assert_eq!(position("a", "abca", 2), 4);
        assert_eq!(position("a", "abca", 0), 1);
        assert_eq!(position("a", "abca", -5), 1);
        assert_eq!(position("a", "abca", 5), 0);
        assert_eq!(position("a", "abca", 99), 0);
        assert_eq!(position("", "abc", 99), 1);
        assert_eq!(position("", "", 1), 1);
        assert_eq!(position("ö", "äöü", 1), 2);
        assert_eq!(position("ü", "äöüü", 4), 4);
    }
}
