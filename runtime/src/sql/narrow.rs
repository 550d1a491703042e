//! Evaluating an expression on only what it reads.
//!
//! Some of DataFusion's expressions filter the whole input batch as they go: a
//! `CASE` evaluates each branch on the rows still undecided by filtering every
//! column of the batch, wide nested rows included. Nexmark's `dateTime` (a
//! `CASE` over `person.dateTime`, `auction.dateTime` and `bid.dateTime`) spent
//! most of its time copying the three whole `ROW`s, strings and all.
//!
//! A [`Narrow`] expression is evaluated on a batch of just its *inputs*: the
//! column references and nested field accesses (`person.dateTime`) it reads,
//! which cost nothing to take from the batch (a field of a `ROW` column is one
//! of its child arrays). The expression itself is rewritten to read them by
//! position.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

/// The column references and field accesses some expressions read, each once:
/// taken from a batch, they make a narrow batch the rewritten expressions read.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// What is read, over the operator's input.
    reads: Vec<Arc<dyn PhysicalExpr>>,
    /// The schema of the batch of inputs.
    schema: SchemaRef,
}

impl Inputs {
    /// The inputs of `exprs` (over batches of `input`), and each expression
    /// rewritten to read them by position.
    pub fn of(
        exprs: &[Arc<dyn PhysicalExpr>],
        input: &Schema,
    ) -> Result<(Self, Vec<Arc<dyn PhysicalExpr>>)> {
        let mut reads: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut fields: Vec<Field> = Vec::new();
        let mut positions: HashMap<Arc<dyn PhysicalExpr>, usize> = HashMap::new();
        let mut rewritten = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let expr = Arc::clone(expr).transform_down(|node| {
                if !is_access(&node) {
                    return Ok(Transformed::no(node));
                }
                let position = match positions.get(&node) {
                    Some(&position) => position,
                    None => {
                        let position = reads.len();
                        fields.push(Field::new(
                            format!("input_{position}"),
                            node.data_type(input)?,
                            node.nullable(input)?,
                        ));
                        reads.push(Arc::clone(&node));
                        positions.insert(Arc::clone(&node), position);
                        position
                    }
                };
                let column: Arc<dyn PhysicalExpr> =
                    Arc::new(Column::new(fields[position].name(), position));
                Ok(Transformed::new(column, true, TreeNodeRecursion::Jump))
            })?;
            rewritten.push(expr.data);
        }
        let inputs = Self {
            reads,
            schema: Arc::new(Schema::new(fields)),
        };
        Ok((inputs, rewritten))
    }

    /// The batch of inputs of `batch` (a batch of the schema they were made for);
    /// taking them copies nothing.
    pub fn take(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let columns = self
            .reads
            .iter()
            .map(|read| read.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }
}

/// An expression rewritten to be evaluated on a batch of its inputs alone.
#[derive(Debug, Clone)]
pub struct Narrow {
    inputs: Inputs,
    /// The expression over the batch of inputs.
    expr: Arc<dyn PhysicalExpr>,
}

impl Narrow {
    /// `expr` over batches of `input`, narrowed to what it reads; `None` when
    /// there is nothing to gain (`expr` is a column or a field access).
    pub fn of(expr: &Arc<dyn PhysicalExpr>, input: &Schema) -> Option<Self> {
        if is_access(expr) {
            return None;
        }
        let (inputs, mut rewritten) = Inputs::of(std::slice::from_ref(expr), input).ok()?;
        Some(Self {
            inputs,
            expr: rewritten.pop()?,
        })
    }

    /// The expression's value for each row of `batch` (a batch of the schema
    /// it was made for).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let inputs = self.inputs.take(batch)?;
        self.expr.evaluate(&inputs)?.into_array(batch.num_rows())
    }
}

/// The column references and field accesses `expr` reads (the largest ones:
/// `person.dateTime`, not `person`).
pub fn accesses(expr: &Arc<dyn PhysicalExpr>) -> Vec<Arc<dyn PhysicalExpr>> {
    let mut found = Vec::new();
    let _ = Arc::clone(expr).apply(|node| {
        if is_access(node) {
            found.push(Arc::clone(node));
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The column an access reads, and the field of it when it reads one (the
/// first level: `a.b.c` reads field `b` of column `a`).
pub fn access_path(expr: &Arc<dyn PhysicalExpr>) -> Option<(usize, Option<String>)> {
    if let Some(column) = expr.downcast_ref::<Column>() {
        return Some((column.index(), None));
    }
    let function = expr.downcast_ref::<ScalarFunctionExpr>()?;
    if function.name() != "get_field" || function.args().len() != 2 {
        return None;
    }
    let (column, field) = access_path(&function.args()[0])?;
    match field {
        Some(field) => Some((column, Some(field))),
        None => {
            let name = function.args()[1].downcast_ref::<Literal>()?.value();
            Some((column, name.try_as_str().flatten().map(str::to_owned)))
        }
    }
}

/// Whether `expr` is a column, or a field of a `ROW` reached from one.
pub fn is_access(expr: &Arc<dyn PhysicalExpr>) -> bool {
    if expr.is::<Column>() {
        return true;
    }
    let Some(function) = expr.downcast_ref::<ScalarFunctionExpr>() else {
        return false;
    };
    function.name() == "get_field"
        && function.args().len() == 2
        && function.args()[1].is::<Literal>()
        && is_access(&function.args()[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int32Array, StringArray, StructArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Fields, TimeUnit};
    use datafusion::common::{DFSchema, ScalarValue};
    use datafusion::execution::context::ExecutionProps;
    use datafusion::functions::core::expr_fn::get_field;
    use datafusion::logical_expr::{col, lit, when};

    use crate::sql::physical::physical_expr;

    fn person() -> StructArray {
        let fields = Fields::from(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "dateTime",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]);
        StructArray::new(
            fields,
            vec![
                Arc::new(StringArray::from(vec!["ann", "bob", "cy"])),
                Arc::new(TimestampMillisecondArray::from(vec![10, 20, 30])),
            ],
            None,
        )
    }

    #[test]
    fn a_case_over_nested_fields_reads_only_those_fields_and_gives_the_same_values() {
        let person = person();
        let schema = Schema::new(vec![
            Field::new("kind", DataType::Int32, false),
            Field::new("person", person.data_type().clone(), true),
            Field::new("other", DataType::Utf8, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(Int32Array::from(vec![0, 1, 0])),
                Arc::new(person),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
            ],
        )
        .unwrap();
        let logical = when(col("kind").eq(lit(0)), get_field(col("person"), "dateTime"))
            .otherwise(lit(ScalarValue::TimestampMillisecond(None, None)))
            .unwrap();
        let df_schema = DFSchema::try_from(schema.clone()).unwrap();
        let planned = physical_expr(&logical, &df_schema, &ExecutionProps::new()).unwrap();
        let narrow = Narrow::of(&planned, &schema).expect("a CASE is narrowed");
        let inputs: Vec<String> = narrow.inputs.reads.iter().map(|i| i.to_string()).collect();
        assert_eq!(inputs.len(), 2, "{inputs:?}");
        assert!(inputs.iter().all(|i| !i.contains("other")), "{inputs:?}");
        let expected = planned
            .evaluate(&batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap();
        assert_eq!(&narrow.evaluate(&batch).unwrap(), &expected);
        let values = expected
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(
            values.iter().collect::<Vec<_>>(),
            [Some(10), None, Some(30)]
        );
    }

    #[test]
    fn a_column_or_field_access_is_evaluated_as_it_is() {
        let person = person();
        let schema = Schema::new(vec![Field::new("person", person.data_type().clone(), true)]);
        let df_schema = DFSchema::try_from(schema.clone()).unwrap();
        let props = ExecutionProps::new();
        for logical in [col("person"), get_field(col("person"), "name")] {
            let planned = physical_expr(&logical, &df_schema, &props).unwrap();
            assert!(Narrow::of(&planned, &schema).is_none(), "{logical}");
        }
    }
}
