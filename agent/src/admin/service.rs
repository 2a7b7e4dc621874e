//! `hubble-agent service list|update|delete`, as `cilium service` does them.

use std::fmt::Write as _;
use std::net::SocketAddr;

use clap::{Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::protocol::{AdminRequest, AdminResponse};
use super::tabwriter::align;
use super::AdminError;
use crate::services::{
    ApiService, Backend, BackendState, Frontend, LbService, ServiceKind, ServiceName,
};
use crate::state::AgentState;

/// `service` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ServiceCommand {
    /// List services (one row per frontend, its backends below).
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'o', long, value_enum)]
        output: Option<ServiceOutput>,
    },
    /// Create or update a frontend's backends, or set backend states.
    Update {
        /// Identifier (the frontend's, or a free one for a new frontend).
        #[arg(long)]
        id: Option<u16>,
        /// Frontend address (`IP:port`, `IP:port/UDP`).
        #[arg(long)]
        frontend: Option<String>,
        /// Backend address or addresses (`IP:port`).
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Backend state(s) as {active(default),terminating,quarantined,maintenance}.
        #[arg(long, value_delimiter = ',')]
        states: Vec<String>,
        /// Set service as a k8s NodePort.
        #[arg(long)]
        k8s_node_port: bool,
        /// The Kubernetes service it belongs to (`namespace/name`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete what `service update` set: one frontend by ID, or all of them.
    Delete {
        /// Delete every frontend set through `service update`.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// The service ID.
        #[arg(required_unless_present = "all")]
        id: Option<u16>,
    },
}

/// `-o` of `service list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceOutput {
    /// Cilium's JSON (a list of services with `spec` and `status.realized`).
    Json,
}

/// What `service update` asks for, as sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUpdate {
    /// The ID to use or check.
    pub id: Option<u16>,
    /// The frontend (or the ID's).
    pub frontend: Option<Frontend>,
    /// The backends.
    pub backends: Vec<SocketAddr>,
    /// Their states: none (all active), one for all, or one each.
    pub states: Vec<BackendState>,
    /// ClusterIP or NodePort.
    pub kind: ServiceKind,
    /// The service it belongs to.
    pub name: Option<ServiceName>,
}

/// What a service command asks the agent.
pub(super) fn to_request(command: &ServiceCommand) -> Result<AdminRequest, AdminError> {
    let usage = AdminError::Usage;
    Ok(match command {
        ServiceCommand::List { .. } => AdminRequest::ServiceList,
        ServiceCommand::Delete { all, id } => AdminRequest::ServiceDelete { id: *id, all: *all },
        ServiceCommand::Update {
            id,
            frontend,
            backends,
            states,
            k8s_node_port,
            name,
        } => {
            let frontend = frontend
                .as_deref()
                .map(str::parse::<Frontend>)
                .transpose()
                .map_err(|e| usage(format!("--frontend: {e}")))?;
            let backends = backends
                .iter()
                .map(|b| {
                    b.parse::<SocketAddr>()
                        .map_err(|_| usage(format!("--backends: {b:?} is not an IP:port address")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let states = states
                .iter()
                .map(|s| {
                    s.parse::<BackendState>()
                        .map_err(|e| usage(format!("--states: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if states.len() > 1 && states.len() != backends.len() {
                return Err(usage(format!(
                    "--states: {} states for {} backends (give one, or one per backend)",
                    states.len(),
                    backends.len()
                )));
            }
            if frontend.is_none() && id.is_none() && (backends.is_empty() || states.is_empty()) {
                return Err(usage(
                    "service update needs --frontend or --id, or --backends with --states"
                        .to_string(),
                ));
            }
            let name = name
                .as_deref()
                .map(str::parse::<ServiceName>)
                .transpose()
                .map_err(|e| usage(format!("--name: {e}")))?;
            AdminRequest::ServiceUpdate {
                update: ServiceUpdate {
                    id: *id,
                    frontend,
                    backends,
                    states,
                    kind: if *k8s_node_port {
                        ServiceKind::NodePort
                    } else {
                        ServiceKind::ClusterIP
                    },
                    name,
                },
            }
        }
    })
}

/// Answers a service request.
pub(super) fn handle(state: &AgentState, request: AdminRequest) -> AdminResponse {
    let error = |message: String| AdminResponse::Error { message };
    match request {
        AdminRequest::ServiceList => AdminResponse::Services {
            services: state.lb_services(),
        },
        AdminRequest::ServiceUpdate { update } => match update_service(state, update) {
            Ok(response) => response,
            Err(message) => error(message),
        },
        AdminRequest::ServiceDelete { id, all } => {
            let ids: Vec<u16> = match (id, all) {
                (Some(id), _) => vec![id],
                (None, _) => state
                    .lb_services()
                    .iter()
                    .filter(|s| state.is_api_service(&s.frontend))
                    .map(|s| s.id)
                    .collect(),
            };
            for id in &ids {
                if let Err(message) = state.delete_api_service(*id) {
                    return error(message);
                }
            }
            AdminResponse::ServicesDeleted { ids }
        }
        other => error(format!("not a service request: {other:?}")),
    }
}

fn update_service(state: &AgentState, update: ServiceUpdate) -> Result<AdminResponse, String> {
    let state_of = |index: usize| match update.states.as_slice() {
        [] => BackendState::Active,
        [one] => *one,
        many => many.get(index).copied().unwrap_or_default(),
    };
    let frontend = match (update.frontend, update.id) {
        (Some(frontend), _) => frontend,
        (None, Some(id)) => state
            .service_frontend(id)
            .ok_or_else(|| format!("service {id} not found (give --frontend to create it)"))?,
        (None, None) => {
            let states: Vec<(SocketAddr, BackendState)> = update
                .backends
                .iter()
                .enumerate()
                .map(|(index, address)| (*address, state_of(index)))
                .collect();
            let warning = state.set_backend_states(&states)?;
            return Ok(AdminResponse::BackendStatesUpdated {
                backends: states.len(),
                warnings: warning.into_iter().collect(),
            });
        }
    };
    let created = state.service_id(&frontend).is_none();
    let backends: Vec<Backend> = update
        .backends
        .iter()
        .enumerate()
        .map(|(index, address)| Backend {
            address: address.ip(),
            port: address.port(),
            state: state_of(index),
            node: None,
        })
        .collect();
    let count = backends.len();
    let (id, warning) = state.update_api_service(
        ApiService {
            frontend,
            kind: update.kind,
            name: update.name.unwrap_or_default(),
            backends,
            session_affinity: None,
        },
        update.id,
    )?;
    Ok(AdminResponse::ServiceUpdated {
        id,
        created,
        backends: count,
        warnings: warning.into_iter().collect(),
    })
}

/// The `service list` table: `cilium service list`'s columns, one backend per line as
/// `N => address:port/PROTO (state)`.
pub fn format_service_list(services: &[LbService]) -> String {
    let mut services: Vec<&LbService> = services.iter().collect();
    services.sort_by_key(|s| s.id);
    let mut text = String::from("ID\tFrontend\tService Type\tBackend\t\n");
    for service in services {
        let backends: Vec<String> = service
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let address = Frontend {
                    address: backend.address,
                    port: backend.port,
                    protocol: service.frontend.protocol,
                };
                format!("{} => {address} ({})", index + 1, backend.state)
            })
            .collect();
        let first = backends.first().map(String::as_str).unwrap_or_default();
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{first}\t",
            service.id, service.frontend, service.kind
        );
        for backend in backends.iter().skip(1) {
            let _ = writeln!(text, "\t\t\t{backend}\t");
        }
    }
    align(&text, 5, 3)
}

/// `service list -o json`: Cilium's service model (`spec` and `status.realized`, the
/// same here), indented.
pub fn format_service_json(services: &[LbService]) -> String {
    let list: Vec<serde_json::Value> = services
        .iter()
        .map(|service| {
            let frontend = json!({
                "ip": service.frontend.address.to_string(),
                "port": service.frontend.port,
                "protocol": service.frontend.protocol.to_string(),
                "scope": "external",
            });
            let backends: Vec<serde_json::Value> = service
                .backends
                .iter()
                .map(|backend| {
                    let mut value = json!({
                        "ip": backend.address.to_string(),
                        "port": backend.port,
                        "protocol": service.frontend.protocol.to_string(),
                        "state": backend.state.to_string(),
                    });
                    if let Some(node) = &backend.node {
                        value["nodeName"] = json!(node);
                    }
                    value
                })
                .collect();
            let mut flags = json!({
                "type": service.kind.to_string(),
                "name": service.name.name,
                "namespace": service.name.namespace,
            });
            if let Some(affinity) = service.session_affinity {
                flags["sessionAffinity"] = json!(true);
                flags["sessionAffinityTimeoutSeconds"] = json!(affinity.timeout_seconds);
            }
            let spec = json!({
                "id": service.id,
                "frontend-address": frontend,
                "backend-addresses": backends,
                "flags": flags,
            });
            json!({
                "spec": spec.clone(),
                "status": {"realized": spec},
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
    text.push('\n');
    text
}
