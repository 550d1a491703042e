//! The tables and views of a script, and planning queries over them with
//! DataFusion's SQL planner into logical plans.
//!
//! A table is a scan of all its columns, computed ones included (its source
//! computes them from the stored columns); a view is its query's plan, inlined
//! where a query names it. So a logical plan's leaves are scans of tables, by
//! table name.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DataFusionError, TableReference};
use datafusion::config::ConfigOptions;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{
    AggregateUDF, HigherOrderUDF, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableSource,
    WindowUDF,
};
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use sqlparser::ast::{self, Query};

use super::connectors::{ScanWatermark, TableConnector, TableOptions};
use super::error::{Position, SqlError, SqlResult};
use super::flink_syntax::FlinkSyntax;
use super::functions;
use super::script::{ColumnDefinition, Statement, TableDefinition};
use super::window_tvf::WindowTableFunctions;

/// A table of the script: its definition, schema and connector.
#[derive(Debug, Clone)]
pub struct Table {
    /// The `CREATE TABLE` statement.
    pub definition: TableDefinition,
    /// The columns the connector reads or writes (physical and metadata ones), in
    /// declared order.
    pub stored_schema: SchemaRef,
    /// Every column (computed ones too), in declared order: what queries see.
    pub schema: SchemaRef,
    /// How the source computes `schema` from the stored columns: the projection
    /// adding the computed columns, when there are any.
    pub read_plan: Option<LogicalPlan>,
    /// Where rows come from or go to.
    pub connector: TableConnector,
    /// A source's own watermark options (`scan.watermark.*`).
    pub scan_watermark: ScanWatermark,
}

/// What a script asks to run: its INSERTs and queries, in order.
#[derive(Debug, Clone)]
pub enum Job {
    /// `INSERT INTO table query`.
    Insert {
        /// The table written.
        table: String,
        /// The columns written, when listed.
        columns: Vec<String>,
        /// The query.
        query: Box<Query>,
        /// Where the statement starts.
        at: Option<Position>,
    },
    /// A query whose rows are printed.
    Print {
        /// The query.
        query: Box<Query>,
        /// Where it starts.
        at: Option<Position>,
    },
}

/// The tables, views and settings of a script.
pub struct Catalog {
    tables: BTreeMap<String, Table>,
    views: BTreeMap<String, LogicalPlan>,
    /// The `SET` options.
    pub settings: BTreeMap<String, String>,
    state: SessionState,
    relation_planners: Vec<Arc<dyn RelationPlanner>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .field("views", &self.views.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Catalog {
    /// Builds the catalog of `statements` and returns what they ask to run.
    pub fn build(statements: Vec<Statement>) -> SqlResult<(Self, Vec<Job>)> {
        let mut state = SessionStateBuilder::new().with_default_features().build();
        functions::register(&mut state);
        let mut catalog = Self {
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            settings: BTreeMap::new(),
            state,
            relation_planners: vec![Arc::new(WindowTableFunctions)],
        };
        let mut jobs = Vec::new();
        for statement in statements {
            match statement {
                Statement::CreateTable(definition) => catalog.add_table(*definition)?,
                Statement::CreateView {
                    name,
                    columns,
                    query,
                    at,
                } => {
                    catalog.check_new_name(&name, at)?;
                    let mut plan = catalog.plan_query(&query, at)?;
                    if !columns.is_empty() {
                        plan = rename_columns(plan, &columns, &name, at)?;
                    }
                    catalog.views.insert(name, plan);
                }
                Statement::Insert {
                    table,
                    columns,
                    query,
                    at,
                } => jobs.push(Job::Insert {
                    table,
                    columns,
                    query,
                    at,
                }),
                Statement::Set { key, value, at } => {
                    super::settings::check(&key, &value, at)?;
                    catalog.settings.insert(key, value);
                }
                Statement::Query { query, at } => jobs.push(Job::Print { query, at }),
            }
        }
        Ok((catalog, jobs))
    }

    /// The table `name`, if the script creates one.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// DataFusion's execution properties, for building physical expressions.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    fn check_new_name(&self, name: &str, at: Option<Position>) -> SqlResult<()> {
        if self.tables.contains_key(name) || self.views.contains_key(name) {
            return Err(SqlError::new(
                format!("{name} is already a table or view of this script"),
                at,
            ));
        }
        Ok(())
    }

    fn add_table(&mut self, definition: TableDefinition) -> SqlResult<()> {
        self.check_new_name(&definition.name, definition.at)?;
        let mut stored = Vec::new();
        for column in &definition.columns {
            match column {
                ColumnDefinition::Physical {
                    name, column_type, ..
                }
                | ColumnDefinition::Metadata {
                    name, column_type, ..
                } => stored.push(Field::new(
                    name,
                    column_type.data_type.clone(),
                    // As in Flink, the columns of a PRIMARY KEY are NOT NULL.
                    column_type.nullable && !definition.primary_key.contains(name),
                )),
                ColumnDefinition::Computed { .. } => {}
            }
        }
        let stored_schema = Arc::new(Schema::new(stored));
        let TableOptions {
            connector,
            scan_watermark,
        } = TableOptions::from_definition(&definition, &stored_schema)?;
        let scan = self.table_plan(&definition, &stored_schema)?;
        let schema = Arc::new(scan.schema().as_arrow().clone());
        let read_plan = matches!(scan, LogicalPlan::Projection(_)).then_some(scan);
        if let Some(watermark) = &definition.watermark {
            super::connectors::check_watermark(&definition, watermark, &schema)?;
        }
        self.tables.insert(
            definition.name.clone(),
            Table {
                definition,
                stored_schema,
                schema,
                read_plan,
                connector,
                scan_watermark,
            },
        );
        Ok(())
    }

    /// The plan a query sees for the table: a scan of its stored columns and a
    /// projection adding the computed ones in declared order.
    fn table_plan(
        &self,
        definition: &TableDefinition,
        stored_schema: &SchemaRef,
    ) -> SqlResult<LogicalPlan> {
        let source = Arc::new(LogicalTableSource::new(Arc::clone(stored_schema)));
        let scan = LogicalPlanBuilder::scan(definition.name.as_str(), source, None)
            .and_then(LogicalPlanBuilder::build)
            .map_err(|error| planning_error(error, definition.at))?;
        if definition
            .columns
            .iter()
            .all(|column| !matches!(column, ColumnDefinition::Computed { .. }))
        {
            return Ok(scan);
        }
        let provider = Planning { catalog: self };
        let planner = SqlToRel::new_with_options(&provider, parser_options());
        let input_schema: &DFSchema = scan.schema();
        let mut exprs = Vec::new();
        for column in &definition.columns {
            let expr = match column {
                ColumnDefinition::Computed { name, expr, at } => {
                    let mut expr = (**expr).clone();
                    let _ = ast::VisitMut::visit(&mut expr, &mut FlinkSyntax);
                    planner
                        .sql_to_expr(expr, input_schema, &mut PlannerContext::new())
                        .map_err(|error| planning_error(error, *at))?
                        .alias(name)
                }
                other => datafusion::logical_expr::col(datafusion::common::Column::new(
                    Some(definition.name.as_str()),
                    other.name(),
                )),
            };
            exprs.push(expr);
        }
        let plan = LogicalPlanBuilder::from(scan)
            .project(exprs)
            .and_then(LogicalPlanBuilder::build)
            .map_err(|error| planning_error(error, definition.at))?;
        // Types coerced, as in queries (`CASE WHEN event_type = 0` of an INT).
        Analyzer::new()
            .execute_and_check(plan, self.state.config_options(), |_, _| {})
            .map_err(|error| planning_error(error, definition.at))
    }

    /// Plans `query` into an analyzed logical plan (types coerced), with tables
    /// and views inlined.
    pub fn plan_query(&self, query: &Query, at: Option<Position>) -> SqlResult<LogicalPlan> {
        let provider = Planning { catalog: self };
        let planner = SqlToRel::new_with_options(&provider, parser_options());
        let mut query = query.clone();
        super::group_windows::rewrite(&mut query).map_err(|message| SqlError::new(message, at))?;
        let _ = ast::VisitMut::visit(&mut query, &mut NameFieldAccesses);
        let _ = ast::VisitMut::visit(&mut query, &mut FlinkSyntax);
        let statement = ast::Statement::Query(Box::new(query));
        let plan = planner
            .sql_statement_to_plan(statement)
            .map_err(|error| planning_error(error, at))?;
        // Before the analyzer, which casts AVG's integer argument to a DOUBLE.
        let plan = flink_averages(plan).map_err(|error| planning_error(error, at))?;
        let analyzer = Analyzer::new();
        analyzer
            .execute_and_check(plan, self.state.config_options(), |_, _| {})
            .map_err(|error| planning_error(error, at))
    }
}

/// `AVG` as Flink types and rounds it, where DataFusion's differs: each
/// aggregate's such averages are cast to Flink's type in a projection above it,
/// under the same names (see [`FlinkAverage`]).
fn flink_averages(plan: LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{Aggregate, Expr, Projection, cast};
    plan.transform_up(|plan| {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            // Its input's types may have changed below.
            return Ok(Transformed::yes(plan.recompute_schema()?));
        };
        let input = aggregate.input.schema();
        let averages: Vec<Option<FlinkAverage>> = aggregate
            .aggr_expr
            .iter()
            .map(|expr| FlinkAverage::of(expr, input))
            .collect();
        if averages.iter().all(Option::is_none) {
            return Ok(Transformed::no(plan));
        }
        let groups = aggregate.group_expr.len();
        let schema = Arc::clone(plan.schema());
        let aggr_expr = aggregate
            .aggr_expr
            .iter()
            .zip(&averages)
            .enumerate()
            .map(|(index, (expr, average))| match average {
                Some(FlinkAverage::Decimal { argument, .. }) => {
                    let (qualifier, field) = schema.qualified_field(groups + index);
                    widened_average(expr, argument)
                        .alias_qualified(qualifier.cloned(), field.name())
                }
                _ => expr.clone(),
            })
            .collect();
        let aggregate = Aggregate::try_new(
            Arc::clone(&aggregate.input),
            aggregate.group_expr.clone(),
            aggr_expr,
        )?;
        let exprs: Vec<Expr> = schema
            .iter()
            .enumerate()
            .map(|(index, (qualifier, field))| {
                let column = Expr::Column(datafusion::common::Column::new(
                    qualifier.cloned(),
                    field.name(),
                ));
                let average = index
                    .checked_sub(groups)
                    .and_then(|index| averages[index].as_ref());
                match average {
                    Some(average) => cast(column, average.result_type().clone())
                        .alias_qualified(qualifier.cloned(), field.name()),
                    None => column,
                }
            })
            .collect();
        let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(aggregate)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    })
    .map(|transformed| transformed.data)
}

/// An `AVG` whose type or rounding in Flink differs from DataFusion's.
#[derive(Debug, Clone, PartialEq)]
enum FlinkAverage {
    /// Of an integer: the argument's type, the sum divided by the count and
    /// truncated (DataFusion's is a DOUBLE, cast back to the integer).
    Integer(arrow::datatypes::DataType),
    /// Of a `DECIMAL(p, s)`: `DECIMAL(38, max(6, s))`, rounded half up
    /// (DataFusion's is `DECIMAL(p + 4, s + 4)`, truncated). The argument is
    /// first cast to a scale of at least 3, so that DataFusion's average keeps
    /// a digit more than the result's, and the cast to the result rounds it
    /// half up (truncating beyond that digit does not change the rounding).
    /// Only an average of `DECIMAL(38, 38)`, which has no digit to spare, is
    /// truncated.
    Decimal {
        /// The argument's type, widened.
        argument: arrow::datatypes::DataType,
        /// Flink's type of the average.
        result: arrow::datatypes::DataType,
    },
}

impl FlinkAverage {
    /// The fewest fraction digits Flink gives an average of a DECIMAL.
    const MIN_DECIMAL_SCALE: i8 = 6;

    /// What `expr` needs if it is an `AVG(x)` over `input` that Flink types
    /// otherwise.
    fn of(expr: &datafusion::logical_expr::Expr, input: &DFSchema) -> Option<Self> {
        use arrow::datatypes::DataType;
        use datafusion::logical_expr::{Expr, ExprSchemable};
        let Expr::AggregateFunction(call) = expr.clone().unalias() else {
            return None;
        };
        if !call.func.name().eq_ignore_ascii_case("avg") || call.params.args.len() != 1 {
            return None;
        }
        match call.params.args[0].get_type(input).ok()? {
            integer if integer.is_integer() => Some(Self::Integer(integer)),
            DataType::Decimal128(precision, scale) => {
                let result_scale = scale.max(Self::MIN_DECIMAL_SCALE);
                // DataFusion's average has 4 fraction digits more than its
                // argument; rounding needs one more than the result's.
                let spare = (result_scale + 1 - 4 - scale).max(0);
                Some(Self::Decimal {
                    argument: DataType::Decimal128(
                        precision.saturating_add(spare.unsigned_abs()).min(38),
                        scale + spare,
                    ),
                    result: DataType::Decimal128(38, result_scale),
                })
            }
            _ => None,
        }
    }

    /// Flink's type of the average.
    fn result_type(&self) -> &arrow::datatypes::DataType {
        match self {
            Self::Integer(data_type) => data_type,
            Self::Decimal { result, .. } => result,
        }
    }
}

/// The `AVG(x)` of `expr` (maybe aliased) as `AVG(CAST(x AS argument))`,
/// unnamed.
fn widened_average(
    expr: &datafusion::logical_expr::Expr,
    argument: &arrow::datatypes::DataType,
) -> datafusion::logical_expr::Expr {
    use datafusion::logical_expr::{Expr, cast};
    match expr.clone().unalias() {
        Expr::AggregateFunction(mut call) => {
            call.params.args = call
                .params
                .args
                .into_iter()
                .map(|arg| cast(arg, argument.clone()))
                .collect();
            Expr::AggregateFunction(call)
        }
        other => other,
    }
}

/// Names selected columns as Flink (Calcite) does: `a.b` (a nested field, or a
/// qualified column) is `b` (unless another selected `x.b` is too), where
/// DataFusion would name a nested field `t.a[b]`, and any other unnamed
/// expression is `EXPR$<position>`, so two expressions with the same text (`ts`
/// and `CAST(ts AS DATE)`) never clash. Also reads `1e3` as a DOUBLE.
struct NameFieldAccesses;

impl ast::VisitorMut for NameFieldAccesses {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> std::ops::ControlFlow<()> {
        name_field_accesses(&mut query.body);
        std::ops::ControlFlow::Continue(())
    }

    /// `1e3` is a DOUBLE in Flink (only plain decimals such as `0.01` are exact).
    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> std::ops::ControlFlow<()> {
        if let ast::Expr::Value(value) = expr
            && let ast::Value::Number(text, _) = &value.value
            && text.contains(['e', 'E'])
        {
            let text = text.clone();
            *expr = ast::Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(ast::Expr::Value(
                    ast::Value::SingleQuotedString(text).with_empty_span(),
                )),
                data_type: ast::DataType::Double(ast::ExactNumberInfo::None),
                array: false,
                format: None,
            };
        }
        std::ops::ControlFlow::Continue(())
    }
}

fn name_field_accesses(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(select) => {
            // Leaf names selected more than once stay DataFusion's (`t.a[b]`).
            let mut leaves: BTreeMap<String, usize> = BTreeMap::new();
            for item in &select.projection {
                if let ast::SelectItem::UnnamedExpr(ast::Expr::CompoundIdentifier(parts)) = item
                    && let Some(last) = parts.last()
                {
                    *leaves.entry(last.value.clone()).or_default() += 1;
                }
            }
            for (position, item) in select.projection.iter_mut().enumerate() {
                let ast::SelectItem::UnnamedExpr(expr) = item else {
                    continue;
                };
                let alias = match expr {
                    ast::Expr::Identifier(_) => continue,
                    ast::Expr::CompoundIdentifier(parts) => match parts.last() {
                        Some(last) if leaves.get(&last.value) == Some(&1) => last.clone(),
                        _ => continue,
                    },
                    _ => ast::Ident::new(format!("EXPR${position}")),
                };
                *item = ast::SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias,
                };
            }
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            name_field_accesses(left);
            name_field_accesses(right);
        }
        _ => {}
    }
}

/// Names the columns of a view as its `CREATE VIEW v (a, b)` lists them.
fn rename_columns(
    plan: LogicalPlan,
    columns: &[String],
    view: &str,
    at: Option<Position>,
) -> SqlResult<LogicalPlan> {
    if columns.len() != plan.schema().fields().len() {
        return Err(SqlError::new(
            format!(
                "view {view} names {} columns, but its query has {}",
                columns.len(),
                plan.schema().fields().len()
            ),
            at,
        ));
    }
    let exprs: Vec<_> = plan
        .schema()
        .columns()
        .into_iter()
        .zip(columns)
        .map(|(column, name)| datafusion::logical_expr::col(column).alias(name))
        .collect();
    LogicalPlanBuilder::from(plan)
        .project(exprs)
        .and_then(LogicalPlanBuilder::build)
        .map_err(|error| planning_error(error, at))
}

/// How DataFusion's planner reads identifiers: as written (Flink's identifiers are
/// case-sensitive), strings as Utf8, and `0.01` as a DECIMAL (Flink's exact
/// numeric literal), not a DOUBLE.
fn parser_options() -> ParserOptions {
    ParserOptions {
        parse_float_as_decimal: true,
        enable_ident_normalization: false,
        map_string_types_to_utf8view: false,
        collect_spans: true,
        ..ParserOptions::new()
    }
}

/// A planning error, placed where DataFusion's diagnostic says, else at the
/// statement.
pub fn planning_error(error: DataFusionError, at: Option<Position>) -> SqlError {
    let place = error
        .diagnostic()
        .and_then(|diagnostic| diagnostic.span)
        .filter(|span| span.start.line > 0)
        .map(|span| Position {
            line: span.start.line,
            column: span.start.column,
        });
    let message = error.strip_backtrace();
    let message = message
        .strip_prefix("Error during planning: ")
        .or_else(|| message.strip_prefix("Schema error: "))
        .or_else(|| message.strip_prefix("This feature is not implemented: "))
        .unwrap_or(&message)
        .to_owned();
    SqlError::new(message, place.or(at))
}

/// A view's plan, inlined where a query names it.
#[derive(Debug)]
struct PlanSource(LogicalPlan);

impl TableSource for PlanSource {
    fn schema(&self) -> SchemaRef {
        Arc::new(self.0.schema().as_arrow().clone())
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.0))
    }
}

/// What DataFusion's SQL planner asks the catalog.
struct Planning<'a> {
    catalog: &'a Catalog,
}

impl ContextProvider for Planning<'_> {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::common::Result<Arc<dyn TableSource>> {
        let key = name.table();
        if let Some(table) = self.catalog.tables.get(key) {
            // The source computes the computed columns: queries see them all.
            return Ok(Arc::new(LogicalTableSource::new(Arc::clone(&table.schema))));
        }
        if let Some(plan) = self.catalog.views.get(key) {
            return Ok(Arc::new(PlanSource(plan.clone())));
        }
        let known: Vec<&String> = self
            .catalog
            .tables
            .keys()
            .chain(self.catalog.views.keys())
            .collect();
        Err(DataFusionError::Plan(format!(
            "no table or view named {name}; the script creates: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.catalog.state.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        &self.catalog.relation_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.catalog.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.catalog
            .state
            .higher_order_functions()
            .get(name)
            .cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.catalog.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.catalog.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<arrow::datatypes::DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.catalog.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.catalog
            .state
            .scalar_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.catalog
            .state
            .higher_order_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.catalog
            .state
            .aggregate_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.catalog
            .state
            .window_functions()
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;
    use datafusion::functions_aggregate::expr_fn::{avg, count};
    use datafusion::logical_expr::col;

    use super::*;

    fn average(data_type: DataType) -> Option<FlinkAverage> {
        let schema =
            DFSchema::try_from(Schema::new(vec![Field::new("x", data_type, true)])).unwrap();
        FlinkAverage::of(&avg(col("x")), &schema)
    }

    #[test]
    fn averages_are_typed_as_flink_types_them() {
        assert_eq!(
            average(DataType::Int32),
            Some(FlinkAverage::Integer(DataType::Int32))
        );
        assert_eq!(average(DataType::Float64), None);
        // DECIMAL(38, max(6, s)); the argument widened to a scale of 3 or more,
        // so DataFusion's average (4 digits more) has one past the result's.
        let decimal = |argument: (u8, i8), result| {
            Some(FlinkAverage::Decimal {
                argument: DataType::Decimal128(argument.0, argument.1),
                result: DataType::Decimal128(38, result),
            })
        };
        assert_eq!(average(DataType::Decimal128(10, 2)), decimal((11, 3), 6));
        assert_eq!(average(DataType::Decimal128(5, 0)), decimal((8, 3), 6));
        assert_eq!(average(DataType::Decimal128(12, 4)), decimal((12, 4), 6));
        assert_eq!(average(DataType::Decimal128(20, 9)), decimal((20, 9), 9));
        assert_eq!(average(DataType::Decimal128(38, 1)), decimal((38, 3), 6));
    }

    #[test]
    fn only_averages_are_retyped() {
        let schema = DFSchema::try_from(Schema::new(vec![Field::new(
            "x",
            DataType::Decimal128(10, 2),
            true,
        )]))
        .unwrap();
        assert_eq!(FlinkAverage::of(&count(col("x")), &schema), None);
        assert_eq!(
            FlinkAverage::of(&avg(col("x")).alias("a"), &schema),
            FlinkAverage::of(&avg(col("x")), &schema)
        );
    }
}
