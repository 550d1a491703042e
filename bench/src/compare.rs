//! The `compare` suite: the same Flink SQL over the same Nexmark events on Strom
//! and on Apache Flink 2.3 (`bench/flink`: a local MiniCluster in one JVM, RocksDB
//! state backend, incremental checkpoints), one after the other on this machine,
//! in one run: events/s/core of each, their ratio, with checkpoints every 10 s and
//! without, and each run's peak RSS.
//!
//! Each run is a process of its own (Strom: this program again, with
//! `--run-script`; Flink: `java`), so its peak RSS is its own. Before measuring,
//! the first events of both generators are compared field by field: the input is
//! the same on both sides.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};
use strom_runtime::sql::nexmark::{Event, NexmarkGenerator, NexmarkOptions};

use crate::java::{JavaProject, Measured, peak_rss_bytes};
use crate::plot::{self, Bar};
use crate::sql::{QUERIES, script};

/// The checkpoint interval of the runs with checkpoints, as Nexmark's Flink runs
/// use.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Events compared between the two generators before measuring.
const CHECKED_EVENTS: u64 = 20_000;
/// The event-time rate of the benchmark's tables (events per second of event
/// time), as in the `sql` suite.
const EVENT_RATE: u64 = 1000;

/// One query at one parallelism, with or without checkpoints, on both systems.
pub struct Comparison {
    query: &'static str,
    parallelism: u32,
    checkpoints: bool,
    strom: Measured,
    flink: Measured,
}

impl Comparison {
    fn ratio(&self) -> f64 {
        self.strom.per_core(self.parallelism) / self.flink.per_core(self.parallelism)
    }
}

/// Runs the SQL script in `file` at `parallelism` in this process (the child
/// side of a Strom run) and prints its [`Measured`] line.
pub fn run_script(
    dir: &Path,
    file: &Path,
    parallelism: u32,
    checkpoints: bool,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let job = strom_runtime::sql::compile(&text).map_err(|error| anyhow::anyhow!("{error}"))?;
    let interval = if checkpoints {
        CHECKPOINT_INTERVAL
    } else {
        crate::NO_CHECKPOINTS
    };
    let config = crate::config(dir, "compare", parallelism, interval, RestoreFrom::Nothing);
    let control = Arc::new(JobControl::default());
    let report = run_job(config, job.pipeline(Arc::new(|_| {})), Arc::clone(&control))?;
    let running = control.running_since().context("the job never ran")?;
    let measured = Measured {
        events: report.records_in,
        seconds: running.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
    };
    println!("{}", measured.line());
    Ok(())
}

/// The Flink side: `bench/flink`, built.
pub struct Flink(JavaProject);

impl Flink {
    /// The first `count` events of the Java generator, one line each.
    fn events(&self, count: u64) -> anyhow::Result<String> {
        let mut command = self.0.java("strom.bench.flink.NexmarkEvents");
        command.args(["--count", &count.to_string()]).args([
            "--rate",
            &EVENT_RATE.to_string(),
            "--base-time",
            "0",
        ]);
        self.0.output(command)
    }

    /// Runs the SQL script `script` on a local MiniCluster.
    fn run(
        &self,
        script: &Path,
        parallelism: u32,
        checkpoints: bool,
        dir: &Path,
    ) -> anyhow::Result<Measured> {
        let interval = if checkpoints {
            CHECKPOINT_INTERVAL.as_millis()
        } else {
            0
        };
        let mut command = self.0.java("strom.bench.flink.RunSql");
        command
            .arg("--sql")
            .arg(script)
            .args(["--parallelism", &parallelism.to_string()])
            .args(["--checkpoint-interval-ms", &interval.to_string()])
            .arg("--checkpoint-dir")
            .arg(dir);
        Measured::parse(&self.0.output(command)?)
    }
}

/// Event `n` as one line, in the format `NexmarkEvents` prints (tab-separated;
/// times in milliseconds).
fn event_line(n: u64, event: &Event) -> String {
    match event {
        Event::Person(p) => format!(
            "0\t{n}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            p.id, p.name, p.email_address, p.credit_card, p.city, p.state, p.date_time, p.extra
        ),
        Event::Auction(a) => format!(
            "1\t{n}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            a.id,
            a.item_name,
            a.description,
            a.initial_bid,
            a.reserve,
            a.date_time,
            a.expires,
            a.seller,
            a.category,
            a.extra
        ),
        Event::Bid(b) => format!(
            "2\t{n}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            b.auction, b.bidder, b.price, b.channel, b.url, b.date_time, b.extra
        ),
    }
}

/// Fails unless the Java generator makes the same first events as Strom's.
fn check_same_events(flink: &Flink) -> anyhow::Result<()> {
    let generator = NexmarkGenerator::new(NexmarkOptions {
        first_event_rate: EVENT_RATE,
        ..NexmarkOptions::default()
    });
    let theirs = flink.events(CHECKED_EVENTS)?;
    let mut lines = theirs.lines();
    for n in 0..CHECKED_EVENTS {
        let ours = event_line(n, &generator.event(n));
        match lines.next() {
            Some(line) if line == ours => {}
            Some(line) => {
                bail!("the generators differ at event {n}:\n  Strom: {ours}\n  Flink: {line}")
            }
            None => bail!("the Flink side's generator stopped before event {n}"),
        }
    }
    println!("the first {CHECKED_EVENTS} events of both generators are the same");
    Ok(())
}

/// Runs this program again with `--run-script`: a Strom run in a process of its
/// own.
fn run_strom(
    script: &Path,
    parallelism: u32,
    checkpoints: bool,
    dir: &Path,
) -> anyhow::Result<Measured> {
    let stdout = run_strom_script(script, parallelism, dir, |command| {
        if checkpoints {
            command.arg("--checkpoints");
        }
    })?;
    Measured::parse(&stdout)
}

/// Runs this program again with `--run-script` `script` at `parallelism` in `dir`,
/// with the arguments `more` adds: its standard output, or an error with its
/// standard error.
pub(crate) fn run_strom_script(
    script: &Path,
    parallelism: u32,
    dir: &Path,
    more: impl FnOnce(&mut Command),
) -> anyhow::Result<String> {
    let program = std::env::current_exe().context("cannot find this program")?;
    let mut command = Command::new(program);
    command
        .arg("--run-script")
        .arg(script)
        .args(["--parallelism", &parallelism.to_string()])
        .arg("--work-dir")
        .arg(dir);
    more(&mut command);
    let output = command.output().context("cannot run strom-bench")?;
    if !output.status.success() {
        bail!(
            "Strom failed on {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `run` over `events` events, and again over as many as last about
/// `seconds` when the first run took less than half of that (so a run takes its
/// periodic checkpoints, and start-up weighs little).
fn sized_run(
    seconds: u64,
    events: u64,
    mut run: impl FnMut(u64) -> anyhow::Result<Measured>,
) -> anyhow::Result<Measured> {
    let first = run(events)?;
    if first.seconds >= seconds as f64 / 2.0 {
        return Ok(first);
    }
    run((first.rate() * seconds as f64) as u64)
}

/// Runs every query (or those whose name starts with one of `only`) at each of
/// `parallelisms`, with and without checkpoints, on Strom and on Flink: each run
/// over the first `events` events or, if that lasts less than half of `seconds`,
/// over as many as last about `seconds`.
pub fn run(
    dir: &Path,
    project: &Path,
    events: u64,
    seconds: u64,
    parallelisms: &[u32],
    only: &[String],
) -> anyhow::Result<Vec<Comparison>> {
    std::fs::create_dir_all(dir)?;
    let flink = Flink(JavaProject::build(project)?);
    check_same_events(&flink)?;
    let chosen =
        |query: &str| only.is_empty() || only.iter().any(|o| query.starts_with(o.as_str()));
    let mut comparisons = Vec::new();
    for (index, (query, statements)) in QUERIES
        .into_iter()
        .enumerate()
        .filter(|(_, (query, _))| chosen(query))
    {
        // The script over the first `events` events, written once per count.
        let script_of = |events: u64| -> anyhow::Result<PathBuf> {
            let file = dir.join(format!("query-{index}-{events}.sql"));
            std::fs::write(&file, script(statements, events, EVENT_RATE))?;
            Ok(file)
        };
        for &parallelism in parallelisms {
            for checkpoints in [true, false] {
                let scratch = |system: &str| -> anyhow::Result<PathBuf> {
                    let path = dir.join(format!("{system}-{index}-{parallelism}-{checkpoints}"));
                    std::fs::create_dir_all(&path)?;
                    Ok(path)
                };
                let strom = sized_run(seconds, events, |events| {
                    run_strom(
                        &script_of(events)?,
                        parallelism,
                        checkpoints,
                        &scratch("strom")?,
                    )
                })?;
                let flink = sized_run(seconds, events, |events| {
                    flink.run(
                        &script_of(events)?,
                        parallelism,
                        checkpoints,
                        &scratch("flink")?,
                    )
                })?;
                let comparison = Comparison {
                    query,
                    parallelism,
                    checkpoints,
                    strom,
                    flink,
                };
                println!(
                    "{query} at parallelism {parallelism}, checkpoints {}: Strom {:.0} ({} events), Flink {:.0} ({} events) events/s/core, {:.2}x",
                    if checkpoints { "every 10 s" } else { "none" },
                    strom.per_core(parallelism),
                    strom.events,
                    flink.per_core(parallelism),
                    flink.events,
                    comparison.ratio()
                );
                comparisons.push(comparison);
            }
        }
    }
    Ok(comparisons)
}

/// Draws the runs with checkpoints as a chart, `chart` (a PNG).
pub fn chart(comparisons: &[Comparison], chart: &Path) -> anyhow::Result<()> {
    let mut bars = Vec::new();
    for c in comparisons.iter().filter(|c| c.checkpoints) {
        let group = format!("{}\nparallelism {}", short_name(c.query), c.parallelism);
        for (series, measured) in [("Strom", &c.strom), ("Flink 2.3", &c.flink)] {
            bars.push(Bar {
                group: group.clone(),
                series: series.to_owned(),
                value: measured.per_core(c.parallelism),
            });
        }
    }
    plot::bars(
        &bars,
        chart,
        "Nexmark SQL, checkpoints every 10 s",
        "events/s per core",
    )
}

/// The query's name up to its first space or parenthesis: `q0`, `HOP`.
fn short_name(query: &str) -> &str {
    query
        .split([' ', '('])
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or(query)
}

/// The report's `compare` part; `chart` is the chart's path from the report.
pub fn report(
    comparisons: &[Comparison],
    events: u64,
    seconds: u64,
    cores: u32,
    versions: &str,
    chart: &str,
) -> anyhow::Result<String> {
    let mut report = String::new();
    let half = seconds as f64 / 2.0;
    writeln!(report, "## Strom and Apache Flink side by side\n")?;
    writeln!(
        report,
        "Written by `cargo run --release -p strom-bench -- --suite compare --events {events} --seconds {seconds}` \
         on a machine with {cores} cores ({versions}). The same Flink SQL text over the same Nexmark events \
         (`nexmark` connector, unpaced, bounded, 1000 events per second of event time; both generators' \
         first {CHECKED_EVENTS} events are checked equal before measuring) into `blackhole` sinks: each run \
         over the first {events} events, or, when that took less than {half} s, over as many as last about \
         {seconds} s (the run's length is in the table). \
         Flink: a local MiniCluster in one JVM (`bench/flink`), RocksDB state backend, incremental \
         checkpoints on the local file system. Strom: RocksDB, checkpoints on the local file system. \
         Events/s from each job's start to its end, per core = per subtask slot; peak RSS of each \
         run's process.\n"
    )?;
    writeln!(
        report,
        "| query | parallelism | checkpoints | Strom events/s/core (run) | Flink events/s/core (run) | Strom / Flink | Strom peak RSS | Flink peak RSS |"
    )?;
    writeln!(report, "|---|---:|---|---:|---:|---:|---:|---:|")?;
    for c in comparisons {
        writeln!(
            report,
            "| {} | {} | {} | {:.0} ({:.1} s) | {:.0} ({:.1} s) | {:.2} | {:.0} MB | {:.0} MB |",
            c.query,
            c.parallelism,
            if c.checkpoints { "every 10 s" } else { "none" },
            c.strom.per_core(c.parallelism),
            c.strom.seconds,
            c.flink.per_core(c.parallelism),
            c.flink.seconds,
            c.ratio(),
            c.strom.peak_rss_bytes as f64 / 1e6,
            c.flink.peak_rss_bytes as f64 / 1e6,
        )?;
    }
    writeln!(report, "\n![Strom and Flink, events/s per core]({chart})\n")?;
    writeln!(
        report,
        "Checkpoint overhead (events/s with checkpoints every 10 s / without):\n"
    )?;
    writeln!(report, "| query | parallelism | Strom | Flink |")?;
    writeln!(report, "|---|---:|---:|---:|")?;
    for with in comparisons.iter().filter(|c| c.checkpoints) {
        let Some(without) = comparisons
            .iter()
            .find(|c| !c.checkpoints && c.query == with.query && c.parallelism == with.parallelism)
        else {
            continue;
        };
        let overhead = |a: &Measured, b: &Measured| {
            (a.events as f64 / a.seconds) / (b.events as f64 / b.seconds)
        };
        writeln!(
            report,
            "| {} | {} | {:.2} | {:.2} |",
            with.query,
            with.parallelism,
            overhead(&with.strom, &without.strom),
            overhead(&with.flink, &without.flink)
        )?;
    }
    Ok(report)
}
