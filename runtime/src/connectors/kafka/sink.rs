//! The Kafka sink, at least once: records are produced as they arrive, and a
//! checkpoint epoch is acknowledged only once every record sent before it has been
//! delivered (the producer is flushed), so a restored job re-sends at most what came
//! after the restored checkpoint.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::connection::ClusterConnection;
use crate::checkpoint::{SnapshotAck, SubtaskSnapshot};
use crate::exec::context::TaskContext;
use crate::exec::control::OperatorLabel;
use crate::exec::item::Item;

/// A record to write to Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOutput {
    /// Its key; records with the same key go to the same partition.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The partition, when the pipeline picks it; otherwise the partitioner does.
    pub partition: Option<i32>,
}

/// Where and how a Kafka sink writes.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// The cluster.
    pub connection: ClusterConnection,
    /// The topic.
    pub topic: String,
    /// librdkafka's partitioner for records without a partition:
    /// `murmur2_random` (the default: the Java client's choice, so keys land where
    /// Java producers put them), `consistent_random`, `random`, ...
    pub partitioner: String,
    /// The client id (the job and sink name).
    pub client_id: String,
    /// At least once, or exactly once through transactions.
    pub delivery: Delivery,
    /// The prefix of the exactly-once sink's transactional ids (which also name
    /// its marker groups); by default `strom-<job>-<sink>`. Two jobs writing to the
    /// same cluster must not share one.
    pub transactional_id_prefix: Option<String>,
}

/// What a sink guarantees after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every record is written; records after the restored checkpoint may be
    /// written twice.
    AtLeastOnce,
    /// Every record is visible exactly once to `read_committed` consumers, when the
    /// checkpoint covering it completes.
    ExactlyOnce,
}

impl KafkaSinkConfig {
    /// Writes to `topic` of `connection`, at least once.
    pub fn new(connection: ClusterConnection, topic: &str, client_id: &str) -> Self {
        Self {
            connection,
            topic: topic.to_owned(),
            partitioner: "murmur2_random".to_owned(),
            client_id: client_id.to_owned(),
            delivery: Delivery::AtLeastOnce,
            transactional_id_prefix: None,
        }
    }

    /// The same sink, exactly once.
    pub fn exactly_once(mut self) -> Self {
        self.delivery = Delivery::ExactlyOnce;
        self
    }
}

/// How long a checkpoint waits for the records before it to be delivered.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Keeps the first failed delivery: the job fails with it at the next flush.
#[derive(Default)]
pub(crate) struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl ClientContext for DeliveryErrors {
    /// librdkafka's own log lines go to the runtime's log.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::logging::librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if super::source::is_fatal(&error) {
            self.record(format!("{error}: {reason}"));
        } else {
            tracing::warn!(%error, reason, "Kafka producer error (retried)");
        }
    }
}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result {
            self.record(error.to_string());
        }
    }
}

impl DeliveryErrors {
    fn record(&self, error: String) {
        self.first
            .lock()
            .expect("not poisoned")
            .get_or_insert(error);
    }

    pub(crate) fn take(&self) -> Option<String> {
        self.first.lock().expect("not poisoned").take()
    }
}

/// Fails the job: a sink that cannot deliver (or keep its transactions) must not
/// acknowledge a checkpoint.
pub(crate) fn fail_now(
    ctx: &TaskContext,
    operator: &str,
    config: &KafkaSinkConfig,
    error: &str,
) -> ! {
    let connection = &config.connection;
    let message = format!(
        "sink {operator}: Kafka cluster {} ({}), topic {}: {error}",
        connection.name,
        connection.identity(),
        config.topic
    );
    ctx.control.record_failure(message.clone());
    panic!("{message}");
}

fn producer(
    ctx: &TaskContext,
    operator: &str,
    config: &KafkaSinkConfig,
) -> BaseProducer<DeliveryErrors> {
    let client_config = config.connection.client_config([
        ("client.id", format!("{}-{}", config.client_id, ctx.subtask)),
        ("partitioner", config.partitioner.clone()),
        ("enable.idempotence", "true".to_owned()),
        ("linger.ms", "5".to_owned()),
    ]);
    client_config
        .create_with_context(DeliveryErrors::default())
        .unwrap_or_else(|error: KafkaError| {
            fail_now(
                ctx,
                operator,
                config,
                &format!("cannot create a producer: {error}"),
            )
        })
}

/// Builds the at-least-once Kafka sink `operator`, writing `serialize(record)` for
/// every record of `stream`. Returns its snapshot acknowledgements.
pub fn at_least_once_kafka_sink<'scope, T: 'static>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    ctx: &TaskContext,
    operator: &str,
    config: KafkaSinkConfig,
    mut serialize: impl FnMut(&T) -> KafkaOutput + 'static,
) -> Stream<'scope, u64, Vec<SnapshotAck>> {
    let mut builder = OperatorBuilder::new(format!("Kafka sink {operator}"), stream.scope());
    let mut input = builder.new_input(stream, Local);
    let (mut ack_output, acks) = builder.new_output::<Vec<SnapshotAck>>();
    let ctx = ctx.clone();
    let operator = operator.to_owned();
    let series = OperatorLabel::new(&operator, ctx.subtask);

    builder.build(move |capabilities| {
        let mut ack_cap = capabilities.into_iter().next().map(|mut cap| {
            cap.downgrade(&ctx.start_epoch);
            cap
        });
        let producer = producer(&ctx, &operator, &config);
        let mut next_epoch = ctx.start_epoch;

        move |frontiers| {
            input.for_each(|_stamp, batch| {
                let mut written = 0;
                for item in batch.drain(..) {
                    let Item::Record(record) = item else { continue };
                    let output = serialize(&record);
                    send(&producer, &config.topic, &output)
                        .unwrap_or_else(|error| fail_now(&ctx, &operator, &config, &error));
                    written += 1;
                }
                ctx.control.add_records_out(&series, written);
            });
            producer.poll(Duration::ZERO);
            if let Some(error) = producer.context().take() {
                fail_now(&ctx, &operator, &config, &error);
            }
            let Some(cap) = ack_cap.as_mut() else { return };
            let Some(frontier) = frontiers[0].frontier().first().copied() else {
                ack_cap = None;
                return;
            };
            while next_epoch < frontier {
                let epoch = ctx.settings.next_checkpoint_epoch(next_epoch);
                if epoch >= frontier {
                    break;
                }
                // Everything of this checkpoint epoch and before has been handed to
                // the producer: it is in the checkpoint once delivered.
                if let Err(error) = producer.flush(FLUSH_TIMEOUT) {
                    fail_now(&ctx, &operator, &config, &format!("flushing: {error}"));
                }
                if let Some(error) = producer.context().take() {
                    fail_now(&ctx, &operator, &config, &error);
                }
                let ack = SnapshotAck {
                    operator: operator.clone(),
                    epoch,
                    snapshot: SubtaskSnapshot {
                        subtask: ctx.subtask,
                        ..SubtaskSnapshot::default()
                    },
                    drained: None,
                };
                ack_output
                    .activate()
                    .give(&cap.delayed(&epoch), &mut vec![ack]);
                next_epoch = epoch + 1;
            }
            next_epoch = next_epoch.max(frontier);
            if frontier > *cap.time() {
                cap.downgrade(&frontier);
            }
        }
    });
    acks
}

/// Hands `output` to the producer, waiting while its queue is full.
pub(crate) fn send<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    topic: &str,
    output: &KafkaOutput,
) -> Result<(), String> {
    let mut headers = OwnedHeaders::new_with_capacity(output.headers.len());
    for (key, value) in &output.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    loop {
        let mut record: BaseRecord<'_, [u8], [u8], ()> =
            BaseRecord::to(topic).headers(headers.clone());
        if let Some(key) = &output.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &output.value {
            record = record.payload(value.as_slice());
        }
        if let Some(partition) = output.partition {
            record = record.partition(partition);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(error.to_string()),
        }
    }
}
