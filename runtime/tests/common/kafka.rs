//! Helpers for tests against the Kafka clusters of `e2e/infra/kafka.sh`.
#![allow(dead_code, unused_imports)] // Not every test file uses every helper.

use rdkafka::config::ClientConfig;
use rdkafka::producer::BaseProducer;
use strom_crds::KafkaCluster;
use strom_e2e::KafkaClusters;
pub use strom_e2e::kafka::{Deliveries, counts, once_each, produce_with, unique, values};
use strom_runtime::connectors::kafka::{ClusterConnection, SecretMounts};

pub fn clusters() -> Option<KafkaClusters> {
    KafkaClusters::from_env().expect("the Kafka clusters")
}

/// The `spec.kafkaClusters` list (YAML) of a job using the three test clusters as
/// the user `app`, each line indented by `indent` spaces: `a` (plaintext), `b`
/// (SCRAM-SHA-512), `b-sha256` (B's SCRAM-SHA-256 listener), `c` (mTLS) and
/// `c-one-way` (C's one-way TLS listener, SCRAM-SHA-512): every authentication type
/// the API offers.
pub fn clusters_yaml(clusters: &KafkaClusters, indent: usize) -> String {
    let yaml = format!(
        r#"- name: a
  bootstrapServers: "{a}"
- name: b
  bootstrapServers: "{b}"
  authentication:
    type: scram-sha-512
    username: app
    passwordSecret: {{secretName: kafka-b-app, password: password}}
- name: b-sha256
  bootstrapServers: "{b_sha256}"
  authentication:
    type: scram-sha-256
    username: app
    passwordSecret: {{secretName: kafka-b-app, password: password}}
- name: c
  bootstrapServers: "{c}"
  tls:
    trustedCertificates: [{{secretName: kafka-c-cluster-ca-cert, certificate: ca.crt}}]
  authentication:
    type: tls
    certificateAndKey: {{secretName: kafka-c-app, certificate: user.crt, key: user.key}}
- name: c-one-way
  bootstrapServers: "{c_one_way}"
  tls:
    trustedCertificates: [{{secretName: kafka-c-cluster-ca-cert, certificate: ca.crt}}]
  authentication:
    type: scram-sha-512
    username: app
    passwordSecret: {{secretName: kafka-c-scram-app, password: password}}
"#,
        a = clusters.a,
        b = clusters.b,
        b_sha256 = clusters.b_sha256,
        c = clusters.c,
        c_one_way = clusters.c_one_way,
    );
    let margin = " ".repeat(indent);
    yaml.lines()
        .map(|line| format!("{margin}{line}\n"))
        .collect()
}

/// The `spec.kafkaClusters` entries of [`clusters_yaml`], and where their Secrets
/// are mounted.
pub fn job_clusters(clusters: &KafkaClusters) -> (Vec<KafkaCluster>, SecretMounts) {
    (
        serde_yaml_ng::from_str(&clusters_yaml(clusters, 0)).unwrap(),
        SecretMounts::new(&clusters.secrets),
    )
}

pub fn connection(clusters: &KafkaClusters, name: &str) -> ClusterConnection {
    let (specs, mounts) = job_clusters(clusters);
    ClusterConnection::find(&specs, name, &mounts).unwrap()
}

pub fn client(connection: &ClusterConnection) -> ClientConfig {
    connection.client_config([])
}

/// Creates `topic` on the cluster of `connection`.
pub fn create_topic(connection: &ClusterConnection, topic: &str, partitions: i32) {
    strom_e2e::kafka::create_topic(&client(connection), topic, partitions);
}

/// Grows `topic` on the cluster of `connection` to `total` partitions.
pub fn add_partitions(connection: &ClusterConnection, topic: &str, total: usize) {
    strom_e2e::kafka::add_partitions(&client(connection), topic, total);
}

/// Deletes the records of `topic`'s `partition` before `offset`, as retention would.
pub fn delete_records_before(
    connection: &ClusterConnection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i64 {
    strom_e2e::kafka::delete_records_before(&client(connection), topic, partition, offset)
}

/// Deletes the consumer groups whose names start with `prefix`, as the brokers'
/// offset retention would; how many there were.
pub fn delete_groups_starting_with(connection: &ClusterConnection, prefix: &str) -> usize {
    strom_e2e::kafka::delete_groups_starting_with(&client(connection), prefix)
}

/// Writes `values` to `partition` of `topic` in one committed transaction.
pub fn produce_transactionally(
    connection: &ClusterConnection,
    topic: &str,
    partition: i32,
    values: &[String],
) {
    strom_e2e::kafka::produce_transactionally(&client(connection), topic, partition, values);
}

/// Writes `values` to `topic`, keyed by their position, to `partition` if given.
pub fn produce(
    connection: &ClusterConnection,
    topic: &str,
    values: &[String],
    partition: Option<i32>,
) {
    produce_with(&producer(connection), topic, values, partition);
}

/// A producer for test input on the cluster of `connection`.
pub fn producer(connection: &ClusterConnection) -> BaseProducer<Deliveries> {
    strom_e2e::kafka::producer(&client(connection))
}

/// Every committed value in `topic`, once `expected` arrived (or 30 s passed).
pub fn consume_all(
    connection: &ClusterConnection,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<String> {
    strom_e2e::kafka::consume_all(&client(connection), topic, partitions, expected)
}

/// The committed values in `topic` now.
pub fn consume_available(
    connection: &ClusterConnection,
    topic: &str,
    partitions: i32,
) -> Vec<String> {
    strom_e2e::kafka::consume_available(&client(connection), topic, partitions)
}
