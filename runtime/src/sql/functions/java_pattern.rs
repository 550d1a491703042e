//! Java date-time patterns, as Flink's `DATE_FORMAT`, `TO_TIMESTAMP`,
//! `FROM_UNIXTIME`, ... take them (`DateTimeFormatter` / `SimpleDateFormat`
//! letters), translated to chrono's strftime syntax.
//!
//! | Java | chrono | |
//! |---|---|---|
//! | `yyyy`, `y`, `yyy`, `uuuu` | `%Y` | year |
//! | `yy`, `uu` | `%y` | two-digit year (parsed as chrono does: 69 to 99 are 19xx) |
//! | `M`, `MM`, `MMM`, `MMMM` | `%-m`, `%m`, `%b`, `%B` | month: number, padded, `Jan`, `January` |
//! | `d`, `dd` | `%-d`, `%d` | day of month |
//! | `D`, `DDD` | `%-j`, `%j` | day of year |
//! | `H`, `HH` | `%-H`, `%H` | hour 0 to 23 |
//! | `h`, `hh` | `%-I`, `%I` | hour 1 to 12 |
//! | `m`, `mm` | `%-M`, `%M` | minute |
//! | `s`, `ss` | `%-S`, `%S` | second |
//! | `SSS`, `SSSSSS`, `SSSSSSSSS` | `%3f`, `%6f`, `%9f` | fraction of a second |
//! | `a` | `%p` | `AM` / `PM` |
//! | `E`, `EE`, `EEE`, `EEEE` | `%a`, `%A` | `Mon`, `Monday` |
//! | `Z`, `ZZ`, `ZZZ`, `xx` | `%z` | offset `+0000` |
//! | `xxx` | `%:z` | offset `+00:00` |
//! | `'text'`, `''` | | literal text, a quote |
//!
//! Other characters than letters are literal text. Other letters, other
//! counts of these (`S`, `SS`: Java's `SimpleDateFormat` reads them as
//! milliseconds, `DateTimeFormatter` as a fraction) and optional sections
//! (`[...]`) are refused, naming the letter.

use std::fmt;
use std::iter::Peekable;
use std::str::Chars;

/// Why a Java pattern has no translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "date pattern '{}': {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// The Java letters this module translates, for messages.
const SUPPORTED: &str = "y, yy, yyyy, M, MM, MMM, MMMM, d, dd, D, DDD, H, HH, h, hh, m, mm, s, ss, SSS, SSSSSS, SSSSSSSSS, a, E, EEEE, Z, xx, xxx";

/// Translates a Java date-time pattern to chrono's strftime syntax.
pub fn to_strftime(pattern: &str) -> Result<String, PatternError> {
    let error = |reason: String| PatternError {
        pattern: pattern.to_owned(),
        reason,
    };
    let mut strftime = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted(&mut chars, &mut strftime)
                .ok_or_else(|| error("a quote (') is not closed".into()))?,
            '[' | ']' => {
                return Err(error(format!(
                    "optional sections ('{c}') are not supported"
                )));
            }
            '{' | '}' | '#' => {
                return Err(error(format!("'{c}' is reserved; quote it ('{c}')")));
            }
            letter if letter.is_ascii_alphabetic() => {
                let mut count = 1;
                while chars.next_if_eq(&letter).is_some() {
                    count += 1;
                }
                let field = field(letter, count).ok_or_else(|| {
                    error(format!(
                        "'{}' is not supported (the supported letters are {SUPPORTED}; quote literal text: 'T')",
                        letter.to_string().repeat(count)
                    ))
                })?;
                strftime.push_str(field);
            }
            other => push_literal(&mut strftime, other),
        }
    }
    Ok(strftime)
}

/// Literal text after an opening quote, up to the closing one: `''` is a
/// quote, inside or outside quoted text. `None` if the quote is not closed.
fn quoted(chars: &mut Peekable<Chars<'_>>, strftime: &mut String) -> Option<()> {
    if chars.next_if_eq(&'\'').is_some() {
        strftime.push('\'');
        return Some(());
    }
    loop {
        match chars.next()? {
            '\'' if chars.next_if_eq(&'\'').is_some() => strftime.push('\''),
            '\'' => return Some(()),
            other => push_literal(strftime, other),
        }
    }
}

fn push_literal(strftime: &mut String, c: char) {
    if c == '%' {
        strftime.push_str("%%");
    } else {
        strftime.push(c);
    }
}

/// The strftime field of `count` repetitions of a Java pattern letter.
fn field(letter: char, count: usize) -> Option<&'static str> {
    Some(match (letter, count) {
        ('y' | 'u', 2) => "%y",
        ('y' | 'u', 1 | 3 | 4) => "%Y",
        ('M' | 'L', 1) => "%-m",
        ('M' | 'L', 2) => "%m",
        ('M' | 'L', 3) => "%b",
        ('M' | 'L', 4) => "%B",
        ('d', 1) => "%-d",
        ('d', 2) => "%d",
        ('D', 1) => "%-j",
        ('D', 3) => "%j",
        ('H', 1) => "%-H",
        ('H', 2) => "%H",
        ('h', 1) => "%-I",
        ('h', 2) => "%I",
        ('m', 1) => "%-M",
        ('m', 2) => "%M",
        ('s', 1) => "%-S",
        ('s', 2) => "%S",
        ('S', 3) => "%3f",
        ('S', 6) => "%6f",
        ('S', 9) => "%9f",
        ('a', 1) => "%p",
        ('E', 1..=3) => "%a",
        ('E', 4) => "%A",
        ('Z', 1..=3) | ('x', 2) => "%z",
        ('x', 3) => "%:z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flinks_usual_patterns_translate() {
        let cases = [
            ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
            ("yyyy-MM-dd HH:mm:ss.SSS", "%Y-%m-%d %H:%M:%S.%3f"),
            ("yyyy-MM-dd", "%Y-%m-%d"),
            ("yyyyMMddHHmmss", "%Y%m%d%H%M%S"),
            ("yy/M/d H:m:s", "%y/%-m/%-d %-H:%-M:%-S"),
            ("dd MMM yyyy", "%d %b %Y"),
            ("EEEE, MMMM d", "%A, %B %-d"),
            ("EEE hh:mm a", "%a %I:%M %p"),
            ("DDD", "%j"),
            ("HH:mm:ss.SSSSSSSSS", "%H:%M:%S.%9f"),
            ("yyyy-MM-dd HH:mm:ss Z", "%Y-%m-%d %H:%M:%S %z"),
            ("yyyy-MM-dd'T'HH:mm:ssxxx", "%Y-%m-%dT%H:%M:%S%:z"),
            ("uuuu", "%Y"),
        ];
        for (java, strftime) in cases {
            assert_eq!(to_strftime(java).as_deref(), Ok(strftime), "{java}");
        }
    }

    #[test]
    fn quotes_make_literal_text() {
        assert_eq!(
            to_strftime("yyyy-MM-dd'T'HH:mm").as_deref(),
            Ok("%Y-%m-%dT%H:%M")
        );
        // Letters inside quotes stay letters.
        assert_eq!(
            to_strftime("'Day' D 'of' yyyy").as_deref(),
            Ok("Day %-j of %Y")
        );
        // '' is a quote, outside and inside quoted text.
        assert_eq!(to_strftime("HH''mm").as_deref(), Ok("%H'%M"));
        assert_eq!(to_strftime("'o''clock' H").as_deref(), Ok("o'clock %-H"));
        // chrono's own marker is literal text in Java.
        assert_eq!(to_strftime("d%").as_deref(), Ok("%-d%%"));
        assert_eq!(to_strftime("'100%'").as_deref(), Ok("100%%"));
        assert_eq!(to_strftime("").as_deref(), Ok(""));
    }

    #[test]
    fn unknown_letters_and_counts_are_refused_by_name() {
        let cases = [
            ("yyyy-MM-dd T", "'T' is not supported"),
            ("yyyyy", "'yyyyy' is not supported"),
            ("MMMMM", "'MMMMM' is not supported"),
            ("HH:mm:ss.S", "'S' is not supported"),
            ("HH:mm:ss.SS", "'SS' is not supported"),
            ("kk", "'kk' is not supported"),
            ("G yyyy", "'G' is not supported"),
            (
                "yyyy-MM-dd[ HH:mm]",
                "optional sections ('[') are not supported",
            ),
            ("'unclosed", "a quote (') is not closed"),
            ("yyyy#", "'#' is reserved"),
        ];
        for (java, reason) in cases {
            let error = to_strftime(java).unwrap_err();
            assert_eq!(error.pattern, java);
            assert!(error.reason.contains(reason), "{java}: {error}");
        }
    }
}
