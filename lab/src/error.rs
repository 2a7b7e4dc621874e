//! The lab's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building, using or removing the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The process is not root, so it cannot create, use or remove namespaces and links.
    /// The field says what needed root, e.g. "creating the demo".
    #[error("hubble-lab: {0} needs root (network namespaces, veths); run it as root")]
    NotRoot(&'static str),

    /// A lab already exists under the run directory.
    #[error("a lab already exists (state file {0}); run `hubble-lab down` first")]
    AlreadyUp(PathBuf),

    /// No lab exists under the run directory.
    #[error("no lab found (no state file at {0}); run `hubble-lab up` first")]
    NotUp(PathBuf),

    /// A name the lab wants to create is already taken by something it does not own.
    #[error("{kind} {name:?} already exists but is not part of this lab; remove it or choose another --prefix")]
    NameTaken { kind: &'static str, name: String },

    /// A configuration value is out of range or malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidConfig {
        what: &'static str,
        value: String,
        reason: String,
    },

    /// An external command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },

    /// An external command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A signal could not be sent to a process of the lab.
    #[error("sending {signal} to {role} (pid {pid}): {reason}")]
    Signal {
        role: String,
        pid: i32,
        signal: &'static str,
        reason: String,
    },

    /// No process of the lab has this role.
    #[error("the lab has no process {role:?} (see `hubble-lab status`)")]
    NoSuchProcess { role: String },

    /// The state file exists but cannot be read as a lab state.
    #[error("state file {path} is not valid: {reason}")]
    BadState { path: PathBuf, reason: String },

    /// A binary the lab should start is missing.
    #[error("{what} binary not found at {path}")]
    MissingBinary { what: &'static str, path: PathBuf },

    /// A started process exited before it became ready.
    #[error("{role} exited before it was ready; see {log}")]
    ExitedEarly { role: String, log: PathBuf },

    /// `down` could not remove everything; the state file is kept for another try.
    #[error("could not remove everything ({}); kept the state file {path}; run `hubble-lab down` again", failures.join("; "))]
    DownIncomplete {
        path: PathBuf,
        failures: Vec<String>,
    },

    /// The agents did not program every endpoint in time.
    #[error("endpoints not programmed by their agent after {seconds} s: {}; see {logs}", pending.join(", "))]
    EndpointsNotReady {
        seconds: u64,
        pending: Vec<String>,
        logs: String,
    },

    /// No pod of the lab has this name.
    #[error("no pod {name:?} in the lab; pods: {}", pods.join(", "))]
    NoSuchPod { name: String, pods: Vec<String> },

    /// A started process did not become ready in time.
    #[error("{role} was not ready after {seconds} s ({waiting_for}); see {log}")]
    NotReady {
        role: String,
        seconds: u64,
        waiting_for: String,
        log: PathBuf,
    },
}

impl LabError {
    /// Builds an [`LabError::Io`] from an action, a path and the I/O error.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result type of the lab library.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
