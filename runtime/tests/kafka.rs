//! The Kafka source and sink on the real clusters of `e2e/infra/kafka.sh`: a job
//! reading cluster A (plaintext) and B (SCRAM) and writing C (mTLS); parallelism
//! independent of partition counts; a partition added mid-run; positions carried
//! through a savepoint to another parallelism; a clear error for a wrong password.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_crds::KafkaCluster;
use strom_e2e::KafkaClusters;
use strom_runtime::api::Pipeline;
use strom_runtime::connectors::kafka::{
    ClusterConnection, KafkaOutput, KafkaRecord, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
    SecretMounts,
};
use strom_runtime::exec::{JobControl, PipelineFn, RestoreFrom, run_job};

mod common;

use common::{local_config, run_then_stop};

fn clusters() -> Option<KafkaClusters> {
    KafkaClusters::from_env().expect("the Kafka clusters")
}

/// The `spec.kafkaClusters` entries of a job using the three test clusters as the
/// user `app`, and where their Secrets are mounted.
fn job_clusters(clusters: &KafkaClusters) -> (Vec<KafkaCluster>, SecretMounts) {
    let yaml = format!(
        r#"
- name: a
  bootstrapServers: "{a}"
- name: b
  bootstrapServers: "{b}"
  authentication:
    type: scram-sha-512
    username: app
    passwordSecret: {{secretName: kafka-b-app, password: password}}
- name: c
  bootstrapServers: "{c}"
  tls:
    trustedCertificates: [{{secretName: kafka-c-cluster-ca-cert, certificate: ca.crt}}]
  authentication:
    type: tls
    certificateAndKey: {{secretName: kafka-c-app, certificate: user.crt, key: user.key}}
"#,
        a = clusters.a,
        b = clusters.b,
        c = clusters.c
    );
    (
        serde_yaml_ng::from_str(&yaml).unwrap(),
        SecretMounts::new(&clusters.secrets),
    )
}

fn connection(clusters: &KafkaClusters, name: &str) -> ClusterConnection {
    let (specs, mounts) = job_clusters(clusters);
    ClusterConnection::find(&specs, name, &mounts).unwrap()
}

fn client(connection: &ClusterConnection) -> ClientConfig {
    connection.client_config([])
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn create_topic(connection: &ClusterConnection, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client(connection).create().unwrap();
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

fn add_partitions(connection: &ClusterConnection, topic: &str, total: usize) {
    let admin: AdminClient<DefaultClientContext> = client(connection).create().unwrap();
    let results = futures::executor::block_on(admin.create_partitions(
        &[NewPartitions::new(topic, total)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("adding partitions to {topic}: {code}"));
    }
}

/// Writes `values` to `topic`, keyed by their position, to `partition` if given.
fn produce(connection: &ClusterConnection, topic: &str, values: &[String], partition: Option<i32>) {
    let producer: BaseProducer = client(connection).create().unwrap();
    for (i, value) in values.iter().enumerate() {
        let key = i.to_string();
        loop {
            let mut record = BaseRecord::to(topic).key(&key).payload(value);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((error, _)) => {
                    assert!(
                        error.to_string().contains("Queue full"),
                        "producing to {topic}: {error}"
                    );
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Every value in the `partitions` partitions of `topic` (committed records only).
fn consume_all(
    connection: &ClusterConnection,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<String> {
    let consumer: BaseConsumer = client(connection)
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Read until `expected` arrived, then a little longer to catch duplicates.
    let mut quiet_until = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|until| Instant::now() < until) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
        if values.len() >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    values
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn bounded(connection: ClusterConnection, topic: &str) -> KafkaSource {
    let mut config = KafkaSourceConfig::new(connection, &[topic], &unique("strom-test"));
    config.bounded = true;
    KafkaSource::new(config)
}

fn value_of(record: &KafkaRecord) -> String {
    String::from_utf8(record.value.clone().unwrap()).unwrap()
}

/// How often each value appears.
fn counts(values: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

fn once_each(values: &[String]) -> BTreeMap<String, usize> {
    counts(values.iter().cloned())
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

/// Reads a `partitions`-partition topic at `parallelism`; every record once.
fn read_at(clusters: &KafkaClusters, partitions: i32, parallelism: u32) {
    let a = connection(clusters, "a");
    let topic = unique(&format!("p{partitions}"));
    create_topic(&a, &topic, partitions);
    let sent = values("v", 1200);
    produce(&a, &topic, &sent, None);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pipeline: PipelineFn = {
        let (seen, topic) = (Arc::clone(&seen), topic.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let seen = Arc::clone(&seen);
            pipeline
                .source("in", bounded(a.clone(), &topic))?
                .sink(move |_epoch, records| {
                    seen.lock().unwrap().extend(records.iter().map(value_of))
                });
            Ok(())
        })
    };
    let state = tempfile::tempdir().unwrap();
    run_job(
        config(state.path(), parallelism, RestoreFrom::Nothing),
        pipeline,
        Arc::default(),
    )
    .unwrap();
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
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pipeline: PipelineFn = {
        let (seen, topic, a) = (Arc::clone(&seen), topic.clone(), a.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let seen = Arc::clone(&seen);
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &unique("g"));
            config.discovery_interval = Some(Duration::from_millis(300));
            pipeline
                .source("in", KafkaSource::new(config))?
                .sink(move |_epoch, records| {
                    seen.lock().unwrap().extend(records.iter().map(value_of))
                });
            Ok(())
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
                "only {} of {count} records read",
                seen.lock().unwrap().len()
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
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pipeline = |bounded: bool| -> PipelineFn {
        let (seen, topic, a, group) = (Arc::clone(&seen), topic.clone(), a.clone(), group.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let seen = Arc::clone(&seen);
            let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &group);
            config.bounded = bounded;
            pipeline
                .source("in", KafkaSource::new(config))?
                .sink(move |_epoch, records| {
                    seen.lock().unwrap().extend(records.iter().map(value_of))
                });
            Ok(())
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
