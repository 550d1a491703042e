//! Window table functions in streaming SQL give what DataFusion's batch
//! execution gives for the equivalent batch query over the same bounded input.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use common::local_config;
use datafusion::prelude::SessionContext;
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};
use strom_runtime::pipelines::mix;
use strom_runtime::sql::job::format_rows;

const FILES: u64 = 3;
const BIDS_PER_FILE: u64 = 1500;

/// Writes the bids: three files read as three splits, each in event-time order
/// but for a jitter of up to 2 s (the watermark allows 3 s).
fn write_bids(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut all = Vec::new();
    for file in 0..FILES {
        let mut lines = Vec::new();
        for n in 0..BIDS_PER_FILE {
            let random = mix(11, file, n);
            let auction = random % 17;
            let price = (random >> 8) % 1000;
            // Milliseconds into the day (a minute and a bit).
            let millis = n * 40 + file * 7 + (random >> 20) % 2000;
            let ts = format!(
                "2023-11-14T00:{:02}:{:02}.{:03}",
                millis / 60_000,
                millis / 1000 % 60,
                millis % 1000
            );
            lines.push(format!(
                r#"{{"auction": {auction}, "price": {price}, "ts": "{ts}"}}"#
            ));
        }
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
        "CREATE TABLE bid (
           auction BIGINT,
           price BIGINT,
           ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '3' SECOND
         ) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        dir.display()
    )
}

/// Runs `query` as a streaming job at `parallelism` and returns its printed rows,
/// sorted.
fn stream(state: &Path, script: &str, parallelism: u32) -> Vec<String> {
    let job = strom_runtime::sql::compile(script).unwrap_or_else(|error| panic!("{error}"));
    let rows = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&rows);
    let pipeline = job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line)));
    let config = local_config(
        state,
        &format!("sql-{parallelism}"),
        parallelism,
        Duration::from_millis(200),
        2,
        RestoreFrom::Nothing,
    );
    let report = run_job(config, pipeline, Arc::new(JobControl::default())).unwrap();
    assert!(
        report.snapshots.failure.is_none(),
        "{:?}",
        report.snapshots.failure
    );
    let mut rows = rows.lock().unwrap().clone();
    rows.sort();
    rows
}

/// The rows of `query` run by DataFusion over the same bids, as the print sink
/// shows them, sorted.
fn batch_reference(lines: &[String], query: &str) -> Vec<String> {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
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
        .flat_map(|batch| format_rows(batch, "+I"))
        .collect();
    rows.sort();
    rows
}

/// `date_bin` of `ts` by `size` (a DataFusion interval text), from the epoch.
fn bin(size: &str) -> String {
    format!("date_bin(INTERVAL '{size}', ts, TIMESTAMP '1970-01-01T00:00:00')")
}

fn check(name: &str, streaming: &str, reference: &str) {
    let dir = tempfile::tempdir().unwrap();
    let lines = write_bids(&dir.path().join("bids"));
    let script = format!("{}\n{streaming}", ddl(&dir.path().join("bids")));
    let expected = batch_reference(&lines, reference);
    assert!(
        expected.len() > 50,
        "{name}: too few windows to tell: {}",
        expected.len()
    );
    for parallelism in [1, 2] {
        let state = dir.path().join(format!("state-{parallelism}"));
        let actual = stream(&state, &script, parallelism);
        if actual != expected {
            let missing: Vec<_> = expected
                .iter()
                .filter(|row| !actual.contains(row))
                .take(5)
                .collect();
            let extra: Vec<_> = actual
                .iter()
                .filter(|row| !expected.contains(row))
                .take(5)
                .collect();
            panic!(
                "{name} at parallelism {parallelism}: {} rows, expected {}; missing {missing:?}; extra {extra:?}",
                actual.len(),
                expected.len()
            );
        }
    }
}

#[test]
fn tumble_aggregates_equal_the_batch_result() {
    // AVG of a BIGINT is a BIGINT in Flink (DataFusion's batch AVG is a DOUBLE).
    check(
        "TUMBLE",
        "SELECT auction, window_start, window_end, COUNT(*), SUM(price), MIN(price), MAX(price),
                AVG(price), COUNT(*) FILTER (WHERE price > 500), COUNT(DISTINCT price % 7)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         WHERE price % 10 <> 3
         GROUP BY auction, window_start, window_end
         HAVING COUNT(*) > 1;",
        &format!(
            "SELECT auction, {b} AS window_start, {b} + INTERVAL '10 seconds' AS window_end,
                    COUNT(*), SUM(price), MIN(price), MAX(price), CAST(AVG(price) AS BIGINT),
                    COUNT(*) FILTER (WHERE price > 500), COUNT(DISTINCT price % 7)
             FROM bid WHERE price % 10 <> 3
             GROUP BY auction, {b} HAVING COUNT(*) > 1",
            b = bin("10 seconds")
        ),
    );
}

#[test]
fn hop_aggregates_equal_the_batch_result() {
    // A hop of 2 s over 10 s: each bid is in the 5 windows starting at its 2 s bin
    // and the four before it.
    let expanded = (0..5)
        .map(|k| {
            format!(
                "SELECT auction, price, {} - INTERVAL '{} seconds' AS ws FROM bid",
                bin("2 seconds"),
                2 * k
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    check(
        "HOP",
        "SELECT window_start, window_end, auction, COUNT(*) AS bids, SUM(price)
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction;",
        &format!(
            "SELECT ws AS window_start, ws + INTERVAL '10 seconds' AS window_end, auction,
                    COUNT(*) AS bids, SUM(price)
             FROM ({expanded}) GROUP BY ws, auction"
        ),
    );
}

#[test]
fn cumulate_aggregates_equal_the_batch_result() {
    // A cumulating window of step 2 s and size 10 s: a bid is in every window of
    // its 10 s period that ends after it.
    let expanded = (1..=5)
        .map(|j| {
            format!(
                "SELECT auction, price, {b} AS ws, {b} + INTERVAL '{s} seconds' AS we FROM bid
                 WHERE ts < {b} + INTERVAL '{s} seconds'",
                b = bin("10 seconds"),
                s = 2 * j
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    check(
        "CUMULATE",
        "SELECT auction, window_start, window_end, COUNT(*), MAX(price)
         FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end;",
        &format!(
            "SELECT auction, ws AS window_start, we AS window_end, COUNT(*), MAX(price)
             FROM ({expanded}) GROUP BY auction, ws, we"
        ),
    );
}

/// Rows of the rescale test: `id` 0..ROWS, 7 ms of event time apart.
const ROWS: u64 = 60_000;
const AUCTIONS: u64 = 13;

/// The window counts of the rescale test's job, computed here: per auction and
/// 10 s window, the count and price sum of its rows.
fn expected_window_counts() -> Vec<String> {
    use arrow::array::TimestampMillisecondArray;
    use arrow::util::display::array_value_to_string;
    let mut windows: std::collections::BTreeMap<(u64, u64), (u64, u64)> = Default::default();
    for id in 0..ROWS {
        let end = (id * 7 / 10_000 + 1) * 10_000;
        let entry = windows.entry((id % AUCTIONS, end)).or_default();
        entry.0 += 1;
        entry.1 += id * 31 % 1000;
    }
    let mut rows: Vec<String> = windows
        .into_iter()
        .map(|((auction, end), (count, sum))| {
            let end = TimestampMillisecondArray::from(vec![end as i64]);
            let end = array_value_to_string(&end, 0).unwrap();
            format!("+I[{auction}, {end}, {count}, {sum}]")
        })
        .collect();
    rows.sort();
    rows
}

/// A job whose windows are open across every savepoint: 60,000 generated rows at
/// 12,000 rows/s, counted per auction in 10 s windows of event time.
fn rescale_script() -> String {
    format!(
        "CREATE TABLE bid (
           id BIGINT,
           auction AS id % {AUCTIONS},
           price AS id * 31 % 1000,
           ts AS to_timestamp_millis(id * 7),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
         ) WITH ('connector' = 'datagen', 'rows-per-second' = '12000',
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                 'fields.id.end' = '{}');
         SELECT auction, window_end, COUNT(*), SUM(price)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end;",
        ROWS - 1
    )
}

/// Window state (open slices and their accumulators) survives savepoints and
/// restores at other parallelisms: 2, then 4, then 1 give each window's count
/// exactly once and equal to the count of its rows.
#[test]
fn window_state_survives_restores_at_2_then_4_then_1() {
    use common::run_read_then_stop;
    let state = tempfile::tempdir().unwrap();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&rows);
    let pipeline = || {
        let sink = Arc::clone(&sink);
        let job = strom_runtime::sql::compile(&rescale_script()).unwrap_or_else(|e| panic!("{e}"));
        job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line)))
    };
    let config = |parallelism, restore| {
        local_config(
            state.path(),
            "sql-rescale",
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
        Arc::new(JobControl::default()),
    )
    .unwrap();
    assert!(
        first.records_in > 0 && second.records_in > 0 && third.records_in > 0,
        "every run reads: {} {} {}",
        first.records_in,
        second.records_in,
        third.records_in
    );
    assert_eq!(
        first.records_in + second.records_in + third.records_in,
        ROWS
    );
    let mut rows = rows.lock().unwrap().clone();
    rows.sort();
    let expected = expected_window_counts();
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !rows.contains(r))
        .take(5)
        .collect();
    let extra: Vec<_> = rows
        .iter()
        .filter(|r| !expected.contains(r))
        .take(5)
        .collect();
    assert_eq!(
        rows.len(),
        expected.len(),
        "missing {missing:?}; extra {extra:?}"
    );
    assert_eq!(rows, expected, "missing {missing:?}; extra {extra:?}");
}

/// Per auction, the sessions of its bids with a gap of `gap_ms` (bids whose
/// `[t, t + gap)` touch or overlap are one session, as Flink merges them): the
/// rows `+I[auction, window_start, window_end, count, sum]`, sorted.
fn sessions_reference(lines: &[String], gap_ms: i64) -> Vec<String> {
    use arrow::array::TimestampMillisecondArray;
    use arrow::util::display::array_value_to_string;
    let mut bids: std::collections::BTreeMap<i64, Vec<(i64, i64)>> = Default::default();
    for line in lines {
        let bid: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = bid["ts"].as_str().unwrap();
        let time = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.3f")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        bids.entry(bid["auction"].as_i64().unwrap())
            .or_default()
            .push((time, bid["price"].as_i64().unwrap()));
    }
    let show = |millis: i64| {
        array_value_to_string(&TimestampMillisecondArray::from(vec![millis]), 0).unwrap()
    };
    let mut rows = Vec::new();
    for (auction, mut times) in bids {
        times.sort();
        let mut session: Option<(i64, i64, u64, i64)> = None; // start, end, count, sum
        for (time, price) in times {
            session = Some(match session {
                Some((start, end, count, sum)) if time <= end => {
                    (start, end.max(time + gap_ms), count + 1, sum + price)
                }
                other => {
                    if let Some((start, end, count, sum)) = other {
                        rows.push(format!(
                            "+I[{auction}, {}, {}, {count}, {sum}]",
                            show(start),
                            show(end)
                        ));
                    }
                    (time, time + gap_ms, 1, price)
                }
            });
        }
        if let Some((start, end, count, sum)) = session {
            rows.push(format!(
                "+I[{auction}, {}, {}, {count}, {sum}]",
                show(start),
                show(end)
            ));
        }
    }
    rows.sort();
    rows
}

#[test]
fn session_aggregates_equal_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let lines = write_bids(&dir.path().join("bids"));
    let expected = sessions_reference(&lines, 300);
    assert!(
        expected.len() > 200,
        "too few sessions to tell: {}",
        expected.len()
    );
    let script = format!(
        "{}\nSELECT auction, window_start, window_end, COUNT(*), SUM(price)
         FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(ts), INTERVAL '0.3' SECOND))
         GROUP BY auction, window_start, window_end;",
        ddl(&dir.path().join("bids"))
    );
    for parallelism in [1, 2] {
        let state = dir.path().join(format!("state-{parallelism}"));
        let actual = stream(&state, &script, parallelism);
        let missing: Vec<_> = expected
            .iter()
            .filter(|r| !actual.contains(r))
            .take(5)
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|r| !expected.contains(r))
            .take(5)
            .collect();
        assert_eq!(
            actual, expected,
            "SESSION at parallelism {parallelism}: missing {missing:?}; extra {extra:?}"
        );
    }
}

/// Sessions open across every savepoint: each auction's rows come 91 ms apart
/// (13 auctions, a row every 7 ms), so with a gap of 100 ms each auction is one
/// session spanning the three runs at parallelism 2, 4 and 1.
#[test]
fn sessions_survive_restores_at_2_then_4_then_1() {
    use arrow::array::TimestampMillisecondArray;
    use arrow::util::display::array_value_to_string;
    use common::run_read_then_stop;
    let script = rescale_script().replace(
        "SELECT auction, window_end, COUNT(*), SUM(price)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))",
        "SELECT auction, window_end, COUNT(*), SUM(price)
         FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(ts), INTERVAL '0.1' SECOND))",
    );
    assert!(script.contains("SESSION"));
    let state = tempfile::tempdir().unwrap();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let pipeline = || {
        let sink = Arc::clone(&rows);
        strom_runtime::sql::compile(&script)
            .unwrap_or_else(|e| panic!("{e}"))
            .pipeline(Arc::new(move |line| sink.lock().unwrap().push(line)))
    };
    let config = |parallelism, restore| {
        local_config(
            state.path(),
            "sql-sessions",
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
    run_job(
        config(1, RestoreFrom::Snapshot(savepoint)),
        pipeline(),
        Arc::new(JobControl::default()),
    )
    .unwrap();
    let mut expected: Vec<String> = (0..AUCTIONS)
        .map(|auction| {
            let ids: Vec<u64> = (0..ROWS).filter(|id| id % AUCTIONS == auction).collect();
            let last = *ids.last().unwrap();
            let end = TimestampMillisecondArray::from(vec![(last * 7 + 100) as i64]);
            let sum: u64 = ids.iter().map(|id| id * 31 % 1000).sum();
            format!(
                "+I[{auction}, {}, {}, {sum}]",
                array_value_to_string(&end, 0).unwrap(),
                ids.len()
            )
        })
        .collect();
    expected.sort();
    let mut rows = rows.lock().unwrap().clone();
    rows.sort();
    assert_eq!(rows, expected);
}

/// Late records: a row whose window fired already (its event time 10 s behind
/// the watermark) is dropped and counted in `strom_late_records_total`, at
/// parallelism 1 and 2; every other row is counted in its window. The rows
/// come from datagen at 2,000 a second, 1 ms of event time apart, so the
/// watermark is seconds of wall time past the late rows' windows when they
/// come.
#[test]
fn late_rows_are_dropped_and_counted() {
    const ROWS: i64 = 12_000;
    let script = format!(
        "CREATE TABLE clicks (
           id BIGINT,
           ts AS to_timestamp_millis(1704067200000
             + CASE WHEN id % 1000 = 500 AND id >= 10000 THEN id - 10000 ELSE id END),
           WATERMARK FOR ts AS ts
         ) WITH ('connector' = 'datagen', 'rows-per-second' = '2000',
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                 'fields.id.end' = '{}');
         SELECT window_start, COUNT(*)
         FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end;",
        ROWS - 1
    );
    // Rows 10500 and 11500 are late: windows 10 and 11 lose one each.
    let expected: Vec<String> = (0..ROWS / 1000)
        .map(|second| {
            let count = if second >= 10 { 999 } else { 1000 };
            format!("+I[2024-01-01T00:00:{second:02}, {count}]")
        })
        .collect();
    for parallelism in [1, 2] {
        let state = tempfile::tempdir().unwrap();
        let job = strom_runtime::sql::compile(&script).unwrap_or_else(|error| panic!("{error}"));
        let rows = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&rows);
        let pipeline = job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line)));
        let config = local_config(
            state.path(),
            "sql-late",
            parallelism,
            Duration::from_millis(200),
            2,
            RestoreFrom::Nothing,
        );
        let control = Arc::new(JobControl::default());
        let report = run_job(config, pipeline, Arc::clone(&control)).unwrap();
        assert!(report.snapshots.failure.is_none(), "{:?}", report.snapshots);
        let mut got = rows.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, expected, "at parallelism {parallelism}");
        let mut metrics = String::new();
        prometheus_client::encoding::text::encode(&mut metrics, &control.metrics.registry())
            .unwrap();
        let late: u64 = metrics
            .lines()
            .filter(|line| line.starts_with("strom_late_records_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(late, 2, "at parallelism {parallelism}: {metrics}");
    }
}
