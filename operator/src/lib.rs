//! The Strom operator: reconciles `StreamJob`s into runtime pods and carries them
//! through savepoint → rescale → restore.
//!
//! Built as observe → decide → act (see `docs/architecture.md`):
//! [`observe`] only reads (the job's Secrets, StatefulSet, pods and control API),
//! [`decide`] is a pure function from what was seen to the status to record and the
//! next action, and [`act`] records that status and takes the action.

pub mod act;
pub mod conditions;
pub mod control_api;
pub mod controller;
pub mod credentials;
pub mod decide;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod pod_template;
pub mod resources;
pub mod target;
pub mod validation;

mod error;
pub use error::Error;
