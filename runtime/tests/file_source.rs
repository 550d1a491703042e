//! Counting the words of files read by the file source, at several parallelisms.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::local_config;
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{FileSource, PipelineFn, RestoreFrom, run_job};

#[test]
fn word_counts_over_files_are_the_same_at_parallelism_1_and_3() {
    let input = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for file in 0..5 {
        let mut text = String::new();
        for line in 0..2000 {
            let words: Vec<String> = (0..4)
                .map(|w| format!("w{}", (file * 7 + line * 3 + w) % 50))
                .collect();
            for word in &words {
                *expected.entry(word.clone()).or_default() += 1;
            }
            text.push_str(&words.join(" "));
            text.push('\n');
        }
        std::fs::write(input.path().join(format!("part-{file}.txt")), text).unwrap();
    }
    for parallelism in [1, 3] {
        let state = tempfile::tempdir().unwrap();
        let counts = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
        let sink = Arc::clone(&counts);
        let dir = input.path().to_path_buf();
        let pipeline: PipelineFn = Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let sink = Arc::clone(&sink);
            let files = FileSource::new(&dir).expect("input files");
            pipeline
                .source("lines", files)?
                .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
                .key_by(|word: &String| word.clone())
                .count("words")?
                .sink(move |_, batch| {
                    let mut counts = sink.lock().unwrap();
                    for (word, count) in batch {
                        let entry = counts.entry(word).or_default();
                        *entry = count.max(*entry);
                    }
                });
            Ok(())
        });
        let config = local_config(
            state.path(),
            "files",
            parallelism,
            Duration::from_millis(50),
            2,
            RestoreFrom::Nothing,
        );
        let report = run_job(config, pipeline, Arc::default()).unwrap();
        assert_eq!(
            report.records_in,
            5 * 2000,
            "lines read at parallelism {parallelism}"
        );
        assert_eq!(
            *counts.lock().unwrap(),
            expected,
            "counts at parallelism {parallelism}"
        );
    }
}

/// Issue 14, point 11: a file added between runs is read from its start, and the
/// files read before keep their positions (splits are named by file, not by their
/// index in the listing).
#[test]
fn a_file_added_between_runs_is_read_whole_and_the_others_are_not_read_again() {
    let input = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let lines = |name: &str, count: usize| -> Vec<String> {
        (0..count).map(|n| format!("{name}-{n}")).collect()
    };
    let write = |name: &str, lines: &[String]| {
        std::fs::write(input.path().join(name), lines.join("\n") + "\n").unwrap();
    };
    write("b.txt", &lines("b", 500));
    write("c.txt", &lines("c", 800));
    let run = |restore: RestoreFrom| -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let dir = input.path().to_path_buf();
        let pipeline: PipelineFn = Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let sink = Arc::clone(&sink);
            pipeline
                .source("lines", FileSource::new(&dir).expect("input files"))?
                .sink(move |_, batch| sink.lock().unwrap().extend(batch));
            Ok(())
        });
        let config = local_config(
            state.path(),
            "files",
            2,
            Duration::from_millis(50),
            2,
            restore,
        );
        run_job(config, pipeline, Arc::default()).unwrap();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        seen
    };
    let mut expected = [lines("b", 500), lines("c", 800)].concat();
    expected.sort();
    assert_eq!(run(RestoreFrom::Nothing), expected);

    // A file that sorts first and is longer than the others.
    let added = lines("a", 2000);
    write("a.txt", &added);
    let mut expected = added.clone();
    expected.sort();
    assert_eq!(
        run(RestoreFrom::LatestCheckpoint),
        expected,
        "after a restore, exactly the added file is read"
    );
}
