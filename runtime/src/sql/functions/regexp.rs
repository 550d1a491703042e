//! `REGEXP_EXTRACT` and `REGEXP_REPLACE`, with Rust's regular expressions.
//!
//! Flink compiles Java regular expressions and gives null when one does not
//! compile. Here a literal one that does not compile (or uses what Rust's
//! syntax lacks: look-around, back-references) is refused when the query is
//! planned; one read from a column gives null.

use std::collections::HashMap;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use regex::{NoExpand, Regex};

use super::args::{Call, Integers, Param, Strings, literal_string, string_results};
use super::builtin::{Builtin, Returns};

/// `REGEXP_EXTRACT(s, regex [, group])`: the `group`-th capture group (0, the
/// whole match, by default) of the first match of `regex` in `s`; null when
/// nothing matches, the group did not take part, or there is no such group.
pub fn regexp_extract() -> Builtin {
    Builtin::new(
        "REGEXP_EXTRACT",
        &[
            &[Param::String, Param::String],
            &[Param::String, Param::String, Param::Integer],
        ],
        Returns::Type(DataType::Utf8),
        evaluate_regexp_extract,
    )
    .checking_literals(|literals| check_regex("REGEXP_EXTRACT", literals))
}

fn evaluate_regexp_extract(call: &Call<'_>) -> Result<ArrayRef> {
    let text = call.strings(0)?;
    let mut regexes = Regexes::new(call.strings(1)?);
    let group = if call.has(2) {
        call.integers(2)?
    } else {
        Integers::Constant(Some(0))
    };
    Ok(string_results(call.rows, |row| {
        let text = text.get(row)?;
        let regex = regexes.get(row)?;
        let group = usize::try_from(group.get(row)?).ok()?;
        Some(regex.captures(text)?.get(group)?.as_str())
    }))
}

/// `REGEXP_REPLACE(s, regex, replacement)`: `s` with every match of `regex`
/// replaced by `replacement`, taken literally (`$1` is not a group), as Flink
/// does. DataFusion's function of this name replaces the first match only.
pub fn regexp_replace() -> Builtin {
    Builtin::new(
        "REGEXP_REPLACE",
        &[&[Param::String, Param::String, Param::String]],
        Returns::Type(DataType::Utf8),
        evaluate_regexp_replace,
    )
    .checking_literals(|literals| check_regex("REGEXP_REPLACE", literals))
}

fn evaluate_regexp_replace(call: &Call<'_>) -> Result<ArrayRef> {
    let text = call.strings(0)?;
    let mut regexes = Regexes::new(call.strings(1)?);
    let replacement = call.strings(2)?;
    Ok(string_results(call.rows, |row| {
        let text = text.get(row)?;
        let regex = regexes.get(row)?;
        let replacement = replacement.get(row)?;
        Some(regex.replace_all(text, NoExpand(replacement)))
    }))
}

/// Refuses a literal regular expression (the second argument) that does not
/// compile.
fn check_regex(function: &str, literals: &[Option<&ScalarValue>]) -> Result<()> {
    let Some(pattern) = literal_string(literals.get(1).copied().flatten()) else {
        return Ok(());
    };
    match Regex::new(pattern) {
        Ok(_) => Ok(()),
        Err(error) => plan_err!(
            "{function}: the regular expression '{pattern}' does not compile (Rust's syntax, without look-around or back-references): {}",
            one_line(&error.to_string())
        ),
    }
}

/// The regex crate's message without its drawing of where the error is.
fn one_line(message: &str) -> String {
    message
        .lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(message)
        .to_owned()
}

/// The regular expressions of a call, compiled once each.
struct Regexes<'a> {
    patterns: Strings<'a>,
    /// Each pattern seen and what it compiled to; `None` when it does not.
    compiled: HashMap<&'a str, Option<Regex>>,
}

impl<'a> Regexes<'a> {
    fn new(patterns: Strings<'a>) -> Self {
        Self {
            patterns,
            compiled: HashMap::new(),
        }
    }

    /// The regular expression at `row`; `None` when null or when it does not
    /// compile.
    fn get(&mut self, row: usize) -> Option<&Regex> {
        let pattern = self.patterns.get(row)?;
        self.compiled
            .entry(pattern)
            .or_insert_with(|| Regex::new(pattern).ok())
            .as_ref()
    }
}
