//! Flink's window table functions, `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`
//! (and `HOP`, `CUMULATE`, `SESSION`), planned into a [`WindowAssign`] node: the
//! input's columns plus `window_start`, `window_end` and `window_time`.
//!
//! `SESSION(TABLE t PARTITION BY k, ...)` (Flink 1.19's form) names the keys
//! sessions are kept per; the aggregate over it must group by them (Flink's
//! rule, checked by [`check_partition_keys`]). Sessions are kept per GROUP BY
//! key, with or without PARTITION BY.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{
    Expr as DfExpr, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, ObjectNamePart, TableFactor,
};

use super::dialect::{PARTITION_BY, TABLE_ARGUMENT};
use super::error::Position;

/// The names of the columns a window table function adds.
pub const WINDOW_START: &str = "window_start";
/// See [`WINDOW_START`].
pub const WINDOW_END: &str = "window_end";
/// See [`WINDOW_START`].
pub const WINDOW_TIME: &str = "window_time";

/// The windows a row belongs to, by its event time (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowSpec {
    /// Fixed windows of `size`, starting at multiples of `size` (plus `offset`).
    Tumble {
        /// The window's length.
        size: i64,
        /// Shift of the window starts.
        offset: i64,
    },
    /// Windows of `size` starting every `slide`.
    Hop {
        /// How often a window starts.
        slide: i64,
        /// The window's length.
        size: i64,
        /// Shift of the window starts.
        offset: i64,
    },
    /// Windows growing by `step` from the start of each `size` period.
    Cumulate {
        /// How much each window grows.
        step: i64,
        /// The largest window's length.
        size: i64,
        /// Shift of the periods.
        offset: i64,
    },
    /// Windows of activity: a window closes after `gap` without rows of its key.
    Session {
        /// The gap that closes a window.
        gap: i64,
    },
}

impl WindowSpec {
    /// The length of a slice: every window is a run of whole slices (sessions have
    /// none).
    pub fn slice(&self) -> Option<i64> {
        match *self {
            Self::Tumble { size, .. } => Some(size),
            Self::Hop { slide, size, .. } => Some(gcd(slide, size)),
            Self::Cumulate { step, .. } => Some(step),
            Self::Session { .. } => None,
        }
    }

    /// Where slices start, shifted from multiples of the slice length.
    pub fn offset(&self) -> i64 {
        match *self {
            Self::Tumble { offset, .. }
            | Self::Hop { offset, .. }
            | Self::Cumulate { offset, .. } => offset,
            Self::Session { .. } => 0,
        }
    }

    /// The windows that end at `slice_end` (the end of a slice), as (start, end).
    pub fn windows_ending_at(&self, slice_end: i64) -> Vec<(i64, i64)> {
        match *self {
            Self::Tumble { size, .. } => vec![(slice_end - size, slice_end)],
            Self::Hop {
                slide,
                size,
                offset,
            } => {
                if (slice_end - offset).rem_euclid(slide) == 0 {
                    vec![(slice_end - size, slice_end)]
                } else {
                    Vec::new()
                }
            }
            Self::Cumulate { size, offset, .. } => {
                let period_start = slice_end - 1 - (slice_end - 1 - offset).rem_euclid(size);
                vec![(period_start, slice_end)]
            }
            Self::Session { .. } => Vec::new(),
        }
    }

    /// The start of the window that ends at `end`.
    pub fn window_start(&self, end: i64) -> i64 {
        match *self {
            Self::Tumble { size, .. } | Self::Hop { size, .. } => end - size,
            Self::Cumulate { size, offset, .. } => end - 1 - (end - 1 - offset).rem_euclid(size),
            Self::Session { gap } => end - gap,
        }
    }

    /// The ends of the windows the slice ending at `slice_end` is part of, in
    /// order.
    pub fn window_ends_of_slice(&self, slice_end: i64) -> Vec<i64> {
        let last = self.last_window_end_of_slice(slice_end);
        let step = match *self {
            Self::Tumble { .. } | Self::Session { .. } => return vec![slice_end],
            Self::Hop { slide, .. } => slide,
            Self::Cumulate { step, .. } => step,
        };
        let offset = self.offset();
        let behind = (slice_end - offset).rem_euclid(step);
        let first = if behind == 0 {
            slice_end
        } else {
            slice_end + step - behind
        };
        (0..)
            .map(|i| first + i * step)
            .take_while(|end| *end <= last)
            .collect()
    }

    /// The end of the slice holding event time `time`.
    pub fn slice_end_of(&self, time: i64) -> i64 {
        let slice = self.slice().unwrap_or(1);
        time - (time - self.offset()).rem_euclid(slice) + slice
    }

    /// The first window end after which a slice ending at `slice_end` is needed no
    /// more: once the windows ending there have fired, it can go.
    pub fn last_window_end_of_slice(&self, slice_end: i64) -> i64 {
        match *self {
            Self::Tumble { .. } | Self::Session { .. } => slice_end,
            Self::Hop {
                slide,
                size,
                offset,
            } => {
                // The last window containing the slice starts at the last slide
                // boundary before the slice's start.
                let slice = gcd(slide, size);
                let slice_start = slice_end - slice;
                let last_start = slice_start - (slice_start - offset).rem_euclid(slide);
                last_start + size
            }
            Self::Cumulate { size, offset, .. } => {
                let period_start = slice_end - 1 - (slice_end - 1 - offset).rem_euclid(size);
                period_start + size
            }
        }
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tumble { size, offset: 0 } => write!(f, "TUMBLE(size {size} ms)"),
            Self::Tumble { size, offset } => {
                write!(f, "TUMBLE(size {size} ms, offset {offset} ms)")
            }
            Self::Hop { slide, size, .. } => write!(f, "HOP(slide {slide} ms, size {size} ms)"),
            Self::Cumulate { step, size, .. } => {
                write!(f, "CUMULATE(step {step} ms, size {size} ms)")
            }
            Self::Session { gap } => write!(f, "SESSION(gap {gap} ms)"),
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The logical node of a window table function: every input column, plus
/// `window_start`, `window_end` and `window_time`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowAssign {
    /// The input table.
    pub input: LogicalPlan,
    /// The windows.
    pub spec: WindowSpec,
    /// The index of the event-time column in the input.
    pub time_column: usize,
    /// The input's columns that partition sessions (`PARTITION BY`).
    pub partition_by: Vec<usize>,
    /// Where each of `partition_by` is named.
    pub partition_at: Vec<Option<Position>>,
    schema: DFSchemaRef,
}

impl PartialOrd for WindowAssign {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.spec, self.time_column).partial_cmp(&(other.spec, other.time_column))
    }
}

impl WindowAssign {
    fn new(
        input: LogicalPlan,
        spec: WindowSpec,
        time_column: usize,
        partition_by: Vec<usize>,
        partition_at: Vec<Option<Position>>,
    ) -> DfResult<Self> {
        let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
        let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> = input
            .schema()
            .iter()
            .map(|(qualifier, field)| (qualifier.cloned(), Arc::clone(field)))
            .collect();
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            fields.push((None, Arc::new(Field::new(name, timestamp.clone(), false))));
        }
        let schema = DFSchema::new_with_metadata(fields, Default::default())?;
        Ok(Self {
            input,
            spec,
            time_column,
            partition_by,
            partition_at,
            schema: Arc::new(schema),
        })
    }
}

impl UserDefinedLogicalNodeCore for WindowAssign {
    fn name(&self) -> &str {
        "WindowAssign"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<DfExpr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let time = self.input.schema().field(self.time_column).name();
        write!(f, "WindowAssign: {} on {time}", self.spec)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<DfExpr>,
        inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let input = inputs.into_iter().next().expect("one input");
        Self::new(
            input,
            self.spec,
            self.time_column,
            self.partition_by.clone(),
            self.partition_at.clone(),
        )
    }
}

/// Plans `TABLE(TUMBLE(...))` and the other window table functions.
#[derive(Debug)]
pub struct WindowTableFunctions;

impl RelationPlanner for WindowTableFunctions {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let TableFactor::TableFunction { expr, alias } = &relation else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let Expr::Function(function) = expr else {
            return plan_err!(
                "TABLE(...) takes a window function: TUMBLE, HOP, CUMULATE or SESSION"
            );
        };
        let name = function.name.to_string().to_ascii_uppercase();
        let FunctionArguments::List(list) = &function.args else {
            return plan_err!("{name} needs arguments: (TABLE t, DESCRIPTOR(time column), ...)");
        };
        let args: Vec<&Expr> = list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Ok(expr),
                other => {
                    plan_err!("{name}: argument {other} is not supported (named arguments are not)")
                }
            })
            .collect::<DfResult<_>>()?;
        let expected = match name.as_str() {
            "TUMBLE" => "TUMBLE(TABLE t, DESCRIPTOR(time column), size [, offset])",
            "HOP" => "HOP(TABLE t, DESCRIPTOR(time column), slide, size [, offset])",
            "CUMULATE" => "CUMULATE(TABLE t, DESCRIPTOR(time column), step, size [, offset])",
            "SESSION" => "SESSION(TABLE t [PARTITION BY key], DESCRIPTOR(time column), gap)",
            _ => {
                return plan_err!(
                    "unknown window table function {name}; Strom has TUMBLE, HOP, CUMULATE and SESSION"
                );
            }
        };
        let (Some(table), Some(descriptor)) = (args.first(), args.get(1)) else {
            return plan_err!("{name} takes {expected}");
        };
        let (table_name, partition_keys) = match table {
            Expr::CompoundIdentifier(parts)
                if parts.len() >= 2 && parts[0].value == TABLE_ARGUMENT =>
            {
                let split = parts
                    .iter()
                    .position(|part| part.value == PARTITION_BY)
                    .unwrap_or(parts.len());
                let table_name = ObjectName(
                    parts[1..split]
                        .iter()
                        .cloned()
                        .map(ObjectNamePart::Identifier)
                        .collect(),
                );
                (table_name, parts.get(split + 1..).unwrap_or_default())
            }
            _ => return plan_err!("{name}: the first argument is the input, TABLE t; {expected}"),
        };
        if !partition_keys.is_empty() && name != "SESSION" {
            return plan_err!("{name}: PARTITION BY is for SESSION windows only; {expected}");
        }
        let input = context.plan(TableFactor::Table {
            name: table_name,
            alias: None,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        })?;
        let time_name = match descriptor {
            Expr::Function(descriptor)
                if descriptor
                    .name
                    .to_string()
                    .eq_ignore_ascii_case("DESCRIPTOR") =>
            {
                match &descriptor.args {
                    FunctionArguments::List(list) if list.args.len() == 1 => match &list.args[0] {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(ident))) => {
                            context.normalize_ident(ident.clone())
                        }
                        _ => return plan_err!("{name}: DESCRIPTOR takes one column name"),
                    },
                    _ => return plan_err!("{name}: DESCRIPTOR takes one column name"),
                }
            }
            _ => {
                return plan_err!(
                    "{name}: the second argument is DESCRIPTOR(time column); {expected}"
                );
            }
        };
        let Some(time_column) = input
            .schema()
            .fields()
            .iter()
            .position(|field| field.name() == &time_name)
        else {
            return plan_err!(
                "{name}: DESCRIPTOR({time_name}): the input has no column {time_name}"
            );
        };
        if !matches!(
            input.schema().field(time_column).data_type(),
            DataType::Timestamp(_, _)
        ) {
            return plan_err!(
                "{name}: DESCRIPTOR({time_name}) must be a TIMESTAMP or TIMESTAMP_LTZ column with a WATERMARK"
            );
        }
        let mut partition_by = Vec::new();
        let mut partition_at = Vec::new();
        for key in partition_keys {
            let column = context.normalize_ident(key.clone());
            let Some(index) = input
                .schema()
                .fields()
                .iter()
                .position(|field| field.name() == &column)
            else {
                return plan_err!(
                    "{name}: PARTITION BY {column}: the input has no column {column}"
                );
            };
            partition_by.push(index);
            partition_at.push(Position::of(key.span));
        }
        let mut durations = Vec::new();
        for arg in &args[2..] {
            durations.push(interval_ms(&name, arg, context)?);
        }
        let spec = match (name.as_str(), durations.as_slice()) {
            ("TUMBLE", [size]) => WindowSpec::Tumble {
                size: *size,
                offset: 0,
            },
            ("TUMBLE", [size, offset]) => WindowSpec::Tumble {
                size: *size,
                offset: *offset,
            },
            ("HOP", [slide, size]) => WindowSpec::Hop {
                slide: *slide,
                size: *size,
                offset: 0,
            },
            ("HOP", [slide, size, offset]) => WindowSpec::Hop {
                slide: *slide,
                size: *size,
                offset: *offset,
            },
            ("CUMULATE", [step, size]) => WindowSpec::Cumulate {
                step: *step,
                size: *size,
                offset: 0,
            },
            ("CUMULATE", [step, size, offset]) => WindowSpec::Cumulate {
                step: *step,
                size: *size,
                offset: *offset,
            },
            ("SESSION", [gap]) => WindowSpec::Session { gap: *gap },
            _ => return plan_err!("{name} takes {expected}"),
        };
        check_spec(&name, spec)?;
        let assign = WindowAssign::new(input, spec, time_column, partition_by, partition_at)?;
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(assign),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan,
            alias.clone(),
        ))))
    }
}

/// Checks that `aggregate`, over a window table function with `PARTITION BY`
/// keys, groups by each of them (as Flink requires); the error names the first
/// key it does not group by and where it is named.
pub fn check_partition_keys(
    aggregate: &datafusion::logical_expr::Aggregate,
) -> Result<(), (String, Option<Position>)> {
    let Some((assign, partitions)) = partition_columns(&aggregate.input) else {
        return Ok(());
    };
    let input = aggregate.input.schema();
    let grouped: Vec<usize> = aggregate
        .group_expr
        .iter()
        .filter_map(|expr| match expr.clone().unalias() {
            DfExpr::Column(column) => input.index_of_column(&column).ok(),
            _ => None,
        })
        .collect();
    for ((column, at), &key) in partitions
        .iter()
        .zip(&assign.partition_at)
        .zip(&assign.partition_by)
    {
        if column.is_none_or(|column| !grouped.contains(&column)) {
            let key = assign.input.schema().field(key).name();
            return Err((
                format!(
                    "SESSION(... PARTITION BY {key} ...): the GROUP BY over the window must include its PARTITION BY key {key}"
                ),
                *at,
            ));
        }
    }
    Ok(())
}

/// The window assignment with `PARTITION BY` keys under `plan`, through
/// projections, filters and aliases, and where each key is among `plan`'s
/// columns (none where a projection dropped or computed over it).
fn partition_columns(plan: &LogicalPlan) -> Option<(&WindowAssign, Vec<Option<usize>>)> {
    match plan {
        LogicalPlan::Extension(extension) => {
            let assign = extension.node.as_any().downcast_ref::<WindowAssign>()?;
            (!assign.partition_by.is_empty()).then(|| {
                (
                    assign,
                    assign.partition_by.iter().copied().map(Some).collect(),
                )
            })
        }
        LogicalPlan::Filter(filter) => partition_columns(&filter.input),
        LogicalPlan::SubqueryAlias(alias) => partition_columns(&alias.input),
        LogicalPlan::Projection(projection) => {
            let (assign, columns) = partition_columns(&projection.input)?;
            let input = projection.input.schema();
            let columns = columns
                .into_iter()
                .map(|column| {
                    let column = column?;
                    projection.expr.iter().position(|expr| {
                        matches!(expr.clone().unalias(), DfExpr::Column(c) if input.index_of_column(&c).ok() == Some(column))
                    })
                })
                .collect();
            Some((assign, columns))
        }
        _ => None,
    }
}

/// Sizes must be positive; a hop's size a multiple of its slide, as in Flink; a
/// cumulating window's size a multiple of its step.
fn check_spec(name: &str, spec: WindowSpec) -> DfResult<()> {
    let ok = match spec {
        WindowSpec::Tumble { size, offset } => size > 0 && offset.abs() < size,
        WindowSpec::Hop {
            slide,
            size,
            offset,
        } => slide > 0 && size > 0 && size % slide == 0 && offset.abs() < slide,
        WindowSpec::Cumulate { step, size, offset } => {
            step > 0 && size > 0 && size % step == 0 && offset.abs() < size
        }
        WindowSpec::Session { gap } => gap > 0,
    };
    if ok {
        Ok(())
    } else {
        plan_err!(
            "{name}: sizes must be positive, a HOP's size a multiple of its slide, a CUMULATE's size a multiple of its step, and offsets smaller than the window"
        )
    }
}

/// An `INTERVAL` argument in milliseconds.
fn interval_ms(name: &str, arg: &Expr, context: &mut dyn RelationPlannerContext) -> DfResult<i64> {
    let expr = context.sql_to_expr(arg.clone(), &DFSchema::empty())?;
    let DfExpr::Literal(value, _) = &expr else {
        return plan_err!("{name}: {arg} is not an INTERVAL literal");
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(interval)) if interval.months == 0 => {
            Ok(i64::from(interval.days) * 86_400_000 + interval.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(interval)) => {
            Ok(i64::from(interval.days) * 86_400_000 + i64::from(interval.milliseconds))
        }
        _ => plan_err!(
            "{name}: {arg} must be an INTERVAL in days, hours, minutes, seconds or milliseconds"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_the_slice_ends_they_cover() {
        let hop = WindowSpec::Hop {
            slide: 2,
            size: 10,
            offset: 0,
        };
        assert_eq!(hop.slice(), Some(2));
        assert_eq!(hop.windows_ending_at(10), vec![(0, 10)]);
        assert_eq!(hop.windows_ending_at(12), vec![(2, 12)]);
        // Slice [0, 2) is in windows [-8, 2) ... [0, 10): the last ends at 10.
        assert_eq!(hop.last_window_end_of_slice(2), 10);
        let hop = WindowSpec::Hop {
            slide: 4,
            size: 6,
            offset: 0,
        };
        assert_eq!(hop.slice(), Some(2));
        assert_eq!(hop.windows_ending_at(10), Vec::new());
        assert_eq!(hop.windows_ending_at(12), vec![(6, 12)]);
        // Slice [4, 6): windows [0, 6) and [4, 10).
        assert_eq!(hop.last_window_end_of_slice(6), 10);
        let cumulate = WindowSpec::Cumulate {
            step: 2,
            size: 6,
            offset: 0,
        };
        assert_eq!(cumulate.windows_ending_at(2), vec![(0, 2)]);
        assert_eq!(cumulate.windows_ending_at(4), vec![(0, 4)]);
        assert_eq!(cumulate.windows_ending_at(8), vec![(6, 8)]);
        assert_eq!(cumulate.last_window_end_of_slice(2), 6);
        assert_eq!(cumulate.last_window_end_of_slice(6), 6);
        let tumble = WindowSpec::Tumble { size: 5, offset: 0 };
        assert_eq!(tumble.windows_ending_at(5), vec![(0, 5)]);
        assert_eq!(tumble.slice_end_of(4), 5);
        assert_eq!(tumble.slice_end_of(5), 10);
        assert_eq!(tumble.slice_end_of(-1), 0);
        let hop = WindowSpec::Hop {
            slide: 2,
            size: 6,
            offset: 0,
        };
        assert_eq!(hop.window_ends_of_slice(2), vec![2, 4, 6]);
        assert_eq!(hop.window_start(6), 0);
        let cumulate = WindowSpec::Cumulate {
            step: 2,
            size: 6,
            offset: 0,
        };
        assert_eq!(cumulate.window_ends_of_slice(4), vec![4, 6]);
        assert_eq!(cumulate.window_start(4), 0);
        assert_eq!(cumulate.window_start(8), 6);
    }
}
