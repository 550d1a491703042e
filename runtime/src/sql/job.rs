//! Building a SQL script's streaming plan on each worker with the DataStream API:
//! streams of [`SqlBatch`]es, sources with watermarks, calcs, window aggregates
//! keyed by key group, and sinks.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;

use super::batch::{RowKind, SqlBatch, max_event_time, row_kinds, with_op_column};
use super::calc::Calc;
use super::catalog::{Catalog, Table};
use super::changelog_normalize::{ChangelogNormalize, ChangelogNormalizeLogic};
use super::connectors::{
    KafkaOptions, ScanWatermark, StartupMode, TableConnector, TextFormat, watermark_delay,
};
use super::error::{SqlError, SqlResult};
use super::group_aggregate::GroupAggregateLogic;
use super::kafka_table::KafkaTableSource;
use super::lower::{Computed, Reads, StreamNode, StreamPlan};
use super::physical::physical_expr;
use super::session_aggregate::SessionAggregateLogic;
use super::sources::{DatagenSource, FileTableSource, ReadProjection};
use super::window_aggregate::{KeyEncoder, Routed, WindowAggregateLogic};
use super::window_tvf::WindowSpec;
use crate::api::{BuildError, DataStream, Pipeline};
use crate::connectors::kafka::{
    ClusterConnection, Delivery, KafkaOutput, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
    SecretMounts, StartFrom,
};
use crate::exec::{EventTime, EventTimes, FileSource, PipelineFn};
use crate::pipelines::OutputFn;
use strom_crds::KafkaCluster;

/// How many splits a `datagen` table has, whatever the parallelism (so its rows
/// are the same at every parallelism).
const DATAGEN_SPLITS: u32 = 16;

/// A table as a source or sink needs it at run time.
#[derive(Clone)]
struct TableRuntime {
    name: String,
    connector: TableConnector,
    stored: arrow::datatypes::SchemaRef,
    projection: Option<ReadProjection>,
    /// The event-time column and the watermark's delay.
    watermark: Option<(usize, std::time::Duration)>,
    /// The table's own watermark options (idle timeout, alignment).
    scan_watermark: ScanWatermark,
}

/// A compiled script: the plan and what its tables need at run time.
#[derive(Clone)]
pub struct SqlJob {
    /// The streaming operators.
    pub plan: StreamPlan,
    tables: HashMap<String, TableRuntime>,
    idle_timeout: Option<std::time::Duration>,
    /// `table.exec.state.ttl`, for the updating aggregates.
    state_ttl: Option<std::time::Duration>,
    /// The Kafka clusters of the tables, by name (see [`SqlJob::connect`]).
    connections: HashMap<String, ClusterConnection>,
}

impl SqlJob {
    /// Connects the job's `kafka` tables to their clusters, named among the
    /// job's `clusters` (`spec.kafkaClusters`) with their Secrets mounted at
    /// `secrets`. A job with `kafka` tables runs only once connected.
    pub fn connect(&mut self, clusters: &[KafkaCluster], secrets: &SecretMounts) -> SqlResult<()> {
        for table in self.tables.values() {
            let (TableConnector::Kafka(options) | TableConnector::UpsertKafka(options)) =
                &table.connector
            else {
                continue;
            };
            if self.connections.contains_key(&options.cluster) {
                continue;
            }
            let connection =
                ClusterConnection::find(clusters, &options.cluster, secrets).map_err(|error| {
                    SqlError::new(
                        format!(
                            "table {}: 'cluster' = '{}': {error}",
                            table.name, options.cluster
                        ),
                        None,
                    )
                })?;
            self.connections.insert(options.cluster.clone(), connection);
        }
        Ok(())
    }

    /// The Kafka clusters the job's tables name, each once.
    pub fn kafka_clusters(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tables
            .values()
            .filter_map(|table| match &table.connector {
                TableConnector::Kafka(options) | TableConnector::UpsertKafka(options) => {
                    Some(options.cluster.clone())
                }
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Prepares what the plan's tables need at run time.
    pub fn new(catalog: &Catalog, plan: StreamPlan) -> SqlResult<Self> {
        let mut tables = HashMap::new();
        for node in &plan.nodes {
            let name = match node {
                StreamNode::Source { table, .. } => table,
                StreamNode::Sink {
                    table: Some(table), ..
                } => table,
                _ => continue,
            };
            let table = catalog
                .table(name)
                .ok_or_else(|| SqlError::new(format!("no table {name}"), None))?;
            tables.insert(name.clone(), table_runtime(table)?);
        }
        // Exactly-once sinks sharing a transactional-id prefix would fence each
        // other (and could read each other's commit markers).
        let mut prefixes: HashMap<&str, &str> = HashMap::new();
        for node in &plan.nodes {
            let StreamNode::Sink {
                table: Some(name), ..
            } = node
            else {
                continue;
            };
            if let TableConnector::Kafka(options) | TableConnector::UpsertKafka(options) =
                &tables[name].connector
                && let Some(prefix) = &options.transactional_id_prefix
                && let Some(other) = prefixes.insert(prefix, name)
            {
                return Err(SqlError::new(
                    format!(
                        "tables {other} and {name} are written with the same 'sink.transactional-id-prefix' = '{prefix}'; each sink needs its own"
                    ),
                    None,
                ));
            }
        }
        check_alignment_groups(&plan, &tables)?;
        let idle_timeout = super::settings::source_idle_timeout(&catalog.settings)?;
        let state_ttl = super::settings::state_ttl(&catalog.settings)?;
        Ok(Self {
            plan,
            tables,
            idle_timeout,
            state_ttl,
            connections: HashMap::new(),
        })
    }

    /// The pipeline that runs the plan on each worker, sending printed rows to
    /// `output`.
    pub fn pipeline(self, output: OutputFn) -> PipelineFn {
        let job = Arc::new(self);
        Arc::new(move |pipeline: &mut Pipeline<'_>| job.build(pipeline, &output))
    }

    fn build<'scope>(
        &self,
        pipeline: &mut Pipeline<'scope>,
        output: &OutputFn,
    ) -> Result<(), BuildError> {
        let mut streams: Vec<Option<DataStream<'scope, SqlBatch>>> = Vec::new();
        for (id, node) in self.plan.nodes.iter().enumerate() {
            let input = |index: usize| -> DataStream<'scope, SqlBatch> {
                streams[index]
                    .clone()
                    .expect("inputs come before their operators")
            };
            let stream = match node {
                StreamNode::Source { table, .. } => {
                    let reads = self.plan.reads_of(id);
                    Some(self.source(pipeline, &self.tables[table], reads)?)
                }
                StreamNode::Calc {
                    input: from,
                    filter,
                    columns,
                    schema,
                } => {
                    let stream = input(*from);
                    let control = stream.context().control.clone();
                    // A changelog's op column is carried through, filtered with its rows.
                    let schema = if self.plan.is_changelog(*from) {
                        with_op_column(schema)
                    } else {
                        Arc::clone(schema)
                    };
                    let calc = Calc::new(
                        filter.clone(),
                        columns.clone(),
                        &self.plan.schema(*from),
                        schema,
                    )
                    .map_err(|message| not_runnable_because("calc", message))?;
                    Some(
                        stream.flat_map(move |SqlBatch(batch)| match calc.apply(&batch) {
                            Ok(batch) => (batch.num_rows() > 0).then_some(SqlBatch(batch)),
                            Err(message) => {
                                control.record_failure(message.clone());
                                panic!("{message}");
                            }
                        }),
                    )
                }
                StreamNode::Union { inputs, .. } => {
                    let mut all = input(inputs[0]);
                    for other in &inputs[1..] {
                        all = all.union(input(*other));
                    }
                    Some(all)
                }
                StreamNode::WindowAggregate(aggregate) => {
                    let stream = input(aggregate.input);
                    let input_schema = self.plan.schema(aggregate.input);
                    let aggregate = Arc::new(aggregate.clone());
                    let encoder = KeyEncoder::new(&aggregate, &input_schema);
                    let partitioning = stream.context().partitioning();
                    let routed = stream.flat_map(move |batch: SqlBatch| {
                        split_by_subtask(&batch, &encoder, |key| partitioning.subtask_of_key(key))
                    });
                    let metrics = routed.context().operator_metrics(&aggregate.name);
                    let route = |routed: &Routed| routed.subtask;
                    if let WindowSpec::Session { .. } = aggregate.spec {
                        let logic = SessionAggregateLogic::new(
                            Arc::clone(&aggregate),
                            &input_schema,
                            metrics,
                        );
                        Some(routed.keyed_by_subtask(&aggregate.name, route, logic)?)
                    } else {
                        let logic = WindowAggregateLogic::new(
                            Arc::clone(&aggregate),
                            &input_schema,
                            metrics,
                        );
                        Some(routed.keyed_by_subtask(&aggregate.name, route, logic)?)
                    }
                }
                StreamNode::GroupAggregate(aggregate) => {
                    let stream = input(aggregate.input);
                    let input_schema = self.plan.schema(aggregate.input);
                    let aggregate = Arc::new(aggregate.clone());
                    let encoder = KeyEncoder::of_keys(&aggregate.keys, &input_schema);
                    let partitioning = stream.context().partitioning();
                    let routed = stream.flat_map(move |batch: SqlBatch| {
                        split_by_subtask(&batch, &encoder, |key| partitioning.subtask_of_key(key))
                    });
                    let logic = GroupAggregateLogic::new(Arc::clone(&aggregate), &input_schema)
                        .with_state_ttl(self.state_ttl);
                    Some(routed.keyed_by_subtask(
                        &aggregate.name,
                        |routed: &Routed| routed.subtask,
                        logic,
                    )?)
                }
                StreamNode::ChangelogNormalize(normalize) => Some(changelog_normalize(
                    input(normalize.input),
                    normalize,
                    self.state_ttl,
                )?),
                StreamNode::Sink {
                    input: from,
                    table,
                    name,
                } => {
                    let stream = input(*from);
                    let changelog = self.plan.is_changelog(*from);
                    match table {
                        None => print_sink(stream, None, changelog, output),
                        Some(table) => {
                            self.sink(stream, &self.tables[table], name, changelog, output)?
                        }
                    }
                    None
                }
            };
            debug_assert_eq!(streams.len(), id);
            streams.push(stream);
        }
        Ok(())
    }

    /// How the source of `table` finds its rows' event times and sends its
    /// watermark: from its `WATERMARK` and `scan.watermark.*` options, the
    /// script's idle timeout where the table sets none. `None`: no event time.
    fn event_times(&self, table: &TableRuntime) -> Option<EventTimes<SqlBatch>> {
        let (column, delay) = table.watermark?;
        Some(EventTimes {
            timestamp: Box::new(move |batch: &SqlBatch| -> EventTime {
                max_event_time(batch.0.column(column)).map_or(0, |time| time.max(0) as u64)
            }),
            max_out_of_orderness: delay,
            // The table's own timeout (zero: never) replaces the script's.
            idle_timeout: match table.scan_watermark.idle_timeout {
                Some(timeout) => Some(timeout).filter(|timeout| !timeout.is_zero()),
                None => self.idle_timeout,
            },
            max_drift: table
                .scan_watermark
                .alignment
                .as_ref()
                .map(|alignment| alignment.max_drift),
        })
    }

    /// The source of `table`, of whose columns the plan `reads` some (`None`:
    /// all).
    fn source<'scope>(
        &self,
        pipeline: &mut Pipeline<'scope>,
        table: &TableRuntime,
        reads: Option<Reads>,
    ) -> Result<DataStream<'scope, SqlBatch>, BuildError> {
        let name = format!("source-{}", table.name);
        let event_times = self.event_times(table);
        match &table.connector {
            TableConnector::Datagen(options) => {
                let source = DatagenSource::new(
                    options.clone(),
                    Arc::clone(&table.stored),
                    table.projection.clone(),
                    DATAGEN_SPLITS,
                );
                match event_times {
                    Some(times) => pipeline.source_with_event_times(&name, source, times),
                    None => pipeline.source(&name, source),
                }
            }
            TableConnector::Nexmark(options) => {
                let source = super::nexmark::NexmarkSource::new(
                    options.clone(),
                    Arc::clone(&table.stored),
                    table.projection.clone(),
                    super::nexmark::SPLITS,
                )
                .reading(reads.map(|reads| stored_reads(table, reads)));
                match event_times {
                    Some(times) => pipeline.source_with_event_times(&name, source, times),
                    None => pipeline.source(&name, source),
                }
            }
            TableConnector::Filesystem {
                path,
                format,
                parse_errors,
            } => {
                let dir = path.strip_prefix("file://").unwrap_or(path);
                let files = FileSource::new(std::path::Path::new(dir)).map_err(|error| {
                    BuildError::Source {
                        operator: name.clone(),
                        source: crate::exec::source::SourceBuildError::Source(
                            crate::exec::SourceError(error.to_string()),
                        ),
                    }
                })?;
                let source = FileTableSource::new(
                    files,
                    *format,
                    *parse_errors,
                    Arc::clone(&table.stored),
                    table.projection.clone(),
                    &table.name,
                    pipeline.context().operator_metrics(&name),
                );
                match event_times {
                    Some(times) => pipeline.source_with_event_times(&name, source, times),
                    None => pipeline.source(&name, source),
                }
            }
            TableConnector::Kafka(options) | TableConnector::UpsertKafka(options) => {
                let connection = self.connection(&name, options)?;
                let settings = &pipeline.context().settings;
                let group = options
                    .group_id
                    .clone()
                    .unwrap_or_else(|| format!("strom-{}-{}", settings.name, table.name));
                let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
                let mut config = KafkaSourceConfig::new(connection, &topics, &group);
                config.start = match options.startup {
                    StartupMode::Earliest => StartFrom::Earliest,
                    StartupMode::Latest => StartFrom::Latest,
                    StartupMode::Timestamp(millis) => StartFrom::Timestamp(millis),
                    StartupMode::GroupOffsets { or_earliest } => {
                        StartFrom::CommittedOffsets { or_earliest }
                    }
                };
                config.bounded = options.bounded;
                config.client_id = format!("strom-{}", settings.name);
                // As Flink does: offsets are committed to the group when
                // checkpoints complete (for lag monitoring, and where a job
                // started without state goes on from).
                config.commit_offsets = true;
                let source = KafkaTableSource::new(
                    KafkaSource::new(config),
                    options.layout.clone(),
                    table.projection.clone(),
                    options.parse_errors,
                    &table.name,
                    pipeline.context().operator_metrics(&name),
                );
                let source = match table.connector {
                    TableConnector::UpsertKafka(_) => source.reading_upserts(),
                    _ => source,
                };
                match event_times {
                    Some(times) => pipeline.source_with_event_times(&name, source, times),
                    None => pipeline.source(&name, source),
                }
            }
            other => Err(not_runnable(&name, other)),
        }
    }

    /// The connection of a `kafka` table's cluster (see [`SqlJob::connect`]).
    fn connection(
        &self,
        operator: &str,
        options: &KafkaOptions,
    ) -> Result<ClusterConnection, BuildError> {
        let connection = self.connections.get(&options.cluster).ok_or_else(|| {
            not_runnable_because(
                operator,
                format!(
                    "the job's Kafka cluster '{}' is not connected (run it with its spec.kafkaClusters)",
                    options.cluster
                ),
            )
        })?;
        Ok(connection.with_properties(&options.properties))
    }

    fn sink(
        &self,
        stream: DataStream<'_, SqlBatch>,
        table: &TableRuntime,
        name: &str,
        changelog: bool,
        output: &OutputFn,
    ) -> Result<(), BuildError> {
        match &table.connector {
            TableConnector::Print { identifier } => {
                print_sink(stream, identifier.as_deref(), changelog, output);
                Ok(())
            }
            TableConnector::Blackhole => {
                stream.sink(|_, _| {});
                Ok(())
            }
            TableConnector::Filesystem { path, format, .. } => {
                let url = if path.contains("://") {
                    path.clone()
                } else {
                    format!(
                        "file://{}",
                        std::path::absolute(path)
                            .unwrap_or_else(|_| path.into())
                            .display()
                    )
                };
                let format = *format;
                stream.sink_files(name, &url, move |SqlBatch(batch), text| {
                    encode_lines(format, batch, text);
                })
            }
            TableConnector::Kafka(options) | TableConnector::UpsertKafka(options) => {
                let connection = self.connection(name, options)?;
                let job = &stream.context().settings.name;
                let topic = options.topics.first().ok_or_else(|| {
                    not_runnable_because(name, format!("table {}: no topic to write", table.name))
                })?;
                let mut config =
                    KafkaSinkConfig::new(connection, topic, &format!("strom-{job}-{name}"));
                if options.exactly_once {
                    config.delivery = Delivery::ExactlyOnce;
                    config.transactional_id_prefix = options.transactional_id_prefix.clone();
                }
                let layout = options.layout.clone();
                layout
                    .register_schemas(&table.name)
                    .map_err(|message| not_runnable_because(name, message))?;
                let control = stream.context().control.clone();
                let table_name = table.name.clone();
                let encode = move |batch: &RecordBatch| match layout.encode(batch, &table_name) {
                    Ok(records) => records,
                    Err(message) => {
                        control.record_failure(message.clone());
                        panic!("{message}");
                    }
                };
                let records = if changelog {
                    stream.flat_map(move |SqlBatch(batch)| {
                        let kinds = row_kinds(&batch);
                        let rows = batch
                            .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
                            .expect("the columns before the op column");
                        upserts(encode(&rows), &kinds)
                    })
                } else {
                    stream.flat_map(move |SqlBatch(batch)| encode(&batch))
                };
                records.sink_kafka(name, config, Clone::clone)
            }
            other => Err(not_runnable(name, other)),
        }
    }
}

/// A changelog as upserts, as Flink's upsert-kafka writes it: an insert or an
/// update is the row under its key, a delete a tombstone. The row before an
/// update is a tombstone too, unless the update's new row comes right after it
/// under the same key (a filter after an aggregate may have dropped that new
/// row, and then the key's row is gone).
fn upserts(records: Vec<KafkaOutput>, kinds: &[RowKind]) -> Vec<KafkaOutput> {
    let mut upserts = Vec::with_capacity(records.len());
    let mut records = records.into_iter().zip(kinds).peekable();
    while let Some((record, kind)) = records.next() {
        match kind {
            RowKind::Insert | RowKind::UpdateAfter => upserts.push(record),
            RowKind::UpdateBefore
                if records.peek().is_some_and(|(next, next_kind)| {
                    **next_kind == RowKind::UpdateAfter && next.key == record.key
                }) => {}
            RowKind::UpdateBefore | RowKind::Delete => upserts.push(KafkaOutput {
                value: None,
                ..record
            }),
        }
    }
    upserts
}

/// What of `table`'s stored columns its source must make for the plan to read
/// `reads` of the table's columns: the stored columns and fields read as they
/// are, what computed columns read, and the event-time column.
fn stored_reads(table: &TableRuntime, reads: Reads) -> Reads {
    let mut reads = reads;
    if let Some((column, _)) = table.watermark {
        reads.whole.insert(column);
    }
    let Some(projection) = &table.projection else {
        return reads;
    };
    let mut stored = Reads::default();
    for (index, column) in projection.columns.iter().enumerate() {
        if !reads.reads_column(index) {
            continue;
        }
        match column
            .expr
            .downcast_ref::<datafusion::physical_expr::expressions::Column>()
        {
            Some(source) if !reads.whole.contains(&index) => {
                for (_, field) in reads.fields.iter().filter(|(c, _)| *c == index) {
                    stored.fields.insert((source.index(), field.clone()));
                }
            }
            _ => stored.add(&column.expr),
        }
    }
    stored
}

/// The changelog normalize `node` of the upsert rows `stream`, exchanged by
/// their PRIMARY KEY (see [`super::changelog_normalize`]).
fn changelog_normalize<'scope>(
    stream: DataStream<'scope, SqlBatch>,
    node: &ChangelogNormalize,
    state_ttl: Option<std::time::Duration>,
) -> Result<DataStream<'scope, SqlBatch>, BuildError> {
    let encoder = KeyEncoder::of_keys(&node.keys, &node.schema);
    let partitioning = stream.context().partitioning();
    let routed = stream.flat_map(move |batch: SqlBatch| {
        split_by_subtask(&batch, &encoder, |key| partitioning.subtask_of_key(key))
    });
    let logic = ChangelogNormalizeLogic::new(node).with_state_ttl(state_ttl);
    routed.keyed_by_subtask(&node.name, |routed: &Routed| routed.subtask, logic)
}

/// The error of a table whose connector cannot be read (or written) as it is
/// used (planning refuses such scripts first).
fn not_runnable(operator: &str, connector: &TableConnector) -> BuildError {
    not_runnable_because(
        operator,
        format!(
            "connector '{}' cannot be used here",
            super::connectors::connector_name(connector)
        ),
    )
}

fn not_runnable_because(operator: &str, why: String) -> BuildError {
    BuildError::Source {
        operator: operator.to_owned(),
        source: crate::exec::source::SourceBuildError::Source(crate::exec::SourceError(why)),
    }
}

fn table_runtime(table: &Table) -> SqlResult<TableRuntime> {
    let projection = match &table.read_plan {
        None => None,
        Some(datafusion::logical_expr::LogicalPlan::Projection(projection)) => {
            let props = ExecutionProps::new();
            let input: &DFSchema = projection.input.schema();
            let columns = projection
                .expr
                .iter()
                .map(|expr| {
                    physical_expr(expr, input, &props)
                        .map(|physical| Computed::new(physical, expr.to_string(), input.as_arrow()))
                        .map_err(|error| super::catalog::planning_error(error, table.definition.at))
                })
                .collect::<SqlResult<Vec<_>>>()?;
            Some(ReadProjection {
                columns,
                schema: Arc::clone(&table.schema),
            })
        }
        Some(_) => None,
    };
    let watermark = match &table.definition.watermark {
        Some(watermark) => {
            let column = table.schema.index_of(&watermark.column).map_err(|_| {
                SqlError::new(format!("no column {}", watermark.column), watermark.at)
            })?;
            let delay = watermark_delay(watermark).unwrap_or_default();
            Some((column, delay))
        }
        None => None,
    };
    Ok(TableRuntime {
        name: table.definition.name.clone(),
        connector: table.connector.clone(),
        stored: Arc::clone(&table.stored_schema),
        projection,
        watermark,
        scan_watermark: table.scan_watermark.clone(),
    })
}

/// Refuses a watermark alignment group shared by several tables the plan reads:
/// Strom aligns the subtasks of one table's source, not tables with each other.
fn check_alignment_groups(
    plan: &StreamPlan,
    tables: &HashMap<String, TableRuntime>,
) -> SqlResult<()> {
    let mut groups: HashMap<&str, &str> = HashMap::new();
    for node in &plan.nodes {
        let StreamNode::Source { table: name, .. } = node else {
            continue;
        };
        let Some(alignment) = &tables[name].scan_watermark.alignment else {
            continue;
        };
        match groups.insert(alignment.group.as_str(), name.as_str()) {
            Some(other) if other != name => {
                return Err(SqlError::new(
                    format!(
                        "tables {other} and {name} share the watermark alignment group '{}': Strom aligns the source subtasks of one table, not several tables with each other; give each table its own 'scan.watermark.alignment.group'",
                        alignment.group
                    ),
                    None,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Splits `batch` into one batch per subtask owning its rows' keys.
fn split_by_subtask(
    batch: &SqlBatch,
    encoder: &KeyEncoder,
    subtask_of: impl Fn(&[u8]) -> u32,
) -> Vec<Routed> {
    let keys = encoder.encode_all(&batch.0);
    // Rows by subtask, indexed by subtask.
    let mut rows: Vec<Vec<u32>> = Vec::new();
    for row in 0..keys.len() {
        let subtask = subtask_of(keys.get(row)) as usize;
        if subtask >= rows.len() {
            rows.resize_with(subtask + 1, Vec::new);
        }
        rows[subtask].push(row as u32);
    }
    let mut owners = rows
        .into_iter()
        .enumerate()
        .filter(|(_, indices)| !indices.is_empty());
    let Some(first) = owners.next() else {
        return Vec::new();
    };
    let Some(second) = owners.next() else {
        return vec![Routed {
            subtask: first.0 as u32,
            batch: batch.clone(),
        }];
    };
    [first, second]
        .into_iter()
        .chain(owners)
        .map(|(subtask, indices)| Routed {
            subtask: subtask as u32,
            batch: batch.take(&indices),
        })
        .collect()
}

/// Prints every row as Flink's print connector does: `+I[v1, v2]`, after
/// `identifier> ` when given.
fn print_sink(
    stream: DataStream<'_, SqlBatch>,
    identifier: Option<&str>,
    changelog: bool,
    output: &OutputFn,
) {
    let output = Arc::clone(output);
    let prefix = identifier.map(|id| format!("{id}> ")).unwrap_or_default();
    stream.sink(move |_epoch, batches| {
        for SqlBatch(batch) in batches {
            for line in format_changelog(&batch, changelog) {
                output(format!("{prefix}{line}"));
            }
        }
    });
}

/// The rows of `batch` as `kind[v1, v2, ...]`.
pub fn format_rows(batch: &RecordBatch, kind: &str) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<ArrayFormatter<'_>> = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).expect("columns format"))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            format!("{kind}[{}]", values.join(", "))
        })
        .collect()
}

/// The rows of `batch` as Flink prints them, each after its kind (`+I[...]`,
/// `-U[...]`, ...): the last column of a changelog's batches.
pub fn format_changelog(batch: &RecordBatch, changelog: bool) -> Vec<String> {
    if !changelog {
        return format_rows(batch, "+I");
    }
    let kinds = row_kinds(batch);
    let rows = batch
        .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
        .expect("the columns before the op column");
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<ArrayFormatter<'_>> = rows
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).expect("columns format"))
        .collect();
    kinds
        .iter()
        .enumerate()
        .map(|(row, kind)| {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            format!("{}[{}]", kind.short_string(), values.join(", "))
        })
        .collect()
}

/// Appends the rows of `batch` to `text` as JSON lines or CSV (no final newline).
fn encode_lines(format: TextFormat, batch: &RecordBatch, text: &mut String) {
    // As Kafka values are: explicit nulls, Flink's SQL form of timestamps.
    let rows = super::kafka_table::encode_text(format, batch);
    for (index, row) in rows.into_iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&row.unwrap_or_default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_nexmark_source_makes_only_the_fields_a_hop_count_over_bid_reads() {
        let script = format!(
            "{}\nCREATE TABLE out (auction BIGINT, c BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT auction, COUNT(*)
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
             GROUP BY auction, window_start, window_end;",
            super::super::nexmark::flink_ddl(&[("events.num", "10".to_owned())])
        );
        let job = crate::sql::compile(&script).unwrap_or_else(|error| panic!("{error}"));
        let reads = job.plan.reads_of(0).expect("only Calcs read the source");
        let stored = stored_reads(&job.tables["datagen"], reads);
        // event_type (0) for the view's filter; the dateTime of each event kind
        // (the computed dateTime, also the event time); the bid's auction.
        assert_eq!(stored.whole, [0].into());
        let fields: Vec<(usize, &str)> = stored
            .fields
            .iter()
            .map(|(c, f)| (*c, f.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (1, "dateTime"),
                (2, "dateTime"),
                (3, "auction"),
                (3, "dateTime")
            ]
        );
    }

    #[test]
    fn fields_read_through_a_passed_on_row_are_traced_and_a_shared_source_makes_what_any_query_reads()
     {
        let ddl = super::super::nexmark::flink_ddl(&[("events.num", "10".to_owned())]);
        let hop = "CREATE TABLE out (auction BIGINT, c BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT bid.auction, COUNT(*)
             FROM TABLE(HOP(TABLE datagen, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
             GROUP BY bid.auction, window_start, window_end;";
        let fields = |script: &str| {
            let job = crate::sql::compile(script).unwrap_or_else(|error| panic!("{error}"));
            let reads = job.plan.reads_of(0).expect("only Calcs read the source");
            let stored = stored_reads(&job.tables["datagen"], reads);
            stored
                .fields
                .iter()
                .filter(|(column, _)| *column == 3)
                .map(|(_, field)| field.clone())
                .collect::<Vec<_>>()
        };
        // The ROW passed through the window's Calc: only its fields read.
        assert_eq!(fields(&format!("{ddl}\n{hop}")), ["auction", "dateTime"]);
        // Shared with q0: what q0 reads too.
        let q0 = "CREATE TABLE q0 (auction BIGINT, bidder BIGINT, price BIGINT, `dateTime` TIMESTAMP(3), extra VARCHAR)
             WITH ('connector' = 'blackhole');
             INSERT INTO q0 SELECT auction, bidder, price, `dateTime`, extra FROM bid;";
        assert_eq!(
            fields(&format!("{ddl}\n{hop}\n{q0}")),
            ["auction", "bidder", "dateTime", "extra", "price"]
        );
    }

    /// A source's own `scan.watermark.*` options reach its event times; the
    /// script's idle timeout is the default.
    #[test]
    fn a_source_takes_its_tables_alignment_and_idle_timeout() {
        let tables = |a: &str, b: &str| {
            format!(
                "SET 'table.exec.source.idle-timeout' = '7 s';
                 CREATE TABLE a (ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
                 WITH ('connector' = 'datagen', 'number-of-rows' = '10'{a});
                 CREATE TABLE b (ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
                 WITH ('connector' = 'datagen', 'number-of-rows' = '10'{b});
                 CREATE TABLE out_a (ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');
                 CREATE TABLE out_b (ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');
                 EXECUTE STATEMENT SET BEGIN
                 INSERT INTO out_a SELECT ts FROM a;
                 INSERT INTO out_b SELECT ts FROM b;
                 END;"
            )
        };
        let group = |name: &str| {
            format!(
                ", 'scan.watermark.alignment.group' = '{name}', 'scan.watermark.alignment.max-drift' = '2 s'"
            )
        };
        let job = crate::sql::compile(&tables(
            &format!("{}, 'scan.watermark.idle-timeout' = '3 s'", group("g")),
            "",
        ))
        .unwrap_or_else(|error| panic!("{error}"));
        let times = |table: &str| job.event_times(&job.tables[table]).expect("a watermark");
        assert_eq!(times("a").max_drift, Some(Duration::from_secs(2)));
        assert_eq!(times("a").idle_timeout, Some(Duration::from_secs(3)));
        assert_eq!(times("b").max_drift, None);
        assert_eq!(times("b").idle_timeout, Some(Duration::from_secs(7)));
        // A table's zero turns the script's idle timeout off for it alone.
        let job = crate::sql::compile(&tables(", 'scan.watermark.idle-timeout' = '0'", ""))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            job.event_times(&job.tables["a"]).unwrap().idle_timeout,
            None
        );
        assert_eq!(
            job.event_times(&job.tables["b"]).unwrap().idle_timeout,
            Some(Duration::from_secs(7))
        );
        // Tables aligned with each other: refused, not run unaligned; groups of
        // their own run.
        crate::sql::compile(&tables(&group("g"), &group("h")))
            .unwrap_or_else(|error| panic!("{error}"));
        let error = match crate::sql::compile(&tables(&group("g"), &group("g"))) {
            Ok(_) => panic!("a group of two tables compiled"),
            Err(error) => error,
        };
        assert!(
            error
                .message
                .contains("tables a and b share the watermark alignment group 'g'")
                || error
                    .message
                    .contains("tables b and a share the watermark alignment group 'g'"),
            "{error}"
        );
    }

    #[test]
    fn a_changelog_upserts_and_retracted_rows_without_a_new_one_are_tombstones() {
        let record = |key: &str, value: &str| KafkaOutput {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            partition: None,
        };
        let records = vec![
            record("a", "a1"),
            record("a", "a1"),
            record("a", "a2"),
            record("b", "b1"),
            record("c", "c1"),
        ];
        let kinds = [
            RowKind::Insert,
            RowKind::UpdateBefore,
            RowKind::UpdateAfter,
            RowKind::UpdateBefore,
            RowKind::Delete,
        ];
        let written: Vec<(String, Option<String>)> = upserts(records, &kinds)
            .into_iter()
            .map(|record| {
                (
                    String::from_utf8(record.key.unwrap()).unwrap(),
                    record.value.map(|value| String::from_utf8(value).unwrap()),
                )
            })
            .collect();
        let some = |text: &str| Some(text.to_owned());
        assert_eq!(
            written,
            [
                ("a".to_owned(), some("a1")),
                ("a".to_owned(), some("a2")),
                ("b".to_owned(), None),
                ("c".to_owned(), None),
            ]
        );
    }
}
