//! The StreamJob CRD on the real apiserver of `e2e/infra/kubernetes.sh`, driven with
//! `kubectl` as a user would: the CRD installs, server-side dry-run accepts every
//! example and rejects every manifest of `crds/tests/invalid/` with the message its
//! `# expect:` lines name, and `kubectl scale` changes `spec.parallelism` through the
//! scale subresource.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use strom_e2e::{ControlPlane, workspace_root};

/// The control plane with the StreamJob CRD installed and established (once per
/// test binary).
fn control_plane() -> Option<ControlPlane> {
    static INSTALLED: OnceLock<Option<ControlPlane>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let control_plane = ControlPlane::from_env().expect("the control plane")?;
            control_plane
                .install_stream_job_crd()
                .expect("the CRD installs");
            Some(control_plane)
        })
        .clone()
}

fn str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn kubectl(control_plane: &ControlPlane, args: &[&str]) -> Output {
    control_plane
        .kubectl()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", control_plane.kubectl.display()))
}

/// Runs kubectl, which must succeed; returns its standard output.
fn succeed(control_plane: &ControlPlane, args: &[&str]) -> String {
    let output = kubectl(control_plane, args);
    assert!(
        output.status.success(),
        "kubectl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs kubectl, which must fail; returns its standard error.
fn fail(control_plane: &ControlPlane, args: &[&str]) -> String {
    let output = kubectl(control_plane, args);
    assert!(
        !output.status.success(),
        "kubectl {} succeeded, but should have been refused:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

fn yaml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// The texts of a manifest's leading `# expect: <text>` lines.
fn expected_messages(manifest: &str) -> Vec<&str> {
    manifest
        .lines()
        .map_while(|line| line.strip_prefix("# expect: "))
        .collect()
}

/// `kubectl apply` of `manifest` as a server-side dry run, unknown fields refused
/// (`fieldValidation=Strict`).
fn dry_run(manifest: &Path) -> [&str; 6] {
    [
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "--namespace=default",
        "-f",
        str(manifest),
    ]
}

#[test]
fn server_side_dry_run_accepts_every_kubernetes_example_and_refuses_local_ones() {
    let Some(control_plane) = control_plane() else {
        return;
    };
    let examples = yaml_files(&workspace_root().join("examples"));
    assert!(examples.len() >= 3, "examples: {examples:?}");
    for example in examples {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("local-") {
            // For `strom run`: state on the local disk, which a job on
            // Kubernetes may not keep there.
            let out = kubectl(&control_plane, &dry_run(&example));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name} is accepted");
            assert!(
                stderr.contains("state.storage is required")
                    || stderr.contains("file:// storage must be a folder on state.volume"),
                "{name}: {stderr}"
            );
            continue;
        }
        let out = succeed(&control_plane, &dry_run(&example));
        assert!(
            out.contains("streamjob.strom.dev/"),
            "{}: {out}",
            example.display()
        );
    }
}

#[test]
fn server_side_dry_run_rejects_every_invalid_manifest_with_its_message() {
    let Some(control_plane) = control_plane() else {
        return;
    };
    let manifests = yaml_files(&workspace_root().join("crds/tests/invalid"));
    assert!(manifests.len() >= 20, "invalid manifests: {manifests:?}");
    let mut wrong = Vec::new();
    for manifest in &manifests {
        let text = std::fs::read_to_string(manifest).unwrap();
        let expected = expected_messages(&text);
        assert!(
            !expected.is_empty(),
            "{} names no message",
            manifest.display()
        );
        let answer = fail(&control_plane, &dry_run(manifest));
        for message in expected {
            if !answer.contains(message) {
                wrong.push(format!(
                    "{}: expected {message:?} in:\n{answer}",
                    manifest.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn kubectl_scale_changes_the_parallelism_through_the_scale_subresource() {
    let Some(control_plane) = control_plane() else {
        return;
    };
    let namespace = format!(
        "e2e-scale-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    succeed(&control_plane, &["create", "namespace", &namespace]);
    let example = workspace_root().join("examples/pipeline-word-count.yaml");
    succeed(
        &control_plane,
        &["apply", "--namespace", &namespace, "-f", str(&example)],
    );
    let job = "streamjob/word-count";

    succeed(
        &control_plane,
        &["scale", "--namespace", &namespace, job, "--replicas=4"],
    );
    let parallelism = succeed(
        &control_plane,
        &[
            "get",
            "--namespace",
            &namespace,
            job,
            "-o",
            "jsonpath={.spec.parallelism}",
        ],
    );
    assert_eq!(parallelism, "4");
    let scale: serde_json::Value = serde_json::from_str(&succeed(
        &control_plane,
        &[
            "get",
            "--namespace",
            &namespace,
            job,
            "--subresource=scale",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(scale["spec"]["replicas"], 4, "{scale}");

    // The scale subresource goes through the same validation as the object.
    let refused = fail(
        &control_plane,
        &["scale", "--namespace", &namespace, job, "--replicas=0"],
    );
    assert!(
        refused.contains("parallelism must be at least 1"),
        "{refused}"
    );

    succeed(
        &control_plane,
        &["delete", "namespace", &namespace, "--wait=false"],
    );
}
