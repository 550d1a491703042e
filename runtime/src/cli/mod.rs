//! The `strom` command line, as a library: the runtime's own binary runs it with the
//! built-in pipelines, and a user's crate runs it with its own pipelines registered
//! (a binary of its own, the entrypoint of its image; see `examples/custom-pipeline`):
//!
//! ```no_run
//! use strom_runtime::pipelines::Pipelines;
//!
//! fn main() -> std::process::ExitCode {
//!     let pipelines = Pipelines::builtin().register("my-pipeline", |args, environment, output| {
//!         # let _ = (args, environment, output);
//!         unimplemented!("build the DataStream pipeline")
//!     });
//!     strom_runtime::cli::main(pipelines)
//! }
//! ```
//!
//! - `strom validate` checks StreamJob manifests as `kubectl apply` would, without a
//!   cluster, and `.sql` scripts as `strom run` takes them;
//! - `strom run` runs a StreamJob in this process (local mode, like Flink's
//!   MiniCluster), or as one process of several (`--process` / `--peers`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strom_crds::manifest::{ManifestError, Placement};

use crate::pipelines::Pipelines;

mod run;

/// Strom: streaming jobs on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "strom", version, about)]
struct Cli {
    /// How log lines are written to stderr: `auto` is text on a terminal, JSON
    /// otherwise (in a pod). `STROM_LOG` filters them (e.g. `info`, `debug`).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check StreamJob manifests against the StreamJob schema and its rules, as
    /// `kubectl apply` would, and print a summary of each job. A `.sql` script is
    /// checked as the job `strom run` makes of it.
    Validate {
        /// Manifest files (YAML; may also hold other documents such as Secrets) or
        /// `.sql` scripts.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// Check manifests as `strom run` takes them, not as `kubectl apply` does:
        /// state may stay on this machine's disk.
        #[arg(long)]
        local: bool,
    },
    /// Run a StreamJob: all of it in this process by default, with state under
    /// spec.state.storage (default: a local folder). Ctrl-C stops it with a savepoint.
    Run(run::RunArgs),
    /// Print the streaming plan of a SQL job (a manifest with spec.sql, or a `.sql`
    /// script): its operators, keys, exchanges and state.
    Explain {
        /// The manifest or script.
        file: PathBuf,
    },
    /// Run one process of a job in a pod (the operator's entrypoint): restarts from
    /// the job's latest checkpoint, or from --from-savepoint when that is newer.
    Worker(run::WorkerArgs),
}

/// Runs the command line of the process's arguments with `pipelines` as the
/// DataStream pipelines a job's `spec.pipeline.name` may name.
pub fn main(pipelines: Pipelines) -> ExitCode {
    // Failpoints named in FAILPOINTS (tests crash the job at chosen points).
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let format = crate::logging::init(cli.log_format);
    let exit_code = |command: &str, result: anyhow::Result<()>| match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // In a pod the failure is one more JSON line of the log.
            if format == crate::logging::LogFormat::Json {
                tracing::error!(command, "failed: {}", describe(&error));
            } else {
                eprintln!("{command}: {}", describe(&error));
            }
            ExitCode::FAILURE
        }
    };
    match cli.command {
        Command::Validate { manifests, local } => {
            let placement = if local {
                Placement::Local
            } else {
                Placement::Kubernetes
            };
            validate(&manifests, placement, &pipelines)
        }
        Command::Run(args) => exit_code("strom run", run::run(args, &pipelines)),
        Command::Worker(args) => exit_code("strom worker", run::worker(args, &pipelines)),
        Command::Explain { file } => exit_code("strom explain", explain(&file)),
    }
}

/// The error and its causes, each cause added only where the text so far does not
/// already hold it (many errors, object_store's among them, print their source).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn explain(path: &Path) -> anyhow::Result<()> {
    let job = run::load_job(path)?;
    let Some(sql) = &job.spec.sql else {
        anyhow::bail!(
            "{}: not a SQL job (spec.pipeline names a compiled pipeline)",
            path.display()
        );
    };
    let compiled = crate::sql::compile(sql)
        .map_err(|error| anyhow::anyhow!("{}: spec.sql: {error}", path.display()))?;
    print!("{}", compiled.plan);
    Ok(())
}

fn validate(paths: &[PathBuf], placement: Placement, pipelines: &Pipelines) -> ExitCode {
    let mut failed = 0;
    for path in paths {
        match validate_file(path, placement, pipelines) {
            Ok(summary) => println!("{}: ok: {summary}", path.display()),
            Err(error) => {
                failed += 1;
                eprintln!("{}: {error}", path.display());
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Why a manifest file or SQL script is not a valid StreamJob.
#[derive(Debug, thiserror::Error)]
enum ValidateError {
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("spec.sql: {0}")]
    Sql(#[from] crate::sql::SqlError),
    #[error("spec.pipeline.name: {0}")]
    Pipeline(crate::pipelines::PipelineError),
}

/// A one-line description of the valid job in `path` (a manifest, or a `.sql`
/// script as the job `strom run` makes of it).
fn validate_file(
    path: &Path,
    placement: Placement,
    pipelines: &Pipelines,
) -> Result<String, ValidateError> {
    let text = std::fs::read_to_string(path)?;
    let job = run::job_of_file(path, &text, placement)?;
    let spec = &job.spec;
    let program = if crate::sql::compile_spec(spec)?.is_some() {
        "sql".to_owned()
    } else if let Some(pipeline) = &spec.pipeline {
        // A pipeline this binary does not have would fail the job's pods.
        if !pipelines.names().contains(&pipeline.name) {
            return Err(ValidateError::Pipeline(
                crate::pipelines::PipelineError::Unknown {
                    name: pipeline.name.clone(),
                    known: pipelines.names(),
                },
            ));
        }
        format!("pipeline {}", pipeline.name)
    } else {
        String::new()
    };
    let clusters: Vec<&str> = spec
        .kafka_clusters
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    Ok(format!(
        "StreamJob {} ({program}), parallelism {} of {} key groups on {} pod(s), kafka clusters [{}]",
        job.metadata.name.as_deref().unwrap_or_default(),
        spec.parallelism,
        spec.max_parallelism,
        spec.pods(),
        clusters.join(", "),
    ))
}
