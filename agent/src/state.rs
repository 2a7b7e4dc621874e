//! The control-plane state shared by the agent's tasks and the admin server.
//!
//! Locks are `std` locks held only for short, synchronous sections; identity
//! allocation (which may wait on a cluster store) happens outside them.
//! Every change that affects the datapath bumps a generation number on a
//! `watch` channel: the agent's sync task waits on it, recompiles with
//! [`AgentState::compile`] and pushes the result to the datapath. A `watch`
//! keeps only the latest value, so bursts of changes coalesce into one
//! recompilation and nothing queues up.
//!
//! With a state directory ([`store`]) every change of the policy repository or of
//! the endpoints is saved before the call returns, and [`AgentState::restore`] puts a
//! saved state back before the agent programs its datapath or serves.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::endpoints::{
    security_labels, Endpoint, EndpointEvent, EndpointStatus, EndpointTable, WatchedEndpoint,
};
use crate::fqdn::FqdnCache;
use crate::identity::{CidrIdentities, Identity, IdentityAllocator, IdentityError};
use crate::kvstore::RemoteEndpoints;
use crate::labels::LabelSet;
use crate::policy::{
    compile, enforcement_for, parse_policy, CompileInput, CompiledPolicy, DeleteSelector,
    Enforcement, FqdnMatcher, ImportOutcome, PolicyError, PolicyRepository, ProxyPorts,
};
use crate::services::{
    ApiService, Frontend, LbService, LbTable, Protocol, ServiceName, ServiceSource, ServiceSpec,
    ServiceTable,
};

pub mod store;

mod fqdn;
mod restore;

pub use restore::{RestoreError, RestoreReport};
use store::{
    CidrRecord, IdentityRecord, PolicySnapshot, Snapshot, StateStore, STATE_FORMAT_VERSION,
};

/// Shared state of the control plane.
pub struct AgentState {
    cluster: String,
    allocator: Arc<dyn IdentityAllocator>,
    repository: RwLock<PolicyRepository>,
    endpoints: RwLock<EndpointTable>,
    cidrs: Mutex<CidrIdentities>,
    changes: watch::Sender<u64>,
    /// The generation the datapath last brought itself in line with; `None` when no
    /// datapath programs this state (the agent runs without one).
    realized: Mutex<Option<u64>>,
    /// Where changes are saved, with the node's name; `None` keeps nothing.
    persistence: Mutex<Option<(StateStore, String)>>,
    /// Declared services and frontend IDs.
    services: Mutex<ServiceTable>,
    /// The services expanded with their backends, for the generation they were
    /// expanded at.
    lb: Mutex<Option<(u64, Arc<LbTable>)>>,
    /// Pods of the other nodes (cluster mode), as service backends.
    remote: RwLock<Option<RemoteEndpoints>>,
    /// Names the endpoints looked up through the DNS proxy.
    fqdn: Mutex<FqdnCache>,
    /// Set when the name cache changed since it was last saved (saved in batches,
    /// see [`AgentState::save_fqdn_if_changed`]).
    fqdn_unsaved: std::sync::atomic::AtomicBool,
    /// The proxy port of each L7 redirect, kept while the redirect exists.
    proxy_ports: Mutex<ProxyPorts>,
    /// The rules' `toFQDNs` selectors, compiled for the policy revision they came from.
    fqdn_matcher: Mutex<Option<(u64, Arc<FqdnMatcher>)>>,
    /// Woken whenever the datapath catches up ([`AgentState::mark_realized`]).
    realized_notify: tokio::sync::Notify,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("cluster", &self.cluster)
            .field("revision", &self.policy_revision())
            .finish_non_exhaustive()
    }
}

// A poisoned lock only means another task panicked mid-update of plain
// data; the data is still usable, so keep serving.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentState {
    /// A state with no endpoints and no policy, for the named cluster.
    pub fn new(allocator: Arc<dyn IdentityAllocator>, cluster: impl Into<String>) -> Arc<Self> {
        let (changes, _) = watch::channel(0);
        Arc::new(AgentState {
            cluster: cluster.into(),
            allocator,
            repository: RwLock::new(PolicyRepository::new()),
            endpoints: RwLock::new(EndpointTable::new()),
            cidrs: Mutex::new(CidrIdentities::new()),
            changes,
            realized: Mutex::new(None),
            persistence: Mutex::new(None),
            services: Mutex::new(ServiceTable::new()),
            lb: Mutex::new(None),
            remote: RwLock::new(None),
            fqdn: Mutex::new(FqdnCache::new(crate::fqdn::DEFAULT_MIN_TTL)),
            fqdn_unsaved: std::sync::atomic::AtomicBool::new(false),
            proxy_ports: Mutex::new(ProxyPorts::default()),
            fqdn_matcher: Mutex::new(None),
            realized_notify: tokio::sync::Notify::new(),
        })
    }

    /// Saves the state to `store` (as node `node`) now and after every change.
    pub fn persist_to(
        &self,
        store: StateStore,
        node: impl Into<String>,
    ) -> Result<(), store::StoreError> {
        *lock(&self.persistence) = Some((store, node.into()));
        self.save()
    }

    /// What a restart needs, as saved in the state directory.
    pub fn snapshot(&self, node: &str) -> Snapshot {
        let fqdn_names = self.fqdn_live_names();
        let repository = read(&self.repository);
        // CIDR identities follow the rules and the names toFQDNs selects; bring them
        // in line first so the saved table matches the saved rules and names (compile
        // does the same), and a restart gives each address its number back.
        let endpoints = read(&self.endpoints);
        let matcher = self.fqdn_matcher_of(&repository);
        let wanted = wanted_cidr_prefixes(&repository, &matcher, &fqdn_names);
        let mut cidrs = lock(&self.cidrs);
        if let Err(e) = cidrs.sync(&wanted) {
            tracing::warn!("CIDR identities: {e}");
        }
        Snapshot {
            version: STATE_FORMAT_VERSION,
            node: node.to_string(),
            policy: PolicySnapshot {
                revision: repository.revision(),
                rules: repository.rules().to_vec(),
            },
            endpoints: endpoints.iter().cloned().collect(),
            identities: endpoints
                .local_identities()
                .into_iter()
                .map(|(id, labels)| IdentityRecord { id, labels })
                .collect(),
            cidr_identities: cidrs
                .entries()
                .into_iter()
                .map(|(prefix, id)| CidrRecord {
                    prefix: prefix.to_string(),
                    id,
                })
                .collect(),
            services: lock(&self.services).snapshot(),
            fqdn: lock(&self.fqdn).records(),
            proxy_ports: lock(&self.proxy_ports).records(),
        }
    }

    /// Saves the state when a store is set. One save at a time: the lock is held
    /// while the snapshot is taken and written, so the newest change is saved last.
    fn save(&self) -> Result<(), store::StoreError> {
        let persistence = lock(&self.persistence);
        let Some((store, node)) = persistence.as_ref() else {
            return Ok(());
        };
        store.save(&self.snapshot(node))
    }

    /// Saves after a change; a failure is logged and returned as a warning for the
    /// user (the change is in force but a restart would lose it).
    fn save_after_change(&self) -> Option<String> {
        self.save().err().map(|e| {
            let warning = format!(
                "the agent could not save its state ({e}); a restart would lose this change"
            );
            tracing::error!("{warning}");
            warning
        })
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The identity allocator.
    pub fn allocator(&self) -> &Arc<dyn IdentityAllocator> {
        &self.allocator
    }

    /// A receiver that changes whenever the datapath needs a recompile.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Asks for a recompile (policy or endpoints changed, or identities
    /// known cluster-wide changed).
    pub fn request_sync(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Waits until the datapath is in line with every change up to `generation`, at
    /// most `timeout`; true when it is (or when no datapath programs this state).
    pub async fn wait_realized(&self, generation: u64, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.realized_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match *lock(&self.realized) {
                None => return true,
                Some(done) if done >= generation => return true,
                Some(_) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// The generation of the latest change, which the datapath has to catch up with.
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Declares that a datapath programs this state: from now on an endpoint is listed
    /// `ready` only once the datapath has caught up ([`AgentState::mark_realized`]).
    pub fn expect_datapath(&self) {
        let mut realized = lock(&self.realized);
        if realized.is_none() {
            *realized = Some(0);
        }
    }

    /// Records that the datapath is in line with every change up to `generation`.
    pub fn mark_realized(&self, generation: u64) {
        let mut realized = lock(&self.realized);
        *realized = Some(realized.map_or(generation, |done| done.max(generation)));
        self.realized_notify.notify_waiters();
    }

    /// Whether the datapath is in line with the latest change (always, without one).
    pub fn is_realized(&self) -> bool {
        match *lock(&self.realized) {
            None => true,
            Some(done) => done >= self.generation(),
        }
    }

    /// The current policy revision.
    pub fn policy_revision(&self) -> u64 {
        read(&self.repository).revision()
    }

    /// Imports policy text; on error nothing changes.
    pub fn import_policy(&self, text: &str) -> Result<ImportOutcome, PolicyError> {
        // Parse before taking the lock: a big document must not hold up
        // readers (`policy get`, the datapath sync) while it is parsed.
        let parsed = parse_policy(text)?;
        let mut outcome = write(&self.repository).import_parsed(parsed);
        outcome.warnings.extend(self.save_after_change());
        self.request_sync();
        Ok(outcome)
    }

    /// Deletes rules; returns the new revision.
    pub fn delete_policy(&self, selector: &DeleteSelector) -> Result<u64, PolicyError> {
        let mut repository = write(&self.repository);
        let before = repository.revision();
        let revision = repository.delete(selector)?;
        if revision != before {
            drop(repository);
            self.save_after_change();
            self.request_sync();
        }
        Ok(revision)
    }

    /// The rules as `cilium policy get` prints them, and the revision.
    pub fn policy_json(&self) -> (String, u64) {
        let repository = read(&self.repository);
        (repository.rules_json(), repository.revision())
    }

    /// Every endpoint, by id.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        read(&self.endpoints).iter().cloned().collect()
    }

    /// Every endpoint with its enforcement, by id.
    pub fn endpoints_with_enforcement(&self) -> Vec<(Endpoint, Enforcement)> {
        let endpoints = self.endpoints();
        let repository = read(&self.repository);
        endpoints
            .into_iter()
            .map(|endpoint| {
                let enforcement = enforcement_for(repository.rules(), &endpoint.labels);
                (endpoint, enforcement)
            })
            .collect()
    }

    /// The local endpoint that owns `ip`, if any.
    pub fn endpoint_by_ip(&self, ip: std::net::IpAddr) -> Option<Endpoint> {
        read(&self.endpoints).by_ip(ip).cloned()
    }

    /// The labels of one identity (reserved, allocated or CIDR), without listing all.
    pub fn identity_labels(&self, identity: Identity) -> Option<LabelSet> {
        self.allocator
            .lookup(identity)
            .or_else(|| lock(&self.cidrs).labels(identity))
    }

    /// Every identity known: reserved, allocated and CIDR, by number.
    pub fn identities(&self) -> Vec<(Identity, LabelSet)> {
        let mut all = self.allocator.list();
        all.extend(lock(&self.cidrs).list());
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// The security identity of an address: a local endpoint's, else a pod of
    /// another node's (cluster mode).
    pub fn identity_of_ip(&self, ip: std::net::IpAddr) -> Option<Identity> {
        if let Some(endpoint) = self.endpoint_by_ip(ip) {
            return Some(endpoint.identity);
        }
        read(&self.remote)
            .as_ref()
            .and_then(|remote| remote.by_ip(ip))
            .map(|pod| pod.identity)
    }

    /// The L7 redirects of the last compilation with their proxy ports.
    pub fn proxy_redirects(&self) -> Vec<(crate::policy::RedirectKey, u16)> {
        lock(&self.proxy_ports)
            .iter()
            .map(|(k, p)| (*k, p))
            .collect()
    }

    /// Compiles the policy for the current endpoints, first bringing the
    /// CIDR identities in line with the rules.
    pub fn compile(&self) -> Result<CompiledPolicy, IdentityError> {
        let fqdn_names = self.fqdn_live_names();
        let repository = read(&self.repository);
        let local = read(&self.endpoints).local_identities();
        let identities = self.allocator.list();
        let matcher = self.fqdn_matcher_of(&repository);
        let wanted = wanted_cidr_prefixes(&repository, &matcher, &fqdn_names);
        let mut cidrs = lock(&self.cidrs);
        cidrs.sync(&wanted)?;
        let mut compiled = compile(&CompileInput {
            rules: repository.rules(),
            local: &local,
            identities: &identities,
            cidrs: &cidrs,
            cluster: &self.cluster,
            fqdn: &matcher,
            fqdn_names: &fqdn_names,
        });
        drop((cidrs, repository));
        let changed = {
            let mut ports = lock(&self.proxy_ports);
            let changed = ports
                .assign(
                    compiled
                        .redirects
                        .keys()
                        .chain(compiled.dns_redirects.keys()),
                )
                .unwrap_or_else(|e| {
                    // Redirects without a port get no allow entry (datapath_sync): denied,
                    // never allowed without their L7 rules.
                    tracing::error!("{e}");
                    true
                });
            compiled.proxy_ports = ports.iter().map(|(k, p)| (*k, p)).collect();
            changed
        };
        if changed {
            if let Err(e) = self.save() {
                tracing::error!("saving the proxy ports: {e}");
            }
        }
        Ok(compiled)
    }

    /// The `toFQDNs` selectors of `repository`'s rules, compiled once per revision.
    fn fqdn_matcher_of(&self, repository: &PolicyRepository) -> Arc<FqdnMatcher> {
        let revision = repository.revision();
        let mut cached = lock(&self.fqdn_matcher);
        if let Some((at, matcher)) = cached.as_ref() {
            if *at == revision {
                return matcher.clone();
            }
        }
        let matcher = Arc::new(FqdnMatcher::new(repository.rules()));
        *cached = Some((revision, matcher.clone()));
        matcher
    }

    /// The `toFQDNs` selectors of the rules in force.
    pub fn fqdn_matcher(&self) -> Arc<FqdnMatcher> {
        let repository = read(&self.repository);
        self.fqdn_matcher_of(&repository)
    }

    /// Applies a watcher event: allocates or releases identities and
    /// updates the endpoint table, then asks for a recompile.
    pub async fn apply_endpoint_event(&self, event: EndpointEvent) -> Result<(), IdentityError> {
        match event {
            EndpointEvent::Added(watched) => {
                let endpoint = self.resolve(watched).await?;
                let replaced = write(&self.endpoints).insert(endpoint);
                if let Some(old) = replaced {
                    self.allocator.release(old.identity).await?;
                }
            }
            EndpointEvent::Updated { current, .. } => {
                let endpoint = self.resolve(current).await?;
                let replaced = write(&self.endpoints).insert(endpoint);
                if let Some(old) = replaced {
                    // Release after the new allocation so an unchanged label
                    // set keeps its number.
                    self.allocator.release(old.identity).await?;
                }
            }
            EndpointEvent::Removed(watched) => {
                let removed = write(&self.endpoints).remove(watched.id);
                lock(&self.fqdn).remove_endpoint(watched.id);
                if let Some(old) = removed {
                    self.allocator.release(old.identity).await?;
                }
            }
            EndpointEvent::Rejected { .. } => return Ok(()),
        }
        self.save_after_change();
        self.request_sync();
        Ok(())
    }

    /// Also takes the pods of other nodes (cluster mode) as service backends.
    pub fn set_remote_endpoints(&self, remote: RemoteEndpoints) {
        *write(&self.remote) = Some(remote);
        self.request_sync();
    }

    /// The services expanded with their backends, indexed; expanded again only when
    /// something changed since (every change bumps the generation).
    pub fn lb_table(&self) -> Arc<LbTable> {
        let generation = self.generation();
        if let Some((at, table)) = lock(&self.lb).as_ref() {
            if *at == generation {
                return table.clone();
            }
        }
        // One lock at a time (the table is cloned out), so no lock order to keep.
        let services = lock(&self.services).clone();
        let remote = read(&self.remote).as_ref().map(RemoteEndpoints::all);
        let expanded = services.expand(&read(&self.endpoints), remote.as_deref().unwrap_or(&[]));
        let table = Arc::new(LbTable::new(expanded));
        *lock(&self.lb) = Some((generation, table.clone()));
        table
    }

    /// Every load-balancer entry (one per frontend), in ID order.
    pub fn lb_services(&self) -> Vec<LbService> {
        self.lb_table().services().to_vec()
    }

    /// The service reached at `address:port/protocol`, if any.
    pub fn service_by_frontend(
        &self,
        address: std::net::IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Option<LbService> {
        let frontend = Frontend {
            address,
            port,
            protocol,
        };
        self.lb_table().by_frontend(&frontend).cloned()
    }

    /// The (lowest-ID) service `address:port` is a backend of, if any.
    pub fn service_by_backend(&self, address: std::net::IpAddr, port: u16) -> Option<LbService> {
        self.lb_table().by_backend(address, port).cloned()
    }

    /// The declared services with their sources, by name.
    pub fn declared_services(&self) -> Vec<crate::services::DeclaredService> {
        lock(&self.services).declared().cloned().collect()
    }

    /// Declares or changes a service from `source`; refused (nothing changes) when the
    /// name is another source's or a frontend is another service's. Returns whether
    /// anything changed.
    pub fn upsert_service(&self, source: ServiceSource, spec: ServiceSpec) -> Result<bool, String> {
        let changed = lock(&self.services).upsert(source, spec)?;
        if changed {
            self.save_after_change();
            self.request_sync();
        }
        Ok(changed)
    }

    /// Removes a service `source` declared; returns whether it did.
    pub fn remove_service(&self, source: &ServiceSource, name: &ServiceName) -> bool {
        let removed = lock(&self.services).remove(source, name);
        if removed {
            self.save_after_change();
            self.request_sync();
        }
        removed
    }

    /// Makes the services declared by `source` exactly `specs`: new and changed ones
    /// declared, missing ones removed. A spec the table refuses is logged and skipped.
    pub fn sync_services(&self, source: &ServiceSource, specs: Vec<ServiceSpec>) {
        let wanted: std::collections::BTreeSet<ServiceName> =
            specs.iter().map(ServiceSpec::service_name).collect();
        let stale: Vec<ServiceName> = lock(&self.services)
            .declared()
            .filter(|d| &d.source == source && !wanted.contains(&d.spec.service_name()))
            .map(|d| d.spec.service_name())
            .collect();
        for name in stale {
            self.remove_service(source, &name);
        }
        for spec in specs {
            let name = spec.service_name();
            if let Err(error) = self.upsert_service(source.clone(), spec) {
                tracing::warn!("ignoring service {name} from {source}: {error}");
            }
        }
    }

    /// Sets a frontend's backends (`service update`), with ID `requested` when given;
    /// returns its ID and a warning when the change could not be saved.
    pub fn update_api_service(
        &self,
        service: ApiService,
        requested: Option<u16>,
    ) -> Result<(u16, Option<String>), String> {
        let id = lock(&self.services).upsert_api(service, requested)?;
        let warning = self.save_after_change();
        self.request_sync();
        Ok((id, warning))
    }

    /// Removes what the API set for frontend `id` (`service delete`).
    pub fn delete_api_service(&self, id: u16) -> Result<Frontend, String> {
        let frontend = lock(&self.services).remove_api(id)?;
        self.save_after_change();
        self.request_sync();
        Ok(frontend)
    }

    /// The ID of a frontend, if it has one.
    pub fn service_id(&self, frontend: &Frontend) -> Option<u16> {
        lock(&self.services).id_of(frontend)
    }

    /// Whether `service update` set this frontend's backends.
    pub fn is_api_service(&self, frontend: &Frontend) -> bool {
        lock(&self.services).is_api(frontend)
    }

    /// The frontend with ID `id`, if any.
    pub fn service_frontend(&self, id: u16) -> Option<Frontend> {
        lock(&self.services).frontend_of(id)
    }

    /// Sets the state of backends in every service (`service update --backends ..
    /// --states ..`); refused when one is no service's backend.
    pub fn set_backend_states(
        &self,
        states: &[(std::net::SocketAddr, crate::services::BackendState)],
    ) -> Result<Option<String>, String> {
        let table = self.lb_table();
        if let Some((address, _)) = states
            .iter()
            .find(|(a, _)| table.by_backend(a.ip(), a.port()).is_none())
        {
            return Err(format!("{address} is not a backend of any service"));
        }
        lock(&self.services).set_backend_states(states);
        let warning = self.save_after_change();
        self.request_sync();
        Ok(warning)
    }

    async fn resolve(&self, watched: WatchedEndpoint) -> Result<Endpoint, IdentityError> {
        let labels = security_labels(&watched.spec, &self.cluster);
        let identity = self.allocator.allocate(&labels).await?;
        Ok(Endpoint {
            id: watched.id,
            path: watched.path,
            spec: watched.spec,
            labels,
            identity,
            status: EndpointStatus::Ready,
        })
    }
}

/// The prefixes that get CIDR identities: those the rules name, and the addresses of
/// names alive in the FQDN cache that a `toFQDNs` selector matches (bounded, see
/// `policy::fqdn`).
fn wanted_cidr_prefixes(
    repository: &PolicyRepository,
    matcher: &FqdnMatcher,
    fqdn_names: &[(String, std::net::IpAddr)],
) -> std::collections::BTreeSet<ipnet::IpNet> {
    let mut wanted = repository.cidr_prefixes();
    let (selected, refused) = matcher.prefixes(fqdn_names);
    crate::policy::note_fqdn_refused(refused);
    wanted.extend(selected);
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::LocalIdentityAllocator;

    const CIDR_RULE: &str = r#"[{
        "endpointSelector": {"matchLabels": {"class": "xwing"}},
        "egress": [{"toCIDR": ["192.0.2.0/24"]}]
    }]"#;

    #[test]
    fn identity_labels_answers_each_kind_without_listing() {
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        let world = state
            .identity_labels(Identity(2))
            .expect("world is reserved");
        assert_eq!(world.to_strings(), vec!["reserved:world".to_string()]);

        state.import_policy(CIDR_RULE).expect("the rule imports");
        let compiled = state.compile().expect("the policy compiles");
        let (prefix, cidr_id) = compiled.cidr_identities[0];
        assert_eq!(prefix.to_string(), "192.0.2.0/24");
        let labels = state
            .identity_labels(cidr_id)
            .expect("a CIDR identity is known");
        assert!(
            labels
                .to_strings()
                .contains(&"cidr:192.0.2.0/24".to_string()),
            "{labels}"
        );

        assert!(state.identity_labels(Identity(4242)).is_none());
    }

    #[test]
    fn endpoints_are_ready_only_once_the_datapath_caught_up() {
        use crate::admin::{handle_request, AdminRequest, AdminResponse};
        let statuses = |state: &AgentState| match handle_request(state, AdminRequest::EndpointList)
        {
            AdminResponse::Endpoints { endpoints } => endpoints
                .into_iter()
                .map(|row| row.status)
                .collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        };
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        // Without a datapath nothing waits.
        assert!(state.is_realized());
        state.expect_datapath();
        assert!(state.is_realized());

        let spec = crate::endpoints::EndpointSpec {
            name: "xwing".to_string(),
            namespace: "default".to_string(),
            labels: [("org".to_string(), "alliance".to_string())].into(),
            ipv4: "10.200.1.13".parse().expect("ip"),
            ipv6: None,
            interface: "lxc0".to_string(),
            workloads: Vec::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime
            .block_on(
                state.apply_endpoint_event(EndpointEvent::Added(WatchedEndpoint {
                    id: 7,
                    path: "default_xwing.yaml".into(),
                    spec,
                })),
            )
            .expect("applied");
        assert_eq!(statuses(&state), ["regenerating"]);
        let generation = state.generation();
        state.mark_realized(generation);
        assert_eq!(statuses(&state), ["ready"]);

        // A policy change makes the datapath catch up again.
        state.import_policy(CIDR_RULE).expect("the rule imports");
        assert_eq!(statuses(&state), ["regenerating"]);
        state.mark_realized(state.generation());
        assert_eq!(statuses(&state), ["ready"]);
    }

    fn watched(name: &str, labels: &[(&str, &str)], ip: &str) -> crate::endpoints::WatchedEndpoint {
        crate::endpoints::WatchedEndpoint {
            id: 0,
            path: format!("/eps/default_{name}.yaml").into(),
            spec: crate::endpoints::EndpointSpec {
                name: name.into(),
                namespace: "default".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ipv4: ip.parse().expect("address"),
                ipv6: None,
                interface: format!("lxc{name}"),
                workloads: Vec::new(),
            },
        }
    }

    #[tokio::test]
    async fn a_saved_state_comes_back_with_its_revision_endpoints_and_numbers() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store::StateStore::new(dir.path().join("node1"));
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        state.persist_to(store.clone(), "node1").expect("writable");
        // Numbers that a fresh allocator would hand out differently: a first
        // endpoint takes 256 and goes away, so the others get 257 and 258.
        let pods = [
            watched("probe", &[("app", "probe")], "10.200.1.9"),
            watched(
                "xwing",
                &[("org", "alliance"), ("class", "xwing")],
                "10.200.1.12",
            ),
            watched(
                "deathstar",
                &[("org", "empire"), ("class", "deathstar")],
                "10.200.1.10",
            ),
        ];
        for (id, pod) in pods.iter().enumerate() {
            let mut pod = pod.clone();
            pod.id = id as u16 + 1;
            state
                .apply_endpoint_event(EndpointEvent::Added(pod))
                .await
                .expect("added");
        }
        let mut probe = pods[0].clone();
        probe.id = 1;
        state
            .apply_endpoint_event(EndpointEvent::Removed(probe))
            .await
            .expect("removed");
        state
            .import_policy(include_str!("../../examples/policies/rule1.yaml"))
            .expect("rule1");
        state.import_policy(CIDR_RULE).expect("cidr rule");
        let before = state.compile().expect("compiles");

        // What a restart reads back is what the file on disk says.
        let snapshot = store.load().expect("readable").expect("saved");
        assert_eq!(snapshot.policy.revision, 3);
        let restored = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        let report = restored
            .restore(snapshot, &store.path(), "node1")
            .await
            .expect("restores");
        assert_eq!(report.revision, 3);
        assert_eq!(report.endpoints, 2);
        assert!(report.reallocated.is_empty());
        assert_eq!(restored.policy_json(), state.policy_json());
        assert_eq!(restored.endpoints(), state.endpoints());
        assert_eq!(restored.identities(), state.identities());
        let ids: Vec<u32> = restored.endpoints().iter().map(|e| e.identity.0).collect();
        assert_eq!(ids, vec![257, 258]);
        assert_eq!(restored.compile().expect("compiles"), before);

        // A new label set continues after the restored numbers, as before.
        let mut tiefighter = watched("tiefighter", &[("org", "empire")], "10.200.1.11");
        tiefighter.id = 9;
        restored
            .apply_endpoint_event(EndpointEvent::Added(tiefighter.clone()))
            .await
            .expect("added");
        state
            .apply_endpoint_event(EndpointEvent::Added(tiefighter))
            .await
            .expect("added");
        assert_eq!(restored.identities(), state.identities());

        // The state of another node is refused by name.
        let snapshot = store.load().expect("readable").expect("saved");
        let other = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        let error = other
            .restore(snapshot, &store.path(), "node2")
            .await
            .expect_err("another node's state");
        assert!(
            error.to_string().contains("belongs to node \"node1\""),
            "{error}"
        );
        assert!(other.endpoints().is_empty());
    }

    #[tokio::test]
    async fn looked_up_names_survive_a_restart_and_leave_with_their_endpoint() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store::StateStore::new(dir.path().join("node1"));
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        state.persist_to(store.clone(), "node1").expect("writable");
        let mut xwing = watched("xwing", &[("class", "xwing")], "10.200.1.12");
        xwing.id = 4;
        state
            .apply_endpoint_event(EndpointEvent::Added(xwing.clone()))
            .await
            .expect("added");
        let github: std::net::IpAddr = "192.0.2.10".parse().expect("ip");
        let outcome = state.record_dns_answer(4, "api.github.com.", &[github], 300);
        assert_eq!(outcome.new_ips, vec![github]);
        // Saved in the next batch, not before.
        let saved = store.load().expect("readable").expect("saved");
        assert!(saved.fqdn.is_empty());
        assert!(state.save_fqdn_if_changed().expect("saved"));
        assert!(!state.save_fqdn_if_changed().expect("nothing new"));

        let snapshot = store.load().expect("readable").expect("saved");
        let restored = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        restored
            .restore(snapshot, &store.path(), "node1")
            .await
            .expect("restores");
        assert_eq!(restored.fqdn_names_of(4, github), vec!["api.github.com"]);
        assert_eq!(restored.fqdn_records(), state.fqdn_records());

        restored
            .apply_endpoint_event(EndpointEvent::Removed(xwing))
            .await
            .expect("removed");
        assert!(restored.fqdn_records().is_empty());
    }
}
