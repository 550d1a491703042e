//! Setting status conditions: a fixed set of types, each set in one place, whose
//! transition time changes only when its status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use strom_crds::ConditionType;

/// Sets condition `kind` in `conditions` to `status` with `reason` and `message`,
/// keeping its `lastTransitionTime` when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let index = conditions.iter().position(|c| c.type_ == kind.as_str());
    let last_transition_time = match index.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: kind.as_str().to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time,
    };
    match index {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The condition `kind`, if set.
pub fn get(conditions: &[Condition], kind: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == kind.as_str())
}

/// Whether condition `kind` is set and `True`.
pub fn is_true(conditions: &[Condition], kind: ConditionType) -> bool {
    get(conditions, kind).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_changes_only_with_the_status() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Deploying",
            "a",
            1,
            t0,
        );
        set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Deploying",
            "b",
            1,
            t1,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].message, "b");
        set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Running",
            "c",
            2,
            t1,
        );
        assert_eq!(conditions[0].last_transition_time, Time(t1));
        assert!(is_true(&conditions, ConditionType::Ready));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }
}
