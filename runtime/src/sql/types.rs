//! Flink's SQL data types, as written in `CREATE TABLE`, and the Arrow types they
//! become.
//!
//! | Flink | Arrow |
//! |---|---|
//! | `BOOLEAN` | Boolean |
//! | `TINYINT`, `SMALLINT`, `INT`, `BIGINT` | Int8, Int16, Int32, Int64 |
//! | `FLOAT`, `DOUBLE` | Float32, Float64 |
//! | `DECIMAL(p, s)` | Decimal128(p, s) |
//! | `STRING`, `VARCHAR(n)`, `CHAR(n)` | Utf8 |
//! | `BYTES`, `VARBINARY(n)`, `BINARY(n)` | Binary |
//! | `DATE`, `TIME` | Date32, Time32(ms) |
//! | `TIMESTAMP(p)` | Timestamp(ms / µs / ns by p) |
//! | `TIMESTAMP_LTZ(p)` | Timestamp(…, "UTC") |
//! | `ARRAY<T>`, `MAP<K, V>`, `ROW<name T, ...>` | List, Map, Struct |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::error::{Position, SqlError, SqlResult};

/// A column type and whether it may be null (`NOT NULL` after the type).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// The Arrow type.
    pub data_type: DataType,
    /// Whether values may be null.
    pub nullable: bool,
}

/// Parses a Flink data type (and an optional `NOT NULL`) at the parser's position.
pub fn parse_type(parser: &mut Parser<'_>) -> SqlResult<ColumnType> {
    let mut types = TypeParser {
        parser,
        pending_closes: 0,
    };
    let column_type = types.column_type()?;
    if types.pending_closes > 0 {
        return Err(SqlError::new("unbalanced '>' in a type", None));
    }
    Ok(column_type)
}

struct TypeParser<'p, 'a> {
    parser: &'p mut Parser<'a>,
    /// `>` already consumed as part of a `>>` token.
    pending_closes: usize,
}

impl TypeParser<'_, '_> {
    fn column_type(&mut self) -> SqlResult<ColumnType> {
        let data_type = self.data_type()?;
        // After a `>>` whose second `>` closes an enclosing type, `NOT NULL` belongs
        // to that enclosing type, not to this one.
        let nullable = if self.pending_closes > 0 {
            true
        } else if self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
            false
        } else {
            let _ = self.parser.parse_keyword(Keyword::NULL);
            true
        };
        Ok(ColumnType {
            data_type,
            nullable,
        })
    }

    fn data_type(&mut self) -> SqlResult<DataType> {
        let token = self.parser.next_token();
        let at = Position::of(token.span);
        let Token::Word(word) = &token.token else {
            return Err(SqlError::new(
                format!("expected a data type, found {}", token.token),
                at,
            ));
        };
        let name = word.value.to_ascii_uppercase();
        let data_type = match name.as_str() {
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TINYINT" => DataType::Int8,
            "SMALLINT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" => DataType::Int64,
            "FLOAT" | "REAL" => DataType::Float32,
            "DOUBLE" => {
                let _ = self.parser.parse_keyword(Keyword::PRECISION);
                DataType::Float64
            }
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let numbers = self.numbers()?;
                let precision = numbers.first().copied().unwrap_or(10);
                let scale = numbers.get(1).copied().unwrap_or(0);
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(SqlError::new(
                        format!(
                            "DECIMAL({precision}, {scale}): precision must be 1 to 38 and scale at most the precision"
                        ),
                        at,
                    ));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "STRING" | "TEXT" => DataType::Utf8,
            "VARCHAR" | "CHAR" | "CHARACTER" => {
                let _ = self.parser.parse_keyword(Keyword::VARYING);
                self.numbers()?;
                DataType::Utf8
            }
            "BYTES" => DataType::Binary,
            "VARBINARY" | "BINARY" => {
                self.numbers()?;
                DataType::Binary
            }
            "DATE" => DataType::Date32,
            "TIME" => {
                self.numbers()?;
                DataType::Time32(TimeUnit::Millisecond)
            }
            "TIMESTAMP" => {
                let unit = self.time_unit()?;
                if self.parser.parse_keywords(&[Keyword::WITH, Keyword::LOCAL]) {
                    self.parser
                        .expect_keywords(&[Keyword::TIME, Keyword::ZONE])?;
                    DataType::Timestamp(unit, Some("UTC".into()))
                } else {
                    if self.parser.parse_keyword(Keyword::WITHOUT) {
                        self.parser
                            .expect_keywords(&[Keyword::TIME, Keyword::ZONE])?;
                    }
                    DataType::Timestamp(unit, None)
                }
            }
            "TIMESTAMP_LTZ" => DataType::Timestamp(self.time_unit()?, Some("UTC".into())),
            "ARRAY" => {
                self.open()?;
                let element = self.column_type()?;
                self.close()?;
                DataType::List(Arc::new(Field::new(
                    "element",
                    element.data_type,
                    element.nullable,
                )))
            }
            "MAP" => {
                self.open()?;
                let key = self.column_type()?;
                self.no_pending_close()?;
                self.parser.expect_token(&Token::Comma)?;
                let value = self.column_type()?;
                self.close()?;
                let entries = Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key.data_type, false),
                        Field::new("value", value.data_type, value.nullable),
                    ])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            }
            "ROW" => self.row()?,
            other => {
                return Err(SqlError::new(
                    format!(
                        "unknown data type {other}; Flink's types are BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p, s), STRING, VARCHAR(n), BYTES, DATE, TIME, TIMESTAMP(p), TIMESTAMP_LTZ(p), ARRAY<T>, MAP<K, V>, ROW<name T, ...>"
                    ),
                    at,
                ));
            }
        };
        Ok(data_type)
    }

    /// `ROW<name T, ...>` or `ROW(name T, ...)`.
    fn row(&mut self) -> SqlResult<DataType> {
        let angle = if self.parser.consume_token(&Token::Lt) {
            true
        } else {
            self.parser.expect_token(&Token::LParen)?;
            false
        };
        let mut fields = Vec::new();
        loop {
            let name = self.parser.parse_identifier()?;
            let field_type = self.column_type()?;
            if self.pending_closes > 0 {
                // The field's type ended in `>>`: its second `>` closes this row.
                fields.push(Field::new(
                    name.value,
                    field_type.data_type,
                    field_type.nullable,
                ));
                break;
            }
            // Flink allows a description after each field.
            if matches!(
                self.parser.peek_token_ref().token,
                Token::SingleQuotedString(_)
            ) {
                self.parser.next_token();
            }
            fields.push(Field::new(
                name.value,
                field_type.data_type,
                field_type.nullable,
            ));
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        if angle {
            self.close()?;
        } else {
            self.no_pending_close()?;
            self.parser.expect_token(&Token::RParen)?;
        }
        Ok(DataType::Struct(Fields::from(fields)))
    }

    fn open(&mut self) -> SqlResult<()> {
        self.parser.expect_token(&Token::Lt)?;
        Ok(())
    }

    /// A closing `>`, which the lexer may have joined with the next one (`>>`).
    fn close(&mut self) -> SqlResult<()> {
        if self.pending_closes > 0 {
            self.pending_closes -= 1;
            return Ok(());
        }
        if self.parser.consume_token(&Token::ShiftRight) {
            self.pending_closes += 1;
            return Ok(());
        }
        self.parser.expect_token(&Token::Gt)?;
        Ok(())
    }

    /// Fails where a `>>` closed one level more than the type being parsed holds,
    /// before a token that only fits inside that type (`,` in `MAP<K, V>`, `)` in
    /// `ROW(...)`).
    fn no_pending_close(&self) -> SqlResult<()> {
        if self.pending_closes > 0 {
            let at = Position::of(self.parser.peek_token_ref().span);
            return Err(SqlError::new("unbalanced '>' in a type", at));
        }
        Ok(())
    }

    /// Optional `(n)` or `(n, m)`.
    fn numbers(&mut self) -> SqlResult<Vec<u64>> {
        if !self.parser.consume_token(&Token::LParen) {
            return Ok(Vec::new());
        }
        let mut numbers = Vec::new();
        loop {
            let token = self.parser.next_token();
            match &token.token {
                Token::Number(text, _) => numbers.push(text.parse().map_err(|_| {
                    SqlError::new(format!("{text} is not a size"), Position::of(token.span))
                })?),
                other => {
                    return Err(SqlError::new(
                        format!("expected a number, found {other}"),
                        Position::of(token.span),
                    ));
                }
            }
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.parser.expect_token(&Token::RParen)?;
        Ok(numbers)
    }

    /// The unit of `TIMESTAMP(p)`: milliseconds up to p = 3 (Flink's default
    /// precision for event time is 3), micro- and nanoseconds above.
    fn time_unit(&mut self) -> SqlResult<TimeUnit> {
        let precision = self.numbers()?.first().copied().unwrap_or(6);
        Ok(match precision {
            0..=3 => TimeUnit::Millisecond,
            4..=6 => TimeUnit::Microsecond,
            _ => TimeUnit::Nanosecond,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::dialect::FlinkDialect;

    fn parse(text: &str) -> SqlResult<ColumnType> {
        let dialect = FlinkDialect;
        let mut parser = Parser::new(&dialect).try_with_sql(text)?;
        parse_type(&mut parser)
    }

    #[test]
    fn flink_types_become_arrow_types() {
        assert_eq!(parse("BIGINT").unwrap().data_type, DataType::Int64);
        assert_eq!(
            parse("TIMESTAMP(3)").unwrap().data_type,
            DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert_eq!(
            parse("TIMESTAMP_LTZ(3)").unwrap().data_type,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(
            parse("DECIMAL(12, 2) NOT NULL").unwrap(),
            ColumnType {
                data_type: DataType::Decimal128(12, 2),
                nullable: false
            }
        );
        let nested = parse("ARRAY<ROW<a INT, b MAP<STRING, ARRAY<BIGINT>>>>").unwrap();
        let DataType::List(element) = nested.data_type else {
            panic!("{nested:?}")
        };
        let DataType::Struct(fields) = element.data_type() else {
            panic!("{element:?}")
        };
        assert_eq!(fields.len(), 2);
        assert!(matches!(fields[1].data_type(), DataType::Map(_, _)));
        let row = parse("ROW(name STRING, age INT NOT NULL)")
            .unwrap()
            .data_type;
        assert!(matches!(row, DataType::Struct(fields) if !fields[1].is_nullable()));
    }

    /// The lexer joins `>>` into one token; each of its `>` closes one level, and
    /// nothing after it belongs to the inner type (no field, no `NOT NULL`).
    #[test]
    fn joined_closing_brackets_close_one_level_each() {
        fn fields(column_type: &ColumnType) -> Vec<String> {
            match &column_type.data_type {
                DataType::Struct(fields) => fields.iter().map(|f| f.name().clone()).collect(),
                other => panic!("not a ROW: {other:?}"),
            }
        }
        let dialect = FlinkDialect;
        for text in [
            "ROW<a ROW<b INT>>, amount INT",
            "ROW<x ARRAY<INT>>, amount INT",
            "ROW<a ROW<b INT> >, amount INT",
        ] {
            let mut parser = Parser::new(&dialect).try_with_sql(text).unwrap();
            let row = parse_type(&mut parser).unwrap();
            assert_eq!(fields(&row).len(), 1, "{text}: {row:?}");
            assert_eq!(parser.next_token().token, Token::Comma, "{text}");
        }

        let nested = parse("ARRAY<ARRAY<INT>> NOT NULL").unwrap();
        assert!(!nested.nullable, "{nested:?}");
        let DataType::List(outer) = &nested.data_type else {
            panic!("{nested:?}")
        };
        let DataType::List(inner) = outer.data_type() else {
            panic!("{outer:?}")
        };
        assert_eq!(inner.data_type(), &DataType::Int32);

        // `>>>` is `>>` then `>`; `>>>>` is two `>>`.
        let triple = parse("ARRAY<MAP<STRING, ROW<a INT>>>").unwrap();
        let DataType::List(element) = &triple.data_type else {
            panic!("{triple:?}")
        };
        assert!(
            matches!(element.data_type(), DataType::Map(_, _)),
            "{triple:?}"
        );
        let quadruple = parse("ROW<m MAP<STRING, ARRAY<ROW<a INT>>>>").unwrap();
        assert_eq!(fields(&quadruple), ["m"]);
        let then_field = parse("ROW<m MAP<STRING, ARRAY<ROW<a INT>>>, b INT>").unwrap();
        assert_eq!(fields(&then_field), ["m", "b"]);

        for unbalanced in ["ARRAY<INT>>", "ROW<a INT>>", "MAP<ARRAY<INT>>, INT>"] {
            assert!(parse(unbalanced).is_err(), "{unbalanced}");
        }
    }

    #[test]
    fn unknown_types_name_the_choices() {
        let error = parse("  JSONB").unwrap_err();
        assert_eq!(error.at, Some(Position { line: 1, column: 3 }));
        assert!(error.message.contains("unknown data type JSONB"), "{error}");
    }
}
