//! The Java sides of the comparisons (`bench/flink`, `bench/kstreams`): Maven
//! projects built here, their dependencies from Maven Central into the local
//! Maven repository, each run a `java` process that prints one result line.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// A built Maven project: its classes and dependencies.
pub struct JavaProject {
    name: String,
    classpath: String,
}

impl JavaProject {
    /// Builds the Maven project in `project` (tests skipped) and reads its
    /// classpath.
    pub fn build(project: &Path) -> anyhow::Result<Self> {
        let pom = project.join("pom.xml");
        println!("building {} with Maven", pom.display());
        let built = Command::new("mvn")
            .args(["-q", "-B", "-DskipTests", "-f"])
            .arg(&pom)
            .args([
                "package",
                "dependency:build-classpath",
                "-Dmdep.outputFile=target/classpath.txt",
            ])
            .output()
            .context("cannot run mvn: Maven and Java 17 are needed for the comparisons")?;
        if !built.status.success() {
            bail!(
                "building {} failed ({}): {}{}",
                pom.display(),
                built.status,
                String::from_utf8_lossy(&built.stdout),
                String::from_utf8_lossy(&built.stderr)
            );
        }
        let target = project.join("target");
        let dependencies = std::fs::read_to_string(target.join("classpath.txt"))
            .context("Maven wrote no classpath")?;
        let classes = std::fs::canonicalize(target.join("classes"))?;
        Ok(Self {
            name: project.display().to_string(),
            classpath: format!("{}:{}", classes.display(), dependencies.trim()),
        })
    }

    /// A `java` command running class `main` on a 2 GiB heap.
    pub fn java(&self, main: &str) -> Command {
        let mut command = Command::new("java");
        command.args(["-Xmx2g", "-cp", &self.classpath, main]);
        command
    }

    /// Runs `command` (made by [`java`](Self::java)) to its end: its standard
    /// output, or an error with its standard error.
    pub fn output(&self, mut command: Command) -> anyhow::Result<String> {
        let output = command.output().context("cannot run java")?;
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }
}

/// What one run measured: the line `{"events": .., "seconds": ..,
/// "peak_rss_bytes": ..}` every run prints last (Strom's and the Java sides').
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Events the run read.
    pub events: u64,
    /// From the job's start to its end.
    pub seconds: f64,
    /// The process's peak resident memory.
    pub peak_rss_bytes: u64,
}

impl Measured {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Events per second and core, for a run at `parallelism`.
    pub fn per_core(&self, parallelism: u32) -> f64 {
        self.rate() / f64::from(parallelism)
    }

    /// Parses the last result line of `output`.
    pub fn parse(output: &str) -> anyhow::Result<Self> {
        let line = output
            .lines()
            .rev()
            .find(|line| line.trim_start().starts_with('{'))
            .context("the run printed no result line")?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let key = format!("\"{name}\":");
            let at = line
                .find(&key)
                .with_context(|| format!("no {name} in {line:?}"))?;
            let rest = line[at + key.len()..].trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E')))
                .unwrap_or(rest.len());
            rest[..end]
                .parse()
                .with_context(|| format!("{name} in {line:?} is not a number"))
        };
        Ok(Self {
            events: field("events")? as u64,
            seconds: field("seconds")?,
            peak_rss_bytes: field("peak_rss_bytes")? as u64,
        })
    }

    /// The result line.
    pub fn line(&self) -> String {
        format!(
            "{{\"events\": {}, \"seconds\": {:.3}, \"peak_rss_bytes\": {}}}",
            self.events, self.seconds, self.peak_rss_bytes
        )
    }
}

/// This process's peak resident memory (`VmHWM`), in bytes; 0 where the system
/// does not say.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_read_from_the_last_one_and_extra_fields_ignored() {
        let output = "log line\n{\"events\": 200000, \"net_runtime_ms\": 2008, \"seconds\": 2.008, \"peak_rss_bytes\": 634769408}\n";
        let measured = Measured::parse(output).unwrap();
        assert_eq!(measured.events, 200_000);
        assert!((measured.seconds - 2.008).abs() < 1e-9);
        assert_eq!(measured.peak_rss_bytes, 634_769_408);
        let again = Measured::parse(&measured.line()).unwrap();
        assert_eq!(again.events, measured.events);
        assert!(Measured::parse("no result").is_err());
        assert!(Measured::parse("{\"events\": 1}").is_err());
    }
}
