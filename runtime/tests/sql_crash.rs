//! SQL jobs through a kill -9 of the `strom` process and a restart from the
//! latest checkpoint (`strom run --resume`): a TUMBLE count into exactly-once
//! files holds each window's row once, with the count of its rows; an updating
//! GROUP BY into an exactly-once `upsert-kafka` table on C ends with each key's
//! final row, every key's updates in order and none replayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::files_in;
use common::kafka::{clusters, clusters_yaml, connection, create_topic, unique};

/// Rows of the generated table: `id` 0..ROWS at RATE rows/s (about 5 s).
const ROWS: u64 = 30_000;
const RATE: u64 = 6_000;
const AUCTIONS: u64 = 11;

/// The generated table: `auction` = id % 11, `price` = id * 31 % 1000, event
/// time `id` * 7 ms.
fn bids_table() -> String {
    format!(
        "CREATE TABLE bid (
          id BIGINT,
          auction AS id % {AUCTIONS},
          price AS id * 31 % 1000,
          ts AS to_timestamp_millis(id * 7),
          WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
        ) WITH ('connector' = 'datagen', 'rows-per-second' = '{RATE}',
                'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                'fields.id.end' = '{}');",
        ROWS - 1
    )
}

/// A SQL job run by the `strom` binary, its state and output under `dir`.
struct Job {
    dir: tempfile::TempDir,
    secrets: Option<std::path::PathBuf>,
}

impl Job {
    /// The job of the SQL `sql_in(its folder)`, with `kafka_clusters` (the
    /// `spec.kafkaClusters` YAML and where their Secrets are) if any.
    fn new(sql_in: impl FnOnce(&Path) -> String, kafka_clusters: Option<(&str, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sql: String = sql_in(dir.path())
            .lines()
            .map(|line| format!("    {line}\n"))
            .collect();
        let clusters = kafka_clusters
            .map(|(yaml, _)| format!("  kafkaClusters:\n{yaml}"))
            .unwrap_or_default();
        let manifest = format!(
            "apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: {name}
spec:
  parallelism: 2
{clusters}  sql: |
{sql}  state:
    checkpointInterval: 150ms
    retainedCheckpoints: 2
    storage: file://{state}
",
            name = unique("sql-crash"),
            state = dir.path().join("state").display(),
        );
        std::fs::write(dir.path().join("job.yaml"), manifest).unwrap();
        Self {
            dir,
            secrets: kafka_clusters.map(|(_, secrets)| secrets.to_path_buf()),
        }
    }

    fn command(&self, work_dir: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
        command
            .arg("run")
            .arg(self.dir.path().join("job.yaml"))
            .arg("--resume")
            .arg("--work-dir")
            .arg(self.dir.path().join(work_dir))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("FAILPOINTS");
        if let Some(secrets) = &self.secrets {
            command.env("STROM_SECRETS_DIR", secrets);
        }
        command
    }

    /// The completed checkpoints of the job's (only) storage folder.
    fn completed_checkpoints(&self) -> usize {
        let state = self.dir.path().join("state");
        let Ok(jobs) = std::fs::read_dir(&state) else {
            return 0;
        };
        jobs.flat_map(|job| std::fs::read_dir(job.unwrap().path()).into_iter().flatten())
            .filter(|entry| {
                let entry = entry.as_ref().unwrap();
                entry.file_name().to_string_lossy().starts_with("chk-")
                    && entry.path().join("_manifest").exists()
            })
            .count()
    }

    /// Runs the job until `checkpoints` checkpoints completed, then kills it
    /// (SIGKILL); then runs it again from its latest checkpoint to its end.
    fn kill_9_then_resume(&self, checkpoints: usize) {
        let mut child = self.command("w1").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.completed_checkpoints() < checkpoints {
            assert!(Instant::now() < deadline, "no checkpoints within a minute");
            assert!(
                child.try_wait().unwrap().is_none(),
                "the job ended before it was killed: {}",
                stderr(&mut child)
            );
            thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let resumed = self.command("w2").output().unwrap();
        assert!(
            resumed.status.success(),
            "the resumed job failed: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
    }
}

fn stderr(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Each auction's rows per 10 s window of event time: (auction, window end in
/// ms) -> (count, price sum).
fn expected_windows() -> BTreeMap<(u64, u64), (u64, u64)> {
    let mut windows = BTreeMap::new();
    for id in 0..ROWS {
        let end = (id * 7 / 10_000 + 1) * 10_000;
        let entry: &mut (u64, u64) = windows.entry((id % AUCTIONS, end)).or_default();
        entry.0 += 1;
        entry.1 += id * 31 % 1000;
    }
    windows
}

#[test]
fn a_window_count_killed_mid_run_and_resumed_writes_each_window_once() {
    let job = Job::new(
        |dir| {
            format!(
                "{}
CREATE TABLE counts (auction BIGINT, window_end TIMESTAMP(3), bids BIGINT, total BIGINT)
  WITH ('connector' = 'filesystem', 'path' = 'file://{out}', 'format' = 'json');
INSERT INTO counts
SELECT auction, window_end, COUNT(*), SUM(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;",
                bids_table(),
                out = dir.join("out").display()
            )
        },
        None,
    );
    job.kill_9_then_resume(3);
    let out = job.dir.path().join("out");

    let mut written: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
    for file in files_in(&out) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let end = chrono::NaiveDateTime::parse_from_str(
                row["window_end"].as_str().unwrap(),
                "%Y-%m-%d %H:%M:%S%.3f",
            )
            .unwrap()
            .and_utc()
            .timestamp_millis() as u64;
            written
                .entry((row["auction"].as_u64().unwrap(), end))
                .or_default()
                .push((
                    row["bids"].as_u64().unwrap(),
                    row["total"].as_u64().unwrap(),
                ));
        }
    }
    let twice: Vec<_> = written
        .iter()
        .filter(|(_, rows)| rows.len() > 1)
        .take(3)
        .collect();
    assert!(
        twice.is_empty(),
        "windows written more than once: {twice:?}"
    );
    let written: BTreeMap<(u64, u64), (u64, u64)> = written
        .into_iter()
        .map(|(window, rows)| (window, rows[0]))
        .collect();
    assert_eq!(written, expected_windows());
}

#[test]
fn an_updating_count_killed_mid_run_and_resumed_upserts_each_key_in_order() {
    let Some(clusters) = clusters() else { return };
    let c = connection(&clusters, "c");
    let topic = unique("sql-crash-upserts");
    create_topic(&c, &topic, 2);
    let yaml = clusters_yaml(&clusters, 4);
    let job = Job::new(
        |_| {
            format!(
                "{}
CREATE TABLE per_auction (auction BIGINT, bids BIGINT, total BIGINT,
                          PRIMARY KEY (auction) NOT ENFORCED)
  WITH ('connector' = 'upsert-kafka', 'cluster' = 'c', 'topic' = '{topic}',
        'key.format' = 'json', 'value.format' = 'json',
        'sink.delivery-guarantee' = 'exactly-once');
INSERT INTO per_auction SELECT auction, COUNT(*), SUM(price) FROM bid GROUP BY auction;",
                bids_table()
            )
        },
        Some((&yaml, &clusters.secrets)),
    );
    job.kill_9_then_resume(3);

    let mut expected: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for id in 0..ROWS {
        let entry = expected.entry(id % AUCTIONS).or_default();
        entry.0 += 1;
        entry.1 += id * 31 % 1000;
    }
    // The job ended with its final checkpoint: everything it wrote is committed.
    let records = common::kafka::consume_available(&c, &topic, 2);
    let mut latest: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for value in &records {
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        let auction = row["auction"].as_u64().unwrap();
        let now = (
            row["bids"].as_u64().unwrap(),
            row["total"].as_u64().unwrap(),
        );
        if let Some(before) = latest.insert(auction, now) {
            // One partition per key: its updates come in order, each counting more.
            assert!(
                before.0 < now.0,
                "auction {auction}: {before:?} then {now:?} (an update replayed)"
            );
        }
    }
    assert_eq!(latest, expected);
}
