//! Streaming SQL: Flink SQL text planned by DataFusion and run on Arrow batches.
//!
//! A script goes through:
//! - [`script`]: statements in Flink's syntax (DDL with `WITH` options,
//!   watermarks, computed columns; views; INSERTs; SET), parsed with sqlparser
//!   and the [`dialect`];
//! - [`catalog`]: tables and views, and DataFusion's SQL planner over them, with
//!   the window table functions of [`window_tvf`];
//! - [`lower`]: logical plans lowered to streaming operators (sources, calcs,
//!   window aggregates, sinks), sources shared between INSERTs;
//! - [`job`]: the operators built on each worker with the DataStream API:
//!   [`batch::SqlBatch`]es between them, [`window_aggregate`] keyed by key group
//!   with its slices in memory and in RocksDB at checkpoints.

pub mod accumulators;
pub mod avro_rows;
pub mod batch;
pub mod calc;
pub mod catalog;
pub mod changelog_normalize;
pub mod connectors;
pub mod dialect;
pub mod error;
pub mod flink_syntax;
pub mod functions;
pub mod group_aggregate;
pub mod group_windows;
pub mod job;
pub mod kafka_table;
pub mod lower;
pub mod narrow;
pub mod nexmark;
pub mod physical;
pub mod script;
pub mod session_aggregate;
pub mod settings;
pub mod sources;
pub mod state_shape;
pub mod types;
pub mod window_aggregate;
pub mod window_tvf;

pub use error::{Position, SqlError, SqlResult};
pub use job::SqlJob;

/// Parses, plans and lowers a script: every error a script can have short of its
/// data (unknown tables, bad options, unsupported SQL) comes out here, before
/// anything runs.
pub fn compile(script: &str) -> SqlResult<SqlJob> {
    let statements = script::parse_script(script)?;
    let (catalog, jobs) = catalog::Catalog::build(statements)?;
    let plan = lower::lower(&catalog, &jobs)?;
    SqlJob::new(&catalog, plan)
}

/// Compiles a StreamJob's `spec.sql` and checks it against the rest of the spec:
/// every `'cluster'` its Kafka tables name must be one of `spec.kafkaClusters`.
/// What `strom validate` and the operator (condition `SpecValid`) check before
/// anything is deployed; `Ok(None)` for a job without SQL.
pub fn compile_spec(spec: &strom_crds::StreamJobSpec) -> SqlResult<Option<SqlJob>> {
    let Some(sql) = &spec.sql else {
        return Ok(None);
    };
    let compiled = compile(sql)?;
    let known: Vec<&str> = spec
        .kafka_clusters
        .iter()
        .map(|cluster| cluster.name.as_str())
        .collect();
    if let Some(unknown) = compiled
        .kafka_clusters()
        .into_iter()
        .find(|name| !known.contains(&name.as_str()))
    {
        let has = if known.is_empty() {
            "it names none".to_owned()
        } else {
            format!("it has: {}", known.join(", "))
        };
        return Err(SqlError::new(
            format!(
                "a kafka table names 'cluster' = '{unknown}', which is not in spec.kafkaClusters ({has})"
            ),
            None,
        ));
    }
    Ok(Some(compiled))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BID: &str = "CREATE TABLE bid (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
        WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
        WITH ('connector' = 'datagen', 'number-of-rows' = '10');
        CREATE TABLE out (a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');
        CREATE TABLE files (a BIGINT, b BIGINT) WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'csv');\n";

    #[test]
    fn a_nullable_query_column_into_a_not_null_one_is_checked_by_a_calc() {
        let script = "CREATE TABLE bid (auction BIGINT, price BIGINT)
            WITH ('connector' = 'datagen', 'number-of-rows' = '10');
            CREATE TABLE out (auction BIGINT, price BIGINT NOT NULL) WITH ('connector' = 'blackhole');
            INSERT INTO out SELECT auction, price FROM bid;";
        let plan = compile(script).unwrap().plan.to_string();
        assert!(
            plan.contains("#2 Calc <- #1 select [auction, price]\n#3 Sink"),
            "{plan}"
        );
    }

    #[test]
    fn unsupported_sql_fails_before_anything_runs_naming_what_and_where() {
        let cases = [
            (
                "INSERT INTO out SELECT auction, price FROM nope;",
                "line 6, column 44: no table or view named nope",
            ),
            (
                "INSERT INTO out SELECT auction FROM bid;",
                "line 6, column 1: INSERT INTO out: the query has 1 columns, the table 2 (a, b)",
            ),
            (
                "INSERT INTO files SELECT auction, COUNT(*) FROM bid GROUP BY auction;",
                "table files (connector 'filesystem') is append-only and cannot take the updates produced by GroupAggregate group-aggregate-1 (GROUP BY bid.auction without a window)",
            ),
            (
                "INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY auction, window_start;",
                "must group by both window_start and window_end",
            ),
            (
                "INSERT INTO out SELECT a.auction, b.price FROM bid a JOIN bid b ON a.auction = b.auction;",
                "joins are not supported yet",
            ),
            (
                "INSERT INTO out SELECT auction, price FROM bid ORDER BY price;",
                "ORDER BY is not supported on a stream",
            ),
            (
                "INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end;",
                "a HOP's size a multiple of its slide",
            ),
            (
                "INSERT INTO out SELECT auction, nosuch FROM bid;",
                "line 6, column 33: ",
            ),
        ];
        for (insert, expected) in cases {
            let script = format!("{BID}{insert}");
            let error = compile(&script)
                .err()
                .unwrap_or_else(|| panic!("{insert} compiled"));
            assert!(error.to_string().contains(expected), "{insert}: {error}");
        }
    }

    /// Every aggregate's accumulator is made once while planning: one DataFusion
    /// cannot build (a `STRING_AGG` delimiter that is not a literal) is a planning
    /// error, not a panic of the running job.
    #[test]
    fn aggregates_without_an_accumulator_fail_when_planned() {
        for query in [
            "SELECT auction, STRING_AGG(CAST(price AS STRING), CAST(auction AS STRING)) FROM bid GROUP BY auction;",
            "SELECT window_start, STRING_AGG(CAST(price AS STRING), CAST(auction AS STRING)) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;",
        ] {
            let error = compile(&format!("{BID}{query}"))
                .err()
                .unwrap_or_else(|| panic!("{query} compiled"));
            let text = error.to_string();
            assert!(
                text.contains("line 6, column 1: ")
                    && text.contains("string_agg delimiter must be a string literal"),
                "{query}: {text}"
            );
        }
    }

    /// Flink's `COUNT(DISTINCT a, b)` (distinct pairs without a NULL) plans, in a
    /// window and without one.
    #[test]
    fn count_distinct_of_several_arguments_plans() {
        for query in [
            "SELECT auction, COUNT(DISTINCT price, ts) FROM bid GROUP BY auction;",
            "SELECT window_start, COUNT(DISTINCT auction, price) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;",
        ] {
            let job = compile(&format!("{BID}{query}")).unwrap();
            let plan = job.plan.to_string();
            assert!(plan.contains("count(DISTINCT"), "{query}: {plan}");
        }
    }

    /// `IN (SELECT ...)`, `EXISTS` and scalar subqueries are refused where the
    /// statement is, naming what is not supported.
    #[test]
    fn subqueries_in_expressions_are_refused_when_planned() {
        for query in [
            "SELECT auction FROM bid WHERE auction IN (SELECT auction FROM bid WHERE price > 10);",
            "SELECT auction FROM bid WHERE EXISTS (SELECT 1 FROM bid b WHERE b.price > 10);",
            "SELECT auction, (SELECT MAX(price) FROM bid) FROM bid;",
        ] {
            let error = compile(&format!("{BID}{query}"))
                .err()
                .unwrap_or_else(|| panic!("{query} compiled"));
            let text = error.to_string();
            assert!(
                text.contains(
                    "line 6, column 1: subqueries in expressions (IN / EXISTS / scalar subqueries) are not supported yet"
                ),
                "{query}: {text}"
            );
        }
    }

    /// A nested type closed by `>>` ends where it should: the columns after it
    /// stay columns of the table.
    #[test]
    fn columns_after_a_nested_type_closed_by_a_double_bracket_stay_columns() {
        for nested in [
            "ROW<a ROW<b INT>>",
            "ROW<x ARRAY<INT>>",
            "ARRAY<ARRAY<INT>>",
        ] {
            let script = format!(
                "CREATE TABLE t (id BIGINT, r {nested}, amount INT, PRIMARY KEY (id) NOT ENFORCED)
                 WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json');
                 CREATE TABLE out (id BIGINT, amount INT) WITH ('connector' = 'blackhole');
                 INSERT INTO out SELECT id, amount FROM t;"
            );
            compile(&script).unwrap_or_else(|error| panic!("{nested}: {error}"));
        }
    }

    #[test]
    fn literals_with_an_exponent_are_doubles_and_repeated_field_names_stay_distinct() {
        let job = compile(
            "CREATE TABLE p (a ROW<zip STRING>, b ROW<zip STRING>, x BIGINT)
               WITH ('connector' = 'datagen', 'number-of-rows' = '10');
             SELECT a.zip, b.zip, x / 1e30, 1.5e300, x * 0.5 FROM p;",
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let sink = job.plan.nodes.len() - 1;
        let schema = job.plan.schema(sink);
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|field| field.data_type().to_string())
            .collect();
        assert_eq!(types[2..4], ["Float64", "Float64"], "{schema:?}");
        assert!(types[4].starts_with("Decimal128"), "{schema:?}");
    }

    #[test]
    fn averages_have_flinks_types() {
        let job = compile(
            "CREATE TABLE o (amount DECIMAL(10, 2), big DECIMAL(20, 9), n INT)
               WITH ('connector' = 'datagen', 'number-of-rows' = '10');
             SELECT AVG(amount), AVG(big), AVG(n), AVG(DISTINCT amount),
               AVG(amount) FILTER (WHERE n > 1) FROM o;",
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let sink = job.plan.nodes.len() - 1;
        let schema = job.plan.schema(sink);
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|field| field.data_type().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "Decimal128(38, 6)",
                "Decimal128(38, 9)",
                "Int32",
                "Decimal128(38, 6)",
                "Decimal128(38, 6)"
            ],
            "{schema:?}"
        );
    }

    #[test]
    fn a_script_without_an_insert_or_query_has_nothing_to_run() {
        let error = compile(BID).err().expect("a script of tables compiled");
        assert!(
            error
                .to_string()
                .contains("the script has no INSERT INTO or query: nothing to run"),
            "{error}"
        );
    }

    #[test]
    fn an_upsert_tables_primary_key_must_be_the_key_of_the_updates() {
        let script = |pk: &str, query: &str| {
            format!(
                "CREATE TABLE src (k STRING, x BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
                 CREATE TABLE up (k STRING, n BIGINT, PRIMARY KEY ({pk}) NOT ENFORCED)
                   WITH ('connector' = 'upsert-kafka', 'cluster' = 'c', 'topic' = 't',
                         'key.format' = 'json', 'value.format' = 'json');
                 INSERT INTO up {query};"
            )
        };
        compile(&script("k", "SELECT k, COUNT(*) FROM src GROUP BY k"))
            .unwrap_or_else(|error| panic!("{error}"));
        compile(&script(
            "k",
            "SELECT k, n FROM (SELECT k, MAX(x) AS n FROM src GROUP BY k) WHERE n > 1",
        ))
        .unwrap_or_else(|error| panic!("{error}"));
        for (pk, query, expected) in [
            (
                "n",
                "SELECT k, COUNT(*) FROM src GROUP BY k",
                "its PRIMARY KEY (n) is not the key of the updates",
            ),
            (
                "k",
                "SELECT UPPER(k), COUNT(*) FROM src GROUP BY k",
                "not among the columns written",
            ),
            (
                "k",
                "SELECT k, COUNT(*) FROM src GROUP BY k, x",
                "is not the key of the updates",
            ),
        ] {
            let error = compile(&script(pk, query))
                .err()
                .unwrap_or_else(|| panic!("{query} into PRIMARY KEY ({pk}) compiled"));
            assert!(error.to_string().contains(expected), "{query}: {error}");
        }
    }

    #[test]
    fn kafka_sinks_refuse_what_they_cannot_write() {
        let table = |name: &str, columns: &str, options: &str| {
            format!(
                "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'cluster' = 'a', 'format' = 'json'{options});\n"
            )
        };
        let source = table(
            "src",
            "a BIGINT, b STRING",
            ", 'topic' = 'in', 'scan.startup.mode' = 'earliest-offset'",
        );
        let ok = format!(
            "{source}{}INSERT INTO out SELECT a, b FROM src;",
            table(
                "out",
                "a BIGINT, b STRING, o BIGINT METADATA FROM 'offset' VIRTUAL",
                ", 'topic' = 'out'"
            )
        );
        compile(&ok).unwrap_or_else(|error| panic!("{error}"));
        let cases = [
            (
                table(
                    "out",
                    "a BIGINT, b STRING, ts TIMESTAMP(3) METADATA FROM 'timestamp'",
                    ", 'topic' = 'out'",
                ),
                "INSERT INTO out SELECT a, b, CAST(NULL AS TIMESTAMP(3)) FROM src;",
                "its column ts (METADATA FROM 'timestamp') cannot be written yet; declare it VIRTUAL",
            ),
            (
                table("out", "a BIGINT, b STRING", ", 'topic' = 'x;y'"),
                "INSERT INTO out SELECT a, b FROM src;",
                "its 'topic' must name one topic, not x;y",
            ),
            (
                format!(
                    "{}{}",
                    table(
                        "out",
                        "a BIGINT, b STRING",
                        ", 'topic' = 'o1', 'sink.transactional-id-prefix' = 'p'"
                    ),
                    table(
                        "out2",
                        "a BIGINT, b STRING",
                        ", 'topic' = 'o2', 'sink.transactional-id-prefix' = 'p'"
                    )
                ),
                "INSERT INTO out SELECT a, b FROM src; INSERT INTO out2 SELECT a, b FROM src;",
                "are written with the same 'sink.transactional-id-prefix' = 'p'",
            ),
            (
                table(
                    "out",
                    "a BIGINT, b ARRAY<STRING>",
                    ", 'topic' = 'out', 'format' = 'csv'",
                )
                .replace("'format' = 'json', ", ""),
                "INSERT INTO out SELECT a, ARRAY[b] FROM src;",
                "column b is List",
            ),
            (
                table(
                    "out",
                    "a BIGINT, b STRING",
                    ", 'topic' = 'out', 'properties.metadata.broker.list' = 'evil:9092'",
                ),
                "INSERT INTO out SELECT a, b FROM src;",
                "'properties.metadata.broker.list'",
            ),
            (
                table(
                    "out",
                    "a BIGINT, b STRING",
                    ", 'topic' = 'out', 'properties.enable.ssl.certificate.verification' = 'false'",
                ),
                "INSERT INTO out SELECT a, b FROM src;",
                "no connection or security setting",
            ),
        ];
        for (sink, insert, expected) in cases {
            let script = format!("{source}{sink}{insert}");
            let error = compile(&script)
                .err()
                .unwrap_or_else(|| panic!("{sink} compiled"));
            assert!(error.to_string().contains(expected), "{sink}: {error}");
        }
    }

    #[test]
    fn a_window_query_lowers_to_a_keyed_window_aggregate() {
        let job = compile(&format!(
            "{BID}INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end;"
        ))
        .unwrap();
        let explained = job.plan.to_string();
        assert!(
            explained.contains("Source bid [auction, price, ts]"),
            "{explained}"
        );
        assert!(
            explained.contains("exchange by key [bid.auction] window TUMBLE(size 1000 ms)"),
            "{explained}"
        );
        assert!(explained.contains("Sink sink-out into out"), "{explained}");
    }
}
