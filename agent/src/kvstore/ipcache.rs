//! The cluster's ipcache: this node's pods published, the other nodes' pods watched.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use super::keys::{decode_json, ipcache_key, IpcacheValue};
use super::session::Session;
use crate::endpoints::Endpoint;
use crate::identity::Identity;
use peer_service::sources::etcd::WatchHandler;

/// A pod of another node, as its agent published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub ip: IpAddr,
    pub identity: Identity,
    pub node_name: String,
    /// The node's address (where its pods are reached).
    pub node_ip: IpAddr,
    pub namespace: String,
    pub pod_name: String,
    /// The pod's security labels, printed.
    pub labels: Vec<String>,
}

/// The pods of the other nodes, by address. Cloning gives another handle to the same
/// table.
#[derive(Debug, Clone, Default)]
pub struct RemoteEndpoints(Arc<RwLock<HashMap<IpAddr, RemoteEndpoint>>>);

impl RemoteEndpoints {
    /// The remote pod with this address, if any.
    pub fn by_ip(&self, ip: IpAddr) -> Option<RemoteEndpoint> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .cloned()
    }

    /// Every remote pod address, sorted by address.
    pub fn all(&self) -> Vec<RemoteEndpoint> {
        let mut all: Vec<RemoteEndpoint> = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|e| e.ip);
        all
    }

    fn replace(&self, entries: HashMap<IpAddr, RemoteEndpoint>) -> bool {
        let mut table = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = *table != entries;
        *table = entries;
        changed
    }

    fn upsert(&self, entry: RemoteEndpoint) -> bool {
        let mut table = self.0.write().unwrap_or_else(|e| e.into_inner());
        table.insert(entry.ip, entry.clone()).as_ref() != Some(&entry)
    }

    fn remove(&self, ip: IpAddr) -> bool {
        let mut table = self.0.write().unwrap_or_else(|e| e.into_inner());
        table.remove(&ip).is_some()
    }
}

/// Keeps [`RemoteEndpoints`] equal to the other nodes' ipcache keys.
pub(super) struct IpcacheHandler {
    remote: RemoteEndpoints,
    node: String,
    changes: Arc<watch::Sender<u64>>,
}

impl IpcacheHandler {
    pub fn new(remote: RemoteEndpoints, node: String, changes: Arc<watch::Sender<u64>>) -> Self {
        IpcacheHandler {
            remote,
            node,
            changes,
        }
    }

    /// The entry of another node's pod, or `None` for this node's own or a bad one.
    fn parse(&self, key: &str, value: &[u8]) -> Option<RemoteEndpoint> {
        let value: IpcacheValue = match decode_json(key, value) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("ignoring ipcache entry: {e}");
                return None;
            }
        };
        if value.node_name == self.node {
            return None;
        }
        Some(RemoteEndpoint {
            ip: value.ip,
            identity: Identity(value.id),
            node_name: value.node_name,
            node_ip: value.host_ip,
            namespace: value.namespace,
            pod_name: value.pod_name,
            labels: value.labels,
        })
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

impl WatchHandler for IpcacheHandler {
    fn snapshot(&self, entries: Vec<(String, Vec<u8>)>) {
        let table = entries
            .iter()
            .filter_map(|(key, value)| self.parse(key, value))
            .map(|entry| (entry.ip, entry))
            .collect();
        if self.remote.replace(table) {
            self.changed();
        }
    }

    fn put(&self, key: &str, value: &[u8]) {
        match self.parse(key, value) {
            Some(entry) => {
                if self.remote.upsert(entry) {
                    self.changed();
                }
            }
            // An address that moved to this node is no longer remote.
            None => self.delete(key),
        }
    }

    fn delete(&self, key: &str) {
        if let Ok(ip) = key.parse() {
            if self.remote.remove(ip) {
                self.changed();
            }
        }
    }
}

/// Publishes this node's endpoints as ipcache keys under the lease.
pub struct IpcachePublisher {
    session: Arc<Session>,
    node: String,
    node_ip: IpAddr,
    published: Mutex<BTreeMap<String, String>>,
}

impl IpcachePublisher {
    pub(super) fn new(session: Arc<Session>, node: &str, node_ip: IpAddr) -> Self {
        IpcachePublisher {
            session,
            node: node.to_string(),
            node_ip,
            published: Mutex::default(),
        }
    }

    /// The keys and values for `endpoints`.
    pub fn entries(&self, endpoints: &[Endpoint]) -> BTreeMap<String, String> {
        let mut entries = BTreeMap::new();
        for endpoint in endpoints {
            let spec = &endpoint.spec;
            let addresses = std::iter::once(IpAddr::V4(spec.ipv4)).chain(spec.ipv6.map(IpAddr::V6));
            for ip in addresses {
                let value = IpcacheValue {
                    ip,
                    mask: None,
                    host_ip: self.node_ip,
                    id: endpoint.identity.0,
                    key: 0,
                    metadata: format!("hubble-rs/{}", self.node),
                    namespace: spec.namespace.clone(),
                    pod_name: spec.name.clone(),
                    node_name: self.node.clone(),
                    labels: endpoint.labels.to_strings(),
                };
                if let Ok(json) = serde_json::to_string(&value) {
                    entries.insert(ipcache_key(ip), json);
                }
            }
        }
        entries
    }

    /// Replaces what this node publishes with `endpoints`.
    pub fn publish(&self, endpoints: &[Endpoint]) {
        let entries = self.entries(endpoints);
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for key in published.keys() {
            if !entries.contains_key(key) {
                self.session.remove(key);
            }
        }
        for (key, value) in &entries {
            self.session.set(key.clone(), value.clone());
        }
        *published = entries;
    }
}
