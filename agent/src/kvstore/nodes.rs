//! Node registration under the lease, and the node list fed to the peer service.

use std::net::IpAddr;

use peer_service::{Node, NodeHub};

use super::keys::{decode_json, node_key, NodeAddress, NodeValue};
use super::session::Session;
use super::watcher::WatchHandler;

/// Registers `node` (at `ip`) under the session's lease.
pub(super) fn register(session: &Session, node: &Node, ip: IpAddr) {
    let cluster = node.cluster_name().to_string();
    let value = NodeValue {
        name: node.name.clone(),
        cluster: cluster.clone(),
        addresses: vec![NodeAddress {
            kind: "InternalIP".to_string(),
            ip,
        }],
        hubble_address: node.address.clone(),
    };
    if let Ok(json) = serde_json::to_string(&value) {
        session.set(node_key(&cluster, &node.name), json);
    }
}

/// Feeds the registered nodes of a cluster to a [`NodeHub`]. This node is always in
/// the list, registered or not, so a relay asking this agent sees at least it.
pub(super) struct NodesHandler {
    hub: NodeHub,
    me: Node,
}

impl NodesHandler {
    pub fn new(hub: NodeHub, me: Node) -> Self {
        hub.upsert(me.clone());
        NodesHandler { hub, me }
    }

    fn parse(key: &str, value: &[u8]) -> Option<Node> {
        match decode_json::<NodeValue>(key, value) {
            Ok(value) => Some(Node {
                name: value.name,
                address: value.hubble_address,
                cluster: Some(value.cluster),
            }),
            Err(e) => {
                tracing::warn!("ignoring node registration: {e}");
                None
            }
        }
    }
}

impl WatchHandler for NodesHandler {
    fn snapshot(&self, entries: Vec<(String, Vec<u8>)>) {
        let mut nodes: Vec<Node> = entries
            .iter()
            .filter_map(|(key, value)| Self::parse(key, value))
            .filter(|node| node.name != self.me.name)
            .collect();
        nodes.push(self.me.clone());
        self.hub.replace_all(nodes);
    }

    fn put(&self, key: &str, value: &[u8]) {
        if let Some(node) = Self::parse(key, value) {
            if node.name != self.me.name {
                if !self.hub.nodes().iter().any(|known| known.name == node.name) {
                    tracing::info!(node = %node.name, address = %node.address, "node joined");
                }
                self.hub.upsert(node);
            }
        }
    }

    fn delete(&self, key: &str) {
        if key != self.me.name {
            tracing::info!(node = %key, "node left (lease expired or revoked)");
            self.hub.remove(key);
        }
    }
}
