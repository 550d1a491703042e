//! The example's binary as a user runs it on their machine: `validate` knows its
//! pipeline, and `run` counts orders from the test Kafka cluster A exactly once,
//! through a stop with a savepoint and a restore at another parallelism.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rdkafka::config::ClientConfig;
use strom_e2e::kafka::{consume_available, create_topic, produce_with, producer, unique};
use strom_e2e::service;

const BINARY: &str = env!("CARGO_BIN_EXE_orders-pipelines");

/// The example's `job.yaml`, found through the `CARGO_MANIFEST_DIR` cargo sets when
/// the test runs (the target folder is shared by clones: see `strom_e2e::workspace_root`).
fn example_manifest() -> std::path::PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("job.yaml")
}

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(BINARY).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn validate_knows_the_registered_pipeline_and_names_it_when_one_is_missing() {
    let manifest = example_manifest();
    let (ok, text) = run(&["validate", &manifest.to_string_lossy()]);
    assert!(ok, "{text}");
    assert!(text.contains("pipeline orders-per-customer"), "{text}");

    let folder = tempfile::tempdir().unwrap();
    let unknown = folder.path().join("job.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap().replace(
        "name: orders-per-customer\n    args",
        "name: orders-per-region\n    args",
    );
    std::fs::write(&unknown, yaml).unwrap();
    let (ok, text) = run(&["validate", &unknown.to_string_lossy()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("unknown pipeline \"orders-per-region\"")
            && text.contains("orders-per-customer")
            && text.contains("word-count"),
        "{text}"
    );
}

/// The job.yaml example, pointed at cluster A, state in `state`.
fn manifest(folder: &Path, bootstrap: &str, input: &str, output: &str) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(example_manifest())
        .unwrap()
        .replace("kafka-orders:9092", bootstrap)
        .replace("from: orders/orders", &format!("from: orders/{input}"))
        .replace(
            "to: orders/orders-per-customer",
            &format!("to: orders/{output}"),
        )
        .replace(
            "s3://strom/jobs",
            &format!("file://{}", folder.join("state").display()),
        );
    let path = folder.join("job.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn run_counts_each_customers_orders_exactly_once_across_a_restore() {
    let Some(bootstrap) = service("STROM_KAFKA_A_BOOTSTRAP", "Kafka cluster A").unwrap() else {
        return;
    };
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let (input, output) = (unique("orders"), unique("orders-per-customer"));
    create_topic(&client, &input, 3);
    create_topic(&client, &output, 2);
    let orders = |from: usize, to: usize| -> Vec<String> {
        (from..to)
            .map(|i| format!(r#"{{"order_id":{i},"customer_id":{}}}"#, i % 10))
            .collect()
    };
    let folder = tempfile::tempdir().unwrap();
    let job = manifest(folder.path(), &bootstrap, &input, &output);
    let work = folder.path().join("work");
    let to_input = producer(&client);

    // Two runs: stopped with a savepoint at parallelism 2, restored at 3.
    produce_with(&to_input, &input, &orders(0, 400), None);
    let (ok, text) = run(&[
        "run",
        &job.to_string_lossy(),
        "--stop-after",
        "8s",
        "--work-dir",
        &work.to_string_lossy(),
    ]);
    assert!(ok, "{text}");
    produce_with(&to_input, &input, &orders(400, 700), None);
    let (ok, text) = run(&[
        "run",
        &job.to_string_lossy(),
        "--resume",
        "--parallelism",
        "3",
        "--stop-after",
        "8s",
        "--work-dir",
        &work.to_string_lossy(),
    ]);
    assert!(ok, "{text}");

    // The last count of each customer is the orders they placed, 70 each; no count
    // ever went back.
    let counts = consume_available(&client, &output, 2);
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for value in counts {
        let row: serde_json::Value = serde_json::from_str(&value).unwrap();
        let (customer, orders) = (
            row["customer_id"].as_u64().unwrap(),
            row["orders"].as_u64().unwrap(),
        );
        let previous = last.insert(customer, orders).unwrap_or(0);
        assert!(
            orders >= previous,
            "customer {customer}'s count went back to {orders}"
        );
    }
    assert_eq!(last, (0..10).map(|customer| (customer, 70)).collect());
}
