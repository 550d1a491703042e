//! Looking up the services the e2e scripts started.

/// Why a service a test needs is not there.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The variable that names the service is unset or empty while running in CI.
    #[error(
        "{variable} is not set, but CI must run every test: the script that starts \
         {what} did not run or did not export it"
    )]
    MissingInCi {
        /// The environment variable, e.g. `STROM_KAFKA_A_BOOTSTRAP`.
        variable: String,
        /// What the variable names, e.g. `Kafka cluster A`.
        what: String,
    },
    /// A file the scripts wrote (a credential, a kubeconfig) cannot be read.
    #[error("cannot read {path}, which the e2e scripts wrote for {what}: {source}")]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
        /// What the file belongs to.
        what: String,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
}

/// The value of `variable` (an address, a path), which names `what`.
///
/// `Ok(None)` when it is unset outside CI: the caller returns early, and a note on
/// stderr says which test was skipped and why. In CI an unset variable is an error.
pub fn service(variable: &str, what: &str) -> Result<Option<String>, ServiceError> {
    let value = std::env::var(variable).ok();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    resolve(variable, what, value, in_ci)
}

/// [`service`] without the environment, to test the rule itself.
fn resolve(
    variable: &str,
    what: &str,
    value: Option<String>,
    in_ci: bool,
) -> Result<Option<String>, ServiceError> {
    match value.filter(|v| !v.is_empty()) {
        Some(value) => Ok(Some(value)),
        None if in_ci => Err(ServiceError::MissingInCi {
            variable: variable.to_owned(),
            what: what.to_owned(),
        }),
        None => {
            eprintln!(
                "skipped: {what} is not running ({variable} is unset); start it with e2e/infra"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_variable_is_returned() {
        let got = resolve("X", "x", Some("127.0.0.1:9092".into()), true).unwrap();
        assert_eq!(got.as_deref(), Some("127.0.0.1:9092"));
    }

    #[test]
    fn a_missing_service_skips_outside_ci() {
        assert!(resolve("X", "x", None, false).unwrap().is_none());
        assert!(
            resolve("X", "x", Some(String::new()), false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_missing_service_fails_in_ci() {
        let error = resolve("STROM_KAFKA_A_BOOTSTRAP", "Kafka cluster A", None, true).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("STROM_KAFKA_A_BOOTSTRAP is not set")
        );
    }
}
