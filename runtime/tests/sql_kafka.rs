//! SQL jobs over `kafka` tables on the real clusters of `e2e/infra/kafka.sh`:
//! JSON values and record metadata read from A, window counts written to C
//! exactly once; a union of A (plaintext) and B (SCRAM) written to C (mutual TLS)
//! exactly once across a savepoint and a restore at another parallelism; Avro
//! records of a hand-written schema read from A and written to C as Avro; an
//! upsert-kafka table read as a changelog, filtered and upserted into C across
//! restores at 2, 4 and 1; `avro-confluent` records read with their writer
//! schemas from the schema registry of `e2e/infra/schema-registry.sh`, and
//! written with the schemas the job registers there.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::{connection, consume_all, create_topic, job_clusters, produce};
use common::{local_config, start, wait_for_records};
use strom_e2e::KafkaClusters;
use strom_runtime::exec::{JobControl, JobReport, RestoreFrom, run_job};
use strom_runtime::format::schema_registry::SchemaRegistry;
use strom_runtime::sql::SqlJob;

/// The script compiled and connected to the test clusters.
fn compile(clusters: &KafkaClusters, script: &str) -> SqlJob {
    let mut job = strom_runtime::sql::compile(script).unwrap_or_else(|error| panic!("{error}"));
    let (specs, mounts) = job_clusters(clusters);
    job.connect(&specs, &mounts)
        .unwrap_or_else(|error| panic!("{error}"));
    job
}

/// Runs `job` named `name` until its bounded sources end.
fn run(
    state: &Path,
    name: &str,
    job: SqlJob,
    parallelism: u32,
    restore: RestoreFrom,
    control: &Arc<JobControl>,
) -> JobReport {
    let config = local_config(
        state,
        name,
        parallelism,
        Duration::from_millis(200),
        2,
        restore,
    );
    let report = run_job(config, job.pipeline(Arc::new(|_| {})), Arc::clone(control)).unwrap();
    assert!(report.snapshots.failure.is_none(), "{:?}", report.snapshots);
    report
}

/// Views of `countries` countries, one every 10 ms of event time from `first`.
fn views(first: u64, count: u64) -> Vec<(String, u64)> {
    (first..first + count)
        .map(|n| (format!("c{}", n * 7 % 5), n * 10))
        .collect()
}

fn view_json(country: &str, millis: u64, n: u64) -> String {
    let ts = format!(
        "2024-01-01 00:{:02}:{:02}.{:03}",
        millis / 60_000,
        millis / 1000 % 60,
        millis % 1000
    );
    format!(r#"{{"user_id": {n}, "country": "{country}", "ts": "{ts}"}}"#)
}

#[test]
fn window_counts_of_json_views_on_a_are_written_to_c_exactly_once() {
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let (a, c) = (connection(&clusters, "a"), connection(&clusters, "c"));
    let input = common::kafka::unique("sql-views");
    let output = common::kafka::unique("sql-view-counts");
    create_topic(&a, &input, 3);
    create_topic(&c, &output, 2);
    let all = views(0, 3000);
    let mut values: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(n, (country, millis))| view_json(country, *millis, n as u64))
        .collect();
    // Malformed values, skipped and counted.
    for n in 0..7 {
        values.insert(n * 400 + 5, format!("not json {n}"));
    }
    produce(&a, &input, &values, None);

    let script = format!(
        "CREATE TABLE page_views (
           user_id BIGINT,
           country STRING,
           ts TIMESTAMP(3),
           `partition` INT METADATA VIRTUAL,
           read_at TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
         ) WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '{input}',
                 'format' = 'json', 'json.ignore-parse-errors' = 'true',
                 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE view_counts (country STRING, window_end TIMESTAMP(3), views BIGINT)
           WITH ('connector' = 'kafka', 'cluster' = 'c', 'topic' = '{output}', 'format' = 'json',
                 'sink.delivery-guarantee' = 'exactly-once');
         INSERT INTO view_counts
         SELECT country, window_end, COUNT(*)
         FROM TABLE(TUMBLE(TABLE page_views, DESCRIPTOR(ts), INTERVAL '5' SECOND))
         WHERE `partition` >= 0 AND read_at > TIMESTAMP '2020-01-01 00:00:00'
         GROUP BY country, window_start, window_end;"
    );
    let state = tempfile::tempdir().unwrap();
    let control = Arc::new(JobControl::default());
    let report = run(
        state.path(),
        "sql-kafka-views",
        compile(&clusters, &script),
        2,
        RestoreFrom::Nothing,
        &control,
    );
    assert_eq!(report.records_in, all.len() as u64);
    assert_eq!(control.malformed_records("source-page_views"), 7);

    let mut expected: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for (country, millis) in &all {
        *expected
            .entry((country.clone(), (millis / 5000 + 1) * 5000))
            .or_default() += 1;
    }
    let written = consume_all(&c, &output, 2, expected.len());
    let mut actual: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for value in &written {
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        let end = row["window_end"].as_str().unwrap();
        // Flink's SQL form of a timestamp, which its JSON format reads.
        let end = chrono::NaiveDateTime::parse_from_str(end, "%Y-%m-%d %H:%M:%S%.3f")
            .unwrap_or_else(|error| panic!("{end}: {error}"));
        let base = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let end = (end - base).num_milliseconds() as u64;
        let key = (row["country"].as_str().unwrap().to_owned(), end);
        assert!(
            actual
                .insert(key.clone(), row["views"].as_u64().unwrap())
                .is_none(),
            "{key:?} written twice"
        );
    }
    assert_eq!(written.len(), expected.len());
    assert_eq!(actual, expected);
}

/// The orders of `region`, `count` of them from `first`, as JSON values.
fn orders(region: &str, first: u64, count: u64) -> Vec<String> {
    (first..first + count)
        .map(|n| {
            format!(
                r#"{{"order_id": "{region}-{n}", "customer_id": {}, "amount": {}.25}}"#,
                n % 11,
                n % 90
            )
        })
        .collect()
}

#[test]
fn a_union_of_a_and_b_is_written_to_c_once_across_a_savepoint_and_a_rescale() {
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let (a, b, c) = (
        connection(&clusters, "a"),
        connection(&clusters, "b"),
        connection(&clusters, "c"),
    );
    let eu = common::kafka::unique("sql-eu-orders");
    let us = common::kafka::unique("sql-us-orders");
    let global = common::kafka::unique("sql-global-orders");
    create_topic(&a, &eu, 2);
    create_topic(&b, &us, 3);
    create_topic(&c, &global, 2);
    let script = |bounded: bool| {
        let bounded = if bounded {
            ", 'scan.bounded.mode' = 'latest-offset'"
        } else {
            ""
        };
        format!(
            "CREATE TABLE eu_orders (order_id STRING, customer_id BIGINT, amount DECIMAL(12, 2))
               WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '{eu}', 'format' = 'json',
                     'scan.startup.mode' = 'earliest-offset'{bounded});
             CREATE TABLE us_orders (order_id STRING, customer_id BIGINT, amount DECIMAL(12, 2))
               WITH ('connector' = 'kafka', 'cluster' = 'b', 'topic' = '{us}', 'format' = 'json',
                     'scan.startup.mode' = 'earliest-offset'{bounded});
             CREATE TABLE all_orders (region STRING, order_id STRING, customer_id BIGINT,
                                      amount DECIMAL(12, 2))
               WITH ('connector' = 'kafka', 'cluster' = 'c', 'topic' = '{global}',
                     'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once');
             INSERT INTO all_orders
             SELECT 'eu', order_id, customer_id, amount FROM eu_orders
             UNION ALL
             SELECT 'us', order_id, customer_id, amount FROM us_orders;"
        )
    };
    produce(&a, &eu, &orders("eu", 0, 400), None);
    produce(&b, &us, &orders("us", 0, 300), None);

    let state = tempfile::tempdir().unwrap();
    let name = "sql-kafka-union";
    // First run, unbounded, at parallelism 2: stopped with a savepoint once it
    // read what is there; more orders come while it is down.
    let (control, job) = start(
        local_config(
            state.path(),
            name,
            2,
            Duration::from_millis(200),
            2,
            RestoreFrom::Nothing,
        ),
        compile(&clusters, &script(false)).pipeline(Arc::new(|_| {})),
    );
    wait_for_records(&control, 700);
    control.request_stop();
    let first = job.join().unwrap().unwrap();
    let savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    produce(&a, &eu, &orders("eu", 400, 250), None);
    produce(&b, &us, &orders("us", 300, 350), None);

    // Restored at parallelism 3, reading to the end.
    let second = run(
        state.path(),
        name,
        compile(&clusters, &script(true)),
        3,
        RestoreFrom::Snapshot(savepoint),
        &Arc::default(),
    );
    assert_eq!(first.records_in + second.records_in, 1300);

    let written = consume_all(&c, &global, 2, 1300);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for value in &written {
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        let id = row["order_id"].as_str().unwrap();
        assert_eq!(row["region"].as_str().unwrap(), &id[..2], "{value}");
        *seen.entry(id.to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let expected: Vec<String> = (0..650)
        .map(|n| format!("eu-{n}"))
        .chain((0..650).map(|n| format!("us-{n}")))
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never written: {missing:?}");
    assert_eq!(written.len(), 1300);
}

/// Every committed record of `topic` (key and value), in partition order, once
/// `expected` arrived or 30 s passed.
fn read_keyed(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(Option<String>, Option<String>)> {
    let text = |bytes: Option<Vec<u8>>| bytes.map(|b| String::from_utf8(b).unwrap());
    read_keyed_bytes(connection, topic, partitions, expected)
        .into_iter()
        .map(|(key, value)| (text(key), text(value)))
        .collect()
}

/// The bytes of a key or value.
type Bytes = Vec<u8>;

/// A consumer of `topic`'s committed records (read_committed), from the start of
/// each of its `partitions`.
fn committed_reader(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    partitions: i32,
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = connection
        .client_config([
            ("group.id", common::kafka::unique("read-committed")),
            ("isolation.level", "read_committed".to_owned()),
            ("enable.auto.commit", "false".to_owned()),
        ])
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

/// [`read_keyed`], the keys and values as bytes.
fn read_keyed_bytes(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(Option<Bytes>, Option<Bytes>)> {
    use rdkafka::Message;
    let consumer = committed_reader(connection, topic, partitions);
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_until = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|until| Instant::now() < until) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            records.push((
                message.key().map(<[u8]>::to_vec),
                message.payload().map(<[u8]>::to_vec),
            ));
        }
        if records.len() >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    records
}

#[test]
fn an_updating_count_is_upserted_into_c_by_its_primary_key() {
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let (a, c) = (connection(&clusters, "a"), connection(&clusters, "c"));
    let input = common::kafka::unique("sql-upsert-views");
    let output = common::kafka::unique("sql-views-per-country");
    create_topic(&a, &input, 3);
    create_topic(&c, &output, 2);
    let all = views(0, 2000);
    let values: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(n, (country, millis))| view_json(country, *millis, n as u64))
        .collect();
    produce(&a, &input, &values, None);
    let script = format!(
        "CREATE TABLE page_views (user_id BIGINT, country STRING, ts TIMESTAMP(3))
           WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '{input}', 'format' = 'json',
                 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE views_per_country (
           country STRING, views BIGINT, last_user BIGINT,
           PRIMARY KEY (country) NOT ENFORCED
         ) WITH ('connector' = 'upsert-kafka', 'cluster' = 'c', 'topic' = '{output}',
                 'key.format' = 'json', 'value.format' = 'json',
                 'sink.delivery-guarantee' = 'exactly-once');
         INSERT INTO views_per_country
         SELECT country, COUNT(*), MAX(user_id) FROM page_views GROUP BY country;"
    );
    let state = tempfile::tempdir().unwrap();
    run(
        state.path(),
        "sql-kafka-upsert",
        compile(&clusters, &script),
        2,
        RestoreFrom::Nothing,
        &Arc::default(),
    );
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (n, (country, _)) in all.iter().enumerate() {
        let entry = expected.entry(country.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(n as u64);
    }
    // At least one record per country; each key's last record is its final row.
    let records = read_keyed(&c, &output, 2, expected.len());
    let mut latest: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (key, value) in &records {
        let key: serde_json::Value = serde_json::from_str(key.as_deref().unwrap()).unwrap();
        let country = key["country"].as_str().unwrap().to_owned();
        let value: serde_json::Value = serde_json::from_str(value.as_deref().unwrap()).unwrap();
        assert_eq!(value["country"].as_str(), Some(country.as_str()));
        let row = (
            value["views"].as_u64().unwrap(),
            value["last_user"].as_u64().unwrap(),
        );
        if let Some(previous) = latest.insert(country.clone(), row) {
            assert!(previous.0 < row.0, "{country}: {previous:?} then {row:?}");
        }
    }
    assert_eq!(latest, expected);
}

/// The schema the test's producer writes with: written by hand, with other
/// record names than Flink derives (names do not change the binary encoding).
const ORDER_SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": ["null", "string"], "default": null},
    {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}], "default": null},
    {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "address", "type": ["null", {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": ["null", "string"], "default": null},
        {"name": "zip", "type": "int"}
    ]}], "default": null},
    {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}], "default": null}
]}"#;

/// The schema Flink derives for the sink table's columns, as Flink's
/// documentation describes it.
const ENRICHED_SCHEMA: &str = r#"{"type": "record", "name": "record", "namespace": "org.apache.flink.avro.generated", "fields": [
    {"name": "id", "type": ["null", "long"], "default": null},
    {"name": "customer", "type": ["null", "string"], "default": null},
    {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}], "default": null},
    {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "address", "type": ["null", {"type": "record", "name": "record_address", "fields": [
        {"name": "city", "type": ["null", "string"], "default": null},
        {"name": "zip", "type": "int"}
    ]}], "default": null},
    {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}], "default": null}
]}"#;

/// The key: the sink's `key.fields`, `id`.
const ENRICHED_KEY_SCHEMA: &str = r#"{"type": "record", "name": "record", "namespace": "org.apache.flink.avro.generated", "fields": [
    {"name": "id", "type": ["null", "long"], "default": null}
]}"#;

/// Order `n`'s fields: some null, some nested.
fn order(n: i64) -> Vec<(String, apache_avro::types::Value)> {
    use apache_avro::types::Value;
    let some = |value: Value| Value::Union(1, Box::new(value));
    let null = || Value::Union(0, Box::new(Value::Null));
    let text = |text: String| some(Value::String(text));
    let address = Value::Record(vec![
        (
            "city".to_owned(),
            if n % 4 == 0 {
                null()
            } else {
                text(format!("city{}", n % 3))
            },
        ),
        ("zip".to_owned(), Value::Int(1000 + n as i32)),
    ]);
    let tags = (0..n % 3)
        .map(|i| {
            if (n + i) % 5 == 0 {
                null()
            } else {
                text(format!("t{i}"))
            }
        })
        .collect();
    vec![
        ("id".to_owned(), Value::Long(n)),
        (
            "customer".to_owned(),
            if n % 5 == 0 {
                null()
            } else {
                text(format!("c{n}"))
            },
        ),
        (
            "amount".to_owned(),
            // n * 100 + 7 cents, big-endian two's complement.
            some(Value::Decimal(apache_avro::Decimal::from(
                ((n * 100 + 7) as i32).to_be_bytes(),
            ))),
        ),
        (
            "ts".to_owned(),
            some(Value::TimestampMillis(1_700_000_000_000 + n)),
        ),
        (
            "address".to_owned(),
            if n % 7 == 0 { null() } else { some(address) },
        ),
        ("tags".to_owned(), some(Value::Array(tags))),
    ]
}

#[test]
fn avro_records_of_a_hand_written_schema_are_read_and_written_as_flink_derives() {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let (a, c) = (connection(&clusters, "a"), connection(&clusters, "c"));
    let input = common::kafka::unique("sql-avro-orders");
    let output = common::kafka::unique("sql-avro-enriched");
    create_topic(&a, &input, 2);
    create_topic(&c, &output, 2);
    let schema = apache_avro::Schema::parse_str(ORDER_SCHEMA).unwrap();
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let producer = common::kafka::producer(&a);
    for n in 0..60 {
        let mut value = Vec::new();
        writer
            .write_value_ref(&mut value, &Value::Record(order(n)))
            .unwrap();
        producer
            .send(rdkafka::producer::BaseRecord::<(), _, _>::to(&input).payload(&value))
            .unwrap_or_else(|(error, _)| panic!("{error}"));
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();

    let script = format!(
        "CREATE TABLE orders (
           id BIGINT NOT NULL, customer STRING, amount DECIMAL(10, 2), ts TIMESTAMP(3),
           address ROW<city STRING, zip INT NOT NULL>, tags ARRAY<STRING>,
           `offset` BIGINT METADATA VIRTUAL
         ) WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '{input}', 'format' = 'avro',
                 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE enriched (
           id BIGINT, customer STRING, amount DECIMAL(10, 2), ts TIMESTAMP(3),
           address ROW<city STRING, zip INT NOT NULL>, tags ARRAY<STRING>
         ) WITH ('connector' = 'kafka', 'cluster' = 'c', 'topic' = '{output}',
                 'value.format' = 'avro', 'key.format' = 'avro', 'key.fields' = 'id');
         INSERT INTO enriched
         SELECT id, customer, amount, ts, address, tags FROM orders
         WHERE MOD(id, 10) <> 3 AND `offset` >= 0;"
    );
    let state = tempfile::tempdir().unwrap();
    let report = run(
        state.path(),
        "sql-kafka-avro",
        compile(&clusters, &script),
        2,
        RestoreFrom::Nothing,
        &Arc::default(),
    );
    assert_eq!(report.records_in, 60);

    let value_schema = apache_avro::Schema::parse_str(ENRICHED_SCHEMA).unwrap();
    let key_schema = apache_avro::Schema::parse_str(ENRICHED_KEY_SCHEMA).unwrap();
    let decode = |schema: &apache_avro::Schema, bytes: &[u8]| {
        let mut bytes = bytes;
        let value = GenericDatumReader::builder(schema)
            .build()
            .unwrap()
            .read_value(&mut bytes)
            .unwrap();
        assert!(bytes.is_empty(), "{} bytes after the record", bytes.len());
        value
    };
    let expected: BTreeMap<i64, Value> = (0..60)
        .filter(|n| n % 10 != 3)
        .map(|n| {
            let mut fields = order(n);
            fields[0].1 = Value::Union(1, Box::new(Value::Long(n)));
            (n, Value::Record(fields))
        })
        .collect();
    let mut written = BTreeMap::new();
    for (key, value) in read_keyed_bytes(&c, &output, 2, expected.len()) {
        let key = decode(&key_schema, &key.unwrap());
        let value = decode(&value_schema, &value.unwrap());
        let Value::Record(fields) = &value else {
            panic!("{value:?}")
        };
        assert_eq!(key, Value::Record(vec![fields[0].clone()]));
        let Value::Union(1, id) = &fields[0].1 else {
            panic!("{value:?}")
        };
        let Value::Long(id) = **id else {
            panic!("{value:?}")
        };
        assert!(written.insert(id, value).is_none(), "{id} written twice");
    }
    assert_eq!(written, expected);
}

/// One record of an upsert topic: the key's id, and its row (`None`: a
/// tombstone).
type Upsert = (String, Option<(String, i64)>);

/// `count` upserts and tombstones of 40 keys, drawn from `seed`, with repeated
/// identical rows and tombstones of keys never written among them.
fn upserts(seed: u64, count: u64) -> Vec<Upsert> {
    let mut records = Vec::new();
    for n in 0..count {
        let random = strom_runtime::pipelines::mix(seed, 0, n);
        let id = format!("k{}", random % 40);
        let record = match (random >> 8) % 10 {
            0 | 1 => (id, None),
            2 => (format!("never-{n}"), None),
            _ => {
                let score = ((random >> 16) % 200) as i64;
                (id, Some((format!("n{}", score % 3), score)))
            }
        };
        // Every tenth record comes twice: the same row again changes nothing.
        if n % 10 == 0 {
            records.push(record.clone());
        }
        records.push(record);
    }
    records
}

/// Writes `records` to `topic`, keyed by `{"id": ...}`, values as JSON rows and
/// tombstones as records without a value.
fn produce_upserts(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    records: &[Upsert],
) {
    let producer = common::kafka::producer(connection);
    for (id, row) in records {
        let key = format!(r#"{{"id": "{id}"}}"#);
        let value = row.as_ref().map(|(name, score)| {
            format!(r#"{{"id": "{id}", "name": "{name}", "score": {score}}}"#)
        });
        let mut record = rdkafka::producer::BaseRecord::<_, String, _>::to(topic).key(&key);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        producer
            .send(record)
            .unwrap_or_else(|(error, _)| panic!("{error}"));
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
}

/// Every committed record of `topic` (key and value, as text), in partition
/// order: read until none came for 3 s (the job that wrote them has ended).
fn read_until_quiet(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    partitions: i32,
) -> Vec<(Option<String>, Option<String>)> {
    let text = |bytes: Option<Bytes>| bytes.map(|b| String::from_utf8(b).unwrap());
    read_bytes_until_quiet(connection, topic, partitions)
        .into_iter()
        .map(|(key, value)| (text(key), text(value)))
        .collect()
}

/// [`read_until_quiet`], the keys and values as bytes.
fn read_bytes_until_quiet(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    partitions: i32,
) -> Vec<(Option<Bytes>, Option<Bytes>)> {
    use rdkafka::Message;
    let consumer = committed_reader(connection, topic, partitions);
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while Instant::now() < deadline && last.elapsed() < Duration::from_secs(3) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            records.push((
                message.key().map(<[u8]>::to_vec),
                message.payload().map(<[u8]>::to_vec),
            ));
            last = Instant::now();
        }
    }
    records
}

/// An upsert-kafka table on A read as a changelog (each key's last row kept by
/// the changelog normalize), filtered and written to an upsert-kafka table on
/// C: stopped with a savepoint at parallelism 2, restored at 4, stopped again,
/// restored at 1 and run to the end, with updates, tombstones (of keys written
/// before a savepoint, so only restored state knows their rows) and repeated
/// rows produced between the runs. The last record of each key in C is its row
/// in the model (the upsert table applied, then filtered), or a tombstone.
#[test]
fn an_upsert_table_is_read_as_a_changelog_filtered_and_upserted_across_restores() {
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let (a, c) = (connection(&clusters, "a"), connection(&clusters, "c"));
    let input = common::kafka::unique("sql-upserts-in");
    let output = common::kafka::unique("sql-upserts-out");
    create_topic(&a, &input, 3);
    create_topic(&c, &output, 2);
    let script = |bounded: bool| {
        let bounded = if bounded {
            ", 'scan.bounded.mode' = 'latest-offset'"
        } else {
            ""
        };
        format!(
            "CREATE TABLE scores (id STRING, name STRING, score BIGINT, PRIMARY KEY (id) NOT ENFORCED)
               WITH ('connector' = 'upsert-kafka', 'cluster' = 'a', 'topic' = '{input}',
                     'key.format' = 'json', 'value.format' = 'json'{bounded});
             CREATE TABLE high_scores (id STRING, name STRING, score BIGINT,
                                       PRIMARY KEY (id) NOT ENFORCED)
               WITH ('connector' = 'upsert-kafka', 'cluster' = 'c', 'topic' = '{output}',
                     'key.format' = 'json', 'value.format' = 'json',
                     'sink.delivery-guarantee' = 'exactly-once');
             INSERT INTO high_scores SELECT id, name, score FROM scores WHERE score >= 100;"
        )
    };
    let phases = [upserts(1, 300), upserts(2, 200), upserts(3, 200)];
    let state = tempfile::tempdir().unwrap();
    let name = "sql-kafka-upserts";
    let mut restore = RestoreFrom::Nothing;
    for (phase, parallelism) in [(0, 2), (1, 4)] {
        produce_upserts(&a, &input, &phases[phase]);
        let (control, job) = start(
            local_config(
                state.path(),
                name,
                parallelism,
                Duration::from_millis(200),
                2,
                restore,
            ),
            compile(&clusters, &script(false)).pipeline(Arc::new(|_| {})),
        );
        wait_for_records(&control, phases[phase].len() as u64);
        control.request_stop();
        let report = job.join().unwrap().unwrap();
        assert_eq!(report.records_in, phases[phase].len() as u64);
        restore =
            RestoreFrom::Snapshot(report.snapshots.savepoints.last().unwrap().location.clone());
    }
    produce_upserts(&a, &input, &phases[2]);
    let last = run(
        state.path(),
        name,
        compile(&clusters, &script(true)),
        1,
        restore,
        &Arc::default(),
    );
    assert_eq!(last.records_in, phases[2].len() as u64);

    // The model: the upsert table applied, then the filter.
    let mut table: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (id, row) in phases.iter().flatten() {
        match row {
            Some(row) => table.insert(id.clone(), row.clone()),
            None => table.remove(id),
        };
    }
    let expected: BTreeMap<String, (String, i64)> = table
        .into_iter()
        .filter(|(_, (_, score))| *score >= 100)
        .collect();
    let records = read_until_quiet(&c, &output, 2);
    let mut latest: BTreeMap<String, Option<(String, i64)>> = BTreeMap::new();
    for (key, value) in &records {
        let key: serde_json::Value = serde_json::from_str(key.as_deref().unwrap()).unwrap();
        let id = key["id"].as_str().unwrap().to_owned();
        let row = value.as_deref().map(|value| {
            let value: serde_json::Value = serde_json::from_str(value).unwrap();
            assert_eq!(value["id"].as_str(), Some(id.as_str()));
            (
                value["name"].as_str().unwrap().to_owned(),
                value["score"].as_i64().unwrap(),
            )
        });
        latest.insert(id, row);
    }
    let deleted = latest.values().filter(|row| row.is_none()).count();
    assert!(deleted > 0, "no key was deleted downstream: {latest:?}");
    let written: BTreeMap<String, (String, i64)> = latest
        .into_iter()
        .filter_map(|(id, row)| Some((id, row?)))
        .collect();
    assert_eq!(written, expected);
}

/// The schema registry of `e2e/infra/schema-registry.sh`.
fn schema_registry() -> Option<SchemaRegistry> {
    strom_e2e::service("STROM_SCHEMA_REGISTRY_URL", "the schema registry")
        .expect("the schema registry")
        .map(|url| SchemaRegistry::new(&url).unwrap())
}

/// Clicks as an older producer wrote them: `amount` an int, no `country`.
const CLICK_V1: &str = r#"{"type": "record", "name": "Click", "namespace": "shop", "fields": [
    {"name": "customer", "type": "string"},
    {"name": "amount", "type": "int"}
]}"#;

/// Clicks as a newer producer writes them (backward compatible with v1): other
/// field order, `amount` a long, a `country` that may be null.
const CLICK_V2: &str = r#"{"type": "record", "name": "Click", "namespace": "shop", "fields": [
    {"name": "amount", "type": "long"},
    {"name": "country", "type": ["null", "string"], "default": null},
    {"name": "customer", "type": "string"}
]}"#;

/// The schema Flink derives for the `clicks` table of the tests below.
const CLICKS_TABLE_SCHEMA: &str = r#"{"type": "record", "name": "record", "namespace": "org.apache.flink.avro.generated", "fields": [
    {"name": "customer", "type": "string"},
    {"name": "amount", "type": "long"},
    {"name": "country", "type": ["null", "string"], "default": null}
]}"#;

/// The key schema Flink registers for `totals`: its PRIMARY KEY, NOT NULL.
const TOTALS_KEY_SCHEMA: &str = r#"{"type": "record", "name": "record", "namespace": "org.apache.flink.avro.generated", "fields": [
    {"name": "customer", "type": "string"}
]}"#;

/// The value schema Flink registers for `totals`: every column.
const TOTALS_VALUE_SCHEMA: &str = r#"{"type": "record", "name": "record", "namespace": "org.apache.flink.avro.generated", "fields": [
    {"name": "customer", "type": "string"},
    {"name": "clicks", "type": ["null", "long"], "default": null},
    {"name": "amount", "type": ["null", "long"], "default": null},
    {"name": "countries", "type": ["null", "long"], "default": null}
]}"#;

/// A record in the Confluent wire format: schema id `id`, then `value` as a
/// datum of `schema`.
fn confluent_record(id: u32, schema: &str, value: apache_avro::types::Value) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_ref(&mut bytes, &value)
        .unwrap();
    bytes
}

/// Writes `values` to partition `partition` of `topic`, without keys.
fn produce_bytes(
    connection: &strom_runtime::connectors::kafka::ClusterConnection,
    topic: &str,
    values: &[Vec<u8>],
    partition: i32,
) {
    let producer = common::kafka::producer(connection);
    for value in values {
        producer
            .send(
                rdkafka::producer::BaseRecord::<(), _, _>::to(topic)
                    .payload(value)
                    .partition(partition),
            )
            .unwrap_or_else(|(error, _)| panic!("{error}"));
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
}

/// Click `n`, written with schema v1 (`n` even) or v2 (`n` odd).
fn click(n: i64) -> (bool, apache_avro::types::Value) {
    use apache_avro::types::Value;
    let customer = ("customer".to_owned(), Value::String(format!("c{}", n % 4)));
    if n % 2 == 0 {
        let amount = ("amount".to_owned(), Value::Int(n as i32));
        (false, Value::Record(vec![customer, amount]))
    } else {
        let country = if n % 3 == 0 {
            Value::Union(0, Box::new(Value::Null))
        } else {
            Value::Union(1, Box::new(Value::String(format!("k{}", n % 3))))
        };
        let amount = ("amount".to_owned(), Value::Long(n));
        (
            true,
            Value::Record(vec![amount, ("country".to_owned(), country), customer]),
        )
    }
}

/// Flink's `avro-confluent` format: records written by two versions of a
/// producer's schema (both registered under the input's subject) are read,
/// each with its own writer schema from the registry, resolved to the table's
/// (a promoted int, a missing field as null, another field order); an updating
/// aggregate is upserted into C with the key and value schemas Flink derives,
/// registered under `<topic>-key` and `<topic>-value`, every record framed with
/// their ids.
#[test]
fn avro_confluent_tables_read_each_writer_schema_and_register_what_they_write() {
    use apache_avro::types::Value;
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let Some(registry) = schema_registry() else {
        return;
    };
    let (a, c) = (connection(&clusters, "a"), connection(&clusters, "c"));
    let input = common::kafka::unique("sql-confluent-clicks");
    let output = common::kafka::unique("sql-confluent-totals");
    create_topic(&a, &input, 2);
    create_topic(&c, &output, 2);
    let subject = format!("{input}-value");
    let v1 = registry.register(&subject, CLICK_V1).unwrap();
    let v2 = registry.register(&subject, CLICK_V2).unwrap();
    assert_ne!(v1, v2);
    let records: Vec<Vec<u8>> = (0..80)
        .map(|n| match click(n) {
            (false, value) => confluent_record(v1, CLICK_V1, value),
            (true, value) => confluent_record(v2, CLICK_V2, value),
        })
        .collect();
    produce_bytes(&a, &input, &records[..40], 0);
    produce_bytes(&a, &input, &records[40..], 1);

    let url = registry.url();
    let script = format!(
        "CREATE TABLE clicks (customer STRING NOT NULL, amount BIGINT NOT NULL, country STRING)
         WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '{input}',
               'format' = 'avro-confluent', 'avro-confluent.url' = '{url}',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE totals (
           customer STRING, clicks BIGINT, amount BIGINT, countries BIGINT,
           PRIMARY KEY (customer) NOT ENFORCED
         ) WITH ('connector' = 'upsert-kafka', 'cluster' = 'c', 'topic' = '{output}',
                 'key.format' = 'avro-confluent', 'key.avro-confluent.url' = '{url}',
                 'value.format' = 'avro-confluent', 'value.avro-confluent.url' = '{url}');
         INSERT INTO totals
         SELECT customer, COUNT(*), SUM(amount), COUNT(country) FROM clicks GROUP BY customer;"
    );
    let state = tempfile::tempdir().unwrap();
    let report = run(
        state.path(),
        "sql-kafka-avro-confluent",
        compile(&clusters, &script),
        2,
        RestoreFrom::Nothing,
        &Arc::default(),
    );
    assert_eq!(report.records_in, 80);

    let key_id = registry.latest_id(&format!("{output}-key")).unwrap();
    let value_id = registry.latest_id(&format!("{output}-value")).unwrap();
    let key_schema = apache_avro::Schema::parse_str(TOTALS_KEY_SCHEMA).unwrap();
    let value_schema = apache_avro::Schema::parse_str(TOTALS_VALUE_SCHEMA).unwrap();
    // The schemas as registered, with Flink's `"default": null` on nullable
    // fields (Avro's equality ignores defaults; their JSON does not).
    let json = |schema: &apache_avro::Schema| serde_json::to_value(schema).unwrap();
    assert_eq!(json(&registry.schema(key_id).unwrap()), json(&key_schema));
    assert_eq!(
        json(&registry.schema(value_id).unwrap()),
        json(&value_schema)
    );
    let decode = |id: u32, schema: &apache_avro::Schema, bytes: &[u8]| {
        assert_eq!(bytes[0], 0, "magic byte");
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);
        let mut datum = &bytes[5..];
        let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap();
        assert!(datum.is_empty(), "{} bytes after the record", datum.len());
        value
    };
    let long = |n: i64| Value::Union(1, Box::new(Value::Long(n)));
    let mut expected = BTreeMap::new();
    for n in 0..80 {
        let entry = expected.entry(format!("c{}", n % 4)).or_insert((0, 0, 0));
        entry.0 += 1;
        entry.1 += n;
        entry.2 += i64::from(n % 2 == 1 && n % 3 != 0);
    }
    let mut latest = BTreeMap::new();
    for (key, value) in read_bytes_until_quiet(&c, &output, 2) {
        let key = decode(key_id, &key_schema, &key.expect("a key"));
        let Value::Record(key_fields) = key else {
            panic!("{key:?}")
        };
        let Value::String(customer) = key_fields[0].1.clone() else {
            panic!("{key_fields:?}")
        };
        // A tombstone is an update's retraction: the next record has the row.
        latest.insert(
            customer,
            value.map(|value| decode(value_id, &value_schema, &value)),
        );
    }
    let expected: BTreeMap<String, Option<Value>> = expected
        .into_iter()
        .map(|(customer, (clicks, amount, countries))| {
            let row = Value::Record(vec![
                ("customer".to_owned(), Value::String(customer.clone())),
                ("clicks".to_owned(), long(clicks)),
                ("amount".to_owned(), long(amount)),
                ("countries".to_owned(), long(countries)),
            ]);
            (customer, Some(row))
        })
        .collect();
    assert_eq!(latest, expected);
}

/// An `avro-confluent` record the job cannot read fails it, naming the record
/// and why: an id the registry does not know, a writer schema that does not
/// resolve to the table's (a field the table needs, missing without a
/// default), no Confluent header.
#[test]
fn avro_confluent_records_that_cannot_be_read_fail_the_job_naming_them() {
    use apache_avro::types::Value;
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let Some(registry) = schema_registry() else {
        return;
    };
    let a = connection(&clusters, "a");
    let unrelated =
        r#"{"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}"#;
    let unrelated_id = registry
        .register(
            &common::kafka::unique("sql-confluent-other-value"),
            unrelated,
        )
        .unwrap();
    let good_id = registry
        .register(
            &common::kafka::unique("sql-confluent-good-value"),
            CLICKS_TABLE_SCHEMA,
        )
        .unwrap();
    // The good record is written with the table's own schema: read without
    // resolution.
    let good = confluent_record(
        good_id,
        CLICKS_TABLE_SCHEMA,
        Value::Record(vec![
            ("customer".to_owned(), Value::String("c0".to_owned())),
            ("amount".to_owned(), Value::Long(5)),
            ("country".to_owned(), Value::Union(0, Box::new(Value::Null))),
        ]),
    );
    let cases = [
        (
            confluent_record(999_999, CLICK_V1, click(2).1),
            "the writer schema of the record at {topic}/0@1: the schema registry at",
            "refused the schema of id 999999: HTTP 404",
        ),
        (
            confluent_record(
                unrelated_id,
                unrelated,
                Value::Record(vec![("x".to_owned(), Value::Int(7))]),
            ),
            "the record at {topic}/0@1 does not parse as avro",
            &*format!(
                "written with schema id {unrelated_id}, which does not resolve to the table's schema"
            ),
        ),
        (
            b"{\"customer\": \"c1\"}".to_vec(),
            "the record at {topic}/0@1 does not parse as avro",
            "not in the Confluent wire format: magic byte 123, not 0",
        ),
    ];
    for (bad, at, why) in cases {
        let topic = common::kafka::unique("sql-confluent-bad");
        create_topic(&a, &topic, 1);
        produce_bytes(&a, &topic, &[good.clone(), bad], 0);
        let script = format!(
            "CREATE TABLE clicks (customer STRING NOT NULL, amount BIGINT NOT NULL, country STRING)
             WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '{topic}',
                   'format' = 'avro-confluent', 'avro-confluent.url' = '{}',
                   'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE out (customer STRING, amount BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT customer, amount FROM clicks;",
            registry.url()
        );
        let state = tempfile::tempdir().unwrap();
        let config = local_config(
            state.path(),
            "sql-kafka-avro-confluent-bad",
            1,
            Duration::from_millis(200),
            1,
            RestoreFrom::Nothing,
        );
        let job = compile(&clusters, &script);
        let error = match run_job(config, job.pipeline(Arc::new(|_| {})), Arc::default()) {
            Ok(report) => format!("{:?}", report.snapshots.failure),
            Err(error) => error.to_string(),
        };
        let at = at.replace("{topic}", &topic);
        assert!(error.contains(&at), "{error}\nshould name: {at}");
        assert!(error.contains(why), "{error}\nshould say: {why}");
    }
}

/// A sink whose schema the registry refuses (the subject holds a schema the
/// table's is not compatible with) fails the job when it starts, naming the
/// table, the subject and the registry's reason; nothing is written.
#[test]
fn an_avro_confluent_sink_whose_schema_the_registry_refuses_fails_before_writing() {
    let Some(clusters) = common::kafka::clusters() else {
        return;
    };
    let Some(registry) = schema_registry() else {
        return;
    };
    let a = connection(&clusters, "a");
    let output = common::kafka::unique("sql-confluent-refused");
    create_topic(&a, &output, 1);
    let subject = format!("{output}-value");
    registry.register(&subject, r#""string""#).unwrap();
    let script = format!(
        "CREATE TABLE seq (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10',
           'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '10');
         CREATE TABLE out (n BIGINT) WITH ('connector' = 'kafka', 'cluster' = 'a',
           'topic' = '{output}', 'format' = 'avro-confluent', 'avro-confluent.url' = '{}');
         INSERT INTO out SELECT n FROM seq;",
        registry.url()
    );
    let state = tempfile::tempdir().unwrap();
    let config = local_config(
        state.path(),
        "sql-kafka-avro-confluent-refused",
        1,
        Duration::from_millis(200),
        1,
        RestoreFrom::Nothing,
    );
    let job = compile(&clusters, &script);
    let error = match run_job(config, job.pipeline(Arc::new(|_| {})), Arc::default()) {
        Ok(report) => format!("{:?}", report.snapshots.failure),
        Err(error) => error.to_string(),
    };
    let expected = format!(
        "table out: the value's schema: the schema registry at {} refused registering a schema under subject '{subject}': HTTP 409",
        registry.url()
    );
    assert!(error.contains(&expected), "{error}\nshould say: {expected}");
    assert!(common::kafka::consume_available(&a, &output, 1).is_empty());
}
