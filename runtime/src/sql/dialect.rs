//! The SQL dialect Strom parses: Flink's lexical rules (backquoted identifiers,
//! single-quoted strings without backslash escapes) and Flink's table arguments
//! of window table functions (`TUMBLE(TABLE t, DESCRIPTOR(ts), ...)`,
//! `SESSION(TABLE t PARTITION BY k, ...)`).

use sqlparser::ast::{Expr, Ident};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The first part of the compound identifier a `TABLE t` argument parses to:
/// `TABLE t` becomes the expression `__table__.t`. No column can be named so
/// (identifiers starting with two underscores are refused in DDL).
pub const TABLE_ARGUMENT: &str = "__table__";

/// What separates the table's name from its partition keys in the compound
/// identifier of `TABLE t PARTITION BY k` (or `PARTITION BY (k1, k2)`):
/// `__table__.t.__partition_by__.k`.
pub const PARTITION_BY: &str = "__partition_by__";

/// Flink's SQL dialect, as far as the lexer and the expression parser see it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    fn supports_nested_comments(&self) -> bool {
        true
    }

    fn supports_window_function_null_treatment_arg(&self) -> bool {
        true
    }

    /// `TABLE t` as a function argument (window table functions take their input
    /// table so), with its `PARTITION BY` keys if any.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let is_table_argument = matches!(
            &parser.peek_token_ref().token,
            Token::Word(word) if word.keyword == Keyword::TABLE
        ) && matches!(&parser.peek_nth_token_ref(1).token, Token::Word(_));
        if !is_table_argument {
            return None;
        }
        parser.next_token();
        Some(parser.parse_object_name(false).and_then(|name| {
            let mut parts = vec![Ident::new(TABLE_ARGUMENT)];
            parts.extend(
                name.0
                    .into_iter()
                    .filter_map(|part| part.as_ident().cloned()),
            );
            if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
                parts.push(Ident::new(PARTITION_BY));
                if parser.consume_token(&Token::LParen) {
                    parts.extend(parser.parse_comma_separated(|parser| parser.parse_identifier())?);
                    parser.expect_token(&Token::RParen)?;
                } else {
                    parts.push(parser.parse_identifier()?);
                }
            }
            Ok(Expr::CompoundIdentifier(parts))
        }))
    }
}
