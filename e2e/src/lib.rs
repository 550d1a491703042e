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
/// Read at run time from the `CARGO_MANIFEST_DIR` that `cargo test` sets, not baked in
/// with `env!`: test binaries live in a target folder shared by every clone, and a
/// binary built in one clone must not read another clone's files.
pub fn workspace_root() -> std::path::PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("CARGO_MANIFEST_DIR is unset: run the tests with cargo test");
    std::path::Path::new(&package)
        .parent()
        .expect("a package folder inside the workspace")
        .to_owned()
}
pub use stack::{ControlPlane, KafkaClusters, S3Server};
