//! Issue 18: a stop before a rescale hands its savepoint over instead of copying
//! it (the copy was the largest phase of a 1 GB rescale). The savepoint is written
//! at once and refers to the final checkpoint's files, a pin keeps that checkpoint
//! from garbage collection, and the run restoring the savepoint copies the files
//! in beside its own checkpoints: then the savepoint is self-contained and the
//! checkpoint is collected as usual.
//!
//! A test binary of its own, its tests one at a time: the failpoint is
//! process-wide.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{
    checkpoints_completed, final_counts, local_config, start, stop_and_join, wait_for_records,
};
use strom_runtime::api::Pipeline;
use strom_runtime::exec::{
    Generator, JobConfig, JobError, JobReport, PipelineFn, RestoreFrom, run_job,
};

const SPLITS: u32 = 8;
const USERS: u64 = 300;
const PER_SPLIT: u64 = 3000;
/// The first runs' rate: their input lasts 4.8 s, so a stop lands mid-run.
const FIRST_RATE: u64 = 5000;

/// One test at a time: they share the failpoint.
static SERIAL: Mutex<()> = Mutex::new(());

/// Everything the sinks of a run saw: (user, running count).
type Output = Arc<Mutex<Vec<(u64, u64)>>>;

fn user_of(split: u32, n: u64) -> u64 {
    (u64::from(split) * 7919 + n * 104_729) % USERS
}

/// Clicks per user, `PER_SPLIT` per split, at `rate` records/s when given.
fn clicks_per_user(rate: Option<u64>, output: Output) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut generator = Generator::new(SPLITS, user_of).bounded(PER_SPLIT);
        if let Some(rate) = rate {
            generator = generator.rate(rate);
        }
        let output = Arc::clone(&output);
        pipeline
            .source("clicks", generator)?
            .key_by(|&user| user)
            .count("clicks-per-user")?
            .sink(move |_epoch, batch| output.lock().unwrap().extend(batch));
        Ok(())
    })
}

fn config(state: &Path, parallelism: u32, restore: RestoreFrom) -> JobConfig {
    // One retained checkpoint: without its pin, the checkpoint a borrowed
    // savepoint refers to goes with the restored run's first checkpoint.
    local_config(
        state,
        "clicks",
        parallelism,
        Duration::from_millis(50),
        1,
        restore,
    )
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

fn local_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").expect("a file:// URL"))
}

fn manifest_at(folder: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(folder.join("_manifest")).unwrap()).unwrap()
}

fn is_borrowed(folder: &Path) -> bool {
    manifest_at(folder)["borrowed"] == serde_json::json!(true)
}

/// The stored paths (relative to the job's root) of the table and RocksDB files
/// the manifest in `folder` names.
fn named_files(folder: &Path) -> Vec<String> {
    let manifest = manifest_at(folder);
    let mut paths = Vec::new();
    for subtasks in manifest["operators"].as_object().unwrap().values() {
        for subtask in subtasks.as_array().unwrap() {
            for file in subtask["files"].as_array().unwrap() {
                paths.push(file["path"].as_str().unwrap().to_owned());
            }
        }
    }
    paths
}

/// Waits (a minute at most) for the stopping job's report (`stop_and_join` would
/// ask for a plain stop).
fn join(job: thread::JoinHandle<Result<JobReport, JobError>>) -> JobReport {
    wait_until("the job stopped", || job.is_finished());
    job.join().unwrap().unwrap()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within a minute");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_handed_over_savepoint_restores_at_a_new_parallelism_and_its_restorer_completes_it() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let state = tempfile::tempdir().unwrap();
    let storage = state.path().join("storage");
    // The first run, then the run that goes on from its savepoint to the end.
    let lineage = Output::default();
    let total = PER_SPLIT * u64::from(SPLITS);

    let (savepoint, read_first) = run_then_hand_over(state.path(), Arc::clone(&lineage));
    assert!(read_first < total, "the first run read everything");
    let folder = local_path(&savepoint);

    // Handed over: its manifest alone, referring to the checkpoint's files, which
    // a pin keeps.
    assert_eq!(files_under(&folder), ["_manifest"]);
    assert!(is_borrowed(&folder));
    assert_eq!(manifest_at(&folder)["formatVersion"], 3);
    let borrowed_files = named_files(&folder);
    assert!(!borrowed_files.is_empty(), "no state in the savepoint");
    let pins = files_under(&storage.join("pins"));
    assert_eq!(pins.len(), 1, "one pin: {pins:?}");

    // The next run restores it at parallelism 4 and checkpoints on while its
    // completion is held back: the pinned files stay, one retained checkpoint
    // or not. (At 300 records/s its input lasts past the completion.)
    fail::cfg("borrowed-savepoint-delay", "return(10000)").unwrap();
    let sideline = Output::default();
    let (control, job) = start(
        config(state.path(), 4, RestoreFrom::Snapshot(savepoint.clone())),
        clicks_per_user(Some(300), Arc::clone(&sideline)),
    );
    wait_until("five checkpoints of the restored run", || {
        checkpoints_completed(&control) >= 5
    });
    fail::cfg("borrowed-savepoint-delay", "off").unwrap();
    assert!(is_borrowed(&folder), "completed before the delay ended");
    for path in &borrowed_files {
        assert!(
            storage.join(path).is_file(),
            "{path} of the borrowed savepoint was collected"
        );
    }

    // Completed: the savepoint holds its files, its pin is gone, and the
    // checkpoint it borrowed from is collected like any other.
    wait_until("the savepoint completed", || !is_borrowed(&folder));
    assert_eq!(manifest_at(&folder)["formatVersion"], 2);
    assert!(files_under(&storage.join("pins")).is_empty());
    for path in named_files(&folder) {
        assert!(folder.join(&path).is_file(), "{path} not copied in");
    }
    wait_until("the borrowed checkpoint's files collected", || {
        borrowed_files
            .iter()
            .filter(|path| path.starts_with("shared/"))
            .all(|path| !storage.join(path).exists())
    });
    stop_and_join(&control, job);

    // Self-contained: moved out of its job, whose folder is then deleted, it
    // still restores, and that run reads exactly what the first one had not.
    let moved = state.path().join("elsewhere");
    std::fs::create_dir_all(&moved).unwrap();
    let moved = moved.join(folder.file_name().unwrap());
    std::fs::rename(&folder, &moved).unwrap();
    std::fs::remove_dir_all(&storage).unwrap();
    let last = run_job(
        config(
            state.path(),
            1,
            RestoreFrom::Snapshot(format!("file://{}", moved.display())),
        ),
        clicks_per_user(None, Arc::clone(&lineage)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        read_first + last.records_in,
        total,
        "records read twice or never across the hand-over"
    );
    let counts = final_counts(&lineage.lock().unwrap());
    assert_eq!(counts.values().sum::<u64>(), total);
}

/// Runs the job in `state` until it has read a record and checkpointed after it,
/// then stops it handing its savepoint over; the savepoint's URL and the records
/// read.
fn run_then_hand_over(state: &Path, output: Output) -> (String, u64) {
    let (control, job) = start(
        config(state, 2, RestoreFrom::Nothing),
        clicks_per_user(Some(FIRST_RATE), output),
    );
    wait_for_records(&control, 1);
    let read_before = checkpoints_completed(&control);
    wait_until("a checkpoint after the first record", || {
        checkpoints_completed(&control) > read_before
    });
    control.request_stop_handing_over();
    let report = join(job);
    let savepoint = report.snapshots.savepoints.last().expect("a savepoint");
    (savepoint.location.clone(), report.records_in)
}

#[test]
fn a_run_in_another_folder_that_ends_by_itself_completes_the_savepoint_it_restored() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // A rollback, or a new restoreFrom, deploys under a new job id: no run comes
    // to the old folder again, so the run that restored the savepoint completes
    // it there; one whose input ends waits for that before it ends.
    let state = tempfile::tempdir().unwrap();
    let lineage = Output::default();
    let (savepoint, read_first) = run_then_hand_over(state.path(), Arc::clone(&lineage));
    let folder = local_path(&savepoint);
    assert!(is_borrowed(&folder));

    let mut elsewhere = config(state.path(), 3, RestoreFrom::Snapshot(savepoint.clone()));
    elsewhere.storage_url = format!("file://{}", state.path().join("new-job-id").display());
    let report = run_job(
        elsewhere,
        clicks_per_user(None, Arc::clone(&lineage)),
        Arc::default(),
    )
    .unwrap();

    assert!(
        !is_borrowed(&folder),
        "the restored savepoint is still borrowed"
    );
    assert!(files_under(&state.path().join("storage/pins")).is_empty());
    for path in named_files(&folder) {
        assert!(folder.join(&path).is_file(), "{path} not copied in");
    }
    let total = PER_SPLIT * u64::from(SPLITS);
    assert_eq!(read_first + report.records_in, total);
    let counts = final_counts(&lineage.lock().unwrap());
    assert_eq!(counts.values().sum::<u64>(), total);
}
