//! The Strom operator: reconciles `StreamJob`s into runtime pods and carries them
//! through savepoint → rescale → restore.
//!
//! Built as observe → decide → act (see `docs/architecture.md`). This crate holds so
//! far the names the operator gives to what it owns, which the API (`status.selector`)
//! already exposes.

pub mod labels;
