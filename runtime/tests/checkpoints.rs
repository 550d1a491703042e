//! Keyed state through checkpoints, stop-with-savepoint and restore at another
//! parallelism, on the real engine: timely workers, RocksDB, object storage (file://).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{final_counts, local_config, run_then_stop};
use strom_runtime::api::Pipeline;
use strom_runtime::checkpoint::{CheckpointStorage, SavepointRetention, newest_snapshot};
use strom_runtime::exec::control::SavepointStatus;
use strom_runtime::exec::{
    CompletedSnapshot, Generator, JobConfig, JobError, JobReport, PipelineFn, RestoreFrom, run_job,
};

const SPLITS: u32 = 16;
const USERS: u64 = 500;

/// Everything the sinks of a run saw: (user, running count).
type Output = Arc<Mutex<Vec<(u64, u64)>>>;

/// Click `n` of split `split`: the user who clicked, and a sequence number.
fn click(split: u32, n: u64) -> (u64, u64) {
    let user = (u64::from(split) * 7919 + n * 104_729) % USERS;
    (user, n)
}

/// Clicks per user: a generator of `per_split` clicks per split (rate-limited to
/// `rate` records/s when given), counted per user into `output`.
fn clicks_per_user(per_split: u64, rate: Option<u64>, output: Output) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut generator = Generator::new(SPLITS, click).bounded(per_split);
        if let Some(rate) = rate {
            generator = generator.rate(rate);
        }
        let output = Arc::clone(&output);
        pipeline
            .source("clicks", generator)?
            .key_by(|&(user, _)| user)
            .count("clicks-per-user")?
            .sink(move |_epoch, batch| output.lock().unwrap().extend(batch));
        Ok(())
    })
}

fn config(state: &Path, parallelism: u32, restore: RestoreFrom, retained: usize) -> JobConfig {
    local_config(
        state,
        "clicks",
        parallelism,
        Duration::from_millis(50),
        retained,
        restore,
    )
}

/// The per-user totals computed directly from the generated input.
fn expected_counts(per_split: u64) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for split in 0..SPLITS {
        for n in 0..per_split {
            *counts.entry(click(split, n).0).or_default() += 1;
        }
    }
    counts
}

#[test]
fn the_same_input_gives_the_same_counts_at_parallelism_1_2_and_4() {
    let per_split = 2000;
    let expected = expected_counts(per_split);
    for parallelism in [1, 2, 4] {
        let state = tempfile::tempdir().unwrap();
        let output = Output::default();
        let report = run_job(
            config(state.path(), parallelism, RestoreFrom::Nothing, 3),
            clicks_per_user(per_split, None, Arc::clone(&output)),
            Arc::default(),
        )
        .unwrap();
        assert_eq!(report.records_in, per_split * u64::from(SPLITS));
        let counts = final_counts(&output.lock().unwrap());
        assert_eq!(
            counts, expected,
            "counts differ at parallelism {parallelism}"
        );
        assert!(
            report.snapshots.last_checkpoint.is_some(),
            "no final checkpoint"
        );
    }
}

#[test]
fn counts_survive_stop_with_savepoint_and_restore_at_2_then_4_then_1() {
    let per_split = 3000;
    let total = per_split * u64::from(SPLITS);
    let state = tempfile::tempdir().unwrap();
    let output = Output::default();
    // 20k records/s: the input lasts 2.4 s, so the stops land mid-run.
    let rate = Some(20_000);

    let first = run_then_stop(
        config(state.path(), 2, RestoreFrom::Nothing, 3),
        clicks_per_user(per_split, rate, Arc::clone(&output)),
    );
    let savepoint = first
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();
    assert!(
        first.records_in < total,
        "the first run read everything before the stop"
    );

    let second = run_then_stop(
        config(
            state.path(),
            4,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            3,
        ),
        clicks_per_user(per_split, rate, Arc::clone(&output)),
    );
    let savepoint = second
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();
    assert!(second.records_in > 0, "the second run read nothing");
    assert!(
        first.records_in + second.records_in < total,
        "the second run read everything before the stop"
    );

    let third = run_job(
        config(
            state.path(),
            1,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            3,
        ),
        clicks_per_user(per_split, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        first.records_in + second.records_in + third.records_in,
        total,
        "records read twice or never across the restores"
    );
    let counts = final_counts(&output.lock().unwrap());
    assert_eq!(counts, expected_counts(per_split));
}

#[test]
fn garbage_collection_keeps_what_retained_checkpoints_and_savepoints_need() {
    let state = tempfile::tempdir().unwrap();
    let output = Output::default();
    let first = run_then_stop(
        config(state.path(), 2, RestoreFrom::Nothing, 1),
        clicks_per_user(4000, Some(20_000), Arc::clone(&output)),
    );
    let savepoint = first
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();
    // Many more checkpoints after the savepoint, keeping only the newest: consecutive
    // checkpoints share table files, and an epoch without changes (the final one)
    // refers to the previous checkpoint's files, so collection must look at what
    // the kept checkpoint refers to.
    run_job(
        config(
            state.path(),
            2,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            1,
        ),
        clicks_per_user(4000, Some(40_000), Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();

    let storage_url = format!("file://{}", state.path().join("storage").display());
    let storage = CheckpointStorage::open(&storage_url, &BTreeMap::new()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let completed = storage.completed_checkpoints().await.unwrap();
        assert_eq!(
            completed.len(),
            1,
            "retention keeps one checkpoint: {completed:?}"
        );
        let mut referenced = BTreeSet::new();
        for id in completed {
            let manifest = storage
                .read_manifest(&storage.checkpoint_location(&id))
                .await
                .unwrap();
            referenced.extend(manifest.file_paths().map(str::to_owned));
        }
        let shared = list_files(&state.path().join("storage").join("shared"));
        let shared: BTreeSet<String> = shared
            .into_iter()
            .map(|name| format!("shared/{name}"))
            .collect();
        let referenced_shared: BTreeSet<String> = referenced
            .iter()
            .filter(|path| path.starts_with("shared/"))
            .cloned()
            .collect();
        assert_eq!(
            shared, referenced_shared,
            "shared files differ from what retained checkpoints use"
        );
        for path in &referenced {
            assert!(
                state.path().join("storage").join(path).exists(),
                "{path} was collected but is needed"
            );
        }
    });

    // The latest checkpoint is whole: a restart from it (removing orphans first)
    // opens every operator's state; the input was all read, so nothing is read again.
    let resumed = run_job(
        config(state.path(), 2, RestoreFrom::LatestCheckpoint, 1),
        clicks_per_user(4000, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        resumed.records_in, 0,
        "a restart from the final checkpoint read input again"
    );

    // The savepoint is intact: restoring it gives the state it was taken with.
    let restored_output = Output::default();
    run_job(
        config(
            state.path(),
            1,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            1,
        ),
        clicks_per_user(4000, None, Arc::clone(&restored_output)),
        Arc::default(),
    )
    .unwrap();
    let restored = final_counts_from(&restored_output.lock().unwrap());
    assert_eq!(
        restored,
        expected_counts(4000)
            .into_iter()
            .collect::<BTreeMap<_, _>>()
    );
}

/// The final count per user, without checking the sequence (a run restored from a
/// savepoint starts its counts where the savepoint left them).
fn final_counts_from(output: &[(u64, u64)]) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for &(user, count) in output {
        let entry = counts.entry(user).or_insert(0);
        *entry = count.max(*entry);
    }
    counts
}

fn list_files(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_restarting_pod_prefers_the_newer_of_its_checkpoint_and_its_savepoint() {
    let state = tempfile::tempdir().unwrap();
    let output = Output::default();
    let per_split = 2000;
    let stopped = run_then_stop(
        config(state.path(), 2, RestoreFrom::Nothing, 2),
        clicks_per_user(per_split, Some(20_000), Arc::clone(&output)),
    );
    let savepoint = stopped
        .snapshots
        .savepoints
        .last()
        .unwrap()
        .location
        .clone();
    let rest = per_split * u64::from(SPLITS) - stopped.records_in;

    // Started from the savepoint (the job's own checkpoint is not newer).
    let resumed = run_job(
        config(state.path(), 2, RestoreFrom::NewestOf(savepoint.clone()), 2),
        clicks_per_user(per_split, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(resumed.records_in, rest);

    // Restarted after that: its checkpoints are newer than the savepoint, which
    // is not needed any more: it may have been deleted meanwhile (issue 17).
    let folder = savepoint.strip_prefix("file://").unwrap_or(&savepoint);
    std::fs::remove_dir_all(folder).unwrap();
    let restarted = run_job(
        config(state.path(), 2, RestoreFrom::NewestOf(savepoint), 2),
        clicks_per_user(per_split, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        restarted.records_in, 0,
        "the restart went back to the savepoint"
    );
    assert_eq!(
        final_counts(&output.lock().unwrap()),
        expected_counts(per_split)
    );
}

/// Issue 14, point 2: restoring an older savepoint into the job's own storage folder,
/// which holds newer checkpoints of the abandoned run. The new run's checkpoints
/// must be kept (not ranked below the abandoned run's higher epochs and collected at
/// once), its stop with a savepoint must complete, and a restart from the latest
/// checkpoint must go on from the new run, not from the abandoned one.
#[test]
fn restoring_an_older_savepoint_into_the_same_folder_goes_on_from_the_new_run() {
    let per_split = 3000;
    let total = per_split * u64::from(SPLITS);
    let state = tempfile::tempdir().unwrap();
    let rate = Some(20_000);

    // The first run stops early with a savepoint; a second run restores it and
    // reads everything, leaving checkpoints of high epochs behind.
    let (early, savepoint) = stop_early(state.path(), per_split);
    let abandoned = run_job(
        config(
            state.path(),
            2,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            2,
        ),
        clicks_per_user(per_split, rate, Output::default()),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(early.records_in + abandoned.records_in, total);

    // The user goes back to the early savepoint, in the same folder.
    let output = Output::default();
    let restored = run_then_stop(
        config(
            state.path(),
            2,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            2,
        ),
        clicks_per_user(per_split, rate, Arc::clone(&output)),
    );
    assert!(
        !restored.snapshots.savepoints.is_empty(),
        "the stop of the restored run took no savepoint"
    );
    let resumed = run_job(
        config(state.path(), 2, RestoreFrom::LatestCheckpoint, 2),
        clicks_per_user(per_split, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        early.records_in + restored.records_in + resumed.records_in,
        total,
        "the restart did not go on from the restored run's latest checkpoint"
    );
    // The counts after the savepoint continue where it left them.
    let counts = final_counts_from(&output.lock().unwrap());
    assert_eq!(counts, expected_counts(per_split));
}

/// Review of issue 14, point 2: a run restored from an older savepoint that fails
/// before its first checkpoint leaves `--resume` going on from that savepoint (where
/// the newest run started), not from the abandoned run's later checkpoints.
#[test]
fn resuming_after_a_restored_run_failed_before_its_first_checkpoint_goes_back_to_its_savepoint() {
    let per_split = 3000;
    let total = per_split * u64::from(SPLITS);
    let state = tempfile::tempdir().unwrap();
    let (early, savepoint) = stop_early(state.path(), per_split);
    run_job(
        config(
            state.path(),
            2,
            RestoreFrom::Snapshot(savepoint.location.clone()),
            2,
        ),
        clicks_per_user(per_split, None, Output::default()),
        Arc::default(),
    )
    .unwrap();

    // Restoring the early savepoint again fails at once (the pipeline cannot be
    // built), before any checkpoint.
    let broken = unbuildable_pipeline();
    assert!(
        run_job(
            config(
                state.path(),
                2,
                RestoreFrom::Snapshot(savepoint.location.clone()),
                2
            ),
            broken,
            Arc::default(),
        )
        .is_err()
    );

    let resumed = run_job(
        config(state.path(), 2, RestoreFrom::LatestCheckpoint, 2),
        clicks_per_user(per_split, None, Output::default()),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        early.records_in + resumed.records_in,
        total,
        "the resume did not go on from the savepoint the newest run started from"
    );
}

/// Review of issue 14: a run that resumes where a failed restore of savepoint S
/// started keeps S in its lineage, so a pod restarting with `--resume
/// --from-savepoint S` goes on from that run's checkpoints instead of going back
/// to S (and writing everything since S again).
#[test]
fn a_resume_of_a_failed_restore_keeps_the_savepoint_in_its_lineage() {
    let per_split = 3000;
    let total = per_split * u64::from(SPLITS);
    let state = tempfile::tempdir().unwrap();
    let rate = Some(20_000);
    let (early, savepoint) = stop_early(state.path(), per_split);
    let broken = unbuildable_pipeline();
    let restore_savepoint = RestoreFrom::Snapshot(savepoint.location.clone());
    assert!(
        run_job(
            config(state.path(), 2, restore_savepoint, 2),
            broken,
            Arc::default()
        )
        .is_err()
    );
    let resumed = run_then_stop(
        config(state.path(), 2, RestoreFrom::LatestCheckpoint, 2),
        clicks_per_user(per_split, rate, Output::default()),
    );
    assert!(resumed.records_in > 0);
    let pod = run_job(
        config(
            state.path(),
            2,
            RestoreFrom::NewestOf(savepoint.location.clone()),
            2,
        ),
        clicks_per_user(per_split, None, Output::default()),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(
        early.records_in + resumed.records_in + pod.records_in,
        total,
        "the restarting pod went back to the savepoint"
    );
}

/// Runs the clicks job at parallelism 2 from nothing (20k records/s, 2 retained
/// checkpoints) and stops it with a savepoint after its first checkpoint; the run
/// and its savepoint.
fn stop_early(state: &Path, per_split: u64) -> (JobReport, CompletedSnapshot) {
    let early = run_then_stop(
        config(state, 2, RestoreFrom::Nothing, 2),
        clicks_per_user(per_split, Some(20_000), Output::default()),
    );
    let savepoint = early
        .snapshots
        .savepoints
        .last()
        .expect("a savepoint")
        .clone();
    (early, savepoint)
}

/// A pipeline that cannot be built (an operator name used twice): its run fails
/// after starting, before any checkpoint.
fn unbuildable_pipeline() -> PipelineFn {
    Arc::new(|pipeline: &mut Pipeline<'_>| {
        let generator = || Generator::new(SPLITS, click).bounded(1);
        pipeline.source("clicks", generator())?;
        pipeline.source("clicks", generator())?;
        Ok(())
    })
}

/// Issue 17: a job that has completed checkpoints before never starts empty. Its
/// pods, told so, go on from its checkpoint, and fail when its storage holds
/// none (storage a pod does not share, or emptied) rather than start over.
#[test]
fn a_job_that_checkpointed_before_fails_rather_than_start_empty() {
    let per_split = 3000;
    let total = per_split * u64::from(SPLITS);
    let state = tempfile::tempdir().unwrap();
    let (early, _) = stop_early(state.path(), per_split);
    assert!(early.records_in > 0);
    let resumed = run_job(
        config(state.path(), 2, RestoreFrom::ExistingCheckpoint, 2),
        clicks_per_user(per_split, None, Output::default()),
        Arc::default(),
    )
    .unwrap();
    assert!(
        resumed.records_in < total,
        "the job started over: {} records",
        resumed.records_in
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let error = run_job(
        config(elsewhere.path(), 2, RestoreFrom::ExistingCheckpoint, 2),
        clicks_per_user(per_split, None, Output::default()),
        Arc::default(),
    )
    .unwrap_err();
    assert!(matches!(error, JobError::StateMissing(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("refusing to start with empty state")
    );
}

/// Issue 17, point 9: `restoreFrom: {path: latest}` restores the newest point of
/// any deployment of the job (each under a folder of its own, as the operator
/// lays them out): a job deleted with its final savepoint and created again goes
/// on from it, and its pods, restarting, go on from their own checkpoints.
#[test]
fn latest_restores_the_newest_point_of_any_deployment_of_the_job() {
    let per_split = 3000;
    let total = per_split * u64::from(SPLITS);
    let state = tempfile::tempdir().unwrap();
    let job_url = format!("file://{}", state.path().join("jobs/clicks").display());
    let deployment = |id: &str, restore| JobConfig {
        storage_url: format!("{job_url}/{id}"),
        ..config(state.path(), 2, restore, 2)
    };
    let latest = || RestoreFrom::LatestOf {
        job_url: job_url.clone(),
        resume: true,
    };

    // Nothing there yet: refused, never an empty start.
    let error = run_job(
        deployment("run-a", latest()),
        clicks_per_user(per_split, None, Output::default()),
        Arc::default(),
    )
    .unwrap_err();
    assert!(matches!(error, JobError::NoLatestSnapshot(_)), "{error}");

    let output = Output::default();
    let first = run_then_stop(
        deployment("run-a", RestoreFrom::Nothing),
        clicks_per_user(per_split, Some(20_000), Arc::clone(&output)),
    );
    let final_savepoint = first.snapshots.savepoints.last().unwrap().location.clone();
    let io = tokio::runtime::Runtime::new().unwrap();
    let newest = io
        .block_on(newest_snapshot(&job_url, &BTreeMap::new()))
        .unwrap()
        .expect("a newest point");
    assert_eq!(newest.url, final_savepoint);

    // Created again: a deployment of its own, from the final savepoint.
    let second = run_job(
        deployment("run-b", latest()),
        clicks_per_user(per_split, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(first.records_in + second.records_in, total);
    assert_eq!(
        final_counts(&output.lock().unwrap()),
        expected_counts(per_split)
    );
    let newest = io
        .block_on(newest_snapshot(&job_url, &BTreeMap::new()))
        .unwrap()
        .unwrap();
    assert!(
        newest.url.starts_with(&format!("{job_url}/run-b/")),
        "{}",
        newest.url
    );

    // A pod of that deployment restarting: from its own checkpoint, not back
    // to the savepoint.
    let restarted = run_job(
        deployment("run-b", latest()),
        clicks_per_user(per_split, None, Arc::clone(&output)),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(restarted.records_in, 0, "went back to the final savepoint");
}

/// Issue 17, point 10: when a savepoint completes, those of the job's folder
/// beyond `retainedSavepoints` are deleted, never the one its run restored from.
#[test]
fn savepoints_past_their_retention_are_deleted_but_never_the_one_restored() {
    let state = tempfile::tempdir().unwrap();
    let (_, restored) = stop_early(state.path(), 3000);
    let mut config = config(
        state.path(),
        2,
        RestoreFrom::Snapshot(restored.location.clone()),
        2,
    );
    config.settings.savepoint_retention = SavepointRetention {
        max_count: Some(2),
        max_age: None,
    };
    let (control, job) = common::start(
        config,
        clicks_per_user(100_000, Some(20_000), Output::default()),
    );
    common::wait_for_a_checkpoint(&control);
    let mut taken = Vec::new();
    for _ in 0..3 {
        let id = control.request_savepoint(None);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let location = loop {
            let request = control
                .savepoint_requests()
                .into_iter()
                .find(|request| request.id == id)
                .unwrap();
            match request.status {
                SavepointStatus::Completed { savepoint } => break savepoint.location,
                SavepointStatus::Failed { error } => panic!("savepoint failed: {error}"),
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no savepoint within a minute"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        taken.push(location);
    }
    let stopped = common::stop_and_join(&control, job);
    let last = stopped
        .snapshots
        .savepoints
        .last()
        .unwrap()
        .location
        .clone();

    let mut kept: Vec<String> = list_files(&state.path().join("storage/savepoints"))
        .into_iter()
        .map(|name| {
            format!(
                "file://{}/{name}",
                state.path().join("storage/savepoints").display()
            )
        })
        .collect();
    kept.sort();
    let mut expected = vec![restored.location.clone(), taken[2].clone(), last];
    expected.sort();
    assert_eq!(kept, expected, "taken: {taken:?}");
}
