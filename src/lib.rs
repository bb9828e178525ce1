//! gort: Go's runtime, rebuilt in Rust.
pub use gort_runtime::*;
