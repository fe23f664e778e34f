//! How a task run ends.

use dts_kafka::SinkError;
use dts_source::SourceError;
use dts_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Retry from the last checkpoint after a backoff.
    #[error("{0}")]
    Transient(String),
    /// The task fails with this reason in `message`.
    #[error("{0}")]
    Definite(String),
    /// Another worker holds the task now, or it was deleted: stop quietly.
    #[error("the task was reassigned or deleted")]
    Fenced,
}

impl From<SourceError> for RunError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Transient(m) => Self::Transient(m),
            SourceError::Definite(m) => Self::Definite(m),
        }
    }
}

impl From<SinkError> for RunError {
    fn from(e: SinkError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Definite(e.to_string())
        }
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Definite(e.to_string())
        }
    }
}
