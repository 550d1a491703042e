//! A Flink built-in as a DataFusion scalar function: its name, the argument
//! lists it takes, its result type and how a batch of calls is computed.
//!
//! The argument types are checked when the query is planned, with a message
//! in Flink's type names ("SPLIT_INDEX takes (STRING, STRING, INT) or (STRING,
//! INT, INT), got (INT, STRING, INT)"); DataFusion then casts each argument to
//! the type its parameter reads, so a function reads Utf8, Int64, Boolean or
//! the temporal type it was given, and nothing else.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::args::{Call, Param, flink_type_list, resolve};

/// Computes a batch of calls: one value per row of [`Call::rows`].
pub type Evaluate = fn(&Call<'_>) -> Result<ArrayRef>;

/// Checks the literal arguments of a call when it is planned (a regular
/// expression that does not compile, a date pattern that does not translate).
pub type CheckLiterals = fn(&[Option<&ScalarValue>]) -> Result<()>;

/// The result type of a built-in.
#[derive(Debug, Clone)]
pub enum Returns {
    /// Always this type.
    Type(DataType),
    /// The type of the argument at this position, after coercion (`MOD` has
    /// its divisor's type, `IF` the common type of its branches).
    ArgumentType(usize),
    /// Decided from the argument types (after coercion) and the literal
    /// arguments (`None` where not a literal): `TIMESTAMPADD(HOUR, n, date)` is
    /// a TIMESTAMP.
    Derived(fn(&[DataType], &[Option<&ScalarValue>]) -> DataType),
}

/// A Flink built-in function.
pub struct Builtin {
    /// Flink's name, upper case, for messages.
    name: &'static str,
    /// The name DataFusion looks up (lower case).
    sql_name: String,
    /// The argument lists it takes, tried in order.
    forms: &'static [&'static [Param]],
    returns: Returns,
    evaluate: Evaluate,
    check_literals: Option<CheckLiterals>,
    signature: Signature,
}

impl Builtin {
    /// The result type for arguments of `arg_types`, `literals` the literal ones.
    fn result_type(
        &self,
        arg_types: &[DataType],
        literals: &[Option<&ScalarValue>],
    ) -> Result<DataType> {
        let Some(types) = resolve(self.forms, arg_types) else {
            return self.signature_error(arg_types);
        };
        Ok(match &self.returns {
            Returns::Type(data_type) => data_type.clone(),
            Returns::ArgumentType(index) => types[*index].clone(),
            Returns::Derived(derive) => derive(&types, literals),
        })
    }

    /// An immutable (deterministic) built-in.
    pub fn new(
        name: &'static str,
        forms: &'static [&'static [Param]],
        returns: Returns,
        evaluate: Evaluate,
    ) -> Self {
        Self {
            name,
            sql_name: name.to_ascii_lowercase(),
            forms,
            returns,
            evaluate,
            check_literals: None,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The same, computed again at every call (`UNIX_TIMESTAMP()`).
    pub fn volatile(mut self) -> Self {
        self.signature = Signature::user_defined(Volatility::Volatile);
        self
    }

    /// The same, known to DataFusion by another name than Flink's (`FLOOR(t TO
    /// unit)` is `floor_to(t, 'UNIT')`, DataFusion's `floor` left alone).
    pub fn called_in_sql(mut self, sql_name: &str) -> Self {
        self.sql_name = sql_name.to_owned();
        self
    }

    /// The same, with its literal arguments checked when planned.
    pub fn checking_literals(mut self, check: CheckLiterals) -> Self {
        self.check_literals = Some(check);
        self
    }
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builtin").field("name", &self.name).finish()
    }
}

/// Built-ins are told apart by name: there is one of each.
impl PartialEq for Builtin {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Builtin {}

impl Hash for Builtin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Builtin {
    fn name(&self) -> &str {
        &self.sql_name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The argument types a form accepts, cast to what the function reads; the
    /// types as given when none does, so that [`Self::return_field_from_args`]
    /// reports them (DataFusion would bury an error from here in its own
    /// message).
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(resolve(self.forms, arg_types).unwrap_or_else(|| arg_types.to_vec()))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.result_type(arg_types, &[])
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let arg_types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let return_type = self.result_type(&arg_types, args.scalar_arguments)?;
        if let Some(check) = self.check_literals {
            check(args.scalar_arguments)?;
        }
        Ok(Arc::new(Field::new(&self.sql_name, return_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = args
            .args
            .iter()
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let call = Call {
            name: self.name,
            args: &args.args,
            rows: if constant { 1 } else { args.number_rows },
            return_type: args.return_field.data_type(),
        };
        let values = (self.evaluate)(&call)?;
        if constant {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &values, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(values))
        }
    }
}

impl Builtin {
    fn signature_error<T>(&self, arg_types: &[DataType]) -> Result<T> {
        let forms: Vec<String> = self
            .forms
            .iter()
            .map(|form| {
                let params: Vec<&str> = form.iter().map(|param| param.flink_name()).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        plan_err!(
            "{} takes {}, got ({})",
            self.name,
            forms.join(" or "),
            flink_type_list(arg_types)
        )
    }
}
