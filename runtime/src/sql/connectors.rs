//! Tables' connectors, configured by Flink's `WITH` options: what a table reads
//! from or writes to, checked when the script is planned.
//!
//! - `datagen`: generated rows (`rows-per-second`, `number-of-rows`,
//!   `fields.<f>.kind` = `random` / `sequence`, `.min`, `.max`, `.length`,
//!   `.start`, `.end`, `.max-past`, `.null-rate`);
//! - `filesystem`: the JSON-lines or CSV files of a folder (`path`, `format`),
//!   bounded, as a source; the same formats, exactly once, as a sink;
//! - `print`: rows printed with their change kind (`+I[...]`);
//! - `blackhole`: rows dropped;
//! - `nexmark`: the Nexmark benchmark's events (options and table in
//!   [`super::nexmark`]).
//!
//! Every source with a `WATERMARK` also takes Flink's per-table watermark options
//! ([`ScanWatermark`]): `scan.watermark.idle-timeout` and
//! `scan.watermark.alignment.max-drift` (with `.group` and `.update-interval`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};
use sqlparser::ast::{BinaryOperator, Expr, Value};

use super::error::{SqlError, SqlResult};
use super::kafka_table::{KeyOptions, RecordLayout};
use super::nexmark::NexmarkOptions;
use super::script::{TableDefinition, WatermarkDefinition};
use crate::format::schema_registry::{RegistrySchemas, SchemaRegistry};

/// A file format of the `filesystem` connector (and, later, Kafka's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One JSON object per line, fields by column name.
    Json,
    /// Comma-separated values, columns in order, no header.
    Csv,
}

/// What to do with a record that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrors {
    /// The job fails, naming the record.
    Fail,
    /// The record is skipped and counted.
    Skip,
}

/// How `datagen` makes a column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldGenerator {
    /// Uniformly random values (numbers in `min..=max`, strings of `length`
    /// characters, timestamps up to `max_past` before now).
    Random {
        /// The least number.
        min: Option<f64>,
        /// The largest number.
        max: Option<f64>,
        /// A string's length.
        length: usize,
        /// How far in the past a timestamp may be.
        max_past: Duration,
        /// The share of nulls, 0 to 1.
        null_rate: f64,
    },
    /// `start`, `start + 1`, ..., `end`: the table ends after `end`.
    Sequence {
        /// The first value.
        start: i64,
        /// The last value.
        end: i64,
    },
}

/// The `datagen` connector's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenOptions {
    /// Rows per second over the whole table; `None`: as fast as it goes.
    pub rows_per_second: Option<u64>,
    /// The number of rows, when bounded.
    pub number_of_rows: Option<u64>,
    /// How each stored column is made, in schema order.
    pub fields: Vec<FieldGenerator>,
}

/// Where a table's rows come from or go to.
#[derive(Debug, Clone, PartialEq)]
pub enum TableConnector {
    /// Generated rows.
    Datagen(DatagenOptions),
    /// The files of a folder.
    Filesystem {
        /// The folder (a path or a `file://` URL; `s3://` for the sink).
        path: String,
        /// Their format.
        format: TextFormat,
        /// Records that do not parse.
        parse_errors: ParseErrors,
    },
    /// Printed rows.
    Print {
        /// Printed before each row (`print-identifier`).
        identifier: Option<String>,
    },
    /// Dropped rows.
    Blackhole,
    /// A Kafka topic of one of the job's clusters (validated; run by a later
    /// change).
    Kafka(KafkaOptions),
    /// The events of the Nexmark benchmark (see [`super::nexmark`]).
    Nexmark(NexmarkOptions),
    /// A Kafka topic holding the latest row of each primary key: an insert or
    /// update is a record keyed by the key, a delete a tombstone (`upsert-kafka`).
    /// Read, it is a changelog: the topic from its earliest record, each value
    /// an upsert of its key and each tombstone a delete, made `+I`/`-U`/`+U`/`-D`
    /// by a changelog normalize (see [`super::changelog_normalize`]).
    UpsertKafka(KafkaOptions),
}

/// A source table's own watermark options (`scan.watermark.*`), which every
/// connector takes when the table has a `WATERMARK`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanWatermark {
    /// `scan.watermark.idle-timeout`: how long a split may give nothing before
    /// it no longer holds the watermark back. Set, it replaces the script's
    /// `table.exec.source.idle-timeout` for this table, as in Flink: zero
    /// never takes a split for idle. `None`: the script's.
    pub idle_timeout: Option<Duration>,
    /// `scan.watermark.alignment.*`: the table's source subtasks read within this
    /// drift of event time of each other.
    pub alignment: Option<WatermarkAlignment>,
}

/// Watermark alignment of a source table (Flink's
/// `scan.watermark.alignment.group` and `.max-drift`): a source subtask stops
/// reading while it reads more than `max_drift` of event time ahead of the
/// table's other subtasks with records waiting (see
/// [`crate::exec::EventTimes::max_drift`]).
///
/// As in Flink, the group and the drift are set together. Strom aligns the
/// subtasks of one table's source: a group names one table.
/// `scan.watermark.alignment.update-interval` is taken and checked, not used (a
/// subtask reports where it reads when that moved a quarter of the drift, not
/// on a clock).
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkAlignment {
    /// The alignment group.
    pub group: String,
    /// How far ahead in event time a subtask may read.
    pub max_drift: Duration,
}

/// A table's `WITH` options, read: where its rows come from or go to, and, for
/// a source, its watermark options.
#[derive(Debug, Clone, PartialEq)]
pub struct TableOptions {
    /// The connector.
    pub connector: TableConnector,
    /// `scan.watermark.*` (all unset for a sink).
    pub scan_watermark: ScanWatermark,
}

/// Where a `kafka` table starts reading (`scan.startup.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// `earliest-offset`.
    Earliest,
    /// `latest-offset`.
    Latest,
    /// `group-offsets`: the offsets committed for the table's group; partitions
    /// without one start at the earliest record, or the latest with
    /// `'properties.auto.offset.reset' = 'latest'`.
    GroupOffsets {
        /// Partitions without a committed offset start at the earliest record.
        or_earliest: bool,
    },
    /// `timestamp` (with `scan.startup.timestamp-millis`).
    Timestamp(i64),
}

/// The `kafka` connector's settings, Flink's option names; `cluster` names one
/// of the job's `spec.kafkaClusters` instead of bootstrap servers and credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOptions {
    /// The cluster, by its name in `spec.kafkaClusters`.
    pub cluster: String,
    /// The topics (`topic`, semicolon-separated as in Flink).
    pub topics: Vec<String>,
    /// The value format (`format` or `value.format`).
    pub format: KafkaFormat,
    /// Where each of the table's stored columns is in a record.
    pub layout: RecordLayout,
    /// Records that do not parse.
    pub parse_errors: ParseErrors,
    /// Where reading starts.
    pub startup: StartupMode,
    /// `scan.bounded.mode` = `latest-offset`: reading ends at the offsets the
    /// partitions end at when the job starts.
    pub bounded: bool,
    /// `properties.group.id`: the consumer group offsets are committed to.
    pub group_id: Option<String>,
    /// `sink.delivery-guarantee`: exactly once when true.
    pub exactly_once: bool,
    /// `sink.transactional-id-prefix`.
    pub transactional_id_prefix: Option<String>,
    /// `properties.*`: client settings passed through (never connection or
    /// security ones: those come from the cluster's entry).
    pub properties: BTreeMap<String, String>,
}

/// How a `kafka` table's record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    /// JSON objects, fields by column name; or CSV, columns in order.
    Text(TextFormat),
    /// The value's bytes as the table's one physical column (`raw`).
    Raw,
    /// Plain Avro records of the schema Flink derives from the columns (`avro`;
    /// see [`AvroRows`](super::avro_rows::AvroRows)).
    Avro,
    /// Avro records of the derived schema in the Confluent wire format, the
    /// schemas in a schema registry (`avro-confluent`).
    AvroConfluent,
}

/// Where an `avro-confluent` format keeps its schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryOptions {
    /// `avro-confluent.url`: the schema registry.
    pub registry: RegistrySchemas,
    /// `avro-confluent.subject`: the subject written records' schema is
    /// registered under (by default `<topic>-value` or `<topic>-key`).
    pub subject: String,
}

/// The formats of `format`, `value.format` and `key.format`.
const FORMATS: &str = "json, csv, raw, avro or avro-confluent";

/// The format named `name` (the value of the format option `option`), with its
/// registry options when it is `avro-confluent` (whose option names start with
/// what `option` does: `value.avro-confluent.url` for `value.format`). The
/// default subject is `<topic>-<part>`, `part` being `value` or `key`.
fn kafka_format(
    options: &mut Options<'_>,
    option: &str,
    name: &str,
    topic: Option<&str>,
    part: &str,
) -> SqlResult<(KafkaFormat, Option<RegistryOptions>)> {
    let format = match name {
        "json" => KafkaFormat::Text(TextFormat::Json),
        "csv" => KafkaFormat::Text(TextFormat::Csv),
        "raw" => KafkaFormat::Raw,
        "avro" => KafkaFormat::Avro,
        "avro-confluent" => KafkaFormat::AvroConfluent,
        other => return Err(options.invalid(option, other, FORMATS)),
    };
    if format != KafkaFormat::AvroConfluent {
        return Ok((format, None));
    }
    let prefix = option.strip_suffix("format").unwrap_or_default();
    // Each option also under Flink's older name (`schema-registry.url`).
    let mut either = |name: &str, old: &str| {
        let key = format!("{prefix}avro-confluent.{name}");
        let old_key = format!("{prefix}avro-confluent.{old}");
        match (options.optional(&key), options.optional(&old_key)) {
            (Some(value), _) => (key, Some(value)),
            (None, Some(value)) => (old_key, Some(value)),
            (None, None) => (key, None),
        }
    };
    let (url_key, url) = either("url", "schema-registry.url");
    let (subject_key, subject) = either("subject", "schema-registry.subject");
    let Some(url) = url else {
        return Err(options.required(&url_key).unwrap_err());
    };
    let registry = SchemaRegistry::new(&url).map_err(|error| {
        options.invalid(&url_key, "…", &format!("a schema registry URL: {error}"))
    })?;
    let subject = match (subject, topic) {
        (Some(subject), _) => subject,
        (None, Some(topic)) => format!("{topic}-{part}"),
        (None, None) => return Err(options.required(&subject_key).unwrap_err()),
    };
    Ok((
        format,
        Some(RegistryOptions {
            registry: RegistrySchemas::new(registry),
            subject,
        }),
    ))
}

impl TableOptions {
    /// The connector and watermark options `definition` gives, for a table whose
    /// stored columns are `schema`. Options no connector takes are refused,
    /// naming the ones it takes.
    pub fn from_definition(definition: &TableDefinition, schema: &SchemaRef) -> SqlResult<Self> {
        let upsert_options;
        let given =
            if definition.options.get("connector").map(String::as_str) == Some("upsert-kafka") {
                upsert_options = upsert_kafka_options(definition)?;
                &upsert_options
            } else {
                &definition.options
            };
        let mut options = Options {
            table: &definition.name,
            given,
            used: BTreeSet::new(),
            at: definition.at,
        };
        let connector = options.required("connector")?;
        let connector = match connector.as_str() {
            "datagen" => TableConnector::Datagen(datagen(&mut options, schema)?),
            "filesystem" => {
                let path = options.required("path")?;
                if path.trim().is_empty() {
                    return Err(options.invalid(
                        "path",
                        &path,
                        "a folder (a path, a file:// URL, or s3:// for a sink)",
                    ));
                }
                let format = match options.required("format")?.as_str() {
                    "json" => TextFormat::Json,
                    "csv" => TextFormat::Csv,
                    other => {
                        return Err(options.invalid("format", other, "json or csv"));
                    }
                };
                let ignore = match format {
                    TextFormat::Json => options.flag("json.ignore-parse-errors")?,
                    TextFormat::Csv => {
                        super::kafka_table::check_flat(definition, schema, "format")?;
                        options.flag("csv.ignore-parse-errors")?
                    }
                };
                TableConnector::Filesystem {
                    path,
                    format,
                    parse_errors: if ignore {
                        ParseErrors::Skip
                    } else {
                        ParseErrors::Fail
                    },
                }
            }
            "print" => {
                options.optional("standard-error");
                TableConnector::Print {
                    identifier: options.optional("print-identifier"),
                }
            }
            "blackhole" => TableConnector::Blackhole,
            "kafka" => TableConnector::Kafka(kafka(&mut options, definition, schema)?),
            "upsert-kafka" => TableConnector::UpsertKafka(kafka(&mut options, definition, schema)?),
            "nexmark" => TableConnector::Nexmark(NexmarkOptions::from_options(
                options.table,
                options.at,
                schema,
                |key| options.optional(key),
            )?),
            other => {
                return Err(SqlError::new(
                    format!(
                        "table {}: unknown connector '{other}'; Strom has: kafka, upsert-kafka, datagen, nexmark, filesystem, print, blackhole",
                        definition.name
                    ),
                    definition.at,
                ));
            }
        };
        let scan_watermark = if connector.is_source() {
            scan_watermark(&mut options, definition)?
        } else {
            ScanWatermark::default()
        };
        options.check_all_used(&connector_name(&connector))?;
        Ok(Self {
            connector,
            scan_watermark,
        })
    }
}

/// The `scan.watermark.*` options a source table takes.
const SCAN_WATERMARK_OPTIONS: [&str; 4] = [
    "scan.watermark.idle-timeout",
    "scan.watermark.alignment.group",
    "scan.watermark.alignment.max-drift",
    "scan.watermark.alignment.update-interval",
];

/// The least alignment drift: positions are compared in milliseconds.
const MIN_DRIFT: Duration = Duration::from_millis(1);

/// The `scan.watermark.*` options of a source table, which need its `WATERMARK`.
fn scan_watermark(
    options: &mut Options<'_>,
    definition: &TableDefinition,
) -> SqlResult<ScanWatermark> {
    if definition.watermark.is_none()
        && let Some(key) = SCAN_WATERMARK_OPTIONS
            .iter()
            .find(|key| options.given.contains_key(**key))
    {
        return Err(options.error(format!(
            "'{key}' needs the table's event time: add WATERMARK FOR <column> AS <column> - INTERVAL ..."
        )));
    }
    let idle_timeout = options.duration("scan.watermark.idle-timeout")?;
    let group = options.optional("scan.watermark.alignment.group");
    let max_drift = options.duration("scan.watermark.alignment.max-drift")?;
    let update_interval = options.duration("scan.watermark.alignment.update-interval")?;
    if let Some(drift) = max_drift
        && drift < MIN_DRIFT
    {
        return Err(options.invalid(
            "scan.watermark.alignment.max-drift",
            &options.given["scan.watermark.alignment.max-drift"],
            "a drift of at least 1 ms, such as '1 min'",
        ));
    }
    if update_interval.is_some_and(|interval| interval.is_zero()) {
        return Err(options.invalid(
            "scan.watermark.alignment.update-interval",
            &options.given["scan.watermark.alignment.update-interval"],
            "an interval longer than zero, such as '1 s'",
        ));
    }
    let alignment = match (group, max_drift) {
        (Some(group), Some(max_drift)) => Some(WatermarkAlignment { group, max_drift }),
        (None, None) if update_interval.is_none() => None,
        _ => {
            return Err(options.error(
                "watermark alignment needs both 'scan.watermark.alignment.group' (a name) and 'scan.watermark.alignment.max-drift' (how far ahead in event time a subtask may read, such as '1 min')",
            ));
        }
    };
    Ok(ScanWatermark {
        idle_timeout,
        alignment,
    })
}

impl TableConnector {
    /// Whether the connector can be read.
    pub fn is_source(&self) -> bool {
        matches!(
            self,
            Self::Datagen(_)
                | Self::Filesystem { .. }
                | Self::Kafka(_)
                | Self::Nexmark(_)
                | Self::UpsertKafka(_)
        )
    }

    /// Whether the connector takes a changelog (updates of rows it was given).
    pub fn takes_updates(&self) -> bool {
        matches!(
            self,
            Self::Print { .. } | Self::Blackhole | Self::UpsertKafka(_)
        )
    }

    /// Whether the connector can be written.
    pub fn is_sink(&self) -> bool {
        matches!(
            self,
            Self::Filesystem { .. }
                | Self::Print { .. }
                | Self::Blackhole
                | Self::Kafka(_)
                | Self::UpsertKafka(_)
        )
    }
}

/// The connector's name as the `connector` option gives it.
pub fn connector_name(connector: &TableConnector) -> String {
    match connector {
        TableConnector::Datagen(_) => "datagen",
        TableConnector::Filesystem { .. } => "filesystem",
        TableConnector::Print { .. } => "print",
        TableConnector::Blackhole => "blackhole",
        TableConnector::Kafka(_) => "kafka",
        TableConnector::Nexmark(_) => "nexmark",
        TableConnector::UpsertKafka(_) => "upsert-kafka",
    }
    .to_owned()
}

/// A table's options, with the ones read so far (the others are refused).
struct Options<'a> {
    table: &'a str,
    given: &'a BTreeMap<String, String>,
    used: BTreeSet<String>,
    at: Option<super::error::Position>,
}

impl Options<'_> {
    fn optional(&mut self, key: &str) -> Option<String> {
        self.used.insert(key.to_owned());
        self.given.get(key).cloned()
    }

    /// An error of the table's definition: `table <name>: <message>`, at its
    /// statement.
    fn error(&self, message: impl std::fmt::Display) -> SqlError {
        SqlError::new(format!("table {}: {message}", self.table), self.at)
    }

    fn required(&mut self, key: &str) -> SqlResult<String> {
        self.optional(key)
            .ok_or_else(|| self.error(format!("the option '{key}' is required")))
    }

    fn invalid(&self, key: &str, value: &str, expected: &str) -> SqlError {
        self.error(format!("option '{key}' = '{value}': expected {expected}"))
    }

    fn flag(&mut self, key: &str) -> SqlResult<bool> {
        match self.optional(key).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(self.invalid(key, other, "true or false")),
        }
    }

    /// A duration as Flink writes one (`'30 s'`, `'1 min'`; see
    /// [`super::settings::parse_duration`]).
    fn duration(&mut self, key: &str) -> SqlResult<Option<Duration>> {
        match self.optional(key) {
            None => Ok(None),
            Some(text) => super::settings::parse_duration(&text)
                .map(Some)
                .ok_or_else(|| self.invalid(key, &text, "a duration such as '30 s' or '1 min'")),
        }
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str) -> SqlResult<Option<T>> {
        match self.optional(key) {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(key, &text, "a number")),
        }
    }

    fn check_all_used(&self, connector: &str) -> SqlResult<()> {
        let unknown: Vec<&String> = self
            .given
            .keys()
            .filter(|key| !self.used.contains(*key))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut known: Vec<&String> = self.used.iter().collect();
        known.sort();
        Err(SqlError::new(
            format!(
                "table {}: unsupported options for connector '{connector}': {}; it takes: {}",
                self.table,
                unknown
                    .iter()
                    .map(|key| format!("'{key}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known
                    .iter()
                    .filter(|key| !key.contains('#'))
                    .map(|key| format!("'{key}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            self.at,
        ))
    }
}

/// The options of an `upsert-kafka` table as the `kafka` connector reads them:
/// its `PRIMARY KEY` is the record key (`key.fields`), in `key.format`; the value
/// in `value.format`.
fn upsert_kafka_options(definition: &TableDefinition) -> SqlResult<BTreeMap<String, String>> {
    let refuse = |message: &str| {
        SqlError::new(
            format!("table {}: {message}", definition.name),
            definition.at,
        )
    };
    if definition.primary_key.is_empty() {
        return Err(refuse(
            "connector 'upsert-kafka' needs a PRIMARY KEY (...) NOT ENFORCED: its columns are the record key",
        ));
    }
    for (key, why) in [
        ("key.fields", "the key is the PRIMARY KEY"),
        ("format", "it takes 'key.format' and 'value.format'"),
        (
            "scan.startup.mode",
            "it reads the topic from its earliest record, as Flink's does (the state of every key is in the topic)",
        ),
    ] {
        if definition.options.contains_key(key) {
            return Err(refuse(&format!(
                "'{key}' is not an option of connector 'upsert-kafka': {why}"
            )));
        }
    }
    let mut options = definition.options.clone();
    options.insert("key.fields".to_owned(), definition.primary_key.join(";"));
    options.insert("scan.startup.mode".to_owned(), "earliest-offset".to_owned());
    if !options.contains_key("key.format") {
        return Err(refuse("connector 'upsert-kafka' needs 'key.format'"));
    }
    if !options.contains_key("value.format") {
        return Err(refuse("connector 'upsert-kafka' needs 'value.format'"));
    }
    Ok(options)
}

/// `key.format` and `key.fields` (both or neither), and
/// `value.fields-include`, which must be `ALL` for now; `topic` is the table's
/// (first) topic.
fn key_options(options: &mut Options<'_>, topic: Option<&str>) -> SqlResult<Option<KeyOptions>> {
    match options.optional("value.fields-include").as_deref() {
        None | Some("ALL") => {}
        Some("EXCEPT_KEY") => {
            return Err(options.invalid(
                "value.fields-include",
                "EXCEPT_KEY",
                "ALL (values that hold every physical column; EXCEPT_KEY comes in a later version)",
            ));
        }
        Some(other) => return Err(options.invalid("value.fields-include", other, "ALL")),
    }
    let fields = options.optional("key.fields");
    let format = options.optional("key.format");
    let (fields, format) = match (fields, format) {
        (None, None) => return Ok(None),
        (Some(fields), Some(format)) => (fields, format),
        (Some(_), None) => return Err(options.required("key.format").unwrap_err()),
        (None, Some(_)) => return Err(options.required("key.fields").unwrap_err()),
    };
    let (format, registry) = kafka_format(options, "key.format", &format, topic, "key")?;
    Ok(Some(KeyOptions {
        format,
        registry,
        fields: fields
            .split(';')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(str::to_owned)
            .collect(),
    }))
}

/// Client properties a table may not set: the cluster's entry in
/// `spec.kafkaClusters` decides where and how the job connects.
const CONNECTION_PROPERTIES: [&str; 11] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "security.",
    "sasl.",
    "ssl.",
    "ssl_",
    "enable.ssl.",
    "enable.sasl.",
    "plugin.library.paths",
    "client.dns.lookup",
    "interceptor.",
];

fn kafka(
    options: &mut Options<'_>,
    definition: &TableDefinition,
    schema: &SchemaRef,
) -> SqlResult<KafkaOptions> {
    if options.given.contains_key("properties.bootstrap.servers") {
        return Err(options.error(
            "'properties.bootstrap.servers' is not taken: name one of the job's spec.kafkaClusters with 'cluster' (its servers and credentials come from there)",
        ));
    }
    let cluster = options.required("cluster")?;
    let topics: Vec<String> = options
        .required("topic")?
        .split(';')
        .map(str::trim)
        .filter(|topic| !topic.is_empty())
        .map(str::to_owned)
        .collect();
    let (format, format_option) =
        match (options.optional("format"), options.optional("value.format")) {
            (Some(format), None) => (format, "format"),
            (None, Some(format)) => (format, "value.format"),
            (Some(_), Some(_)) => {
                return Err(options.invalid(
                    "value.format",
                    "…",
                    "either 'format' or 'value.format', not both",
                ));
            }
            (None, None) => return Err(options.required("format").unwrap_err()),
        };
    let topic = topics.first().map(String::as_str);
    let (kafka_format, registry) = kafka_format(options, format_option, &format, topic, "value")?;
    let key = key_options(options, topic)?;
    let layout = RecordLayout::of_table(
        definition,
        schema,
        kafka_format,
        registry.as_ref(),
        key.as_ref(),
    )?;
    let ignore = match kafka_format {
        KafkaFormat::Text(_) => options.flag(&format!("{format}.ignore-parse-errors"))?,
        // Flink's raw and avro formats have no such option: a malformed record
        // fails the job.
        KafkaFormat::Raw | KafkaFormat::Avro | KafkaFormat::AvroConfluent => false,
    };
    let startup = match options.optional("scan.startup.mode").as_deref() {
        None | Some("group-offsets") => StartupMode::GroupOffsets {
            or_earliest: match options.optional("properties.auto.offset.reset").as_deref() {
                None | Some("earliest") => true,
                Some("latest") => false,
                Some(other) => {
                    return Err(options.invalid(
                        "properties.auto.offset.reset",
                        other,
                        "earliest or latest",
                    ));
                }
            },
        },
        Some("earliest-offset") => StartupMode::Earliest,
        Some("latest-offset") => StartupMode::Latest,
        Some("timestamp") => StartupMode::Timestamp(
            options
                .number("scan.startup.timestamp-millis")?
                .ok_or_else(|| {
                    options.invalid(
                        "scan.startup.mode",
                        "timestamp",
                        "'scan.startup.timestamp-millis' with it",
                    )
                })?,
        ),
        Some(other) => {
            return Err(options.invalid(
                "scan.startup.mode",
                other,
                "earliest-offset, latest-offset, group-offsets or timestamp",
            ));
        }
    };
    let exactly_once = match options.optional("sink.delivery-guarantee").as_deref() {
        None | Some("at-least-once") | Some("none") => false,
        Some("exactly-once") => true,
        Some(other) => {
            return Err(options.invalid(
                "sink.delivery-guarantee",
                other,
                "exactly-once, at-least-once or none",
            ));
        }
    };
    let bounded = match options.optional("scan.bounded.mode").as_deref() {
        None | Some("unbounded") => false,
        Some("latest-offset") => true,
        Some(other) => {
            return Err(options.invalid("scan.bounded.mode", other, "unbounded or latest-offset"));
        }
    };
    let transactional_id_prefix = options.optional("sink.transactional-id-prefix");
    let group_id = options.optional("properties.group.id");
    let properties = options
        .given
        .iter()
        .filter(|(key, _)| {
            key.starts_with("properties.")
                && *key != "properties.group.id"
                && *key != "properties.auto.offset.reset"
        })
        .map(|(key, value)| (key["properties.".len()..].to_owned(), value.clone()))
        .collect::<BTreeMap<_, _>>();
    for key in properties.keys() {
        if CONNECTION_PROPERTIES.iter().any(|taken| {
            key == taken
                || ((taken.ends_with('.') || taken.ends_with('_')) && key.starts_with(taken))
        }) {
            return Err(options.invalid(
                &format!("properties.{key}"),
                "…",
                "no connection or security setting: those come from the cluster's entry in spec.kafkaClusters",
            ));
        }
        options.used.insert(format!("properties.{key}"));
    }
    Ok(KafkaOptions {
        cluster,
        topics,
        format: kafka_format,
        layout,
        parse_errors: if ignore {
            ParseErrors::Skip
        } else {
            ParseErrors::Fail
        },
        startup,
        bounded,
        group_id,
        exactly_once,
        transactional_id_prefix,
        properties,
    })
}

fn datagen(options: &mut Options<'_>, schema: &SchemaRef) -> SqlResult<DatagenOptions> {
    let rows_per_second = options.number::<u64>("rows-per-second")?.or(Some(10_000));
    let rows_per_second = rows_per_second.filter(|rate| *rate > 0);
    let mut number_of_rows = options.number::<u64>("number-of-rows")?;
    let mut fields = Vec::new();
    for field in schema.fields() {
        let key = |suffix: &str| format!("fields.{}.{suffix}", field.name());
        let kind = options
            .optional(&key("kind"))
            .unwrap_or_else(|| "random".to_owned());
        let generator = match kind.as_str() {
            "random" => FieldGenerator::Random {
                min: options.number(&key("min"))?,
                max: options.number(&key("max"))?,
                length: options.number(&key("length"))?.unwrap_or(100),
                max_past: Duration::from_millis(options.number(&key("max-past"))?.unwrap_or(0)),
                null_rate: options.number(&key("null-rate"))?.unwrap_or(0.0),
            },
            "sequence" => {
                if !matches!(
                    field.data_type(),
                    DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::Utf8
                ) {
                    return Err(options.invalid(
                        &key("kind"),
                        "sequence",
                        "random (a sequence makes whole numbers or strings)",
                    ));
                }
                let start = options.number(&key("start"))?.unwrap_or(0);
                let end = options
                    .number::<i64>(&key("end"))?
                    .ok_or_else(|| options.error(format!("a sequence needs '{}'", key("end"))))?;
                let count = (end - start + 1).max(0) as u64;
                number_of_rows = Some(number_of_rows.map_or(count, |n| n.min(count)));
                FieldGenerator::Sequence { start, end }
            }
            other => return Err(options.invalid(&key("kind"), other, "random or sequence")),
        };
        fields.push(generator);
    }
    Ok(DatagenOptions {
        rows_per_second,
        number_of_rows,
        fields,
    })
}

/// Checks a table's `WATERMARK FOR c AS c [- INTERVAL ...]`, returning how far
/// behind the largest event time the watermark stays.
pub fn check_watermark(
    definition: &TableDefinition,
    watermark: &WatermarkDefinition,
    schema: &SchemaRef,
) -> SqlResult<Duration> {
    let field = schema
        .field_with_name(&watermark.column)
        .map_err(|_| SqlError::new("no such column", watermark.at))?;
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        return Err(SqlError::new(
            format!(
                "table {}: WATERMARK FOR {}: the column is {}, but an event-time column is a TIMESTAMP(3) or TIMESTAMP_LTZ(3)",
                definition.name,
                watermark.column,
                field.data_type()
            ),
            watermark.at,
        ));
    }
    watermark_delay(watermark).ok_or_else(|| {
        SqlError::new(
            format!(
                "table {}: WATERMARK FOR {} AS {}: Strom takes `{0}` or `{0} - INTERVAL '<n>' <unit>` (a bounded out-of-orderness)",
                definition.name, watermark.column, watermark.expr
            ),
            watermark.at,
        )
    })
}

/// The delay of `c` (none) or `c - INTERVAL 'n' UNIT`.
pub fn watermark_delay(watermark: &WatermarkDefinition) -> Option<Duration> {
    let is_column = |expr: &Expr| match expr {
        Expr::Identifier(ident) => ident.value == watermark.column,
        Expr::Nested(inner) => {
            matches!(&**inner, Expr::Identifier(ident) if ident.value == watermark.column)
        }
        _ => false,
    };
    match &watermark.expr {
        expr if is_column(expr) => Some(Duration::ZERO),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if is_column(left) => interval(right),
        _ => None,
    }
}

/// An `INTERVAL 'n' UNIT` literal.
fn interval(expr: &Expr) -> Option<Duration> {
    let Expr::Interval(interval) = expr else {
        return None;
    };
    let Expr::Value(value) = &*interval.value else {
        return None;
    };
    let text = match &value.value {
        Value::SingleQuotedString(text) | Value::Number(text, _) => text.trim(),
        _ => return None,
    };
    let amount: f64 = text.parse().ok()?;
    let unit = interval
        .leading_field
        .as_ref()
        .map(|field| field.to_string().to_ascii_uppercase())
        .unwrap_or_else(|| "SECOND".to_owned());
    let ms = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1.0,
        "SECOND" => 1_000.0,
        "MINUTE" => 60_000.0,
        "HOUR" => 3_600_000.0,
        "DAY" => 86_400_000.0,
        _ => return None,
    };
    (amount >= 0.0).then(|| Duration::from_millis((amount * ms) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::script::{Statement, parse_script};

    fn table(sql: &str) -> TableDefinition {
        match parse_script(sql).unwrap().remove(0) {
            Statement::CreateTable(table) => *table,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn watermark_delays_are_read_from_the_interval() {
        let t = table(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '4' SECOND) WITH ()",
        );
        assert_eq!(
            watermark_delay(t.watermark.as_ref().unwrap()),
            Some(Duration::from_secs(4))
        );
        let t = table("CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ()");
        assert_eq!(
            watermark_delay(t.watermark.as_ref().unwrap()),
            Some(Duration::ZERO)
        );
        let t = table(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '0.5' MINUTE) WITH ()",
        );
        assert_eq!(
            watermark_delay(t.watermark.as_ref().unwrap()),
            Some(Duration::from_secs(30))
        );
    }

    /// A filesystem table without a folder fails when planned, naming the
    /// option, rather than when its source lists the folder (or its sink writes
    /// into the working directory).
    #[test]
    fn a_filesystem_table_needs_a_path() {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
        for (options, expected) in [
            (
                "'connector' = 'filesystem', 'format' = 'json'",
                "table t: the option 'path' is required",
            ),
            (
                "'connector' = 'filesystem', 'path' = '', 'format' = 'json'",
                "table t: option 'path' = '': expected a folder",
            ),
            (
                "'connector' = 'filesystem', 'path' = '  ', 'format' = 'csv'",
                "table t: option 'path' = '  ': expected a folder",
            ),
        ] {
            let t = table(&format!("CREATE TABLE t (a BIGINT) WITH ({options})"));
            let error = TableOptions::from_definition(&t, &schema).unwrap_err();
            assert!(error.message.contains(expected), "{options}: {error}");
            assert_eq!(error.at, t.at, "{options}");
        }
    }

    /// The options of a datagen table `t` with a TIMESTAMP column `ts`, with a
    /// watermark on it or none.
    fn datagen_with(options: &str, watermark: bool) -> SqlResult<TableOptions> {
        let watermark = if watermark {
            ", WATERMARK FOR ts AS ts - INTERVAL '1' SECOND"
        } else {
            ""
        };
        let t = table(&format!(
            "CREATE TABLE t (ts TIMESTAMP(3){watermark}) WITH ('connector' = 'datagen'{options})"
        ));
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
        ]));
        TableOptions::from_definition(&t, &schema)
    }

    #[test]
    fn a_source_reads_its_watermark_idle_timeout_and_alignment() {
        let read = |options: &str| {
            datagen_with(options, true)
                .unwrap_or_else(|error| panic!("{options}: {error}"))
                .scan_watermark
        };
        assert_eq!(read(""), ScanWatermark::default());
        assert_eq!(
            read(
                ", 'scan.watermark.alignment.group' = 'g', 'scan.watermark.alignment.max-drift' = '1 min'"
            ),
            ScanWatermark {
                idle_timeout: None,
                alignment: Some(WatermarkAlignment {
                    group: "g".to_owned(),
                    max_drift: Duration::from_secs(60),
                }),
            }
        );
        assert_eq!(
            read(
                ", 'scan.watermark.alignment.group' = 'g', 'scan.watermark.alignment.max-drift' = '30 s',
                 'scan.watermark.alignment.update-interval' = '1 s', 'scan.watermark.idle-timeout' = '5 s'"
            ),
            ScanWatermark {
                idle_timeout: Some(Duration::from_secs(5)),
                alignment: Some(WatermarkAlignment {
                    group: "g".to_owned(),
                    max_drift: Duration::from_secs(30),
                }),
            }
        );
        // Zero is kept apart from unset: it replaces the script's idle timeout.
        assert_eq!(
            read(", 'scan.watermark.idle-timeout' = '0'").idle_timeout,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn watermark_options_that_cannot_hold_are_refused_naming_what_to_fix() {
        let aligned = ", 'scan.watermark.alignment.group' = 'g'";
        for (options, watermark, expected) in [
            (
                &*format!("{aligned}, 'scan.watermark.alignment.max-drift' = '0 s'"),
                true,
                "option 'scan.watermark.alignment.max-drift' = '0 s': expected a drift of at least 1 ms",
            ),
            (
                &format!("{aligned}, 'scan.watermark.alignment.max-drift' = '500 µs'"),
                true,
                "option 'scan.watermark.alignment.max-drift' = '500 µs': expected a drift of at least 1 ms",
            ),
            (
                &format!("{aligned}, 'scan.watermark.alignment.max-drift' = 'soon'"),
                true,
                "option 'scan.watermark.alignment.max-drift' = 'soon': expected a duration",
            ),
            (
                &format!(
                    "{aligned}, 'scan.watermark.alignment.max-drift' = '1 s', 'scan.watermark.alignment.update-interval' = '0'"
                ),
                true,
                "option 'scan.watermark.alignment.update-interval' = '0': expected an interval longer than zero",
            ),
            (
                aligned,
                true,
                "watermark alignment needs both 'scan.watermark.alignment.group' (a name) and 'scan.watermark.alignment.max-drift'",
            ),
            (
                ", 'scan.watermark.alignment.max-drift' = '1 min'",
                true,
                "watermark alignment needs both",
            ),
            (
                ", 'scan.watermark.alignment.update-interval' = '1 s'",
                true,
                "watermark alignment needs both",
            ),
            (
                &format!("{aligned}, 'scan.watermark.alignment.max-drift' = '1 min'"),
                false,
                "'scan.watermark.alignment.group' needs the table's event time: add WATERMARK FOR",
            ),
            (
                ", 'scan.watermark.idle-timeout' = '5 s'",
                false,
                "'scan.watermark.idle-timeout' needs the table's event time",
            ),
            (
                ", 'scan.watermark.emit.strategy' = 'on-event'",
                true,
                "unsupported options for connector 'datagen': 'scan.watermark.emit.strategy'",
            ),
        ] {
            let error = datagen_with(options, watermark).unwrap_err();
            assert!(error.message.contains(expected), "{options}: {error}");
        }
        // A sink reads no watermark: the options are not its.
        let t = table(
            "CREATE TABLE t (a BIGINT) WITH ('connector' = 'blackhole', 'scan.watermark.alignment.max-drift' = '1 min')",
        );
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
        let error = TableOptions::from_definition(&t, &schema).unwrap_err();
        assert!(
            error.message.contains(
                "unsupported options for connector 'blackhole': 'scan.watermark.alignment.max-drift'"
            ),
            "{error}"
        );
    }

    #[test]
    fn unknown_options_are_refused_with_the_known_ones() {
        let t = table(
            "CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '/x', 'format' = 'json', 'sink.rolling' = '1')",
        );
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
        let error = TableOptions::from_definition(&t, &schema).unwrap_err();
        assert!(
            error
                .message
                .contains("unsupported options for connector 'filesystem': 'sink.rolling'"),
            "{error}"
        );
        let t = table("CREATE TABLE t (a BIGINT) WITH ('connector' = 'jdbc')");
        let error = TableOptions::from_definition(&t, &schema).unwrap_err();
        assert!(
            error.message.contains("unknown connector 'jdbc'"),
            "{error}"
        );
    }
}
