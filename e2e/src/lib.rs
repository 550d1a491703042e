//! End-to-end tests of Strom, and how tests find the services they run against.
//!
//! The project's scripts under `e2e/` start real services (Kafka clusters, object
//! storage, a Kubernetes control plane) and export their addresses as environment
//! variables. A test asks for a variable with [`service`]: on a developer's machine a
//! missing service skips the test with a note; in CI (`CI=true`) it fails the test,
//! so a broken script can never turn into a green run of skipped tests.

pub mod kafka;
pub mod pods;
pub mod services;
pub mod stack;

pub use services::{ServiceError, service};

/// The workspace's root folder, for tests that read its files (examples, manifests).
///
/// Read at run time from the `CARGO_MANIFEST_DIR` that `cargo test` and `cargo run`
/// set, not baked in with `env!`: test binaries live in a target folder shared by
/// every clone, and a binary built in one clone must not read another clone's
/// files. A binary run by hand (`strom-bench`) uses the current folder, which must
/// be the workspace's root.
pub fn workspace_root() -> std::path::PathBuf {
    if let Some(package) = std::env::var_os("CARGO_MANIFEST_DIR") {
        return std::path::Path::new(&package)
            .parent()
            .expect("a package folder inside the workspace")
            .to_owned();
    }
    let here = std::env::current_dir().expect("a current folder");
    assert!(
        here.join("charts/strom-operator").is_dir(),
        "CARGO_MANIFEST_DIR is unset and {} is not the workspace's root: \
         run with cargo, or from the root",
        here.display()
    );
    here
}
pub use stack::{ControlPlane, KafkaClusters, S3Server};
