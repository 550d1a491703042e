//! End-to-end tests of Strom, and how tests find the services they run against.
//!
//! The project's scripts under `e2e/` start real services (Kafka clusters, object
//! storage, a Kubernetes control plane) and export their addresses as environment
//! variables. A test asks for a variable with [`service`]: on a developer's machine a
//! missing service skips the test with a note; in CI (`CI=true`) it fails the test,
//! so a broken script can never turn into a green run of skipped tests.

pub mod services;
pub mod stack;

pub use services::{ServiceError, service};
pub use stack::{ControlPlane, KafkaClusters, S3Server};
