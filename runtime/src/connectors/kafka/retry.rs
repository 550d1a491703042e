//! Retrying what a broker refuses for a while: a partition without a leader yet (a
//! topic just created, a leader election), a coordinator loading, a broker
//! restarting. Such errors are retried with backoff up to a deadline, counted in
//! the `strom_kafka_retries` metric per cluster, and only then fail the job, with
//! their cause.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long retriable errors are retried before they fail the job.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(60);

/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The label of the retry metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    /// The cluster's name in the job's `kafkaClusters`.
    pub cluster: String,
}

/// Retried Kafka calls of this process, per cluster (registered with the job's
/// metrics as `strom_kafka_retries`).
pub static KAFKA_RETRIES: LazyLock<Family<ClusterLabel, Counter>> = LazyLock::new(Family::default);

/// Whether `error` may go away by itself (the call is worth repeating).
pub fn is_retriable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            NotLeaderForPartition
                | LeaderNotAvailable
                | UnknownTopicOrPartition
                | UnknownTopic
                | UnknownPartition
                | RequestTimedOut
                | OperationTimedOut
                | CoordinatorLoadInProgress
                | CoordinatorNotAvailable
                | NotCoordinator
                | NetworkException
                | BrokerNotAvailable
                | BrokerTransportFailure
                | AllBrokersDown
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | FencedLeaderEpoch
                | UnknownLeaderEpoch
                | OffsetNotAvailable
                | PreferredLeaderNotAvailable
        )
    )
}

/// Runs `call` until it succeeds, fails with an error that is not retriable, or
/// [`RETRY_DEADLINE`] has passed; retries count against `cluster`.
pub fn with_retries<T>(
    cluster: &str,
    call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    with_retries_unless(cluster, || false, call)
}

/// [`with_retries`], giving up as soon as `refused` says the cluster refused the
/// client for good (a wrong password shows as time-outs, which are retriable).
pub fn with_retries_unless<T>(
    cluster: &str,
    refused: impl Fn() -> bool,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let deadline = Instant::now() + RETRY_DEADLINE;
    let mut pause = FIRST_PAUSE;
    loop {
        match call() {
            Err(error)
                if is_retriable(&error) && !refused() && Instant::now() + pause < deadline =>
            {
                KAFKA_RETRIES
                    .get_or_create(&ClusterLabel {
                        cluster: cluster.to_owned(),
                    })
                    .inc();
                tracing::info!(cluster, %error, "retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderless_partitions_are_retried_and_refusals_are_not() {
        let retriable = KafkaError::MetadataFetch(RDKafkaErrorCode::NotLeaderForPartition);
        assert!(is_retriable(&retriable));
        let refused = KafkaError::MetadataFetch(RDKafkaErrorCode::SaslAuthenticationFailed);
        assert!(!is_retriable(&refused));

        let mut attempts = 0;
        let result = with_retries("a", || {
            attempts += 1;
            if attempts < 3 {
                Err(retriable.clone())
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(result.unwrap(), 3);
        let counted = KAFKA_RETRIES
            .get_or_create(&ClusterLabel {
                cluster: "a".to_owned(),
            })
            .get();
        assert!(counted >= 2);

        let mut attempts = 0;
        let result: Result<(), _> = with_retries("b", || {
            attempts += 1;
            Err(refused.clone())
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }
}
