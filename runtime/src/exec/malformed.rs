//! What happens to an input record that cannot be parsed (bad JSON, a truncated
//! Avro record, a missing value): each source that parses picks a policy — fail the
//! job, skip the record and count it, or send it to a dead-letter Kafka topic with
//! the error in its headers (as Kafka Connect does). No policy loses a record
//! silently: skipped ones are counted (`strom_malformed_records_total`), and
//! dead-letter records are written at least once, like any Kafka sink.

use crate::connectors::kafka::{KafkaOutput, KafkaSinkConfig};
use crate::format::FormatError;

/// The policy for records a source cannot parse.
#[derive(Debug, Clone)]
pub enum OnMalformed {
    /// The job fails, naming the record (topic, partition, offset) and the error.
    /// It restarts from its latest checkpoint and fails again on the same record,
    /// until the input or the job is fixed: nothing is skipped.
    Fail,
    /// The record is dropped and counted in the operator's malformed-records metric.
    Skip,
    /// The record is written, as it was read, to this Kafka topic, with headers
    /// saying where it came from and why it was refused.
    DeadLetter(KafkaSinkConfig),
}

/// The header names of a dead-letter record.
pub mod headers {
    /// Why the record was refused.
    pub const ERROR: &str = "strom.error";
    /// The operator that refused it.
    pub const OPERATOR: &str = "strom.operator";
    /// Where it was read: `topic/partition@offset` for Kafka.
    pub const ORIGIN: &str = "strom.origin";
}

/// An input record that may be malformed: it can say where it came from and be
/// written, as it was, to a dead-letter topic.
pub trait InputRecord {
    /// Where the record was read, for errors and dead-letter headers (e.g.
    /// `clicks/2@1234`).
    fn origin(&self) -> String;

    /// The record as it was read (key, value, headers), to be written to a
    /// dead-letter topic.
    fn as_output(&self) -> KafkaOutput;
}

/// The dead-letter record for `record`, refused by `operator` with `error`: the
/// record as it was read, plus the headers of [`headers`].
pub fn dead_letter<T: InputRecord>(record: &T, operator: &str, error: &str) -> KafkaOutput {
    let mut output = record.as_output();
    output.partition = None;
    output.headers.extend([
        (headers::ERROR.to_owned(), error.as_bytes().to_vec()),
        (headers::OPERATOR.to_owned(), operator.as_bytes().to_vec()),
        (headers::ORIGIN.to_owned(), record.origin().into_bytes()),
    ]);
    output
}

/// The message a job fails with when `operator` cannot parse `record`.
pub fn failure_message<T: InputRecord>(record: &T, operator: &str, error: &FormatError) -> String {
    format!(
        "{operator}: malformed record at {}: {error} (the source's policy is to fail; \
         skip or send to a dead-letter topic to go on)",
        record.origin()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::kafka::KafkaRecord;

    #[test]
    fn a_dead_letter_keeps_the_record_and_says_why_and_whence() {
        let record = KafkaRecord {
            topic: "clicks".into(),
            partition: 2,
            offset: 1234,
            timestamp: Some(1),
            key: Some(b"k".to_vec()),
            value: Some(b"{oops".to_vec()),
            headers: vec![("trace".into(), b"t1".to_vec())],
        };
        let letter = dead_letter(&record, "parse-clicks", "invalid JSON: eof");
        assert_eq!(letter.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(letter.value.as_deref(), Some(&b"{oops"[..]));
        assert_eq!(letter.partition, None);
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| String::from_utf8(value.clone()).unwrap())
        };
        assert_eq!(header("trace").as_deref(), Some("t1"));
        assert_eq!(header(headers::ERROR).as_deref(), Some("invalid JSON: eof"));
        assert_eq!(header(headers::OPERATOR).as_deref(), Some("parse-clicks"));
        assert_eq!(header(headers::ORIGIN).as_deref(), Some("clicks/2@1234"));
        let message = failure_message(&record, "parse-clicks", &FormatError::Missing);
        assert!(
            message.starts_with(
                "parse-clicks: malformed record at clicks/2@1234: the record has no value"
            ),
            "{message}"
        );
    }
}
