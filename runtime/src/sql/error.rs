//! Errors in a SQL script: what is wrong, and where (line and column).

use std::fmt;

use sqlparser::parser::ParserError;
use sqlparser::tokenizer::{Location, Span};

/// Where something is in the script: line and column, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The line, from 1.
    pub line: u64,
    /// The column, from 1.
    pub column: u64,
}

impl Position {
    /// The start of `span`, when it has one (spans of generated nodes are empty).
    pub fn of(span: Span) -> Option<Self> {
        Self::from_location(span.start)
    }

    /// `location`, when it is a real place in the script.
    pub fn from_location(location: Location) -> Option<Self> {
        (location.line > 0).then_some(Self {
            line: location.line,
            column: location.column,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a SQL script cannot run: the message names the construct, and the position
/// says where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// What is wrong, and what would do instead.
    pub message: String,
    /// Where, when known.
    pub at: Option<Position>,
}

impl SqlError {
    /// An error at `at`.
    pub fn new(message: impl Into<String>, at: Option<Position>) -> Self {
        Self {
            message: message.into(),
            at,
        }
    }

    /// An error at the start of `span`.
    pub fn at_span(message: impl Into<String>, span: Span) -> Self {
        Self::new(message, Position::of(span))
    }

    /// The same error, placed at `at` if it has no place yet.
    pub fn or_at(mut self, at: Option<Position>) -> Self {
        if self.at.is_none() {
            self.at = at;
        }
        self
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "SQL error at {at}: {}", self.message),
            None => write!(f, "SQL error: {}", self.message),
        }
    }
}

impl std::error::Error for SqlError {}

impl From<ParserError> for SqlError {
    /// sqlparser writes the place at the end of its message (`... at Line: 3,
    /// Column: 14`): it becomes the error's position.
    fn from(error: ParserError) -> Self {
        let text = match error {
            ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
            ParserError::RecursionLimitExceeded => "the statement is nested too deeply".into(),
        };
        match text.rsplit_once(" at Line: ") {
            Some((message, place)) => {
                let mut numbers = place
                    .split(", Column: ")
                    .map(|number| number.trim().parse::<u64>().ok());
                match (numbers.next().flatten(), numbers.next().flatten()) {
                    (Some(line), Some(column)) => {
                        Self::new(message, Some(Position { line, column }))
                    }
                    _ => Self::new(text.clone(), None),
                }
            }
            None => Self::new(text, None),
        }
    }
}

/// A result with a [`SqlError`].
pub type SqlResult<T> = Result<T, SqlError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_errors_keep_their_place() {
        let error = SqlError::from(ParserError::ParserError(
            "Expected: ), found: t at Line: 3, Column: 14".into(),
        ));
        assert_eq!(
            error.to_string(),
            "SQL error at line 3, column 14: Expected: ), found: t"
        );
    }
}
