//! A user's own pipeline in pods: the image built from `examples/custom-pipeline`
//! (its binary, loaded into the cluster), deployed by the StreamJob of the example
//! (`spec.image`, `spec.pipeline.name`) through the operator installed by its chart,
//! counts each customer's orders exactly once, and keeps counting from its state
//! across `kubectl scale`.

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::config::ClientConfig;
use serde_json::{Value, json};
use strom_e2e::kafka::{consume_available, create_topic, produce_with, producer};
use strom_e2e::pods::{PodServices, STEP, TestNamespace};
use strom_e2e::{service, workspace_root};

const JOB: &str = "orders-per-customer";

/// The example's StreamJob: its image the one CI loaded, its cluster A as pods
/// reach it, its topics `input` and `output`, state in MinIO.
fn job(services: &PodServices, image: &str, input: &str, output: &str, prefix: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join("examples/custom-pipeline/job.yaml"))
        .unwrap();
    let mut job: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(job["metadata"]["name"], JOB);
    let spec = &mut job["spec"];
    spec["image"] = json!(image);
    spec["pipeline"]["args"] =
        json!({"from": format!("orders/{input}"), "to": format!("orders/{output}")});
    assert_eq!(spec["kafkaClusters"][0]["name"], "orders");
    spec["kafkaClusters"][0]["bootstrapServers"] = json!(services.kafka_for_pods.a);
    spec["state"] = services.state_spec(&format!("{prefix}jobs"), "2s");
    // Two slots per pod: pods = parallelism / 2, so the pod count is shown to
    // follow slotsPerPod (not one pod per slot).
    spec["slotsPerPod"] = json!(2);
    job
}

/// The last count of each customer in `output`, once it is `expected` (or the step's
/// deadline passed); panics if a count ever went back.
fn counts_reach(
    client: &ClientConfig,
    output: &str,
    expected: &BTreeMap<u64, u64>,
) -> BTreeMap<u64, u64> {
    let deadline = Instant::now() + STEP;
    loop {
        let mut last = BTreeMap::new();
        for value in consume_available(client, output, 2) {
            let row: Value = serde_json::from_str(&value).unwrap();
            let (customer, orders) = (
                row["customer_id"].as_u64().unwrap(),
                row["orders"].as_u64().unwrap(),
            );
            let previous = last.insert(customer, orders).unwrap_or(0);
            assert!(
                orders >= previous,
                "customer {customer}'s count went back from {previous} to {orders}"
            );
        }
        if &last == expected || Instant::now() >= deadline {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

#[test]
fn a_pipeline_of_the_users_own_image_runs_and_rescales_in_pods() {
    let Some(services) = PodServices::from_env() else {
        return;
    };
    let Some(image) = service("STROM_CUSTOM_PIPELINE_IMAGE", "the example's image").unwrap() else {
        return;
    };
    let namespace = TestNamespace::new(services, "custom");
    let services = &namespace.services;
    let prefix = format!("{}-", namespace.name);
    namespace.install_operator();
    namespace.create_s3_secret();
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &services.kafka.a);
    let (input, output) = (format!("{prefix}orders"), format!("{prefix}counts"));
    create_topic(&client, &input, 3);
    create_topic(&client, &output, 2);
    let orders = |from: u64, to: u64| -> Vec<String> {
        (from..to)
            .map(|i| format!(r#"{{"order_id":{i},"customer_id":{}}}"#, i % 10))
            .collect()
    };
    let expected =
        |placed: u64| -> BTreeMap<u64, u64> { (0..10).map(|c| (c, placed / 10)).collect() };
    let to_input = producer(&client);
    produce_with(&to_input, &input, &orders(0, 500), None);

    namespace.apply(&job(services, &image, &input, &output, &prefix));
    let mut phases = Vec::new();
    namespace.wait_running_at(JOB, 2, 1, &mut phases);
    let pod = namespace.get_json(&["pod", &format!("{JOB}-0")]);
    assert_eq!(pod["spec"]["containers"][0]["image"], image.as_str());
    assert_eq!(
        counts_reach(&client, &output, &expected(500)),
        expected(500)
    );

    // Rescaled through a savepoint: the counts go on from the state.
    namespace.kubectl(&["scale", &format!("streamjob/{JOB}"), "--replicas=4"]);
    namespace.wait_running_at(JOB, 4, 2, &mut phases);
    produce_with(&to_input, &input, &orders(500, 800), None);
    assert_eq!(
        counts_reach(&client, &output, &expected(800)),
        expected(800)
    );
    namespace.kubectl(&["delete", "streamjob", JOB, "--timeout=300s"]);
}
