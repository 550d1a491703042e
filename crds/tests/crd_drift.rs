//! The CRD YAML committed in the Helm chart is exactly what the Rust types generate.

use strom_crds::crd::{CRD_YAML_PATH, stream_job_crd_yaml};

#[test]
fn committed_crd_matches_the_types() {
    let path = strom_e2e::workspace_root().join(CRD_YAML_PATH);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = stream_job_crd_yaml();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{CRD_YAML_PATH} is out of date with the types in crds/src (first difference at \
             line {}). Regenerate it: cargo run -p strom-crds --bin crdgen",
            first_difference + 1
        );
    }
}
