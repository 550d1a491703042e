//! Flink's group window aggregations (the form before window table functions,
//! still common in Flink SQL code):
//!
//! ```sql
//! SELECT user, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS w, COUNT(*)
//! FROM clicks GROUP BY user, TUMBLE(ts, INTERVAL '1' MINUTE)
//! ```
//!
//! rewritten, before planning, into the window table function form Strom plans
//! (see [`window_tvf`](super::window_tvf)):
//!
//! ```sql
//! SELECT user, window_start AS w, COUNT(*)
//! FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
//! GROUP BY user, window_start, window_end
//! ```
//!
//! `TUMBLE(t, size)`, `HOP(t, slide, size)` and `SESSION(t, gap)` in `GROUP BY`;
//! `<window>_START`, `<window>_END` and `<window>_ROWTIME` anywhere in the
//! SELECT list or HAVING become `window_start`, `window_end` and
//! `window_time`. The input is the one table or view in `FROM` (with its
//! alias); a session window is kept per GROUP BY key, as Flink's is.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Query,
    SelectItem, SetExpr, TableFactor,
};
use sqlparser::parser::Parser;

use super::dialect::FlinkDialect;
use super::window_tvf::{WINDOW_END, WINDOW_START, WINDOW_TIME};

/// The group window functions and the window table function each becomes.
const GROUP_WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// What `*_PROCTIME` would become: refused.
const PROCTIME: &str = "proctime";

/// Rewrites every group window aggregation in `query` (its subqueries too)
/// into the window table function form; a group window Strom cannot rewrite
/// is refused with what to write instead.
pub fn rewrite(query: &mut Query) -> Result<(), String> {
    match ast::VisitMut::visit(query, &mut GroupWindows) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(message) => Err(message),
    }
}

struct GroupWindows;

impl ast::VisitorMut for GroupWindows {
    type Break = String;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<String> {
        let mut inputs = Vec::new();
        if let Err(message) = rewrite_body(&mut query.body, &mut inputs) {
            return ControlFlow::Break(message);
        }
        if !inputs.is_empty() {
            let with = query.with.get_or_insert_with(|| ast::With {
                with_token: ast::helpers::attached_token::AttachedToken::empty(),
                recursive: false,
                cte_tables: Vec::new(),
            });
            with.cte_tables.extend(inputs);
        }
        ControlFlow::Continue(())
    }

    /// An auxiliary function left over is one without its group window.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        if let Some((window, _)) = auxiliary(expr) {
            return ControlFlow::Break(format!(
                "{} needs GROUP BY {window}(...) in the same SELECT (a group window); or use the window table function TABLE({window}(TABLE t, DESCRIPTOR(time column), ...)) and its window_start / window_end columns",
                function_name(expr).unwrap_or_default()
            ));
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites the group windows of `body`; a windowed subquery in FROM becomes a
/// common table expression added to `inputs` (the window table function takes
/// a named input).
fn rewrite_body(body: &mut SetExpr, inputs: &mut Vec<ast::Cte>) -> Result<(), String> {
    match body {
        SetExpr::Select(select) => rewrite_select(select, inputs),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_body(left, inputs)?;
            rewrite_body(right, inputs)
        }
        _ => Ok(()),
    }
}

/// A group window: its function (`TUMBLE`, ...), the time column and the
/// interval arguments, and its text (for messages).
struct GroupWindow {
    function: String,
    time: Ident,
    intervals: Vec<Expr>,
    text: String,
}

/// Whether the auxiliary call `expr` takes `window`'s arguments: the same time
/// column (qualified or not) and the same intervals.
fn same_window(expr: &Expr, window: &GroupWindow) -> bool {
    let Some(args) = arguments(expr) else {
        return false;
    };
    let Some((time, intervals)) = args.split_first() else {
        return false;
    };
    let time = match time {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(parts) if !parts.is_empty() => &parts[parts.len() - 1],
        _ => return false,
    };
    time.value == window.time.value
        && intervals.len() == window.intervals.len()
        && intervals
            .iter()
            .zip(&window.intervals)
            .all(|(given, expected)| given.to_string() == expected.to_string())
}

fn rewrite_select(select: &mut ast::Select, inputs: &mut Vec<ast::Cte>) -> Result<(), String> {
    let GroupByExpr::Expressions(groups, _) = &mut select.group_by else {
        return Ok(());
    };
    let windows: Vec<usize> = groups
        .iter()
        .enumerate()
        .filter(|(_, expr)| {
            function_name(expr)
                .is_some_and(|name| GROUP_WINDOWS.contains(&name.to_ascii_uppercase().as_str()))
        })
        .map(|(index, _)| index)
        .collect();
    let index = match windows.as_slice() {
        [] => return Ok(()),
        [index] => *index,
        _ => {
            return Err(
                "a GROUP BY has at most one group window (TUMBLE, HOP or SESSION)".to_owned(),
            );
        }
    };
    let window = group_window(&groups[index])?;
    groups.splice(
        index..=index,
        [identifier(WINDOW_START), identifier(WINDOW_END)],
    );
    select.from = vec![windowed_from(&mut select.from, &window, inputs)?];
    for (position, item) in select.projection.iter_mut().enumerate() {
        // An auxiliary function selected as is keeps Flink's name for it.
        if let SelectItem::UnnamedExpr(expr) = item
            && auxiliary(expr).is_some()
        {
            let mut expr = expr.clone();
            replace_auxiliaries(&mut expr, &window)?;
            *item = SelectItem::ExprWithAlias {
                expr,
                alias: Ident::new(format!("EXPR${position}")),
            };
            continue;
        }
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                replace_auxiliaries(expr, &window)?;
            }
            _ => {}
        }
    }
    if let Some(having) = &mut select.having {
        replace_auxiliaries(having, &window)?;
    }
    // A selected `*_ROWTIME` (window_time) is grouped by, as the window table
    // functions require.
    let uses_time = |expr: &Expr| {
        ast::visit_expressions(expr, |expr| match expr {
            Expr::Identifier(ident) if ident.value == WINDOW_TIME => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    let selects_time = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => uses_time(expr),
        _ => false,
    }) || select.having.as_ref().is_some_and(uses_time);
    if selects_time && let GroupByExpr::Expressions(groups, _) = &mut select.group_by {
        groups.insert(index + 2, identifier(WINDOW_TIME));
    }
    Ok(())
}

/// The group window `expr` (`TUMBLE(ts, INTERVAL '1' MINUTE)`).
fn group_window(expr: &Expr) -> Result<GroupWindow, String> {
    let function = function_name(expr).unwrap_or_default().to_ascii_uppercase();
    let usage = match function.as_str() {
        "TUMBLE" => "TUMBLE(time column, size)",
        "HOP" => "HOP(time column, slide, size)",
        _ => "SESSION(time column, gap)",
    };
    let args = arguments(expr).ok_or_else(|| format!("GROUP BY {usage}: arguments missing"))?;
    let Some((time, intervals)) = args.split_first() else {
        return Err(format!("GROUP BY {usage}: arguments missing"));
    };
    let time = match time {
        Expr::Identifier(ident) => ident.clone(),
        Expr::CompoundIdentifier(parts) if !parts.is_empty() => parts[parts.len() - 1].clone(),
        other => {
            return Err(format!(
                "GROUP BY {usage}: the time column must be a column of the input, not {other}"
            ));
        }
    };
    let expected = match function.as_str() {
        "HOP" => 2,
        _ => 1,
    };
    if intervals.len() != expected {
        return Err(format!(
            "GROUP BY {usage}: {} interval arguments given",
            intervals.len()
        ));
    }
    Ok(GroupWindow {
        function,
        time,
        intervals: intervals.iter().map(|expr| (*expr).clone()).collect(),
        text: expr.to_string(),
    })
}

/// `FROM t [AS a]` as `FROM TABLE(<window>(TABLE t, DESCRIPTOR(time), ...)) [AS a]`;
/// `FROM (subquery) [AS a]` the same over a common table expression of the
/// subquery, added to `inputs`.
fn windowed_from(
    from: &mut [ast::TableWithJoins],
    window: &GroupWindow,
    inputs: &mut Vec<ast::Cte>,
) -> Result<ast::TableWithJoins, String> {
    let refuse = || {
        format!(
            "GROUP BY {}(...) (a group window) needs one table, view or subquery in FROM, without joins; or use the window table function TABLE({}(TABLE t, DESCRIPTOR(time column), ...))",
            window.function, window.function
        )
    };
    let [from] = from else {
        return Err(refuse());
    };
    if !from.joins.is_empty() {
        return Err(refuse());
    }
    let (name, alias, subquery) = match &mut from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => (name.to_string(), alias.clone(), None),
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => {
            let name = format!("__group_window_input_{}", inputs.len());
            (name, alias.clone(), Some(subquery.clone()))
        }
        _ => return Err(refuse()),
    };
    let intervals: Vec<String> = window.intervals.iter().map(ToString::to_string).collect();
    let with = subquery
        .as_ref()
        .map_or_else(String::new, |_| format!("WITH {name} AS (SELECT 1) "));
    let text = format!(
        "{with}SELECT * FROM TABLE({}(TABLE {name}, DESCRIPTOR({}), {}))",
        window.function,
        window.time,
        intervals.join(", ")
    );
    let query = Parser::new(&FlinkDialect)
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|error| format!("rewriting the group window as {text}: {error}"))?;
    // Columns renamed by the alias (`AS s(x, a)`) are the input's: the
    // subquery's common table expression takes them (a table with renamed
    // columns is refused above).
    let alias = alias.map(|mut alias| {
        let columns = std::mem::take(&mut alias.columns);
        (alias, columns)
    });
    let (alias, columns) = match alias {
        Some((alias, columns)) => (Some(alias), columns),
        None => (None, Vec::new()),
    };
    if let Some(subquery) = subquery {
        let mut cte = query
            .with
            .clone()
            .and_then(|with| with.cte_tables.into_iter().next())
            .expect("the text has a WITH");
        cte.query = subquery;
        cte.alias.columns = columns;
        inputs.push(cte);
    } else if !columns.is_empty() {
        return Err(refuse());
    }
    let SetExpr::Select(select) = *query.body else {
        unreachable!("the text is a SELECT");
    };
    let mut windowed = select.from.into_iter().next().expect("the text has a FROM");
    if let TableFactor::TableFunction {
        alias: windowed_alias,
        ..
    } = &mut windowed.relation
    {
        windowed_alias.clone_from(&alias);
    }
    Ok(windowed)
}

/// Replaces the auxiliary functions of `window` in `expr` by the window's
/// columns; one of another window is refused.
fn replace_auxiliaries(expr: &mut Expr, window: &GroupWindow) -> Result<(), String> {
    let flow = ast::visit_expressions_mut(expr, |expr| {
        let Some((function, column)) = auxiliary(expr) else {
            return ControlFlow::Continue(());
        };
        if function != window.function || !same_window(expr, window) {
            return ControlFlow::Break(format!(
                "{} does not belong to GROUP BY {}: an auxiliary function takes its group window's arguments",
                expr, window.text
            ));
        }
        if column == PROCTIME {
            return ControlFlow::Break(format!(
                "{expr}: processing-time windows are not supported yet: Strom's windows run on event time"
            ));
        }
        *expr = identifier(column);
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(message) => Err(message),
    }
}

/// For an auxiliary function (`TUMBLE_START(...)`): its window function and the
/// column it becomes ([`PROCTIME`] for `*_PROCTIME`, which is refused).
fn auxiliary(expr: &Expr) -> Option<(String, &'static str)> {
    let name = function_name(expr)?.to_ascii_uppercase();
    let (window, part) = name.rsplit_once('_')?;
    if !GROUP_WINDOWS.contains(&window) {
        return None;
    }
    let column = match part {
        "START" => WINDOW_START,
        "END" => WINDOW_END,
        "ROWTIME" => WINDOW_TIME,
        // Refused by `replace_auxiliaries`: there are no processing-time windows.
        "PROCTIME" => PROCTIME,
        _ => return None,
    };
    Some((window.to_owned(), column))
}

/// The name of the function `expr` calls, if it is a call of a plain name.
fn function_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(function) if function.name.0.len() == 1 => function.name.0[0]
            .as_ident()
            .map(|ident| ident.value.clone()),
        _ => None,
    }
}

/// The plain arguments of the call `expr`.
fn arguments(expr: &Expr) -> Option<Vec<&Expr>> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
            _ => None,
        })
        .collect()
}

fn identifier(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sql` rewritten, as text (a `TABLE t` argument shows as `__table__.t`).
    fn rewritten(sql: &str) -> Result<String, String> {
        let mut query = Parser::new(&FlinkDialect)
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_query())
            .unwrap();
        rewrite(&mut query).map(|()| query.to_string())
    }

    #[test]
    fn group_windows_become_window_table_functions() {
        assert_eq!(
            rewritten(
                "SELECT B.bidder, COUNT(*), SESSION_START(B.dateTime, INTERVAL '10' SECOND), SESSION_END(B.dateTime, INTERVAL '10' SECOND) AS e
                 FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)"
            )
            .unwrap(),
            "SELECT B.bidder, COUNT(*), window_start AS EXPR$2, window_end AS e \
             FROM TABLE(SESSION(__table__.bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) B \
             GROUP BY B.bidder, window_start, window_end"
        );
        assert_eq!(
            rewritten(
                "SELECT auction, HOP_END(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS w FROM (
                   SELECT * FROM t WHERE x > 1) GROUP BY auction"
            )
            .unwrap_err(),
            "HOP_END needs GROUP BY HOP(...) in the same SELECT (a group window); or use the window table function TABLE(HOP(TABLE t, DESCRIPTOR(time column), ...)) and its window_start / window_end columns"
        );
        assert!(
            rewritten(
                "SELECT x FROM (SELECT a AS x, TUMBLE_ROWTIME(`ts`, INTERVAL '1' MINUTE) AS t, COUNT(*) AS n
                 FROM clicks GROUP BY TUMBLE(`ts`, INTERVAL '1' MINUTE), a HAVING COUNT(*) > 1)"
            )
            .unwrap()
            .contains(
                "FROM TABLE(TUMBLE(__table__.clicks, DESCRIPTOR(`ts`), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, window_time, a"
            )
        );
    }

    #[test]
    fn renamed_subquery_columns_and_a_rowtime_in_having_are_kept() {
        let text = rewritten(
            "SELECT a, COUNT(*) FROM (SELECT ts AS t2, auction FROM bid) AS s(x, a)
             GROUP BY TUMBLE(x, INTERVAL '5' SECOND), a
             HAVING TUMBLE_ROWTIME(x, INTERVAL '5' SECOND) > TIMESTAMP '2024-01-01 00:00:00'",
        )
        .unwrap();
        assert!(
            text.starts_with(
                "WITH __group_window_input_0 (x, a) AS (SELECT ts AS t2, auction FROM bid) SELECT a"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "FROM TABLE(TUMBLE(__table__.__group_window_input_0, DESCRIPTOR(x), INTERVAL '5' SECOND)) AS s GROUP BY window_start, window_end, window_time, a HAVING window_time >"
            ),
            "{text}"
        );
    }

    #[test]
    fn group_windows_strom_cannot_rewrite_are_refused_saying_what_to_write() {
        let error = rewritten(
            "SELECT COUNT(*) FROM a JOIN b ON a.k = b.k GROUP BY TUMBLE(a.ts, INTERVAL '1' MINUTE)",
        )
        .unwrap_err();
        assert!(
            error.contains("needs one table, view or subquery in FROM"),
            "{error}"
        );
        let error = rewritten(
            "SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE) FROM t GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)",
        )
        .unwrap_err();
        assert_eq!(
            error,
            "TUMBLE_START(ts, INTERVAL '1' MINUTE) does not belong to GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE): an auxiliary function takes its group window's arguments"
        );
        // Another size, or another column, than the group window's.
        let error = rewritten(
            "SELECT TUMBLE_START(ts, INTERVAL '10' SECOND) FROM t GROUP BY TUMBLE(ts, INTERVAL '5' SECOND)",
        )
        .unwrap_err();
        assert!(
            error.contains("does not belong to GROUP BY TUMBLE(ts, INTERVAL '5' SECOND)"),
            "{error}"
        );
        let error = rewritten(
            "SELECT TUMBLE_END(price, INTERVAL '5' SECOND) FROM t GROUP BY TUMBLE(t.ts, INTERVAL '5' SECOND)",
        )
        .unwrap_err();
        assert!(error.contains("does not belong"), "{error}");
        let error = rewritten(
            "SELECT TUMBLE_PROCTIME(ts, INTERVAL '5' SECOND) FROM t GROUP BY TUMBLE(ts, INTERVAL '5' SECOND)",
        )
        .unwrap_err();
        assert!(
            error.contains("processing-time windows are not supported yet"),
            "{error}"
        );
        let error = rewritten("SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts)").unwrap_err();
        assert!(error.contains("0 interval arguments given"), "{error}");
    }
}
