//! PNG charts of the figures, drawn by `bench/plot.py` with matplotlib (installed
//! from PyPI into `~/.cache/strom/bench-venv` on first use).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The matplotlib release the charts are drawn with.
const MATPLOTLIB: &str = "matplotlib==3.11.2";

/// One bar: its group (a label on the x axis), its series (a colour) and its
/// value.
pub struct Bar {
    /// The group of bars it stands in.
    pub group: String,
    /// The series it belongs to.
    pub series: String,
    /// Its height.
    pub value: f64,
}

/// The Python of the benchmark's virtual environment, made (with matplotlib)
/// when missing.
fn python() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let venv = Path::new(&home).join(".cache/strom/bench-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import matplotlib"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    println!("installing {MATPLOTLIB} into {}", venv.display());
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("cannot run python3: Python 3 draws the charts")?;
    if !made.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "-q", MATPLOTLIB])
        .status()?;
    if !installed.success() || !ready(&python) {
        bail!("installing {MATPLOTLIB} failed");
    }
    Ok(python)
}

/// A CSV field in quotes (commas and quotes in it kept).
fn quoted(field: &str) -> String {
    format!("\"{}\"", field.replace('"', "\"\""))
}

/// Draws `bars` as a grouped bar chart into the PNG `out`.
pub fn bars(bars: &[Bar], out: &Path, title: &str, ylabel: &str) -> anyhow::Result<()> {
    let mut csv = String::from("group,series,value\n");
    for bar in bars {
        writeln!(
            csv,
            "{},{},{}",
            quoted(&bar.group),
            quoted(&bar.series),
            bar.value
        )?;
    }
    let data = out.with_extension("csv");
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&data, csv)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plot.py");
    let status = Command::new(python()?)
        .arg(script)
        .arg(&data)
        .arg(out)
        .args([title, ylabel])
        .status()?;
    if !status.success() {
        bail!("drawing {} failed", out.display());
    }
    Ok(())
}
