//! Endpoints: the pods of this node, read from YAML files.
//!
//! The lab (or an operator) writes one file per endpoint into the endpoints
//! directory (see ARCHITECTURE.md, "Endpoint files"). [`watch_endpoints`]
//! turns the directory into add/update/remove events; [`EndpointTable`]
//! holds the endpoints with their identities.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::identity::Identity;
use crate::labels::LabelSet;

mod ids;
mod table;

use crate::dirwatch::{DirWatcher, FileEvent, FileKind, WatchedFile};
pub use crate::dirwatch::{WatcherConfig, WatcherStats, FILE_EVENTS_CAPACITY};
pub use ids::{EndpointIds, MAX_ENDPOINT_ID};
pub use table::EndpointTable;

/// An endpoint as found in a file (the file's id is the endpoint id).
pub type WatchedEndpoint = WatchedFile<EndpointSpec>;
/// A change in the endpoints directory.
pub type EndpointEvent = FileEvent<EndpointSpec, EndpointError>;
/// A running watcher of the endpoints directory; dropping it stops the watch.
pub type EndpointWatcher = DirWatcher;

/// Endpoint files, for [`crate::dirwatch`].
#[derive(Debug)]
pub struct EndpointFiles;

impl FileKind for EndpointFiles {
    type Spec = EndpointSpec;
    type Error = EndpointError;
    const WHAT: &'static str = "endpoint";

    fn parse(path: &Path, text: &str) -> Result<EndpointSpec, EndpointError> {
        parse_endpoint_file(path, text)
    }

    fn name(spec: &EndpointSpec) -> (&str, &str) {
        (&spec.namespace, &spec.name)
    }

    fn duplicate(path: &Path, spec: EndpointSpec, other: &Path) -> EndpointError {
        EndpointError::Duplicate {
            path: path.display().to_string(),
            namespace: spec.namespace,
            name: spec.name,
            other: other.display().to_string(),
        }
    }

    fn ids_exhausted() -> EndpointError {
        EndpointError::IdsExhausted
    }

    fn io(path: &Path, message: String) -> EndpointError {
        EndpointError::Io {
            path: path.display().to_string(),
            message,
        }
    }
}

/// Starts watching the endpoints directory `config.dir`. The first events describe
/// the files already there. Must be called inside a tokio runtime.
pub fn watch_endpoints(
    config: WatcherConfig<EndpointSpec>,
) -> Result<(EndpointWatcher, mpsc::Receiver<EndpointEvent>), EndpointError> {
    crate::dirwatch::watch::<EndpointFiles>(config)
}

/// Default directory of endpoint files.
pub const DEFAULT_ENDPOINTS_DIR: &str = "/var/run/hubble-rs/endpoints";

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME: usize = 15;
/// Most owners an endpoint file may name (a pod has one controller in practice).
pub const MAX_WORKLOADS: usize = 4;
/// Longest workload name or kind (a Kubernetes object name, DNS subdomain).
const MAX_WORKLOAD_NAME: usize = 253;

/// The content of an endpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Pod name.
    pub name: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod labels, without source.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// IPv4 address.
    pub ipv4: Ipv4Addr,
    /// IPv6 address, if any.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// Host-side interface name, in the agent's network namespace.
    pub interface: String,
    /// The controllers that own the pod (a Deployment's name and kind), as
    /// Kubernetes' owner references give them; empty for a bare pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadSpec>,
}

/// A pod's owning controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// The controller's name (`deathstar`).
    pub name: String,
    /// Its kind (`Deployment`).
    pub kind: String,
}

/// Errors reading an endpoint file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The file is not a valid endpoint description.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the field and line when known.
        message: String,
        /// 1-based line of the bad field, when known.
        line: Option<usize>,
    },
    /// Another file already describes the same pod.
    #[error("{path}: endpoint {namespace}/{name} is already described by {other}")]
    Duplicate {
        /// The file.
        path: String,
        /// Namespace of the pod.
        namespace: String,
        /// Name of the pod.
        name: String,
        /// The file that describes it first.
        other: String,
    },
    /// The file or the directory could not be read or watched.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The system error.
        message: String,
    },
    /// No endpoint id is left.
    #[error("no free endpoint id left (1..={MAX_ENDPOINT_ID})")]
    IdsExhausted,
}

impl EndpointError {
    /// The line of the bad field, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            EndpointError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

/// Parses and checks an endpoint file's text; `path` names it in errors.
pub fn parse_endpoint_file(path: &Path, text: &str) -> Result<EndpointSpec, EndpointError> {
    let invalid = |message: String, line: Option<usize>| EndpointError::Invalid {
        path: path.display().to_string(),
        message,
        line,
    };
    let spec: EndpointSpec = serde_yaml::from_str(text)
        .map_err(|e| invalid(e.to_string(), e.location().map(|l| l.line())))?;
    if spec.name.is_empty() {
        return Err(invalid("name: must not be empty".to_string(), None));
    }
    if spec.namespace.is_empty() {
        return Err(invalid("namespace: must not be empty".to_string(), None));
    }
    if spec.interface.is_empty()
        || spec.interface.len() > MAX_INTERFACE_NAME
        || spec.interface.contains('/')
    {
        return Err(invalid(
            format!(
                "interface: {:?} is not an interface name (1 to {MAX_INTERFACE_NAME} characters, no '/')",
                spec.interface
            ),
            None,
        ));
    }
    if let Some(key) = spec.labels.keys().find(|k| k.is_empty() || k.contains(':')) {
        return Err(invalid(
            format!("labels: {key:?} is not a label key (non-empty, no ':')"),
            None,
        ));
    }
    if spec.workloads.len() > MAX_WORKLOADS {
        return Err(invalid(
            format!(
                "workloads: {} entries, at most {MAX_WORKLOADS} (MAX_WORKLOADS)",
                spec.workloads.len()
            ),
            None,
        ));
    }
    if let Some(bad) = spec.workloads.iter().find(|w| {
        [&w.name, &w.kind]
            .iter()
            .any(|v| v.is_empty() || v.len() > MAX_WORKLOAD_NAME)
    }) {
        return Err(invalid(
            format!(
                "workloads: {{name: {:?}, kind: {:?}}} needs a name and a kind of 1 to {MAX_WORKLOAD_NAME} characters",
                bad.name, bad.kind
            ),
            None,
        ));
    }
    Ok(spec)
}

/// The lifecycle state of an endpoint, printed as Cilium prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointStatus {
    /// The identity is being allocated.
    WaitingForIdentity,
    /// Identity and policy are in place.
    Ready,
}

impl fmt::Display for EndpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointStatus::WaitingForIdentity => "waiting-for-identity",
            EndpointStatus::Ready => "ready",
        })
    }
}

/// An endpoint of this node with its security identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Endpoint id, unique on this node.
    pub id: u16,
    /// The file that describes it.
    pub path: PathBuf,
    /// What the file says.
    pub spec: EndpointSpec,
    /// Security labels (pod labels, namespace, cluster).
    pub labels: LabelSet,
    /// Security identity.
    pub identity: Identity,
    /// Lifecycle state.
    pub status: EndpointStatus,
}

/// The security labels of an endpoint described by `spec`.
pub fn security_labels(spec: &EndpointSpec, cluster: &str) -> LabelSet {
    LabelSet::for_pod(&spec.labels, &spec.namespace, cluster)
}

#[cfg(test)]
mod tests;
