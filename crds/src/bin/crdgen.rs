//! Writes the StreamJob CRD YAML into the Helm chart, or prints it with `--stdout`.
//!
//! Run from anywhere in the workspace: `cargo run -p strom-crds --bin crdgen`.

use std::path::PathBuf;
use std::process::ExitCode;

use strom_crds::crd::{CRD_YAML_PATH, stream_job_crd_yaml};

fn main() -> ExitCode {
    let yaml = stream_job_crd_yaml();
    if std::env::args().any(|a| a == "--stdout") {
        print!("{yaml}");
        return ExitCode::SUCCESS;
    }
    // The clone cargo runs us from (not the one this binary was first built in).
    let Some(package) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        eprintln!("run me with cargo run -p strom-crds --bin crdgen");
        return ExitCode::FAILURE;
    };
    let path = PathBuf::from(package).join("..").join(CRD_YAML_PATH);
    match std::fs::write(&path, yaml) {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
