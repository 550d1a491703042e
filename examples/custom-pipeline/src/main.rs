//! `orders-pipelines`: the `strom` command line with one more pipeline,
//! `orders-per-customer`, next to the built-in ones.
//!
//! ```text
//! orders-pipelines validate job.yaml
//! orders-pipelines run job.yaml            # locally
//! orders-pipelines worker                  # in a pod (the operator's entrypoint)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_runtime::api::Pipeline;
use strom_runtime::connectors::kafka::{
    ClusterConnection, KafkaOutput, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use strom_runtime::exec::PipelineFn;
use strom_runtime::pipelines::{Environment, OutputFn, PipelineError, Pipelines};

/// Strom's allocator (`strom_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: strom_runtime::Allocator = strom_runtime::Allocator;

fn main() -> std::process::ExitCode {
    let pipelines = Pipelines::builtin().register("orders-per-customer", orders_per_customer);
    strom_runtime::cli::main(pipelines)
}

/// Reads JSON orders (`{"customer_id": 7, ...}`) from `from` (`cluster/topic`) and
/// keeps, exactly once in `to` (`cluster/topic`), each customer's running count of
/// orders: `{"customer_id": 7, "orders": 12}`, keyed by the customer. The count is
/// keyed state, so it survives restores and rescales. An order without a numeric
/// `customer_id` fails the job, naming it.
fn orders_per_customer(
    args: &BTreeMap<String, String>,
    environment: Environment<'_>,
    _output: OutputFn,
) -> Result<PipelineFn, PipelineError> {
    let (from, to) = (topic_arg(args, "from")?, topic_arg(args, "to")?);
    if let Some(name) = args
        .keys()
        .find(|name| !["from", "to"].contains(&name.as_str()))
    {
        return Err(PipelineError::UnknownArgument {
            pipeline: "orders-per-customer".into(),
            name: name.clone(),
            known: vec!["from", "to"],
        });
    }
    let connect = |cluster: &str| {
        ClusterConnection::find(environment.kafka_clusters, cluster, environment.secrets)
            .map_err(|error| PipelineError::Kafka(error.to_string()))
    };
    let source = connect(&from.0)?;
    let sink = KafkaSinkConfig::new(connect(&to.0)?, &to.1, "orders-per-customer").exactly_once();
    Ok(Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let job = pipeline.context().settings.name.clone();
        let config = KafkaSourceConfig::new(source.clone(), &[&from.1], &format!("{job}-orders"));
        pipeline
            .source("orders", KafkaSource::new(config))?
            .map(|record| {
                customer_of(
                    record.value.as_deref().unwrap_or_default(),
                    &record.topic,
                    record.offset,
                )
            })
            .key_by(|customer: &u64| *customer)
            .count("orders-per-customer")?
            .sink_kafka("counts", sink.clone(), |(customer, orders)| KafkaOutput {
                key: Some(customer.to_string().into_bytes()),
                value: Some(
                    serde_json::json!({"customer_id": customer, "orders": orders})
                        .to_string()
                        .into_bytes(),
                ),
                ..KafkaOutput::default()
            })
    }))
}

/// The customer of an order, or a panic naming the record (which fails the job).
fn customer_of(value: &[u8], topic: &str, offset: i64) -> u64 {
    serde_json::from_slice::<serde_json::Value>(value)
        .ok()
        .and_then(|order| order["customer_id"].as_u64())
        .unwrap_or_else(|| panic!("{topic}@{offset}: an order without a numeric customer_id"))
}

/// The argument `name`, `cluster/topic`, split in two.
fn topic_arg(
    args: &BTreeMap<String, String>,
    name: &str,
) -> Result<(String, String), PipelineError> {
    let value = args.get(name).ok_or_else(|| PipelineError::Missing {
        pipeline: "orders-per-customer".into(),
        name: name.into(),
        what: "a topic, as cluster/topic",
    })?;
    value
        .split_once('/')
        .filter(|(cluster, topic)| !cluster.is_empty() && !topic.is_empty())
        .map(|(cluster, topic)| (cluster.to_owned(), topic.to_owned()))
        .ok_or_else(|| PipelineError::Invalid {
            name: name.into(),
            value: value.clone(),
            expected: "cluster/topic",
        })
}
