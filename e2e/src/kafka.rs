//! Kafka helpers for tests: topics, producing test input and reading what a job
//! wrote (committed records only), on any client configuration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// A name no earlier test used: `name-<12 hex digits>`.
pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(client: &ClientConfig, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

/// Grows `topic` to `total` partitions.
pub fn add_partitions(client: &ClientConfig, topic: &str, total: usize) {
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let results = futures::executor::block_on(admin.create_partitions(
        &[NewPartitions::new(topic, total)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("adding partitions to {topic}: {code}"));
    }
}

/// Deletes the records of `topic`'s `partition` before `offset` (as retention
/// would); returns the partition's new start.
pub fn delete_records_before(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i64 {
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .unwrap();
    let result = futures::executor::block_on(admin.delete_records(
        &list,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    let element = result.find_partition(topic, partition).unwrap();
    element.error().unwrap();
    match element.offset() {
        rdkafka::Offset::Offset(low) => low,
        other => panic!("deleting records of {topic}/{partition}: {other:?}"),
    }
}

/// Deletes every consumer group whose name starts with `prefix` (as the brokers'
/// offset retention does to groups without members); returns how many there were.
pub fn delete_groups_starting_with(client: &ClientConfig, prefix: &str) -> usize {
    let consumer: BaseConsumer = client.create().unwrap();
    let list = consumer
        .fetch_group_list(None, Duration::from_secs(20))
        .unwrap();
    let groups: Vec<&str> = list
        .groups()
        .iter()
        .map(|group| group.name())
        .filter(|name| name.starts_with(prefix))
        .collect();
    if groups.is_empty() {
        return 0;
    }
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let results = futures::executor::block_on(admin.delete_groups(
        &groups,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    for result in results {
        result.unwrap_or_else(|(group, code)| panic!("deleting group {group}: {code}"));
    }
    groups.len()
}

/// Writes `values` to `partition` of `topic` in one committed transaction (so the
/// partition's last offset is the transaction's commit marker).
pub fn produce_transactionally(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    values: &[String],
) {
    let producer: rdkafka::producer::BaseProducer = client
        .clone()
        .set("transactional.id", unique("test-tx"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    producer.begin_transaction().unwrap();
    for value in values {
        producer
            .send(
                rdkafka::producer::BaseRecord::<str, str>::to(topic)
                    .partition(partition)
                    .key(value)
                    .payload(value),
            )
            .map_err(|(error, _)| error)
            .unwrap();
    }
    producer.commit_transaction(timeout).unwrap();
}

/// Keeps the failed deliveries of a test producer: `flush` succeeds even when a
/// record was refused (a partition its metadata did not know yet, say).
#[derive(Default)]
pub struct Deliveries(std::sync::Mutex<Vec<String>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result {
            self.0.lock().unwrap().push(error.to_string());
        }
    }
}

/// A producer for test input whose failed deliveries [`produce_with`] reports.
pub fn producer(client: &ClientConfig) -> BaseProducer<Deliveries> {
    client.create_with_context(Deliveries::default()).unwrap()
}

/// Writes `values` to `topic` with `producer`, keyed by their position, to
/// `partition` if given, and waits until they are delivered.
pub fn produce_with(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    values: &[String],
    partition: Option<i32>,
) {
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
    let failed = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert!(
        failed.is_empty(),
        "records to {topic} were refused: {failed:?}"
    );
}

/// Every value in the `partitions` partitions of `topic` (committed records only).
pub fn consume_all(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<String> {
    let consumer = committed_reader(client, topic, partitions);
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

/// `prefix-0`, `prefix-1`, ...: test values, each different.
pub fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// How often each value appears.
pub fn counts(values: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// How often each of `values` appears.
pub fn once_each(values: &[String]) -> BTreeMap<String, usize> {
    counts(values.iter().cloned())
}

/// The committed values in the `partitions` partitions of `topic` now: read until
/// nothing new comes for a second.
pub fn consume_available(client: &ClientConfig, topic: &str, partitions: i32) -> Vec<String> {
    let consumer = committed_reader(client, topic, partitions);
    let mut values = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(1) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
            last = Instant::now();
        }
    }
    values
}

/// Every committed record of `topic` now, per partition in order, as (key, value):
/// read until nothing new comes for `quiet`.
pub fn committed_records(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    quiet: Duration,
) -> Vec<Vec<(String, String)>> {
    let consumer = committed_reader(client, topic, partitions);
    let mut records = vec![Vec::new(); partitions as usize];
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let text = |bytes: Option<&[u8]>| {
                String::from_utf8(bytes.unwrap_or_default().to_vec()).unwrap()
            };
            records[message.partition() as usize]
                .push((text(message.key()), text(message.payload())));
            last = Instant::now();
        }
    }
    records
}

/// A consumer of the committed records of `partitions` partitions of `topic`, from
/// their beginning.
fn committed_reader(client: &ClientConfig, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = client
        .clone()
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
    consumer
}
