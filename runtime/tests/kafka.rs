//! The Kafka source and sink on the real clusters of `e2e/infra/kafka.sh`: a job
//! reading cluster A (plaintext) and B (SCRAM) and writing C (mTLS); parallelism
//! independent of partition counts; a partition added mid-run; positions carried
//! through a savepoint to another parallelism; a clear error for a wrong password.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use strom_e2e::KafkaClusters;
use strom_runtime::api::Pipeline;
use strom_runtime::connectors::kafka::{
    ClusterConnection, KafkaOutput, KafkaRecord, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
    SecretMounts, StartFrom,
};
use strom_runtime::exec::{JobControl, PipelineFn, Processes, RestoreFrom, run_job};

mod common;

use common::kafka::{
    add_partitions, clusters, connection, consume_all, counts, create_topic, delete_records_before,
    job_clusters, once_each, produce, produce_transactionally, unique, values,
};
use common::{local_config, run_then_stop};

fn bounded_config(connection: ClusterConnection, topic: &str) -> KafkaSourceConfig {
    let mut config = KafkaSourceConfig::new(connection, &[topic], &unique("strom-test"));
    config.bounded = true;
    config
}

fn bounded(connection: ClusterConnection, topic: &str) -> KafkaSource {
    KafkaSource::new(bounded_config(connection, topic))
}

/// The record values a job's sinks saw.
type Seen = Arc<Mutex<Vec<String>>>;

/// A pipeline reading one Kafka source, configured by `source` on each worker, whose
/// record values go into `seen`.
fn collect_into(
    seen: &Seen,
    source: impl Fn() -> KafkaSourceConfig + Send + Sync + 'static,
) -> PipelineFn {
    let seen = Arc::clone(seen);
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let seen = Arc::clone(&seen);
        pipeline
            .source("in", KafkaSource::new(source()))?
            .sink(move |_epoch, records| seen.lock().unwrap().extend(records.iter().map(value_of)));
        Ok(())
    })
}

/// Runs `pipeline` at `parallelism` from scratch until its sources end.
fn run_to_end(pipeline: PipelineFn, parallelism: u32) {
    let state = tempfile::tempdir().unwrap();
    run_job(
        config(state.path(), parallelism, RestoreFrom::Nothing),
        pipeline,
        Arc::default(),
    )
    .unwrap();
}

fn value_of(record: &KafkaRecord) -> String {
    String::from_utf8(record.value.clone().unwrap()).unwrap()
}

fn config(state: &Path, parallelism: u32, restore: RestoreFrom) -> strom_runtime::exec::JobConfig {
    local_config(
        state,
        "kafka",
        parallelism,
        Duration::from_millis(200),
        2,
        restore,
    )
}

#[test]
fn a_job_reads_a_and_b_and_writes_c() {
    let Some(clusters) = clusters() else { return };
    let (a, b, c) = (
        connection(&clusters, "a"),
        connection(&clusters, "b"),
        connection(&clusters, "c"),
    );
    let (from_a, from_b, to_c) = (unique("in-a"), unique("in-b"), unique("out-c"));
    create_topic(&a, &from_a, 3);
    create_topic(&b, &from_b, 2);
    create_topic(&c, &to_c, 4);
    let a_values = values("a", 3000);
    let b_values = values("b", 2000);
    produce(&a, &from_a, &a_values, None);
    produce(&b, &from_b, &b_values, None);

    let pipeline: PipelineFn = {
        let (from_a, from_b, to_c) = (from_a.clone(), from_b.clone(), to_c.clone());
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let a = pipeline.source("from-a", bounded(a.clone(), &from_a))?;
            let b = pipeline.source("from-b", bounded(b.clone(), &from_b))?;
            a.union(b).map(|record| value_of(&record)).sink_kafka(
                "to-c",
                KafkaSinkConfig::new(c.clone(), &to_c, "strom-test"),
                |value: &String| KafkaOutput {
                    key: Some(value.as_bytes().to_vec()),
                    value: Some(value.as_bytes().to_vec()),
                    ..KafkaOutput::default()
                },
            )
        })
    };
    let state = tempfile::tempdir().unwrap();
    let report = run_job(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline,
        Arc::default(),
    )
    .unwrap();
    assert_eq!(report.records_in, 5000);

    let written = consume_all(&c, &to_c, 4, 5000);
    let expected: Vec<String> = a_values.into_iter().chain(b_values).collect();
    assert_eq!(counts(written), once_each(&expected));
}

/// The authentication types the API offers that the test above does not use:
/// SCRAM-SHA-256 (B's second listener) in, one-way TLS with SCRAM-SHA-512 (C's
/// SASL_SSL listener) out (at least once, without failures: every record arrives
/// once).
#[test]
fn a_job_reads_over_scram_sha_256_and_writes_over_one_way_tls() {
    let Some(clusters) = clusters() else { return };
    let (b, c) = (
        connection(&clusters, "b-sha256"),
        connection(&clusters, "c-one-way"),
    );
    let (from_b, to_c) = (unique("in-b256"), unique("out-c-one-way"));
    create_topic(&b, &from_b, 2);
    create_topic(&c, &to_c, 2);
    let b_values = values("b256", 2000);
    produce(&b, &from_b, &b_values, None);

    let pipeline: PipelineFn = {
        let (from_b, to_c) = (from_b.clone(), to_c.clone());
        let (b, c) = (b.clone(), c.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let b = pipeline.source("from-b", bounded(b.clone(), &from_b))?;
            b.map(|record| value_of(&record)).sink_kafka(
                "to-c",
                KafkaSinkConfig::new(c.clone(), &to_c, "strom-test"),
                |value: &String| KafkaOutput {
                    key: Some(value.as_bytes().to_vec()),
                    value: Some(value.as_bytes().to_vec()),
                    ..KafkaOutput::default()
                },
            )
        })
    };
    let state = tempfile::tempdir().unwrap();
    let report = run_job(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline,
        Arc::default(),
    )
    .unwrap();
    assert_eq!(report.records_in, 2000);
    let written = consume_all(&c, &to_c, 2, 2000);
    assert_eq!(counts(written), once_each(&b_values));
}

/// Reads a `partitions`-partition topic at `parallelism`; every record once.
fn read_at(clusters: &KafkaClusters, partitions: i32, parallelism: u32) {
    let a = connection(clusters, "a");
    let topic = unique(&format!("p{partitions}"));
    create_topic(&a, &topic, partitions);
    let sent = values("v", 1200);
    produce(&a, &topic, &sent, None);
    let seen = Seen::default();
    run_to_end(
        collect_into(&seen, move || bounded_config(a.clone(), &topic)),
        parallelism,
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        counts(seen),
        once_each(&sent),
        "{partitions} partitions at parallelism {parallelism}"
    );
}

#[test]
fn three_partitions_at_parallelism_8_and_twelve_at_2_are_read_completely() {
    let Some(clusters) = clusters() else { return };
    read_at(&clusters, 3, 8);
    read_at(&clusters, 12, 2);
}

#[test]
fn a_partition_added_mid_run_is_consumed() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("grows");
    create_topic(&a, &topic, 2);
    produce(&a, &topic, &values("before", 100), None);
    let seen = Seen::default();
    let pipeline = {
        let (topic, a) = (topic.clone(), a.clone());
        collect_into(&seen, move || {
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &unique("g"));
            config.discovery_interval = Some(Duration::from_millis(300));
            config
        })
    };
    let control = Arc::new(JobControl::default());
    let state = tempfile::tempdir().unwrap();
    let job = {
        let (control, config) = (
            Arc::clone(&control),
            config(state.path(), 3, RestoreFrom::Nothing),
        );
        thread::spawn(move || run_job(config, pipeline, control))
    };
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} records read; the job's failure: {:?}",
                seen.lock().unwrap().len(),
                control.snapshots().failure
            );
            thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(100);
    add_partitions(&a, &topic, 3);
    let added = values("added", 50);
    produce(&a, &topic, &added, Some(2));
    wait_for(150);
    control.request_stop();
    job.join().unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected: Vec<String> = values("before", 100).into_iter().chain(added).collect();
    assert_eq!(counts(seen), once_each(&expected));
}

#[test]
fn positions_survive_a_savepoint_and_a_restore_at_another_parallelism() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("resume");
    create_topic(&a, &topic, 5);
    let sent = values("r", 20_000);
    produce(&a, &topic, &sent, None);
    let group = unique("g");
    let seen = Seen::default();
    let pipeline = |bounded: bool| -> PipelineFn {
        let (topic, a, group) = (topic.clone(), a.clone(), group.clone());
        collect_into(&seen, move || {
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &group);
            config.bounded = bounded;
            config
        })
    };
    let state = tempfile::tempdir().unwrap();
    let first = run_then_stop(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline(false),
    );
    let savepoint = first
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();
    let read_first = seen.lock().unwrap().len();
    assert!(read_first > 0, "nothing read before the stop");
    run_job(
        config(state.path(), 3, RestoreFrom::Snapshot(savepoint.location)),
        pipeline(true),
        Arc::default(),
    )
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        counts(seen),
        once_each(&sent),
        "read before the stop: {read_first}"
    );
}

#[test]
fn a_wrong_password_fails_the_job_naming_the_cluster_and_mechanism_not_the_secret() {
    let Some(clusters) = clusters() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let wrong = "not-the-password-4711";
    std::fs::create_dir_all(secrets.path().join("kafka-b-app")).unwrap();
    std::fs::write(secrets.path().join("kafka-b-app/password"), wrong).unwrap();
    let (specs, _) = job_clusters(&clusters);
    let b = ClusterConnection::find(&specs, "b", &SecretMounts::new(secrets.path())).unwrap();
    let pipeline: PipelineFn = Arc::new(move |pipeline: &mut Pipeline<'_>| {
        pipeline
            .source("from-b", bounded(b.clone(), "any-topic"))?
            .sink(|_, _| {});
        Ok(())
    });
    let state = tempfile::tempdir().unwrap();
    let error = run_job(
        config(state.path(), 1, RestoreFrom::Nothing),
        pipeline,
        Arc::default(),
    )
    .expect_err("the job ran with a wrong password")
    .to_string();
    assert!(
        error.contains("Kafka cluster b (scram-sha-512 as user \"app\")"),
        "{error}"
    );
    assert!(error.contains("Authentication failed"), "{error}");
    assert!(!error.contains(wrong), "{error}");
}

#[test]
fn reading_can_start_at_a_timestamp() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("from-time");
    create_topic(&a, &topic, 2);
    let producer: rdkafka::producer::BaseProducer = a.client_config([]).create().unwrap();
    for (prefix, time) in [("old", 1_000_000_000_000i64), ("new", 1_000_000_500_000)] {
        for i in 0..100 {
            let value = format!("{prefix}-{i}");
            let record = rdkafka::producer::BaseRecord::<(), _>::to(&topic)
                .payload(&value)
                .partition(i % 2)
                .timestamp(time + i64::from(i));
            producer.send(record).map_err(|(error, _)| error).unwrap();
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();

    let seen = Seen::default();
    let pipeline = collect_into(&seen, move || {
        let mut config = bounded_config(a.clone(), &topic);
        config.start = StartFrom::Timestamp(1_000_000_500_000);
        config
    });
    run_to_end(pipeline, 2);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(counts(seen), once_each(&values("new", 100)));
}

#[test]
fn offsets_committed_on_checkpoints_are_where_a_new_job_of_the_group_starts() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("committed");
    create_topic(&a, &topic, 3);
    let group = unique("group");
    let run = |start: StartFrom| -> Vec<String> {
        let seen = Seen::default();
        let (topic, group, a) = (topic.clone(), group.clone(), a.clone());
        let pipeline = collect_into(&seen, move || {
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &group);
            config.bounded = true;
            config.commit_offsets = true;
            config.start = start;
            config
        });
        run_to_end(pipeline, 2);
        seen.lock().unwrap().clone()
    };
    produce(&a, &topic, &values("first", 300), None);
    let first = run(StartFrom::CommittedOffsets { or_earliest: true });
    assert_eq!(counts(first), once_each(&values("first", 300)));
    produce(&a, &topic, &values("second", 200), None);
    // A new job (no checkpoint of its own) starts where the group's offsets are.
    let second = run(StartFrom::CommittedOffsets { or_earliest: true });
    assert_eq!(counts(second), once_each(&values("second", 200)));
}

/// Issue 14, point 6: a partition added while the job was down has no position in
/// the restored savepoint; it is read from its earliest offset (as Flink does),
/// whatever the start setting — with `latest`, its records used to be skipped.
#[test]
fn a_partition_added_while_the_job_was_down_is_read_from_its_start() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("added-while-down");
    create_topic(&a, &topic, 2);
    let seen = Seen::default();
    let pipeline = |bounded: bool| -> PipelineFn {
        let (topic, a) = (topic.clone(), a.clone());
        collect_into(&seen, move || {
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &unique("g"));
            config.start = StartFrom::Latest;
            config.bounded = bounded;
            config
        })
    };
    let state = tempfile::tempdir().unwrap();
    let stopped = run_then_stop(
        config(state.path(), 2, RestoreFrom::Nothing),
        pipeline(false),
    );
    let savepoint = stopped
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();

    // While the job is down: a third partition, with records, and more records in
    // the first two.
    add_partitions(&a, &topic, 3);
    let added = values("added", 50);
    produce(&a, &topic, &added, Some(2));
    let after = values("after", 40);
    produce(&a, &topic, &after, Some(0));

    run_job(
        config(state.path(), 3, RestoreFrom::Snapshot(savepoint.location)),
        pipeline(true),
        Arc::default(),
    )
    .unwrap();
    let expected: Vec<String> = added.into_iter().chain(after).collect();
    assert_eq!(counts(seen.lock().unwrap().clone()), once_each(&expected));
}

/// Runs `pipeline` from scratch on another thread; whether it ended within 60 s.
fn ends_within_a_minute(pipeline: PipelineFn) -> bool {
    let state = tempfile::tempdir().unwrap();
    let config = config(state.path(), 1, RestoreFrom::Nothing);
    let control = Arc::new(JobControl::default());
    let job = {
        let control = Arc::clone(&control);
        thread::spawn(move || run_job(config, pipeline, control))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if job.is_finished() {
        job.join().unwrap().unwrap();
        return true;
    }
    // Let the stuck job go: a stop drains the sources.
    control.request_stop();
    false
}

/// Issue 14, point 9: a bounded read of a topic written in transactions ends. The
/// last offset of such a partition is a commit marker, which no reader ever gets.
#[test]
fn a_bounded_read_of_a_transactional_topic_ends() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("transactional");
    create_topic(&a, &topic, 2);
    let (first, second) = (values("p0", 300), values("p1", 200));
    produce_transactionally(&a, &topic, 0, &first);
    produce_transactionally(&a, &topic, 1, &second);
    let seen = Seen::default();
    let pipeline = {
        let (topic, a) = (topic.clone(), a.clone());
        collect_into(&seen, move || bounded_config(a.clone(), &topic))
    };
    assert!(
        ends_within_a_minute(pipeline),
        "the bounded read never ended ({} records read)",
        seen.lock().unwrap().len()
    );
    let expected: Vec<String> = first.into_iter().chain(second).collect();
    assert_eq!(counts(seen.lock().unwrap().clone()), once_each(&expected));
}

/// Issue 14, point 9: a restored position that retention removed meanwhile fails
/// the job, naming the partition, the position and where the partition starts now,
/// instead of silently jumping to the end (and skipping what is left).
#[test]
fn a_restored_position_removed_by_retention_fails_the_job_naming_it() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("retention");
    create_topic(&a, &topic, 1);
    produce(&a, &topic, &values("early", 100), None);
    let seen = Seen::default();
    let pipeline = |bounded: bool| -> PipelineFn {
        let (topic, a) = (topic.clone(), a.clone());
        collect_into(&seen, move || {
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &unique("g"));
            config.bounded = bounded;
            config
        })
    };
    let state = tempfile::tempdir().unwrap();
    // Stopped once the 100 records are read: the savepoint's position is 100.
    let stopped = {
        let (config, pipeline) = (
            config(state.path(), 1, RestoreFrom::Nothing),
            pipeline(false),
        );
        let control = Arc::new(JobControl::default());
        let handle = {
            let control = Arc::clone(&control);
            thread::spawn(move || run_job(config, pipeline, control))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().len() < 100 {
            assert!(Instant::now() < deadline, "the first run read too little");
            thread::sleep(Duration::from_millis(20));
        }
        control.request_stop();
        handle.join().unwrap().unwrap()
    };
    let savepoint = stopped
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();

    // More records, then retention removes everything before offset 150.
    let later = values("later", 100);
    produce(&a, &topic, &later, None);
    assert_eq!(delete_records_before(&a, &topic, 0, 150), 150);

    let restored = config(state.path(), 1, RestoreFrom::Snapshot(savepoint.location));
    let job = {
        let pipeline = pipeline(true);
        thread::spawn(move || run_job(restored, pipeline, Arc::default()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the restored job neither read nor failed within a minute"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let error = job
        .join()
        .unwrap()
        .expect_err("the job went on past removed records")
        .to_string();
    for needed in [format!("{topic}/0"), "100".to_owned(), "150".to_owned()] {
        assert!(
            error.contains(&needed),
            "the error does not name {needed}: {error}"
        );
    }
}

/// Issue 14, point 10: retriable broker errors are retried with backoff, not turned
/// into a failed job at once. A job started before its input topic exists (or just
/// after it was created, while its partitions have no leader yet) reads it once it
/// is there.
#[test]
fn a_job_started_before_its_topic_exists_reads_it_once_created() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("not-yet");
    let seen = Seen::default();
    let pipeline = {
        let (topic, a) = (topic.clone(), a.clone());
        collect_into(&seen, move || {
            KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &unique("g"))
        })
    };
    let control = Arc::new(JobControl::default());
    let state = tempfile::tempdir().unwrap();
    let job = {
        let (control, config) = (
            Arc::clone(&control),
            config(state.path(), 2, RestoreFrom::Nothing),
        );
        thread::spawn(move || run_job(config, pipeline, control))
    };
    thread::sleep(Duration::from_secs(2));
    assert!(
        !job.is_finished(),
        "the job ended before its topic existed: {:?}",
        control.snapshots().failure
    );
    create_topic(&a, &topic, 3);
    let sent = values("late", 300);
    produce(&a, &topic, &sent, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < sent.len() {
        assert!(
            Instant::now() < deadline && !job.is_finished(),
            "{} of {} records read; the job's failure: {:?}",
            seen.lock().unwrap().len(),
            sent.len(),
            control.snapshots().failure
        );
        thread::sleep(Duration::from_millis(20));
    }
    control.request_stop();
    job.join().unwrap().unwrap();
    assert_eq!(counts(seen.lock().unwrap().clone()), once_each(&sent));
    let metrics = control.metrics_text();
    assert!(
        metrics.contains("strom_kafka_retries_total"),
        "retries are not counted: {metrics}"
    );
}

/// Runs `pipeline` at parallelism 2 as two processes (one worker each) connected
/// over loopback TCP, from scratch, until its sources end.
fn run_to_end_in_two_processes(pipeline: PipelineFn) {
    let state = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = (0..2)
        .map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            format!("127.0.0.1:{port}")
        })
        .collect();
    let processes: Vec<_> = (0..2)
        .map(|index| {
            let mut config = config(state.path(), 2, RestoreFrom::Nothing);
            config.settings.local_dir = state.path().join(format!("local-{index}"));
            config.processes = Processes::Cluster {
                index,
                addresses: addresses.clone(),
            };
            let pipeline = Arc::clone(&pipeline);
            thread::spawn(move || run_job(config, pipeline, Arc::default()))
        })
        .collect();
    for process in processes {
        process.join().unwrap().unwrap();
    }
}

/// Issue 14, point 13: every process learns that checkpoints completed (the
/// coordinator runs in process 0 only), so the sources of every process commit
/// their partitions' offsets, and none keeps positions awaiting completion forever.
#[test]
fn every_process_commits_the_offsets_of_its_partitions() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let topic = unique("committed-everywhere");
    create_topic(&a, &topic, 4);
    let group = unique("group");
    let pipeline = |seen: &Seen| {
        let (topic, group, a) = (topic.clone(), group.clone(), a.clone());
        collect_into(seen, move || {
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &group);
            config.bounded = true;
            config.commit_offsets = true;
            config.start = StartFrom::CommittedOffsets { or_earliest: true };
            config
        })
    };
    let first = values("first", 400);
    produce(&a, &topic, &first, None);
    let seen = Seen::default();
    run_to_end_in_two_processes(pipeline(&seen));
    assert_eq!(counts(seen.lock().unwrap().clone()), once_each(&first));

    // A new job of the group starts where the offsets of all four partitions are.
    let second = values("second", 200);
    produce(&a, &topic, &second, None);
    let seen = Seen::default();
    run_to_end(pipeline(&seen), 2);
    assert_eq!(
        counts(seen.lock().unwrap().clone()),
        once_each(&second),
        "partitions read by process 1 were not committed"
    );
}

/// Review of issue 14: an exactly-once Kafka sink in every process of a bounded job
/// commits its last transactions before the job ends: every process learns that
/// the final checkpoint completed before it is told to shut down.
#[test]
fn a_bounded_job_in_two_processes_commits_every_transaction_before_it_ends() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let (from, to) = (unique("two-in"), unique("two-out"));
    create_topic(&a, &from, 4);
    create_topic(&a, &to, 2);
    let sent = values("v", 2000);
    produce(&a, &from, &sent, None);
    let pipeline: PipelineFn = {
        let (a, from, to) = (a.clone(), from.clone(), to.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let mut sink = KafkaSinkConfig::new(a.clone(), &to, "two-processes");
            sink.delivery = strom_runtime::connectors::kafka::Delivery::ExactlyOnce;
            pipeline
                .source("in", bounded(a.clone(), &from))?
                .map(|record| value_of(&record))
                .sink_kafka("out", sink, |value: &String| KafkaOutput {
                    value: Some(value.as_bytes().to_vec()),
                    ..KafkaOutput::default()
                })
        })
    };
    run_to_end_in_two_processes(pipeline);
    let written = consume_all(&a, &to, 2, sent.len());
    assert_eq!(counts(written), once_each(&sent));
}
