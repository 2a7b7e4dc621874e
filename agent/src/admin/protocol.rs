//! The admin protocol: one JSON request per line, one JSON response per line.

use serde::{Deserialize, Serialize};

use crate::endpoints::{Endpoint, EndpointStatus};
use crate::identity::Identity;
use crate::labels::LabelSet;
use crate::policy::{DeleteSelector, Enforcement};

/// Largest request line accepted (a policy document travels inside one).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A request to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    /// List the endpoints.
    EndpointList,
    /// Import policy text (YAML or JSON).
    PolicyImport {
        /// The document.
        text: String,
    },
    /// Print the rules in force.
    PolicyGet,
    /// Delete rules.
    PolicyDelete {
        /// Which rules.
        selector: DeleteRequest,
    },
    /// List the identities.
    IdentityList,
    /// List the services.
    ServiceList,
    /// Set a frontend's backends, or backend states.
    ServiceUpdate {
        /// What to set.
        update: super::service::ServiceUpdate,
    },
    /// Delete what `service update` set.
    ServiceDelete {
        /// One frontend by ID.
        id: Option<u16>,
        /// Every frontend `service update` set.
        all: bool,
    },
    /// List the FQDN cache.
    FqdnCacheList {
        /// Only this endpoint's entries.
        endpoint: Option<u16>,
    },
}

/// Which rules to delete, as sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteRequest {
    /// Every rule.
    All,
    /// A Kubernetes policy by name.
    Name {
        /// Policy name.
        name: String,
        /// Namespace; every namespace when absent.
        namespace: Option<String>,
    },
    /// Rules carrying all these labels (`source:key=value`).
    Labels(Vec<String>),
}

impl DeleteRequest {
    /// The repository selector, or a message naming a bad label.
    pub fn to_selector(&self) -> Result<DeleteSelector, String> {
        Ok(match self {
            DeleteRequest::All => DeleteSelector::All,
            DeleteRequest::Name { name, namespace } => DeleteSelector::Name {
                name: name.clone(),
                namespace: namespace.clone(),
            },
            DeleteRequest::Labels(labels) => DeleteSelector::Labels(
                LabelSet::parse(labels.iter().map(String::as_str)).map_err(|e| e.to_string())?,
            ),
        })
    }
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AdminResponse {
    /// Endpoints, by id.
    Endpoints {
        /// One row per endpoint.
        endpoints: Vec<EndpointRow>,
    },
    /// A policy was imported.
    Imported {
        /// The new revision.
        revision: u64,
        /// Things accepted but not enforced.
        warnings: Vec<String>,
    },
    /// The rules in force.
    Policy {
        /// The rules, as indented JSON.
        rules_json: String,
        /// The revision.
        revision: u64,
    },
    /// Rules were deleted.
    Deleted {
        /// The new revision.
        revision: u64,
    },
    /// Identities, by number.
    Identities {
        /// One row per identity.
        identities: Vec<IdentityRow>,
    },
    /// The services, one per frontend, by ID.
    Services {
        /// The services.
        services: Vec<crate::services::LbService>,
    },
    /// A frontend was created or updated.
    ServiceUpdated {
        /// Its ID.
        id: u16,
        /// Whether it is new.
        created: bool,
        /// Number of backends.
        backends: usize,
        /// E.g. the state could not be saved.
        warnings: Vec<String>,
    },
    /// Backend states were set.
    BackendStatesUpdated {
        /// Number of backends.
        backends: usize,
        /// E.g. the state could not be saved.
        warnings: Vec<String>,
    },
    /// Frontends were deleted.
    ServicesDeleted {
        /// Their IDs.
        ids: Vec<u16>,
    },
    /// The FQDN cache entries.
    FqdnCache {
        /// By endpoint and name.
        entries: Vec<crate::fqdn::FqdnRecord>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// One endpoint as `endpoint list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRow {
    /// Endpoint id.
    pub id: u16,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Ingress policy enforced.
    pub ingress_enforced: bool,
    /// Egress policy enforced.
    pub egress_enforced: bool,
    /// Security identity.
    pub identity: u32,
    /// Security labels, printed and sorted.
    pub labels: Vec<String>,
    /// IPv6 address, empty when none.
    pub ipv6: String,
    /// IPv4 address.
    pub ipv4: String,
    /// Host-side interface.
    pub interface: String,
    /// Lifecycle state (`waiting-for-identity`, `regenerating`, `ready`).
    pub status: String,
    /// L7 proxy redirects of the endpoint's policy, as Cilium names them
    /// (`<endpoint>:<direction>:<PROTO>:<port>`) with their proxy port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_redirects: Vec<(String, u16)>,
}

impl EndpointRow {
    /// The row of an endpoint.
    pub fn new(endpoint: &Endpoint, enforcement: Enforcement) -> Self {
        EndpointRow {
            id: endpoint.id,
            namespace: endpoint.spec.namespace.clone(),
            name: endpoint.spec.name.clone(),
            ingress_enforced: enforcement.ingress,
            egress_enforced: enforcement.egress,
            identity: endpoint.identity.0,
            labels: endpoint.labels.to_strings(),
            ipv6: endpoint
                .spec
                .ipv6
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            ipv4: endpoint.spec.ipv4.to_string(),
            interface: endpoint.spec.interface.clone(),
            status: endpoint.status.to_string(),
            proxy_redirects: Vec::new(),
        }
    }

    /// Adds the endpoint's L7 redirects (those of its identity).
    pub fn with_redirects(mut self, redirects: &[(crate::policy::RedirectKey, u16)]) -> Self {
        for (key, port) in redirects {
            if key.local_identity != self.identity {
                continue;
            }
            let direction = match key.direction {
                crate::policy::Direction::Ingress => "ingress",
                crate::policy::Direction::Egress => "egress",
            };
            let protocol = match key.protocol {
                6 => "TCP".to_string(),
                17 => "UDP".to_string(),
                other => other.to_string(),
            };
            self.proxy_redirects.push((
                format!("{}:{direction}:{protocol}:{}", self.id, key.dport),
                *port,
            ));
        }
        self
    }

    /// Lists a ready endpoint as `regenerating` (Cilium's state between a change and its
    /// regeneration) while the datapath has not caught up with the latest change.
    pub fn with_datapath_realized(mut self, realized: bool) -> Self {
        if !realized && self.status == EndpointStatus::Ready.to_string() {
            self.status = "regenerating".to_string();
        }
        self
    }
}

/// One identity as `identity list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRow {
    /// The number.
    pub id: u32,
    /// Its labels, printed and sorted.
    pub labels: Vec<String>,
}

impl IdentityRow {
    /// The row of an identity.
    pub fn new(identity: Identity, labels: &LabelSet) -> Self {
        IdentityRow {
            id: identity.0,
            labels: labels.to_strings(),
        }
    }
}
