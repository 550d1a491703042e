//! `strom-bench`: throughput of the Strom runtime, with and without checkpoints, and
//! the time of a savepoint and of a restore at a new parallelism, for state of a
//! given size (suite `runtime`); Kafka to Kafka against raw librdkafka (suite
//! `kafka`, on the test services' cluster A); Nexmark q0-q2, a HOP and a TUMBLE
//! count in SQL (suite `sql`); the same SQL on Strom and on Apache Flink side by
//! side (suite `compare`, needs Java 17 and Maven); a `kubectl patch` rescale of
//! state on MinIO next to Flink's stop-with-savepoint and restore (suite `rescale`,
//! on the e2e kind cluster with a release build loaded as its runtime image);
//! end-to-end latency at a fixed rate on Strom and on Flink (suite `latency`).
//! Prints the tables and writes each suite's part of docs/benchmarks.md, leaving
//! the rest of it as it is. `bench/all.sh` runs every suite, with the services
//! each needs; one suite at a time:
//!
//! ```sh
//! cargo run --release -p strom-bench -- --seconds 20 --state-mb 100,1000
//! e2e/infra/stack.sh up && source ~/.cache/strom/run/env.sh
//! cargo run --release -p strom-bench -- --suite kafka --kafka-events 2000000
//! cargo run --release -p strom-bench -- --suite sql --seconds 20
//! cargo run --release -p strom-bench -- --suite compare --events 5000000 --seconds 20
//! cargo run --release -p strom-bench -- --suite latency --rate 10000 --seconds 20
//! e2e/kind/kind.sh image runtime "${CARGO_TARGET_DIR:-target}/release/strom"
//! cargo run --release -p strom-bench -- --suite rescale --state-mb 100,1000 --parallelism 1,2
//! ```

mod compare;
mod java;
mod kafka;
mod latency;
mod plot;
mod report;
mod rescale;
mod sql;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{
    EventTimes, Generator, JobConfig, JobControl, JobReport, JobSettings, PipelineFn, Processes,
    RestoreFrom, WindowKind, run_job,
};
use strom_runtime::pipelines::{KEYED_STATE_SPLITS, keyed_state, mix};
use strom_runtime::state::Partitioning;

/// Which benchmarks to run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Suite {
    /// Generated input: throughput, savepoint and restore.
    Runtime,
    /// Kafka to Kafka against raw librdkafka (needs the test services).
    Kafka,
    /// Nexmark q0-q2, a HOP and a TUMBLE count in SQL.
    Sql,
    /// The `sql` queries on Strom and on Apache Flink, side by side.
    Compare,
    /// Rescale of `--state-mb` of keyed state from the first `--parallelism` to
    /// the second: Strom through the operator on the e2e cluster, Flink's
    /// stop-with-savepoint and restore, both on MinIO (needs the test services).
    Rescale,
    /// End-to-end latency of q0-q2 and a TUMBLE count on Strom and on Apache
    /// Flink at a fixed rate (`--rate` events a second for `--seconds`).
    Latency,
}

/// Benchmarks of the Strom runtime.
#[derive(Parser, Debug)]
struct Args {
    /// The benchmarks to run; each rewrites only its own part of the report.
    #[arg(long, value_enum, default_value = "runtime")]
    suite: Suite,
    /// Records of the Kafka benchmarks' input topic.
    #[arg(long, default_value_t = 2_000_000)]
    kafka_events: u64,
    /// Runs of each Strom job of the Kafka benchmarks (the median is reported).
    #[arg(long, default_value_t = 3)]
    kafka_repeats: u32,
    /// How long each throughput run reads input.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Parallelisms to measure throughput at (default: 1 and the number of cores).
    #[arg(long, value_delimiter = ',')]
    parallelism: Vec<u32>,
    /// State sizes, in MB, to take a savepoint of and restore.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    state_mb: Vec<u64>,
    /// Only the SQL queries (`q0`, `q1`, `q2`, `HOP`) or runtime pipelines
    /// (`stateless`, `keyed count`, `keyed window`) whose name starts with one of
    /// these; the report is then printed, not written (the runtime suite also
    /// skips its savepoints).
    #[arg(long, value_delimiter = ',')]
    query: Vec<String>,
    /// Where to write the report (Markdown).
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
    /// Folder for state and scratch files (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Events of each `compare` run (more where that lasts less than half of
    /// `--seconds`).
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// The Flink side's Maven project.
    #[arg(long, default_value = "bench/flink")]
    flink_project: PathBuf,
    /// The Kafka Streams side's Maven project (suite `kafka`).
    #[arg(long, default_value = "bench/kstreams")]
    kstreams_project: PathBuf,
    /// Suite `kafka` without the Kafka Streams runs.
    #[arg(long)]
    without_kstreams: bool,
    /// Runs this SQL script once and prints what it measured (a `compare` run's
    /// process; with `--parallelism` and `--checkpoints`).
    #[arg(long, hide = true)]
    run_script: Option<PathBuf>,
    /// With `--run-script`: checkpoints every 10 s (else none but the final one).
    #[arg(long, hide = true)]
    checkpoints: bool,
    /// With `--run-script`: a `latency` run, writing each printed row's time and
    /// arrival to this file.
    #[arg(long, hide = true)]
    latency_out: Option<PathBuf>,
    /// Events a second of the `latency` suite's paced input.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
}

/// Distinct keys of the keyed throughput pipeline.
const KEYS: u64 = 100_000;
/// Splits of every generator (more than any parallelism measured).
const SPLITS: u32 = 64;
/// A checkpoint interval longer than any run: only the final checkpoint is taken.
pub(crate) const NO_CHECKPOINTS: Duration = Duration::from_secs(3600);
/// Bytes of state per key in the savepoint benchmark.
const VALUE_BYTES: usize = 100;

pub(crate) fn config(
    dir: &Path,
    name: &str,
    parallelism: u32,
    interval: Duration,
    restore: RestoreFrom,
) -> JobConfig {
    JobConfig {
        settings: JobSettings {
            name: name.to_owned(),
            namespace: None,
            partitioning: Partitioning::new(parallelism, 128).expect("valid parallelism"),
            checkpoint_interval: interval,
            retained_checkpoints: 2,
            savepoint_retention: Default::default(),
            local_dir: dir.join("local").join(format!("{name}-{parallelism}")),
            storage_options: BTreeMap::new(),
            allow_non_restored_state: false,
        },
        storage_url: format!("file://{}", dir.join("state").display()),
        restore,
        processes: Processes::Local,
        control_address: None,
        control_token: None,
    }
}

/// A stateless pipeline over `events` generated events: generate, map, filter,
/// discard.
fn stateless(events: u64) -> PipelineFn {
    let per_split = events.div_ceil(u64::from(SPLITS));
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let generator =
            Generator::new(SPLITS, |split, n| mix(1, u64::from(split), n)).bounded(per_split);
        pipeline
            .source("events", generator)?
            .map(|x: u64| x.rotate_left(7) ^ 0x5bd1_e995)
            .filter(|x| x % 3 != 0)
            .sink(|_, _| {});
        Ok(())
    })
}

/// A keyed aggregation over `events` generated events: the running count per key
/// of 100 000 keys, in RocksDB.
fn keyed_count(events: u64) -> PipelineFn {
    let per_split = events.div_ceil(u64::from(SPLITS));
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let generator = Generator::new(SPLITS, |split, n| mix(2, u64::from(split), n) % KEYS)
            .bounded(per_split);
        pipeline
            .source("events", generator)?
            .key_by(|key: &u64| *key)
            .count("count")?
            .sink(|_, _| {});
        Ok(())
    })
}

/// A keyed windowed aggregation over `events` generated events: counts per key of
/// 100 000 keys in one-second tumbling event-time windows (one millisecond of event
/// time per event and split, up to 50 ms out of order).
fn windowed_count(events: u64) -> PipelineFn {
    let per_split = events.div_ceil(u64::from(SPLITS));
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let generator = Generator::new(SPLITS, |split, n| {
            let random = mix(3, u64::from(split), n);
            (random % KEYS, n + random % 50)
        })
        .bounded(per_split);
        let event_times = EventTimes {
            timestamp: Box::new(|event: &(u64, u64)| event.1),
            max_out_of_orderness: Duration::from_millis(50),
            idle_timeout: None,
            // Aligned: the two subtasks otherwise drift tens of seconds of event
            // time apart, and the windows between them pile up (benchmarks.md).
            max_drift: Some(Duration::from_secs(1)),
        };
        pipeline
            .source_with_event_times("events", generator, event_times)?
            .key_by(|event: &(u64, u64)| event.0)
            .window(
                WindowKind::Tumbling {
                    size: Duration::from_secs(1),
                },
                |event| event.1,
            )
            .count("count")?
            .sink(|_, _| {});
        Ok(())
    })
}

/// Runs `pipeline` over its bounded input to the end (the final checkpoint
/// included); returns events/s from the moment the operators were built.
fn throughput(config: JobConfig, pipeline: PipelineFn) -> anyhow::Result<f64> {
    let control = Arc::new(JobControl::default());
    let report = run_job(config, pipeline, Arc::clone(&control))?;
    let running = control.running_since().context("the job never ran")?;
    Ok(report.records_in as f64 / running.elapsed().as_secs_f64())
}

struct StateRun {
    state_mb: u64,
    keys: u64,
    from: u32,
    to: u32,
    savepoint_bytes: u64,
    build_seconds: f64,
    savepoint_seconds: f64,
    restore_seconds: f64,
}

/// Builds about `state_mb` MB of keyed state at parallelism `from`, stops with a
/// savepoint, and restores it at parallelism `to`.
fn savepoint_and_restore(
    dir: &Path,
    state_mb: u64,
    from: u32,
    to: u32,
) -> anyhow::Result<StateRun> {
    let keys = state_mb * 1_000_000 / (VALUE_BYTES as u64 + 8);
    let keys = keys.next_multiple_of(u64::from(KEYED_STATE_SPLITS));
    // The `keyed-state` pipeline: one incompressible value per key, then idle.
    let pipeline = keyed_state(keys, VALUE_BYTES, None);
    let name = format!("state-{state_mb}");
    let dir = dir.join(&name);
    let control = Arc::new(JobControl::default());
    let build = {
        let control = Arc::clone(&control);
        let config = config(
            &dir,
            &name,
            from,
            Duration::from_secs(3600),
            RestoreFrom::Nothing,
        );
        let pipeline = Arc::clone(&pipeline);
        thread::spawn(move || run_job(config, pipeline, control))
    };
    let started = Instant::now();
    while control.records_in() < keys {
        if build.is_finished() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let build_seconds = started.elapsed().as_secs_f64();
    let stop = Instant::now();
    control.request_stop();
    let built: JobReport = build.join().expect("job thread")?;
    let savepoint_seconds = stop.elapsed().as_secs_f64();
    let savepoint = built
        .snapshots
        .savepoints
        .last()
        .context("no savepoint was taken")?
        .clone();

    let restore_control = Arc::new(JobControl::default());
    let restore_started = Instant::now();
    let restore_config = config(
        &dir,
        &name,
        to,
        Duration::from_secs(3600),
        RestoreFrom::Snapshot(savepoint.location.clone()),
    );
    let restore = {
        let control = Arc::clone(&restore_control);
        thread::spawn(move || run_job(restore_config, pipeline, control))
    };
    let running = loop {
        if let Some(running) = restore_control.running_since() {
            break running;
        }
        if restore.is_finished() {
            restore.join().expect("job thread")?;
            bail!("the restored job ended before it ran");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let restore_seconds = running.duration_since(restore_started).as_secs_f64();
    restore_control.request_stop();
    let restored = restore.join().expect("job thread")?;
    if restored.records_in != 0 {
        bail!(
            "the restored job read {} records again",
            restored.records_in
        );
    }
    Ok(StateRun {
        state_mb,
        keys,
        from,
        to,
        savepoint_bytes: savepoint.state_bytes,
        build_seconds,
        savepoint_seconds,
        restore_seconds,
    })
}

/// Strom's allocator (`strom_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: strom_runtime::Allocator = strom_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("STROM_LOG").is_some() {
        // The runtime's log of the jobs run in this process, when asked for
        // (e.g. `STROM_LOG=strom_runtime::connectors=debug`).
        strom_runtime::logging::init(strom_runtime::logging::LogFormat::Text);
    }
    let cores = thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let parallelisms = if args.parallelism.is_empty() {
        let mut all = vec![1, cores];
        all.dedup();
        all
    } else {
        args.parallelism.clone()
    };
    let scratch = tempfile::tempdir()?;
    let dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    if let Some(script) = &args.run_script {
        let parallelism = parallelisms.first().copied().unwrap_or(1);
        if let Some(out) = &args.latency_out {
            return latency::run_script(&dir, script, parallelism, out);
        }
        return compare::run_script(&dir, script, parallelism, args.checkpoints);
    }
    let (suite, section) = match args.suite {
        Suite::Runtime => {
            let section = runtime_suite(&args, cores, &parallelisms, &dir)?;
            if !args.query.is_empty() {
                return Ok(());
            }
            ("runtime", section)
        }
        Suite::Sql => {
            let runs = sql::run(&dir, args.seconds, &parallelisms, &args.query)?;
            let section = sql::report(&runs, args.seconds, cores)?;
            println!("{section}");
            if !args.query.is_empty() {
                return Ok(());
            }
            ("sql", section)
        }
        Suite::Compare => {
            let comparisons = compare::run(
                &dir,
                &args.flink_project,
                args.events,
                args.seconds,
                &parallelisms,
                &args.query,
            )?;
            let chart = "benchmarks/compare.png";
            let report_dir = args.report.parent().unwrap_or(Path::new("."));
            compare::chart(&comparisons, &report_dir.join(chart))?;
            let section = compare::report(
                &comparisons,
                args.events,
                args.seconds,
                cores,
                &versions(),
                chart,
            )?;
            println!("{section}");
            if !args.query.is_empty() {
                return Ok(());
            }
            ("compare", section)
        }
        Suite::Latency => {
            let flink = java::JavaProject::build(&args.flink_project)?;
            let comparisons = latency::run(
                &dir,
                &flink,
                args.rate,
                args.seconds,
                &parallelisms,
                &args.query,
            )?;
            let chart = "benchmarks/latency.png";
            let report_dir = args.report.parent().unwrap_or(Path::new("."));
            latency::chart(&comparisons, &report_dir.join(chart))?;
            let section = latency::report(
                &comparisons,
                args.rate,
                args.seconds,
                cores,
                &versions(),
                chart,
            )?;
            println!("{section}");
            if !args.query.is_empty() {
                return Ok(());
            }
            ("latency", section)
        }
        Suite::Rescale => {
            let [from, to] = parallelisms[..] else {
                bail!("--suite rescale takes two parallelisms: --parallelism FROM,TO");
            };
            let flink = java::JavaProject::build(&args.flink_project)?;
            let runs = rescale::run(&flink, &args.state_mb, from, to)?;
            let section = rescale::report(&runs, from, to, &versions())?;
            println!("{section}");
            ("rescale", section)
        }
        Suite::Kafka => {
            let kstreams = if args.without_kstreams {
                None
            } else {
                Some(java::JavaProject::build(&args.kstreams_project)?)
            };
            let repeats = args.kafka_repeats.max(1);
            let runs = kafka::run(
                &dir,
                args.kafka_events,
                &parallelisms,
                repeats,
                kstreams.as_ref(),
            )?;
            let section = kafka::report(&runs, args.kafka_events, repeats, cores)?;
            println!("{section}");
            ("kafka", section)
        }
    };
    let old = std::fs::read_to_string(&args.report).unwrap_or_default();
    if let Some(parent) = args.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.report, report::with_section(&old, suite, &section))
        .with_context(|| format!("cannot write {}", args.report.display()))?;
    println!("\nwritten to {}", args.report.display());
    Ok(())
}

/// The versions of what runs: Strom's, and Java's (Flink's is fixed by its project).
fn versions() -> String {
    let java = std::process::Command::new("java")
        .arg("-version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "java: unknown".to_owned());
    format!(
        "Strom {}, Apache Flink 2.3.0, {java}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Throughput on generated input, and savepoint and restore times: the report's
/// `runtime` part.
fn runtime_suite(
    args: &Args,
    cores: u32,
    parallelisms: &[u32],
    dir: &Path,
) -> anyhow::Result<String> {
    let dir = dir.to_path_buf();
    let parallelisms = parallelisms.to_vec();
    let mut report = String::new();
    writeln!(
        report,
        "Written by `cargo run --release -p strom-bench -- --seconds {} --state-mb {}` on a machine with {cores} cores. \
         State on the local file system (`file://`); RocksDB with LZ4.\n",
        args.seconds,
        args.state_mb
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )?;

    writeln!(report, "## Throughput\n")?;
    writeln!(
        report,
        "Bounded generated input sized to last about {} s, run to its end (final checkpoint included); \
         events/s from the moment the operators were built, and per core (= per worker). \
         Keyed: running count per key of {KEYS} keys in RocksDB. Keyed window: count per key \
         in one-second tumbling event-time windows, the source's subtasks aligned within 1 s of event \
         time (`EventTimes::max_drift`).\n",
        args.seconds
    )?;
    writeln!(
        report,
        "| pipeline | parallelism | checkpoints | events | events/s | events/s/core | vs. no checkpoints |"
    )?;
    writeln!(report, "|---|---:|---|---:|---:|---:|---:|")?;
    type Make = fn(u64) -> PipelineFn;
    for (name, make) in [
        ("stateless", stateless as Make),
        ("keyed count", keyed_count as Make),
        ("keyed window count", windowed_count as Make),
    ] {
        if !args.query.is_empty()
            && !args
                .query
                .iter()
                .any(|query| name.starts_with(query.as_str()))
        {
            continue;
        }
        for &parallelism in &parallelisms {
            // Size the input so the runs last about --seconds: calibrate on a run
            // of at least a second.
            let mut calibration_events = 1_000_000;
            let rate = loop {
                let calibration = config(
                    &dir,
                    "calibration",
                    parallelism,
                    NO_CHECKPOINTS,
                    RestoreFrom::Nothing,
                );
                let started = Instant::now();
                let rate = throughput(calibration, make(calibration_events))?;
                if started.elapsed() >= Duration::from_secs(1) {
                    break rate;
                }
                calibration_events *= 4;
            };
            let events = (rate * args.seconds as f64) as u64;
            let mut without = None;
            for (label, interval) in [
                ("none", NO_CHECKPOINTS),
                ("every 10 s", Duration::from_secs(10)),
            ] {
                let run_name = format!(
                    "{}-{parallelism}-{}",
                    name.replace(' ', "-"),
                    interval.as_secs()
                );
                let config = config(&dir, &run_name, parallelism, interval, RestoreFrom::Nothing);
                let rate = throughput(config, make(events))?;
                let ratio =
                    without.map_or("1.00".to_owned(), |base: f64| format!("{:.2}", rate / base));
                without.get_or_insert(rate);
                let line = format!(
                    "| {name} | {parallelism} | {label} | {events} | {rate:.0} | {:.0} | {ratio} |",
                    rate / f64::from(parallelism)
                );
                println!("{line}");
                writeln!(report, "{line}")?;
            }
        }
    }

    writeln!(report, "\n## Savepoint and restore at a new parallelism\n")?;
    writeln!(
        report,
        "Keyed state of {VALUE_BYTES}-byte incompressible values. Savepoint: stop with savepoint (final checkpoint, \
         upload, copy into a self-contained folder). Restore: from the start of the new run until every operator has \
         its state (download of the table files holding its key groups, added to a new store as they are).\n"
    )?;
    writeln!(
        report,
        "| state | keys | savepoint size | from → to | build | savepoint | restore |"
    )?;
    writeln!(report, "|---:|---:|---:|---|---:|---:|---:|")?;
    let (from, to) = (cores.max(2), 1);
    let state_sizes = if args.query.is_empty() {
        &args.state_mb[..]
    } else {
        &[]
    };
    for &state_mb in state_sizes {
        let run = savepoint_and_restore(&dir, state_mb, from, to)?;
        let line = format!(
            "| {} MB | {} | {:.0} MB | {} → {} | {:.1} s | {:.1} s | {:.1} s |",
            run.state_mb,
            run.keys,
            run.savepoint_bytes as f64 / 1e6,
            run.from,
            run.to,
            run.build_seconds,
            run.savepoint_seconds,
            run.restore_seconds
        );
        println!("{line}");
        writeln!(report, "{line}")?;
    }
    Ok(report)
}
