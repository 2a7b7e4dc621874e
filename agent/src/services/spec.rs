//! The service file: a Kubernetes Service as written in YAML, flattened (see
//! ARCHITECTURE.md, "Service files").

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BackendState, Frontend, Protocol, ServiceKind, ServiceName, SessionAffinity};

/// Kubernetes' default session affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// Kubernetes' NodePort range.
const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30_000..=32_767;

/// The content of a service file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service name.
    pub name: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// `ClusterIP` (default) or `NodePort`.
    #[serde(default = "default_kind", rename = "type")]
    pub kind: ServiceKind,
    /// The virtual address (IPv4 or IPv6).
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<IpAddr>,
    /// Every virtual address (dual stack); may repeat `clusterIP`.
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<IpAddr>,
    /// The ports.
    pub ports: Vec<ServicePortSpec>,
    /// Pods (of the service's namespace) whose labels include all of these are backends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Explicit backend addresses (an Endpoints object's addresses), besides the selector's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<ServiceBackendSpec>,
    /// `None` (default) or `ClientIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<String>,
    /// The affinity timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
}

fn default_kind() -> ServiceKind {
    ServiceKind::ClusterIP
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePortSpec {
    /// Port name (needed when there are several).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The frontend port.
    pub port: u16,
    /// The backends' port (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// TCP (default) or UDP.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// The node port (NodePort services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

fn default_protocol() -> Protocol {
    Protocol::TCP
}

impl ServicePortSpec {
    /// The port the backends listen on.
    pub fn backend_port(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }
}

/// An explicit backend: an address, or an address with its state and node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServiceBackendSpec {
    /// Just the address: an active backend.
    Address(IpAddr),
    /// The address with details.
    Detailed {
        /// The address.
        address: IpAddr,
        /// Its state (default active).
        #[serde(default)]
        state: BackendState,
        /// The node it runs on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
}

impl ServiceBackendSpec {
    /// The address, state and node.
    pub fn parts(&self) -> (IpAddr, BackendState, Option<&str>) {
        match self {
            ServiceBackendSpec::Address(address) => (*address, BackendState::Active, None),
            ServiceBackendSpec::Detailed {
                address,
                state,
                node,
            } => (*address, *state, node.as_deref()),
        }
    }
}

/// `sessionAffinityConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// `clientIP: {timeoutSeconds: N}`.
    #[serde(rename = "clientIP")]
    pub client_ip: ClientIpConfig,
}

/// `clientIP` of [`SessionAffinityConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// Seconds.
    pub timeout_seconds: u32,
}

impl ServiceSpec {
    /// `namespace/name`.
    pub fn service_name(&self) -> ServiceName {
        ServiceName::new(&self.namespace, &self.name)
    }

    /// Every virtual address, `clusterIP` first, without repeats.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut seen = BTreeSet::new();
        self.cluster_ip
            .iter()
            .chain(&self.cluster_ips)
            .copied()
            .filter(|ip| seen.insert(*ip))
            .collect()
    }

    /// The session affinity, if `ClientIP`.
    pub fn affinity(&self) -> Option<SessionAffinity> {
        (self.session_affinity.as_deref() == Some("ClientIP")).then(|| SessionAffinity {
            timeout_seconds: self
                .session_affinity_config
                .as_ref()
                .map_or(DEFAULT_AFFINITY_TIMEOUT, |c| c.client_ip.timeout_seconds),
        })
    }

    /// The frontends this service declares, with their kind and the service port
    /// each belongs to: every address x every port, then the node ports.
    pub fn frontends(&self) -> Vec<(Frontend, ServiceKind, &ServicePortSpec)> {
        let mut frontends = Vec::new();
        for address in self.addresses() {
            for port in &self.ports {
                let frontend = Frontend {
                    address,
                    port: port.port,
                    protocol: port.protocol,
                };
                frontends.push((frontend, ServiceKind::ClusterIP, port));
            }
        }
        if self.kind == ServiceKind::NodePort {
            let families: BTreeSet<bool> = self.addresses().iter().map(IpAddr::is_ipv4).collect();
            for port in &self.ports {
                let Some(node_port) = port.node_port else {
                    continue;
                };
                for v4 in &families {
                    let address = if *v4 {
                        IpAddr::from([0, 0, 0, 0])
                    } else {
                        IpAddr::from([0u16; 8])
                    };
                    let frontend = Frontend {
                        address,
                        port: node_port,
                        protocol: port.protocol,
                    };
                    frontends.push((frontend, ServiceKind::NodePort, port));
                }
            }
        }
        frontends
    }

    /// Checks what serde cannot; the message names the field and the bad value.
    pub fn validate(&self) -> Result<(), String> {
        check_dns_label("name", &self.name)?;
        check_dns_label("namespace", &self.namespace)?;
        if self.addresses().is_empty() {
            return Err("clusterIP: a service needs a cluster IP".to_string());
        }
        if let Some(ip) = self.addresses().into_iter().find(|ip| ip.is_unspecified()) {
            return Err(format!("clusterIP: {ip} is not a service address"));
        }
        if self.ports.is_empty() {
            return Err("ports: a service needs at least one port".to_string());
        }
        let mut names = BTreeSet::new();
        let mut frontends = BTreeSet::new();
        for port in &self.ports {
            if port.port == 0 {
                return Err("ports: port 0 is not a service port".to_string());
            }
            if port.target_port == Some(0) {
                return Err(format!(
                    "ports: targetPort 0 of port {} is not a port",
                    port.port
                ));
            }
            if self.ports.len() > 1 && port.name.is_empty() {
                return Err(format!(
                    "ports: port {} needs a name (the service has several ports)",
                    port.port
                ));
            }
            if !names.insert(port.name.as_str()) {
                return Err(format!("ports: the name {:?} is used twice", port.name));
            }
            if !frontends.insert((port.port, port.protocol)) {
                return Err(format!(
                    "ports: {}/{} is declared twice",
                    port.port, port.protocol
                ));
            }
            match (self.kind, port.node_port) {
                (ServiceKind::ClusterIP, Some(node_port)) => {
                    return Err(format!(
                        "ports: nodePort {node_port} needs type NodePort (the service is ClusterIP)"
                    ))
                }
                (ServiceKind::NodePort, Some(node_port))
                    if !NODE_PORT_RANGE.contains(&node_port) =>
                {
                    return Err(format!(
                        "ports: nodePort {node_port} is outside {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ))
                }
                _ => {}
            }
        }
        if let Some((key, _)) = self
            .selector
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains(':'))
        {
            return Err(format!(
                "selector: {key:?} is not a label key (non-empty, no ':')"
            ));
        }
        match self.session_affinity.as_deref() {
            None | Some("None") | Some("ClientIP") => {}
            Some(other) => {
                return Err(format!(
                    "sessionAffinity: {other:?} is not an affinity (expected None or ClientIP)"
                ))
            }
        }
        if let Some(config) = &self.session_affinity_config {
            let timeout = config.client_ip.timeout_seconds;
            if timeout == 0 || timeout > 86_400 {
                return Err(format!(
                    "sessionAffinityConfig: timeoutSeconds {timeout} is outside 1-86400"
                ));
            }
        }
        Ok(())
    }
}

fn check_dns_label(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: {value:?} is not a DNS label (1-63 of a-z, 0-9, '-')"
        ))
    }
}

/// Errors reading a service file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The file is not a valid service description.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the field and the value.
        message: String,
        /// 1-based line of the bad field, when known.
        line: Option<usize>,
    },
    /// Another file already declares the same service.
    #[error("{path}: service {name} is already declared by {other}")]
    Duplicate {
        /// The file.
        path: String,
        /// The service.
        name: ServiceName,
        /// The file that declares it first.
        other: String,
    },
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The system error.
        message: String,
    },
}

/// Parses and checks a service file's text; `path` names it in errors.
pub fn parse_service_file(path: &Path, text: &str) -> Result<ServiceSpec, ServiceError> {
    let invalid = |message: String, line: Option<usize>| ServiceError::Invalid {
        path: path.display().to_string(),
        message,
        line,
    };
    let spec: ServiceSpec = serde_yaml::from_str(text)
        .map_err(|e| invalid(e.to_string(), e.location().map(|l| l.line())))?;
    spec.validate().map_err(|message| {
        let field = message.split(':').next().unwrap_or_default();
        match line_of_field(text, field) {
            Some(line) => invalid(format!("{message} at line {line}"), Some(line)),
            None => invalid(message, None),
        }
    })?;
    Ok(spec)
}

/// The 1-based line where `field:` is written, if it is.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let needle = format!("{field}:");
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.starts_with(&needle)
        })
        .map(|index| index + 1)
}
