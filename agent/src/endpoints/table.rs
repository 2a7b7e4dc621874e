//! The endpoints of the node with their identities.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Endpoint;
use crate::identity::Identity;
use crate::labels::LabelSet;

/// Endpoints by id. Plain data: the caller allocates identities (which may
/// wait on a store) before taking the table's lock.
#[derive(Debug, Clone, Default)]
pub struct EndpointTable {
    endpoints: BTreeMap<u16, Endpoint>,
}

impl EndpointTable {
    /// An empty table.
    pub fn new() -> Self {
        EndpointTable::default()
    }

    /// Adds or replaces an endpoint; returns the one it replaced.
    pub fn insert(&mut self, endpoint: Endpoint) -> Option<Endpoint> {
        self.endpoints.insert(endpoint.id, endpoint)
    }

    /// Removes an endpoint by id.
    pub fn remove(&mut self, id: u16) -> Option<Endpoint> {
        self.endpoints.remove(&id)
    }

    /// An endpoint by id.
    pub fn get(&self, id: u16) -> Option<&Endpoint> {
        self.endpoints.get(&id)
    }

    /// The endpoint with this address, if any.
    pub fn by_ip(&self, ip: IpAddr) -> Option<&Endpoint> {
        self.endpoints.values().find(|e| match ip {
            IpAddr::V4(v4) => e.spec.ipv4 == v4,
            IpAddr::V6(v6) => e.spec.ipv6 == Some(v6),
        })
    }

    /// Every endpoint, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The distinct identities of the endpoints with their labels, for
    /// policy compilation.
    pub fn local_identities(&self) -> Vec<(Identity, LabelSet)> {
        let mut by_identity: BTreeMap<Identity, LabelSet> = BTreeMap::new();
        for endpoint in self.endpoints.values() {
            by_identity
                .entry(endpoint.identity)
                .or_insert_with(|| endpoint.labels.clone());
        }
        by_identity.into_iter().collect()
    }
}
