//! Parsing Kafka records on the real clusters of `e2e/infra/kafka.sh`: JSON and
//! Avro (Confluent wire format) values decoded into typed records, and malformed
//! records that fail the job, are skipped and counted, or go to a dead-letter topic
//! on another cluster with the reason in their headers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use strom_runtime::api::Pipeline;
use strom_runtime::connectors::kafka::{
    ClusterConnection, KafkaRecord, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use strom_runtime::exec::malformed::{OnMalformed, headers};
use strom_runtime::exec::{JobControl, PipelineFn, RestoreFrom, run_job};
use strom_runtime::format::{AvroFormat, Format};

mod common;

use common::kafka::{client, clusters, connection, create_topic, produce, producer, unique};
use common::local_config;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Click {
    user: String,
    page: i64,
}

const CLICK_SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [
    {"name": "user", "type": "string"},
    {"name": "page", "type": "long"}
]}"#;

fn clicks(count: usize) -> Vec<Click> {
    (0..count)
        .map(|i| Click {
            user: format!("user-{}", i % 7),
            page: i as i64,
        })
        .collect()
}

/// Values that are not JSON clicks: not JSON, a click missing a field, a field of
/// the wrong type.
fn malformed(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i % 3 {
            0 => format!("not json {i}"),
            1 => format!(r#"{{"user": "u{i}"}}"#),
            _ => format!(r#"{{"user": {i}, "page": 1}}"#),
        })
        .collect()
}

/// A topic of A holding 120 JSON clicks with 12 malformed values among them.
fn json_input(a: &ClusterConnection) -> (String, Vec<Click>, Vec<String>) {
    let topic = unique("json-clicks");
    create_topic(a, &topic, 2);
    let good = clicks(120);
    let bad = malformed(12);
    let mut values: Vec<String> = good
        .iter()
        .map(|click| serde_json::to_string(click).unwrap())
        .collect();
    for (i, value) in bad.iter().enumerate() {
        values.insert(i * 10 + 3, value.clone());
    }
    produce(a, &topic, &values, None);
    (topic, good, bad)
}

/// A pipeline that reads `topic` of `a` to its current end, parses each value as
/// `format` with `on_malformed`, and collects the clicks in `seen`.
fn parse_clicks(
    a: &ClusterConnection,
    topic: &str,
    format: Format,
    on_malformed: OnMalformed,
    seen: &Arc<Mutex<Vec<Click>>>,
) -> PipelineFn {
    let (a, topic, seen) = (a.clone(), topic.to_owned(), Arc::clone(seen));
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut config = KafkaSourceConfig::new(a.clone(), &[topic.as_str()], &unique("g"));
        config.bounded = true;
        let format = format.clone();
        let seen = Arc::clone(&seen);
        pipeline
            .source("in", KafkaSource::new(config))?
            .parse(
                "parse-clicks",
                move |record: &KafkaRecord| format.decode_present(record.value.as_deref()),
                on_malformed.clone(),
            )?
            .sink(move |_epoch, clicks| seen.lock().unwrap().extend(clicks));
        Ok(())
    })
}

/// Runs `pipeline` at parallelism 2 until its bounded sources end.
fn run(pipeline: PipelineFn, control: Arc<JobControl>) -> Result<(), String> {
    let state = tempfile::tempdir().unwrap();
    let config = local_config(
        state.path(),
        "formats",
        2,
        Duration::from_millis(200),
        2,
        RestoreFrom::Nothing,
    );
    run_job(config, pipeline, control)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

fn sorted(mut clicks: Vec<Click>) -> Vec<Click> {
    clicks.sort();
    clicks
}

#[test]
fn malformed_records_are_skipped_and_counted() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let (topic, good, bad) = json_input(&a);
    let seen = Arc::default();
    let control = Arc::new(JobControl::default());
    let pipeline = parse_clicks(&a, &topic, Format::Json, OnMalformed::Skip, &seen);
    run(pipeline, Arc::clone(&control)).unwrap();
    assert_eq!(sorted(seen.lock().unwrap().clone()), sorted(good));
    assert_eq!(control.malformed_records("parse-clicks"), bad.len() as u64);
}

#[test]
fn a_malformed_record_fails_the_job_naming_where_it_is() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let (topic, _, _) = json_input(&a);
    let pipeline = parse_clicks(&a, &topic, Format::Json, OnMalformed::Fail, &Arc::default());
    let error = run(pipeline, Arc::default()).expect_err("the job ran through malformed input");
    assert!(
        error.contains(&format!("parse-clicks: malformed record at {topic}/")),
        "{error}"
    );
    assert!(error.contains("invalid JSON"), "{error}");
}

#[test]
fn malformed_records_go_to_a_dead_letter_topic_on_another_cluster_with_the_reason() {
    let Some(clusters) = clusters() else { return };
    let (a, c) = (connection(&clusters, "a"), connection(&clusters, "c"));
    let (topic, good, bad) = json_input(&a);
    let dead_letters = unique("dead-letters");
    create_topic(&c, &dead_letters, 1);
    let sink = KafkaSinkConfig::new(c.clone(), &dead_letters, "strom-test-dead-letters");
    let seen = Arc::default();
    let control = Arc::new(JobControl::default());
    let pipeline = parse_clicks(
        &a,
        &topic,
        Format::Json,
        OnMalformed::DeadLetter(sink),
        &seen,
    );
    run(pipeline, Arc::clone(&control)).unwrap();
    assert_eq!(sorted(seen.lock().unwrap().clone()), sorted(good));
    assert_eq!(control.malformed_records("parse-clicks"), 0);

    let letters = read_with_headers(&c, &dead_letters, bad.len());
    let mut values: Vec<String> = letters.iter().map(|(value, _)| value.clone()).collect();
    values.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(values, expected);
    for (value, headers) in &letters {
        let origin = &headers[headers::ORIGIN];
        assert!(origin.starts_with(&format!("{topic}/")), "{origin}");
        assert_eq!(headers[headers::OPERATOR], "parse-clicks");
        assert!(
            headers[headers::ERROR].starts_with("invalid JSON"),
            "{value}: {headers:?}"
        );
    }
}

#[test]
fn avro_values_in_the_confluent_wire_format_are_decoded_and_bad_ones_refused() {
    let Some(clusters) = clusters() else { return };
    let b = connection(&clusters, "b");
    let topic = unique("avro-clicks");
    create_topic(&b, &topic, 3);
    let avro = Format::Avro(Box::new(
        AvroFormat::new(CLICK_SCHEMA).unwrap().confluent(42),
    ));
    let good = clicks(90);
    let to_b = producer(&b);
    for (i, click) in good.iter().enumerate() {
        let value = avro.encode(click).unwrap();
        let key = i.to_string();
        to_b.send(BaseRecord::to(&topic).key(&key).payload(&value))
            .unwrap();
    }
    // Written with schema 7, which the job does not know, and plain JSON.
    let unknown_schema = [0u8, 0, 0, 0, 7, 6, b'a', b'n', b'n', 2];
    to_b.send(BaseRecord::<(), _>::to(&topic).payload(&unknown_schema[..]))
        .unwrap();
    to_b.send(BaseRecord::<(), _>::to(&topic).payload(r#"{"user":"x","page":1}"#))
        .unwrap();
    to_b.flush(Duration::from_secs(30)).unwrap();

    let seen = Arc::default();
    let control = Arc::new(JobControl::default());
    let pipeline = parse_clicks(&b, &topic, avro, OnMalformed::Skip, &seen);
    run(pipeline, Arc::clone(&control)).unwrap();
    assert_eq!(sorted(seen.lock().unwrap().clone()), sorted(good));
    assert_eq!(control.malformed_records("parse-clicks"), 2);
}

/// The first `count` records of the single-partition `topic`: value and headers.
fn read_with_headers(
    connection: &ClusterConnection,
    topic: &str,
    count: usize,
) -> Vec<(String, BTreeMap<String, String>)> {
    let consumer: BaseConsumer = client(connection)
        .set("group.id", unique("reader"))
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records.len() < count && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            String::from_utf8(header.value.unwrap().to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push((value, headers));
    }
    records
}
