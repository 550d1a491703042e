//! The SQL of the shipped examples (`examples/*.yaml`), as written, run on the
//! test clusters of `e2e/infra/kafka.sh` standing in for the examples' clusters
//! (only the topic names are made unique): what they write is read back with
//! `read_committed` and checked against their input.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::kafka::{
    clusters, clusters_yaml, connection, consume_all, consume_available, create_topic, produce,
    unique,
};
use common::{local_config, start, wait_for_records};
use strom_crds::KafkaCluster;
use strom_e2e::KafkaClusters;
use strom_runtime::connectors::kafka::SecretMounts;
use strom_runtime::exec::{JobReport, RestoreFrom};

/// The SQL of `examples/<file>`, its `'topic' = 'x'` options renamed by `topics`.
fn example_sql(file: &str, topics: &[(&str, &str)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let job = strom_crds::manifest::parse_stream_job(&text).unwrap();
    let mut sql = job.spec.sql.expect("the example is a SQL job");
    for (from, to) in topics {
        let option = format!("'topic' = '{from}'");
        assert!(sql.contains(&option), "{file} has no {option}");
        sql = sql.replace(&option, &format!("'topic' = '{to}'"));
    }
    sql
}

/// The test clusters A, B and C under the example's names for them.
fn renamed_clusters(clusters: &KafkaClusters, names: [&str; 3]) -> Vec<KafkaCluster> {
    let mut yaml = clusters_yaml(clusters, 0);
    for (test, example) in ["a", "b", "c"].iter().zip(names) {
        yaml = yaml.replace(
            &format!("- name: {test}\n"),
            &format!("- name: {example}\n"),
        );
    }
    serde_yaml_ng::from_str(&yaml).unwrap()
}

/// Runs `sql` on the clusters until it has read `records` records, then stops it
/// with a savepoint (which commits everything it wrote).
fn run_until_read(
    clusters: &[KafkaCluster],
    mounts: &SecretMounts,
    sql: &str,
    parallelism: u32,
    records: u64,
) -> JobReport {
    let mut job = strom_runtime::sql::compile(sql).unwrap_or_else(|error| panic!("{error}"));
    job.connect(clusters, mounts)
        .unwrap_or_else(|error| panic!("{error}"));
    let state = tempfile::tempdir().unwrap();
    let (control, running) = start(
        local_config(
            state.path(),
            &unique("example"),
            parallelism,
            Duration::from_millis(200),
            2,
            RestoreFrom::Nothing,
        ),
        job.pipeline(Arc::new(|_| {})),
    );
    wait_for_records(&control, records);
    control.request_stop();
    let report = running.join().unwrap().unwrap();
    assert!(report.snapshots.failure.is_none(), "{:?}", report.snapshots);
    assert_eq!(report.snapshots.savepoints.len(), 1);
    report
}

#[test]
fn the_multi_cluster_example_writes_every_order_of_eu_and_us_once() {
    let Some(clusters) = clusters() else { return };
    let (a, b, c) = (
        connection(&clusters, "a"),
        connection(&clusters, "b"),
        connection(&clusters, "c"),
    );
    let (eu, us, global) = (unique("orders"), unique("orders"), unique("orders-global"));
    let per_customer = unique("orders-per-customer");
    create_topic(&a, &eu, 2);
    create_topic(&b, &us, 3);
    create_topic(&c, &global, 2);
    create_topic(&c, &per_customer, 2);
    let order = |region: &str, n: u64| {
        format!(
            r#"{{"order_id": "{region}-{n}", "customer_id": {}, "amount": {}.5, "ts": "2024-01-01 10:00:{:02}"}}"#,
            n % 13,
            n % 100,
            n % 60
        )
    };
    produce(
        &a,
        &eu,
        &(0..500).map(|n| order("eu", n)).collect::<Vec<_>>(),
        None,
    );
    produce(
        &b,
        &us,
        &(0..400).map(|n| order("us", n)).collect::<Vec<_>>(),
        None,
    );

    // Both source tables name topic 'orders': each is renamed in turn.
    let mut sql = example_sql(
        "multi-cluster.yaml",
        &[
            ("orders-global", &global),
            ("orders-per-customer", &per_customer),
        ],
    );
    sql = sql.replacen("'topic' = 'orders'", &format!("'topic' = '{eu}'"), 1);
    sql = sql.replacen("'topic' = 'orders'", &format!("'topic' = '{us}'"), 1);
    let specs = renamed_clusters(&clusters, ["eu", "us", "analytics"]);
    let report = run_until_read(&specs, &SecretMounts::new(&clusters.secrets), &sql, 4, 900);
    assert_eq!(report.records_in, 900);

    let written = consume_all(&c, &global, 2, 900);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for value in &written {
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        let id = row["order_id"].as_str().unwrap();
        assert_eq!(row["region"].as_str(), Some(&id[..2]), "{value}");
        assert!(
            row["amount"].as_f64().is_some() || row["amount"].as_str().is_some(),
            "{value}"
        );
        *seen.entry(id.to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len(), 900, "distinct orders written");
    assert_eq!(written.len(), 900, "orders written");

    // Each customer's running count and total, upserted by customer: the last row of
    // each is what the orders add up to.
    let mut last: BTreeMap<u64, (u64, f64)> = BTreeMap::new();
    for value in consume_available(&c, &per_customer, 2) {
        let row: serde_json::Value = serde_json::from_str(&value).unwrap();
        let total = row["total"]
            .as_f64()
            .or_else(|| row["total"].as_str()?.parse().ok())
            .unwrap();
        last.insert(
            row["customer_id"].as_u64().unwrap(),
            (row["orders"].as_u64().unwrap(), total),
        );
    }
    let mut expected: BTreeMap<u64, (u64, f64)> = BTreeMap::new();
    for n in (0..500).chain(0..400) {
        let entry = expected.entry(n % 13).or_default();
        entry.0 += 1;
        entry.1 += (n % 100) as f64 + 0.5;
    }
    assert_eq!(last, expected);
}

#[test]
fn the_kafka_sql_example_counts_views_per_country_and_window() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let (views, counts) = (unique("page-views"), unique("views-per-country"));
    create_topic(&a, &views, 3);
    create_topic(&a, &counts, 1);
    // 2,000 views 25 ms apart (50 s of event time), then one view an hour later
    // on every partition, which moves every partition's watermark past them.
    let view = |n: u64, millis: u64| {
        format!(
            r#"{{"user_id": {n}, "country": "c{}", "url": "/p/{}", "ts": "2024-01-01 {:02}:{:02}:{:02}.{:03}"}}"#,
            n % 4,
            n % 9,
            millis / 3_600_000,
            millis / 60_000 % 60,
            millis / 1000 % 60,
            millis % 1000
        )
    };
    let input: Vec<String> = (0..2000).map(|n| view(n, n * 25)).collect();
    produce(&a, &views, &input, None);
    for partition in 0..3 {
        produce(&a, &views, &[view(9999, 3_600_000)], Some(partition));
    }

    let sql = example_sql(
        "kafka-sql.yaml",
        &[("page-views", &views), ("views-per-country", &counts)],
    );
    let specs = renamed_clusters(&clusters, ["main", "b", "c"]);
    run_until_read(&specs, &SecretMounts::new(&clusters.secrets), &sql, 3, 2003);

    let mut expected: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for n in 0..2000u64 {
        *expected
            .entry((format!("c{}", n % 4), (n * 25 / 10_000 + 1) * 10))
            .or_default() += 1;
    }
    let written = consume_all(&a, &counts, 1, expected.len());
    let mut actual: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for value in &written {
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        // window_end is 2024-01-01T00:00:SS: the seconds since midnight.
        let end = row["window_end"].as_str().unwrap();
        let seconds: u64 =
            end[17..19].parse::<u64>().unwrap() + 60 * end[14..16].parse::<u64>().unwrap();
        let key = (row["country"].as_str().unwrap().to_owned(), seconds);
        assert!(
            actual
                .insert(key.clone(), row["views"].as_u64().unwrap())
                .is_none(),
            "{key:?} written twice"
        );
    }
    assert_eq!(actual, expected);
}
