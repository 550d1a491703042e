//! A SQL script, statement by statement, in Flink's syntax: `CREATE TABLE` (with
//! computed columns, `WATERMARK FOR`, `PRIMARY KEY ... NOT ENFORCED` and `WITH`
//! options), `CREATE [TEMPORARY] VIEW`, `INSERT INTO`, `SET`, `EXECUTE STATEMENT
//! SET BEGIN ... END`, and queries. Queries are sqlparser's AST (parsed with
//! [`FlinkDialect`]); the DDL is parsed here, so that what Flink accepts is
//! accepted as Flink means it.

use std::collections::BTreeMap;

use sqlparser::ast::{Expr, Ident, ObjectName, Query};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::dialect::FlinkDialect;
use super::error::{Position, SqlError, SqlResult};
use super::types::{ColumnType, parse_type};

/// A statement of a script.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE TABLE`.
    CreateTable(Box<TableDefinition>),
    /// `CREATE [TEMPORARY] VIEW name AS query`.
    CreateView {
        /// The view's name.
        name: String,
        /// Column names given after the view's name, if any.
        columns: Vec<String>,
        /// Its query.
        query: Box<Query>,
        /// Where the statement starts.
        at: Option<Position>,
    },
    /// `INSERT INTO table query`.
    Insert {
        /// The table written.
        table: String,
        /// The columns written, when listed.
        columns: Vec<String>,
        /// What is written.
        query: Box<Query>,
        /// Where the statement starts.
        at: Option<Position>,
    },
    /// `SET 'key' = 'value'`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Where the statement starts.
        at: Option<Position>,
    },
    /// A query on its own: its rows are printed (as the Flink SQL client shows
    /// them).
    Query {
        /// The query.
        query: Box<Query>,
        /// Where it starts.
        at: Option<Position>,
    },
}

/// A column of `CREATE TABLE`.
#[derive(Debug, Clone)]
pub enum ColumnDefinition {
    /// A column read from (or written to) the connector.
    Physical {
        /// Its name.
        name: String,
        /// Its type.
        column_type: ColumnType,
        /// Where it is declared.
        at: Option<Position>,
    },
    /// `name AS expression`: computed from the other columns when read.
    Computed {
        /// Its name.
        name: String,
        /// The expression.
        expr: Box<Expr>,
        /// Where it is declared.
        at: Option<Position>,
    },
    /// `name type METADATA [FROM 'key'] [VIRTUAL]`: a value of the connector's
    /// (a Kafka record's timestamp, say).
    Metadata {
        /// Its name.
        name: String,
        /// Its type.
        column_type: ColumnType,
        /// The connector's name for it (the column's name when not given).
        key: String,
        /// Whether it is only read, never written.
        is_virtual: bool,
        /// Where it is declared.
        at: Option<Position>,
    },
}

impl ColumnDefinition {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Physical { name, .. }
            | Self::Computed { name, .. }
            | Self::Metadata { name, .. } => name,
        }
    }

    /// Where the column is declared.
    pub fn at(&self) -> Option<Position> {
        match self {
            Self::Physical { at, .. } | Self::Computed { at, .. } | Self::Metadata { at, .. } => {
                *at
            }
        }
    }
}

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone)]
pub struct WatermarkDefinition {
    /// The event-time column.
    pub column: String,
    /// The watermark's expression (`ts - INTERVAL '5' SECOND`).
    pub expr: Expr,
    /// Where it is declared.
    pub at: Option<Position>,
}

/// A `CREATE TABLE` statement.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    /// The table's name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnDefinition>,
    /// Its watermark, if any.
    pub watermark: Option<WatermarkDefinition>,
    /// Its primary key (`PRIMARY KEY (...) NOT ENFORCED`), if any.
    pub primary_key: Vec<String>,
    /// The `WITH` options, by name.
    pub options: BTreeMap<String, String>,
    /// Where the statement starts.
    pub at: Option<Position>,
}

/// Parses a whole script into its statements.
pub fn parse_script(text: &str) -> SqlResult<Vec<Statement>> {
    let dialect = FlinkDialect;
    let tokens = Tokenizer::new(&dialect, text)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|error| SqlError::new(error.message, Position::from_location(error.location)))?;
    let mut statements = Vec::new();
    for tokens in split_statements(tokens) {
        if let Some(statement) = parse_statement(tokens)? {
            statements.push(statement);
        }
    }
    Ok(statements)
}

/// The tokens of each statement (split at `;` outside parentheses), without
/// statements that hold only whitespace and comments.
fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut statements = vec![Vec::new()];
    let mut depth = 0usize;
    for token in tokens {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                statements.push(Vec::new());
                continue;
            }
            _ => {}
        }
        statements.last_mut().expect("one at least").push(token);
    }
    statements
        .into_iter()
        .filter(|tokens| {
            tokens
                .iter()
                .any(|token| !matches!(token.token, Token::Whitespace(_)))
        })
        .collect()
}

fn parse_statement(tokens: Vec<TokenWithSpan>) -> SqlResult<Option<Statement>> {
    let dialect = FlinkDialect;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let at = Position::of(parser.peek_token_ref().span);
    // `EXECUTE STATEMENT SET BEGIN INSERT ...; INSERT ...; END;` groups INSERTs into
    // one job, which is what a script is anyway.
    if parser.parse_keyword(Keyword::EXECUTE) {
        expect_word(&mut parser, "STATEMENT")?;
        parser.expect_keywords(&[Keyword::SET, Keyword::BEGIN])?;
    } else if parser.parse_keywords(&[Keyword::STATEMENT, Keyword::SET]) {
        parser.expect_keyword_is(Keyword::BEGIN)?;
    }
    if parser.parse_keyword(Keyword::END) {
        expect_end(&mut parser)?;
        return Ok(None);
    }
    let at = Position::of(parser.peek_token_ref().span).or(at);
    let statement = if parser.parse_keyword(Keyword::CREATE) {
        let _ = parser.parse_keyword(Keyword::TEMPORARY);
        if parser.parse_keyword(Keyword::TABLE) {
            Statement::CreateTable(Box::new(create_table(&mut parser, at)?))
        } else if parser.parse_keyword(Keyword::VIEW) {
            create_view(&mut parser, at)?
        } else {
            let found = parser.peek_token();
            return Err(SqlError::new(
                format!(
                    "CREATE {} is not supported; Strom runs CREATE TABLE and CREATE [TEMPORARY] VIEW",
                    found.token
                ),
                Position::of(found.span),
            ));
        }
    } else if parser.parse_keyword(Keyword::INSERT) {
        parser.expect_keyword_is(Keyword::INTO)?;
        let table = object_name(&mut parser)?;
        let columns = optional_names(&mut parser)?;
        let query = parser.parse_query()?;
        Statement::Insert {
            table,
            columns,
            query,
            at,
        }
    } else if parser.parse_keyword(Keyword::SET) {
        let key = option_text(&mut parser)?;
        parser.expect_token(&Token::Eq)?;
        let value = option_text(&mut parser)?;
        Statement::Set { key, value, at }
    } else if matches!(
        &parser.peek_token_ref().token,
        Token::Word(word) if matches!(word.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES)
    ) || parser.peek_token_ref().token == Token::LParen
    {
        Statement::Query {
            query: parser.parse_query()?,
            at,
        }
    } else {
        let found = parser.peek_token();
        return Err(SqlError::new(
            format!(
                "unsupported statement starting with {}; Strom runs CREATE TABLE, CREATE VIEW, INSERT INTO, SET and queries",
                found.token
            ),
            Position::of(found.span),
        ));
    };
    expect_end(&mut parser)?;
    Ok(Some(statement))
}

fn expect_word(parser: &mut Parser<'_>, word: &str) -> SqlResult<()> {
    let token = parser.next_token();
    match &token.token {
        Token::Word(found) if found.value.eq_ignore_ascii_case(word) => Ok(()),
        other => Err(SqlError::new(
            format!("expected {word}, found {other}"),
            Position::of(token.span),
        )),
    }
}

fn expect_end(parser: &mut Parser<'_>) -> SqlResult<()> {
    let token = parser.next_token();
    match token.token {
        Token::EOF => Ok(()),
        other => Err(SqlError::new(
            format!("expected the end of the statement, found {other}"),
            Position::of(token.span),
        )),
    }
}

/// A possibly qualified name, as one string (`catalog.db.t` stays dotted).
fn object_name(parser: &mut Parser<'_>) -> SqlResult<String> {
    let name: ObjectName = parser.parse_object_name(false)?;
    Ok(name
        .0
        .iter()
        .filter_map(|part| part.as_ident().map(|ident| ident.value.clone()))
        .collect::<Vec<_>>()
        .join("."))
}

/// `(a, b, c)` when present.
fn optional_names(parser: &mut Parser<'_>) -> SqlResult<Vec<String>> {
    if parser.peek_token_ref().token != Token::LParen
        || matches!(&parser.peek_nth_token_ref(1).token, Token::Word(word) if word.keyword == Keyword::SELECT)
    {
        return Ok(Vec::new());
    }
    parser.expect_token(&Token::LParen)?;
    let names = parser.parse_comma_separated(|parser| parser.parse_identifier())?;
    parser.expect_token(&Token::RParen)?;
    Ok(names.into_iter().map(|ident| ident.value).collect())
}

/// An option key or value: a quoted string, or a bare word or number.
fn option_text(parser: &mut Parser<'_>) -> SqlResult<String> {
    let token = parser.next_token();
    match token.token {
        Token::SingleQuotedString(text) | Token::DoubleQuotedString(text) => Ok(text),
        Token::Word(word) => {
            // Bare dotted keys (`SET table.exec.x = ...`).
            let mut text = word.value;
            while parser.consume_token(&Token::Period) {
                text.push('.');
                text.push_str(&parser.parse_identifier()?.value);
            }
            Ok(text)
        }
        Token::Number(number, _) => Ok(number),
        other => Err(SqlError::new(
            format!("expected a quoted option, found {other}"),
            Position::of(token.span),
        )),
    }
}

fn create_view(parser: &mut Parser<'_>, at: Option<Position>) -> SqlResult<Statement> {
    let _ = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(parser)?;
    let columns = optional_names(parser)?;
    parser.expect_keyword_is(Keyword::AS)?;
    let query = parser.parse_query()?;
    Ok(Statement::CreateView {
        name,
        columns,
        query,
        at,
    })
}

/// Names Strom keeps for itself (the window functions' table arguments).
fn check_column_name(name: &Ident) -> SqlResult<()> {
    if name.value.starts_with("__") {
        return Err(SqlError::at_span(
            format!(
                "column name {:?}: names starting with two underscores are reserved",
                name.value
            ),
            name.span,
        ));
    }
    Ok(())
}

fn create_table(parser: &mut Parser<'_>, at: Option<Position>) -> SqlResult<TableDefinition> {
    let _ = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(parser)?;
    let mut table = TableDefinition {
        name,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        options: BTreeMap::new(),
        at,
    };
    parser.expect_token(&Token::LParen)?;
    loop {
        table_element(parser, &mut table)?;
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    if parser.parse_keyword(Keyword::COMMENT) {
        parser.parse_literal_string()?;
    }
    if parser.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        let token = parser.peek_token();
        return Err(SqlError::new(
            "PARTITIONED BY is not supported (tables are not partitioned into folders)",
            Position::of(token.span),
        ));
    }
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        if parser.peek_token_ref().token != Token::RParen {
            loop {
                let key_at = Position::of(parser.peek_token_ref().span);
                let key = option_text(parser)?;
                parser.expect_token(&Token::Eq)?;
                let value = option_text(parser)?;
                if table.options.insert(key.clone(), value).is_some() {
                    return Err(SqlError::new(
                        format!("option '{key}' is given twice"),
                        key_at,
                    ));
                }
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
        }
        parser.expect_token(&Token::RParen)?;
    } else if parser.parse_keyword(Keyword::LIKE) {
        let token = parser.peek_token();
        return Err(SqlError::new(
            "CREATE TABLE ... LIKE is not supported; write the columns and options out",
            Position::of(token.span),
        ));
    }
    check_table(&table)?;
    Ok(table)
}

/// One element between the parentheses of `CREATE TABLE`.
fn table_element(parser: &mut Parser<'_>, table: &mut TableDefinition) -> SqlResult<()> {
    let at = Position::of(parser.peek_token_ref().span);
    if matches!(&parser.peek_token_ref().token, Token::Word(word) if word.value.eq_ignore_ascii_case("WATERMARK"))
        && matches!(&parser.peek_nth_token_ref(1).token, Token::Word(word) if word.keyword == Keyword::FOR)
    {
        parser.next_token();
        parser.expect_keyword_is(Keyword::FOR)?;
        let column = parser.parse_identifier()?.value;
        parser.expect_keyword_is(Keyword::AS)?;
        let expr = parser.parse_expr()?;
        if table.watermark.is_some() {
            return Err(SqlError::new("a table has at most one WATERMARK", at));
        }
        table.watermark = Some(WatermarkDefinition { column, expr, at });
        return Ok(());
    }
    if parser.parse_keyword(Keyword::CONSTRAINT) {
        parser.parse_identifier()?;
    }
    if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        parser.expect_token(&Token::LParen)?;
        let names = parser.parse_comma_separated(|parser| parser.parse_identifier())?;
        parser.expect_token(&Token::RParen)?;
        not_enforced(parser, at)?;
        set_primary_key(table, names.into_iter().map(|n| n.value).collect(), at)?;
        return Ok(());
    }
    let name = parser.parse_identifier()?;
    check_column_name(&name)?;
    if parser.parse_keyword(Keyword::AS) {
        let expr = parser.parse_expr()?;
        if matches!(&expr, sqlparser::ast::Expr::Function(function) if function.name.to_string().eq_ignore_ascii_case("PROCTIME"))
        {
            return Err(SqlError::new(
                format!(
                    "column {}: processing-time attributes (PROCTIME()) are not supported yet: Strom's windows run on event time; declare a WATERMARK on a TIMESTAMP column",
                    name.value
                ),
                at,
            ));
        }
        if parser.parse_keyword(Keyword::COMMENT) {
            parser.parse_literal_string()?;
        }
        table.columns.push(ColumnDefinition::Computed {
            name: name.value,
            expr: Box::new(expr),
            at,
        });
        return Ok(());
    }
    let column_type = parse_type(parser).map_err(|error| error.or_at(at))?;
    let column = if parser.parse_keyword(Keyword::METADATA) {
        let key = if parser.parse_keyword(Keyword::FROM) {
            parser.parse_literal_string()?
        } else {
            name.value.clone()
        };
        let is_virtual = parser.parse_keyword(Keyword::VIRTUAL);
        ColumnDefinition::Metadata {
            name: name.value.clone(),
            column_type,
            key,
            is_virtual,
            at,
        }
    } else {
        ColumnDefinition::Physical {
            name: name.value.clone(),
            column_type,
            at,
        }
    };
    table.columns.push(column);
    if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        not_enforced(parser, at)?;
        set_primary_key(table, vec![name.value], at)?;
    }
    if parser.parse_keyword(Keyword::COMMENT) {
        parser.parse_literal_string()?;
    }
    Ok(())
}

fn not_enforced(parser: &mut Parser<'_>, at: Option<Position>) -> SqlResult<()> {
    if parser.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]) {
        Ok(())
    } else {
        Err(SqlError::new(
            "a PRIMARY KEY must be declared NOT ENFORCED (as in Flink: the connector does not check it)",
            at,
        ))
    }
}

fn set_primary_key(
    table: &mut TableDefinition,
    columns: Vec<String>,
    at: Option<Position>,
) -> SqlResult<()> {
    if !table.primary_key.is_empty() {
        return Err(SqlError::new("a table has at most one PRIMARY KEY", at));
    }
    table.primary_key = columns;
    Ok(())
}

/// Checks what refers to columns: unique names, the watermark's and the key's
/// columns exist.
fn check_table(table: &TableDefinition) -> SqlResult<()> {
    let mut seen = std::collections::BTreeSet::new();
    for column in &table.columns {
        if !seen.insert(column.name()) {
            return Err(SqlError::new(
                format!(
                    "table {}: column {} is declared twice",
                    table.name,
                    column.name()
                ),
                column.at(),
            ));
        }
    }
    if let Some(watermark) = &table.watermark
        && !seen.contains(watermark.column.as_str())
    {
        return Err(SqlError::new(
            format!(
                "table {}: WATERMARK FOR {}: no such column",
                table.name, watermark.column
            ),
            watermark.at,
        ));
    }
    for key in &table.primary_key {
        if !seen.contains(key.as_str()) {
            return Err(SqlError::new(
                format!(
                    "table {}: PRIMARY KEY column {key}: no such column",
                    table.name
                ),
                table.at,
            ));
        }
    }
    if table.columns.is_empty() {
        return Err(SqlError::new(
            format!("table {} has no columns", table.name),
            table.at,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;

    #[test]
    fn flink_ddl_parses_with_every_part() {
        let script = "
            SET 'table.exec.source.idle-timeout' = '5 s';
            CREATE TEMPORARY TABLE bid (
              auction BIGINT,
              `dateTime` TIMESTAMP(3),
              extra ROW<a INT, b STRING>,
              price_cents AS price * 100,
              price BIGINT NOT NULL,
              WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND,
              PRIMARY KEY (auction) NOT ENFORCED
            ) WITH (
              'connector' = 'kafka',
              'scan.startup.mode' = 'earliest-offset',
              'format' = 'json'
            );
            -- a comment
            CREATE VIEW v AS SELECT auction FROM bid;
            EXECUTE STATEMENT SET BEGIN
            INSERT INTO out SELECT * FROM v;
            END;
        ";
        let statements = parse_script(script).unwrap();
        assert_eq!(statements.len(), 4, "{statements:#?}");
        let Statement::Set { key, value, .. } = &statements[0] else {
            panic!()
        };
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("table.exec.source.idle-timeout", "5 s")
        );
        let Statement::CreateTable(table) = &statements[1] else {
            panic!()
        };
        assert_eq!(table.name, "bid");
        let names: Vec<&str> = table.columns.iter().map(ColumnDefinition::name).collect();
        assert_eq!(
            names,
            ["auction", "dateTime", "extra", "price_cents", "price"]
        );
        assert!(matches!(
            &table.columns[2],
            ColumnDefinition::Physical { column_type, .. } if matches!(column_type.data_type, DataType::Struct(_))
        ));
        assert!(matches!(
            &table.columns[3],
            ColumnDefinition::Computed { .. }
        ));
        assert_eq!(table.watermark.as_ref().unwrap().column, "dateTime");
        assert_eq!(table.primary_key, ["auction"]);
        assert_eq!(table.options["scan.startup.mode"], "earliest-offset");
        assert_eq!(
            table.at,
            Some(Position {
                line: 3,
                column: 13
            })
        );
        assert!(matches!(&statements[2], Statement::CreateView { name, .. } if name == "v"));
        assert!(matches!(&statements[3], Statement::Insert { table, .. } if table == "out"));
    }

    #[test]
    fn errors_name_the_construct_and_place() {
        let cases = [
            (
                "CREATE TABLE t (a INT) WITH ('x' = '1');\nCREATE FUNCTION f AS 'x';",
                "line 2, column 8: CREATE FUNCTION is not supported",
            ),
            (
                "CREATE TABLE t (a INT, a BIGINT) WITH ()",
                "line 1, column 24: table t: column a is declared twice",
            ),
            (
                "CREATE TABLE t (a INT,\n  WATERMARK FOR ts AS ts) WITH ()",
                "line 2, column 3: table t: WATERMARK FOR ts: no such column",
            ),
            (
                "CREATE TABLE t (a INT, PRIMARY KEY (a)) WITH ()",
                "a PRIMARY KEY must be declared NOT ENFORCED",
            ),
            (
                "CREATE TABLE t (a INT) WITH ('k' = 'v', 'k' = 'w')",
                "line 1, column 41: option 'k' is given twice",
            ),
            (
                "DROP TABLE t",
                "line 1, column 1: unsupported statement starting with DROP",
            ),
            ("SELECT FROM WHERE", "line 1, column"),
        ];
        for (script, expected) in cases {
            let error = parse_script(script).unwrap_err().to_string();
            assert!(error.contains(expected), "{script}: {error}");
        }
    }

    #[test]
    fn table_arguments_of_window_functions_parse() {
        let statements = parse_script(
            "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
        )
        .unwrap();
        let Statement::Query { query, .. } = &statements[0] else {
            panic!()
        };
        assert!(
            query.to_string().contains("TUMBLE(__table__.bid"),
            "{query}"
        );
    }
}
