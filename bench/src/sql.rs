//! The `sql` suite: Nexmark q0, q1, q2, a HOP(2 s, 10 s) and a TUMBLE(10 s) count per auction
//! over `bid`, from their Flink SQL text over the `nexmark` connector (unpaced,
//! bounded) into `blackhole` sinks, with 10 s checkpoints: events per second and
//! per core, counting every event the generator makes (persons and auctions
//! too), as Nexmark reports throughput.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};
use strom_runtime::sql::nexmark::flink_ddl;

use crate::config;

/// The checkpoint interval of every run, as Flink's Nexmark runs use.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// The queries: a name and the statements after the DDL.
pub(crate) const QUERIES: [(&str, &str); 5] = [
    (
        "q0 (pass-through)",
        "CREATE TABLE nexmark_q0 (auction BIGINT, bidder BIGINT, price BIGINT,
            `dateTime` TIMESTAMP(3), extra VARCHAR) WITH ('connector' = 'blackhole');
         INSERT INTO nexmark_q0 SELECT auction, bidder, price, `dateTime`, extra FROM bid;",
    ),
    (
        "q1 (currency conversion)",
        "CREATE TABLE nexmark_q1 (auction BIGINT, bidder BIGINT, price DECIMAL(23, 3),
            `dateTime` TIMESTAMP(3), extra VARCHAR) WITH ('connector' = 'blackhole');
         INSERT INTO nexmark_q1
         SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid;",
    ),
    (
        "q2 (selection)",
        "CREATE TABLE nexmark_q2 (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO nexmark_q2 SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;",
    ),
    (
        "HOP(2 s, 10 s) count per auction",
        "CREATE TABLE hop_counts (auction BIGINT, window_start TIMESTAMP(3),
            window_end TIMESTAMP(3), bids BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO hop_counts
         SELECT auction, window_start, window_end, COUNT(*)
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end;",
    ),
    (
        "TUMBLE(10 s) count per auction",
        "CREATE TABLE tumble_counts (auction BIGINT, window_start TIMESTAMP(3),
            window_end TIMESTAMP(3), bids BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO tumble_counts
         SELECT auction, window_start, window_end, COUNT(*)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end;",
    ),
];

/// One measured run.
pub struct Run {
    query: &'static str,
    parallelism: u32,
    events: u64,
    seconds: f64,
}

/// The script of `statements` over `events` Nexmark events, `rate` events per
/// second of event time (at 1,000, a HOP window of 10 s holds 10,000 events).
pub(crate) fn script(statements: &str, events: u64, rate: u64) -> String {
    let ddl = flink_ddl(&[
        ("first-event.rate", rate.to_string()),
        ("events.num", events.to_string()),
    ]);
    format!("{ddl}\n{statements}")
}

/// Runs `statements` over `events` events at `parallelism`: how long the job ran
/// (from the moment its operators were built to its end, final checkpoint
/// included) and how many events it read.
fn run_once(
    dir: &Path,
    name: &str,
    statements: &str,
    events: u64,
    parallelism: u32,
) -> anyhow::Result<(u64, f64)> {
    let job = strom_runtime::sql::compile(&script(statements, events, 1000))
        .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
    let config = config(
        dir,
        &format!("sql-{}", name.split_whitespace().next().unwrap_or("q")),
        parallelism,
        CHECKPOINT_INTERVAL,
        RestoreFrom::Nothing,
    );
    let control = Arc::new(JobControl::default());
    let report = run_job(config, job.pipeline(Arc::new(|_| {})), Arc::clone(&control))?;
    let running = control.running_since().context("the job never ran")?;
    Ok((report.records_in, running.elapsed().as_secs_f64()))
}

/// Runs every query (or those whose name starts with one of `only`) at each of
/// `parallelisms`, each sized to last about `seconds`.
pub fn run(
    dir: &Path,
    seconds: u64,
    parallelisms: &[u32],
    only: &[String],
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    let chosen =
        |query: &str| only.is_empty() || only.iter().any(|o| query.starts_with(o.as_str()));
    for (query, statements) in QUERIES.into_iter().filter(|(query, _)| chosen(query)) {
        for &parallelism in parallelisms {
            // Calibrate on a run of at least a second, then size the input.
            let mut calibration = 1_000_000;
            let rate = loop {
                let started = Instant::now();
                let (events, elapsed) = run_once(dir, query, statements, calibration, parallelism)?;
                if started.elapsed() >= Duration::from_secs(1) {
                    break events as f64 / elapsed;
                }
                calibration *= 4;
            };
            let events = (rate * seconds as f64) as u64;
            let (events, elapsed) = run_once(dir, query, statements, events, parallelism)?;
            let run = Run {
                query,
                parallelism,
                events,
                seconds: elapsed,
            };
            println!(
                "{query} at parallelism {parallelism}: {events} events in {elapsed:.1} s, {:.0} events/s/core",
                run.per_core()
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn per_core(&self) -> f64 {
        self.rate() / f64::from(self.parallelism)
    }
}

/// The report's `sql` part.
pub fn report(runs: &[Run], seconds: u64, cores: u32) -> anyhow::Result<String> {
    let mut report = String::new();
    writeln!(
        report,
        "Written by `cargo run --release -p strom-bench -- --suite sql --seconds {seconds}` on a machine with {cores} cores. \
         Queries from their Flink SQL text over nexmark-flink's DDL (`nexmark` connector, unpaced, bounded, \
         sized to last about {seconds} s), `blackhole` sinks, checkpoints every 10 s on the local file system. \
         Events are all generated events (persons, auctions and bids, 1:3:46), as Nexmark counts them; \
         per core = per worker.\n"
    )?;
    writeln!(
        report,
        "| query | parallelism | events | seconds | events/s | events/s/core |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|")?;
    for run in runs {
        writeln!(
            report,
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} |",
            run.query,
            run.parallelism,
            run.events,
            run.seconds,
            run.rate(),
            run.per_core()
        )?;
    }
    Ok(report)
}
