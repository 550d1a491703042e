mod common;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use common::local_config;
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};

fn run(script: &str, parallelism: u32) -> Result<Vec<String>, String> {
    let job = strom_runtime::sql::compile(script).map_err(|error| error.to_string())?;
    let state = tempfile::tempdir().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&printed);
    let config = local_config(state.path(), "probe", parallelism, Duration::from_millis(100), 1, RestoreFrom::Nothing);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(
        config,
        job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line))),
        Arc::new(JobControl::default()),
    )));
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("job error: {e}")),
        Err(_) => return Err("panicked".into()),
    }
    let lines = printed.lock().unwrap().clone();
    Ok(lines)
}

#[test]
fn probe() {
    let dir = std::env::var("PROBE_DIR").unwrap_or("/tmp/probe".into());
    let scripts = std::fs::read_to_string(format!("{dir}/scripts.sql")).unwrap();
    let ddl = std::fs::read_to_string(format!("{dir}/ddl.sql")).unwrap();
    for (i, q) in scripts.split("\n----\n").enumerate() {
        let q = q.trim();
        if q.is_empty() { continue; }
        let script = format!("{ddl}\n{q}");
        println!("=== [{i}] {q}");
        match strom_runtime::sql::compile(&script) {
            Ok(job) => println!("plan: {}", job.plan),
            Err(e) => { println!("COMPILE ERROR: {e}"); continue; }
        }
        match run(&script, 1) {
            Ok(lines) => for l in lines { println!("  {l}"); },
            Err(e) => println!("RUN ERROR: {e}"),
        }
    }
}
