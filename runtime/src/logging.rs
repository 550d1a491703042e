//! The runtime's log: every `tracing` event of the runtime and librdkafka's own
//! log lines, on stderr, as JSON lines (one object per event, for a pod's log
//! collector) or as text (for a terminal). `STROM_LOG` (or `RUST_LOG`) filters
//! them with `tracing`'s directives (`info` by default, e.g.
//! `STROM_LOG=info,strom_runtime::connectors=debug`).

use std::io::IsTerminal;

use rdkafka::config::RDKafkaLogLevel;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise (in a pod).
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The filter used when neither `STROM_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info";

/// Installs the log for this process (once; later calls change nothing) and
/// returns the format chosen (`Json` or `Text`). In JSON, panics are logged as
/// error events too, so a pod's log stays one object per line.
pub fn init(format: LogFormat) -> LogFormat {
    let filter = ["STROM_LOG", "RUST_LOG"]
        .iter()
        .find_map(|variable| {
            let directives = std::env::var(variable).ok()?;
            EnvFilter::try_new(directives).ok()
        })
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests start several jobs in one process) keeps the first.
    if json {
        if builder.json().with_current_span(false).try_init().is_ok() {
            std::panic::set_hook(Box::new(|panic| {
                let location = panic.location().map(ToString::to_string);
                let message = panic
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                let thread = std::thread::current().name().map(str::to_owned);
                tracing::error!(location, thread, "panicked: {message}");
            }));
        }
        LogFormat::Json
    } else {
        let _ = builder.try_init();
        LogFormat::Text
    }
}

/// One of librdkafka's own log lines, as a `tracing` event of its level
/// (target `librdkafka`, the facility as a field).
pub fn librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Turns what this process writes to its standard output into log events (target
/// `stdout`, one per line): in a pod every line of `kubectl logs` is then a
/// structured one, also those printed by code that is not ours (timely's networking
/// prints its connection progress) and the rows of SQL `print` tables. Only for
/// `strom worker`: `strom run` prints a job's output on its standard output.
/// [`finish_stdout_capture`] logs what is still on its way before the process ends
/// (also when it ends on SIGTERM).
pub fn capture_stdout() -> std::io::Result<()> {
    use std::io::BufRead;
    let (reader, writer) = std::io::pipe()?;
    rustix::stdio::dup2_stdout(&writer)?;
    drop(writer);
    let reader = std::thread::Builder::new()
        .name("strom-stdout".into())
        .spawn(move || {
            let mut reader = std::io::BufReader::new(reader);
            let mut line = Vec::new();
            // Until the last writer is gone: bytes that are not UTF-8 are replaced,
            // never a reason to stop reading (a writer would then fail on a closed
            // pipe).
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        tracing::info!(target: "stdout", "{}", text.trim_end_matches(['\n', '\r']));
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the standard output any more");
                        break;
                    }
                }
            }
        })?;
    *STDOUT_READER.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader);
    Ok(())
}

/// The thread of [`capture_stdout`], while it runs.
static STDOUT_READER: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(None);

/// Logs what was printed and not yet logged, if standard output is captured:
/// flushes it, points it at `/dev/null` (the pipe's last writer goes) and waits
/// for the reader. Later prints go nowhere.
pub fn finish_stdout_capture() {
    use std::io::Write;
    let Some(reader) = STDOUT_READER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null")
        && rustix::stdio::dup2_stdout(&null).is_ok()
    {
        let _ = reader.join();
    }
}
