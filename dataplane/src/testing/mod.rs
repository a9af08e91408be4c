//! Helpers for tests, benchmarks and fuzzing, not for the product: built
//! for the crate's own unit tests and, elsewhere, only with feature
//! `testing` (the integration tests, the fuzz seeds example, `dataplane/fuzz`
//! and `perf` enable it).
//!
//! - [`frames`]: frame builders and checkers (`frames::{ip, udp, tuple}`);
//!   they allocate, and panic on bad input.
//! - [`fuzzing`]: the bodies of the fuzz targets, shared with the property
//!   tests so the stable-toolchain suite runs them too.
#![forbid(unsafe_code)]

pub mod frames;
pub mod fuzzing;
