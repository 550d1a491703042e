//! The user's story, in pods, through the Kubernetes API only (kubectl and Helm, as a
//! user drives it): the operator installed by its chart (two replicas, one leading),
//! the Secrets of three Kafka clusters, the multi-cluster SQL example
//! (`examples/multi-cluster.yaml`) reading cluster A (plaintext) and B (SCRAM) and
//! writing C (mTLS) exactly once, fed continuously while it is rescaled 2 -> 4 with
//! `kubectl patch`, loses a pod, is scaled to 1 with `kubectl scale`, suspended and
//! resumed, and finally deleted with a savepoint. Fails if an order is lost or
//! written twice, a customer's count goes back, a savepoint is missing from object
//! storage, a step's Event is missing or out of order, or the job runs on the wrong
//! number of pods (parallelism / slotsPerPod).
//!
//! Needs the e2e cluster (kind: `e2e/kind/kind.sh`) with Strom's images loaded, the
//! Kafka clusters and MinIO as pods reach them, and Helm (`e2e/infra/stack.sh`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Deserialize as _;
use serde_json::{Value, json};
use strom_e2e::kafka::{committed_records, create_topic};
use strom_e2e::pods::{PodServices, STEP, TestNamespace, http_get, running_at};
use strom_e2e::{KafkaClusters, S3Server, workspace_root};

/// The example's job, and the slots of each of its pods in the story: one, so that
/// `kubectl scale --replicas=1` (parallelism 1) is a valid scale.
const JOB: &str = "global-orders";
const SLOTS_PER_POD: i64 = 1;
/// Customers the orders are spread over.
const CUSTOMERS: u64 = 40;

/// The pods the job runs on at `parallelism`.
fn pods_at(parallelism: i64) -> usize {
    (parallelism as u64).div_ceil(SLOTS_PER_POD as u64) as usize
}

/// Host-side clients of the three clusters, as the user `app`.
fn client(kafka: &KafkaClusters, cluster: &str) -> ClientConfig {
    let path = |secret: &str, key: &str| {
        kafka
            .secret_file(secret, key)
            .to_string_lossy()
            .into_owned()
    };
    let mut config = ClientConfig::new();
    match cluster {
        "a" => config.set("bootstrap.servers", &kafka.a),
        "b" => config
            .set("bootstrap.servers", &kafka.b)
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "app")
            .set(
                "sasl.password",
                kafka.secret_value("kafka-b-app", "password").unwrap(),
            ),
        "c" => config
            .set("bootstrap.servers", &kafka.c)
            .set("security.protocol", "ssl")
            .set("ssl.ca.location", path("kafka-c-cluster-ca-cert", "ca.crt"))
            .set("ssl.certificate.location", path("kafka-c-app", "user.crt"))
            .set("ssl.key.location", path("kafka-c-app", "user.key")),
        _ => unreachable!("clusters are a, b and c"),
    };
    config
}

/// The example's StreamJob, pointed at the test clusters (as pods reach them), its
/// topics prefixed with `prefix`, state in the test bucket, at parallelism 2.
fn story_job(services: &PodServices, prefix: &str) -> Value {
    let example =
        std::fs::read_to_string(workspace_root().join("examples/multi-cluster.yaml")).unwrap();
    let mut job: Value = serde_yaml_ng::Deserializer::from_str(&example)
        .map(|document| {
            serde_yaml_ng::from_value::<Value>(serde_yaml_ng::Value::deserialize(document).unwrap())
                .unwrap()
        })
        .find(|document| document["kind"] == "StreamJob")
        .expect("the example has a StreamJob");
    assert_eq!(job["metadata"]["name"], JOB);
    let spec = &mut job["spec"];
    spec["parallelism"] = json!(2);
    spec["slotsPerPod"] = json!(SLOTS_PER_POD);
    let pods = &services.kafka_for_pods;
    for cluster in spec["kafkaClusters"].as_array_mut().unwrap() {
        let name = cluster["name"].as_str().unwrap().to_owned();
        cluster["bootstrapServers"] = json!(match name.as_str() {
            "eu" => &pods.a,
            "us" => &pods.b,
            "analytics" => &pods.c,
            other => panic!("the example's cluster {other} is not known to the story"),
        });
        if name == "us" {
            cluster["authentication"]["username"] = json!("app");
        }
    }
    let sql = spec["sql"]
        .as_str()
        .unwrap()
        .replace("'topic' = '", &format!("'topic' = '{prefix}"));
    spec["sql"] = json!(sql);
    // The example's Secret name for the storage credentials is the one
    // `create_s3_secret` makes.
    assert_eq!(spec["state"]["storageSecret"]["name"], "s3-creds");
    spec["state"] = services.state_spec(&format!("{prefix}jobs"), "2s");
    job
}

/// The Secrets the example names, holding the test users' credentials.
fn create_secrets(story: &TestNamespace) {
    let kafka = &story.services.kafka;
    let file =
        |secret: &str, key: &str| std::fs::read_to_string(kafka.secret_file(secret, key)).unwrap();
    story.create_secret(
        "us-orders-reader",
        json!({"password": file("kafka-b-app", "password")}),
    );
    story.create_secret(
        "analytics-cluster-ca-cert",
        json!({"ca.crt": file("kafka-c-cluster-ca-cert", "ca.crt")}),
    );
    story.create_secret(
        "orders-writer",
        json!({"user.crt": file("kafka-c-app", "user.crt"), "user.key": file("kafka-c-app", "user.key")}),
    );
    story.create_s3_secret();
}

/// Orders written to A (region eu) and B (region us) until stopped: which orders,
/// and how many each customer placed.
struct Orders {
    stop: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Vec<(String, u64)>>,
}

impl Orders {
    fn start(a: ClientConfig, b: ClientConfig, topic: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                // Idempotent: a retried send is never an order written twice.
                let idempotent = |client: ClientConfig| -> BaseProducer {
                    client
                        .clone()
                        .set("enable.idempotence", "true")
                        .create()
                        .unwrap()
                };
                let producers: Vec<(&str, BaseProducer)> =
                    vec![("eu", idempotent(a)), ("us", idempotent(b))];
                let mut written = Vec::new();
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (region, producer) in &producers {
                        for _ in 0..10 {
                            let customer = sequence % CUSTOMERS;
                            let order_id = format!("{region}-{sequence}");
                            let value = json!({
                                "order_id": order_id,
                                "customer_id": customer,
                                "amount": 1.25,
                                "ts": "2026-12-06 12:00:00.000",
                            })
                            .to_string();
                            let key = customer.to_string();
                            producer
                                .send(BaseRecord::to(&topic).key(&key).payload(&value))
                                .unwrap_or_else(|(error, _)| {
                                    panic!("producing to {region}: {error}")
                                });
                            written.push((order_id, customer));
                            sequence += 1;
                        }
                        producer.poll(Duration::ZERO);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                for (region, producer) in &producers {
                    producer
                        .flush(Duration::from_secs(30))
                        .unwrap_or_else(|error| panic!("flushing to {region}: {error}"));
                }
                written
            }
        });
        Self { stop, writer }
    }

    fn stop(self) -> Vec<(String, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().unwrap()
    }
}

/// Whether the savepoint `path` (an `s3://bucket/...` URL) is complete in MinIO:
/// its manifest, written last, is there beside its state.
fn savepoint_in_minio(s3: &S3Server, path: &str) -> bool {
    let prefix = path
        .strip_prefix(&format!("s3://{}/", s3.bucket))
        .unwrap_or_else(|| panic!("{path} is not in the bucket {}", s3.bucket));
    let store = s3.store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        store
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .iter()
            .any(|object| object.location.filename() == Some("_manifest"))
    })
}

/// Checkpoints completed by process 0 since it started (its
/// `strom_checkpoints_total`; 0 when it does not answer yet).
fn checkpoints_of_pod_0(story: &TestNamespace) -> u64 {
    let pod = story.get_json(&["pod", &format!("{JOB}-0")]);
    let Some(ip) = pod["status"]["podIP"].as_str() else {
        return 0;
    };
    let Ok(address) = format!("{ip}:8081").parse::<std::net::SocketAddr>() else {
        return 0;
    };
    if std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err() {
        return 0;
    }
    http_get(ip, 8081, "/metrics")
        .lines()
        .filter(|line| line.starts_with("strom_checkpoints_total"))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Asserts that `expected` (reason, message prefix) pairs appear in `events` in
/// this order.
fn assert_in_order(events: &[(String, String)], expected: &[(&str, &str)]) {
    let mut position = 0;
    for (reason, prefix) in expected {
        match events[position..]
            .iter()
            .position(|(r, m)| r == reason && m.starts_with(prefix))
        {
            Some(found) => position += found + 1,
            None => panic!("no {reason} {prefix:?} after the earlier steps' Events in {events:#?}"),
        }
    }
}

#[test]
fn the_multi_cluster_example_runs_in_pods_through_rescales_a_lost_pod_and_a_suspend() {
    let Some(services) = PodServices::from_env() else {
        return;
    };
    let story = TestNamespace::new(services, "story");
    let services = &story.services;
    let prefix = format!("{}-", story.name);

    // The operator, by its chart: two replicas, one holding the Lease.
    story.install_operator();
    let operators = story.get_json(&["pods", "-l", "app.kubernetes.io/name=strom-operator"]);
    let operator_pods: Vec<String> = operators["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| pod["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(operator_pods.len(), 2, "{operators:#}");
    let lease = story.get_json(&["lease", "strom-operator-leader"]);
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert!(
        operator_pods.iter().any(|pod| pod == holder),
        "{holder} leads, not one of {operator_pods:?}"
    );

    // Topics, Secrets, the job.
    let (a, b, c) = (
        client(&services.kafka, "a"),
        client(&services.kafka, "b"),
        client(&services.kafka, "c"),
    );
    let input = format!("{prefix}orders");
    let (all_orders, per_customer) = (
        format!("{prefix}orders-global"),
        format!("{prefix}orders-per-customer"),
    );
    create_topic(&a, &input, 3);
    create_topic(&b, &input, 2);
    create_topic(&c, &all_orders, 3);
    create_topic(&c, &per_customer, 2);
    create_secrets(&story);
    let orders = Orders::start(a, b, input);
    story.apply(&story_job(services, &prefix));
    let mut phases = Vec::new();
    story.wait_running_at(JOB, 2, pods_at(2), &mut phases);

    // The runtime's log: JSON lines, among them the partitions each source was
    // assigned and each completed checkpoint.
    let deadline = Instant::now() + STEP;
    loop {
        let log = story.kubectl(&["logs", &format!("{JOB}-0")]);
        let events: Vec<Value> = log
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("a log line that is not JSON ({error}): {line}"))
            })
            .collect();
        let logged = |message: &str| events.iter().any(|e| e["fields"]["message"] == message);
        if logged("partitions assigned") && logged("checkpoint completed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod 0 logged no assigned partitions or completed checkpoint:\n{log}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // kubectl patch: 2 -> 4, through a savepoint.
    story.patch_spec(JOB, r#"{"parallelism":4}"#);
    story.wait_running_at(JOB, 4, pods_at(4), &mut phases);

    // Every pod serves its own metrics, labelled with the job and the process: pod 1's
    // sources start epochs.
    let pod_1 = story.get_json(&["pod", &format!("{JOB}-1")]);
    let pod_1_ip = pod_1["status"]["podIP"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + STEP;
    loop {
        let metrics = http_get(&pod_1_ip, 8081, "/metrics");
        let epoch = metrics
            .lines()
            .find(|line| {
                line.starts_with("strom_epoch{")
                    && line.contains(&format!("job_name=\"{JOB}\""))
                    && line.contains("process=\"1\"")
            })
            .unwrap_or_else(|| panic!("pod 1's metrics lack strom_epoch:\n{metrics}"))
            .to_owned();
        if !epoch.ends_with(" 0") {
            break;
        }
        assert!(Instant::now() < deadline, "pod 1 started no epoch: {epoch}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The pods report how far behind each Kafka partition they read they are
    // (librdkafka's statistics come every 10 s). Which subtask reads which
    // partition follows from the topic's name (random here), and at parallelism 4
    // a 2-partition topic leaves two pods without one: any pod may be the one.
    let pod_ips: Vec<String> = (0..4)
        .map(|index| {
            let pod = story.get_json(&["pod", &format!("{JOB}-{index}")]);
            pod["status"]["podIP"].as_str().unwrap().to_owned()
        })
        .collect();
    let deadline = Instant::now() + STEP;
    loop {
        let scraped: Vec<String> = pod_ips
            .iter()
            .map(|ip| http_get(ip, 8081, "/metrics"))
            .collect();
        let lag = scraped
            .iter()
            .flat_map(|metrics| metrics.lines())
            .any(|line| {
                line.starts_with("strom_kafka_consumer_lag_records{")
                    && line.contains("cluster=\"eu\"")
                    && line.contains(&format!("topic=\"{prefix}orders\""))
            });
        if lag {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no pod reports the Kafka consumer lag of cluster eu:\n{}",
            scraped.join("\n")
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // A runtime pod lost mid-run: the other processes lose their peer and restart,
    // and the job comes back from its latest checkpoint and checkpoints again.
    std::thread::sleep(Duration::from_secs(5));
    let restarts = |story: &TestNamespace| -> i64 {
        story.get_json(&["pod", &format!("{JOB}-0")])["status"]["containerStatuses"][0]
            ["restartCount"]
            .as_i64()
            .unwrap_or(0)
    };
    let restarts_before = restarts(&story);
    let lost = format!("{JOB}-1");
    let before = story.get_json(&["pod", &lost])["metadata"]["uid"].clone();
    story.kubectl(&["delete", "pod", &lost, "--wait=false"]);
    let deadline = Instant::now() + STEP;
    loop {
        let pod = story.kubectl(&["get", "pod", &lost, "--ignore-not-found", "-o", "json"]);
        let replaced = !pod.trim().is_empty() && {
            let pod: Value = serde_json::from_str(&pod).unwrap();
            pod["metadata"]["uid"] != before
        };
        let recovered = replaced
            && restarts(&story) > restarts_before
            && story.ready_runtime_pods(JOB) == 4
            && story.job(JOB).is_some_and(|job| running_at(&job, 4))
            && checkpoints_of_pod_0(&story) > 0;
        if recovered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not recover from losing {lost}\n{}",
            story.diagnosis(JOB)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // kubectl scale: 4 -> 1.
    story.kubectl(&["scale", &format!("streamjob/{JOB}"), "--replicas=1"]);
    story.wait_running_at(JOB, 1, pods_at(1), &mut phases);

    // Suspended (a savepoint, no pods), then running again from it.
    story.patch_spec(JOB, r#"{"desiredState":"suspended"}"#);
    story.wait_for(JOB, "suspended", &mut phases, |job| {
        job["status"]["phase"] == "Suspended"
    });
    assert_eq!(story.runtime_pods(JOB).len(), 0, "pods of a suspended job");
    story.patch_spec(JOB, r#"{"desiredState":"running"}"#);
    story.wait_running_at(JOB, 1, pods_at(1), &mut phases);
    std::thread::sleep(Duration::from_secs(5));
    let written = orders.stop();

    // Every order once in C, to readers of committed records.
    let mut expected_counts: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, customer) in &written {
        *expected_counts.entry(*customer).or_default() += 1;
    }
    let deadline = Instant::now() + STEP;
    let (copied, counts) = loop {
        let copied: Vec<(String, String)> =
            committed_records(&c, &all_orders, 3, Duration::from_secs(2)).concat();
        let counts = committed_records(&c, &per_customer, 2, Duration::from_secs(2));
        let finals = final_counts(&counts);
        if (copied.len() >= written.len() && finals == expected_counts)
            || Instant::now() >= deadline
        {
            break (copied, counts);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, value) in &copied {
        let order: Value = serde_json::from_str(value).unwrap();
        let id = order["order_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with(order["region"].as_str().unwrap()), "{order}");
        *seen.entry(id).or_default() += 1;
    }
    let missing = written
        .iter()
        .filter(|(id, _)| !seen.contains_key(id))
        .count();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        missing,
        0,
        "{missing} of {} orders missing in C",
        written.len()
    );
    assert!(
        doubled.is_empty(),
        "orders written more than once: {doubled:?}"
    );
    assert_eq!(copied.len(), written.len());

    // Each customer's count only grows, and ends at the orders they placed.
    for partition in &counts {
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for (_, value) in partition {
            let (customer, orders) = customer_count(value);
            let previous = last.insert(customer, orders).unwrap_or(0);
            assert!(
                orders >= previous,
                "the count of customer {customer} went back from {previous} to {orders}"
            );
        }
    }
    assert_eq!(final_counts(&counts), expected_counts);

    // Every savepoint the job reports is in object storage.
    let job = story.job(JOB).unwrap();
    let history = job["status"]["savepointHistory"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reasons: Vec<&str> = history
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    for reason in ["rescale", "suspend"] {
        assert!(
            reasons.contains(&reason),
            "a {reason} savepoint in {reasons:?}"
        );
    }
    for savepoint in &history {
        let path = savepoint["path"].as_str().unwrap();
        assert!(
            savepoint_in_minio(&services.s3, path),
            "savepoint {path} is not in MinIO"
        );
    }

    // Deleted with a final savepoint.
    story.kubectl(&["delete", "streamjob", JOB, "--timeout=300s"]);
    let events = story.events();
    assert_in_order(
        &events,
        &[
            ("Running", "running at parallelism 2"),
            ("Savepointing", "rescaling from parallelism 2 to 4"),
            ("SavepointCompleted", "savepoint for a rescale"),
            (
                "Restoring",
                "deploying 4 pod(s) at parallelism 4, restoring from savepoint",
            ),
            ("Running", "running at parallelism 4"),
            ("Savepointing", "rescaling from parallelism 4 to 1"),
            ("SavepointCompleted", "savepoint for a rescale"),
            ("Running", "running at parallelism 1"),
            ("SavepointCompleted", "savepoint for suspending"),
            ("Suspended", ""),
            ("Running", "running at parallelism 1"),
            ("SavepointCompleted", "savepoint for deleting"),
        ],
    );
    let final_savepoint = events
        .iter()
        .rev()
        .find_map(|(reason, message)| {
            // "savepoint for deleting at <path>; <how to go on from it>"
            let rest = (reason == "SavepointCompleted")
                .then(|| message.strip_prefix("savepoint for deleting at "))??;
            rest.split(';').next()
        })
        .expect("the final savepoint's Event");
    assert!(
        savepoint_in_minio(&services.s3, final_savepoint),
        "the final savepoint {final_savepoint} is not in MinIO"
    );
    eprintln!("phases: {phases:?}");
    // The phases seen while waiting (between the steps, polled) are those of the
    // story's steps, in order; the long ones (pods starting, suspended) are seen.
    let expected = [
        "Deploying",
        "Running",
        "Savepointing",
        "Rescaling",
        "Restoring",
        "Running",
        "Savepointing",
        "Rescaling",
        "Restoring",
        "Running",
        "Savepointing",
        "Rescaling",
        "Suspended",
        "Restoring",
        "Running",
    ];
    let seen: Vec<&str> = phases
        .iter()
        .map(String::as_str)
        .filter(|phase| !phase.is_empty())
        .collect();
    let mut rest = expected.iter();
    assert!(
        seen.iter()
            .all(|phase| rest.any(|expected| expected == phase)),
        "phases {seen:?} are not in the order of {expected:?}"
    );
    for long in ["Restoring", "Suspended", "Running"] {
        assert!(seen.contains(&long), "phase {long} never seen: {seen:?}");
    }
}

/// A record of the upsert topic: (customer, their count of orders).
fn customer_count(value: &str) -> (u64, u64) {
    let row: Value = serde_json::from_str(value).unwrap();
    (
        row["customer_id"].as_u64().unwrap(),
        row["orders"].as_u64().unwrap(),
    )
}

/// The last count of each customer in the upsert topic (a customer's records are in
/// one partition, in order).
fn final_counts(partitions: &[Vec<(String, String)>]) -> BTreeMap<u64, u64> {
    partitions
        .iter()
        .flatten()
        .map(|(_, value)| customer_count(value))
        .collect()
}
