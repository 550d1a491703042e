//! Connectors to systems outside the job: Kafka sources and sinks.

pub mod kafka;
