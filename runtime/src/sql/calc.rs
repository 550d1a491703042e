//! A Calc operator's work on one batch: the rows where its filter holds, with
//! its columns computed.
//!
//! With a filter, only what the columns read is filtered: the column references
//! and `ROW` field accesses of their expressions ([`Inputs`]), not the whole
//! input batch. A view that keeps one kind of row of a wide table (Nexmark's
//! `bid`: `SELECT bid.auction, ... FROM datagen WHERE event_type = 2`) then
//! filters the few fields it reads instead of every `ROW` of the table.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{filter, filter_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use super::lower::Computed;
use super::narrow::Inputs;

/// A Calc's filter and columns, ready for batches of its input.
pub struct Calc {
    filter: Option<Filtered>,
    /// The columns, over the input (used without a filter).
    columns: Vec<Computed>,
    /// The output's schema; one field more than the columns when the input is a
    /// changelog (its op column, last, goes along).
    schema: SchemaRef,
}

/// A filter, and the columns over the filtered inputs they read.
struct Filtered {
    condition: Computed,
    inputs: Inputs,
    /// The columns, over the batch of inputs.
    columns: Vec<Arc<dyn PhysicalExpr>>,
}

impl Calc {
    /// A Calc of `filter` and `columns` over batches of `input`, giving `schema`.
    pub fn new(
        filter: Option<Computed>,
        columns: Vec<Computed>,
        input: &Schema,
        schema: SchemaRef,
    ) -> Result<Self, String> {
        let filter = match filter {
            None => None,
            Some(condition) => {
                let exprs: Vec<Arc<dyn PhysicalExpr>> =
                    columns.iter().map(|c| Arc::clone(&c.expr)).collect();
                let (inputs, columns) = Inputs::of(&exprs, input)
                    .map_err(|error| format!("planning {}: {error}", condition.text))?;
                Some(Filtered {
                    condition,
                    inputs,
                    columns,
                })
            }
        };
        Ok(Self {
            filter,
            columns,
            schema,
        })
    }

    /// The rows of `batch` where the filter holds, with the columns computed.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let changelog = self.schema.fields().len() == self.columns.len() + 1;
        let (mut values, rows) = match &self.filter {
            None => {
                let values = self
                    .columns
                    .iter()
                    .map(|column| column.evaluate(batch))
                    .collect::<Result<Vec<_>, _>>()?;
                (values, batch.num_rows())
            }
            Some(filtered) => {
                let mask = filtered.condition.evaluate(batch)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| format!("{} is not a condition", filtered.condition.text))?;
                let inputs = filtered.inputs.take(batch).map_err(|e| e.to_string())?;
                let inputs = filter_record_batch(&inputs, mask).map_err(|e| e.to_string())?;
                let rows = inputs.num_rows();
                if rows == 0 {
                    return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
                }
                let mut values = Vec::with_capacity(self.schema.fields().len());
                for (column, computed) in filtered.columns.iter().zip(&self.columns) {
                    let value = column
                        .evaluate(&inputs)
                        .and_then(|value| value.into_array(rows))
                        .map_err(|error| format!("evaluating {}: {error}", computed.text))?;
                    values.push(value);
                }
                if changelog {
                    let op = batch.column(batch.num_columns() - 1);
                    values.push(filter(op, mask).map_err(|e| e.to_string())?);
                    return self.batch(values, rows);
                }
                (values, rows)
            }
        };
        if changelog {
            values.push(Arc::clone(batch.column(batch.num_columns() - 1)));
        }
        self.batch(values, rows)
    }

    fn batch(&self, values: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, String> {
        // A NOT NULL column given a null (a sink's table): named, as Flink's
        // default `table.exec.sink.not-null-enforcer = ERROR` does.
        if let Some(field) = self
            .schema
            .fields()
            .iter()
            .zip(&values)
            .find(|(field, value)| !field.is_nullable() && value.null_count() > 0)
            .map(|(field, _)| field)
        {
            return Err(format!(
                "column {} is NOT NULL, but the query gives it a null",
                field.name()
            ));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), values, &options)
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int8Array, Int32Array, Int64Array, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Fields};
    use datafusion::common::DFSchema;
    use datafusion::execution::context::ExecutionProps;
    use datafusion::functions::core::expr_fn::get_field;
    use datafusion::logical_expr::{Expr, col, lit};

    use crate::sql::batch::with_op_column;
    use crate::sql::physical::physical_expr;

    fn input() -> RecordBatch {
        let bid = StructArray::new(
            Fields::from(vec![
                Field::new("auction", DataType::Int64, true),
                Field::new("url", DataType::Utf8, true),
            ]),
            vec![
                Arc::new(Int64Array::from(vec![10, 11, 12, 13])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
            ],
            None,
        );
        let schema = Schema::new(vec![
            Field::new("kind", DataType::Int32, false),
            Field::new("bid", bid.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int32Array::from(vec![2, 0, 2, 2])), Arc::new(bid)],
        )
        .unwrap()
    }

    fn computed(expr: Expr, input: &Schema) -> Computed {
        let df = DFSchema::try_from(input.clone()).unwrap();
        let physical = physical_expr(&expr, &df, &ExecutionProps::new()).unwrap();
        Computed::new(physical, expr.to_string(), input)
    }

    fn calc(filter: Option<Expr>, columns: Vec<Expr>, output: Schema) -> Calc {
        let input = input().schema();
        Calc::new(
            filter.map(|f| computed(f, &input)),
            columns.into_iter().map(|c| computed(c, &input)).collect(),
            &input,
            Arc::new(output),
        )
        .unwrap()
    }

    #[test]
    fn a_filter_keeps_its_rows_of_what_the_columns_read() {
        let calc = calc(
            Some(col("kind").eq(lit(2))),
            vec![
                get_field(col("bid"), "auction") * lit(2i64),
                get_field(col("bid"), "auction"),
                lit(1i64),
            ],
            Schema::new(vec![
                Field::new("doubled", DataType::Int64, true),
                Field::new("auction", DataType::Int64, true),
                Field::new("one", DataType::Int64, false),
            ]),
        );
        let out = calc.apply(&input()).unwrap();
        let column = |i: usize| {
            out.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert_eq!(column(0), [20, 24, 26]);
        assert_eq!(column(1), [10, 12, 13]);
        assert_eq!(column(2), [1, 1, 1]);
    }

    #[test]
    fn a_null_in_a_not_null_column_is_an_error_naming_the_column() {
        let calc = calc(
            None,
            vec![Expr::Literal(
                datafusion::common::ScalarValue::Int64(None),
                None,
            )],
            Schema::new(vec![Field::new("n", DataType::Int64, false)]),
        );
        assert_eq!(
            calc.apply(&input()).unwrap_err(),
            "column n is NOT NULL, but the query gives it a null"
        );
    }

    #[test]
    fn no_row_left_is_an_empty_batch_and_a_changelog_keeps_its_op_column() {
        let none = calc(
            Some(col("kind").eq(lit(7))),
            vec![col("kind")],
            Schema::new(vec![Field::new("kind", DataType::Int32, false)]),
        );
        assert_eq!(none.apply(&input()).unwrap().num_rows(), 0);

        let batch = input();
        let schema = with_op_column(&batch.schema());
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(Int8Array::from(vec![0, 1, 2, 3])));
        let changelog = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let output = Schema::new(vec![Field::new("kind", DataType::Int32, false)]);
        let kept = calc(
            Some(col("kind").eq(lit(2))),
            vec![col("kind")],
            with_op_column(&output).as_ref().clone(),
        )
        .apply(&changelog)
        .unwrap();
        let ops = kept.column(1).as_any().downcast_ref::<Int8Array>().unwrap();
        assert_eq!(ops.values().to_vec(), [0, 2, 3]);
    }
}
