//! Task lifecycle states, as shown in the list's `state` field.

use std::fmt;
use std::str::FromStr;

/// What a task is doing now. The worker running it reports the state; the
/// control plane sets the initial and operator-requested ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Accepted and waiting for a worker to pick it up.
    Pending,
    /// Copying existing rows (`incr: false`) before streaming.
    Snapshotting,
    /// Streaming the binlog.
    Running,
    /// Stop requested; the worker is flushing and writing its last checkpoint.
    Stopping,
    /// Stopped by an operator; `start` resumes from the checkpoint.
    Stopped,
    /// Stopped by a definite error; `message` says why.
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 6] =
        [Self::Pending, Self::Snapshotting, Self::Running, Self::Stopping, Self::Stopped, Self::Failed];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Snapshotting => "Snapshotting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Failed => "Failed",
        }
    }

    /// A worker runs (or is about to run) the task in these states.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Snapshotting | Self::Running)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What the operator wants: the worker converges the task's state to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesiredState {
    Running,
    Stopped,
}

impl DesiredState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

impl FromStr for DesiredState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(Self::Running),
            "stopped" => Ok(Self::Stopped),
            other => Err(UnknownState(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_text() {
        for st in TaskState::ALL {
            assert_eq!(st.as_str().parse::<TaskState>(), Ok(st));
        }
        assert!("running".parse::<TaskState>().is_err());
        for d in [DesiredState::Running, DesiredState::Stopped] {
            assert_eq!(d.as_str().parse::<DesiredState>(), Ok(d));
        }
    }
}
