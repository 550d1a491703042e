//! `MOD`.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, exec_err};

use super::args::{Call, Param};
use super::builtin::{Builtin, Returns};

/// `MOD(a, b)`: the remainder of `a / b` for integers, negative only when `a`
/// is (Java's `%`), of `b`'s type (Calcite's rule: the remainder always fits
/// there). Dividing by zero fails, as it does in Flink.
pub fn modulo() -> Builtin {
    Builtin::new(
        "MOD",
        &[&[Param::ExactInteger, Param::ExactInteger]],
        Returns::ArgumentType(1),
        evaluate_mod,
    )
}

fn evaluate_mod(call: &Call<'_>) -> Result<ArrayRef> {
    let dividends = cast(&call.array(0)?, &DataType::Int64)?;
    let divisors = cast(&call.array(1)?, &DataType::Int64)?;
    let dividends = dividends.as_primitive::<Int64Type>();
    let divisors = divisors.as_primitive::<Int64Type>();
    let remainders = dividends
        .iter()
        .zip(divisors.iter())
        .map(|pair| match pair {
            (Some(a), Some(b)) => remainder(a, b).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<Int64Array>>()?;
    Ok(cast(&(Arc::new(remainders) as ArrayRef), call.return_type)?)
}

/// Java's `a % b`: truncated, with the sign of `a`; `i64::MIN % -1` is 0.
fn remainder(a: i64, b: i64) -> Result<i64> {
    if b == 0 {
        return exec_err!("MOD: division by zero (MOD({a}, 0))");
    }
    Ok(a.wrapping_rem(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainder_has_the_dividends_sign() {
        assert_eq!(remainder(7, 3).unwrap(), 1);
        assert_eq!(remainder(-7, 3).unwrap(), -1);
        assert_eq!(remainder(7, -3).unwrap(), 1);
        assert_eq!(remainder(-7, -3).unwrap(), -1);
        assert_eq!(remainder(i64::MIN, -1).unwrap(), 0);
        assert!(
            remainder(1, 0)
                .unwrap_err()
                .to_string()
                .contains("MOD: division by zero")
        );
    }
}
