//! `strom run`: runs a StreamJob manifest with the runtime engine.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::checkpoint::SavepointRetention;
use crate::connectors::kafka::{DEFAULT_SECRETS_ROOT, SecretMounts};
use crate::exec::{JobConfig, JobControl, JobReport, JobSettings, Processes, RestoreFrom, run_job};
use crate::pipelines::{Environment, OutputFn, Pipelines};
use crate::state::Partitioning;
use anyhow::{Context, bail};
use strom_crds::manifest::{ManifestError, Placement, parse_stream_job_for};
use strom_crds::{LATEST, StreamJob, job_storage_url};

use crate::control::ControlToken;

/// Arguments of `strom run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The StreamJob manifest (YAML), or a SQL script (`.sql`) run as a job of
    /// its own with the defaults (parallelism 1, state in a local folder).
    manifest: PathBuf,
    /// Restore from this savepoint or retained checkpoint (a folder or URL), or
    /// `latest`: the newest savepoint or checkpoint of the job (or of the job
    /// `spec.restoreFrom.jobName` names, with `spec.restoreFrom.path: latest`).
    #[arg(long, conflicts_with = "resume")]
    from_savepoint: Option<String>,
    /// Restore from the job's latest completed checkpoint, if there is one.
    #[arg(long)]
    resume: bool,
    /// Run at this parallelism instead of spec.parallelism.
    #[arg(long)]
    parallelism: Option<u32>,
    /// Stop with a savepoint after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_duration)]
    stop_after: Option<Duration>,
    /// Local working folder for RocksDB (default: .strom/local).
    #[arg(long, default_value = ".strom/local")]
    work_dir: PathBuf,
    /// Print the job's output records (by default only progress is shown).
    #[arg(long)]
    print_output: bool,
    /// This process's index among --peers (running as one of several processes).
    #[arg(long, requires = "peers")]
    process: Option<usize>,
    /// host:port of every process, comma-separated, in process order.
    #[arg(long, value_delimiter = ',', requires = "process")]
    peers: Vec<String>,
    /// Serve the control API (status, savepoints, stop, /metrics) on this address,
    /// e.g. 127.0.0.1:8081 (process 0; the other processes serve their /metrics
    /// there when it is free, as in pods).
    #[arg(long)]
    control_address: Option<std::net::SocketAddr>,
    /// The job's run, set by `strom worker`: state lives under
    /// `<storage>/<job>/<run>`, so a stateless redeploy starts empty.
    #[arg(skip)]
    job_id: Option<String>,
    /// Set by `strom worker`: Secrets are mounted one folder per cluster, and a
    /// job stopped with a savepoint waits to be terminated.
    #[arg(skip)]
    in_pod: bool,
    /// Set by `strom worker`: with `--resume`, the job's checkpoint must be there.
    #[arg(skip)]
    expect_state: bool,
    /// Set by `strom worker`: the job whose newest point `--from-savepoint latest`
    /// restores, when not the one the manifest's `restoreFrom` names.
    #[arg(skip)]
    latest_of: Option<String>,
    /// Set by `strom worker`: the token the control API requires to change the job.
    #[arg(skip)]
    control_token: Option<ControlToken>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (use ms, s or m)")),
    }
}

/// The job configuration `strom run` derives from a manifest and its flags.
fn job_config(job: &StreamJob, args: &RunArgs) -> anyhow::Result<JobConfig> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = &job.spec;
    let parallelism = args.parallelism.unwrap_or(spec.parallelism as u32);
    let partitioning = Partitioning::new(parallelism, spec.max_parallelism as u32)
        .with_context(|| format!("parallelism {parallelism}"))?;
    let jobs_url = match &spec.state.storage {
        Some(url) => url.clone(),
        None => format!("file://{}", std::path::absolute(".strom/state")?.display()),
    };
    let mut storage_url = job_storage_url(&jobs_url, &name);
    if let Some(job_id) = &args.job_id {
        storage_url = format!("{storage_url}/{job_id}");
    }
    let restore = match (&args.from_savepoint, args.resume) {
        (Some(path), resume) if path == LATEST => {
            // The job restoreFrom names, when it asks for its latest point.
            let of = args
                .latest_of
                .as_deref()
                .or_else(|| {
                    spec.restore_from
                        .as_ref()
                        .filter(|restore| restore.is_latest())
                        .and_then(|restore| restore.job_name.as_deref())
                })
                .unwrap_or(&name);
            RestoreFrom::LatestOf {
                job_url: job_storage_url(&jobs_url, of),
                resume,
            }
        }
        (Some(path), true) => RestoreFrom::NewestOf(path.clone()),
        (Some(path), false) => RestoreFrom::Snapshot(path.clone()),
        (None, true) if args.expect_state => RestoreFrom::ExistingCheckpoint,
        (None, true) => RestoreFrom::LatestCheckpoint,
        (None, false) => RestoreFrom::Nothing,
    };
    let processes = match args.process {
        None => Processes::Local,
        Some(index) => {
            if index >= args.peers.len() {
                bail!(
                    "--process {index} is not an index into the {} --peers",
                    args.peers.len()
                );
            }
            if !(parallelism as usize).is_multiple_of(args.peers.len()) {
                bail!(
                    "parallelism {parallelism} does not divide among {} processes",
                    args.peers.len()
                );
            }
            Processes::Cluster {
                index,
                addresses: args.peers.clone(),
            }
        }
    };
    Ok(JobConfig {
        settings: JobSettings {
            name,
            namespace: job.metadata.namespace.clone(),
            partitioning,
            checkpoint_interval: spec.state.checkpoint_interval.into(),
            retained_checkpoints: spec.state.retained_checkpoints.max(1) as usize,
            savepoint_retention: SavepointRetention {
                max_count: spec
                    .state
                    .retained_savepoints
                    .map(|count| count.max(1) as usize),
                max_age: spec.state.savepoint_max_age.map(Into::into),
            },
            local_dir: std::path::absolute(&args.work_dir)?,
            storage_options: spec.state.storage_options.clone(),
            allow_non_restored_state: spec.allow_non_restored_state,
        },
        storage_url,
        restore,
        processes,
        control_address: args.control_address,
        control_token: args.control_token.clone(),
    })
}

/// Arguments of `strom worker`, the entrypoint of a job's pods: one process of the
/// job, restarting from the job's latest checkpoint when the pod restarts. Every
/// flag can come from the environment, which is how the operator sets them.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The StreamJob manifest (mounted from the job's ConfigMap).
    #[arg(long, env = "STROM_MANIFEST", default_value = "/etc/strom/job.yaml")]
    manifest: PathBuf,
    /// This pod's process index (default: the ordinal ending the host name, as a
    /// StatefulSet names its pods).
    #[arg(long, env = "STROM_PROCESS_INDEX")]
    process: Option<usize>,
    /// host:port of every pod of the job, comma-separated, in ordinal order.
    #[arg(long, env = "STROM_PEERS", value_delimiter = ',', required = true)]
    peers: Vec<String>,
    /// A savepoint to start from when the job has no newer checkpoint of its own
    /// (after a rescale or an upgrade), or `latest` (see `strom run
    /// --from-savepoint`).
    #[arg(long, env = "STROM_RESTORE_FROM")]
    from_savepoint: Option<String>,
    /// With `--from-savepoint latest`: the job whose newest savepoint or
    /// checkpoint is restored, when not this one (`spec.restoreFrom.jobName`).
    #[arg(long, env = "STROM_RESTORE_LATEST_OF", requires = "from_savepoint")]
    restore_latest_of: Option<String>,
    /// Where process 0 serves the control API.
    #[arg(long, env = "STROM_CONTROL_ADDRESS", default_value = "0.0.0.0:8081")]
    control_address: std::net::SocketAddr,
    /// Local working folder for RocksDB.
    #[arg(long, env = "STROM_WORK_DIR", default_value = "/var/lib/strom")]
    work_dir: PathBuf,
    /// The job's run (the operator's `status.jobId`): state lives under
    /// `<storage>/<job>/<run>`.
    #[arg(long, env = "STROM_JOB_ID")]
    job_id: Option<String>,
    /// The job has completed checkpoints before (the operator saw one): without
    /// `--from-savepoint`, its latest checkpoint must be found, or the worker
    /// fails rather than start with empty state.
    #[arg(long, env = "STROM_EXPECT_STATE")]
    expect_state: bool,
    /// The token the control API's requests that change the job (stop,
    /// savepoints) must carry as `Authorization: Bearer` (from the Secret the
    /// operator makes for the job): read from the file `STROM_CONTROL_TOKEN_FILE`
    /// names at each request, else `STROM_CONTROL_TOKEN` (operators before the
    /// file). Only from the environment: never on a command line, where any
    /// process sees it.
    #[arg(skip = control_token_from_env())]
    control_token: Option<ControlToken>,
}

/// The control token the operator gives a worker: its file, else its value.
fn control_token_from_env() -> Option<ControlToken> {
    match std::env::var_os("STROM_CONTROL_TOKEN_FILE") {
        Some(path) if !path.is_empty() => Some(ControlToken::from_file(path)),
        _ => std::env::var("STROM_CONTROL_TOKEN")
            .ok()
            .and_then(ControlToken::new),
    }
}

/// The ordinal ending a StatefulSet pod's host name (`clicks-2` -> 2).
fn host_ordinal() -> anyhow::Result<usize> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .context("cannot read the host name; pass --process")?;
    ordinal_of(host.trim()).with_context(|| {
        format!(
            "host name {:?} does not end in a pod ordinal; pass --process",
            host.trim()
        )
    })
}

/// The pod ordinal of a StatefulSet pod's host name: the number after the last
/// `-` of its first label (`clicks-2`, or `clicks-2.clicks-peers.ns.svc...` when
/// the pod's host name is its FQDN).
fn ordinal_of(host: &str) -> Option<usize> {
    let name = host.split('.').next()?;
    name.rsplit('-').next()?.parse().ok()
}

/// How long a pod waits for its peers' names to resolve.
const PEER_RESOLUTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until every peer's host name resolves: a StatefulSet's pods start
/// together, and cluster DNS learns each one's address only once its pod has one.
fn wait_for_peers(peers: &[String]) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let started = Instant::now();
    for peer in peers {
        loop {
            let failure = match peer.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(_)) => break,
                Ok(None) => "no address".to_owned(),
                Err(error) => error.to_string(),
            };
            if started.elapsed() >= PEER_RESOLUTION_TIMEOUT {
                bail!(
                    "peer {peer} did not resolve within {}s: {failure}",
                    PEER_RESOLUTION_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
    Ok(())
}

/// Runs one process of a job in a pod.
pub fn worker(args: WorkerArgs, pipelines: &Pipelines) -> anyhow::Result<()> {
    // Every line of a pod's log a structured one, timely's own prints included.
    crate::logging::capture_stdout().context("cannot capture standard output")?;
    let process = match args.process {
        Some(index) => index,
        None => host_ordinal()?,
    };
    let ran = wait_for_peers(&args.peers).and_then(|()| {
        run(
            RunArgs {
                manifest: args.manifest,
                from_savepoint: args.from_savepoint,
                latest_of: args.restore_latest_of,
                resume: true,
                parallelism: None,
                stop_after: None,
                work_dir: args.work_dir,
                print_output: false,
                process: Some(process),
                peers: args.peers,
                control_address: Some(args.control_address),
                job_id: args.job_id,
                in_pod: true,
                expect_state: args.expect_state,
                control_token: args.control_token,
            },
            pipelines,
        )
    });
    crate::logging::finish_stdout_capture();
    ran
}

/// Where the job's Secrets are mounted: `STROM_SECRETS_DIR`, by default where the
/// operator mounts them; in a pod one folder per cluster, as the operator mounts
/// them, else one folder per Secret.
fn secret_mounts(in_pod: bool) -> SecretMounts {
    let root = std::env::var_os("STROM_SECRETS_DIR")
        .map_or_else(|| DEFAULT_SECRETS_ROOT.into(), std::path::PathBuf::from);
    if in_pod {
        SecretMounts::per_cluster(root)
    } else {
        SecretMounts::new(root)
    }
}

/// Runs the job in `args.manifest` until it ends, is stopped by Ctrl-C, or
/// `--stop-after` elapses; prints progress once a second.
pub fn run(args: RunArgs, pipelines: &Pipelines) -> anyhow::Result<()> {
    let job = load_job(&args.manifest)?;
    let (pipeline, program) = match (&job.spec.sql, &job.spec.pipeline) {
        (Some(sql), _) => {
            let secrets = secret_mounts(args.in_pod);
            let compiled = crate::sql::compile(sql)
                .and_then(|mut compiled| {
                    compiled.connect(&job.spec.kafka_clusters, &secrets)?;
                    Ok(compiled)
                })
                .with_context(|| format!("{}: spec.sql", args.manifest.display()))?;
            // A SQL job's printed rows are its output: the print connector is
            // what the script asked for.
            let output: OutputFn = Arc::new(|line| println!("{line}"));
            (compiled.pipeline(output), "sql".to_owned())
        }
        (None, Some(pipeline_spec)) => {
            let print_output = args.print_output;
            let output: OutputFn = Arc::new(move |line| {
                if print_output {
                    println!("{line}");
                }
            });
            let secrets = secret_mounts(args.in_pod);
            let environment = Environment {
                kafka_clusters: &job.spec.kafka_clusters,
                secrets: &secrets,
            };
            let pipeline = pipelines.build(
                &pipeline_spec.name,
                &pipeline_spec.args,
                environment,
                output,
            )?;
            (pipeline, format!("pipeline {}", pipeline_spec.name))
        }
        (None, None) => bail!(
            "{}: the job has neither spec.sql nor spec.pipeline",
            args.manifest.display()
        ),
    };
    let config = job_config(&job, &args)?;
    tracing::info!(
        job = %config.settings.name,
        %program,
        parallelism = config.settings.partitioning.parallelism(),
        key_groups = config.settings.partitioning.max_parallelism(),
        state = %config.storage_url,
        "job starting"
    );

    let control = Arc::new(JobControl::default());
    if args.in_pod {
        control.serve_after_stop();
    }
    handle_signals(Arc::clone(&control))?;
    let finished = Arc::new(AtomicBool::new(false));
    let style = if args.in_pod {
        ProgressStyle::LogLines
    } else {
        ProgressStyle::Terminal
    };
    let progress = show_progress(
        Arc::clone(&control),
        Arc::clone(&finished),
        args.stop_after,
        style,
    );
    let result = run_job(config, pipeline, Arc::clone(&control));
    finished.store(true, Ordering::SeqCst);
    let _ = progress.join();
    let report = result?;
    print_report(&report);
    if let Some(failure) = report.snapshots.failure {
        bail!("the job reported a failure: {failure}");
    }
    Ok(())
}

/// The job in `path`, to run here (see [`Placement::Local`]): a StreamJob
/// manifest, or a SQL script (`.sql`) as a job named after the file, with the
/// defaults of a manifest that gives only its SQL.
pub fn load_job(path: &std::path::Path) -> anyhow::Result<StreamJob> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    job_of_file(path, &text, Placement::Local).with_context(|| path.display().to_string())
}

/// Whether `path` names a SQL script (`.sql`, in any case) rather than a manifest.
pub fn is_sql_script(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("sql"))
}

/// The job that `text`, read from `path`, holds: the StreamJob of a manifest, or
/// for a SQL script (see [`is_sql_script`]) a job named after the file (its stem
/// in lower case, `-` for other characters than letters and digits) with the
/// defaults of a manifest that gives only its SQL (parallelism 1), checked for
/// `placement` (a script always runs here). What `strom run`, `strom explain` and
/// `strom validate` take.
pub fn job_of_file(
    path: &std::path::Path,
    text: &str,
    placement: Placement,
) -> Result<StreamJob, ManifestError> {
    if !is_sql_script(path) {
        return parse_stream_job_for(text, placement);
    }
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        name = "sql".to_owned();
    }
    let manifest = serde_json::json!({
        "apiVersion": "strom.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": name},
        "spec": {"parallelism": 1, "sql": text},
    });
    parse_stream_job_for(&manifest.to_string(), Placement::Local)
}

/// Ctrl-C stops the job with a savepoint (a second one aborts). SIGTERM, which a pod
/// gets when it is deleted, ends the process at once: the job resumes from its
/// latest checkpoint, and a job stopped with a savepoint has nothing left to do. (As
/// a container's first process, ignoring it would hold the pod for its whole grace
/// period.)
fn handle_signals(control: Arc<JobControl>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut terminate = runtime.block_on(async { signal(SignalKind::terminate()) })?;
    thread::Builder::new()
        .name("strom-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    interrupted = tokio::signal::ctrl_c() => {
                        if interrupted.is_ok() {
                            tracing::info!("interrupted: stopping with a savepoint (Ctrl-C again to abort)");
                            control.request_stop();
                            tokio::select! {
                                _ = tokio::signal::ctrl_c() => exit_now(130),
                                _ = terminate.recv() => exit_now(143),
                            }
                        }
                    }
                    _ = terminate.recv() => {
                        tracing::info!("terminated");
                        exit_now(143);
                    }
                }
            });
        })?;
    Ok(())
}

/// Ends the process on a signal, the lines printed so far logged first.
fn exit_now(code: i32) -> ! {
    crate::logging::finish_stdout_capture();
    std::process::exit(code)
}

/// How progress is shown: rewriting one line on a terminal every second, or (in a
/// pod, whose log takes structured lines) a `progress` event every ten seconds.
#[derive(Clone, Copy)]
enum ProgressStyle {
    Terminal,
    LogLines,
}

fn show_progress(
    control: Arc<JobControl>,
    finished: Arc<AtomicBool>,
    stop_after: Option<Duration>,
    style: ProgressStyle,
) -> thread::JoinHandle<()> {
    let every = match style {
        ProgressStyle::Terminal => Duration::from_secs(1),
        ProgressStyle::LogLines => Duration::from_secs(10),
    };
    thread::spawn(move || {
        let started = Instant::now();
        let mut last = (Instant::now(), 0);
        while !finished.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
            if stop_after.is_some_and(|limit| started.elapsed() >= limit)
                && !control.stop_requested()
            {
                tracing::info!("--stop-after reached: stopping with a savepoint");
                control.request_stop();
            }
            if last.0.elapsed() < every {
                continue;
            }
            let records = control.records_in();
            let rate = (records - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), records);
            let checkpoint =
                control
                    .snapshots()
                    .last_checkpoint
                    .map_or("none yet".to_owned(), |c| {
                        format!(
                            "epoch {} ({} KiB, {} ms)",
                            c.epoch,
                            c.state_bytes / 1024,
                            c.duration_ms
                        )
                    });
            match style {
                ProgressStyle::Terminal => {
                    eprint!(
                        "\r{:>6.0}s  {:>10.0} records/s  {:>12} records  epoch {:>5}  last checkpoint {checkpoint}   ",
                        started.elapsed().as_secs_f64(),
                        rate,
                        records,
                        control.epoch()
                    );
                    let _ = std::io::stderr().flush();
                }
                ProgressStyle::LogLines => tracing::info!(
                    records,
                    records_per_second = rate.round(),
                    epoch = control.epoch(),
                    last_checkpoint = %checkpoint,
                    "progress"
                ),
            }
        }
        if matches!(style, ProgressStyle::Terminal) {
            eprintln!();
        }
    })
}

fn print_report(report: &JobReport) {
    println!(
        "records read: {}, records written: {}",
        report.records_in, report.records_out
    );
    if let Some(checkpoint) = &report.snapshots.last_checkpoint {
        println!(
            "last checkpoint: epoch {} at {}",
            checkpoint.epoch, checkpoint.location
        );
    }
    for savepoint in &report.snapshots.savepoints {
        println!(
            "savepoint: {} (epoch {}, {} bytes of state)",
            savepoint.location, savepoint.epoch, savepoint.state_bytes
        );
        println!(
            "resume with: strom run <manifest> --from-savepoint {}",
            savepoint.location
        );
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal_of;

    #[test]
    fn the_ordinal_is_read_from_a_short_or_a_fully_qualified_host_name() {
        assert_eq!(ordinal_of("clicks-2"), Some(2));
        assert_eq!(ordinal_of("my-job-12"), Some(12));
        assert_eq!(
            ordinal_of("clicks-3.clicks-peers.analytics.svc.cluster.local"),
            Some(3)
        );
        assert_eq!(ordinal_of("clicks"), None);
        assert_eq!(ordinal_of("clicks-x.peers"), None);
    }
}
