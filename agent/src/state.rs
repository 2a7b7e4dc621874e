//! The control-plane state shared by the agent's tasks and the admin server.
//!
//! Locks are `std` locks held only for short, synchronous sections; identity
//! allocation (which may wait on a cluster store) happens outside them.
//! Every change that affects the datapath bumps a generation number on a
//! `watch` channel: the agent's sync task waits on it, recompiles with
//! [`AgentState::compile`] and pushes the result to the datapath. A `watch`
//! keeps only the latest value, so bursts of changes coalesce into one
//! recompilation and nothing queues up.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::endpoints::{
    security_labels, Endpoint, EndpointEvent, EndpointStatus, EndpointTable, WatchedEndpoint,
};
use crate::identity::{CidrIdentities, Identity, IdentityAllocator, IdentityError};
use crate::labels::LabelSet;
use crate::policy::{
    compile, enforcement_for, parse_policy, CompileInput, CompiledPolicy, DeleteSelector,
    Enforcement, ImportOutcome, PolicyError, PolicyRepository,
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
        let outcome = write(&self.repository).import_parsed(parsed);
        self.request_sync();
        Ok(outcome)
    }

    /// Deletes rules; returns the new revision.
    pub fn delete_policy(&self, selector: &DeleteSelector) -> Result<u64, PolicyError> {
        let repository = &mut write(&self.repository);
        let before = repository.revision();
        let revision = repository.delete(selector)?;
        if revision != before {
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

    /// Compiles the policy for the current endpoints, first bringing the
    /// CIDR identities in line with the rules.
    pub fn compile(&self) -> Result<CompiledPolicy, IdentityError> {
        let repository = read(&self.repository);
        let local = read(&self.endpoints).local_identities();
        let identities = self.allocator.list();
        let mut cidrs = lock(&self.cidrs);
        cidrs.sync(&repository.cidr_prefixes())?;
        Ok(compile(&CompileInput {
            rules: repository.rules(),
            local: &local,
            identities: &identities,
            cidrs: &cidrs,
            cluster: &self.cluster,
        }))
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
                if let Some(old) = removed {
                    self.allocator.release(old.identity).await?;
                }
            }
            EndpointEvent::Rejected { .. } => return Ok(()),
        }
        self.request_sync();
        Ok(())
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
}
