//! Table tests of [`decide`]: every phase against the observations that move it,
//! and a simulated cluster that replays the rescale cycle with the operator
//! stopping between any two steps.

use std::collections::BTreeMap;

use super::*;
use crate::credentials::{Purpose, resolve};

const NOW: i64 = 1_800_000_000;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(NOW + second).unwrap()
}

fn spec(parallelism: i32, mode: UpgradeMode) -> StreamJobSpec {
    let mut spec: StreamJobSpec = serde_json::from_value(serde_json::json!({
        "parallelism": parallelism,
        "pipeline": {"name": "word-count"},
        "state": {"storage": "s3://bucket/jobs"},
    }))
    .unwrap();
    spec.upgrade_mode = mode;
    spec
}

fn credentials() -> Result<ResolvedCredentials, Vec<MissingCredential>> {
    resolve(&spec(1, UpgradeMode::Savepoint), &BTreeMap::new())
}

fn missing() -> Result<ResolvedCredentials, Vec<MissingCredential>> {
    Err(vec![MissingCredential {
        secret: "b-app".into(),
        key: Some("password".into()),
        purpose: Purpose::KafkaCluster("b".into()),
    }])
}

const IMAGE: &str = "strom-runtime:1";

fn target(spec: &StreamJobSpec) -> Target {
    Target::new(spec, "", IMAGE)
}

/// A StatefulSet of `target` with `ready` pods ready.
fn deployed(target: &Target, ready: i32) -> DeploymentSeen {
    DeploymentSeen {
        stateful_set: Some(StatefulSetSeen {
            revision: Some(target.revision()),
            replicas: target.spec.pods(),
            ready_replicas: ready,
            image: target.spec.image.clone(),
            token: PodsToken::File,
        }),
        stateful_set_terminating: false,
        pods: target.spec.pods(),
        max_restart_count: 0,
        crash_loop: None,
        state_expected: false,
        pod_problem: None,
    }
}

fn answered(state: RuntimeState, savepoints: Vec<SavepointSeen>) -> RuntimeSeen {
    RuntimeSeen::Answered(RuntimeReport {
        state,
        savepoints,
        checkpointed: false,
    })
}

fn stop_savepoint(id: i64, outcome: SavepointOutcome) -> SavepointSeen {
    SavepointSeen {
        id,
        stop: true,
        outcome,
    }
}

/// A job's situation; each test changes what it is about.
struct Case {
    spec: StreamJobSpec,
    status: StreamJobStatus,
    deleting: bool,
    has_finalizer: bool,
    spec_error: Option<String>,
    credentials: Result<ResolvedCredentials, Vec<MissingCredential>>,
    deployment: DeploymentSeen,
    runtime: RuntimeSeen,
    restore_check: RestoreCheck,
    now: Timestamp,
}

impl Case {
    /// A new job at parallelism 2 in savepoint mode, finalizer on.
    fn new() -> Self {
        Self {
            spec: spec(2, UpgradeMode::Savepoint),
            status: StreamJobStatus::default(),
            deleting: false,
            has_finalizer: true,
            spec_error: None,
            credentials: credentials(),
            deployment: DeploymentSeen::default(),
            runtime: RuntimeSeen::NotAsked,
            restore_check: RestoreCheck::NotAsked,
            now: at(0),
        }
    }

    /// A job running `spec` at its parallelism, every pod ready.
    fn running(spec: StreamJobSpec) -> Self {
        let deployed_target = target(&spec);
        let status = StreamJobStatus {
            phase: Some(JobPhase::Running),
            parallelism: Some(spec.parallelism),
            job_id: Some("run-1".into()),
            last_reconciled_spec: Some(deployed_target.to_json()),
            ..Default::default()
        };
        Self {
            deployment: deployed(&deployed_target, spec.pods()),
            runtime: answered(RuntimeState::Running, vec![]),
            status,
            spec,
            ..Self::new()
        }
    }

    /// A job running at parallelism 2 whose spec now asks for `parallelism`,
    /// in `phase` of the cycle, with the change recorded as `change`.
    fn in_cycle(phase: JobPhase, parallelism: i32, change: ChangeStatus) -> Self {
        let mut case = Self::running(spec(2, change.upgrade_mode));
        case.spec.parallelism = parallelism;
        case.status.phase = Some(phase);
        case.status.change = Some(change);
        case
    }

    fn decide(&self) -> Decision {
        let input = Input {
            name: "clicks",
            generation: 3,
            spec: &self.spec,
            status: &self.status,
            deleting: self.deleting,
            has_finalizer: self.has_finalizer,
            spec_error: self.spec_error.clone(),
            credentials: self.credentials.clone(),
            deployment: self.deployment.clone(),
            runtime: self.runtime.clone(),
            now: self.now,
            new_job_id: "run-2",
            default_image: IMAGE,
            restore_check: self.restore_check.clone(),
        };
        decide(&input, &Settings::default())
    }
}

fn change(reason: SavepointReason, mode: UpgradeMode) -> ChangeStatus {
    ChangeStatus {
        reason,
        upgrade_mode: mode,
        step_started_at: Time(at(0)),
        savepoint_request: None,
        restore_from: None,
        failed_attempts: 0,
        retry_at: None,
        target_revision: None,
    }
}

fn condition(
    decision: &Decision,
    kind: ConditionType,
) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::get(&decision.status.conditions, kind).expect("condition set")
}

fn deployment_of(decision: &Decision) -> &Deployment {
    match &decision.action {
        Action::Deploy(deployment) => deployment,
        other => panic!("expected a deployment, got {other:?}"),
    }
}

fn reasons(decision: &Decision) -> Vec<&'static str> {
    decision.events.iter().map(|e| e.reason).collect()
}

// ---- A new job ----

#[test]
fn a_new_job_gets_the_finalizer_first() {
    let case = Case {
        has_finalizer: false,
        ..Case::new()
    };
    assert_eq!(case.decide().action, Action::AddFinalizer);
}

#[test]
fn a_new_job_is_deployed_without_state_under_a_new_run() {
    let decision = Case::new().decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Deploying));
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.job_id, "run-2");
    assert_eq!(deployment.restore_from, None);
    assert_eq!(deployment.target.spec.parallelism, 2);
    assert_eq!(decision.status.job_id.as_deref(), Some("run-2"));
    assert_eq!(
        decision.status.last_reconciled_spec,
        Some(deployment.target.to_json())
    );
    assert_eq!(
        decision.status.selector.as_deref(),
        Some("strom.dev/job=clicks,app.kubernetes.io/component=runtime")
    );
    assert_eq!(decision.status.observed_generation, Some(3));
    assert!(conditions::is_true(
        &decision.status.conditions,
        ConditionType::Progressing
    ));
    assert!(!conditions::is_true(
        &decision.status.conditions,
        ConditionType::Ready
    ));
    assert_eq!(reasons(&decision), ["Deploying"]);
}

#[test]
fn a_missing_secret_deploys_nothing_and_names_the_secret_and_key() {
    let case = Case {
        credentials: missing(),
        ..Case::new()
    };
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, None);
    assert_eq!(decision.requeue, Requeue::OnChange);
    let resolved = condition(&decision, ConditionType::CredentialsResolved);
    assert_eq!(resolved.status, "False");
    assert_eq!(
        resolved.message,
        "Secret \"b-app\" (Kafka cluster b) has no key \"password\""
    );
    assert_eq!(reasons(&decision), ["CredentialsMissing"]);
    // The Event is published once, not at every look.
    let again = Case {
        status: decision.status.clone(),
        credentials: missing(),
        ..Case::new()
    }
    .decide();
    assert!(reasons(&again).is_empty());
}

#[test]
fn a_missing_secret_leaves_a_running_job_alone() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.parallelism = 4;
    case.credentials = missing();
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
}

const SQL_ERROR: &str =
    "spec.sql: SQL error at line 3, column 8: no table or view named bids (did you mean bid?)";

#[test]
fn an_invalid_spec_deploys_nothing_and_says_what_to_fix() {
    let case = Case {
        spec_error: Some(SQL_ERROR.into()),
        ..Case::new()
    };
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, None);
    assert_eq!(decision.requeue, Requeue::OnChange);
    let valid = condition(&decision, ConditionType::SpecValid);
    assert_eq!(
        (valid.status.as_str(), valid.message.as_str()),
        ("False", SQL_ERROR)
    );
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        ("SpecInvalid", SQL_ERROR)
    );
    assert_eq!(reasons(&decision), ["SpecInvalid"]);
    assert!(decision.events[0].warning);
    // The Event is published once per error, not at every look.
    let again = Case {
        status: decision.status.clone(),
        spec_error: Some(SQL_ERROR.into()),
        ..Case::new()
    }
    .decide();
    assert!(reasons(&again).is_empty());
    // Fixed: the job deploys and the condition says so.
    let fixed = Case {
        status: again.status,
        ..Case::new()
    }
    .decide();
    assert_eq!(fixed.status.phase, Some(JobPhase::Deploying));
    assert_eq!(condition(&fixed, ConditionType::SpecValid).status, "True");
}

#[test]
fn an_invalid_change_leaves_the_running_job_alone() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.parallelism = 4;
    case.spec_error = Some(SQL_ERROR.into());
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    assert_eq!(decision.status.change, None);
    assert_eq!(
        condition(&decision, ConditionType::SpecValid).status,
        "False"
    );
    assert_eq!(reasons(&decision), ["SpecInvalid"]);
}

#[test]
fn a_job_created_suspended_deploys_nothing_until_it_is_set_running() {
    let mut case = Case::new();
    case.spec.desired_state = DesiredState::Suspended;
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Suspended));
    assert_eq!(decision.action, Action::Nothing);
    let mut case = Case {
        status: decision.status,
        ..Case::new()
    };
    case.spec.desired_state = DesiredState::Running;
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Deploying));
    assert_eq!(deployment_of(&decision).restore_from, None);
}

// ---- Deploying and restoring ----

#[test]
fn deploying_applies_again_when_the_statefulset_is_missing() {
    let first = Case::new().decide();
    // The operator stopped after recording Deploying, before applying.
    let case = Case {
        status: first.status.clone(),
        ..Case::new()
    };
    let decision = case.decide();
    assert_eq!(decision.action, first.action);
    assert_eq!(decision.status.phase, Some(JobPhase::Deploying));
}

#[test]
fn deploying_waits_for_a_statefulset_being_deleted_to_go_before_applying_again() {
    // Deleted under the deployment (foreground: pods first): applied onto it,
    // the deployment would go with it.
    let first = Case::new().decide();
    let mut case = Case {
        status: first.status.clone(),
        ..Case::new()
    };
    case.deployment.stateful_set_terminating = true;
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Deploying));
    assert_eq!(
        decision.requeue,
        Requeue::After(Settings::default().step_interval)
    );

    case.deployment.stateful_set_terminating = false;
    assert_eq!(case.decide().action, first.action);
}

#[test]
fn deploying_waits_for_every_pod_and_the_job_to_run() {
    let first = Case::new().decide();
    let deployed_target = deployment_of(&first).target.clone();
    let waiting = Case {
        status: first.status.clone(),
        deployment: deployed(&deployed_target, 1),
        runtime: RuntimeSeen::NotAsked,
        ..Case::new()
    }
    .decide();
    assert_eq!(waiting.action, Action::Nothing);
    assert_eq!(waiting.status.phase, Some(JobPhase::Deploying));
    assert_eq!(
        condition(&waiting, ConditionType::Ready).message,
        "1 of 2 pod(s) ready"
    );

    let running = Case {
        status: first.status.clone(),
        deployment: deployed(&deployed_target, 2),
        runtime: answered(RuntimeState::Running, vec![]),
        ..Case::new()
    }
    .decide();
    assert_eq!(running.status.phase, Some(JobPhase::Running));
    assert_eq!(running.status.parallelism, Some(2));
    assert!(conditions::is_true(
        &running.status.conditions,
        ConditionType::Ready
    ));
    assert!(!conditions::is_true(
        &running.status.conditions,
        ConditionType::Progressing
    ));
    assert_eq!(reasons(&running), ["Running"]);
}

#[test]
fn a_spec_changed_while_deploying_redeploys_with_the_same_restore_point() {
    let mut case = Case::in_cycle(
        JobPhase::Restoring,
        2,
        ChangeStatus {
            restore_from: Some("s3://bucket/jobs/clicks/run-1/sp-7".into()),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = RuntimeSeen::NotAsked;
    case.spec.parallelism = 3;
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Rescaling));
    assert_eq!(decision.action, Action::TearDown);
    let kept = decision.status.change.as_ref().unwrap();
    assert_eq!(
        kept.restore_from.as_deref(),
        Some("s3://bucket/jobs/clicks/run-1/sp-7")
    );
}

#[test]
fn a_crash_loop_fails_the_job_with_the_reason_and_removes_its_pods() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    // Five restarts seen now, within the crash-loop window.
    case.deployment.max_restart_count = 5;
    case.deployment.crash_loop = Some(CrashLoop {
        restarts: 5,
        reason: "exit code 1: Kafka cluster b: Authentication failed".into(),
    });
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Failed));
    assert_eq!(decision.action, Action::TearDown);
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(ready.reason, "Failed");
    assert!(
        ready.message.contains("Authentication failed"),
        "{}",
        ready.message
    );
    assert!(decision.events.iter().all(|event| event.warning));
    assert!(ready.message.contains("restartNonce"), "{}", ready.message);

    // Later looks keep the reason while the pods go.
    case.status = decision.status.clone();
    let later = case.decide();
    assert_eq!(later.action, Action::TearDown);
    assert_eq!(
        condition(&later, ConditionType::Ready).message,
        ready.message
    );
    case.deployment = DeploymentSeen::default();
    let gone = case.decide();
    assert_eq!(
        condition(&gone, ConditionType::Ready).message,
        ready.message
    );
    case.status = StreamJobStatus {
        phase: Some(JobPhase::Running),
        ..case.status
    };
    case.deployment = deployed(&target(&case.spec), 2);

    // Fewer restarts within the window: not yet a crash loop.
    case.status.recent_restarts.truncate(2);
    case.deployment.crash_loop = Some(CrashLoop {
        restarts: 2,
        reason: "exit code 1".into(),
    });
    assert_eq!(case.decide().status.phase, Some(JobPhase::Running));
}

// ---- Running ----

#[test]
fn a_running_job_with_nothing_to_change_is_polled() {
    let decision = Case::running(spec(2, UpgradeMode::Savepoint)).decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(
        decision.requeue,
        Requeue::After(Settings::default().poll_interval)
    );
    assert!(conditions::is_true(
        &decision.status.conditions,
        ConditionType::Ready
    ));
    assert!(decision.events.is_empty());
}

#[test]
fn a_new_parallelism_starts_the_cycle_with_a_stop_with_savepoint() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.parallelism = 4;
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Savepointing));
    assert_eq!(decision.action, Action::StopWithSavepoint);
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.reason, SavepointReason::Rescale);
    assert_eq!(change.step_started_at, Time(at(0)));
    // The next run restores the savepoint at once: it is handed over, not copied.
    assert!(stop_hands_over(&decision.status));
    // Still reported at the old parallelism until the new one runs.
    assert_eq!(decision.status.parallelism, Some(2));
    assert!(decision.events[0].note.contains("from parallelism 2 to 4"));
}

#[test]
fn a_deployed_spec_this_operator_cannot_read_is_replaced_through_a_savepoint() {
    // Recorded by another operator version, in a shape this one cannot read: the
    // job still runs, so it is stopped with a savepoint, never redeployed without.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.status.last_reconciled_spec = Some(r#"{"spec": {"parallelism": "two"}}"#.into());
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    assert_eq!(decision.status.phase, Some(JobPhase::Savepointing));
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.reason, SavepointReason::Upgrade);
    // Its image may not read a borrowed savepoint: copied before the stop.
    assert!(!stop_hands_over(&decision.status));
    assert_eq!(decision.status.parallelism, Some(2));
    assert!(
        decision.events[0].note.contains("cannot read"),
        "{:?}",
        decision.events
    );
}

#[test]
fn a_new_default_image_upgrades_the_runtime_through_a_savepoint() {
    // Recorded by an operator whose default image was strom-runtime:0.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    let mut old = Target::new(&case.spec, "", "strom-runtime:0");
    case.status.last_reconciled_spec = Some(old.to_json());
    case.deployment = deployed(&old, 2);
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    assert!(
        decision.events[0]
            .note
            .contains("upgrading the runtime image from strom-runtime:0 to strom-runtime:1"),
        "{:?}",
        decision.events
    );

    // One recorded before targets held the image: what its StatefulSet runs.
    old.spec.image = None;
    case.status.last_reconciled_spec = Some(old.to_json());
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    assert!(
        decision.events[0]
            .note
            .contains("from strom-runtime:0 to strom-runtime:1")
    );
}

#[test]
fn an_operator_upgrade_alone_redeploys_nothing() {
    // Recorded by an older operator: no image (the default ran), the Secrets'
    // resource versions instead of digests of their values.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    let mut older = target(&case.spec);
    older.spec.image = None;
    older.credentials_version = "s3=4711".into();
    case.status.last_reconciled_spec = Some(older.to_json());
    case.credentials = Ok(ResolvedCredentials {
        version: "s3=sha256:0123456789abcdef".into(),
    });
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    assert!(decision.events.is_empty(), "{:?}", decision.events);

    // A failed job is not restarted by the upgrade either.
    case.status.phase = Some(JobPhase::Failed);
    case.deployment = DeploymentSeen::default();
    assert_eq!(case.decide().action, Action::Nothing);
}

#[test]
fn other_spec_changes_are_upgrades_through_the_same_cycle() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.image = Some("strom-runtime:0.2".into());
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    assert_eq!(
        decision.status.change.as_ref().unwrap().reason,
        SavepointReason::Upgrade
    );

    // A rotated Secret is a new target too.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.credentials = Ok(ResolvedCredentials {
        version: "b-app=12".into(),
    });
    assert_eq!(case.decide().action, Action::StopWithSavepoint);

    // So is a new restartNonce.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.restart_nonce = Some(1);
    assert_eq!(case.decide().action, Action::StopWithSavepoint);
}

#[test]
fn last_state_and_stateless_modes_skip_the_savepoint() {
    for mode in [UpgradeMode::LastState, UpgradeMode::Stateless] {
        let mut case = Case::running(spec(2, mode));
        case.spec.parallelism = 3;
        let decision = case.decide();
        assert_eq!(decision.status.phase, Some(JobPhase::Rescaling), "{mode:?}");
        assert_eq!(decision.action, Action::TearDown, "{mode:?}");
    }
}

#[test]
fn savepoint_trigger_nonce_takes_a_savepoint_without_stopping() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.savepoint_trigger_nonce = Some(1);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TriggerSavepoint);
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    let status = record_savepoint_request(decision.status, &decision.action, 4);
    assert_eq!(status.manual_savepoint.as_ref().unwrap().request, Some(4));

    // Pending: wait.
    case.status = status;
    case.runtime = answered(
        RuntimeState::Running,
        vec![SavepointSeen {
            id: 4,
            stop: false,
            outcome: SavepointOutcome::Pending,
        }],
    );
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert!(decision.status.manual_savepoint.is_some());

    // Completed: recorded, the nonce handled.
    case.runtime = answered(
        RuntimeState::Running,
        vec![SavepointSeen {
            id: 4,
            stop: false,
            outcome: SavepointOutcome::Completed("s3://b/sp-4".into()),
        }],
    );
    let decision = case.decide();
    assert_eq!(decision.status.manual_savepoint, None);
    assert_eq!(decision.status.handled_savepoint_nonce, Some(1));
    let last = decision.status.last_savepoint.as_ref().unwrap();
    assert_eq!(last.path, "s3://b/sp-4");
    assert_eq!(last.reason, SavepointReason::Manual);
    assert_eq!(reasons(&decision), ["SavepointCompleted"]);

    // The same nonce again: nothing more.
    case.status = decision.status;
    assert_eq!(case.decide().action, Action::Nothing);
}

#[test]
fn a_savepoint_is_taken_every_savepoint_interval_while_the_job_runs() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.savepoint_interval = Some("1h".parse().unwrap());
    case.status.phase_started_at = Some(Time(at(0)));
    case.now = at(3599);
    assert_eq!(case.decide().action, Action::Nothing);

    case.now = at(3600);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TriggerSavepoint);
    let asked = decision.status.manual_savepoint.clone().unwrap();
    assert!(asked.periodic);
    assert_eq!(reasons(&decision), ["SavepointRequested"]);
    assert!(decision.events[0].note.contains("savepointInterval 3600s"));

    // Completed: recorded as periodic, no savepointTriggerNonce handled.
    case.status = decision.status;
    case.status.manual_savepoint.as_mut().unwrap().request = Some(4);
    case.runtime = answered(
        RuntimeState::Running,
        vec![SavepointSeen {
            id: 4,
            stop: false,
            outcome: SavepointOutcome::Completed("s3://b/sp-4".into()),
        }],
    );
    case.now = at(3610);
    let decision = case.decide();
    let last = decision.status.last_savepoint.clone().unwrap();
    assert_eq!(last.reason, SavepointReason::Periodic);
    assert_eq!(decision.status.manual_savepoint, None);
    assert_eq!(decision.status.handled_savepoint_nonce, None);

    // The next one an interval after that savepoint, not before.
    case.status = decision.status;
    case.runtime = answered(RuntimeState::Running, vec![]);
    case.now = at(3610 + 3599);
    assert_eq!(case.decide().action, Action::Nothing);
    case.now = at(3610 + 3600);
    assert_eq!(case.decide().action, Action::TriggerSavepoint);
}

#[test]
fn a_failed_periodic_savepoint_is_tried_again_an_interval_later() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.savepoint_interval = Some("10m".parse().unwrap());
    case.status.phase_started_at = Some(Time(at(-600)));
    let decision = case.decide();
    assert_eq!(decision.action, Action::TriggerSavepoint);
    case.status = decision.status;
    case.status.manual_savepoint.as_mut().unwrap().request = Some(2);
    case.runtime = answered(
        RuntimeState::Running,
        vec![SavepointSeen {
            id: 2,
            stop: false,
            outcome: SavepointOutcome::Failed("disk full".into()),
        }],
    );
    case.now = at(5);
    let decision = case.decide();
    assert_eq!(reasons(&decision), ["SavepointFailed"]);
    assert!(
        decision.events[0]
            .note
            .starts_with("periodic savepoint failed: disk full")
    );
    case.status = decision.status;
    case.runtime = answered(RuntimeState::Running, vec![]);
    case.now = at(599);
    assert_eq!(case.decide().action, Action::Nothing);
    case.now = at(600);
    assert_eq!(case.decide().action, Action::TriggerSavepoint);
}

#[test]
fn a_failed_manual_savepoint_is_reported_and_not_retried() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.savepoint_trigger_nonce = Some(5);
    case.status.manual_savepoint = Some(ManualSavepointStatus {
        nonce: 5,
        requested_at: Time(at(0)),
        request: Some(9),
        periodic: false,
    });
    case.runtime = answered(
        RuntimeState::Running,
        vec![SavepointSeen {
            id: 9,
            stop: false,
            outcome: SavepointOutcome::Failed("storage refused".into()),
        }],
    );
    let decision = case.decide();
    assert_eq!(decision.status.handled_savepoint_nonce, Some(5));
    assert!(decision.events[0].warning);
    assert!(decision.events[0].note.contains("storage refused"));
}

#[test]
fn the_savepoint_history_keeps_the_newest_up_to_its_limit() {
    // The operator's limit, or the job's retainedSavepoints when lower (its
    // runtime deletes the older ones: issue 17, point 10).
    for (retained, listed) in [(None, Settings::default().savepoint_history), (Some(3), 3)] {
        let mut spec = spec(2, UpgradeMode::Savepoint);
        if let Some(retained) = retained {
            spec.state.retained_savepoints = Some(retained);
        }
        let history = history_after_12_savepoints(spec);
        assert_eq!(history.len(), listed);
        assert_eq!(
            history.first().cloned(),
            Some(format!("s3://b/sp-{}", 13 - listed))
        );
        assert_eq!(history.last().map(String::as_str), Some("s3://b/sp-12"));
    }
}

/// The paths in `status.savepointHistory` after 12 manual savepoints of a job
/// running `spec`.
fn history_after_12_savepoints(spec: StreamJobSpec) -> Vec<String> {
    let mut case = Case::running(spec);
    for nonce in 1..=12 {
        case.spec.savepoint_trigger_nonce = Some(nonce);
        case.status.manual_savepoint = Some(ManualSavepointStatus {
            nonce,
            requested_at: Time(at(0)),
            request: Some(nonce),
            periodic: false,
        });
        case.runtime = answered(
            RuntimeState::Running,
            vec![SavepointSeen {
                id: nonce,
                stop: false,
                outcome: SavepointOutcome::Completed(format!("s3://b/sp-{nonce}")),
            }],
        );
        case.status = case.decide().status;
    }
    case.status
        .savepoint_history
        .iter()
        .map(|s| s.path.clone())
        .collect()
}

#[test]
fn pod_restarts_are_counted_once_each() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.deployment.max_restart_count = 2;
    let decision = case.decide();
    assert_eq!(decision.status.restarts, 2);
    assert_eq!(reasons(&decision), ["JobRestarted"]);
    case.status = decision.status;
    let decision = case.decide();
    assert_eq!(decision.status.restarts, 2);
    assert!(decision.events.is_empty());
    // New pods start counting from zero again.
    case.status = decision.status;
    case.deployment.max_restart_count = 0;
    assert_eq!(case.decide().status.pod_restarts_seen, 0);
}

#[test]
fn a_running_job_whose_pods_are_not_ready_is_not_ready() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.deployment
        .stateful_set
        .as_mut()
        .unwrap()
        .ready_replicas = 1;
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    let decision = case.decide();
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message,
        "1 of 2 pod(s) ready; control API: connection refused"
    );
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
}

// ---- Savepointing ----

#[test]
fn savepointing_asks_again_when_the_request_was_not_recorded() {
    let case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        change(SavepointReason::Rescale, UpgradeMode::Savepoint),
    );
    assert_eq!(case.decide().action, Action::StopWithSavepoint);
}

#[test]
fn a_completed_savepoint_tears_the_old_pods_down() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = answered(
        RuntimeState::Finished,
        vec![stop_savepoint(
            1,
            SavepointOutcome::Completed("s3://b/sp-1".into()),
        )],
    );
    case.now = at(30);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Rescaling));
    assert_eq!(decision.action, Action::TearDown);
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.restore_from.as_deref(), Some("s3://b/sp-1"));
    assert_eq!(change.step_started_at, Time(at(30)));
    assert_eq!(
        decision.status.last_savepoint.as_ref().unwrap().reason,
        SavepointReason::Rescale
    );
    assert_eq!(reasons(&decision), ["SavepointCompleted", "Rescaling"]);
}

#[test]
fn a_pending_savepoint_is_waited_for_until_its_timeout() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = answered(
        RuntimeState::Stopping,
        vec![stop_savepoint(1, SavepointOutcome::Pending)],
    );
    case.now = at(299);
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Savepointing));
    // Looked at often: a rescale waits on the savepoint's end.
    assert_eq!(
        decision.requeue,
        Requeue::After(Settings::default().savepoint_poll_interval)
    );

    // Timed out while the job is stopping: it is restarted at its old parallelism.
    case.now = at(300);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    assert_eq!(decision.action, Action::RestartPods);
    let degraded = condition(&decision, ConditionType::Degraded);
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("not completed within 300s"),
        "{}",
        degraded.message
    );
    assert!(
        degraded.message.contains("keeps running at parallelism 2"),
        "{}",
        degraded.message
    );
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.failed_attempts, 1);
    assert_eq!(change.retry_at, Some(Time(at(310))));
    assert_eq!(change.savepoint_request, None);
    assert!(reasons(&decision).contains(&"SavepointFailed"));
}

#[test]
fn a_failed_savepoint_is_retried_with_a_growing_backoff_and_never_deploys_without_one() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            failed_attempts: 2,
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = answered(
        RuntimeState::Running,
        vec![stop_savepoint(
            1,
            SavepointOutcome::Failed("disk full".into()),
        )],
    );
    let decision = case.decide();
    // The job still ran (the failure did not stop it): left alone.
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    let change = decision.status.change.clone().unwrap();
    assert_eq!(change.failed_attempts, 3);
    assert_eq!(change.retry_at, Some(Time(at(40))));

    // Before the retry time: the job runs on at parallelism 2, nothing deployed.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.parallelism = 4;
    case.status.change = Some(change.clone());
    case.status.conditions = decision.status.conditions.clone();
    case.now = at(39);
    let waiting = case.decide();
    assert_eq!(waiting.action, Action::Nothing);
    assert_eq!(waiting.requeue, Requeue::After(Duration::from_secs(1)));
    assert!(conditions::is_true(
        &waiting.status.conditions,
        ConditionType::Degraded
    ));

    // At the retry time: the stop is asked for again.
    case.now = at(40);
    let retry = case.decide();
    assert_eq!(retry.action, Action::StopWithSavepoint);
    assert_eq!(retry.status.change.as_ref().unwrap().failed_attempts, 3);
}

#[test]
fn an_unreachable_control_api_times_out_like_a_slow_savepoint() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    case.now = at(301);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    assert_eq!(decision.action, Action::Nothing);
    let degraded = condition(&decision, ConditionType::Degraded);
    assert!(
        degraded.message.contains("connection refused"),
        "{}",
        degraded.message
    );
}

#[test]
fn reverting_the_spec_during_a_backoff_cancels_the_change() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.status.change = Some(ChangeStatus {
        failed_attempts: 1,
        retry_at: Some(Time(at(100))),
        ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
    });
    let decision = case.decide();
    assert_eq!(decision.status.change, None);
    assert_eq!(reasons(&decision), ["ChangeCancelled"]);
    assert!(!conditions::is_true(
        &decision.status.conditions,
        ConditionType::Degraded
    ));
}

// ---- Rescaling (tearing down) ----

#[test]
fn tearing_down_waits_until_every_old_pod_is_gone() {
    let mut case = Case::in_cycle(
        JobPhase::Rescaling,
        4,
        ChangeStatus {
            restore_from: Some("s3://b/sp-1".into()),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.deployment.stateful_set = None;
    case.deployment.pods = 1;
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    assert_eq!(decision.status.phase, Some(JobPhase::Rescaling));

    case.deployment.pods = 0;
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Restoring));
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.target.spec.parallelism, 4);
    assert_eq!(deployment.restore_from.as_deref(), Some("s3://b/sp-1"));
    assert_eq!(deployment.job_id, "run-1");
}

#[test]
fn tearing_down_waits_until_the_stateful_set_itself_is_gone() {
    // A foreground deletion removes the pods first and the StatefulSet after:
    // a job called suspended while its StatefulSet is still there, or a
    // redeploy applied onto the StatefulSet about to go, would be wrong.
    for (reason, next) in [
        (SavepointReason::Rescale, JobPhase::Restoring),
        (SavepointReason::Suspend, JobPhase::Suspended),
    ] {
        let mut case = Case::in_cycle(
            JobPhase::Rescaling,
            4,
            ChangeStatus {
                restore_from: Some("s3://b/sp-1".into()),
                ..change(reason, UpgradeMode::Savepoint)
            },
        );
        case.deployment.stateful_set = None;
        case.deployment.stateful_set_terminating = true;
        case.deployment.pods = 0;
        let decision = case.decide();
        assert_eq!(
            decision.status.phase,
            Some(JobPhase::Rescaling),
            "{reason:?}"
        );
        assert_eq!(decision.action, Action::TearDown, "{reason:?}");

        case.deployment.stateful_set_terminating = false;
        let decision = case.decide();
        assert_eq!(decision.status.phase, Some(next), "{reason:?}");
    }
}

#[test]
fn last_state_restores_from_the_latest_checkpoint_and_stateless_starts_empty() {
    for (mode, job_id, expect_state) in [
        (UpgradeMode::LastState, "run-1", true),
        (UpgradeMode::Stateless, "run-2", false),
    ] {
        let mut case = Case::in_cycle(
            JobPhase::Rescaling,
            4,
            change(SavepointReason::Rescale, mode),
        );
        case.status.checkpointed = true;
        case.deployment = DeploymentSeen::default();
        let decision = case.decide();
        let deployment = deployment_of(&decision);
        assert_eq!(deployment.restore_from, None, "{mode:?}");
        assert_eq!(deployment.job_id, job_id, "{mode:?}");
        // The run checkpointed: its pods must find a checkpoint rather than
        // start empty. A stateless redeploy is a new run with nothing stored.
        assert_eq!(deployment.expect_state, expect_state, "{mode:?}");
        assert_eq!(decision.status.checkpointed, expect_state, "{mode:?}");
    }
}

#[test]
fn the_pods_of_a_job_that_checkpointed_are_told_to_expect_its_state() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.runtime = RuntimeSeen::Answered(RuntimeReport {
        state: RuntimeState::Running,
        savepoints: vec![],
        checkpointed: true,
    });
    // Deployed before it checkpointed: its ConfigMap says so, and a pod that
    // restarted would start without the job's state if storage were empty.
    let decision = case.decide();
    assert_eq!(decision.action, Action::ExpectState);
    assert!(decision.status.checkpointed);
    case.status = decision.status;
    case.deployment.state_expected = true;
    assert_eq!(case.decide().action, Action::Nothing);

    // Another step goes first; the ConfigMap is updated at a later look.
    case.deployment.state_expected = false;
    case.spec.parallelism = 4;
    assert_eq!(case.decide().action, Action::StopWithSavepoint);
}

#[test]
fn a_checkpoint_the_running_job_reports_is_recorded() {
    let mut case = Case::running(spec(2, UpgradeMode::LastState));
    assert!(!case.decide().status.checkpointed);
    case.runtime = RuntimeSeen::Answered(RuntimeReport {
        state: RuntimeState::Running,
        savepoints: vec![],
        checkpointed: true,
    });
    assert!(case.decide().status.checkpointed);
}

#[test]
fn a_secret_deleted_mid_cycle_holds_the_redeploy_until_it_is_back() {
    let mut case = Case::in_cycle(
        JobPhase::Rescaling,
        4,
        change(SavepointReason::Rescale, UpgradeMode::Savepoint),
    );
    case.deployment = DeploymentSeen::default();
    case.credentials = missing();
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.status.phase, Some(JobPhase::Rescaling));
    assert_eq!(
        condition(&decision, ConditionType::CredentialsResolved).status,
        "False"
    );
}

// ---- Suspension ----

#[test]
fn suspending_stops_with_a_savepoint_and_resuming_restores_from_it() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.desired_state = DesiredState::Suspended;
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    assert_eq!(
        decision.status.change.as_ref().unwrap().reason,
        SavepointReason::Suspend
    );
    // Nothing runs after a suspension: its savepoint is copied before the stop.
    assert!(!stop_hands_over(&decision.status));

    let mut case = Case::in_cycle(
        JobPhase::Rescaling,
        2,
        ChangeStatus {
            restore_from: Some("s3://b/sp-9".into()),
            ..change(SavepointReason::Suspend, UpgradeMode::Savepoint)
        },
    );
    case.spec.desired_state = DesiredState::Suspended;
    case.deployment = DeploymentSeen::default();
    let suspended = case.decide();
    assert_eq!(suspended.status.phase, Some(JobPhase::Suspended));
    assert_eq!(suspended.status.parallelism, Some(0));
    assert_eq!(suspended.action, Action::Nothing);

    case.status = suspended.status;
    let still = case.decide();
    assert_eq!(still.action, Action::Nothing);
    case.spec.desired_state = DesiredState::Running;
    let resumed = case.decide();
    assert_eq!(resumed.status.phase, Some(JobPhase::Restoring));
    assert_eq!(
        deployment_of(&resumed).restore_from.as_deref(),
        Some("s3://b/sp-9")
    );
}

// ---- Failed ----

#[test]
fn a_failed_job_waits_for_a_new_spec_then_restarts_from_its_latest_checkpoint() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.status.phase = Some(JobPhase::Failed);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);

    case.deployment = DeploymentSeen::default();
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(decision.requeue, Requeue::OnChange);

    case.spec.restart_nonce = Some(1);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Restoring));
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.restore_from, None);
    assert_eq!(deployment.job_id, "run-1");
}

#[test]
fn a_failed_job_whose_statefulset_never_goes_says_so_at_the_teardown_deadline() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.status.phase = Some(JobPhase::Failed);
    case.status.phase_started_at = Some(Time(at(0)));
    case.deployment = DeploymentSeen {
        stateful_set_terminating: true,
        ..DeploymentSeen::default()
    };
    case.spec.restart_nonce = Some(1);
    case.now = at(301);
    let decision = case.decide();
    // Not restarted onto the StatefulSet about to go; why, said.
    assert_eq!(decision.action, Action::TearDown);
    let degraded = condition(&decision, ConditionType::Degraded);
    assert_eq!(degraded.reason, "TeardownStuck");
    assert!(
        degraded.message.contains("finalizer"),
        "{}",
        degraded.message
    );
}

// ---- Deletion ----

#[test]
fn deleting_a_running_job_takes_a_final_savepoint_then_removes_the_finalizer() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.deleting = true;
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    assert_eq!(decision.status.phase, Some(JobPhase::Savepointing));
    assert!(!stop_hands_over(&decision.status));
    let status = record_savepoint_request(decision.status, &decision.action, 3);

    case.status = status;
    case.runtime = answered(
        RuntimeState::Finished,
        vec![stop_savepoint(
            3,
            SavepointOutcome::Completed("s3://b/sp-3".into()),
        )],
    );
    let decision = case.decide();
    assert_eq!(decision.action, Action::RemoveFinalizer);
    assert_eq!(
        decision.status.last_savepoint.as_ref().unwrap().reason,
        SavepointReason::Delete
    );
}

#[test]
fn deleting_a_job_during_a_rescales_stop_asks_again_for_a_plain_stop() {
    // The rescale's stop handed its savepoint over; a deleted job has no next run
    // to complete it, so the stop is asked for again, without hand-over (the job
    // answers the same request and copies).
    let mut rescale = change(SavepointReason::Rescale, UpgradeMode::Savepoint);
    rescale.savepoint_request = Some(3);
    let mut case = Case::in_cycle(JobPhase::Savepointing, 4, rescale);
    case.deleting = true;
    let decision = case.decide();
    assert_eq!(decision.action, Action::StopWithSavepoint);
    let asked = decision.status.change.as_ref().unwrap();
    assert_eq!(asked.reason, SavepointReason::Delete);
    assert_eq!(asked.savepoint_request, None);
    assert!(!stop_hands_over(&decision.status));

    // Another change's stop (an upgrade's, copied) serves as it is.
    let mut upgrade = change(SavepointReason::Upgrade, UpgradeMode::Savepoint);
    upgrade.savepoint_request = Some(3);
    let mut case = Case::in_cycle(JobPhase::Savepointing, 2, upgrade);
    case.deleting = true;
    let decision = case.decide();
    assert_ne!(decision.action, Action::StopWithSavepoint);
    assert_eq!(
        decision.status.change.as_ref().unwrap().savepoint_request,
        Some(3)
    );
}

#[test]
fn a_final_savepoint_that_times_out_does_not_block_the_deletion() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        2,
        ChangeStatus {
            savepoint_request: Some(3),
            ..change(SavepointReason::Delete, UpgradeMode::Savepoint)
        },
    );
    case.deleting = true;
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    case.now = at(300);
    let decision = case.decide();
    assert_eq!(decision.action, Action::RemoveFinalizer);
    assert_eq!(reasons(&decision), ["FinalSavepointFailed"]);
}

#[test]
fn deleting_a_job_that_does_not_run_removes_the_finalizer_at_once() {
    for phase in [
        None,
        Some(JobPhase::Deploying),
        Some(JobPhase::Suspended),
        Some(JobPhase::Failed),
    ] {
        let case = Case {
            deleting: true,
            status: StreamJobStatus {
                phase,
                ..Default::default()
            },
            ..Case::new()
        };
        assert_eq!(case.decide().action, Action::RemoveFinalizer, "{phase:?}");
    }
    let case = Case {
        deleting: true,
        has_finalizer: false,
        ..Case::new()
    };
    assert_eq!(case.decide().action, Action::Nothing);
}

#[test]
fn deleting_a_stateless_job_takes_no_savepoint() {
    let mut case = Case::running(spec(2, UpgradeMode::Stateless));
    case.deleting = true;
    assert_eq!(case.decide().action, Action::RemoveFinalizer);
}

// ---- The whole cycle, with the operator stopping between any two steps ----

/// A cluster and a job as the operator's actions leave them: a StatefulSet whose
/// pods become ready, a job that stops with a savepoint when asked.
#[derive(Clone, Debug, Default)]
struct World {
    /// The deployed StatefulSet: its deployment.
    stateful_set: Option<Deployment>,
    /// A stop was asked of the current run, with this id.
    stop_requested: Option<i64>,
    /// Every deployment made, in order.
    deployments: Vec<Deployment>,
    /// Savepoints written.
    savepoints: Vec<String>,
    /// Seconds between two looks of the operator (1 when 0).
    seconds_per_look: i64,
    /// Until this second the job's control API does not answer.
    control_down_until: i64,
    /// The second of the current look.
    now: i64,
    /// Whether the job has completed checkpoints (the running one reports them).
    checkpointed: bool,
    /// A target whose pods never become ready (an image that cannot be pulled).
    broken: Option<Target>,
}

impl World {
    fn control_down(&self) -> bool {
        self.now < self.control_down_until
    }

    fn observe(&self) -> (DeploymentSeen, RuntimeSeen) {
        let Some(deployment) = &self.stateful_set else {
            return (DeploymentSeen::default(), RuntimeSeen::NotAsked);
        };
        if self.broken.as_ref() == Some(&deployment.target) {
            return (deployed(&deployment.target, 0), RuntimeSeen::NotAsked);
        }
        let mut seen = deployed(&deployment.target, deployment.target.spec.pods());
        seen.state_expected = deployment.expect_state;
        if self.control_down() {
            return (seen, RuntimeSeen::Unreachable("connection refused".into()));
        }
        let runtime = match self.stop_requested {
            None => RuntimeSeen::Answered(RuntimeReport {
                state: RuntimeState::Running,
                savepoints: vec![],
                checkpointed: self.checkpointed,
            }),
            Some(id) => answered(
                RuntimeState::Finished,
                vec![stop_savepoint(
                    id,
                    SavepointOutcome::Completed(format!("s3://b/sp-{id}")),
                )],
            ),
        };
        (seen, runtime)
    }

    /// Takes `action`; returns the savepoint request id it got, if any.
    fn act(&mut self, action: &Action) -> Option<i64> {
        match action {
            Action::Deploy(deployment) => {
                // A job that checkpointed before: its new pods never start empty.
                assert!(
                    !self.checkpointed
                        || deployment.expect_state
                        || deployment.restore_from.is_some(),
                    "{deployment:?} may start without the job's state"
                );
                // A deployment always replaces what runs, never beside it.
                assert!(
                    self.stateful_set
                        .as_ref()
                        .is_none_or(|old| old.target == deployment.target),
                    "deployed {deployment:?} while {:?} ran",
                    self.stateful_set
                );
                if self.stateful_set.as_ref() != Some(deployment.as_ref()) {
                    self.stop_requested = None;
                }
                self.stateful_set = Some(deployment.as_ref().clone());
                self.deployments.push(deployment.as_ref().clone());
                None
            }
            Action::StopWithSavepoint if self.control_down() => None,
            Action::StopWithSavepoint => {
                let id = *self.stop_requested.get_or_insert(1);
                let path = format!("s3://b/sp-{id}");
                if !self.savepoints.contains(&path) {
                    self.savepoints.push(path);
                }
                Some(id)
            }
            Action::TearDown => {
                self.stateful_set = None;
                self.stop_requested = None;
                None
            }
            Action::ExpectState => {
                let deployment = self.stateful_set.as_mut().expect("a deployment");
                deployment.expect_state = true;
                None
            }
            _ => None,
        }
    }
}

/// Runs the operator against `world` from `status` until the job runs `spec`,
/// stopping the operator (losing what it had not recorded) at look `crash_at`:
/// either after it recorded the status but before it acted, or after it acted
/// but before it recorded the savepoint request id.
fn run_cycle(
    spec: &StreamJobSpec,
    status: StreamJobStatus,
    world: &mut World,
    crash_at: Option<(usize, bool)>,
) -> StreamJobStatus {
    run_until(spec, status, world, crash_at, 40, |status| {
        status.parallelism == Some(spec.parallelism)
    })
}

/// As [`run_cycle`], for `looks` looks at most, until the job runs, with nothing
/// under way or to do, and `done` holds of its status.
fn run_until(
    spec: &StreamJobSpec,
    mut status: StreamJobStatus,
    world: &mut World,
    crash_at: Option<(usize, bool)>,
    looks: usize,
    done: impl Fn(&StreamJobStatus) -> bool,
) -> StreamJobStatus {
    for look in 0..looks {
        world.now = look as i64 * world.seconds_per_look.max(1);
        let (deployment, runtime) = world.observe();
        // The point restoreFrom names is there, as the running job says.
        let restore_check = match (&runtime, restore_wanted(spec, &status)) {
            (RuntimeSeen::Answered(_), Some(restore)) => RestoreCheck::Found(restore.path.clone()),
            _ => RestoreCheck::NotAsked,
        };
        let input = Input {
            name: "clicks",
            generation: 2,
            spec,
            status: &status,
            deleting: false,
            has_finalizer: true,
            spec_error: None,
            credentials: credentials(),
            deployment,
            runtime,
            now: at(world.now),
            new_job_id: "run-new",
            default_image: IMAGE,
            restore_check,
        };
        let decision = decide(&input, &Settings::default());
        status = decision.status.clone();
        match crash_at {
            Some((step, false)) if step == look => continue,
            Some((step, true)) if step == look => {
                world.act(&decision.action);
                continue;
            }
            _ => {}
        }
        if let Some(id) = world.act(&decision.action) {
            status = record_savepoint_request(status, &decision.action, id);
        }
        if status.phase == Some(JobPhase::Running)
            && status.change.is_none()
            && decision.action == Action::Nothing
            && done(&status)
        {
            return status;
        }
    }
    panic!("the cycle did not end: {status:#?}\n{world:#?}");
}

#[test]
fn the_rescale_cycle_completes_whatever_step_the_operator_stops_at() {
    let old = spec(2, UpgradeMode::Savepoint);
    let new = spec(5, UpgradeMode::Savepoint);
    let start = Case::running(old.clone());
    for step in 0..8 {
        for after_acting in [false, true] {
            let mut world = World {
                stateful_set: Some(Deployment {
                    target: target(&old),
                    job_id: "run-1".into(),
                    restore_from: None,
                    latest_of: None,
                    expect_state: false,
                }),
                checkpointed: true,
                ..World::default()
            };
            let status = run_cycle(
                &new,
                start.status.clone(),
                &mut world,
                Some((step, after_acting)),
            );
            let last = world.deployments.last().expect("a deployment");
            assert_eq!(last.target.spec.parallelism, 5);
            assert_eq!(last.job_id, "run-1");
            // Restored from the savepoint the stop took, never without one.
            assert_eq!(last.restore_from.as_deref(), Some("s3://b/sp-1"));
            assert_eq!(world.savepoints, ["s3://b/sp-1"]);
            assert_eq!(status.last_savepoint.unwrap().path, "s3://b/sp-1");
            assert_eq!(status.parallelism, Some(5));
        }
    }
}

#[test]
fn a_new_job_reaches_running_whatever_step_the_operator_stops_at() {
    let spec = spec(3, UpgradeMode::Savepoint);
    for step in 0..4 {
        for after_acting in [false, true] {
            let mut world = World::default();
            let status = run_cycle(
                &spec,
                StreamJobStatus::default(),
                &mut world,
                Some((step, after_acting)),
            );
            assert_eq!(status.phase, Some(JobPhase::Running));
            assert_eq!(world.deployments.last().unwrap().restore_from, None);
        }
    }
}

// ---- Deadlines: no step waits forever (issue 17, points 1 and 2) ----

#[test]
fn a_stop_never_accepted_fails_at_the_savepoint_deadline() {
    // The control API never answered the stop: no request id was ever recorded.
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        change(SavepointReason::Rescale, UpgradeMode::Savepoint),
    );
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    case.now = at(100);
    assert_eq!(case.decide().action, Action::StopWithSavepoint);

    case.now = at(301);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    assert_ne!(decision.action, Action::StopWithSavepoint);
    let degraded = condition(&decision, ConditionType::Degraded);
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("connection refused"),
        "{}",
        degraded.message
    );
    assert_eq!(reasons(&decision), ["SavepointFailed", "Running"]);
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.failed_attempts, 1);
    assert!(change.retry_at.is_some());
}

#[test]
fn deleting_a_job_whose_stop_is_never_accepted_ends_at_the_deadline() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        2,
        change(SavepointReason::Delete, UpgradeMode::Savepoint),
    );
    case.deleting = true;
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    case.now = at(301);
    let decision = case.decide();
    assert_eq!(decision.action, Action::RemoveFinalizer);
    assert_eq!(reasons(&decision), ["FinalSavepointFailed"]);
}

#[test]
fn a_manual_savepoint_never_accepted_ends_at_the_deadline_and_health_is_watched() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.savepoint_trigger_nonce = Some(3);
    case.status.manual_savepoint = Some(ManualSavepointStatus {
        nonce: 3,
        requested_at: Time(at(0)),
        request: None,
        periodic: false,
    });
    // Every pod is down: the control API does not answer.
    case.deployment = deployed(&target(&case.spec), 0);
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    case.now = at(100);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TriggerSavepoint);
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(ready.status, "False", "{ready:?}");
    assert!(ready.message.contains("0 of 2 pod(s) ready"), "{ready:?}");

    case.now = at(301);
    let decision = case.decide();
    assert_ne!(decision.action, Action::TriggerSavepoint);
    assert_eq!(decision.status.manual_savepoint, None);
    assert_eq!(decision.status.handled_savepoint_nonce, Some(3));
    assert_eq!(reasons(&decision), ["SavepointFailed"]);
    assert!(decision.events[0].note.contains("connection refused"));
    assert_eq!(condition(&decision, ConditionType::Ready).status, "False");
}

#[test]
fn pods_that_never_become_ready_are_reported_at_the_deploy_deadline() {
    let first = Case::new().decide();
    assert_eq!(first.status.phase_started_at, Some(Time(at(0))));
    let deployed_target = deployment_of(&first).target.clone();
    let mut case = Case {
        status: first.status.clone(),
        deployment: deployed(&deployed_target, 0),
        runtime: RuntimeSeen::NotAsked,
        now: at(100),
        ..Case::new()
    };
    let waiting = case.decide();
    assert!(waiting.events.is_empty());
    assert_eq!(condition(&waiting, ConditionType::Degraded).status, "False");

    case.now = at(301);
    let overdue = case.decide();
    assert_eq!(overdue.status.phase, Some(JobPhase::Deploying));
    assert_eq!(overdue.action, Action::Nothing);
    let degraded = condition(&overdue, ConditionType::Degraded);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "DeploymentStuck")
    );
    assert!(
        degraded.message.contains("0 of 2 pod(s) ready"),
        "{}",
        degraded.message
    );
    assert_eq!(reasons(&overdue), ["DeploymentStuck"]);
    assert!(overdue.events[0].warning);

    // Reported once; cleared when the job runs.
    case.status = overdue.status;
    case.now = at(320);
    assert!(case.decide().events.is_empty());
    case.deployment = deployed(&deployed_target, 2);
    case.runtime = answered(RuntimeState::Running, vec![]);
    let running = case.decide();
    assert_eq!(running.status.phase, Some(JobPhase::Running));
    assert_eq!(condition(&running, ConditionType::Degraded).status, "False");
}

#[test]
fn pods_that_never_go_away_are_reported_at_the_teardown_deadline() {
    let mut case = Case::in_cycle(
        JobPhase::Rescaling,
        4,
        ChangeStatus {
            restore_from: Some("s3://b/sp-1".into()),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.status.phase_started_at = Some(Time(at(0)));
    case.deployment.stateful_set = None;
    case.deployment.pods = 1;
    case.now = at(301);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    assert_eq!(decision.status.phase, Some(JobPhase::Rescaling));
    let degraded = condition(&decision, ConditionType::Degraded);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "TeardownStuck")
    );
    assert!(
        degraded.message.contains("1 pod(s)"),
        "{}",
        degraded.message
    );
    assert_eq!(reasons(&decision), ["TeardownStuck"]);

    // The pods went; a finalizer keeps the StatefulSet: that is what is named.
    case.deployment.pods = 0;
    case.deployment.stateful_set_terminating = true;
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    let degraded = condition(&decision, ConditionType::Degraded);
    assert!(
        degraded
            .message
            .starts_with("StatefulSet clicks still there")
            && degraded.message.contains("finalizer"),
        "{}",
        degraded.message
    );

    // Not even being deleted: the deletion did not take effect.
    case.deployment = deployed(&target(&case.spec), 0);
    case.deployment.pods = 0;
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    let degraded = condition(&decision, ConditionType::Degraded);
    assert!(
        degraded.message.contains("did not take effect"),
        "{}",
        degraded.message
    );
}

#[test]
fn a_rescale_whose_stop_is_not_accepted_for_a_while_completes_whatever_step_the_operator_stops_at()
{
    // The control API answers nothing for 400 s (pods Pending after a node loss,
    // say): the stop is not accepted by its deadline, the job goes back to
    // Running (Degraded) and the change is retried once the API answers.
    let old = spec(2, UpgradeMode::Savepoint);
    let new = spec(4, UpgradeMode::Savepoint);
    let start = Case::running(old.clone());
    for step in 0..12 {
        for after_acting in [false, true] {
            let mut world = World {
                stateful_set: Some(Deployment {
                    target: target(&old),
                    job_id: "run-1".into(),
                    restore_from: None,
                    latest_of: None,
                    expect_state: false,
                }),
                seconds_per_look: 40,
                control_down_until: 400,
                checkpointed: true,
                ..World::default()
            };
            let status = run_cycle(
                &new,
                start.status.clone(),
                &mut world,
                Some((step, after_acting)),
            );
            let last = world.deployments.last().expect("a deployment");
            assert_eq!(last.target.spec.parallelism, 4);
            assert_eq!(last.restore_from.as_deref(), Some("s3://b/sp-1"));
            assert_eq!(world.savepoints, ["s3://b/sp-1"]);
            assert_eq!(status.parallelism, Some(4));
            assert!(
                status.restarts == 0 && status.last_savepoint.is_some(),
                "{status:#?}"
            );
        }
    }
}

// ---- Crash loops are counted within a window (issue 17, point 3) ----

#[test]
fn old_restarts_do_not_count_towards_a_crash_loop() {
    // A job running for a week, restarted five times long ago.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.status.restarts = 5;
    case.status.pod_restarts_seen = 5;
    case.now = at(7 * 24 * 3600);
    // One new crash: the container's lifetime count is 6.
    case.deployment.max_restart_count = 6;
    case.deployment.crash_loop = Some(CrashLoop {
        restarts: 6,
        reason: "exit code 137".into(),
    });
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    assert_eq!(decision.status.restarts, 6);
    assert_eq!(reasons(&decision), ["JobRestarted"]);

    // Four more within minutes: now a crash loop.
    case.status = decision.status;
    for (restarts, minute) in [(7, 1), (8, 2), (9, 4)] {
        case.deployment.max_restart_count = restarts;
        case.now = at(7 * 24 * 3600 + minute * 60);
        let decision = case.decide();
        assert_eq!(decision.status.phase, Some(JobPhase::Running), "{restarts}");
        case.status = decision.status;
    }
    case.deployment.max_restart_count = 10;
    case.now = at(7 * 24 * 3600 + 6 * 60);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Failed));
    let ready = condition(&decision, ConditionType::Ready);
    assert!(
        ready.message.contains("5 times within 10 minutes"),
        "{}",
        ready.message
    );
}

#[test]
fn restarts_spread_beyond_the_window_never_fail_the_job() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    for restart in 1..=12 {
        case.deployment.max_restart_count = restart;
        case.deployment.crash_loop = Some(CrashLoop {
            restarts: restart,
            reason: "exit code 1".into(),
        });
        // One restart every 3 minutes: at most 4 within any 10 minutes.
        case.now = at(i64::from(restart) * 180);
        let decision = case.decide();
        assert_eq!(decision.status.phase, Some(JobPhase::Running), "{restart}");
        case.status = decision.status;
    }
    assert_eq!(case.status.restarts, 12);
}

// ---- Stuck deploys are visible (issue 17, point 4) ----

fn image_pull_problem() -> PodProblem {
    PodProblem {
        object: "pod clicks-0".into(),
        reason: "ImagePullBackOff".into(),
        message: "Back-off pulling image \"strom:typo\"".into(),
    }
}

#[test]
fn a_pod_that_cannot_pull_its_image_is_reported_at_once() {
    let first = Case::new().decide();
    let deployed_target = deployment_of(&first).target.clone();
    let mut case = Case {
        status: first.status.clone(),
        deployment: deployed(&deployed_target, 0),
        runtime: RuntimeSeen::NotAsked,
        now: at(10),
        ..Case::new()
    };
    case.deployment.pod_problem = Some(image_pull_problem());
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Deploying));
    let degraded = condition(&decision, ConditionType::Degraded);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "DeploymentStuck")
    );
    assert!(
        degraded.message.contains("ImagePullBackOff") && degraded.message.contains("strom:typo"),
        "{}",
        degraded.message
    );
    let ready = condition(&decision, ConditionType::Ready);
    assert!(
        ready.message.contains("ImagePullBackOff"),
        "{}",
        ready.message
    );
    assert_eq!(reasons(&decision), ["DeploymentStuck"]);
    assert!(decision.events[0].warning);

    // Once: the next look publishes nothing new.
    case.status = decision.status;
    case.now = at(20);
    assert!(case.decide().events.is_empty());
}

#[test]
fn a_running_job_whose_pod_cannot_be_scheduled_says_why_and_recovers() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.deployment = deployed(&target(&case.spec), 1);
    case.runtime = RuntimeSeen::Unreachable("connection refused".into());
    case.deployment.pod_problem = Some(PodProblem {
        object: "pod clicks-1".into(),
        reason: "Unschedulable".into(),
        message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
    });
    let decision = case.decide();
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("Insufficient cpu"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&decision, ConditionType::Degraded).status, "True");
    assert_eq!(reasons(&decision), ["DeploymentStuck"]);

    case.status = decision.status;
    case.deployment = deployed(&target(&case.spec), 2);
    case.runtime = answered(RuntimeState::Running, vec![]);
    let recovered = case.decide();
    assert_eq!(condition(&recovered, ConditionType::Ready).status, "True");
    assert_eq!(
        condition(&recovered, ConditionType::Degraded).status,
        "False"
    );
}

#[test]
fn a_refused_deployment_is_reported_once_and_cleared_when_the_job_runs() {
    let first = Case::new().decide();
    let refusal = "admission webhook \"policy.example\" denied the request: no privileged";
    let (status, event) =
        record_refused_action(first.status.clone(), &first.action, refusal, 3, at(1));
    let degraded = conditions::get(&status.conditions, ConditionType::Degraded).unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ActionRefused")
    );
    assert!(degraded.message.contains("StatefulSet") && degraded.message.contains(refusal));
    let event = event.expect("an Event");
    assert!(event.warning && event.note.contains(refusal));
    // The same refusal again: no second Event.
    let (status, again) = record_refused_action(status, &first.action, refusal, 3, at(6));
    assert_eq!(again, None);

    // Applied at last: the job runs, Degraded is cleared.
    let deployed_target = deployment_of(&first).target.clone();
    let running = Case {
        status,
        deployment: deployed(&deployed_target, 2),
        runtime: answered(RuntimeState::Running, vec![]),
        ..Case::new()
    }
    .decide();
    assert_eq!(running.status.phase, Some(JobPhase::Running));
    assert_eq!(condition(&running, ConditionType::Degraded).status, "False");
}

// ---- Ready means the spec asked for runs (issue 17, point 6) ----

#[test]
fn ready_is_false_while_a_failed_change_waits_for_its_retry() {
    let mut case = Case::in_cycle(
        JobPhase::Running,
        4,
        ChangeStatus {
            failed_attempts: 1,
            retry_at: Some(Time(at(100))),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.now = at(10);
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ChangePending"),
        "{ready:?}"
    );
    assert!(ready.message.contains("parallelism 2"), "{}", ready.message);
    assert_eq!(
        condition(&decision, ConditionType::Progressing).status,
        "True"
    );
    assert_eq!(decision.status.parallelism, Some(2));
}

#[test]
fn ready_is_false_right_after_a_savepoint_failed() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = answered(
        RuntimeState::Running,
        vec![stop_savepoint(
            1,
            SavepointOutcome::Failed("disk full".into()),
        )],
    );
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Running));
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(ready.status, "False", "{ready:?}");
    assert_eq!(ready.reason, "ChangePending");
}

#[test]
fn the_parallelism_is_what_runs_through_the_cycle() {
    // Stopping: the old pods run.
    let case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        change(SavepointReason::Rescale, UpgradeMode::Savepoint),
    );
    assert_eq!(case.decide().status.parallelism, Some(2));
    // The old pods gone, the new ones deployed: the new parallelism, never 0.
    let mut case = Case::in_cycle(
        JobPhase::Rescaling,
        4,
        ChangeStatus {
            restore_from: Some("s3://b/sp-1".into()),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.deployment = DeploymentSeen::default();
    let restoring = case.decide();
    assert_eq!(restoring.status.phase, Some(JobPhase::Restoring));
    assert_eq!(restoring.status.parallelism, Some(4));
}

#[test]
fn the_first_status_of_an_invalid_job_says_why_it_is_not_ready() {
    // The look that puts the finalizer on writes the first status: Ready already
    // names the invalid spec (a reader between two looks saw "Pending").
    let case = Case {
        has_finalizer: false,
        spec_error: Some("spec.sql: no table or view named clickz".into()),
        ..Case::new()
    };
    let decision = case.decide();
    assert_eq!(decision.action, Action::AddFinalizer);
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "SpecInvalid")
    );
}

// ---- A savepoint that keeps failing is given up, not retried forever (issue 17,
// point 5) ----

#[test]
fn a_savepoint_failing_every_time_is_given_up_until_the_spec_changes() {
    let settings = Settings::default();
    let last = settings.max_savepoint_attempts;
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            failed_attempts: last - 1,
            target_revision: Some(target(&spec(4, UpgradeMode::Savepoint)).revision()),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.runtime = answered(
        RuntimeState::Running,
        vec![stop_savepoint(
            1,
            SavepointOutcome::Failed("disk full".into()),
        )],
    );
    let gave_up = case.decide();
    assert_eq!(gave_up.status.phase, Some(JobPhase::Running));
    let change = gave_up.status.change.clone().unwrap();
    assert_eq!((change.failed_attempts, change.retry_at), (last, None));
    let degraded = condition(&gave_up, ConditionType::Degraded);
    assert!(
        degraded
            .message
            .contains(&format!("gave up after {last} attempts"))
            && degraded.message.contains("disk full")
            && degraded.message.contains("change the spec"),
        "{}",
        degraded.message
    );

    // Later looks: the old spec keeps running, nothing is asked of it.
    case.status = gave_up.status;
    case.runtime = answered(RuntimeState::Running, vec![]);
    case.now = at(3600);
    let later = case.decide();
    assert_eq!(later.action, Action::Nothing);
    assert_eq!(later.status.phase, Some(JobPhase::Running));
    assert!(later.events.is_empty(), "{:?}", later.events);
    assert_eq!(
        condition(&later, ConditionType::Ready).reason,
        "ChangeGivenUp"
    );
    assert_eq!(later.requeue, Requeue::After(settings.poll_interval));

    // A new spec: a new change, its attempts from zero.
    case.status = later.status;
    case.spec.parallelism = 5;
    let retried = case.decide();
    assert_eq!(retried.action, Action::StopWithSavepoint);
    assert_eq!(retried.status.change.as_ref().unwrap().failed_attempts, 0);
}

#[test]
fn the_savepoint_timeout_of_the_spec_is_used() {
    let mut case = Case::in_cycle(
        JobPhase::Savepointing,
        4,
        ChangeStatus {
            savepoint_request: Some(1),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    case.spec.savepoint_timeout = Some("60s".parse().unwrap());
    case.runtime = answered(
        RuntimeState::Running,
        vec![stop_savepoint(1, SavepointOutcome::Pending)],
    );
    case.now = at(59);
    assert_eq!(case.decide().status.phase, Some(JobPhase::Savepointing));
    case.now = at(61);
    let timed_out = case.decide();
    assert_eq!(timed_out.status.phase, Some(JobPhase::Running));
    assert!(
        condition(&timed_out, ConditionType::Degraded)
            .message
            .contains("not completed within 60s")
    );
}

// ---- Found in review ----

#[test]
fn a_job_stopped_while_it_should_run_is_restarted_on_every_look_until_it_runs() {
    // A stop whose savepoint failed, the restart lost (the operator restarted
    // between recording the failure and acting), or someone else's stop.
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.runtime = answered(
        RuntimeState::Finished,
        vec![stop_savepoint(
            3,
            SavepointOutcome::Completed("s3://b/sp-3".into()),
        )],
    );
    let decision = case.decide();
    assert_eq!(decision.action, Action::RestartPods);
    assert_eq!(condition(&decision, ConditionType::Ready).status, "False");
    // A bounded job whose input ended stopped without a request: left alone.
    case.runtime = answered(RuntimeState::Finished, vec![]);
    assert_ne!(case.decide().action, Action::RestartPods);
}

#[test]
fn a_change_waiting_for_a_manual_savepoint_is_not_ready() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.savepoint_trigger_nonce = Some(1);
    case.status.manual_savepoint = Some(ManualSavepointStatus {
        nonce: 1,
        requested_at: Time(at(0)),
        request: Some(4),
        periodic: false,
    });
    case.runtime = answered(
        RuntimeState::Running,
        vec![SavepointSeen {
            id: 4,
            stop: false,
            outcome: SavepointOutcome::Pending,
        }],
    );
    case.spec.parallelism = 4;
    case.now = at(5);
    let decision = case.decide();
    let ready = condition(&decision, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ChangePending")
    );
    assert_eq!(
        condition(&decision, ConditionType::Progressing).status,
        "True"
    );
}

#[test]
fn a_given_up_change_is_not_progressing_and_stays_degraded() {
    let mut case = Case::in_cycle(
        JobPhase::Running,
        4,
        ChangeStatus {
            failed_attempts: Settings::default().max_savepoint_attempts,
            retry_at: None,
            target_revision: Some(target(&spec(4, UpgradeMode::Savepoint)).revision()),
            ..change(SavepointReason::Rescale, UpgradeMode::Savepoint)
        },
    );
    // A pod problem came and went: Degraded still says the change was given up.
    let decision = case.decide();
    let progressing = condition(&decision, ConditionType::Progressing);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "ChangeGivenUp")
    );
    let degraded = condition(&decision, ConditionType::Degraded);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SavepointFailed")
    );
    assert!(
        degraded.message.contains("given up"),
        "{}",
        degraded.message
    );
    case.status = decision.status;
    assert_eq!(
        condition(&case.decide(), ConditionType::Degraded).status,
        "True"
    );
}

#[test]
fn a_redeployed_job_starts_its_crash_loop_count_afresh() {
    let mut case = Case::in_cycle(
        JobPhase::Failed,
        2,
        change(SavepointReason::Upgrade, UpgradeMode::Savepoint),
    );
    case.status.recent_restarts = vec![Time(at(0)); 5];
    case.deployment = DeploymentSeen::default();
    case.spec.restart_nonce = Some(1);
    case.now = at(60);
    let decision = case.decide();
    assert_eq!(decision.status.phase, Some(JobPhase::Restoring));
    assert!(decision.status.recent_restarts.is_empty());
}

// ---- Restoring a savepoint of the user's choice (issue 17, point 9) ----

fn restore_from(path: &str, job_name: Option<&str>, nonce: Option<i64>) -> RestoreFromSpec {
    RestoreFromSpec {
        path: path.into(),
        job_name: job_name.map(str::to_owned),
        nonce,
    }
}

#[test]
fn a_new_job_with_restore_from_is_deployed_from_it_under_a_new_run() {
    let mut case = Case::new();
    case.spec.restore_from = Some(restore_from("s3://b/old/sp-9", None, None));
    let decision = case.decide();
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.restore_from.as_deref(), Some("s3://b/old/sp-9"));
    assert_eq!(deployment.job_id, "run-2");
    assert_eq!(decision.status.restored_from, case.spec.restore_from);
    // Recorded with the change, so a deploy applied again restores it too.
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.reason, SavepointReason::Restore);
    assert_eq!(change.restore_from.as_deref(), Some("s3://b/old/sp-9"));
    let note = &decision.events[0].note;
    assert!(
        note.contains("restoring from savepoint s3://b/old/sp-9"),
        "{note}"
    );
}

#[test]
fn latest_restores_the_newest_point_of_the_job_restore_from_names() {
    let mut case = Case::new();
    case.spec.restore_from = Some(restore_from(LATEST, Some("clicks-v1"), None));
    let decision = case.decide();
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.restore_from.as_deref(), Some(LATEST));
    assert_eq!(deployment.latest_of.as_deref(), Some("clicks-v1"));
    let note = &decision.events[0].note;
    assert!(
        note.contains("the newest savepoint or checkpoint of job clicks-v1"),
        "{note}"
    );

    // Applied again after an operator stopped between recording and applying.
    let mut again = Case::new();
    again.spec = case.spec.clone();
    again.status = decision.status.clone();
    let reapplied = again.decide();
    let deployment = deployment_of(&reapplied);
    assert_eq!(deployment.restore_from.as_deref(), Some(LATEST));
    assert_eq!(deployment.latest_of.as_deref(), Some("clicks-v1"));
    assert_eq!(deployment.job_id, "run-2");
}

#[test]
fn a_running_job_is_replaced_only_once_its_control_api_found_the_point() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.spec.restore_from = Some(restore_from("s3://b/old/sp-9", None, Some(1)));

    // Not asked yet: nothing is torn down, and Ready says what it waits for.
    let waiting = case.decide();
    assert_eq!(waiting.action, Action::Nothing);
    assert_eq!(waiting.status.phase, Some(JobPhase::Running));
    let ready = condition(&waiting, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RestorePending")
    );
    assert_eq!(
        condition(&waiting, ConditionType::Progressing).status,
        "True"
    );

    // Not there: the job keeps running, Degraded, with a Warning Event once.
    case.restore_check =
        RestoreCheck::Failed("no savepoint or checkpoint at s3://b/old/sp-9".into());
    let missing = case.decide();
    assert_eq!(missing.action, Action::Nothing);
    assert_eq!(missing.status.phase, Some(JobPhase::Running));
    assert_eq!(missing.status.restored_from, None);
    let degraded = condition(&missing, ConditionType::Degraded);
    assert_eq!(degraded.reason, "RestoreFailed");
    assert!(
        degraded.message.contains("no savepoint or checkpoint at"),
        "{}",
        degraded.message
    );
    assert_eq!(reasons(&missing), ["RestoreFailed"]);
    case.status = missing.status.clone();
    assert!(reasons(&case.decide()).is_empty(), "reported once");

    // Found: torn down without a savepoint, then deployed from it under a new run.
    case.restore_check = RestoreCheck::Found("s3://b/old/sp-9".into());
    let found = case.decide();
    assert_eq!(found.action, Action::TearDown);
    assert_eq!(found.status.phase, Some(JobPhase::Rescaling));
    assert_eq!(
        found.status.change.as_ref().unwrap().reason,
        SavepointReason::Restore
    );
    assert!(found.status.last_savepoint.is_none());
    case.status = found.status;
    case.deployment = DeploymentSeen::default();
    case.runtime = RuntimeSeen::NotAsked;
    case.restore_check = RestoreCheck::NotAsked;
    let deployed = case.decide();
    let deployment = deployment_of(&deployed);
    assert_eq!(deployment.restore_from.as_deref(), Some("s3://b/old/sp-9"));
    assert_eq!(deployment.job_id, "run-2");
    assert_eq!(deployed.status.job_id.as_deref(), Some("run-2"));
    assert_eq!(deployed.status.restored_from, case.spec.restore_from);
    assert_eq!(
        condition(&deployed, ConditionType::Degraded).status,
        "False",
        "the point is found"
    );
}

#[test]
fn a_restore_from_already_restored_or_removed_changes_nothing() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    let restore = restore_from("s3://b/old/sp-9", None, Some(1));
    case.spec.restore_from = Some(restore.clone());
    case.status.restored_from = Some(restore.clone());
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(condition(&decision, ConditionType::Ready).status, "True");

    // Removed after a point that was not there: Degraded clears, nothing moves.
    case.spec.restore_from = None;
    case.status.restored_from = None;
    conditions::set(
        &mut case.status.conditions,
        ConditionType::Degraded,
        true,
        "RestoreFailed",
        "spec.restoreFrom cannot be restored",
        3,
        at(0),
    );
    let decision = case.decide();
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(
        condition(&decision, ConditionType::Degraded).status,
        "False"
    );

    // A new nonce restores the same path again.
    case.spec.restore_from = Some(RestoreFromSpec {
        nonce: Some(2),
        ..restore
    });
    case.status.restored_from = Some(restore_from("s3://b/old/sp-9", None, Some(1)));
    case.restore_check = RestoreCheck::Found("s3://b/old/sp-9".into());
    assert_eq!(case.decide().action, Action::TearDown);
}

#[test]
fn a_failed_or_suspended_job_restores_restore_from_when_it_starts_again() {
    let restore = restore_from("s3://b/old/sp-9", None, None);
    let mut failed = Case::running(spec(2, UpgradeMode::Savepoint));
    failed.status.phase = Some(JobPhase::Failed);
    failed.deployment = DeploymentSeen::default();
    failed.runtime = RuntimeSeen::NotAsked;
    assert_eq!(failed.decide().action, Action::Nothing);
    failed.spec.restore_from = Some(restore.clone());
    let decision = failed.decide();
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.restore_from.as_deref(), Some("s3://b/old/sp-9"));
    assert_eq!(deployment.job_id, "run-2");

    // Resumed with restoreFrom set meanwhile: from it, not the suspension's savepoint.
    let mut suspended = Case::running(spec(2, UpgradeMode::Savepoint));
    suspended.status.phase = Some(JobPhase::Suspended);
    suspended.status.change = Some(ChangeStatus {
        restore_from: Some("s3://b/sp-suspend".into()),
        ..change(SavepointReason::Suspend, UpgradeMode::Savepoint)
    });
    suspended.deployment = DeploymentSeen::default();
    suspended.runtime = RuntimeSeen::NotAsked;
    suspended.spec.restore_from = Some(restore);
    let decision = suspended.decide();
    let deployment = deployment_of(&decision);
    assert_eq!(deployment.restore_from.as_deref(), Some("s3://b/old/sp-9"));
    assert_eq!(deployment.job_id, "run-2");
}

#[test]
fn a_job_deploying_when_restore_from_changes_is_replaced_without_waiting_for_it() {
    let mut case = Case::running(spec(2, UpgradeMode::Savepoint));
    case.status.phase = Some(JobPhase::Deploying);
    case.deployment = deployed(&target(&case.spec), 0);
    case.runtime = RuntimeSeen::NotAsked;
    case.spec.restore_from = Some(restore_from("s3://b/old/sp-9", None, None));
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    assert_eq!(
        decision.status.change.as_ref().unwrap().reason,
        SavepointReason::Restore
    );
}

#[test]
fn a_restore_completes_whatever_step_the_operator_stops_at() {
    let old = spec(2, UpgradeMode::Savepoint);
    let mut new = spec(3, UpgradeMode::Savepoint);
    new.restore_from = Some(restore_from("s3://b/old/sp-9", None, Some(1)));
    let start = Case::running(old.clone());
    for step in 0..8 {
        for after_acting in [false, true] {
            let mut world = World {
                stateful_set: Some(Deployment {
                    target: target(&old),
                    job_id: "run-1".into(),
                    restore_from: None,
                    latest_of: None,
                    expect_state: true,
                }),
                checkpointed: true,
                ..World::default()
            };
            let status = run_cycle(
                &new,
                start.status.clone(),
                &mut world,
                Some((step, after_acting)),
            );
            let last = world.deployments.last().expect("a deployment");
            assert_eq!(last.target.spec.parallelism, 3);
            assert_eq!(last.job_id, "run-new");
            assert_eq!(last.restore_from.as_deref(), Some("s3://b/old/sp-9"));
            // Replaced without a savepoint, and restored once.
            assert!(world.savepoints.is_empty());
            assert_eq!(status.restored_from, new.restore_from);
            assert_eq!(status.job_id.as_deref(), Some("run-new"));
        }
    }
}

#[test]
fn a_new_job_restoring_reaches_running_whatever_step_the_operator_stops_at() {
    let mut spec = spec(2, UpgradeMode::Savepoint);
    spec.restore_from = Some(restore_from(LATEST, Some("clicks-v1"), None));
    for step in 0..4 {
        for after_acting in [false, true] {
            let mut world = World::default();
            let status = run_cycle(
                &spec,
                StreamJobStatus::default(),
                &mut world,
                Some((step, after_acting)),
            );
            assert_eq!(status.phase, Some(JobPhase::Running));
            for deployment in &world.deployments {
                assert_eq!(deployment.restore_from.as_deref(), Some(LATEST));
                assert_eq!(deployment.latest_of.as_deref(), Some("clicks-v1"));
            }
        }
    }
}

// ---- A change that does not come up is rolled back, when asked (issue 17) ----

/// A job whose change from parallelism 2 to `new` (with a savepoint, sp-1) is
/// deploying, pods not ready, `since` seconds ago; rollbackOnFailure set.
fn restoring_after_a_change(new: &StreamJobSpec) -> Case {
    let old = spec(2, UpgradeMode::Savepoint);
    let mut case = Case::running(new.clone());
    case.spec.rollback_on_failure = true;
    case.status.phase = Some(JobPhase::Restoring);
    case.status.phase_started_at = Some(Time(at(0)));
    case.status.last_stable_spec = Some(target(&old).to_json());
    case.status.change = Some(ChangeStatus {
        restore_from: Some("s3://b/sp-1".into()),
        ..change(SavepointReason::Upgrade, UpgradeMode::Savepoint)
    });
    case.deployment = deployed(&target(new), 0);
    case.runtime = RuntimeSeen::NotAsked;
    case
}

#[test]
fn a_change_not_running_by_its_deadline_is_rolled_back_from_its_savepoint() {
    let mut new = spec(2, UpgradeMode::Savepoint);
    new.image = Some("strom-runtime:broken".into());
    let mut case = restoring_after_a_change(&new);
    case.deployment.pod_problem = Some(PodProblem {
        object: "clicks-0".into(),
        reason: "ErrImageNeverPull".into(),
        message: "image not present".into(),
    });
    case.now = at(100);
    assert_ne!(
        case.decide().action,
        Action::TearDown,
        "not before its deadline"
    );

    case.now = at(301);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    let change = decision.status.change.as_ref().unwrap();
    assert_eq!(change.reason, SavepointReason::Rollback);
    assert_eq!(change.restore_from.as_deref(), Some("s3://b/sp-1"));
    let failed_revision = target(&case.spec).revision();
    assert_eq!(
        decision.status.rolled_back_revision.as_ref(),
        Some(&failed_revision)
    );
    let rolling_back = decision
        .events
        .iter()
        .find(|e| e.reason == "RollingBack")
        .unwrap();
    assert!(rolling_back.warning);
    assert!(
        rolling_back.note.contains("ErrImageNeverPull"),
        "{}",
        rolling_back.note
    );

    // The old pods gone: the last spec that ran, from the change's savepoint.
    case.status = decision.status;
    case.deployment = DeploymentSeen::default();
    let redeployed = case.decide();
    let deployment = deployment_of(&redeployed).clone();
    assert_eq!(deployment.target, target(&spec(2, UpgradeMode::Savepoint)));
    assert_eq!(deployment.restore_from.as_deref(), Some("s3://b/sp-1"));
    // A deployment of its own: the failed spec's checkpoints are not its.
    assert_eq!(deployment.job_id, "run-2");

    // It runs: Running, but Degraded and not Ready while the spec asks for the
    // rolled-back one; nothing is deployed again.
    case.status = redeployed.status;
    case.deployment = deployed(&deployment.target, 2);
    case.runtime = answered(RuntimeState::Running, vec![]);
    case.status = case.decide().status;
    assert_eq!(case.status.phase, Some(JobPhase::Running));
    let running = case.decide();
    assert_eq!(running.action, Action::Nothing);
    let ready = condition(&running, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RolledBack")
    );
    assert_eq!(
        condition(&running, ConditionType::Degraded).reason,
        "RolledBack"
    );
    assert_eq!(reasons(&running), ["RolledBack"]);
    case.status = running.status;
    assert!(reasons(&case.decide()).is_empty(), "reported once");

    // A new spec is tried again.
    case.spec.image = Some("strom-runtime:fixed".into());
    let retried = case.decide();
    assert_eq!(retried.action, Action::StopWithSavepoint);
}

#[test]
fn without_rollback_on_failure_a_stuck_change_is_only_reported() {
    let mut new = spec(4, UpgradeMode::Savepoint);
    new.rollback_on_failure = false;
    let mut case = restoring_after_a_change(&new);
    case.spec.rollback_on_failure = false;
    case.now = at(301);
    let decision = case.decide();
    assert_ne!(decision.action, Action::TearDown);
    assert_eq!(
        condition(&decision, ConditionType::Degraded).reason,
        "DeploymentStuck"
    );
    assert_eq!(decision.status.rolled_back_revision, None);
}

#[test]
fn a_change_that_crash_loops_is_rolled_back_rather_than_failed() {
    let new = spec(4, UpgradeMode::Savepoint);
    let mut case = restoring_after_a_change(&new);
    case.status.recent_restarts = vec![Time(at(0)); 5];
    case.status.pod_restarts_seen = 5;
    case.deployment.max_restart_count = 5;
    case.deployment.crash_loop = Some(CrashLoop {
        restarts: 5,
        reason: "exit code 1: no such pipeline".into(),
    });
    case.now = at(30);
    let decision = case.decide();
    assert_eq!(decision.action, Action::TearDown);
    assert_ne!(decision.status.phase, Some(JobPhase::Failed));
    assert_eq!(
        decision.status.change.as_ref().unwrap().reason,
        SavepointReason::Rollback
    );

    // Without a savepoint to go back to (last-state), it fails as before.
    let mut last_state = restoring_after_a_change(&new);
    last_state.status.change.as_mut().unwrap().restore_from = None;
    last_state.status.recent_restarts = case.status.recent_restarts.clone();
    last_state.status.pod_restarts_seen = 5;
    last_state.deployment = case.deployment.clone();
    last_state.now = at(30);
    assert_eq!(last_state.decide().status.phase, Some(JobPhase::Failed));
}

#[test]
fn a_rollback_completes_whatever_step_the_operator_stops_at() {
    let old = spec(2, UpgradeMode::Savepoint);
    let mut new = spec(3, UpgradeMode::Savepoint);
    new.rollback_on_failure = true;
    let mut start = Case::running(old.clone());
    start.status.last_stable_spec = Some(target(&old).to_json());
    for step in 0..30 {
        for after_acting in [false, true] {
            let mut world = World {
                stateful_set: Some(Deployment {
                    target: target(&old),
                    job_id: "run-1".into(),
                    restore_from: None,
                    latest_of: None,
                    expect_state: true,
                }),
                checkpointed: true,
                broken: Some(target(&new)),
                seconds_per_look: 20,
                ..World::default()
            };
            // Until the job runs the spec it rolled back to.
            let status = run_until(
                &new,
                start.status.clone(),
                &mut world,
                Some((step, after_acting)),
                80,
                |status| status.rolled_back_revision.is_some(),
            );
            let last = world.deployments.last().expect("a deployment");
            assert_eq!(last.target, target(&old), "step {step}");
            assert_eq!(last.restore_from.as_deref(), Some("s3://b/sp-1"));
            assert_eq!(world.savepoints, ["s3://b/sp-1"]);
            assert_eq!(status.parallelism, Some(2));
            assert_eq!(status.rolled_back_revision, Some(target(&new).revision()));
        }
    }
}
