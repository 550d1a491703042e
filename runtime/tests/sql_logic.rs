//! SQL cases in sqllogictest form (`runtime/tests/slt/*.slt`, run by the
//! `sqllogictest` crate), each query run as a streaming job over bounded input
//! and its final table (changelog applied) compared with the expected rows.
//!
//! - `statement ok` / `statement error <regex>` then DDL (tables, views, SET):
//!   kept for the file's later records when it plans; a `statement error` of a
//!   query or INSERT expects compiling it (with the file's DDL) to fail;
//! - `query <one letter per column> [rowsort]` then a query, `----`, and the
//!   expected rows: columns separated by one space, NULL for null.
//!
//! `${DATA}` in SQL stands for `runtime/tests/slt/data`. Queries run at
//! parallelism 2.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::local_config;
use sqllogictest::{DB, DBOutput, DefaultColumnType, Runner};
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};

fn with_semicolon(sql: &str) -> String {
    let sql = sql.trim();
    if sql.ends_with(';') {
        sql.to_owned()
    } else {
        format!("{sql};")
    }
}

/// Applies the printed changelog rows (`+I[a, b]`, `-U[...]`, ...): the final
/// rows, as `a b`.
fn final_rows(printed: &[String]) -> Result<Vec<String>, String> {
    let mut table: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = Vec::new();
    for line in printed {
        let (kind, row) = line.split_at(2);
        let row = row
            .strip_prefix('[')
            .and_then(|row| row.strip_suffix(']'))
            .ok_or_else(|| format!("not a printed row: {line}"))?
            .split(", ")
            .collect::<Vec<_>>()
            .join(" ");
        match kind {
            "+I" | "+U" => {
                *table.entry(row.clone()).or_default() += 1;
                order.push(row);
            }
            "-U" | "-D" => match table.get_mut(&row) {
                Some(count) if *count > 0 => *count -= 1,
                _ => return Err(format!("{line} retracts a row that is not there")),
            },
            other => return Err(format!("unknown row kind {other}")),
        }
    }
    // In emission order, each row as often as it remains.
    let mut rows = Vec::new();
    for row in order {
        if let Some(count) = table.get_mut(&row)
            && *count > 0
        {
            *count -= 1;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Runs `script` to its end at parallelism 2: its printed lines.
fn run(script: &str) -> Result<Vec<String>, String> {
    let job = strom_runtime::sql::compile(script).map_err(|error| error.to_string())?;
    let state = tempfile::tempdir().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&printed);
    let config = local_config(
        state.path(),
        "slt",
        2,
        Duration::from_millis(100),
        1,
        RestoreFrom::Nothing,
    );
    run_job(
        config,
        job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line))),
        Arc::new(JobControl::default()),
    )
    .map_err(|error| error.to_string())?;
    let lines = printed.lock().unwrap().clone();
    Ok(lines)
}

/// A "database" for the sqllogictest runner: the DDL of the file so far, and
/// each query run as a job with it.
struct Strom {
    ddl: String,
    data: PathBuf,
}

/// Why a statement or query failed.
#[derive(Debug)]
struct Failed(String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

impl DB for Strom {
    type Error = Failed;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failed> {
        let sql = sql.replace("${DATA}", &self.data.display().to_string());
        let script = format!("{}\n{}", self.ddl, with_semicolon(&sql));
        let (_, jobs) = strom_runtime::sql::script::parse_script(&script)
            .and_then(strom_runtime::sql::catalog::Catalog::build)
            .map_err(|error| Failed(error.to_string()))?;
        if jobs.is_empty() {
            // Declarations only: kept for the file's later records.
            self.ddl = script;
            return Ok(DBOutput::StatementComplete(0));
        }
        let printed = run(&script).map_err(Failed)?;
        let rows: Vec<Vec<String>> = final_rows(&printed)
            .map_err(Failed)?
            .into_iter()
            .map(|row| row.split(' ').map(str::to_owned).collect())
            .collect();
        let columns = rows.first().map_or(0, Vec::len);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows,
        })
    }
}

#[test]
fn sql_logic_cases_give_their_expected_rows() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let data = root.join("data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", root.display());
    let mut failures = Vec::new();
    for file in &files {
        let data = data.clone();
        let mut runner = Runner::new(move || {
            let data = data.clone();
            async move {
                Ok(Strom {
                    ddl: String::new(),
                    data,
                })
            }
        });
        if let Err(error) = runner.run_file(file) {
            failures.push(format!("{}: {error}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
