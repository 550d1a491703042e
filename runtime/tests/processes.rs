//! `strom run` as three OS processes over loopback TCP gives the same results as one
//! process.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn strom() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strom"))
}

/// A bounded clicks-per-user job: 16 splits of 1500 clicks.
fn write_manifest(dir: &Path, parallelism: u32) -> String {
    let path = dir.join(format!("job-{parallelism}.yaml"));
    let state = dir.join(format!("state-{parallelism}"));
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks
spec:
  parallelism: {parallelism}
  slotsPerPod: 1
  pipeline:
    name: clicks-per-user
    args:
      clicksPerSecond: "100000"
      clicksPerSplit: "1500"
      users: "300"
  state:
    checkpointInterval: 100ms
    storage: file://{}
"#,
            state.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The final count per user printed in `outputs` ("user U: N clicks" lines).
fn final_counts(outputs: &[Output]) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for output in outputs {
        assert!(
            output.status.success(),
            "strom run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some(rest) = line.strip_prefix("user ") else {
                continue;
            };
            let (user, clicks) = rest.split_once(": ").unwrap();
            let clicks: u64 = clicks.trim_end_matches(" clicks").parse().unwrap();
            let entry = counts.entry(user.parse().unwrap()).or_insert(0);
            *entry = clicks.max(*entry);
        }
    }
    counts
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn three_processes_over_tcp_count_like_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let single = strom()
        .args([
            "run",
            &write_manifest(dir.path(), 1),
            "--print-output",
            "--work-dir",
        ])
        .arg(dir.path().join("work-1"))
        .output()
        .unwrap();
    let expected = final_counts(&[single]);
    assert_eq!(expected.values().sum::<u64>(), 16 * 1500);

    let manifest = write_manifest(dir.path(), 3);
    let peers: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let children: Vec<_> = (0..3)
        .map(|process| {
            strom()
                .args([
                    "run",
                    &manifest,
                    "--print-output",
                    "--process",
                    &process.to_string(),
                ])
                .args(["--peers", &peers.join(",")])
                .arg("--work-dir")
                .arg(dir.path().join(format!("work-3-{process}")))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Read all three at once: a process blocked on a full pipe stalls the others.
    let readers: Vec<_> = children
        .into_iter()
        .map(|child| std::thread::spawn(move || child.wait_with_output().unwrap()))
        .collect();
    let outputs: Vec<Output> = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    assert_eq!(
        final_counts(&outputs),
        expected,
        "three processes counted differently"
    );
}
