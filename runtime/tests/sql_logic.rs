//! SQL cases in sqllogictest form (`runtime/tests/slt/*.slt`), each query run as a
//! streaming job over bounded input and its final table (changelog applied)
//! compared with the expected rows.
//!
//! Records, separated by blank lines (`#` starts a comment line):
//! - `statement ok` then SQL: DDL (tables, views, SET) kept for the file's later
//!   records;
//! - `statement error <text>` then SQL: compiling the file's DDL and this SQL
//!   fails with an error containing `<text>`;
//! - `query <one letter per column> [rowsort]` then a query, `----`, and the
//!   expected rows: columns separated by one space, NULL for null, sorted when
//!   `rowsort` (the job's rows are then sorted too; without it they must come in
//!   order, which only a single-row result can promise on a stream).
//!
//! `${DATA}` in SQL stands for `runtime/tests/slt/data`. Queries run at
//! parallelism 2.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::local_config;
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};

/// One record of a `.slt` file.
#[derive(Debug)]
enum Record {
    Statement {
        sql: String,
    },
    StatementError {
        expected: String,
        sql: String,
    },
    Query {
        columns: usize,
        rowsort: bool,
        sql: String,
        expected: Vec<String>,
    },
}

/// A record and the line it starts at.
type Located = (usize, Record);

fn parse(text: &str, data: &Path) -> Vec<Located> {
    let text = text.replace("${DATA}", &data.display().to_string());
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            index += 1;
            continue;
        }
        let start = index + 1;
        let header = line.to_owned();
        index += 1;
        let mut body = Vec::new();
        while index < lines.len() && !lines[index].trim().is_empty() {
            body.push(lines[index].trim_end());
            index += 1;
        }
        let record = if header == "statement ok" {
            Record::Statement {
                sql: body.join("\n"),
            }
        } else if let Some(expected) = header.strip_prefix("statement error ") {
            Record::StatementError {
                expected: expected.trim().to_owned(),
                sql: body.join("\n"),
            }
        } else if let Some(spec) = header.strip_prefix("query ") {
            let mut words = spec.split_whitespace();
            let types = words.next().expect("query <types>");
            let rowsort = words.next() == Some("rowsort");
            let separator = body
                .iter()
                .position(|line| *line == "----")
                .unwrap_or_else(|| panic!("line {start}: a query without ----"));
            Record::Query {
                columns: types.len(),
                rowsort,
                sql: body[..separator].join("\n"),
                expected: body[separator + 1..]
                    .iter()
                    .map(|line| line.to_string())
                    .collect(),
            }
        } else {
            panic!("line {start}: unknown record {header:?}");
        };
        records.push((start, record));
    }
    records
}

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

/// Runs the records of `file`; the failures, each naming its line.
fn run_file(file: &Path, data: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut ddl = String::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    for (line, record) in parse(&text, data) {
        cases += 1;
        let at = format!("{name}:{line}");
        match record {
            Record::Statement { sql } => {
                let script = format!("{ddl}\n{}", with_semicolon(&sql));
                match strom_runtime::sql::script::parse_script(&script)
                    .and_then(strom_runtime::sql::catalog::Catalog::build)
                {
                    Ok(_) => ddl = script,
                    Err(error) => failures.push(format!("{at}: statement failed: {error}")),
                }
            }
            Record::StatementError { expected, sql } => {
                let script = format!("{ddl}\n{}", with_semicolon(&sql));
                match strom_runtime::sql::compile(&script) {
                    Ok(_) => failures.push(format!("{at}: compiled, expected an error")),
                    Err(error) if error.to_string().contains(&expected) => {}
                    Err(error) => failures.push(format!(
                        "{at}: expected an error containing {expected:?}, got: {error}"
                    )),
                }
            }
            Record::Query {
                columns,
                rowsort,
                sql,
                mut expected,
            } => {
                let script = format!("{ddl}\n{}", with_semicolon(&sql));
                let result = run(&script).and_then(|printed| final_rows(&printed));
                match result {
                    Err(error) => failures.push(format!("{at}: {error}")),
                    Ok(mut rows) => {
                        if let Some(row) = rows.iter().find(|row| row.split(' ').count() < columns)
                        {
                            failures
                                .push(format!("{at}: {columns} columns expected, got row {row:?}"));
                            continue;
                        }
                        if rowsort {
                            rows.sort();
                            expected.sort();
                        }
                        if rows != expected {
                            failures.push(format!(
                                "{at}: expected\n  {}\ngot\n  {}",
                                expected.join("\n  "),
                                rows.join("\n  ")
                            ));
                        }
                    }
                }
            }
        }
    }
    (cases, failures)
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
    let mut cases = 0;
    let mut failures = Vec::new();
    for file in &files {
        let (count, failed) = run_file(file, &data);
        cases += count;
        failures.extend(failed);
    }
    eprintln!("{cases} sqllogictest records in {} files", files.len());
    assert!(
        failures.is_empty(),
        "{} of {cases} records failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
