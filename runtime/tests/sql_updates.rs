//! Updating SQL (GROUP BY without a window, SELECT DISTINCT): the changelog a
//! job prints, applied, equals DataFusion's batch result of the same query over
//! the same bounded input, at several parallelisms and across savepoints and
//! restores at other parallelisms.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use common::{local_config, run_read_then_stop, run_then_stop};
use datafusion::prelude::SessionContext;
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};
use strom_runtime::pipelines::mix;
use strom_runtime::sql::job::format_rows;

const BIDS: u64 = 3000;

/// Bids in two JSON-lines files.
fn write_bids(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut all = Vec::new();
    for file in 0..2u64 {
        let lines: Vec<String> = (0..BIDS / 2)
            .map(|n| {
                let random = mix(5, file, n);
                format!(
                    r#"{{"auction": {}, "bidder": {}, "price": {}}}"#,
                    random % 23,
                    (random >> 8) % 7,
                    (random >> 16) % 1000
                )
            })
            .collect();
        std::fs::write(
            dir.join(format!("bids-{file}.json")),
            lines.join("\n") + "\n",
        )
        .unwrap();
        all.extend(lines);
    }
    all
}

fn ddl(dir: &Path) -> String {
    format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        dir.display()
    )
}

/// Applies printed changelog rows (`+I[k, ...]`, `-U[...]`, `+U[...]`, `-D[...]`)
/// to a table of rows, checking that each retraction retracts a row there.
fn apply(changelog: &[String]) -> Vec<String> {
    let mut table: BTreeMap<String, usize> = BTreeMap::new();
    for line in changelog {
        let (kind, row) = line.split_at(2);
        let row = row.to_owned();
        match kind {
            "+I" | "+U" => *table.entry(row).or_default() += 1,
            "-U" | "-D" => {
                let count = table
                    .get_mut(&row)
                    .unwrap_or_else(|| panic!("{line} retracts a row never inserted"));
                *count -= 1;
                if *count == 0 {
                    table.remove(&row);
                }
            }
            other => panic!("unknown row kind {other} in {line}"),
        }
    }
    table
        .into_iter()
        .flat_map(|(row, count)| std::iter::repeat_n(row, count))
        .collect()
}

/// The rows of `query` run by DataFusion over the bids, as `[v1, v2]`, sorted.
fn batch_reference(lines: &[String], query: &str) -> Vec<String> {
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
    ]));
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(100_000)
        .build_decoder()
        .unwrap();
    decoder.decode(lines.join("\n").as_bytes()).unwrap();
    let bids = decoder.flush().unwrap().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = runtime.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_batch("bid", bids).unwrap();
        ctx.sql(query).await.unwrap().collect().await.unwrap()
    });
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|batch| format_rows(batch, ""))
        .collect();
    rows.sort();
    rows
}

/// Runs `script` at `parallelism`; its printed lines.
fn printed(state: &Path, script: &str, parallelism: u32) -> Vec<String> {
    let job = strom_runtime::sql::compile(script).unwrap_or_else(|error| panic!("{error}"));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let config = local_config(
        state,
        &format!("updates-{parallelism}"),
        parallelism,
        Duration::from_millis(100),
        2,
        RestoreFrom::Nothing,
    );
    run_job(
        config,
        job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line))),
        Arc::new(JobControl::default()),
    )
    .unwrap();
    lines.lock().unwrap().clone()
}

fn check(query: &str, expect_updates: bool) {
    let dir = tempfile::tempdir().unwrap();
    let lines = write_bids(&dir.path().join("bids"));
    let expected = batch_reference(&lines, query);
    assert!(!expected.is_empty());
    let script = format!("{}\n{query};", ddl(&dir.path().join("bids")));
    for parallelism in [1, 3] {
        let state = dir.path().join(format!("state-{parallelism}"));
        let changelog = printed(&state, &script, parallelism);
        let updates = changelog.iter().any(|line| !line.starts_with("+I"));
        assert_eq!(updates, expect_updates, "{query}: {changelog:?}");
        let mut table = apply(&changelog);
        table.sort();
        assert_eq!(table, expected, "{query} at parallelism {parallelism}");
    }
}

#[test]
fn an_updating_aggregate_applied_equals_the_batch_result() {
    check(
        "SELECT auction, COUNT(*), SUM(price), MIN(price), MAX(price), AVG(CAST(price AS DOUBLE)),
                COUNT(*) FILTER (WHERE price > 500), COUNT(DISTINCT bidder)
         FROM bid WHERE price % 10 <> 3 GROUP BY auction",
        true,
    );
}

#[test]
fn a_global_aggregate_and_a_having_clause_update_as_rows_come() {
    check("SELECT COUNT(*), SUM(price) FROM bid", true);
    check(
        "SELECT bidder, auction % 3 AS a, MAX(price) FROM bid GROUP BY bidder, auction % 3",
        true,
    );
}

#[test]
fn select_distinct_inserts_each_row_once() {
    check("SELECT DISTINCT bidder, auction % 4 FROM bid", false);
}

/// An updating count over 45,000 generated rows, stopped with a savepoint at
/// parallelism 2, restored at 4, stopped again, restored at 1: the changelog of
/// the three runs, applied, holds each auction's count of rows.
#[test]
fn updating_state_survives_restores_at_2_then_4_then_1() {
    const ROWS: u64 = 45_000;
    let script = format!(
        "CREATE TABLE bid (id BIGINT, auction AS id % 29)
           WITH ('connector' = 'datagen', 'rows-per-second' = '9000',
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                 'fields.id.end' = '{}');
         SELECT auction, COUNT(*), MAX(id) >= 0 FROM bid GROUP BY auction;",
        ROWS - 1
    );
    let state = tempfile::tempdir().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let pipeline = || {
        let sink = Arc::clone(&lines);
        strom_runtime::sql::compile(&script)
            .unwrap_or_else(|error| panic!("{error}"))
            .pipeline(Arc::new(move |line| sink.lock().unwrap().push(line)))
    };
    let config = |parallelism, restore| {
        local_config(
            state.path(),
            "updates-rescale",
            parallelism,
            Duration::from_millis(200),
            2,
            restore,
        )
    };
    let first = run_read_then_stop(config(2, RestoreFrom::Nothing), pipeline());
    let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    let second = run_read_then_stop(config(4, RestoreFrom::Snapshot(savepoint)), pipeline());
    let savepoint = second.snapshots.savepoints.last().unwrap().location.clone();
    let third = run_job(
        config(1, RestoreFrom::Snapshot(savepoint)),
        pipeline(),
        Arc::default(),
    )
    .unwrap();
    assert!(first.records_in > 0 && second.records_in > 0 && third.records_in > 0);
    assert_eq!(
        first.records_in + second.records_in + third.records_in,
        ROWS
    );
    let mut table = apply(&lines.lock().unwrap());
    table.sort();
    let mut expected: Vec<String> = (0..29)
        .map(|auction| {
            let count = (0..ROWS).filter(|id| id % 29 == auction).count();
            format!("[{auction}, {count}, true]")
        })
        .collect();
    expected.sort();
    assert_eq!(table, expected);
}

/// A savepoint restored into a query whose aggregate differs (MIN where COUNT
/// was) fails, naming the two, instead of reading a count as a minimum.
#[test]
fn a_savepoint_restored_into_another_aggregate_fails_naming_both() {
    let script = |aggregate: &str| {
        format!(
            "CREATE TABLE bid (id BIGINT, auction AS id % 7)
               WITH ('connector' = 'datagen', 'rows-per-second' = '5000',
                     'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                     'fields.id.end' = '20000');
             SELECT auction, {aggregate} FROM bid GROUP BY auction;"
        )
    };
    let pipeline = |aggregate: &str| {
        strom_runtime::sql::compile(&script(aggregate))
            .unwrap_or_else(|error| panic!("{error}"))
            .pipeline(Arc::new(|_| {}))
    };
    let state = tempfile::tempdir().unwrap();
    let config = |restore| {
        local_config(
            state.path(),
            "updates-changed",
            2,
            Duration::from_millis(100),
            2,
            restore,
        )
    };
    let first = run_then_stop(config(RestoreFrom::Nothing), pipeline("COUNT(*)"));
    let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    let error = run_job(
        config(RestoreFrom::Snapshot(savepoint)),
        pipeline("MIN(id)"),
        Arc::default(),
    )
    .expect_err("a COUNT's state was restored into a MIN")
    .to_string();
    assert!(
        error.contains("the restored state does not fit this query")
            && error.contains("count(")
            && error.contains("min("),
        "{error}"
    );
}

/// A query changed so that its aggregate is gone: the savepoint's state of that
/// aggregate is claimed by no operator, so the restore fails naming it, unless
/// the job allows dropping it (`spec.allowNonRestoredState`).
#[test]
fn a_restore_that_would_drop_an_operators_state_fails_unless_allowed() {
    let ddl = "CREATE TABLE bid (id BIGINT, auction AS id % 7)
               WITH ('connector' = 'datagen', 'rows-per-second' = '5000',
                     'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                     'fields.id.end' = '20000');";
    let pipeline = |query: &str| {
        strom_runtime::sql::compile(&format!("{ddl}\n{query}"))
            .unwrap_or_else(|error| panic!("{error}"))
            .pipeline(Arc::new(|_| {}))
    };
    let state = tempfile::tempdir().unwrap();
    let config = |restore, allow| {
        let mut config = local_config(
            state.path(),
            "updates-dropped",
            2,
            Duration::from_millis(100),
            2,
            restore,
        );
        config.settings.allow_non_restored_state = allow;
        config
    };
    let counts = "SELECT auction, COUNT(*) FROM bid GROUP BY auction;";
    let first = run_then_stop(config(RestoreFrom::Nothing, false), pipeline(counts));
    let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    let filtered = "SELECT auction FROM bid WHERE auction = 3;";
    let error = run_job(
        config(RestoreFrom::Snapshot(savepoint.clone()), false),
        pipeline(filtered),
        Arc::default(),
    )
    .expect_err("the aggregate's state was dropped silently")
    .to_string();
    assert!(
        error.contains("state of operators this job does not have: group-aggregate-1")
            && error.contains("allowNonRestoredState"),
        "{error}"
    );
    // Allowed: the job restores its source and goes on.
    let report = run_job(
        config(RestoreFrom::Snapshot(savepoint), true),
        pipeline(filtered),
        Arc::default(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        first.records_in + report.records_in,
        20_001,
        "the restored source goes on where the savepoint left it"
    );
}

/// `table.exec.state.ttl`: a count over rows generated over 2 s, with a TTL
/// shorter than the time between the generator's batches, starts again from
/// nothing (a new `+I`) after idle gaps; without one it inserts once and then
/// updates.
#[test]
fn an_idle_state_ttl_drops_state_so_counts_start_again() {
    let run = |ttl: &str| {
        let state = tempfile::tempdir().unwrap();
        let script = format!(
            "{ttl}
             CREATE TABLE bid (id BIGINT)
               WITH ('connector' = 'datagen', 'rows-per-second' = '100',
                     'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                     'fields.id.end' = '199');
             SELECT COUNT(*) FROM bid;"
        );
        printed(state.path(), &script, 1)
    };
    let inserts = |lines: &[String]| lines.iter().filter(|line| line.starts_with("+I")).count();
    let kept = run("");
    assert_eq!(inserts(&kept), 1, "{kept:?}");
    assert_eq!(apply(&kept), ["[200]"]);
    let dropped = run("SET 'table.exec.state.ttl' = '1 ms';");
    assert!(inserts(&dropped) > 1, "{dropped:?}");
    assert_ne!(apply(&dropped), ["[200]"], "{dropped:?}");
}
