//! The Kafka source: the partitions of one or more topics of one cluster, assigned
//! by the job itself (`assign`, from the split owner rule) — no consumer-group
//! membership, so no rebalances, and a parallelism independent of partition counts.
//! Positions (the next offset of each partition) live in checkpoints; partitions
//! added while the job runs are found by periodic discovery and read from their
//! beginning.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::connection::ClusterConnection;
use super::retry::with_retries_unless;
use super::sink::KafkaOutput;
use crate::exec::malformed::InputRecord;
use crate::exec::source::{ReadStatus, SourceError, SplitId, SplitSource};

/// A record read from Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (create or log-append time), in milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where partitions are read from when no checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record each partition still holds.
    Earliest,
    /// Only records written after the job starts.
    Latest,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
    /// The offsets committed to Kafka for the source's group, or, for partitions
    /// without one, the earliest (`true`) or latest (`false`).
    CommittedOffsets {
        /// Partitions without a committed offset start at the earliest record.
        or_earliest: bool,
    },
}

/// What a Kafka source reads and how.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// The cluster.
    pub connection: ClusterConnection,
    /// The topics; each partition is a split.
    pub topics: Vec<String>,
    /// Where to start when no checkpoint holds a position.
    pub start: StartFrom,
    /// The group whose offsets `CommittedOffsets` starts from and to which offsets
    /// are committed; the group is never joined.
    pub group_id: String,
    /// Commit the positions of every completed checkpoint to the group, so that
    /// the usual tools show the job's lag.
    pub commit_offsets: bool,
    /// How often to look for new partitions; `None`: never.
    pub discovery_interval: Option<Duration>,
    /// Stop each partition at the end offset it had when the job started (bounded
    /// input, for tests and benchmarks); discovery is then off.
    pub bounded: bool,
    /// The client id prefix (the job and source name).
    pub client_id: String,
}

impl KafkaSourceConfig {
    /// Reads `topics` of `connection` from the earliest offsets, discovering new
    /// partitions every 10 seconds, committing no offsets.
    pub fn new(connection: ClusterConnection, topics: &[&str], group_id: &str) -> Self {
        Self {
            connection,
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
            start: StartFrom::Earliest,
            group_id: group_id.to_owned(),
            commit_offsets: false,
            discovery_interval: Some(Duration::from_secs(10)),
            bounded: false,
            client_id: format!("strom-{group_id}"),
        }
    }
}

/// How long metadata and offset look-ups may take before the source fails.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one attempt to read metadata waits.
const METADATA_ATTEMPT: Duration = Duration::from_secs(1);

/// How often the consumer's own queue is served (callbacks: errors, logs).
const MAIN_QUEUE_INTERVAL: Duration = Duration::from_millis(50);

/// How often librdkafka reports its statistics, from which the consumer lag of
/// each assigned partition is taken (`strom_kafka_consumer_lag_records`).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(10);

/// The label of a partition's consumer lag.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PartitionLabel {
    /// The cluster's name in the job's `kafkaClusters`.
    pub cluster: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// Records between each assigned partition's end and this process's position in it,
/// as librdkafka's statistics last reported (registered with the job's metrics as
/// `strom_kafka_consumer_lag_records`).
pub static KAFKA_CONSUMER_LAG: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        PartitionLabel,
        prometheus_client::metrics::gauge::Gauge,
    >,
> = std::sync::LazyLock::new(Default::default);

/// Collects the errors librdkafka reports; the first one that cannot be retried
/// fails the source. Takes the consumer lag from its statistics.
struct ErrorCollector {
    /// The cluster's name in the job, for the lag's labels.
    cluster: String,
    fatal: Mutex<Option<String>>,
}

impl ClientContext for ErrorCollector {
    /// librdkafka's own log lines (warnings, and what the cluster's `debug`
    /// property asks for) go to the runtime's log.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::logging::librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_fatal(&error) {
            self.fatal
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| format!("{error}: {reason}"));
        } else if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            // The end of a partition, reached on every catch-up: not a problem.
            tracing::debug!(reason, "end of partition");
        } else {
            tracing::warn!(%error, reason, "Kafka client error (retried)");
        }
    }

    /// The lag of each partition read here: its end (the last stable offset, which
    /// is what a reader of committed records reaches, else the high watermark) less
    /// the offset after the last record handed to the source (librdkafka's own
    /// `consumer_lag` counts from the committed offset, which DataStream sources
    /// never commit). Partitions this consumer has no position in are left alone:
    /// another worker's consumer in this process may be reading them.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, state) in &statistics.topics {
            for (partition, state) in &state.partitions {
                // The internal partition -1 is librdkafka's own.
                if *partition < 0 {
                    continue;
                }
                let end = if state.ls_offset >= 0 {
                    state.ls_offset
                } else {
                    state.hi_offset
                };
                if end < 0 || state.app_offset < 0 {
                    continue;
                }
                let label = PartitionLabel {
                    cluster: self.cluster.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                KAFKA_CONSUMER_LAG
                    .get_or_create(&label)
                    .set((end - state.app_offset).max(0));
            }
        }
    }
}

impl ConsumerContext for ErrorCollector {}

/// Errors that retrying will not cure: wrong credentials, missing rights.
pub(crate) fn is_fatal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

/// Whether the cluster has refused `consumer` for good (a wrong password, say).
fn is_refused(consumer: &BaseConsumer<ErrorCollector>) -> bool {
    consumer
        .context()
        .fatal
        .lock()
        .expect("not poisoned")
        .is_some()
}

/// Whether `error` says that the position asked for is not in the partition.
fn is_out_of_range(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
}

/// The partitions of some topics of one Kafka cluster, as a split source.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    consumer: Option<Arc<BaseConsumer<ErrorCollector>>>,
    /// Each assigned partition's own queue, split off before the partition is
    /// assigned, so that every record of it comes through this queue, in order.
    queues: HashMap<SplitId, PartitionQueue<ErrorCollector>>,
    /// The end offsets of a bounded source.
    end_offsets: BTreeMap<SplitId, i64>,
    main_queue_served: Instant,
}

impl KafkaSource {
    /// A source reading as `config` says; it connects when the job starts it.
    pub fn new(config: KafkaSourceConfig) -> Self {
        Self {
            config,
            consumer: None,
            queues: HashMap::new(),
            end_offsets: BTreeMap::new(),
            main_queue_served: Instant::now(),
        }
    }

    fn consumer(&mut self) -> Result<Arc<BaseConsumer<ErrorCollector>>, SourceError> {
        if let Some(consumer) = &self.consumer {
            return Ok(Arc::clone(consumer));
        }
        let config = self.config.connection.client_config([
            ("group.id", self.config.group_id.clone()),
            ("client.id", self.config.client_id.clone()),
            ("enable.auto.commit", "false".to_owned()),
            ("enable.auto.offset.store", "false".to_owned()),
            // A bounded read ends at the end of each partition even when the last
            // offsets are transaction markers, which no reader ever gets.
            ("enable.partition.eof", "true".to_owned()),
            // A position that no longer exists (retention removed it) is an error,
            // never a silent jump over what is left.
            ("auto.offset.reset", "error".to_owned()),
            (
                "statistics.interval.ms",
                STATISTICS_INTERVAL.as_millis().to_string(),
            ),
        ]);
        let consumer: BaseConsumer<ErrorCollector> = config
            .create_with_context(ErrorCollector {
                cluster: self.config.connection.name.clone(),
                fatal: Mutex::new(None),
            })
            .map_err(|error| self.error("cannot create a consumer", &error))?;
        let consumer = Arc::new(consumer);
        self.consumer = Some(Arc::clone(&consumer));
        Ok(consumer)
    }

    /// An error of this source's cluster, saying who connected; a fatal error
    /// librdkafka reported meanwhile (a refused password) explains more than a
    /// time-out, so it is preferred.
    fn error(&self, what: &str, error: &dyn std::fmt::Display) -> SourceError {
        let reported = self.consumer.as_ref().and_then(|consumer| {
            consumer
                .context()
                .fatal
                .lock()
                .expect("not poisoned")
                .clone()
        });
        let connection = &self.config.connection;
        SourceError(format!(
            "Kafka cluster {} ({}): {what}: {}",
            connection.name,
            connection.identity(),
            reported.unwrap_or_else(|| error.to_string())
        ))
    }

    /// The metadata of `topic`, asked for in short attempts so that a refusal the
    /// cluster reports meanwhile (a wrong password) ends the wait at once.
    fn fetch_metadata(
        &mut self,
        consumer: &BaseConsumer<ErrorCollector>,
        topic: &str,
    ) -> Result<Metadata, KafkaError> {
        let deadline = Instant::now() + LOOKUP_TIMEOUT;
        loop {
            match consumer.fetch_metadata(Some(topic), METADATA_ATTEMPT) {
                Ok(metadata) => return Ok(metadata),
                Err(error) => {
                    // Serves the error callbacks; `error` then reports the refusal.
                    let _ = self.serve_main_queue(consumer);
                    if is_refused(consumer) || Instant::now() >= deadline {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Runs a Kafka call, retrying what goes away by itself (see [`super::retry`])
    /// unless the cluster has refused the client.
    fn retried<T>(
        &self,
        consumer: &BaseConsumer<ErrorCollector>,
        call: impl FnMut() -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        with_retries_unless(&self.config.connection.name, || is_refused(consumer), call)
    }

    /// The error of a position that the partition no longer holds.
    fn position_gone(
        &self,
        consumer: &BaseConsumer<ErrorCollector>,
        split: &SplitId,
        position: i64,
    ) -> SourceError {
        let start = consumer
            .fetch_watermarks(&split.group, split.index as i32, LOOKUP_TIMEOUT)
            .map_or_else(|_| "unknown".to_owned(), |(low, _)| low.to_string());
        self.error(
            &format!("reading {split}"),
            &format!(
                "offset {position} is no longer in the partition, which now starts at offset {start} (retention removed records the job had not read, or the topic was recreated): restore a newer savepoint or checkpoint, or start the job without state"
            ),
        )
    }

    fn check_fatal(&self) -> Result<(), SourceError> {
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let fatal = consumer
            .context()
            .fatal
            .lock()
            .expect("not poisoned")
            .clone();
        match fatal {
            Some(reported) => Err(self.error("the cluster refused the job", &reported)),
            None => Ok(()),
        }
    }

    fn partition_list(split: &SplitId, offset: Offset) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&split.group, split.index as i32, offset)
            .expect("a valid offset");
        list
    }

    fn offset_in(list: &TopicPartitionList, split: &SplitId) -> Option<i64> {
        list.find_partition(&split.group, split.index as i32)
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
    }

    /// Serves the consumer's own queue: the callbacks (errors, logs). No record
    /// should come through it, as every partition's queue is split off before the
    /// partition is assigned; one that does anyway fails the source (the job then
    /// restarts from its checkpoint) rather than being read out of order.
    fn serve_main_queue(
        &mut self,
        consumer: &BaseConsumer<ErrorCollector>,
    ) -> Result<(), SourceError> {
        if let Some(message) = consumer.poll(Duration::ZERO) {
            let message = match message {
                // The end of a partition, reported before its queue was split off.
                Err(KafkaError::PartitionEOF(_)) => {
                    self.main_queue_served = Instant::now();
                    return Ok(());
                }
                other => other.map_err(|error| self.error("reading", &error))?,
            };
            let split = SplitId::new(message.topic(), message.partition() as u32);
            // Kept with the cluster's refusals, so the source fails with it whichever
            // caller served the queue (a metadata look-up ignores what it serves).
            consumer
                .context()
                .fatal
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| {
                    format!("a record of {split} came through the consumer's queue instead of the partition's own")
                });
            return Err(self.error("reading", &"a record on the consumer's queue"));
        }
        self.main_queue_served = Instant::now();
        Ok(())
    }
}

fn record_of(message: &BorrowedMessage<'_>) -> KafkaRecord {
    KafkaRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl InputRecord for KafkaRecord {
    fn origin(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }

    fn as_output(&self) -> KafkaOutput {
        KafkaOutput {
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
            partition: None,
        }
    }
}

impl SplitSource for KafkaSource {
    type Record = KafkaRecord;
    /// The offset of the next record to read.
    type Position = i64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        let consumer = self.consumer()?;
        let mut splits = Vec::new();
        for topic in self.config.topics.clone() {
            // A topic not created yet, or whose partitions have no leader yet, is
            // looked up again until the retry deadline.
            let cluster = self.config.connection.name.clone();
            let partitions = with_retries_unless(
                &cluster,
                || is_refused(&consumer),
                || {
                    let metadata = self.fetch_metadata(&consumer, &topic)?;
                    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic)
                    else {
                        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopic));
                    };
                    if let Some(error) = found.error() {
                        return Err(KafkaError::MetadataFetch(error.into()));
                    }
                    let leaderless = found.partitions().iter().find_map(|partition| {
                        partition
                            .error()
                            .map(|error| KafkaError::MetadataFetch(error.into()))
                    });
                    match leaderless {
                        Some(error) => Err(error),
                        None => Ok(found
                            .partitions()
                            .iter()
                            .map(|p| p.id())
                            .collect::<Vec<_>>()),
                    }
                },
            )
            .map_err(|error| {
                self.error(
                    &format!("cannot read the metadata of topic {topic}"),
                    &error,
                )
            })?;
            splits.extend(
                partitions
                    .into_iter()
                    .map(|partition| SplitId::new(topic.as_str(), partition as u32)),
            );
        }
        Ok(splits)
    }

    fn discovery_interval(&self) -> Option<Duration> {
        if self.config.bounded {
            None
        } else {
            self.config.discovery_interval
        }
    }

    fn start(&mut self, split: &SplitId, discovered_later: bool) -> Result<i64, SourceError> {
        let consumer = self.consumer()?;
        let (low, high) = self
            .retried(&consumer, || {
                consumer.fetch_watermarks(&split.group, split.index as i32, LOOKUP_TIMEOUT)
            })
            .map_err(|error| self.error(&format!("cannot read the offsets of {split}"), &error))?;
        if discovered_later {
            return Ok(low);
        }
        Ok(match self.config.start {
            StartFrom::Earliest => low,
            StartFrom::Latest => high,
            StartFrom::Timestamp(time) => {
                let found = self
                    .retried(&consumer, || {
                        consumer.offsets_for_times(
                            Self::partition_list(split, Offset::Offset(time)),
                            LOOKUP_TIMEOUT,
                        )
                    })
                    .map_err(|error| {
                        self.error(&format!("cannot look up {split} by time"), &error)
                    })?;
                Self::offset_in(&found, split).unwrap_or(high)
            }
            StartFrom::CommittedOffsets { or_earliest } => {
                let committed = self
                    .retried(&consumer, || {
                        consumer.committed_offsets(
                            Self::partition_list(split, Offset::Invalid),
                            LOOKUP_TIMEOUT,
                        )
                    })
                    .map_err(|error| {
                        self.error(
                            &format!("cannot read the committed offset of {split}"),
                            &error,
                        )
                    })?;
                match Self::offset_in(&committed, split) {
                    Some(offset) => offset.clamp(low, high),
                    None if or_earliest => low,
                    None => high,
                }
            }
        })
    }

    fn assign(&mut self, splits: &[(SplitId, i64)]) -> Result<(), SourceError> {
        let consumer = self.consumer()?;
        // Each partition gets its own queue before it is assigned: a queue split off
        // later would leave the records fetched meanwhile on the consumer's queue,
        // where they could be read after later ones of the same partition.
        for (split, _) in splits {
            let queue = consumer
                .split_partition_queue(&split.group, split.index as i32)
                .ok_or_else(|| {
                    self.error("cannot assign partitions", &format!("no queue for {split}"))
                })?;
            self.queues.insert(split.clone(), queue);
        }
        let mut list = TopicPartitionList::new();
        for (split, offset) in splits {
            list.add_partition_offset(&split.group, split.index as i32, Offset::Offset(*offset))
                .expect("a valid offset");
        }
        consumer
            .incremental_assign(&list)
            .map_err(|error| self.error("cannot assign partitions", &error))?;
        let assigned: Vec<String> = splits
            .iter()
            .map(|(split, offset)| format!("{split}@{offset}"))
            .collect();
        tracing::info!(
            cluster = %self.config.connection.name,
            partitions = %assigned.join(", "),
            "partitions assigned"
        );
        if self.config.bounded {
            // A bounded source reads up to the end each partition has now.
            for (split, _) in splits {
                let (_, high) = self
                    .retried(&consumer, || {
                        consumer.fetch_watermarks(&split.group, split.index as i32, LOOKUP_TIMEOUT)
                    })
                    .map_err(|error| {
                        self.error(&format!("cannot read the end of {split}"), &error)
                    })?;
                self.end_offsets.insert(split.clone(), high);
            }
        }
        Ok(())
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut i64,
        max: usize,
        out: &mut Vec<KafkaRecord>,
    ) -> Result<ReadStatus, SourceError> {
        let consumer = self.consumer()?;
        if self.main_queue_served.elapsed() >= MAIN_QUEUE_INTERVAL {
            self.serve_main_queue(&consumer)?;
            self.check_fatal()?;
        }
        let end = self.end_offsets.get(split).copied();
        if end.is_some_and(|end| *position >= end) {
            return Ok(ReadStatus::Ended);
        }
        let mut taken = 0;
        let Some(queue) = self.queues.get(split) else {
            return Err(self.error("reading", &format!("{split} is not assigned")));
        };
        while taken < max {
            let Some(message) = queue.poll(Duration::ZERO) else {
                break;
            };
            let message = match message {
                Ok(message) => message,
                // Everything up to the partition's end now has been read; for a
                // bounded source that passes the end it started with.
                Err(KafkaError::PartitionEOF(_)) if end.is_some() => return Ok(ReadStatus::Ended),
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(error) if is_out_of_range(&error) => {
                    return Err(self.position_gone(&consumer, split, *position));
                }
                Err(error) => return Err(self.error(&format!("reading {split}"), &error)),
            };
            if message.offset() < *position {
                continue;
            }
            *position = message.offset() + 1;
            out.push(record_of(&message));
            taken += 1;
            if end.is_some_and(|end| *position >= end) {
                return Ok(ReadStatus::Ended);
            }
        }
        Ok(if taken == max {
            ReadStatus::More
        } else {
            ReadStatus::Idle
        })
    }

    fn checkpoint_completed(&mut self, positions: &[(SplitId, i64)]) {
        if !self.config.commit_offsets || positions.is_empty() {
            return;
        }
        let Some(consumer) = &self.consumer else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for (split, offset) in positions {
            list.add_partition_offset(&split.group, split.index as i32, Offset::Offset(*offset))
                .expect("a valid offset");
        }
        // For monitoring only: a failed commit is retried with the next checkpoint.
        // Synchronous (one round trip per checkpoint), so the last one is not lost when
        // the job ends right after.
        if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(cluster = %self.config.connection.name, %error, "committing offsets failed");
        }
    }
}
