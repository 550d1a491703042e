//! `IF` and `IFNULL`.

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::is_not_null;
use arrow::compute::kernels::zip::zip;
use datafusion::common::Result;

use super::args::{Call, Param};
use super::builtin::{Builtin, Returns};

/// `IF(condition, a, b)`: `a` where the condition is true, `b` where it is
/// false or null. Both branches are computed for the whole batch first.
pub fn if_function() -> Builtin {
    Builtin::new(
        "IF",
        &[&[Param::Boolean, Param::Any, Param::Any]],
        Returns::ArgumentType(1),
        evaluate_if,
    )
}

fn evaluate_if(call: &Call<'_>) -> Result<ArrayRef> {
    let condition = call.array(0)?;
    Ok(zip(
        condition.as_boolean(),
        &call.array(1)?,
        &call.array(2)?,
    )?)
}

/// `IFNULL(a, b)`: `a`, or `b` where `a` is null.
///
/// DataFusion has this (as `nvl`), but computes it only once its optimizer
/// rewrote it into a `CASE`; Strom builds expressions without that pass.
pub fn if_null() -> Builtin {
    Builtin::new(
        "IFNULL",
        &[&[Param::Any, Param::Any]],
        Returns::ArgumentType(0),
        evaluate_if_null,
    )
}

fn evaluate_if_null(call: &Call<'_>) -> Result<ArrayRef> {
    let value = call.array(0)?;
    Ok(zip(&is_not_null(&value)?, &value, &call.array(1)?)?)
}
