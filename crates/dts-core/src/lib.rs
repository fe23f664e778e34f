//! The dts task model. No I/O lives here: every other crate builds on it.
//!
//! # Layout
//! - [`spec`]: the task a user submits (the seed's JSON body), strict parsing
//!   and validation with field-level error messages.
//! - [`filter`]: the row-filter language (`filters[].filter`): parser with
//!   positioned errors and a three-valued evaluator.
//! - [`matcher`]: table matching (`filters[].match`: exact or `/regex/`).
//! - [`task`]: task states as the list endpoint shows them.
//! - [`code`]: the numeric error codes of the API envelope.
//! - [`event`]: row changes and column values as the pipeline carries them.
//! - [`wire`]: messages between worker nodes and the control plane.
//! - [`cluster_auth`]: how they prove the cluster token to each other.

pub mod cluster_auth;
pub mod code;
pub mod event;
pub mod filter;
pub mod ingest;
pub mod matcher;
pub mod snapshot;
pub mod spec;
pub mod task;
pub mod wire;

pub use code::ErrorCode;
pub use spec::{SpecError, TaskSpec};
pub use task::{DesiredState, TaskState};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
