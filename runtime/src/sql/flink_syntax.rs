//! Flink's SQL syntax that DataFusion's planner refuses, rewritten in the
//! parsed SQL into calls of Flink's built-ins (see [`super::functions`]):
//!
//! | Flink | Rewritten |
//! |---|---|
//! | `FLOOR(t TO unit)` | `floor_to(t, 'UNIT')` |
//! | `CEIL(t TO unit)` | `ceil_to(t, 'UNIT')` |
//! | `TIMESTAMPADD(unit, n, t)` | `TIMESTAMPADD('UNIT', n, t)` |
//! | `TIMESTAMPDIFF(unit, t1, t2)` | `TIMESTAMPDIFF('UNIT', t1, t2)` |
//!
//! The unit is passed as written (upper case); the functions refuse one they
//! do not take when the query is planned, naming the units they take.
//! Queries and computed columns are rewritten alike; a `WATERMARK` expression
//! needs no rewriting, as Strom reads it without planning it (`c` or
//! `c - INTERVAL ...`).

use std::ops::ControlFlow;

use sqlparser::ast::{self, CeilFloorKind, DateTimeField, Expr, Spanned};

use super::functions::{CEIL_TO, FLOOR_TO};

/// Rewrites Flink's syntax that DataFusion lacks; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkSyntax;

impl ast::VisitorMut for FlinkSyntax {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Floor {
                expr: operand,
                field: CeilFloorKind::DateTimeField(field),
            } if *field != DateTimeField::NoDateTime => {
                *expr = round_to(FLOOR_TO, operand, field);
            }
            Expr::Ceil {
                expr: operand,
                field: CeilFloorKind::DateTimeField(field),
            } if *field != DateTimeField::NoDateTime => {
                *expr = round_to(CEIL_TO, operand, field);
            }
            Expr::Function(function) if takes_a_unit_first(function) => {
                unit_as_string(function);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `name(operand, 'UNIT')`.
fn round_to(name: &str, operand: &Expr, field: &DateTimeField) -> Expr {
    let name = ast::Ident::with_span(operand.span(), name);
    let args = vec![operand.clone(), string(unit_name(field))];
    Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![name]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|arg| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The unit as Flink names it: `WEEK`, not `WEEK(MONDAY)`; a plural as its
/// singular.
fn unit_name(field: &DateTimeField) -> String {
    let name = match field {
        DateTimeField::Year | DateTimeField::Years => "YEAR",
        DateTimeField::Quarter => "QUARTER",
        DateTimeField::Month | DateTimeField::Months => "MONTH",
        DateTimeField::Week(_) | DateTimeField::Weeks => "WEEK",
        DateTimeField::Day | DateTimeField::Days => "DAY",
        DateTimeField::Hour | DateTimeField::Hours => "HOUR",
        DateTimeField::Minute | DateTimeField::Minutes => "MINUTE",
        DateTimeField::Second | DateTimeField::Seconds => "SECOND",
        other => return other.to_string().to_ascii_uppercase(),
    };
    name.to_owned()
}

/// Whether `function` is `TIMESTAMPADD` or `TIMESTAMPDIFF` with a unit (an
/// unquoted identifier) as its first argument.
fn takes_a_unit_first(function: &ast::Function) -> bool {
    let [ast::ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return false;
    };
    let named = name.quote_style.is_none()
        && (name.value.eq_ignore_ascii_case("TIMESTAMPADD")
            || name.value.eq_ignore_ascii_case("TIMESTAMPDIFF"));
    named && first_unit(function).is_some()
}

/// The first argument of `function`, if it is an unquoted identifier.
fn first_unit(function: &ast::Function) -> Option<&ast::Ident> {
    let ast::FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.first()? {
        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Identifier(unit)))
            if unit.quote_style.is_none() =>
        {
            Some(unit)
        }
        _ => None,
    }
}

/// The unit of `TIMESTAMPADD(unit, ...)` as a string literal, upper case.
fn unit_as_string(function: &mut ast::Function) {
    let Some(unit) = first_unit(function).map(|unit| unit.value.to_ascii_uppercase()) else {
        return;
    };
    if let ast::FunctionArguments::List(list) = &mut function.args
        && let Some(first) = list.args.first_mut()
    {
        *first = ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(string(unit)));
    }
}

fn string(text: String) -> Expr {
    Expr::Value(ast::Value::SingleQuotedString(text).with_empty_span())
}

#[cfg(test)]
mod tests {
    use sqlparser::parser::Parser;

    use super::*;
    use crate::sql::dialect::FlinkDialect;

    fn rewritten(sql: &str) -> String {
        let mut expr = Parser::new(&FlinkDialect)
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        let _ = ast::VisitMut::visit(&mut expr, &mut FlinkSyntax);
        expr.to_string()
    }

    #[test]
    fn floor_and_ceil_to_a_unit_become_calls() {
        assert_eq!(rewritten("FLOOR(ts TO HOUR)"), "floor_to(ts, 'HOUR')");
        assert_eq!(rewritten("CEIL(ts TO month)"), "ceil_to(ts, 'MONTH')");
        assert_eq!(rewritten("FLOOR(ts TO WEEK)"), "floor_to(ts, 'WEEK')");
        assert_eq!(rewritten("FLOOR(ts TO DAYS)"), "floor_to(ts, 'DAY')");
        // Nested, and inside other expressions.
        assert_eq!(
            rewritten("CEIL(FLOOR(ts TO DAY) TO SECOND) + INTERVAL '1' HOUR"),
            "ceil_to(floor_to(ts, 'DAY'), 'SECOND') + INTERVAL '1' HOUR"
        );
        // A unit the functions do not take is passed on, for them to refuse.
        assert_eq!(
            rewritten("FLOOR(ts TO MILLENNIUM)"),
            "floor_to(ts, 'MILLENNIUM')"
        );
        // Numbers are DataFusion's.
        assert_eq!(rewritten("FLOOR(x)"), "FLOOR(x)");
        assert_eq!(rewritten("CEIL(x)"), "CEIL(x)");
        assert_eq!(rewritten("FLOOR(x, 2)"), "FLOOR(x, 2)");
    }

    #[test]
    fn the_unit_of_timestampadd_and_timestampdiff_becomes_a_string() {
        assert_eq!(
            rewritten("TIMESTAMPADD(MONTH, 1, ts)"),
            "TIMESTAMPADD('MONTH', 1, ts)"
        );
        assert_eq!(
            rewritten("timestampdiff(day, a, b)"),
            "timestampdiff('DAY', a, b)"
        );
        assert_eq!(
            rewritten("TIMESTAMPDIFF(SECOND, a, TIMESTAMPADD(hour, -2, b))"),
            "TIMESTAMPDIFF('SECOND', a, TIMESTAMPADD('HOUR', -2, b))"
        );
        // A quoted name is a column.
        assert_eq!(
            rewritten("TIMESTAMPADD(`unit`, 1, ts)"),
            "TIMESTAMPADD(`unit`, 1, ts)"
        );
        assert_eq!(rewritten("OTHER(MONTH, 1)"), "OTHER(MONTH, 1)");
    }
}
