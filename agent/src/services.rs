//! Services: Kubernetes-style services (ClusterIP, NodePort) expanded into Cilium-style
//! load-balancer entries.
//!
//! A service is declared by a [`ServiceSpec`] (a YAML file in the services directory,
//! an etcd key in a cluster, see ARCHITECTURE.md "Service files") or by the admin API
//! (`hubble-agent service update`, one frontend with explicit backends). The
//! [`ServiceTable`] keeps the declarations, gives every frontend a stable numeric ID
//! (saved in the state file) and expands the declarations into [`LbService`]s: one per
//! frontend (VIP, port, protocol), with the backends resolved from the pods the agent
//! knows (selector) and the explicit addresses. [`crate::state::AgentState`] holds the
//! table; the datapath programs its load-balancer maps from
//! [`crate::state::AgentState::lb_services`], and the flow parser names services from
//! [`crate::state::AgentState::service_by_frontend`] and
//! [`crate::state::AgentState::service_by_backend`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod files;
mod spec;
mod table;

pub use files::{apply_service_events, watch_services, ServiceFiles};

pub use spec::{
    parse_service_file, ServiceBackendSpec, ServiceError, ServicePortSpec, ServiceSpec,
    SessionAffinityConfig, DEFAULT_AFFINITY_TIMEOUT,
};
pub use table::{
    ApiService, DeclaredService, FrontendId, LbTable, ServiceSource, ServiceTable,
    ServicesSnapshot, MAX_SERVICE_ID,
};

/// Default directory of service files.
pub const DEFAULT_SERVICES_DIR: &str = "/var/run/hubble-rs/services";

/// A service's Kubernetes name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct ServiceName {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
}

impl ServiceName {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// True for a service created through the API without a name.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceName {
    type Err = String;

    /// `namespace/name`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(ServiceName::new(namespace, name))
            }
            _ => Err(format!(
                "{text:?} is not a service name (expected namespace/name)"
            )),
        }
    }
}

/// How a frontend is reached, as `cilium service list` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    /// A virtual address inside the cluster.
    ClusterIP,
    /// A port on every node's addresses.
    NodePort,
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceKind::ClusterIP => "ClusterIP",
            ServiceKind::NodePort => "NodePort",
        })
    }
}

/// The L4 protocol of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    TCP,
    /// UDP.
    UDP,
}

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::TCP => 6,
            Protocol::UDP => 17,
        }
    }

    /// The protocol with this IANA number, if a service can use it.
    pub fn from_number(number: u8) -> Option<Protocol> {
        match number {
            6 => Some(Protocol::TCP),
            17 => Some(Protocol::UDP),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::TCP),
            "UDP" => Ok(Protocol::UDP),
            _ => Err(format!(
                "{text:?} is not a service protocol (expected TCP or UDP)"
            )),
        }
    }
}

/// Where clients reach a service: address, port and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Frontend {
    /// The virtual address (`0.0.0.0`/`::` for a NodePort on every node address).
    pub address: IpAddr,
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for Frontend {
    /// `10.96.60.53:80/TCP`, `[fd00::1]:80/TCP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            SocketAddr::new(self.address, self.port),
            self.protocol
        )
    }
}

impl FromStr for Frontend {
    type Err = String;

    /// `10.96.60.53:80` (TCP) or `10.96.60.53:80/UDP`, `[fd00::1]:53/UDP`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (address, protocol) = match text.rsplit_once('/') {
            Some((address, protocol)) => (address, protocol.parse()?),
            None => (text, Protocol::TCP),
        };
        let address: SocketAddr = address.parse().map_err(|_| {
            format!("{text:?} is not a frontend (expected address:port[/TCP|/UDP])")
        })?;
        Ok(Frontend {
            address: address.ip(),
            port: address.port(),
            protocol,
        })
    }
}

/// The state of a backend, as Cilium names them. Only active backends take new
/// connections; terminating ones keep their existing ones.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new connections.
    #[default]
    Active,
    /// Going away: keeps existing connections, takes no new ones.
    Terminating,
    /// Failed a health check: takes no new connections.
    Quarantined,
    /// Taken out by the operator: takes no new connections.
    Maintenance,
}

impl BackendState {
    /// Whether new connections may go to a backend in this state.
    pub fn takes_new_connections(self) -> bool {
        self == BackendState::Active
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendState::Active => "active",
            BackendState::Terminating => "terminating",
            BackendState::Quarantined => "quarantined",
            BackendState::Maintenance => "maintenance",
        })
    }
}

impl FromStr for BackendState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "active" => Ok(BackendState::Active),
            "terminating" => Ok(BackendState::Terminating),
            "quarantined" => Ok(BackendState::Quarantined),
            "maintenance" => Ok(BackendState::Maintenance),
            _ => Err(format!(
                "{text:?} is not a backend state (expected active, terminating, quarantined or maintenance)"
            )),
        }
    }
}

/// One backend of a frontend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// The pod (or other) address.
    pub address: IpAddr,
    /// The port on the backend.
    pub port: u16,
    /// Whether it takes new connections.
    pub state: BackendState,
    /// The node the backend runs on, when it is another node's pod or the declaration
    /// names one; `None` for this node's pods and unknown places.
    pub node: Option<String>,
}

/// Session affinity by client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionAffinity {
    /// How long a client keeps its backend after its last connection, in seconds.
    pub timeout_seconds: u32,
}

/// One load-balancer entry: a frontend with its backends, as the datapath programs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbService {
    /// The frontend's numeric ID, stable across restarts.
    pub id: u16,
    /// The Kubernetes service it belongs to (empty for an unnamed API service).
    pub name: ServiceName,
    /// ClusterIP or NodePort.
    pub kind: ServiceKind,
    /// Where clients reach it.
    pub frontend: Frontend,
    /// Where connections go, sorted by address and port.
    pub backends: Vec<Backend>,
    /// Session affinity, if any.
    pub session_affinity: Option<SessionAffinity>,
}

impl LbService {
    /// The backends that take new connections.
    pub fn active_backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends
            .iter()
            .filter(|backend| backend.state.takes_new_connections())
    }
}

#[cfg(test)]
mod tests;
