//! Issue 14, acceptance: one job driven through random sequences of runs — from
//! nothing, resumed from its latest checkpoint, restored from a savepoint (older
//! ones too), at random parallelisms — each ended by kill -9, by a stop with a
//! savepoint, or by the end of its input, writing to the exactly-once file sink and
//! (with the test Kafka clusters, as in CI) the exactly-once Kafka sink. After every
//! step the committed output of both is what the runs imply, and after a last run to
//! the end, exactly that:
//!
//! every run R adds the lines of the counts between its restored point P_R (nothing
//! for a run from empty state) and its last completed checkpoint L_R: line
//! `user U: N clicks` once for each run with count_P_R(U) < N <= count_L_R(U).
//! Nothing is lost, and a line appears twice only where a run went back to a point
//! before it.
//!
//! `STROM_LINEAGE_SEQUENCES` sets how many sequences run (50 by default; the soak
//! command in docs/testing.md runs 1000), `STROM_LINEAGE_SEED` the first seed, and
//! `STROM_LINEAGE_KAFKA_EVERY` how often a sequence also writes to Kafka (every 5th
//! by default: such a sequence takes about 18 s instead of 4), and
//! `STROM_LINEAGE_THREADS` how many sequences run side by side (4 by default).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::clicks_per_user_output;
use common::kafka::{clusters, clusters_yaml, connection, consume_available, create_topic, unique};
use strom_e2e::KafkaClusters;
use strom_runtime::connectors::kafka::ClusterConnection;
use strom_runtime::pipelines::mix;

const SPLITS: u64 = 16;
const PER_SPLIT: u64 = 400;
const USERS: u64 = 40;
const SEED: u64 = 7;

/// Clicks read per split: a point's source positions.
type Positions = BTreeMap<u64, u64>;
/// Running count per user.
type Counts = BTreeMap<u64, u64>;

/// The counts per user after the clicks up to `positions` of each split.
fn counts_at(positions: &Positions) -> Counts {
    let mut counts = Counts::new();
    for (&split, &read) in positions {
        for n in 0..read {
            *counts.entry(mix(SEED, split, n) % USERS).or_default() += 1;
        }
    }
    counts
}

/// The source positions a manifest (JSON) records.
fn positions_in(manifest: &serde_json::Value) -> Positions {
    let mut positions = Positions::new();
    for subtask in manifest["operators"]["clicks"].as_array().unwrap() {
        let state: serde_json::Value =
            serde_json::from_str(subtask["operatorState"].as_str().unwrap()).unwrap();
        for pair in state.as_array().unwrap() {
            let split = pair[0]["index"].as_u64().unwrap();
            positions.insert(split, pair[1].as_u64().unwrap());
        }
    }
    positions
}

/// A tiny deterministic generator (xorshift), so a failing sequence replays.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// How a run starts.
#[derive(Debug, Clone)]
enum Start {
    Empty,
    Resume,
    Savepoint(String),
}

/// How a run ends.
#[derive(Debug, Clone, Copy)]
enum End {
    Kill(Duration),
    Stop(Duration),
    Finish,
}

/// The job's folder: manifest, state, output, logs.
struct Job {
    dir: tempfile::TempDir,
    /// The test clusters and the Kafka topic the results also go to.
    kafka: Option<(KafkaClusters, ClusterConnection, String)>,
    /// Lines of each run so far: (restored counts, last completed counts).
    runs: Vec<(Counts, Counts)>,
    /// The savepoints taken so far.
    savepoints: Vec<String>,
    /// The job's name: its own, so that soaks running side by side never share
    /// transactional ids (which would fence each other).
    name: String,
}

impl Job {
    fn new(kafka: Option<&KafkaClusters>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("lineage");
        let kafka = kafka.map(|clusters| {
            let a = connection(clusters, "a");
            let topic = unique("lineage");
            create_topic(&a, &topic, 2);
            (clusters.clone(), a, topic)
        });
        let (clusters_spec, kafka_output) = match &kafka {
            Some((clusters, _, topic)) => (
                format!("  kafkaClusters:\n{}", clusters_yaml(clusters, 4)),
                format!("      kafkaOutput: a/{topic}\n"),
            ),
            None => (String::new(), String::new()),
        };
        let manifest = format!(
            r#"apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: {name}
spec:
  parallelism: 2
{clusters_spec}  pipeline:
    name: clicks-per-user
    args:
      clicksPerSecond: "5000"
      clicksPerSplit: "{PER_SPLIT}"
      users: "{USERS}"
      seed: "{SEED}"
      outputPath: file://{out}
{kafka_output}  state:
    checkpointInterval: 100ms
    retainedCheckpoints: 2
    storage: file://{state}
"#,
            out = dir.path().join("out").display(),
            state = dir.path().join("state").display(),
        );
        std::fs::write(dir.path().join("job.yaml"), manifest).unwrap();
        Self {
            dir,
            kafka,
            runs: Vec::new(),
            savepoints: Vec::new(),
            name,
        }
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("state").join(&self.name)
    }

    /// The runs recorded in the job's storage, oldest first.
    fn recorded_runs(&self) -> Vec<String> {
        let mut runs: Vec<String> = std::fs::read_dir(self.storage().join("runs"))
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs
    }

    /// The manifest at `url` (a `file://` folder of a checkpoint or savepoint).
    fn manifest_at(url: &str) -> serde_json::Value {
        let dir = url.strip_prefix("file://").unwrap_or(url);
        let text = std::fs::read_to_string(Path::new(dir).join("_manifest"))
            .unwrap_or_else(|error| panic!("manifest of {url}: {error}"));
        serde_json::from_str(&text).unwrap()
    }

    /// The counts of `run`'s newest completed checkpoint, if it completed one.
    fn last_checkpoint_of(&self, run: &str) -> Option<Counts> {
        let prefix = format!("chk-{run}-");
        let mut completed: Vec<PathBuf> = std::fs::read_dir(self.storage())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                let name = path.file_name().unwrap().to_string_lossy();
                name.starts_with(&prefix) && path.join("_manifest").exists()
            })
            .collect();
        completed.sort();
        let newest = completed.pop()?;
        let text = std::fs::read_to_string(newest.join("_manifest")).unwrap();
        Some(counts_at(&positions_in(
            &serde_json::from_str(&text).unwrap(),
        )))
    }

    /// One run, started and ended as asked, at `parallelism`. Records its lines.
    fn run(&mut self, start: &Start, end: End, parallelism: u32, step: usize) {
        let known_runs = self.recorded_runs();
        // Where a resume will go on from, read before the run may collect it.
        let resume_counts = self.newest_point_counts();
        let log = self.dir.path().join(format!("step-{step}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
        command
            .arg("run")
            .arg(self.dir.path().join("job.yaml"))
            .args(["--parallelism", &parallelism.to_string()])
            .arg("--work-dir")
            .arg(self.dir.path().join(format!("work-{step}")))
            .env_remove("FAILPOINTS")
            .env(
                "STROM_SECRETS_DIR",
                self.kafka
                    .as_ref()
                    .map(|(clusters, ..)| clusters.secrets.clone())
                    .unwrap_or_default(),
            )
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        match start {
            Start::Empty => {}
            Start::Resume => {
                command.arg("--resume");
            }
            Start::Savepoint(url) => {
                command.args(["--from-savepoint", url]);
            }
        }
        let mut child = command.spawn().unwrap();
        let logged =
            |suffix: &str| std::fs::read_to_string(log.with_extension(suffix)).unwrap_or_default();
        match end {
            End::Kill(after) => {
                thread::sleep(after);
                child.kill().unwrap();
                child.wait().unwrap();
            }
            End::Stop(after) => {
                // Counted from the job's start: a Ctrl-C before `strom run`
                // handles it (a slow start) would kill it rather than stop it.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !logged("err").contains("job starting") && child.try_wait().unwrap().is_none()
                {
                    assert!(Instant::now() < deadline, "step {step}: no start logged");
                    thread::sleep(Duration::from_millis(20));
                }
                thread::sleep(after);
                let pid = child.id().to_string();
                Command::new("kill").args(["-INT", &pid]).status().unwrap();
                let status = wait(&mut child);
                if status.success() {
                    if let Some(url) = logged("out").lines().find_map(|line| {
                        line.strip_prefix("savepoint: ")
                            .and_then(|rest| rest.split_whitespace().next())
                    }) {
                        self.savepoints.push(url.to_owned());
                    }
                } else {
                    panic!("step {step}: the stop failed: {}", logged("err"));
                }
            }
            End::Finish => {
                let status = wait(&mut child);
                assert!(status.success(), "step {step}: {}", logged("err"));
            }
        }
        let runs = self.recorded_runs();
        let Some(run) = runs.iter().find(|run| !known_runs.contains(run)) else {
            // Killed before it recorded its run: it wrote nothing.
            return;
        };
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.storage().join("runs").join(run)).unwrap(),
        )
        .unwrap();
        let restored = match (start, record["restoredFrom"].as_str()) {
            (_, None) => Counts::new(),
            (Start::Resume, Some(_)) => resume_counts.clone().expect("a point to resume"),
            (_, Some(url)) => counts_at(&positions_in(&Self::manifest_at(url))),
        };
        let last = self
            .last_checkpoint_of(run)
            .unwrap_or_else(|| restored.clone());
        self.runs.push((restored, last));
    }

    /// The counts a resume goes on from now: the newest run's newest checkpoint,
    /// or where that run started.
    fn newest_point_counts(&self) -> Option<Counts> {
        let runs = self.recorded_runs();
        let newest = runs.last()?;
        if let Some(counts) = self.last_checkpoint_of(newest) {
            return Some(counts);
        }
        let index = self.runs.len().checked_sub(1)?;
        Some(self.runs[index].0.clone())
    }

    /// The committed lines the runs so far imply: line (user, count) once per run
    /// whose segment covers it.
    fn expected(&self) -> BTreeMap<(u64, u64), u32> {
        let mut lines = BTreeMap::new();
        for (restored, last) in &self.runs {
            for (&user, &to) in last {
                let from = restored.get(&user).copied().unwrap_or(0);
                for count in from + 1..=to {
                    *lines.entry((user, count)).or_insert(0) += 1;
                }
            }
        }
        lines
    }

    fn committed(&self) -> BTreeMap<(u64, u64), u32> {
        clicks_per_user_output(&self.dir.path().join("out"))
    }

    /// The result lines in the Kafka topic for `read_committed` readers, if the job
    /// writes one.
    fn committed_in_kafka(&self) -> Option<BTreeMap<(u64, u64), u32>> {
        let (_, a, topic) = self.kafka.as_ref()?;
        let mut lines = BTreeMap::new();
        for value in consume_available(a, topic, 2) {
            let rest = value.strip_prefix("user ").unwrap();
            let (user, clicks) = rest.split_once(": ").unwrap();
            let clicks = clicks.trim_end_matches(" clicks").parse().unwrap();
            *lines.entry((user.parse().unwrap(), clicks)).or_insert(0) += 1;
        }
        Some(lines)
    }
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("a run did not end within a minute");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The lines of `committed` that are not as `expected` says, at most ten.
fn differences(
    committed: &BTreeMap<(u64, u64), u32>,
    expected: &BTreeMap<(u64, u64), u32>,
    exact: bool,
) -> Vec<String> {
    let mut found = Vec::new();
    for (line, &times) in committed {
        let want = expected.get(line).copied().unwrap_or(0);
        if times > want {
            found.push(format!(
                "user {} count {}: {times} times, at most {want}",
                line.0, line.1
            ));
        }
    }
    if exact {
        for (line, &want) in expected {
            let times = committed.get(line).copied().unwrap_or(0);
            if times < want {
                found.push(format!(
                    "user {} count {}: {times} times, {want} expected",
                    line.0, line.1
                ));
            }
        }
    }
    found.truncate(10);
    found
}

/// One random sequence of runs, then a run to the end; panics with the steps taken
/// when the output is not what they imply.
fn sequence(seed: u64, kafka: Option<&KafkaClusters>) {
    let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut job = Job::new(kafka);
    let mut steps = Vec::new();
    let count = 2 + random.below(4) as usize;
    for step in 0..=count {
        let last = step == count;
        let start = match random.below(6) {
            _ if step == 0 => Start::Empty,
            _ if last => Start::Resume,
            0 => Start::Empty,
            1 | 2 if !job.savepoints.is_empty() => {
                let index = random.below(job.savepoints.len() as u64) as usize;
                Start::Savepoint(job.savepoints[index].clone())
            }
            _ => Start::Resume,
        };
        let after = Duration::from_millis(200 + random.below(1200));
        let end = match random.below(3) {
            _ if last => End::Finish,
            0 => End::Kill(after),
            1 => End::Stop(after),
            _ => End::Finish,
        };
        let parallelism = 1 + random.below(3) as u32;
        steps.push(format!("{start:?} at {parallelism}, {end:?}"));
        job.run(&start, end, parallelism, step);
        // A killed run's last checkpoint may be committed only when the next run
        // starts: until the end, nothing may be there more often than implied.
        let expected = job.expected();
        let wrong = differences(&job.committed(), &expected, last);
        assert!(
            wrong.is_empty(),
            "seed {seed}, file sink, after step {step} of {steps:#?}:\n{}",
            wrong.join("\n")
        );
        if let Some(in_kafka) = job.committed_in_kafka() {
            let wrong = differences(&in_kafka, &expected, last);
            assert!(
                wrong.is_empty(),
                "seed {seed}, Kafka sink, after step {step} of {steps:#?}:\n{}",
                wrong.join("\n")
            );
        }
    }
    // The last run read everything: its lineage counted every click once.
    let everything: Positions = (0..SPLITS).map(|split| (split, PER_SPLIT)).collect();
    let (_, last) = job.runs.last().expect("runs");
    assert_eq!(
        *last,
        counts_at(&everything),
        "seed {seed}: the final counts are not those of the input ({steps:#?})"
    );
}

#[test]
fn committed_output_is_what_the_restored_points_imply_across_random_sequences() {
    let sequences: u64 = std::env::var("STROM_LINEAGE_SEQUENCES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(50);
    let first: u64 = std::env::var("STROM_LINEAGE_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    // The Kafka sink's runs take seconds more each (transactional ids fenced,
    // producers started): it joins every `STROM_LINEAGE_KAFKA_EVERY`-th sequence.
    let kafka_every: u64 = std::env::var("STROM_LINEAGE_KAFKA_EVERY")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5)
        .max(1);
    // Sequences are independent (each its own job name, storage and topic): they
    // run on `STROM_LINEAGE_THREADS` threads (4 by default: most of a sequence is
    // waiting for its processes), seeds handed out in
    // order; the first failure is reported with its seed.
    let threads: u64 = std::env::var("STROM_LINEAGE_THREADS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(4)
        .clamp(1, sequences.max(1));
    let kafka = clusters();
    let next = std::sync::atomic::AtomicU64::new(first);
    let failed = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    while !failed.load(std::sync::atomic::Ordering::SeqCst) {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if seed >= first + sequences {
                            break;
                        }
                        let with_kafka =
                            kafka.as_ref().filter(|_| seed.is_multiple_of(kafka_every));
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                sequence(seed, with_kafka)
                            }));
                        if let Err(panic) = outcome {
                            failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            std::panic::resume_unwind(panic);
                        }
                        // Progress for the soak (`--nocapture`).
                        eprintln!(
                            "lineage sequence {seed} passed{}",
                            if with_kafka.is_some() {
                                " (with Kafka)"
                            } else {
                                ""
                            }
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}
