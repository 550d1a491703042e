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

/// A client-side `kubectl apply` stores the whole object, as JSON, in an
/// annotation of at most 256 KiB: the CRD must stay well under it (the PodSpec in
/// `podTemplate.spec` is kept without its descriptions for that).
#[test]
fn the_crd_fits_a_client_side_kubectl_apply() {
    let crd = serde_json::to_string(&strom_crds::crd::stream_job_crd()).unwrap();
    let limit = 256 * 1024;
    assert!(
        crd.len() < limit * 3 / 4,
        "the CRD is {} bytes as JSON, near the {limit} bytes kubectl apply can store",
        crd.len()
    );
}

/// `kubectl get streamjobs` says why a job is not ready (issue 17, point 6): the
/// Ready condition's reason, and with `-o wide` its message.
#[test]
fn the_printer_columns_show_why_a_job_is_not_ready() {
    let crd = strom_crds::crd::stream_job_crd();
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default();
    let column = |name: &str| {
        columns
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} column in {columns:?}"))
            .clone()
    };
    let reason = column("Reason");
    assert_eq!(
        reason.json_path,
        ".status.conditions[?(@.type==\"Ready\")].reason"
    );
    assert_eq!(reason.priority, None);
    let message = column("Message");
    assert_eq!(
        message.json_path,
        ".status.conditions[?(@.type==\"Ready\")].message"
    );
    assert_eq!(message.priority, Some(1));
}
