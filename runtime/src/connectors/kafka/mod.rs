//! Kafka: any number of named clusters per job, each with its own security
//! ([`connection`]); sources that assign partitions themselves ([`source`]); sinks,
//! at least once ([`sink`]) or exactly once ([`exactly_once`]); what brokers refuse
//! for a while is retried ([`retry`]).

pub mod connection;
pub mod exactly_once;
pub mod retry;
pub mod sink;
pub mod source;

pub use connection::{ClusterConnection, ConnectionError, DEFAULT_SECRETS_ROOT, SecretMounts};
pub use sink::{Delivery, KafkaOutput, KafkaSinkConfig};
pub use source::{KafkaRecord, KafkaSource, KafkaSourceConfig, StartFrom};
