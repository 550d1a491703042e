//! Kafka: any number of named clusters per job, each with its own security
//! ([`connection`]); sources that assign partitions themselves ([`source`]); sinks
//! ([`sink`]).

pub mod connection;
pub mod sink;
pub mod source;

pub use connection::{ClusterConnection, ConnectionError, DEFAULT_SECRETS_ROOT, SecretMounts};
pub use sink::{KafkaOutput, KafkaSinkConfig};
pub use source::{KafkaRecord, KafkaSource, KafkaSourceConfig, StartFrom};
