//! The declared services, their frontend IDs, and their expansion into [`LbService`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    Backend, BackendState, Frontend, LbService, ServiceKind, ServiceName, ServiceSpec,
    SessionAffinity,
};
use crate::endpoints::EndpointTable;
use crate::kvstore::RemoteEndpoint;

/// Highest service ID (IDs are 16-bit, 0 is never used).
pub const MAX_SERVICE_ID: u16 = u16::MAX;

/// Where a declared service comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceSource {
    /// A file of the services directory.
    File(PathBuf),
    /// The cluster store (etcd).
    Kvstore,
}

impl std::fmt::Display for ServiceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceSource::File(path) => write!(f, "file {}", path.display()),
            ServiceSource::Kvstore => f.write_str("etcd"),
        }
    }
}

/// A frontend set through the admin API (`service update`): explicit backends, which
/// replace those of a declared service with the same frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiService {
    /// The frontend.
    pub frontend: Frontend,
    /// Its kind.
    pub kind: ServiceKind,
    /// Its service name (empty when the API gave none and no declaration has it).
    #[serde(default)]
    pub name: ServiceName,
    /// The backends.
    pub backends: Vec<Backend>,
    /// Session affinity.
    #[serde(default)]
    pub session_affinity: Option<SessionAffinity>,
}

/// A declared service with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredService {
    /// Where it comes from.
    pub source: ServiceSource,
    /// What it says.
    pub spec: ServiceSpec,
}

/// One frontend's ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendId {
    /// The frontend.
    pub frontend: Frontend,
    /// Its ID.
    pub id: u16,
}

/// Every service as saved in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesSnapshot {
    /// Declared services, by name.
    pub declared: Vec<DeclaredService>,
    /// Frontends set through the API, by frontend.
    pub api: Vec<ApiService>,
    /// Frontend IDs, by ID.
    pub ids: Vec<FrontendId>,
    /// Backend states set through the API.
    #[serde(default)]
    pub backend_states: Vec<BackendStateRecord>,
}

/// A backend state set through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendStateRecord {
    /// The backend's address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its state.
    pub state: BackendState,
}

/// The declared services and the frontend IDs. Plain data: [`crate::state::AgentState`]
/// locks it and saves it.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    pub(super) declared: BTreeMap<ServiceName, DeclaredService>,
    pub(super) api: BTreeMap<Frontend, ApiService>,
    pub(super) ids: BTreeMap<Frontend, u16>,
    /// Backend states set through the API (`service update --backends .. --states ..`),
    /// which apply to the backend in every service.
    pub(super) backend_states: BTreeMap<(IpAddr, u16), BackendState>,
}

impl ServiceTable {
    /// An empty table.
    pub fn new() -> Self {
        ServiceTable::default()
    }

    /// A table holding a saved snapshot (checked: IDs unique and non-zero).
    pub fn restored(snapshot: ServicesSnapshot) -> Result<Self, String> {
        let mut table = ServiceTable::new();
        let mut used = BTreeSet::new();
        for FrontendId { frontend, id } in snapshot.ids {
            if id == 0 || !used.insert(id) {
                return Err(format!(
                    "services: ID {id} of {frontend} is 0 or used twice"
                ));
            }
            table.ids.insert(frontend, id);
        }
        for declared in snapshot.declared {
            declared
                .spec
                .validate()
                .map_err(|e| format!("services: {}: {e}", declared.spec.service_name()))?;
            table
                .declared
                .insert(declared.spec.service_name(), declared);
        }
        for api in snapshot.api {
            table.api.insert(api.frontend, api);
        }
        for record in snapshot.backend_states {
            table
                .backend_states
                .insert((record.address, record.port), record.state);
        }
        table.assign_ids()?;
        Ok(table)
    }

    /// What the state file keeps.
    pub fn snapshot(&self) -> ServicesSnapshot {
        let mut ids: Vec<FrontendId> = self
            .ids
            .iter()
            .map(|(frontend, id)| FrontendId {
                frontend: *frontend,
                id: *id,
            })
            .collect();
        ids.sort_by_key(|entry| entry.id);
        ServicesSnapshot {
            declared: self.declared.values().cloned().collect(),
            api: self.api.values().cloned().collect(),
            ids,
            backend_states: self
                .backend_states
                .iter()
                .map(|((address, port), state)| BackendStateRecord {
                    address: *address,
                    port: *port,
                    state: *state,
                })
                .collect(),
        }
    }

    /// The declared services with their sources, by name.
    pub fn declared(&self) -> impl Iterator<Item = &DeclaredService> {
        self.declared.values()
    }

    /// Declares (or changes) a service. Refused, leaving the table as it was, when
    /// another source declares the same name or another service uses one of its
    /// frontends. Returns whether anything changed.
    pub fn upsert(&mut self, source: ServiceSource, spec: ServiceSpec) -> Result<bool, String> {
        spec.validate()?;
        let name = spec.service_name();
        if let Some(existing) = self.declared.get(&name) {
            if existing.source != source {
                return Err(format!(
                    "service {name} is already declared by {}",
                    existing.source
                ));
            }
            if existing.spec == spec {
                return Ok(false);
            }
        }
        for (frontend, _, _) in spec.frontends() {
            if let Some(other) = self
                .declared
                .values()
                .filter(|d| d.spec.service_name() != name)
                .find(|d| d.spec.frontends().iter().any(|(f, _, _)| *f == frontend))
            {
                return Err(format!(
                    "frontend {frontend} of service {name} is already used by service {}",
                    other.spec.service_name()
                ));
            }
        }
        let before = self.clone();
        self.declared.insert(name, DeclaredService { source, spec });
        if let Err(e) = self.assign_ids() {
            *self = before;
            return Err(e);
        }
        Ok(true)
    }

    /// Removes a declared service if `source` declared it; returns whether it did.
    pub fn remove(&mut self, source: &ServiceSource, name: &ServiceName) -> bool {
        if self.declared.get(name).map(|d| &d.source) != Some(source) {
            return false;
        }
        self.declared.remove(name);
        // Releasing IDs cannot fail.
        let _ = self.assign_ids();
        true
    }

    /// Sets a frontend's backends through the API, with ID `requested` when given (it
    /// must be the frontend's ID, or free for a new frontend); returns its ID.
    pub fn upsert_api(
        &mut self,
        mut service: ApiService,
        requested: Option<u16>,
    ) -> Result<u16, String> {
        if service.name.is_empty() {
            if let Some((name, _)) = self.declared_frontend(&service.frontend) {
                service.name = name;
            }
        }
        let before = self.clone();
        let frontend = service.frontend;
        if let Some(id) = requested {
            match (self.ids.get(&frontend), self.frontend_of(id)) {
                (Some(known), _) if *known != id => {
                    return Err(format!("frontend {frontend} has ID {known}, not {id}"))
                }
                (Some(_), _) => {}
                (None, Some(other)) => {
                    return Err(format!("service ID {id} is taken by frontend {other}"))
                }
                (None, None) if id == 0 => return Err("service ID 0 is not an ID".to_string()),
                (None, None) => {
                    self.ids.insert(frontend, id);
                }
            }
        }
        self.api.insert(frontend, service);
        if let Err(e) = self.assign_ids() {
            *self = before;
            return Err(e);
        }
        Ok(self.ids.get(&frontend).copied().unwrap_or_default())
    }

    /// Removes the API's settings of frontend `id`: an API-only frontend goes away, a
    /// declared one gets its declared backends back. Errors name the ID and why.
    pub fn remove_api(&mut self, id: u16) -> Result<Frontend, String> {
        let Some(frontend) = self.frontend_of(id) else {
            return Err(format!("service {id} not found"));
        };
        if self.api.remove(&frontend).is_none() {
            let (name, source) = self
                .declared_frontend(&frontend)
                .map(|(name, declared)| (name, declared.source.to_string()))
                .unwrap_or_default();
            return Err(format!(
                "service {id} ({frontend}) is service {name}, declared by {source}; remove it there"
            ));
        }
        let _ = self.assign_ids();
        Ok(frontend)
    }

    /// Sets backend states, overriding what the declarations say.
    pub fn set_backend_states(&mut self, states: &[(std::net::SocketAddr, BackendState)]) {
        for (address, state) in states {
            self.backend_states
                .insert((address.ip(), address.port()), *state);
        }
    }

    /// Whether the API set this frontend's backends.
    pub fn is_api(&self, frontend: &Frontend) -> bool {
        self.api.contains_key(frontend)
    }

    /// The frontend with this ID.
    pub fn frontend_of(&self, id: u16) -> Option<Frontend> {
        self.ids
            .iter()
            .find(|(_, known)| **known == id)
            .map(|(frontend, _)| *frontend)
    }

    /// The ID of a frontend.
    pub fn id_of(&self, frontend: &Frontend) -> Option<u16> {
        self.ids.get(frontend).copied()
    }

    pub(super) fn declared_frontend(
        &self,
        frontend: &Frontend,
    ) -> Option<(ServiceName, &DeclaredService)> {
        self.declared.iter().find_map(|(name, declared)| {
            declared
                .spec
                .frontends()
                .iter()
                .any(|(f, _, _)| f == frontend)
                .then(|| (name.clone(), declared))
        })
    }

    /// Gives every frontend in use an ID (the lowest free one) and frees the IDs of
    /// frontends no longer in use.
    pub(super) fn assign_ids(&mut self) -> Result<(), String> {
        let wanted: BTreeSet<Frontend> = self
            .declared
            .values()
            .flat_map(|d| d.spec.frontends().into_iter().map(|(f, _, _)| f))
            .chain(self.api.keys().copied())
            .collect();
        self.ids.retain(|frontend, _| wanted.contains(frontend));
        let mut used: BTreeSet<u16> = self.ids.values().copied().collect();
        let mut next = 1u16;
        for frontend in wanted {
            if self.ids.contains_key(&frontend) {
                continue;
            }
            while used.contains(&next) {
                next = next
                    .checked_add(1)
                    .ok_or_else(|| format!("no free service ID left (1..={MAX_SERVICE_ID})"))?;
            }
            used.insert(next);
            self.ids.insert(frontend, next);
        }
        Ok(())
    }

    /// Every frontend with its backends, in ID order: declared services with the
    /// backends their selector finds among `local` and `remote` pods (of the service's
    /// namespace and address family) and their explicit addresses, the API's backends
    /// replacing them where set.
    pub fn expand(&self, local: &EndpointTable, remote: &[RemoteEndpoint]) -> Vec<LbService> {
        let mut services = Vec::new();
        let mut covered = BTreeSet::new();
        for (name, declared) in &self.declared {
            let spec = &declared.spec;
            for (frontend, kind, port) in spec.frontends() {
                let Some(id) = self.id_of(&frontend) else {
                    continue;
                };
                covered.insert(frontend);
                let backends = match self.api.get(&frontend) {
                    Some(api) => api.backends.clone(),
                    None => resolve_backends(
                        spec,
                        frontend.address.is_ipv4(),
                        port.backend_port(),
                        local,
                        remote,
                    ),
                };
                services.push(LbService {
                    id,
                    name: name.clone(),
                    kind,
                    frontend,
                    backends,
                    session_affinity: spec.affinity(),
                });
            }
        }
        for (frontend, api) in &self.api {
            if covered.contains(frontend) {
                continue;
            }
            let Some(id) = self.id_of(frontend) else {
                continue;
            };
            services.push(LbService {
                id,
                name: api.name.clone(),
                kind: api.kind,
                frontend: *frontend,
                backends: api.backends.clone(),
                session_affinity: api.session_affinity,
            });
        }
        for service in &mut services {
            for backend in &mut service.backends {
                if let Some(state) = self.backend_states.get(&(backend.address, backend.port)) {
                    backend.state = *state;
                }
            }
        }
        services.sort_by_key(|service| service.id);
        services
    }
}

/// The backends of one frontend of `spec`, sorted by address and port.
fn resolve_backends(
    spec: &ServiceSpec,
    v4: bool,
    port: u16,
    local: &EndpointTable,
    remote: &[RemoteEndpoint],
) -> Vec<Backend> {
    let family = |ip: &IpAddr| ip.is_ipv4() == v4;
    let mut backends: BTreeMap<(IpAddr, u16), Backend> = BTreeMap::new();
    let mut add = |address: IpAddr, state: BackendState, node: Option<String>| {
        backends.insert(
            (address, port),
            Backend {
                address,
                port,
                state,
                node,
            },
        );
    };
    if !spec.selector.is_empty() {
        for endpoint in local.iter() {
            let pod = &endpoint.spec;
            let selected = pod.namespace == spec.namespace
                && spec
                    .selector
                    .iter()
                    .all(|(key, value)| pod.labels.get(key) == Some(value));
            if !selected {
                continue;
            }
            let addresses = [Some(IpAddr::V4(pod.ipv4)), pod.ipv6.map(IpAddr::V6)];
            for address in addresses.into_iter().flatten().filter(family) {
                add(address, BackendState::Active, None);
            }
        }
        for pod in remote {
            let labels: HashMap<&str, &str> = pod
                .labels
                .iter()
                .filter_map(|label| label.strip_prefix("k8s:")?.split_once('='))
                .collect();
            let selected = pod.namespace == spec.namespace
                && spec
                    .selector
                    .iter()
                    .all(|(key, value)| labels.get(key.as_str()) == Some(&value.as_str()));
            if selected && family(&pod.ip) {
                add(pod.ip, BackendState::Active, Some(pod.node_name.clone()));
            }
        }
    }
    for backend in &spec.backends {
        let (address, state, node) = backend.parts();
        if family(&address) {
            // An address another node published is that node's.
            let node = node.map(String::from).or_else(|| {
                remote
                    .iter()
                    .find(|pod| pod.ip == address)
                    .map(|pod| pod.node_name.clone())
            });
            add(address, state, node);
        }
    }
    backends.into_values().collect()
}

/// The expanded services with lookups by frontend and by backend.
#[derive(Debug, Clone, Default)]
pub struct LbTable {
    services: Vec<LbService>,
    by_frontend: HashMap<Frontend, usize>,
    by_backend: HashMap<(IpAddr, u16), usize>,
}

impl LbTable {
    /// Indexes `services` (in ID order).
    pub fn new(services: Vec<LbService>) -> Self {
        let mut by_frontend = HashMap::new();
        let mut by_backend = HashMap::new();
        for (index, service) in services.iter().enumerate() {
            by_frontend.insert(service.frontend, index);
            for backend in &service.backends {
                // The lowest ID wins when a backend serves several frontends.
                by_backend
                    .entry((backend.address, backend.port))
                    .or_insert(index);
            }
        }
        LbTable {
            services,
            by_frontend,
            by_backend,
        }
    }

    /// Every service, in ID order.
    pub fn services(&self) -> &[LbService] {
        &self.services
    }

    /// The service of a frontend.
    pub fn by_frontend(&self, frontend: &Frontend) -> Option<&LbService> {
        self.by_frontend
            .get(frontend)
            .map(|index| &self.services[*index])
    }

    /// The (lowest-ID) service with this backend.
    pub fn by_backend(&self, address: IpAddr, port: u16) -> Option<&LbService> {
        self.by_backend
            .get(&(address, port))
            .map(|index| &self.services[*index])
    }
}
