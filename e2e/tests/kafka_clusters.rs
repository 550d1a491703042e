//! The three Kafka clusters of `e2e/infra/kafka.sh`, through librdkafka: each
//! listener (plaintext, SCRAM-SHA-512, SCRAM-SHA-256, mTLS, one-way TLS with SCRAM)
//! takes records from its own users and hands them back, and refuses a wrong
//! password, a certificate from another CA, another cluster's credentials, another
//! mechanism, a client that does not trust the broker and a user without rights on a
//! topic.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::KafkaClusters;

/// Who connects, and how.
#[derive(Clone, Copy, Debug)]
enum Client<'a> {
    /// No credentials, no TLS (cluster A).
    Plaintext,
    /// A SCRAM-SHA-512 user of cluster B, with the password of the Secret
    /// `kafka-b-<user>`, or the given wrong one.
    Scram {
        user: &'a str,
        wrong_password: Option<&'a str>,
    },
    /// A client certificate from the Secret `kafka-c-<secret>`, trusting cluster C's CA.
    Certificate { secret: &'a str },
    /// A SCRAM-SHA-256 user of cluster B, with the password of `kafka-b-<user>`.
    ScramSha256 { user: &'a str },
    /// A SCRAM-SHA-512 user with the password of the Secret `secret`, over TLS
    /// trusting the CA of the Secret `trusted` (`ca.crt`).
    ScramOverTls {
        secret: &'a str,
        user: &'a str,
        trusted: &'a str,
    },
}

fn clusters() -> Option<KafkaClusters> {
    KafkaClusters::from_env().expect("the Kafka clusters")
}

fn config(clusters: &KafkaClusters, bootstrap: &str, client: Client<'_>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "20000");
    match client {
        Client::Plaintext => {
            config.set("security.protocol", "plaintext");
        }
        Client::Scram {
            user,
            wrong_password,
        } => {
            let password = match wrong_password {
                Some(password) => password.to_owned(),
                None => clusters
                    .secret_value(&format!("kafka-b-{user}"), "password")
                    .unwrap(),
            };
            config
                .set("security.protocol", "sasl_plaintext")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        Client::Certificate { secret } => {
            let secret = format!("kafka-c-{secret}");
            config
                .set("security.protocol", "ssl")
                .set(
                    "ssl.ca.location",
                    path(&clusters.secret_file("kafka-c-cluster-ca-cert", "ca.crt")),
                )
                .set(
                    "ssl.certificate.location",
                    path(&clusters.secret_file(&secret, "user.crt")),
                )
                .set(
                    "ssl.key.location",
                    path(&clusters.secret_file(&secret, "user.key")),
                );
        }
        Client::ScramSha256 { user } => {
            let password = clusters
                .secret_value(&format!("kafka-b-{user}"), "password")
                .unwrap();
            config
                .set("security.protocol", "sasl_plaintext")
                .set("sasl.mechanism", "SCRAM-SHA-256")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        Client::ScramOverTls {
            secret,
            user,
            trusted,
        } => {
            let password = clusters.secret_value(secret, "password").unwrap();
            config
                .set("security.protocol", "sasl_ssl")
                .set(
                    "ssl.ca.location",
                    path(&clusters.secret_file(trusted, "ca.crt")),
                )
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
    }
    config
}

fn path(path: &std::path::Path) -> String {
    path.to_str().unwrap().to_owned()
}

fn unique_topic(prefix: &str) -> String {
    format!("{prefix}e2e-{}", uuid::Uuid::new_v4().simple())
}

async fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

/// Produces `count` keyed records to `topic`, then reads every partition from the
/// beginning and checks that exactly those records come back.
async fn round_trip(config: &ClientConfig, topic: &str, count: usize) {
    create_topic(config, topic, 3).await;
    let producer: FutureProducer = config.create().unwrap();
    let sent: BTreeSet<String> = (0..count).map(|i| format!("record-{i}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        let key = format!("key-{}", i % 7);
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(payload),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("producing to {topic}: {error}"));
    }

    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..3 {
        partitions
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut received = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let payload = std::str::from_utf8(message.payload().unwrap()).unwrap();
            assert!(
                received.insert(payload.to_owned()),
                "{payload} read twice from {topic}"
            );
        }
    }
    assert_eq!(received, sent, "what {topic} gave back");
}

/// Records the errors librdkafka reports about the connection.
#[derive(Default)]
struct Errors(Mutex<Vec<String>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// Connects with `config` and asks for the cluster's metadata, which must be
/// refused; returns the errors librdkafka reported meanwhile.
fn refused(config: &ClientConfig) -> Vec<String> {
    let consumer: BaseConsumer<Errors> = config
        .create_with_context(Errors::default())
        .expect("a client configuration librdkafka accepts");
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5));
    assert!(
        metadata.is_err(),
        "the cluster answered a client it should refuse"
    );
    // Errors reach the context when the client's queue is polled.
    let deadline = Instant::now() + Duration::from_secs(5);
    while consumer.context().0.lock().unwrap().is_empty() && Instant::now() < deadline {
        consumer.poll(Duration::from_millis(100));
    }
    consumer.context().0.lock().unwrap().clone()
}

fn assert_reported(errors: &[String], expected: &[&str], what: &str) {
    assert!(
        errors
            .iter()
            .any(|error| expected.iter().any(|text| error.contains(text))),
        "{what}: expected an error containing one of {expected:?}, got {errors:#?}"
    );
}

#[tokio::test]
async fn cluster_a_takes_and_gives_back_records_over_plaintext() {
    let Some(clusters) = clusters() else { return };
    let config = config(&clusters, &clusters.a, Client::Plaintext);
    round_trip(&config, &unique_topic(""), 300).await;
}

#[tokio::test]
async fn cluster_b_takes_and_gives_back_records_of_a_scram_user() {
    let Some(clusters) = clusters() else { return };
    let app = Client::Scram {
        user: "app",
        wrong_password: None,
    };
    round_trip(&config(&clusters, &clusters.b, app), &unique_topic(""), 300).await;
}

#[tokio::test]
async fn cluster_c_takes_and_gives_back_records_of_a_client_certificate() {
    let Some(clusters) = clusters() else { return };
    let app = Client::Certificate { secret: "app" };
    round_trip(&config(&clusters, &clusters.c, app), &unique_topic(""), 300).await;
}

#[tokio::test]
async fn cluster_b_takes_and_gives_back_records_of_a_scram_sha_256_user() {
    let Some(clusters) = clusters() else { return };
    let app = Client::ScramSha256 { user: "app" };
    round_trip(
        &config(&clusters, &clusters.b_sha256, app),
        &unique_topic(""),
        300,
    )
    .await;
}

#[tokio::test]
async fn cluster_c_takes_and_gives_back_records_over_one_way_tls() {
    let Some(clusters) = clusters() else { return };
    let app = Client::ScramOverTls {
        secret: "kafka-c-scram-app",
        user: "app",
        trusted: "kafka-c-cluster-ca-cert",
    };
    round_trip(
        &config(&clusters, &clusters.c_one_way, app),
        &unique_topic(""),
        300,
    )
    .await;
}

#[test]
fn each_scram_listener_refuses_the_other_mechanism() {
    let Some(clusters) = clusters() else { return };
    let sha512 = Client::Scram {
        user: "app",
        wrong_password: None,
    };
    let errors = refused(&config(&clusters, &clusters.b_sha256, sha512));
    assert_reported(
        &errors,
        &[
            "Unsupported SASL mechanism",
            "SCRAM-SHA-512 mechanism handshake failed",
        ],
        "SCRAM-SHA-512 on the SCRAM-SHA-256 listener",
    );
    let sha256 = Client::ScramSha256 { user: "app" };
    let errors = refused(&config(&clusters, &clusters.b, sha256));
    assert_reported(
        &errors,
        &[
            "Unsupported SASL mechanism",
            "SCRAM-SHA-256 mechanism handshake failed",
        ],
        "SCRAM-SHA-256 on the SCRAM-SHA-512 listener",
    );
}

#[test]
fn the_one_way_tls_listener_is_refused_by_a_client_that_does_not_trust_its_ca() {
    let Some(clusters) = clusters() else { return };
    let errors = refused(&config(
        &clusters,
        &clusters.c_one_way,
        Client::ScramOverTls {
            secret: "kafka-c-scram-app",
            user: "app",
            trusted: "kafka-c-foreign-app",
        },
    ));
    assert_reported(
        &errors,
        &["certificate verify failed"],
        "a broker certificate from a CA the client does not trust",
    );
}

#[test]
fn cluster_b_refuses_a_wrong_password() {
    let Some(clusters) = clusters() else { return };
    let client = Client::Scram {
        user: "app",
        wrong_password: Some("not-the-password"),
    };
    let errors = refused(&config(&clusters, &clusters.b, client));
    assert_reported(
        &errors,
        &["Authentication failed during authentication due to invalid credentials"],
        "a wrong SCRAM password",
    );
    assert!(
        errors
            .iter()
            .all(|error| !error.contains("not-the-password")),
        "an error shows the password: {errors:#?}"
    );
}

#[test]
fn cluster_c_refuses_a_certificate_from_another_ca() {
    let Some(clusters) = clusters() else { return };
    let errors = refused(&config(
        &clusters,
        &clusters.c,
        Client::Certificate {
            secret: "foreign-app",
        },
    ));
    assert_reported(&errors, &["alert bad certificate"], "a foreign certificate");
}

#[test]
fn cluster_c_refuses_a_client_without_a_certificate() {
    let Some(clusters) = clusters() else { return };
    let mut config = config(
        &clusters,
        &clusters.c,
        Client::Certificate { secret: "app" },
    );
    config.remove("ssl.certificate.location");
    config.remove("ssl.key.location");
    let errors = refused(&config);
    assert_reported(&errors, &["alert bad certificate"], "no client certificate");
}

#[test]
fn one_clusters_credentials_are_refused_by_another() {
    let Some(clusters) = clusters() else { return };
    // B's SCRAM user, over TLS to C (which trusts only client certificates).
    let errors = refused(&config(
        &clusters,
        &clusters.c,
        Client::ScramOverTls {
            secret: "kafka-b-app",
            user: "app",
            trusted: "kafka-c-cluster-ca-cert",
        },
    ));
    assert_reported(&errors, &["alert bad certificate"], "B's user on C");

    // B's user on C's one-way TLS listener (C's SCRAM users have passwords of their own).
    let errors = refused(&config(
        &clusters,
        &clusters.c_one_way,
        Client::ScramOverTls {
            secret: "kafka-b-app",
            user: "app",
            trusted: "kafka-c-cluster-ca-cert",
        },
    ));
    assert_reported(&errors, &["invalid credentials"], "B's password on C");

    // C's client certificate on B (which speaks SASL without TLS).
    let errors = refused(&config(
        &clusters,
        &clusters.b,
        Client::Certificate { secret: "app" },
    ));
    assert_reported(&errors, &["SSL handshake failed"], "C's certificate on B");

    // B's SCRAM user on A (which has no users).
    let b_user = Client::Scram {
        user: "app",
        wrong_password: None,
    };
    let errors = refused(&config(&clusters, &clusters.a, b_user));
    assert_reported(
        &errors,
        &["SCRAM-SHA-512 mechanism handshake failed"],
        "B's user on A",
    );
}

/// `limited` may use topics whose names start with `limited.` and no others.
async fn assert_limited_to_its_topics(
    clusters: &KafkaClusters,
    bootstrap: &str,
    limited: Client<'_>,
    app: Client<'_>,
) {
    let allowed = unique_topic("limited.");
    let forbidden = unique_topic("");
    let app = config(clusters, bootstrap, app);
    create_topic(&app, &allowed, 1).await;
    create_topic(&app, &forbidden, 1).await;

    let limited: FutureProducer = config(clusters, bootstrap, limited).create().unwrap();
    limited
        .send(
            FutureRecord::to(&allowed).key("k").payload("allowed"),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("limited could not produce to {allowed}: {error}"));
    let (error, _) = limited
        .send(
            FutureRecord::to(&forbidden).key("k").payload("forbidden"),
            Duration::from_secs(20),
        )
        .await
        .expect_err("limited produced to a topic it has no rights on");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{error}"
    );
}

#[tokio::test]
async fn cluster_b_refuses_a_user_without_rights_on_a_topic() {
    let Some(clusters) = clusters() else { return };
    let limited = Client::Scram {
        user: "limited",
        wrong_password: None,
    };
    let app = Client::Scram {
        user: "app",
        wrong_password: None,
    };
    assert_limited_to_its_topics(&clusters, &clusters.b, limited, app).await;
}

#[tokio::test]
async fn cluster_c_refuses_a_user_without_rights_on_a_topic() {
    let Some(clusters) = clusters() else { return };
    let limited = Client::Certificate { secret: "limited" };
    let app = Client::Certificate { secret: "app" };
    assert_limited_to_its_topics(&clusters, &clusters.c, limited, app).await;
}
