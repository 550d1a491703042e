//! Labels on the objects the operator owns, and the selector derived from them.

/// Label naming the StreamJob an object belongs to; every runtime pod carries it.
pub const JOB_LABEL: &str = "strom.dev/job";

/// Label saying which part of Strom made an object (`runtime`, `operator`).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// The label selector of a job's runtime pods, as written into `status.selector` for
/// the scale subresource (`kubectl scale`, HorizontalPodAutoscaler).
pub fn pod_selector(job_name: &str) -> String {
    format!("{JOB_LABEL}={job_name},{COMPONENT_LABEL}=runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_names_the_job_and_the_runtime_pods() {
        assert_eq!(
            pod_selector("clicks-per-user"),
            "strom.dev/job=clicks-per-user,app.kubernetes.io/component=runtime"
        );
    }
}
