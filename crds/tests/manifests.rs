//! Manifests against the StreamJob API: every example is accepted and round-trips;
//! every manifest in `tests/invalid/` is rejected with the message it names.
//!
//! The invalid manifests are a table shared with the apiserver tests: each file
//! starts with `# expect: <text>` lines, and the text must appear in the rejection,
//! whether it comes from `strom_crds::manifest` or from a real apiserver.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use strom_crds::manifest::{
    ManifestError, Placement, check_update, is_stream_job, parse_stream_job, parse_stream_job_for,
    read_documents,
};
use strom_crds::{SecretKeyRef, StreamJob};

use strom_e2e::workspace_root;

/// The YAML files of a folder, sorted by name.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Examples named `local-*` are for `strom run`; the others for Kubernetes.
fn placement(path: &Path) -> Placement {
    let name = path.file_name().unwrap().to_string_lossy();
    if name.starts_with("local-") {
        Placement::Local
    } else {
        Placement::Kubernetes
    }
}

fn examples() -> Vec<(PathBuf, String)> {
    let files = yaml_files(&workspace_root().join("examples"));
    assert!(
        files.len() >= 3,
        "expected at least three examples, found {files:?}"
    );
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

#[test]
fn every_example_is_accepted() {
    for (path, text) in examples() {
        if let Err(e) = parse_stream_job_for(&text, placement(&path)) {
            panic!("{} is rejected:\n{e}", path.display());
        }
    }
}

#[test]
fn every_example_round_trips() {
    for (path, text) in examples() {
        let job = parse_stream_job_for(&text, placement(&path)).unwrap();
        let written = serde_json::to_value(&job).unwrap();
        let reread = parse_stream_job_for(&written.to_string(), placement(&path))
            .unwrap_or_else(|e| panic!("{} does not read back:\n{e}", path.display()));
        assert_eq!(job, reread, "{} changes on a round trip", path.display());

        // Nothing the user wrote is lost: every field of the original document is
        // in what the types write back (the types add defaults, never drop fields).
        let original = read_documents(&text)
            .unwrap()
            .into_iter()
            .find(is_stream_job)
            .unwrap();
        assert_contains(&written, &original, &path.display().to_string());
    }
}

/// Asserts that `outer` holds every field and value of `inner`.
fn assert_contains(outer: &Value, inner: &Value, at: &str) {
    match (outer, inner) {
        (Value::Object(outer), Value::Object(inner)) => {
            for (key, value) in inner {
                let at = format!("{at}.{key}");
                let Some(found) = outer.get(key) else {
                    panic!("{at} is dropped on a round trip");
                };
                assert_contains(found, value, &at);
            }
        }
        (Value::Array(outer), Value::Array(inner)) => {
            assert_eq!(outer.len(), inner.len(), "{at} changes length");
            for (i, (o, n)) in outer.iter().zip(inner).enumerate() {
                assert_contains(o, n, &format!("{at}[{i}]"));
            }
        }
        // Quantities such as `memory: 1Gi` and durations come back as written.
        _ => assert_eq!(outer, inner, "{at} changes on a round trip"),
    }
}

#[test]
fn every_secret_an_example_references_is_in_the_example() {
    for (path, text) in examples() {
        let job = parse_stream_job_for(&text, placement(&path)).unwrap();
        let secrets: BTreeMap<String, Value> = read_documents(&text)
            .unwrap()
            .into_iter()
            .filter(|doc| doc["kind"] == "Secret")
            .map(|doc| (doc["metadata"]["name"].as_str().unwrap().to_owned(), doc))
            .collect();
        let needed: Vec<SecretKeyRef> = job
            .spec
            .kafka_clusters
            .iter()
            .flat_map(|cluster| cluster.secret_keys())
            .collect();
        for SecretKeyRef { secret_name, key } in needed {
            let secret = secrets.get(&secret_name).unwrap_or_else(|| {
                panic!(
                    "{}: Secret {secret_name} is referenced but not defined",
                    path.display()
                )
            });
            assert!(
                secret["stringData"].get(&key).is_some() || secret["data"].get(&key).is_some(),
                "{}: Secret {secret_name} has no key {key}",
                path.display()
            );
        }
    }
}

#[test]
fn a_local_run_keeps_state_on_its_own_disk_and_a_job_on_kubernetes_may_not() {
    let manifest = |state: &str| {
        format!(
            "apiVersion: strom.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: local}}\n\
             spec: {{sql: x{state}}}\n"
        )
    };
    for state in ["", ", state: {storage: file:///tmp/strom}"] {
        parse_stream_job_for(&manifest(state), Placement::Local).unwrap();
        assert!(parse_stream_job(&manifest(state)).is_err(), "{state}");
    }
    let on_volume = ", state: {storage: file:///state/jobs, \
                     volume: {claimName: strom-state, mountPath: /state}}";
    parse_stream_job(&manifest(on_volume)).unwrap();
}

#[test]
fn defaults_are_filled_in() {
    let job = parse_stream_job(
        "apiVersion: strom.dev/v1alpha1\nkind: StreamJob\nmetadata: {name: tiny}\n\
         spec: {sql: SELECT 1, state: {storage: s3://bucket/jobs}}\n",
    )
    .unwrap();
    let spec = &job.spec;
    assert_eq!(
        (spec.parallelism, spec.max_parallelism, spec.slots_per_pod),
        (1, 128, 1)
    );
    assert_eq!(spec.state.checkpoint_interval.to_string(), "10s");
    assert_eq!(spec.state.retained_checkpoints, 3);
    assert_eq!(spec.upgrade_mode, strom_crds::UpgradeMode::Savepoint);
    assert_eq!(spec.desired_state, strom_crds::DesiredState::Running);
}

/// The `# expect:` lines at the top of an invalid manifest.
fn expected_messages(text: &str) -> Vec<&str> {
    text.lines()
        .map_while(|line| line.strip_prefix("# expect: "))
        .collect()
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_message() {
    let files = yaml_files(&workspace_root().join("crds/tests/invalid"));
    assert!(
        files.len() >= 20,
        "the table of invalid manifests shrank: {files:?}"
    );
    let mut failures = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let expected = expected_messages(&text);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        match parse_stream_job(&text) {
            Ok(_) => failures.push(format!("{} is accepted", path.display())),
            Err(error) => {
                let message = error.to_string();
                for want in expected {
                    if !message.contains(want) {
                        failures.push(format!(
                            "{}: the rejection lacks {want:?}; it says:\n{message}",
                            path.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn max_parallelism_cannot_change() {
    let (_, text) = examples().into_iter().next().unwrap();
    let old: StreamJob = parse_stream_job(&text).unwrap();

    let mut rescaled = serde_json::to_value(&old).unwrap();
    rescaled["spec"]["parallelism"] = 4.into();
    check_update(&old, rescaled).expect("parallelism may change");

    let mut regrouped = serde_json::to_value(&old).unwrap();
    regrouped["spec"]["maxParallelism"] = (old.spec.max_parallelism * 2).into();
    let error = check_update(&old, regrouped).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("maxParallelism is fixed for the life of a job"),
        "{error}"
    );
}

#[test]
fn a_rejection_lists_every_problem_with_its_field() {
    let text = "apiVersion: strom.dev/v1alpha1\nkind: StreamJob\nmetadata: {name: bad}\n\
                spec: {parallelism: 0, slotsPerPod: 0}\n";
    let error = parse_stream_job(text).unwrap_err();
    let fields: Vec<&str> = error
        .violations()
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(fields.contains(&"spec.parallelism"), "{error}");
    assert!(fields.contains(&"spec.slotsPerPod"), "{error}");
    assert!(fields.contains(&"spec"), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("StreamJob \"bad\" is invalid:"),
        "{error}"
    );
}

#[test]
fn documents_other_than_one_stream_job_are_refused_clearly() {
    assert!(matches!(
        parse_stream_job("kind: Secret\n"),
        Err(ManifestError::NoStreamJob)
    ));
    let two = "apiVersion: strom.dev/v1alpha1\nkind: StreamJob\n---\napiVersion: strom.dev/v1alpha1\nkind: StreamJob\n";
    assert!(matches!(
        parse_stream_job(two),
        Err(ManifestError::SeveralStreamJobs(2))
    ));
    assert!(matches!(
        parse_stream_job("spec: [unclosed"),
        Err(ManifestError::Yaml(_))
    ));
}

#[test]
fn a_stream_job_without_a_name_is_refused() {
    let error =
        parse_stream_job("apiVersion: strom.dev/v1alpha1\nkind: StreamJob\nspec: {sql: x}\n")
            .unwrap_err();
    assert!(
        error.to_string().contains("metadata.name: Required value"),
        "{error}"
    );
}

/// The longest name the job's objects can take is accepted; one more character,
/// or a dot, is not (`invalid/name-*.yaml` hold the refusals' messages).
#[test]
fn a_name_of_52_characters_is_the_longest_accepted() {
    let manifest = |name: &str| {
        format!(
            "apiVersion: strom.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: {name}}}\n\
             spec: {{sql: x, state: {{storage: s3://bucket/jobs}}}}\n"
        )
    };
    let longest = format!("a{}", "-b".repeat(25) + "c");
    assert_eq!(longest.len(), 52);
    parse_stream_job(&manifest(&longest)).unwrap();
    assert!(parse_stream_job(&manifest(&format!("{longest}d"))).is_err());
    assert!(parse_stream_job(&manifest("orders.v2")).is_err());
}
