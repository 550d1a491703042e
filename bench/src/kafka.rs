//! Kafka benchmarks on a running cluster (`e2e/infra/stack.sh up`, cluster A):
//! raw librdkafka produce, consume and consume-then-produce loops as the baseline,
//! and Strom jobs on the same brokers — a passthrough (at least once and exactly
//! once) and a keyed aggregation — as events/s and ratios to the baseline.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_runtime::api::Pipeline;
use strom_runtime::connectors::kafka::{
    ClusterConnection, KafkaOutput, KafkaRecord, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use strom_runtime::exec::{JobControl, PipelineFn, RestoreFrom, run_job};

use crate::config;
use crate::java::{JavaProject, Measured};

/// Partitions of the benchmark topics.
const PARTITIONS: i32 = 8;
/// Bytes of each record's value.
const VALUE_BYTES: usize = 100;
/// Distinct keys of the input.
const KEYS: u64 = 10_000;
/// How many records the raw loops send between serving their producer's delivery
/// reports (the Strom sink serves them once per batch of records).
const SERVE_EVERY: u64 = 1000;
/// Checkpoints (and so exactly-once commits) in the Strom runs.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// One measured run, or the repetitions of one Strom job.
pub struct KafkaRun {
    what: String,
    parallelism: Option<u32>,
    events: u64,
    /// Seconds of each repetition, in the order run.
    seconds: Vec<f64>,
    baseline: Baseline,
}

/// What a run is compared with.
enum Baseline {
    None,
    /// The raw ceiling's events/s.
    RawCeiling(f64),
    /// The events/s of each repetition of the same job at least once, run just
    /// before this job's repetition of the same number.
    AtLeastOnce(Vec<f64>),
}

impl KafkaRun {
    fn once(what: impl Into<String>, parallelism: Option<u32>, events: u64, seconds: f64) -> Self {
        Self {
            what: what.into(),
            parallelism,
            events,
            seconds: vec![seconds],
            baseline: Baseline::None,
        }
    }

    /// Events/s of each repetition.
    fn rates(&self) -> Vec<f64> {
        self.seconds
            .iter()
            .map(|seconds| self.events as f64 / seconds)
            .collect()
    }

    /// Events/s over the median repetition's time.
    fn rate(&self) -> f64 {
        self.events as f64 / median(&self.seconds)
    }

    /// The ratio to the baseline.
    fn ratio(&self) -> Option<Ratio> {
        match &self.baseline {
            Baseline::None => None,
            Baseline::RawCeiling(ceiling) => Some(Ratio {
                median: self.rate() / ceiling,
                range: None,
                to: "raw ceiling: the slower of raw produce and raw consume",
            }),
            Baseline::AtLeastOnce(theirs) => {
                let ratios: Vec<f64> = self
                    .rates()
                    .iter()
                    .zip(theirs)
                    .map(|(ours, theirs)| ours / theirs)
                    .collect();
                Some(Ratio {
                    median: median(&ratios),
                    range: (ratios.len() > 1).then(|| min_max(&ratios)),
                    to: "at least once",
                })
            }
        }
    }
}

/// A run's ratio to its baseline.
struct Ratio {
    /// The median of the repetitions' ratios.
    median: f64,
    /// Their lowest and highest, when there are several.
    range: Option<(f64, f64)>,
    /// What it is a ratio to.
    to: &'static str,
}

/// The median of `values` (the mean of the middle two of an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// The benchmark's connection to cluster A, from `STROM_KAFKA_A_BOOTSTRAP`.
fn cluster_a() -> anyhow::Result<ClusterConnection> {
    let bootstrap = std::env::var("STROM_KAFKA_A_BOOTSTRAP").context(
        "STROM_KAFKA_A_BOOTSTRAP is not set: start the test services \
         (e2e/infra/stack.sh up) and source ~/.cache/strom/run/env.sh",
    )?;
    Ok(ClusterConnection::from_properties(
        "a",
        [("bootstrap.servers".to_owned(), bootstrap)],
    ))
}

fn create_topic(a: &ClusterConnection, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = a.client_config([]).create()?;
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for result in results {
        result.map_err(|(topic, error)| anyhow::anyhow!("creating {topic}: {error}"))?;
    }
    Ok(())
}

/// Deletes `topic` and the topics Kafka Streams made for an application named
/// after it (`bench-<topic>-...`): the broker would keep every record of every
/// run otherwise, tens of GB for one suite (its data goes with the next
/// `stack.sh up` too).
fn delete_topic(a: &ClusterConnection, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = a.client_config([]).create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))?;
    let internal = format!("bench-{topic}-");
    let doomed: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|found| found.name())
        .filter(|name| *name == topic || name.starts_with(&internal))
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    let results = futures::executor::block_on(admin.delete_topics(&doomed, &AdminOptions::new()))?;
    for result in results {
        result.map_err(|(topic, error)| anyhow::anyhow!("deleting {topic}: {error}"))?;
    }
    Ok(())
}

/// A producer set as the Strom sinks set theirs (idempotent, 5 ms linger).
fn producer(a: &ClusterConnection) -> anyhow::Result<BaseProducer> {
    Ok(a.client_config([
        ("enable.idempotence", "true".to_owned()),
        ("linger.ms", "5".to_owned()),
    ])
    .create()?)
}

/// Sends a record, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                producer.poll(Duration::from_millis(1));
                record = returned;
            }
            Err((error, _)) => bail!("producing: {error}"),
        }
    }
}

/// A consumer of every partition of `topic` from its beginning, as the Strom
/// source reads (assigned, no group membership).
fn consumer(a: &ClusterConnection, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = a
        .client_config([
            ("group.id", format!("bench-{topic}")),
            ("enable.auto.commit", "false".to_owned()),
        ])
        .create()?;
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

fn key_of(n: u64) -> String {
    format!("key-{}", n % KEYS)
}

/// Writes `events` records to `topic` with a raw producer; the first baseline.
fn raw_produce(a: &ClusterConnection, topic: &str, events: u64) -> anyhow::Result<KafkaRun> {
    let producer = producer(a)?;
    let value = [b'x'; VALUE_BYTES];
    let started = Instant::now();
    for n in 0..events {
        let key = key_of(n);
        send(
            &producer,
            BaseRecord::to(topic)
                .key(key.as_bytes())
                .payload(&value[..]),
        )?;
        if n % SERVE_EVERY == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(KafkaRun::once(
        "raw librdkafka produce",
        None,
        events,
        started.elapsed().as_secs_f64(),
    ))
}

/// Reads `events` records of `topic` with a raw consumer.
fn raw_consume(a: &ClusterConnection, topic: &str, events: u64) -> anyhow::Result<KafkaRun> {
    let consumer = consumer(a, topic)?;
    let started = Instant::now();
    let mut read = 0;
    let mut bytes = 0;
    while read < events {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            bytes += message?.payload().map_or(0, <[u8]>::len);
            read += 1;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("read only {read} of {events} records in 5 minutes");
        }
    }
    std::hint::black_box(bytes);
    Ok(KafkaRun::once(
        "raw librdkafka consume",
        None,
        events,
        started.elapsed().as_secs_f64(),
    ))
}

/// Copies `events` records of `from` to `to` in one loop of a raw consumer and
/// producer: the baseline of the Strom passthrough.
fn raw_copy(a: &ClusterConnection, from: &str, to: &str, events: u64) -> anyhow::Result<KafkaRun> {
    let consumer = consumer(a, from)?;
    let producer = producer(a)?;
    let started = Instant::now();
    let mut copied = 0;
    while copied < events {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            let mut record = BaseRecord::to(to);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(value) = message.payload() {
                record = record.payload(value);
            }
            send(&producer, record)?;
            copied += 1;
            if copied % SERVE_EVERY == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("copied only {copied} of {events} records in 5 minutes");
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(KafkaRun::once(
        "raw librdkafka consume + produce",
        None,
        events,
        started.elapsed().as_secs_f64(),
    ))
}

/// What a job does with the input (on Strom, and on Kafka Streams).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Copies every record, at least once.
    Passthrough,
    /// Copies every record, exactly once.
    PassthroughExactlyOnce,
    /// Counts records per key (RocksDB state) and writes each running count.
    KeyedCount,
    /// The keyed count, exactly once.
    KeyedCountExactlyOnce,
}

impl Job {
    const ALL: [Job; 4] = [
        Job::Passthrough,
        Job::PassthroughExactlyOnce,
        Job::KeyedCount,
        Job::KeyedCountExactlyOnce,
    ];

    /// What the job is, without the system.
    fn what(self) -> &'static str {
        match self {
            Self::Passthrough => "passthrough, at least once",
            Self::PassthroughExactlyOnce => "passthrough, exactly once",
            Self::KeyedCount => "keyed count, at least once",
            Self::KeyedCountExactlyOnce => "keyed count, exactly once",
        }
    }

    fn describe(self) -> String {
        format!("Strom {}", self.what())
    }

    fn exactly_once(self) -> bool {
        matches!(
            self,
            Self::PassthroughExactlyOnce | Self::KeyedCountExactlyOnce
        )
    }

    fn counts(self) -> bool {
        matches!(self, Self::KeyedCount | Self::KeyedCountExactlyOnce)
    }

    /// The same job at least once.
    fn at_least_once(self) -> Self {
        if self.counts() {
            Self::KeyedCount
        } else {
            Self::Passthrough
        }
    }
}

/// Runs `job` over all of `from` (bounded) into `to` at `parallelism`: the records
/// it read and the seconds from the moment its operators were built to its end,
/// final checkpoint included.
fn strom_run(
    dir: &Path,
    a: &ClusterConnection,
    from: &str,
    to: &str,
    job: Job,
    parallelism: u32,
) -> anyhow::Result<(u64, f64)> {
    let (a, from_topic, to_topic) = (a.clone(), from.to_owned(), to.to_owned());
    let pipeline: PipelineFn = Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut source = KafkaSourceConfig::new(a.clone(), &[from_topic.as_str()], "bench");
        source.bounded = true;
        let mut sink = KafkaSinkConfig::new(a.clone(), &to_topic, "bench");
        if job.exactly_once() {
            sink = sink.exactly_once();
        }
        let records = pipeline.source("in", KafkaSource::new(source))?;
        if job.counts() {
            records
                .map(|record: KafkaRecord| record.key.unwrap_or_default())
                .key_by(|key: &Vec<u8>| key.clone())
                .count("count")?
                .sink_kafka("out", sink, |(key, count): &(Vec<u8>, u64)| KafkaOutput {
                    key: Some(key.clone()),
                    value: Some(count.to_string().into_bytes()),
                    ..KafkaOutput::default()
                })?;
        } else {
            records.sink_kafka("out", sink, |record: &KafkaRecord| KafkaOutput {
                key: record.key.clone(),
                value: record.value.clone(),
                ..KafkaOutput::default()
            })?;
        }
        Ok(())
    });
    let name = format!("kafka-{to}");
    let config = config(
        dir,
        &name,
        parallelism,
        CHECKPOINT_INTERVAL,
        RestoreFrom::Nothing,
    );
    let control = Arc::new(JobControl::default());
    let report = run_job(config, pipeline, Arc::clone(&control))?;
    let running = control.running_since().context("the job never ran")?;
    Ok((report.records_in, running.elapsed().as_secs_f64()))
}

/// Runs `job` on Kafka Streams (`bench/kstreams`) with `threads` stream threads
/// over all of `from` into `to`: from the application's start until its
/// committed offsets reach the input's end (commits every second, as Strom's
/// checkpoints).
#[allow(clippy::too_many_arguments)]
fn kstreams_run(
    streams: &JavaProject,
    bootstrap: &str,
    from: &str,
    to: &str,
    job: Job,
    threads: u32,
    events: u64,
    dir: &Path,
) -> anyhow::Result<KafkaRun> {
    let state = dir.join(format!("kstreams-{to}"));
    let mut command = streams.java("strom.bench.kstreams.Run");
    command
        .args(["--bootstrap", bootstrap, "--input", from, "--output", to])
        .args(["--job", if job.counts() { "count" } else { "passthrough" }])
        .args([
            "--guarantee",
            if job.exactly_once() {
                "exactly_once_v2"
            } else {
                "at_least_once"
            },
        ])
        .args(["--threads", &threads.to_string()])
        .args(["--events", &events.to_string()])
        .arg("--state-dir")
        .arg(&state)
        .args(["--application-id", &format!("bench-{to}")]);
    let measured = Measured::parse(&streams.output(command)?)?;
    Ok(KafkaRun::once(
        format!("Kafka Streams {}", job.what()),
        Some(threads),
        measured.events,
        measured.seconds,
    ))
}

/// Runs the Kafka benchmarks over `events` records at each of `parallelisms`:
/// each Strom job `repeats` times, the jobs taking turns (so that what else the
/// machine does weighs on all of them alike), and the same jobs once each on
/// Kafka Streams when `kstreams` is given.
pub fn run(
    dir: &Path,
    events: u64,
    parallelisms: &[u32],
    repeats: u32,
    kstreams: Option<&JavaProject>,
) -> anyhow::Result<Vec<KafkaRun>> {
    let a = cluster_a()?;
    let bootstrap = std::env::var("STROM_KAFKA_A_BOOTSTRAP")?;
    let run_id = std::process::id();
    let input = format!("bench-in-{run_id}");
    create_topic(&a, &input)?;
    let mut runs = Vec::new();
    let produce = raw_produce(&a, &input, events)?;
    let consume = raw_consume(&a, &input, events)?;
    // A passthrough can go no faster than the slower of its two halves.
    let raw_ceiling = produce.rate().min(consume.rate());
    runs.extend([produce, consume]);
    let copy = format!("bench-raw-copy-{run_id}");
    create_topic(&a, &copy)?;
    runs.push(raw_copy(&a, &input, &copy, events)?);
    delete_topic(&a, &copy)?;
    let mut outputs = 0;
    for &parallelism in parallelisms {
        let mut strom: Vec<KafkaRun> = Job::ALL
            .iter()
            .map(|job| KafkaRun {
                seconds: Vec::new(),
                ..KafkaRun::once(job.describe(), Some(parallelism), events, 0.0)
            })
            .collect();
        for repetition in 1..=repeats {
            for (job, run) in Job::ALL.iter().zip(&mut strom) {
                outputs += 1;
                let output = format!("bench-out-{run_id}-{parallelism}-{outputs}");
                create_topic(&a, &output)?;
                let (read, seconds) = strom_run(dir, &a, &input, &output, *job, parallelism)?;
                delete_topic(&a, &output)?;
                if read != events {
                    bail!("{} read {read} of {events} records", job.describe());
                }
                run.seconds.push(seconds);
                println!(
                    "{} at {parallelism} ({repetition} of {repeats}): {:.0} events/s",
                    run.what,
                    events as f64 / seconds
                );
            }
        }
        for (index, job) in Job::ALL.iter().enumerate() {
            strom[index].baseline = if job.exactly_once() {
                let theirs = Job::ALL
                    .iter()
                    .position(|other| *other == job.at_least_once())
                    .expect("every job has an at-least-once form");
                Baseline::AtLeastOnce(strom[theirs].rates())
            } else {
                Baseline::RawCeiling(raw_ceiling)
            };
        }
        runs.extend(strom);
        if let Some(streams) = kstreams {
            for job in Job::ALL {
                let output = format!("bench-kstreams-{run_id}-{parallelism}-{}", runs.len());
                create_topic(&a, &output)?;
                let run = kstreams_run(
                    streams,
                    &bootstrap,
                    &input,
                    &output,
                    job,
                    parallelism,
                    events,
                    dir,
                )?;
                delete_topic(&a, &output)?;
                println!("{} at {parallelism}: {:.0} events/s", run.what, run.rate());
                runs.push(run);
            }
        }
    }
    delete_topic(&a, &input)?;
    Ok(runs)
}

/// The Markdown section of the Kafka runs.
pub fn report(runs: &[KafkaRun], events: u64, repeats: u32, cores: u32) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(out, "## Kafka\n")?;
    writeln!(
        out,
        "Written by `cargo run --release -p strom-bench -- --suite kafka --kafka-events {events} \
         --kafka-repeats {repeats}` on a machine with {cores} cores, against the plaintext \
         test cluster of `e2e/infra` (one KRaft broker on the same machine). {events} \
         records of {VALUE_BYTES} bytes with {KEYS} distinct keys in a topic of \
         {PARTITIONS} partitions; Strom jobs read it bounded (to the end it had at start) \
         and write another {PARTITIONS}-partition topic, checkpointing every {} s. \
         Producers are idempotent with a 5 ms linger in every run. Each Strom job ran \
         {repeats} times, the four jobs taking turns: seconds and events/s are the \
         median run's, the range the slowest and fastest run's events/s; an exactly-once \
         job's ratio is the median of its runs' ratios to the at-least-once run just \
         before each (their lowest and highest in brackets). The raw loops ran once.\n",
        CHECKPOINT_INTERVAL.as_secs()
    )?;
    writeln!(
        out,
        "| run | parallelism | events | seconds | events/s | range (events/s) | ratio | ratio to |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|")?;
    for run in runs
        .iter()
        .filter(|run| !run.what.starts_with("Kafka Streams"))
    {
        let (ratio, to) = match run.ratio() {
            Some(Ratio {
                median,
                range: None,
                to,
            }) => (format!("{median:.2}"), to),
            Some(Ratio {
                median,
                range: Some((low, high)),
                to,
            }) => (format!("{median:.2} ({low:.2}–{high:.2})"), to),
            None => (String::new(), ""),
        };
        let rates = run.rates();
        let range = if rates.len() > 1 {
            let (low, high) = min_max(&rates);
            format!("{low:.0}–{high:.0}")
        } else {
            String::new()
        };
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.0} | {range} | {ratio} | {to} |",
            run.what,
            run.parallelism
                .map_or("1 thread".to_owned(), |p| p.to_string()),
            run.events,
            median(&run.seconds),
            run.rate(),
        )?;
    }
    writeln!(out)?;
    let streams: Vec<&KafkaRun> = runs
        .iter()
        .filter(|run| run.what.starts_with("Kafka Streams"))
        .collect();
    if !streams.is_empty() {
        writeln!(
            out,
            "Kafka Streams {KSTREAMS_VERSION} on the same input, into topics of its own, \
             each job once (Strom: its median run above): \
             `bench/kstreams`, one stream thread per core of Strom's parallelism, commits \
             every second (Strom: checkpoints every second), `statestore.cache.max.bytes` 0 \
             (every running count written, as Strom writes them), RocksDB stores. Time from \
             the application's start until its committed offsets reach the input's end \
             (looked at every 100 ms, so about ±1 s; start-up and the group's first \
             rebalance included).\n"
        )?;
        writeln!(
            out,
            "| job | parallelism | Strom events/s | Kafka Streams events/s | Strom / Kafka Streams |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|")?;
        for theirs in streams {
            let job = theirs.what.trim_start_matches("Kafka Streams ");
            let Some(ours) = runs.iter().find(|run| {
                run.parallelism == theirs.parallelism && run.what == format!("Strom {job}")
            }) else {
                continue;
            };
            writeln!(
                out,
                "| {job} | {} | {:.0} | {:.0} | {:.2} |",
                theirs.parallelism.unwrap_or(1),
                ours.rate(),
                theirs.rate(),
                ours.rate() / theirs.rate()
            )?;
        }
        writeln!(out)?;
    }
    Ok(out)
}

/// The Kafka Streams version of `bench/kstreams`.
const KSTREAMS_VERSION: &str = "4.4.0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exactly_once_ratio_is_the_median_of_each_repetitions_ratio_to_the_run_before() {
        let mut run = KafkaRun::once("Strom passthrough, exactly once", Some(2), 1000, 0.0);
        // 500, 250 and 1000 events/s against 1000, 500 and 1000: ratios 0.5, 0.5, 1.
        run.seconds = vec![2.0, 4.0, 1.0];
        run.baseline = Baseline::AtLeastOnce(vec![1000.0, 500.0, 1000.0]);
        let ratio = run.ratio().unwrap();
        assert_eq!((ratio.median, ratio.range), (0.5, Some((0.5, 1.0))));
        assert_eq!(ratio.to, "at least once");
        // The median run's time: 2 s.
        assert_eq!(run.rate(), 500.0);
        assert_eq!(median(&[3.0, 1.0, 4.0, 2.0]), 2.5);

        run.baseline = Baseline::RawCeiling(250.0);
        let ratio = run.ratio().unwrap();
        assert_eq!((ratio.median, ratio.range), (2.0, None));
    }
}
