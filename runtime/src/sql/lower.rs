//! Lowering logical plans to a graph of streaming operators: sources, calcs
//! (filter + projection as DataFusion physical expressions), unions, window
//! aggregates and sinks. `strom explain` prints this graph.
//!
//! Window table functions: the rows of `TABLE(TUMBLE(...))` carry
//! `window_start`, `window_end` and `window_time` as placeholders holding the
//! row's event time until a `GROUP BY window_start, window_end, ...` turns them
//! into a window aggregate, which assigns each row to its slice itself (so a HOP
//! never copies a row into each of its windows). Between the two, those columns
//! may only be passed along.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::execution::context::ExecutionProps;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;

use super::narrow::Narrow;
use super::physical::{physical_expr, rewrite_immutable_functions};

use super::catalog::{Catalog, Job, planning_error};
use super::changelog_normalize::{ChangelogNormalize, can_keep_rows};
use super::connectors::{TableConnector, connector_name, watermark_delay};
use super::error::{Position, SqlError, SqlResult};
use super::group_aggregate::GroupAggregate;
use super::script::ColumnDefinition;
use super::window_tvf::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowAssign, WindowSpec};

/// An operator's index in the [`StreamPlan`].
pub type NodeId = usize;

/// A computed column: a physical expression and its text for `explain`.
#[derive(Debug, Clone)]
pub struct Computed {
    /// The expression, over the operator's input.
    pub expr: Arc<dyn PhysicalExpr>,
    /// How `explain` shows it.
    pub text: String,
    /// The expression evaluated on only the columns and fields it reads.
    narrow: Option<Narrow>,
}

impl Computed {
    /// `expr` over batches of `input`, shown as `text`.
    pub fn new(expr: Arc<dyn PhysicalExpr>, text: impl Into<String>, input: &Schema) -> Self {
        Self {
            narrow: Narrow::of(&expr, input),
            expr,
            text: text.into(),
        }
    }

    /// The value for each row of `batch`; the error names the expression.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, String> {
        match &self.narrow {
            Some(narrow) => narrow.evaluate(batch),
            None => self
                .expr
                .evaluate(batch)
                .and_then(|value| value.into_array(batch.num_rows())),
        }
        .map_err(|error| format!("evaluating {}: {error}", self.text))
    }
}

/// An aggregate of a window aggregate.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    /// DataFusion's aggregate function, with its arguments over the input.
    pub function: Arc<AggregateFunctionExpr>,
    /// `FILTER (WHERE ...)`, over the input.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// Where a window aggregate's output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupColumn {
    /// The window's start.
    WindowStart,
    /// The window's end.
    WindowEnd,
    /// The window's time attribute (its end less 1 ms).
    WindowTime,
    /// The key column at this index.
    Key(usize),
}

/// A window aggregate: rows keyed by `keys`, aggregated per window.
#[derive(Debug, Clone)]
pub struct WindowAggregate {
    /// The input.
    pub input: NodeId,
    /// The windows.
    pub spec: WindowSpec,
    /// The input column holding each row's event time.
    pub time_column: usize,
    /// The grouping keys besides the window.
    pub keys: Vec<Computed>,
    /// The group columns of the output, in order.
    pub group_columns: Vec<GroupColumn>,
    /// The aggregates, after the group columns.
    pub aggregates: Vec<AggregateCall>,
    /// The output's schema.
    pub schema: SchemaRef,
    /// The operator's name: its state is kept under it.
    pub name: String,
}

/// An operator of the streaming plan.
#[derive(Debug, Clone)]
pub enum StreamNode {
    /// Reads a table.
    Source {
        /// The table.
        table: String,
        /// Its columns (computed ones too).
        schema: SchemaRef,
        /// Whether it reads upserts (`upsert-kafka`): its batches carry the op
        /// column, `+U` for a value and `-D` for a tombstone, and a
        /// [`StreamNode::ChangelogNormalize`] reads them.
        upserts: bool,
    },
    /// Turns an upsert source's rows into a changelog by the table's PRIMARY
    /// KEY, keeping each key's last row.
    ChangelogNormalize(ChangelogNormalize),
    /// Filters rows and computes columns.
    Calc {
        /// The input.
        input: NodeId,
        /// Rows pass where this is true.
        filter: Option<Computed>,
        /// The output columns.
        columns: Vec<Computed>,
        /// The output's schema.
        schema: SchemaRef,
    },
    /// The rows of every input.
    Union {
        /// The inputs.
        inputs: Vec<NodeId>,
        /// The schema they share.
        schema: SchemaRef,
    },
    /// Aggregates per key and window.
    WindowAggregate(WindowAggregate),
    /// Aggregates per key, updating its results (a changelog).
    GroupAggregate(GroupAggregate),
    /// Writes rows to a table (or prints them).
    Sink {
        /// The input.
        input: NodeId,
        /// The table written; `None` prints a query's rows.
        table: Option<String>,
        /// The operator's name.
        name: String,
    },
}

/// Which columns of a batch, and which fields of its `ROW` columns, are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Columns read whole.
    pub whole: std::collections::BTreeSet<usize>,
    /// Fields read of `ROW` columns, by column.
    pub fields: std::collections::BTreeSet<(usize, String)>,
}

impl Reads {
    /// Adds what `expr` reads.
    pub fn add(&mut self, expr: &Arc<dyn PhysicalExpr>) {
        for access in super::narrow::accesses(expr) {
            match super::narrow::access_path(&access) {
                Some((column, Some(field))) => {
                    self.fields.insert((column, field));
                }
                Some((column, None)) => {
                    self.whole.insert(column);
                }
                // Not a path this knows: every column under it, whole.
                None => {
                    let _ = access.apply(|node| {
                        if let Some(column) =
                            node.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                        {
                            self.whole.insert(column.index());
                        }
                        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
                    });
                }
            }
        }
    }

    /// Adds what an aggregate's keys, arguments and filters read.
    fn add_aggregate(&mut self, keys: &[Computed], aggregates: &[AggregateCall]) {
        for key in keys {
            self.add(&key.expr);
        }
        for call in aggregates {
            let expressions = call.function.all_expressions();
            for argument in expressions.args.iter().chain(&expressions.order_by_exprs) {
                self.add(argument);
            }
            if let Some(filter) = &call.filter {
                self.add(filter);
            }
        }
    }

    /// Whether column `column` is read at all.
    pub fn reads_column(&self, column: usize) -> bool {
        self.whole.contains(&column) || self.fields.iter().any(|(c, _)| *c == column)
    }

    /// Whether field `field` of column `column` is read.
    pub fn reads_field(&self, column: usize, field: &str) -> bool {
        self.whole.contains(&column) || self.fields.contains(&(column, field.to_owned()))
    }
}

/// The streaming operators of a script's INSERTs and queries, sources shared.
#[derive(Debug, Clone, Default)]
pub struct StreamPlan {
    /// The operators; an operator's inputs come before it.
    pub nodes: Vec<StreamNode>,
}

impl StreamPlan {
    /// The output schema of `node`.
    pub fn schema(&self, node: NodeId) -> SchemaRef {
        match &self.nodes[node] {
            StreamNode::Source { schema, .. }
            | StreamNode::Calc { schema, .. }
            | StreamNode::Union { schema, .. } => Arc::clone(schema),
            StreamNode::WindowAggregate(aggregate) => Arc::clone(&aggregate.schema),
            StreamNode::GroupAggregate(aggregate) => Arc::clone(&aggregate.schema),
            StreamNode::ChangelogNormalize(normalize) => Arc::clone(&normalize.schema),
            StreamNode::Sink { input, .. } => self.schema(*input),
        }
    }

    /// The columns and `ROW` fields of `node`'s output that its consumers use
    /// (see [`Reads`]): what Calcs and aggregates read, a Calc's columns counted
    /// only where what follows uses them; `None` when some consumer takes whole
    /// rows (a sink, a union, a normalize).
    pub fn reads_of(&self, node: NodeId) -> Option<Reads> {
        let mut reads = Reads::default();
        for (id, consumer) in self.nodes.iter().enumerate() {
            match consumer {
                StreamNode::Source { .. } => {}
                StreamNode::Calc {
                    input,
                    filter,
                    columns,
                    ..
                } => {
                    if *input != node {
                        continue;
                    }
                    let used = self.reads_of(id);
                    if let Some(filter) = filter {
                        reads.add(&filter.expr);
                    }
                    for (index, column) in columns.iter().enumerate() {
                        let passed = column
                            .expr
                            .downcast_ref::<datafusion::physical_expr::expressions::Column>();
                        match (&used, passed) {
                            // A column passed on of which only some fields are
                            // used: those fields of its input column.
                            (Some(used), Some(passed)) if !used.whole.contains(&index) => {
                                for (_, field) in used.fields.iter().filter(|(c, _)| *c == index) {
                                    reads.fields.insert((passed.index(), field.clone()));
                                }
                            }
                            (Some(used), _) if !used.reads_column(index) => {}
                            _ => reads.add(&column.expr),
                        }
                    }
                }
                StreamNode::WindowAggregate(aggregate) => {
                    if aggregate.input != node {
                        continue;
                    }
                    reads.whole.insert(aggregate.time_column);
                    reads.add_aggregate(&aggregate.keys, &aggregate.aggregates);
                }
                StreamNode::GroupAggregate(aggregate) => {
                    if aggregate.input != node {
                        continue;
                    }
                    reads.add_aggregate(&aggregate.keys, &aggregate.aggregates);
                }
                StreamNode::Union { inputs, .. } => {
                    if inputs.contains(&node) {
                        return None;
                    }
                }
                StreamNode::ChangelogNormalize(ChangelogNormalize { input, .. })
                | StreamNode::Sink { input, .. } => {
                    if *input == node {
                        return None;
                    }
                }
            }
        }
        Some(reads)
    }

    /// Whether the batches of `node` are a changelog: they carry the op column
    /// ([`OP_COLUMN`](super::batch::OP_COLUMN)) after the schema's columns.
    pub fn is_changelog(&self, node: NodeId) -> bool {
        match &self.nodes[node] {
            StreamNode::Source { upserts, .. } => *upserts,
            StreamNode::WindowAggregate(_) => false,
            StreamNode::ChangelogNormalize(_) => true,
            StreamNode::Calc { input, .. } | StreamNode::Sink { input, .. } => {
                self.is_changelog(*input)
            }
            StreamNode::Union { inputs, .. } => inputs.iter().any(|i| self.is_changelog(*i)),
            StreamNode::GroupAggregate(aggregate) => aggregate.updates(),
        }
    }
}

impl fmt::Display for StreamPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = |schema: &SchemaRef| {
            schema
                .fields()
                .iter()
                .map(|field| field.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (id, node) in self.nodes.iter().enumerate() {
            let mut line = format!("#{id} ");
            match node {
                StreamNode::Source {
                    table,
                    schema,
                    upserts,
                } => {
                    write!(line, "Source {table} [{}]", columns(schema))?;
                    if *upserts {
                        write!(line, " reads upserts (+U) and tombstones (-D)")?;
                    }
                }
                StreamNode::ChangelogNormalize(normalize) => {
                    let keys: Vec<&str> = normalize.keys.iter().map(|k| k.text.as_str()).collect();
                    write!(
                        line,
                        "ChangelogNormalize {} <- #{} exchange by key [{}] emits updates (+I, -U, +U, -D) state: last row per key in memory, changed keys in RocksDB at checkpoints",
                        normalize.name,
                        normalize.input,
                        keys.join(", ")
                    )?;
                }
                StreamNode::Calc {
                    input,
                    filter,
                    columns,
                    ..
                } => {
                    write!(line, "Calc <- #{input}")?;
                    if let Some(filter) = filter {
                        write!(line, " where {}", filter.text)?;
                    }
                    let texts: Vec<&str> = columns.iter().map(|c| c.text.as_str()).collect();
                    write!(line, " select [{}]", texts.join(", "))?;
                }
                StreamNode::Union { inputs, .. } => {
                    let inputs: Vec<String> = inputs.iter().map(|i| format!("#{i}")).collect();
                    write!(line, "Union <- {}", inputs.join(", "))?;
                }
                StreamNode::WindowAggregate(aggregate) => {
                    let keys: Vec<&str> = aggregate.keys.iter().map(|k| k.text.as_str()).collect();
                    let aggregates: Vec<String> = aggregate
                        .aggregates
                        .iter()
                        .map(|a| a.function.name().to_owned())
                        .collect();
                    write!(
                        line,
                        "WindowAggregate {} <- #{} exchange by key [{}] window {} aggregates [{}] state: {} per key in memory, in RocksDB at checkpoints",
                        aggregate.name,
                        aggregate.input,
                        keys.join(", "),
                        aggregate.spec,
                        aggregates.join(", "),
                        if matches!(aggregate.spec, WindowSpec::Session { .. }) {
                            "open sessions"
                        } else {
                            "open slices"
                        }
                    )?;
                }
                StreamNode::GroupAggregate(aggregate) => {
                    let keys: Vec<&str> = aggregate.keys.iter().map(|k| k.text.as_str()).collect();
                    let aggregates: Vec<String> = aggregate
                        .aggregates
                        .iter()
                        .map(|a| a.function.name().to_owned())
                        .collect();
                    write!(
                        line,
                        "GroupAggregate {} <- #{} exchange by key [{}] aggregates [{}] {} state: per key in memory, changed keys in RocksDB at checkpoints",
                        aggregate.name,
                        aggregate.input,
                        keys.join(", "),
                        aggregates.join(", "),
                        if aggregate.updates() {
                            "emits updates (+I, -U, +U)"
                        } else {
                            "emits each key once (+I)"
                        }
                    )?;
                }
                StreamNode::Sink { input, table, name } => match table {
                    Some(table) => write!(line, "Sink {name} into {table} <- #{input}")?,
                    None => write!(line, "Sink {name} (print) <- #{input}")?,
                },
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// What a lowered logical plan is: its operator, schema, and where its window
/// placeholders and event time are.
#[derive(Clone)]
struct Lowered {
    node: NodeId,
    schema: DFSchemaRef,
    window: Option<WindowColumns>,
    /// The column holding the event time the watermarks are about.
    rowtime: Option<usize>,
    /// The operator whose output updates rows it emitted (the stream is a
    /// changelog), as errors name it.
    updates: Option<String>,
    /// The columns a changelog's updates are keyed by (a GROUP BY's keys), where
    /// still known: an upsert sink's PRIMARY KEY must be them.
    upsert_key: Option<Vec<usize>>,
}

#[derive(Clone, Copy)]
struct WindowColumns {
    spec: WindowSpec,
    start: Option<usize>,
    end: Option<usize>,
    time: Option<usize>,
}

impl WindowColumns {
    fn role(&self, index: usize) -> Option<GroupColumn> {
        if self.start == Some(index) {
            Some(GroupColumn::WindowStart)
        } else if self.end == Some(index) {
            Some(GroupColumn::WindowEnd)
        } else if self.time == Some(index) {
            Some(GroupColumn::WindowTime)
        } else {
            None
        }
    }

    /// Any placeholder column, which holds the row's event time.
    fn any(&self) -> Option<usize> {
        self.start.or(self.end).or(self.time)
    }
}

/// Lowers every job of a script into one streaming plan.
pub fn lower(catalog: &Catalog, jobs: &[Job]) -> SqlResult<StreamPlan> {
    let mut lowering = Lowering {
        catalog,
        plan: StreamPlan::default(),
        props: ExecutionProps::new(),
        at: None,
        names: 0,
    };
    if jobs.is_empty() {
        return Err(SqlError::new(
            "the script has no INSERT INTO or query: nothing to run",
            None,
        ));
    }
    for job in jobs {
        match job {
            Job::Insert {
                table,
                columns,
                query,
                at,
            } => {
                lowering.at = *at;
                let plan = catalog.plan_query(query, *at)?;
                refuse_subqueries_in_expressions(&plan, *at)?;
                let lowered = lowering.lower(&plan)?;
                lowering.sink(lowered, table, columns)?;
            }
            Job::Print { query, at } => {
                lowering.at = *at;
                let plan = catalog.plan_query(query, *at)?;
                refuse_subqueries_in_expressions(&plan, *at)?;
                let lowered = lowering.lower(&plan)?;
                let lowered = lowering.materialize(lowered)?;
                let name = format!("print-{}", lowering.plan.nodes.len());
                lowering.plan.nodes.push(StreamNode::Sink {
                    input: lowered.node,
                    table: None,
                    name,
                });
            }
        }
    }
    Ok(lowering.plan)
}

struct Lowering<'a> {
    catalog: &'a Catalog,
    plan: StreamPlan,
    props: ExecutionProps,
    at: Option<Position>,
    names: usize,
}

impl Lowering<'_> {
    fn error(&self, message: impl Into<String>) -> SqlError {
        SqlError::new(message, self.at)
    }

    fn add(&mut self, node: StreamNode) -> NodeId {
        self.plan.nodes.push(node);
        self.plan.nodes.len() - 1
    }

    /// `node`, when it is a filter that passes its input through unchanged and
    /// is read by nothing yet: a projection over it can be its columns.
    fn filter_to_extend(&mut self, node: NodeId) -> Option<&mut StreamNode> {
        let read = self.plan.nodes.iter().any(|other| match other {
            StreamNode::Source { .. } => false,
            StreamNode::Calc { input, .. } | StreamNode::Sink { input, .. } => *input == node,
            StreamNode::Union { inputs, .. } => inputs.contains(&node),
            StreamNode::WindowAggregate(aggregate) => aggregate.input == node,
            StreamNode::GroupAggregate(aggregate) => aggregate.input == node,
            StreamNode::ChangelogNormalize(normalize) => normalize.input == node,
        });
        let candidate = self.plan.nodes.get_mut(node)?;
        let StreamNode::Calc {
            filter: Some(_),
            columns,
            ..
        } = candidate
        else {
            return None;
        };
        let passes_through = columns.iter().enumerate().all(|(index, column)| {
            column
                .expr
                .downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .is_some_and(|c| c.index() == index)
        });
        (passes_through && !read).then_some(candidate)
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> SqlResult<Computed> {
        let physical = physical_expr(expr, schema, &self.props)
            .map_err(|error| planning_error(error, self.at))?;
        // `a + 1 AS b`: what is computed, and the name it gets.
        let text = match expr {
            Expr::Alias(alias) if alias.expr.schema_name().to_string() != alias.name => {
                format!("{} AS {}", alias.expr.human_display(), alias.name)
            }
            _ => expr.human_display().to_string(),
        };
        Ok(Computed::new(physical, text, schema.as_arrow()))
    }

    fn lower(&mut self, plan: &LogicalPlan) -> SqlResult<Lowered> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table().to_owned();
                let table = self
                    .catalog
                    .table(&name)
                    .ok_or_else(|| self.error(format!("no table {name}")))?;
                if !table.connector.is_source() {
                    return Err(self.error(format!(
                        "table {name} (connector '{}') cannot be read: it is a sink only",
                        connector_name(&table.connector)
                    )));
                }
                let node = match self.plan.nodes.iter().position(
                    |node| matches!(node, StreamNode::Source { table: t, .. } if *t == name),
                ) {
                    Some(existing) => existing,
                    None => self.add(StreamNode::Source {
                        table: name.clone(),
                        schema: Arc::clone(&table.schema),
                        upserts: matches!(table.connector, TableConnector::UpsertKafka(_)),
                    }),
                };
                let rowtime = table.definition.watermark.as_ref().and_then(|watermark| {
                    watermark_delay(watermark)?;
                    table.schema.index_of(&watermark.column).ok()
                });
                let full =
                    DFSchema::try_from_qualified_schema(scan.table_name.clone(), &table.schema)
                        .map_err(|error| planning_error(error, self.at))?;
                let lowered = Lowered {
                    node,
                    schema: Arc::new(full),
                    window: None,
                    rowtime,
                    updates: None,
                    upsert_key: None,
                };
                let lowered = match &table.connector {
                    TableConnector::UpsertKafka(_) => self.normalize(lowered, table)?,
                    _ => lowered,
                };
                match &scan.projection {
                    None => Ok(lowered),
                    Some(indices) => {
                        let exprs: Vec<Expr> = indices
                            .iter()
                            .map(|&i| Expr::Column(lowered.schema.columns()[i].clone()))
                            .collect();
                        self.project(lowered, &exprs, Arc::clone(&scan.projected_schema))
                    }
                }
            }
            LogicalPlan::Projection(projection) => {
                let input = self.lower(&projection.input)?;
                self.project(input, &projection.expr, Arc::clone(&projection.schema))
            }
            LogicalPlan::Filter(filter) => {
                let input = self.lower(&filter.input)?;
                if let Some(window) = input.window {
                    let used = filter.predicate.column_refs();
                    if used.iter().any(|column| {
                        input
                            .schema
                            .index_of_column(column)
                            .is_ok_and(|i| window.role(i).is_some())
                    }) {
                        return Err(self.error(format!(
                            "a filter on {WINDOW_START}, {WINDOW_END} or {WINDOW_TIME} before the window's GROUP BY is not supported: {}",
                            filter.predicate
                        )));
                    }
                }
                let predicate = self.physical(&filter.predicate, &input.schema)?;
                let columns = identity(&input.schema);
                let schema = Arc::new(input.schema.as_arrow().clone());
                let node = self.add(StreamNode::Calc {
                    input: input.node,
                    filter: Some(predicate),
                    columns,
                    schema,
                });
                Ok(Lowered { node, ..input })
            }
            LogicalPlan::SubqueryAlias(alias) => {
                let input = self.lower(&alias.input)?;
                Ok(Lowered {
                    schema: Arc::clone(&alias.schema),
                    ..input
                })
            }
            LogicalPlan::Union(union) => {
                let mut inputs = Vec::new();
                let mut rowtimes = Vec::new();
                let mut updates = Vec::new();
                for input in &union.inputs {
                    let lowered = self.lower(input)?;
                    let lowered = self.materialize(lowered)?;
                    rowtimes.push(lowered.rowtime);
                    inputs.push(lowered.node);
                    updates.push(lowered.updates);
                }
                if updates.iter().any(Option::is_some) && updates.iter().any(Option::is_none) {
                    return Err(self.error(
                        "UNION ALL of an updating query and an insert-only one is not supported yet",
                    ));
                }
                let schema = Arc::new(union.schema.as_arrow().clone());
                let node = self.add(StreamNode::Union { inputs, schema });
                let rowtime = rowtimes
                    .windows(2)
                    .all(|pair| pair[0] == pair[1])
                    .then(|| rowtimes.first().copied().flatten())
                    .flatten();
                Ok(Lowered {
                    node,
                    schema: Arc::clone(&union.schema),
                    window: None,
                    rowtime,
                    updates: updates.into_iter().flatten().next(),
                    upsert_key: None,
                })
            }
            LogicalPlan::Extension(extension) => {
                let Some(assign) = extension.node.as_any().downcast_ref::<WindowAssign>() else {
                    return Err(
                        self.error(format!("unsupported operator {}", extension.node.name()))
                    );
                };
                self.window_assign(assign, extension.node.schema())
            }
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.lower(&aggregate.input)?;
                if let Some(producer) = &input.updates {
                    return Err(self.error(format!(
                        "aggregating the updates of {producer} is not supported yet"
                    )));
                }
                super::window_tvf::check_partition_keys(aggregate)
                    .map_err(|(message, at)| SqlError::new(message, at.or(self.at)))?;
                match input.window {
                    Some(window) => self.window_aggregate(input, window, aggregate),
                    None => {
                        let keys = aggregate.group_expr.clone();
                        self.group_aggregate(input, &keys, &aggregate.aggr_expr, &aggregate.schema)
                    }
                }
            }
            LogicalPlan::Distinct(Distinct::All(distinct)) => {
                let input = self.lower(distinct)?;
                let input = self.materialize(input)?;
                if let Some(producer) = &input.updates {
                    return Err(self.error(format!(
                        "SELECT DISTINCT over the updates of {producer} is not supported yet"
                    )));
                }
                let keys: Vec<Expr> = input
                    .schema
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let schema = Arc::clone(&input.schema);
                self.group_aggregate(input, &keys, &[], &schema)
            }
            LogicalPlan::Distinct(Distinct::On(_)) => {
                Err(self.error("DISTINCT ON is not supported"))
            }
            LogicalPlan::Join(_) => Err(self.error("joins are not supported yet")),
            LogicalPlan::Sort(_) => {
                Err(self
                    .error("ORDER BY is not supported on a stream (it has no end to sort up to)"))
            }
            LogicalPlan::Limit(_) => Err(self.error("LIMIT is not supported on a stream")),
            LogicalPlan::Window(_) => Err(self.error("OVER windows are not supported yet")),
            other => Err(self.error(format!(
                "unsupported in a streaming query: {}",
                other.display()
            ))),
        }
    }

    /// A projection over `input`, keeping track of window placeholders and the
    /// event time where they are passed along unchanged.
    fn project(
        &mut self,
        input: Lowered,
        exprs: &[Expr],
        schema: DFSchemaRef,
    ) -> SqlResult<Lowered> {
        let mut window = input.window.map(|w| WindowColumns {
            start: None,
            end: None,
            time: None,
            ..w
        });
        let mut rowtime = None;
        let mut columns = Vec::new();
        for (index, expr) in exprs.iter().enumerate() {
            let bare = match expr.clone().unalias() {
                Expr::Column(column) => input.schema.index_of_column(&column).ok(),
                _ => None,
            };
            if let Some(source) = bare {
                if input.rowtime == Some(source) && rowtime.is_none() {
                    rowtime = Some(index);
                }
                if let (Some(old), Some(new)) = (input.window, window.as_mut()) {
                    match old.role(source) {
                        Some(GroupColumn::WindowStart) => new.start = Some(index),
                        Some(GroupColumn::WindowEnd) => new.end = Some(index),
                        Some(GroupColumn::WindowTime) => new.time = Some(index),
                        _ => {}
                    }
                }
            } else if let Some(old) = input.window {
                let uses_window = expr.column_refs().iter().any(|column| {
                    input
                        .schema
                        .index_of_column(column)
                        .is_ok_and(|i| old.role(i).is_some())
                });
                if uses_window {
                    return Err(self.error(format!(
                        "{expr}: {WINDOW_START}, {WINDOW_END} and {WINDOW_TIME} can only be selected as they are before the window's GROUP BY"
                    )));
                }
            }
            columns.push(self.physical(expr, &input.schema)?);
        }
        let arrow_schema = Arc::new(schema.as_arrow().clone());
        let node = match self.filter_to_extend(input.node) {
            // The filter passes its input as it is, so the columns are over the
            // filter's input too: one operator filters and projects.
            Some(StreamNode::Calc {
                columns: passed,
                schema: passed_schema,
                ..
            }) => {
                *passed = columns;
                *passed_schema = arrow_schema;
                input.node
            }
            _ => self.add(StreamNode::Calc {
                input: input.node,
                filter: None,
                columns,
                schema: arrow_schema,
            }),
        };
        Ok(Lowered {
            node,
            schema,
            window: window.filter(|w| w.any().is_some()),
            rowtime,
            updates: input.updates,
            upsert_key: input.upsert_key.as_ref().and_then(|key| {
                key.iter()
                    .map(|column| key_column_after(exprs, &input.schema, *column))
                    .collect()
            }),
        })
    }

    fn window_assign(&mut self, assign: &WindowAssign, schema: &DFSchemaRef) -> SqlResult<Lowered> {
        let input = self.lower(&assign.input)?;
        if let Some(producer) = &input.updates {
            return Err(self.error(format!(
                "a window table function over the updates of {producer} is not supported"
            )));
        }
        if input.rowtime != Some(assign.time_column) {
            let name = input.schema.field(assign.time_column).name().clone();
            return Err(self.error(format!(
                "DESCRIPTOR({name}): a window's time column must be an event-time attribute, the column of its table's WATERMARK FOR"
            )));
        }
        let mut columns = identity(&input.schema);
        let time = datafusion::physical_expr::expressions::col(
            input.schema.field(assign.time_column).name(),
            input.schema.as_arrow(),
        )
        .map_err(|error| planning_error(error, self.at))?;
        let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
        let placeholder =
            datafusion::physical_expr::expressions::cast(time, input.schema.as_arrow(), millis)
                .map_err(|error| planning_error(error, self.at))?;
        let width = input.schema.fields().len();
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            columns.push(Computed::new(
                Arc::clone(&placeholder),
                format!("{name} (event time until grouped)"),
                input.schema.as_arrow(),
            ));
        }
        let node = self.add(StreamNode::Calc {
            input: input.node,
            filter: None,
            columns,
            schema: Arc::new(schema.as_arrow().clone()),
        });
        Ok(Lowered {
            node,
            schema: Arc::clone(schema),
            window: Some(WindowColumns {
                spec: assign.spec,
                start: Some(width),
                end: Some(width + 1),
                time: Some(width + 2),
            }),
            rowtime: input.rowtime,
            updates: None,
            upsert_key: None,
        })
    }

    fn window_aggregate(
        &mut self,
        input: Lowered,
        window: WindowColumns,
        aggregate: &datafusion::logical_expr::Aggregate,
    ) -> SqlResult<Lowered> {
        let mut keys = Vec::new();
        let mut group_columns = Vec::new();
        for expr in &aggregate.group_expr {
            let role = match expr.clone().unalias() {
                Expr::Column(column) => input
                    .schema
                    .index_of_column(&column)
                    .ok()
                    .and_then(|i| window.role(i)),
                Expr::GroupingSet(_) => {
                    return Err(self.error("GROUPING SETS, ROLLUP and CUBE are not supported yet"));
                }
                _ => None,
            };
            match role {
                Some(role) => group_columns.push(role),
                None => {
                    group_columns.push(GroupColumn::Key(keys.len()));
                    keys.push(self.physical(expr, &input.schema)?);
                }
            }
        }
        if !group_columns.contains(&GroupColumn::WindowStart)
            || !group_columns.contains(&GroupColumn::WindowEnd)
        {
            return Err(self.error(format!(
                "a GROUP BY over a window table function must group by both {WINDOW_START} and {WINDOW_END}"
            )));
        }
        let time_column = window.any().expect("a window has a placeholder column");
        let aggregates = self.aggregate_calls(&input, &aggregate.aggr_expr)?;
        // The window columns are TIMESTAMP(3), never null (Flink's types).
        let fields: Vec<Arc<Field>> = aggregate
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| match group_columns.get(i) {
                Some(
                    GroupColumn::WindowStart | GroupColumn::WindowEnd | GroupColumn::WindowTime,
                ) => Arc::new(field.as_ref().clone().with_nullable(false)),
                _ => Arc::clone(field),
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        self.names += 1;
        let name = format!("window-aggregate-{}", self.names);
        let window_time_index = group_columns
            .iter()
            .position(|column| *column == GroupColumn::WindowTime);
        let node = self.add(StreamNode::WindowAggregate(WindowAggregate {
            input: input.node,
            spec: window.spec,
            time_column,
            keys,
            group_columns,
            aggregates,
            schema,
            name,
        }));
        Ok(Lowered {
            node,
            schema: Arc::clone(&aggregate.schema),
            window: None,
            rowtime: window_time_index,
            updates: None,
            upsert_key: None,
        })
    }

    /// `GROUP BY keys` computing `aggregates` over `input`, without a window: an
    /// updating aggregate (see [`GroupAggregate`]).
    fn group_aggregate(
        &mut self,
        input: Lowered,
        group_exprs: &[Expr],
        aggregate_exprs: &[Expr],
        schema: &DFSchemaRef,
    ) -> SqlResult<Lowered> {
        let mut keys = Vec::new();
        for expr in group_exprs {
            if matches!(expr, Expr::GroupingSet(_)) {
                return Err(self.error("GROUPING SETS, ROLLUP and CUBE are not supported yet"));
            }
            keys.push(self.physical(expr, &input.schema)?);
        }
        let aggregates = self.aggregate_calls(&input, aggregate_exprs)?;
        self.names += 1;
        let name = format!("group-aggregate-{}", self.names);
        let keys_text: Vec<String> = keys.iter().map(|key| key.text.clone()).collect();
        let updates = (!aggregates.is_empty()).then(|| {
            format!(
                "GroupAggregate {name} (GROUP BY {} without a window)",
                keys_text.join(", ")
            )
        });
        let node = self.add(StreamNode::GroupAggregate(GroupAggregate {
            input: input.node,
            keys,
            aggregates,
            schema: Arc::new(schema.as_arrow().clone()),
            name,
        }));
        let upsert_key = updates.is_some().then(|| (0..group_exprs.len()).collect());
        Ok(Lowered {
            node,
            schema: Arc::clone(schema),
            window: None,
            rowtime: None,
            updates,
            upsert_key,
        })
    }

    /// The aggregates of `exprs` over `input`, as DataFusion makes them physical,
    /// each checked to build the accumulators its operator will make (see
    /// [`check_accumulators`]).
    fn aggregate_calls(&self, input: &Lowered, exprs: &[Expr]) -> SqlResult<Vec<AggregateCall>> {
        let physical_input = input.schema.as_arrow();
        let planning = PhysicalPlanningContext::default();
        let mut aggregates = Vec::new();
        for expr in exprs {
            let rewritten = rewrite_immutable_functions(expr.clone(), &input.schema)
                .map_err(|error| planning_error(error, self.at))?;
            // `COUNT(DISTINCT a, b)` is counted as the distinct values of one
            // struct, under the name the query gave it.
            let (rewritten, name) = match count_distinct_of_one_value(&rewritten) {
                Some(one_value) => (one_value, Some(expr.schema_name().to_string())),
                None => (rewritten, None),
            };
            let mut builder = LoweredAggregateBuilder::new(
                &rewritten,
                &input.schema,
                physical_input,
                &self.props,
                &planning,
            );
            if let Some(name) = name {
                builder = builder.with_name(name);
            }
            let lowered = builder
                .build()
                .map_err(|error| planning_error(error, self.at))?;
            if !lowered.order_bys.is_empty() {
                return Err(self.error(format!(
                    "{expr}: aggregates with ORDER BY are not supported"
                )));
            }
            check_accumulators(&lowered.aggregate)
                .map_err(|error| self.error(format!("{expr}: {error}")))?;
            aggregates.push(AggregateCall {
                function: lowered.aggregate,
                filter: lowered.filter,
            });
        }
        Ok(aggregates)
    }

    /// The changelog of the upsert source `source` of `table`: a changelog
    /// normalize keyed by the table's PRIMARY KEY, shared by every query of
    /// the table as its source is. Its updates are keyed by the PRIMARY KEY, so
    /// an upsert sink of the same key takes them.
    fn normalize(&mut self, source: Lowered, table: &super::catalog::Table) -> SqlResult<Lowered> {
        let name = &table.definition.name;
        if !can_keep_rows(&table.schema) {
            return Err(self.error(format!(
                "table {name}: connector 'upsert-kafka' keeps each key's last row, and a column's type cannot be kept yet: {}",
                table
                    .schema
                    .fields()
                    .iter()
                    .map(|field| format!("{} {}", field.name(), field.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut key = Vec::new();
        for column in &table.definition.primary_key {
            let index = table.schema.index_of(column).map_err(|_| {
                self.error(format!(
                    "table {name}: no column {column} for its PRIMARY KEY"
                ))
            })?;
            key.push(index);
        }
        let existing = self.plan.nodes.iter().position(|node| {
            matches!(node, StreamNode::ChangelogNormalize(normalize) if normalize.input == source.node)
        });
        let operator = format!("changelog-normalize-{name}");
        let node = match existing {
            Some(existing) => existing,
            None => {
                let keys = key
                    .iter()
                    .map(|&index| {
                        let field = table.schema.field(index);
                        let column = datafusion::physical_expr::expressions::Column::new(
                            field.name(),
                            index,
                        );
                        Computed::new(Arc::new(column), field.name(), &table.schema)
                    })
                    .collect();
                self.add(StreamNode::ChangelogNormalize(ChangelogNormalize {
                    input: source.node,
                    table: name.clone(),
                    keys,
                    schema: Arc::clone(&table.schema),
                    name: operator.clone(),
                }))
            }
        };
        Ok(Lowered {
            node,
            updates: Some(format!(
                "the upsert-kafka table {name} (ChangelogNormalize {operator})"
            )),
            upsert_key: Some(key),
            ..source
        })
    }

    /// `input`, with window placeholders refused: they only make sense grouped.
    fn materialize(&mut self, input: Lowered) -> SqlResult<Lowered> {
        if input.window.is_some() {
            return Err(self.error(format!(
                "the rows of a window table function must be aggregated (GROUP BY {WINDOW_START}, {WINDOW_END}, ...); selecting them as they are is not supported yet"
            )));
        }
        Ok(input)
    }

    /// An upsert table's PRIMARY KEY must be the columns the query's updates are
    /// keyed by (in the sink's column order), or a key's new row would not
    /// replace its last one.
    fn check_upsert_key(
        &self,
        input: &Lowered,
        table: &super::catalog::Table,
        producer: &str,
    ) -> SqlResult<()> {
        let written = self.written_schema(table)?;
        let mut primary: Vec<usize> = table
            .definition
            .primary_key
            .iter()
            .filter_map(|name| written.index_of(name).ok())
            .collect();
        primary.sort_unstable();
        let mut key = input.upsert_key.clone().unwrap_or_default();
        key.sort_unstable();
        if input.upsert_key.is_some() && primary == key {
            return Ok(());
        }
        let key_columns = match &input.upsert_key {
            Some(key) => key
                .iter()
                .filter_map(|&index| written.fields().get(index).map(|f| f.name().clone()))
                .collect::<Vec<_>>()
                .join(", "),
            None => "not among the columns written".to_owned(),
        };
        Err(self.error(format!(
            "table {}: its PRIMARY KEY ({}) is not the key of the updates of {producer} (in the table's columns: {key_columns}); declare the columns the updates are keyed by (the GROUP BY columns, or the PRIMARY KEY of the upsert table read), written as they are, as the PRIMARY KEY",
            table.definition.name,
            table.definition.primary_key.join(", ")
        )))
    }

    /// The columns a sink writes: the table's physical ones and its writable
    /// metadata; `VIRTUAL` metadata is read only. A Kafka table refuses metadata
    /// it cannot write yet, and more than one topic.
    fn written_schema(&self, table: &super::catalog::Table) -> SqlResult<SchemaRef> {
        let name = &table.definition.name;
        let kafka = match &table.connector {
            TableConnector::Kafka(options) | TableConnector::UpsertKafka(options) => Some(options),
            _ => None,
        };
        if let Some(options) = kafka
            && options.topics.len() != 1
        {
            return Err(self.error(format!(
                "table {name} is written, so its 'topic' must name one topic, not {}",
                options.topics.join(";")
            )));
        }
        let mut fields = Vec::new();
        for column in &table.definition.columns {
            match column {
                ColumnDefinition::Physical { name: column, .. } => fields.push(
                    table
                        .stored_schema
                        .field_with_name(column)
                        .expect("physical columns are stored")
                        .clone(),
                ),
                ColumnDefinition::Metadata {
                    is_virtual: true, ..
                }
                | ColumnDefinition::Computed { .. } => {}
                ColumnDefinition::Metadata {
                    name: column, key, ..
                } => {
                    if kafka.is_some() {
                        return Err(self.error(format!(
                            "table {name} is written, and its column {column} (METADATA FROM '{key}') cannot be written yet; declare it VIRTUAL to only read it"
                        )));
                    }
                    fields.push(
                        table
                            .stored_schema
                            .field_with_name(column)
                            .expect("metadata columns are stored")
                            .clone(),
                    );
                }
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Writes `input` into `table`, casting columns to the table's types.
    fn sink(&mut self, input: Lowered, table_name: &str, columns: &[String]) -> SqlResult<()> {
        let input = self.materialize(input)?;
        let table = self.catalog.table(table_name).ok_or_else(|| {
            self.error(format!(
                "INSERT INTO {table_name}: no such table (views cannot be written)"
            ))
        })?;
        if !table.connector.is_sink() {
            return Err(self.error(format!(
                "table {table_name} (connector '{}') cannot be written: it is a source only",
                connector_name(&table.connector)
            )));
        }
        if let Some(producer) = &input.updates
            && let TableConnector::UpsertKafka(_) = &table.connector
        {
            self.check_upsert_key(&input, table, producer)?;
        }
        if let Some(producer) = &input.updates
            && !table.connector.takes_updates()
        {
            return Err(self.error(format!(
                "table {table_name} (connector '{}') is append-only and cannot take the updates produced by {producer}; write them to an 'upsert-kafka' table with a PRIMARY KEY (or 'print'), or aggregate within a window (TUMBLE, HOP, CUMULATE) to get final rows",
                connector_name(&table.connector)
            )));
        }
        if !columns.is_empty() {
            return Err(self.error(format!(
                "INSERT INTO {table_name} ({}): column lists are not supported yet; select the table's columns in order",
                columns.join(", ")
            )));
        }
        let target = &self.written_schema(table)?;
        let produced = input.schema.fields();
        if produced.len() != target.fields().len() {
            return Err(self.error(format!(
                "INSERT INTO {table_name}: the query has {} columns, the table {} ({})",
                produced.len(),
                target.fields().len(),
                target
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut casts = Vec::new();
        let mut needs_cast = false;
        for (index, (from, to)) in produced.iter().zip(target.fields()).enumerate() {
            let column = datafusion::physical_expr::expressions::Column::new(from.name(), index);
            let column: Arc<dyn PhysicalExpr> = Arc::new(column);
            if from.data_type() == to.data_type() {
                casts.push(Computed::new(column, to.name(), input.schema.as_arrow()));
                continue;
            }
            if !arrow::compute::can_cast_types(from.data_type(), to.data_type()) {
                return Err(self.error(format!(
                    "INSERT INTO {table_name}: column {} is {}, but the query gives {} ({})",
                    to.name(),
                    to.data_type(),
                    from.data_type(),
                    from.name()
                )));
            }
            needs_cast = true;
            let cast = datafusion::physical_expr::expressions::cast(
                column,
                input.schema.as_arrow(),
                to.data_type().clone(),
            )
            .map_err(|error| planning_error(error, self.at))?;
            casts.push(Computed::new(
                cast,
                format!("CAST({} AS {})", from.name(), to.data_type()),
                input.schema.as_arrow(),
            ));
        }
        // A NOT NULL column the query may give nulls to is checked by the Calc
        // (its batch is of the table's schema): a null fails the job naming the
        // column, as Flink's default `table.exec.sink.not-null-enforcer` does.
        let node = if needs_cast
            || produced
                .iter()
                .zip(target.fields())
                .any(|(a, b)| a.name() != b.name() || (a.is_nullable() && !b.is_nullable()))
        {
            self.add(StreamNode::Calc {
                input: input.node,
                filter: None,
                columns: casts,
                schema: Arc::clone(target),
            })
        } else {
            input.node
        };
        let name = format!("sink-{table_name}");
        if self.plan.nodes.iter().any(
            |node| matches!(node, StreamNode::Sink { name: existing, .. } if *existing == name),
        ) {
            return Err(self.error(format!(
                "table {table_name} is written by two INSERTs; write it once (UNION ALL the queries)"
            )));
        }
        self.add(StreamNode::Sink {
            input: node,
            table: Some(table_name.to_owned()),
            name,
        });
        Ok(())
    }
}

/// Builds once what the aggregate operators build for `aggregate` at run time —
/// its accumulator, its groups accumulator where it has one, its state fields
/// and their encoding as rows — so an aggregate DataFusion plans but cannot run
/// (`STRING_AGG` with a delimiter that is not a literal, ...) fails here, with
/// the statement's position, rather than in a running job.
fn check_accumulators(aggregate: &AggregateFunctionExpr) -> Result<(), String> {
    let reason = |error: datafusion::error::DataFusionError| planning_error(error, None).message;
    aggregate.create_accumulator().map_err(reason)?;
    if aggregate.groups_accumulator_supported() {
        aggregate.create_groups_accumulator().map_err(reason)?;
    }
    let fields = aggregate.state_fields().map_err(reason)?;
    let sort_fields = fields
        .iter()
        .map(|field| SortField::new(field.data_type().clone()))
        .collect();
    RowConverter::new(sort_fields)
        .map_err(|error| format!("its state cannot be kept in a checkpoint: {error}"))?;
    Ok(())
}

/// Flink's `COUNT(DISTINCT a, b, ...)`, which DataFusion does not run, as a
/// `COUNT(DISTINCT v)` of one value `v`: the struct of the arguments, NULL where
/// any argument is NULL (Flink counts the distinct tuples without a NULL). `None`
/// for any other aggregate (an `AS` kept).
fn count_distinct_of_one_value(expr: &Expr) -> Option<Expr> {
    if let Expr::Alias(alias) = expr {
        let inner = count_distinct_of_one_value(&alias.expr)?;
        return Some(Expr::Alias(datafusion::logical_expr::expr::Alias {
            expr: Box::new(inner),
            ..alias.clone()
        }));
    }
    let Expr::AggregateFunction(call) = expr else {
        return None;
    };
    let params = &call.params;
    if !call.func.name().eq_ignore_ascii_case("count") || !params.distinct || params.args.len() < 2
    {
        return None;
    }
    let none_null = params
        .args
        .iter()
        .map(|argument| argument.clone().is_not_null())
        .reduce(Expr::and)?;
    let names_and_values = params
        .args
        .iter()
        .enumerate()
        .flat_map(|(index, argument)| [lit(format!("c{index}")), argument.clone()])
        .collect();
    let tuple = Expr::Case(Case::new(
        None,
        vec![(
            Box::new(none_null),
            Box::new(named_struct(names_and_values)),
        )],
        None,
    ));
    let mut one_value = call.clone();
    one_value.params.args = vec![tuple];
    Some(Expr::AggregateFunction(one_value))
}

/// Refuses `IN (SELECT ...)`, `EXISTS (...)`, `x > ANY (SELECT ...)` and scalar
/// subqueries anywhere in `plan` (DataFusion plans them; Strom has no operator
/// that runs them), at the statement's position `at`.
fn refuse_subqueries_in_expressions(plan: &LogicalPlan, at: Option<Position>) -> SqlResult<()> {
    let is_subquery = |expr: &Expr| {
        matches!(
            expr,
            Expr::InSubquery(_)
                | Expr::Exists(_)
                | Expr::ScalarSubquery(_)
                | Expr::SetComparison(_)
        )
    };
    let found = plan
        .exists(|node| {
            Ok(node
                .expressions()
                .iter()
                .any(|expr| expr.exists(|e| Ok(is_subquery(e))).unwrap_or(false)))
        })
        .unwrap_or(false);
    if found {
        return Err(SqlError::new(
            "subqueries in expressions (IN / EXISTS / scalar subqueries) are not supported yet; \
             write the condition without one (IN with a list of values works) or as a separate query",
            at,
        ));
    }
    Ok(())
}

/// Where key column `column` of a projection's input is in its output: the first
/// output that is that column as it is.
fn key_column_after(exprs: &[Expr], input: &DFSchema, column: usize) -> Option<usize> {
    exprs.iter().position(|expr| match expr.clone().unalias() {
        Expr::Column(reference) => input.index_of_column(&reference).ok() == Some(column),
        _ => false,
    })
}

fn identity(schema: &DFSchema) -> Vec<Computed> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let column = datafusion::physical_expr::expressions::Column::new(field.name(), index);
            Computed::new(Arc::new(column), field.name(), schema.as_arrow())
        })
        .collect()
}
