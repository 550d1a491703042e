//! The `latency` suite: end-to-end latency of the same Flink SQL on Strom and on
//! Apache Flink 2.3 (`bench/flink`) at a fixed input rate below saturation, with
//! checkpoints every 10 s.
//!
//! The Nexmark generator is paced (`max-emit-speed` false): on both sides each
//! event is made once the wall clock reaches its event time, so a result row's
//! lateness at the sink, its arrival minus the time it carries (the event's time
//! for q0-q2, the window's end for the window count), is the job's end-to-end
//! latency. Strom's rows reach a `print` sink whose lines this program reads;
//! Flink's a `latency` sink of `bench/flink` that notes each row's time and
//! arrival. Percentiles are over the rows of the steady part of each run: the
//! first seconds (the job starting while events are already due) and, for
//! windows, the last windows (fired early by the end of the input) are left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, bail};
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};
use strom_runtime::sql::nexmark::flink_ddl;

use crate::compare::{CHECKPOINT_INTERVAL, run_strom_script};
use crate::java::JavaProject;
use crate::plot::{self, Bar};

/// Rows whose time is less than this after the first row reached the sink are
/// left out: the job starts while the first events are already due, and sends
/// that backlog first.
const WARM_UP_MS: i64 = 5_000;

/// One query: its name, its statements after the DDL (`{sink}` stands for the
/// sink's connector options; the sink's first column is the time the latency is
/// measured from), and how many milliseconds of the newest times are left out.
struct Query {
    name: &'static str,
    statements: &'static str,
    tail_ms: i64,
    /// Runs last this many times `--seconds`.
    length: u64,
}

const QUERIES: [Query; 4] = [
    Query {
        name: "q0 (pass-through)",
        statements: "CREATE TABLE q0 (t TIMESTAMP(3), auction BIGINT, bidder BIGINT, price BIGINT,
                extra VARCHAR) WITH ({sink});
            INSERT INTO q0 SELECT `dateTime`, auction, bidder, price, extra FROM bid;",
        tail_ms: 0,
        length: 1,
    },
    Query {
        name: "q1 (currency conversion)",
        statements: "CREATE TABLE q1 (t TIMESTAMP(3), auction BIGINT, bidder BIGINT,
                price DECIMAL(23, 3), extra VARCHAR) WITH ({sink});
            INSERT INTO q1 SELECT `dateTime`, auction, bidder, 0.908 * price, extra FROM bid;",
        tail_ms: 0,
        length: 1,
    },
    Query {
        name: "q2 (selection)",
        statements: "CREATE TABLE q2 (t TIMESTAMP(3), auction BIGINT, price BIGINT) WITH ({sink});
            INSERT INTO q2 SELECT `dateTime`, auction, price FROM bid WHERE MOD(auction, 123) = 0;",
        tail_ms: 0,
        length: 1,
    },
    Query {
        name: "TUMBLE(10 s) count per auction",
        statements: "CREATE TABLE tumble_counts (t TIMESTAMP(3), auction BIGINT, bids BIGINT)
                WITH ({sink});
            INSERT INTO tumble_counts
            SELECT window_end, auction, COUNT(*)
            FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end;",
        // The last two windows: the end of the input fires them early.
        tail_ms: 20_000,
        length: 3,
    },
];

/// Latency percentiles of one run's steady rows, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    /// Rows measured.
    pub rows: usize,
    /// The median.
    pub p50: i64,
    /// The 99th percentile.
    pub p99: i64,
    /// The largest.
    pub max: i64,
}

/// The latency of a run's rows, each a time and its arrival at the sink (epoch
/// milliseconds): the rows whose time is at least [`WARM_UP_MS`] after the first
/// arrival (so none was due before the job ran) and not in the last `tail_ms`.
pub fn percentiles(rows: &[(i64, i64)], tail_ms: i64) -> Option<Percentiles> {
    let first = rows.iter().map(|(_, arrival)| *arrival).min()?;
    let last = rows.iter().map(|(time, _)| *time).max()?;
    let mut latencies: Vec<i64> = rows
        .iter()
        .filter(|(time, _)| *time >= first + WARM_UP_MS && *time <= last - tail_ms)
        .map(|(time, arrival)| arrival - time)
        .collect();
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let rank = |fraction: f64| {
        let index = (fraction * latencies.len() as f64).ceil() as usize;
        latencies[index.clamp(1, latencies.len()) - 1]
    };
    Some(Percentiles {
        rows: latencies.len(),
        p50: rank(0.5),
        p99: rank(0.99),
        max: latencies[latencies.len() - 1],
    })
}

/// One query at one parallelism on both systems.
pub struct Comparison {
    query: &'static str,
    parallelism: u32,
    strom: Percentiles,
    flink: Percentiles,
}

/// Runs a Strom job of the SQL script `file` at `parallelism`, 10 s
/// checkpoints, in this process (a `latency` run's child), writing each row its
/// `print` sink gets to `out`: the row's first column (a timestamp) and its
/// arrival, in epoch milliseconds, one `time arrival` line each.
pub fn run_script(dir: &Path, file: &Path, parallelism: u32, out: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let job = strom_runtime::sql::compile(&text).map_err(|error| anyhow::anyhow!("{error}"))?;
    let config = crate::config(
        dir,
        "latency",
        parallelism,
        CHECKPOINT_INTERVAL,
        RestoreFrom::Nothing,
    );
    let rows: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let unreadable: Arc<Mutex<Option<String>>> = Arc::default();
    let output = {
        let rows = Arc::clone(&rows);
        let unreadable = Arc::clone(&unreadable);
        Arc::new(move |line: String| {
            let arrival = now_ms();
            match first_timestamp(&line) {
                Some(time) => rows.lock().expect("rows").push((time, arrival)),
                None => *unreadable.lock().expect("unreadable") = Some(line),
            }
        })
    };
    let control = Arc::new(JobControl::default());
    run_job(config, job.pipeline(output), control)?;
    if let Some(line) = unreadable.lock().expect("unreadable").take() {
        bail!("a printed row has no timestamp first: {line}");
    }
    let mut text = String::new();
    for (time, arrival) in rows.lock().expect("rows").iter() {
        writeln!(text, "{time} {arrival}")?;
    }
    std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// The first column of a printed row (`+I[2026-12-07T10:00:00.123, ...]`), a
/// timestamp without time zone, in epoch milliseconds.
fn first_timestamp(line: &str) -> Option<i64> {
    let values = line.split_once('[')?.1;
    let first = values.split([',', ']']).next()?.trim();
    let time = chrono::NaiveDateTime::parse_from_str(first, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(time.and_utc().timestamp_millis())
}

/// Reads `time arrival` lines.
fn read_rows(file: &Path) -> anyhow::Result<Vec<(i64, i64)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("the run wrote no rows to {}", file.display()))?;
    text.lines()
        .map(|line| {
            let (time, arrival) = line
                .split_once(' ')
                .with_context(|| format!("{}: not `time arrival`: {line}", file.display()))?;
            Ok((time.parse()?, arrival.parse()?))
        })
        .collect()
}

/// Runs this program again with `--run-script` and `--latency-out`: a Strom run
/// in a process of its own; its rows.
fn run_strom(script: &Path, parallelism: u32, dir: &Path) -> anyhow::Result<Vec<(i64, i64)>> {
    let out = dir.join("rows.txt");
    run_strom_script(script, parallelism, dir, |command| {
        command.arg("--latency-out").arg(&out);
    })?;
    read_rows(&out)
}

/// Runs the SQL script `script` (its sink writing to `prefix`) on a Flink
/// MiniCluster; the rows of every subtask.
fn run_flink(
    flink: &JavaProject,
    script: &Path,
    parallelism: u32,
    prefix: &Path,
    dir: &Path,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut command = flink.java("strom.bench.flink.RunSql");
    command
        .arg("--sql")
        .arg(script)
        .args(["--parallelism", &parallelism.to_string()])
        .args([
            "--checkpoint-interval-ms",
            &CHECKPOINT_INTERVAL.as_millis().to_string(),
        ])
        .arg("--checkpoint-dir")
        .arg(dir);
    flink.output(command)?;
    let mut rows = Vec::new();
    for subtask in 0..parallelism {
        rows.extend(read_rows(&PathBuf::from(format!(
            "{}-{subtask}",
            prefix.display()
        )))?);
    }
    Ok(rows)
}

/// The script of `query` over `events` events paced at `rate` a second, with
/// `sink` as its sink's connector options.
fn script(query: &Query, events: u64, rate: u64, sink: &str) -> String {
    let ddl = flink_ddl(&[
        ("first-event.rate", rate.to_string()),
        ("events.num", events.to_string()),
        ("max-emit-speed", "false".to_owned()),
    ]);
    format!("{ddl}\n{}", query.statements.replace("{sink}", sink))
}

/// Runs every query (or those whose name starts with one of `only`) at each of
/// `parallelisms` on Strom and on Flink, `rate` events a second for `seconds`
/// (three times that for the window count).
pub fn run(
    dir: &Path,
    flink: &JavaProject,
    rate: u64,
    seconds: u64,
    parallelisms: &[u32],
    only: &[String],
) -> anyhow::Result<Vec<Comparison>> {
    let chosen =
        |query: &str| only.is_empty() || only.iter().any(|o| query.starts_with(o.as_str()));
    let mut comparisons = Vec::new();
    for (index, query) in QUERIES.iter().enumerate().filter(|(_, q)| chosen(q.name)) {
        let events = rate * seconds * query.length;
        for &parallelism in parallelisms {
            let scratch = |system: &str| -> anyhow::Result<PathBuf> {
                let path = dir.join(format!("latency-{system}-{index}-{parallelism}"));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path)?;
                Ok(path)
            };
            let strom_dir = scratch("strom")?;
            let strom_script = strom_dir.join("query.sql");
            std::fs::write(
                &strom_script,
                script(query, events, rate, "'connector' = 'print'"),
            )?;
            let strom_rows = run_strom(&strom_script, parallelism, &strom_dir)?;

            let flink_dir = scratch("flink")?;
            let prefix = flink_dir.join("rows");
            let flink_script = flink_dir.join("query.sql");
            let sink = format!("'connector' = 'latency', 'path' = '{}'", prefix.display());
            std::fs::write(&flink_script, script(query, events, rate, &sink))?;
            let flink_rows = run_flink(flink, &flink_script, parallelism, &prefix, &flink_dir)?;

            let measure = |system: &str, rows: &[(i64, i64)]| {
                percentiles(rows, query.tail_ms).with_context(|| {
                    format!(
                        "{system}'s run of {} had no rows to measure ({} rows)",
                        query.name,
                        rows.len()
                    )
                })
            };
            let comparison = Comparison {
                query: query.name,
                parallelism,
                strom: measure("Strom", &strom_rows)?,
                flink: measure("Flink", &flink_rows)?,
            };
            println!(
                "{} at parallelism {parallelism}: Strom p50 {} ms p99 {} ms, Flink p50 {} ms p99 {} ms",
                query.name,
                comparison.strom.p50,
                comparison.strom.p99,
                comparison.flink.p50,
                comparison.flink.p99
            );
            comparisons.push(comparison);
        }
    }
    Ok(comparisons)
}

/// Draws p50 and p99 of the queries without windows (a window's latency is
/// mostly the watermark's delay), `chart` (a PNG).
pub fn chart(comparisons: &[Comparison], chart: &Path) -> anyhow::Result<()> {
    let mut bars = Vec::new();
    for c in comparisons {
        if QUERIES
            .iter()
            .any(|query| query.name == c.query && query.tail_ms > 0)
        {
            continue;
        }
        let name = c.query.split(' ').next().unwrap_or(c.query);
        let group = format!("{name}\nparallelism {}", c.parallelism);
        for (series, measured) in [("Strom", &c.strom), ("Flink 2.3", &c.flink)] {
            for (percentile, value) in [("p50", measured.p50), ("p99", measured.p99)] {
                bars.push(Bar {
                    group: group.clone(),
                    series: format!("{series} {percentile}"),
                    value: value as f64,
                });
            }
        }
    }
    plot::bars(
        &bars,
        chart,
        "End-to-end latency at a fixed rate, checkpoints every 10 s",
        "milliseconds",
    )
}

/// The report's `latency` part; `chart` is the chart's path from the report.
pub fn report(
    comparisons: &[Comparison],
    rate: u64,
    seconds: u64,
    cores: u32,
    versions: &str,
    chart: &str,
) -> anyhow::Result<String> {
    let mut report = String::new();
    writeln!(report, "## Latency at a fixed rate: Strom and Flink\n")?;
    writeln!(
        report,
        "Written by `cargo run --release -p strom-bench -- --suite latency --rate {rate} --seconds {seconds}` \
         on a machine with {cores} cores ({versions}). The same Flink SQL on both systems over the same \
         Nexmark events, paced: each event is made once the wall clock reaches its event time, {rate} \
         events a second (below either system's throughput above), for {seconds} s ({} s for the window \
         count); checkpoints every 10 s. Latency of a result row = its arrival at the sink minus the time \
         it carries: its event's time (q0-q2), its window's end (the window count, whose latency includes \
         the table's 4 s watermark delay). Over the rows whose time is at least {} s after the first \
         row reached the sink (the job starts while the first events are already due and sends that \
         backlog first) and, for the window count, before the last two windows (fired early by the end \
         of the input). Strom's rows reach a `print` sink read \
         by the benchmark in its process; Flink's a sink of `bench/flink` that notes each row's time and \
         arrival.\n",
        seconds * 3,
        WARM_UP_MS / 1000,
    )?;
    writeln!(
        report,
        "| query | parallelism | rows (Strom / Flink) | Strom p50 | Strom p99 | Strom max | Flink p50 | Flink p99 | Flink max |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for c in comparisons {
        writeln!(
            report,
            "| {} | {} | {} / {} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms |",
            c.query,
            c.parallelism,
            c.strom.rows,
            c.flink.rows,
            c.strom.p50,
            c.strom.p99,
            c.strom.max,
            c.flink.p50,
            c.flink.p99,
            c.flink.max,
        )?;
    }
    writeln!(report, "\n![Latency of Strom and Flink]({chart})")?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_rows_give_their_first_timestamp() {
        assert_eq!(
            first_timestamp("+I[1970-01-01T00:00:01.250, 7, abc]"),
            Some(1250)
        );
        assert_eq!(first_timestamp("+I[1970-01-01T00:00:02]"), Some(2000));
        assert_eq!(first_timestamp("+I[7, 1970-01-01T00:00:02]"), None);
    }

    #[test]
    fn percentiles_leave_out_the_warm_up_and_the_tail() {
        // Times 0..20 s, one row a second: the first five (due before the job
        // ran) all arrive at 1 s, then latencies of 1..=15 ms, and 999 ms for the
        // last row.
        let mut rows: Vec<(i64, i64)> = (0..5).map(|s| (s * 1000 - 4000, 1000)).collect();
        rows.extend((5..20).map(|s| (s * 1000 + 1000, s * 1000 + 1000 + s - 4)));
        rows.push((21_000, 21_999));
        let all = percentiles(&rows, 0).unwrap();
        assert_eq!((all.rows, all.p50, all.max), (16, 8, 999));
        let steady = percentiles(&rows, 1000).unwrap();
        assert_eq!(
            steady,
            Percentiles {
                rows: 15,
                p50: 8,
                p99: 15,
                max: 15
            }
        );
        assert_eq!(percentiles(&[], 0), None);
    }
}
