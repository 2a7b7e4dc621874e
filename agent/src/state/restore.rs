//! Putting a saved state back into an empty [`AgentState`] at start-up, before the
//! datapath is programmed and before anything is served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::store::Snapshot;
use super::{lock, write, AgentState};
use crate::endpoints::security_labels;
use crate::identity::{CidrIdentities, Identity, IdentityError};
use crate::labels::LabelSet;
use crate::policy::PolicyRepository;
use crate::services::ServiceTable;

/// A saved state that cannot be put back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file parses but contradicts itself or this agent.
    #[error("state file {path} is corrupt: {reason}")]
    Inconsistent {
        /// The state file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// An endpoint's identity could be neither restored nor allocated afresh.
    #[error("restoring endpoint {endpoint}: {source}")]
    Identity {
        /// `namespace/pod`.
        endpoint: String,
        /// The allocator's error.
        #[source]
        source: IdentityError,
    },
}

/// What was restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The policy revision.
    pub revision: u64,
    /// Number of rules.
    pub rules: usize,
    /// Number of endpoints.
    pub endpoints: usize,
    /// Distinct identities of the endpoints.
    pub identities: usize,
    /// Endpoints whose saved identity the allocator gave to something else, with the
    /// old and new numbers: they were allocated afresh.
    pub reallocated: Vec<String>,
}

// === impl AgentState (restore) ===

impl AgentState {
    /// Puts `snapshot` (read from `path` for node `node`) back into this state, which
    /// must be fresh: the policy repository, the CIDR identities, then the endpoints
    /// with their identities (one allocator reference each). Everything is checked
    /// before anything changes, so an inconsistent file leaves the state empty.
    pub async fn restore(
        &self,
        snapshot: Snapshot,
        path: &Path,
        node: &str,
    ) -> Result<RestoreReport, RestoreError> {
        let inconsistent = |reason: String| RestoreError::Inconsistent {
            path: path.to_path_buf(),
            reason,
        };
        if snapshot.node != node {
            return Err(inconsistent(format!(
                "it belongs to node {:?}, this agent is node {node:?} (is --state-dir right?)",
                snapshot.node
            )));
        }
        let known: BTreeMap<Identity, &LabelSet> = snapshot
            .identities
            .iter()
            .map(|record| (record.id, &record.labels))
            .collect();
        let mut ids = BTreeMap::new();
        for endpoint in &snapshot.endpoints {
            let name = format!("{}/{}", endpoint.spec.namespace, endpoint.spec.name);
            if known.get(&endpoint.identity) != Some(&&endpoint.labels) {
                return Err(inconsistent(format!(
                    "endpoint {name} has identity {} with labels {}, which the identities list does not hold",
                    endpoint.identity, endpoint.labels
                )));
            }
            if endpoint.labels != security_labels(&endpoint.spec, &self.cluster) {
                return Err(inconsistent(format!(
                    "endpoint {name}: its labels do not match its pod labels in cluster {:?}",
                    self.cluster
                )));
            }
            if let Some(other) = ids.insert(endpoint.id, name.clone()) {
                return Err(inconsistent(format!(
                    "endpoints {other} and {name} share id {}",
                    endpoint.id
                )));
            }
        }
        let mut prefixes = Vec::new();
        for record in &snapshot.cidr_identities {
            let prefix = record
                .prefix
                .parse()
                .map_err(|e| inconsistent(format!("cidr_identities: {:?}: {e}", record.prefix)))?;
            prefixes.push((prefix, record.id));
        }
        let cidrs = CidrIdentities::restored(&prefixes)
            .map_err(|e| inconsistent(format!("cidr_identities: {e}")))?;
        let services = ServiceTable::restored(snapshot.services).map_err(inconsistent)?;
        let proxy_ports = crate::policy::ProxyPorts::restored(&snapshot.proxy_ports)
            .map_err(|e| inconsistent(format!("proxy_ports: {e}")))?;

        let mut report = RestoreReport {
            revision: snapshot.policy.revision.max(1),
            rules: snapshot.policy.rules.len(),
            endpoints: snapshot.endpoints.len(),
            identities: known.len(),
            reallocated: Vec::new(),
        };
        *write(&self.repository) =
            PolicyRepository::restored(snapshot.policy.rules, snapshot.policy.revision);
        *lock(&self.cidrs) = cidrs;
        *lock(&self.services) = services;
        self.restore_fqdn(&snapshot.fqdn, &ids);
        *lock(&self.proxy_ports) = proxy_ports;
        for mut endpoint in snapshot.endpoints {
            let name = format!("{}/{}", endpoint.spec.namespace, endpoint.spec.name);
            match self.allocator.restore(endpoint.identity, &endpoint.labels) {
                Ok(()) => {}
                Err(IdentityError::Conflict { known, .. }) => {
                    let fresh =
                        self.allocator
                            .allocate(&endpoint.labels)
                            .await
                            .map_err(|source| RestoreError::Identity {
                                endpoint: name.clone(),
                                source,
                            })?;
                    let note = format!(
                        "{name}: saved identity {} is {known} now; using {fresh}",
                        endpoint.identity
                    );
                    tracing::warn!("{note}");
                    report.reallocated.push(note);
                    endpoint.identity = fresh;
                }
                Err(source) => {
                    return Err(RestoreError::Identity {
                        endpoint: name,
                        source,
                    })
                }
            }
            write(&self.endpoints).insert(endpoint);
        }
        self.request_sync();
        Ok(report)
    }

    /// Re-allocates the identity of every endpoint whose number the allocator now
    /// gives to other labels (a cluster store that disagrees with what was restored);
    /// returns how many changed. The allocator's answer wins, as it is the cluster's.
    pub async fn reconcile_identities(&self) -> Result<usize, IdentityError> {
        let stale: Vec<_> = self
            .endpoints()
            .into_iter()
            .filter(|endpoint| {
                self.allocator.lookup(endpoint.identity).as_ref() != Some(&endpoint.labels)
            })
            .collect();
        let mut changed = 0;
        for mut endpoint in stale {
            let fresh = self.allocator.allocate(&endpoint.labels).await?;
            if fresh == endpoint.identity {
                continue;
            }
            tracing::warn!(
                endpoint = %format!("{}/{}", endpoint.spec.namespace, endpoint.spec.name),
                "identity {} disagrees with the cluster store; now {fresh}",
                endpoint.identity
            );
            let old = endpoint.identity;
            endpoint.identity = fresh;
            write(&self.endpoints).insert(endpoint);
            // The old number's reference may already be gone with the cache entry.
            let _ = self.allocator.release(old).await;
            changed += 1;
        }
        if changed > 0 {
            self.save_after_change();
            self.request_sync();
        }
        Ok(changed)
    }

    /// The endpoints as the endpoints watcher knows them, to seed it after a restore.
    pub fn watched_endpoints(&self) -> Vec<crate::endpoints::WatchedEndpoint> {
        self.endpoints()
            .into_iter()
            .map(|endpoint| crate::endpoints::WatchedEndpoint {
                id: endpoint.id,
                path: endpoint.path,
                spec: endpoint.spec,
            })
            .collect()
    }
}
