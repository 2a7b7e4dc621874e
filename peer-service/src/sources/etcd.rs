//! The node list in etcd, as Cilium keeps it in kvstore mode (feature `etcd`).
//!
//! Every agent of a cluster registers its node (name, addresses, Hubble API address)
//! at `cilium/state/nodes/v1/<cluster>/<node>` under its lease ([`registration`]), and
//! [`EtcdNodes`] lists then watches that prefix into a [`NodeHub`], so a node whose
//! agent dies disappears when its lease expires. This node is always in the list,
//! registered or not, so a relay asking it sees at least it.
//!
//! The etcd plumbing lives here too, as the agent's other cluster state (identities,
//! ipcache, services) uses it with the same semantics: [`Connection`] (a lazily
//! rebuilt client), [`Backoff`], and [`watch_prefix`] (list-then-watch of a prefix,
//! resumed after every failure) with its [`WatchHandler`]. The agent builds one
//! [`Connection`] and hands it to [`EtcdNodes`].

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{NodeSource, Running};
use crate::hub::NodeHub;
use crate::node::Node;

mod connection;
mod watcher;

pub use connection::{
    stopped, Backoff, Connection, BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, KEEP_ALIVE,
    REQUEST_TIMEOUT,
};
pub use watcher::{run as watch_prefix, WatchHandler};

/// Prefix of the node registrations.
pub const NODES_PREFIX: &str = "cilium/state/nodes/v1/";

/// Errors of the etcd connection and watches.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// etcd answered with an error or could not be reached.
    #[error("etcd: {0}")]
    Etcd(Box<etcd_client::Error>),
    /// A watch ended or was cancelled by etcd.
    #[error("watch on {prefix} ended: {reason}")]
    WatchEnded {
        /// The watched prefix.
        prefix: String,
        /// Why it ended.
        reason: String,
    },
    /// A stored value could not be decoded.
    #[error("bad value at {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
}

impl From<etcd_client::Error> for EtcdError {
    fn from(error: etcd_client::Error) -> Self {
        EtcdError::Etcd(Box::new(error))
    }
}

/// The prefix of a cluster's node registrations.
pub fn nodes_prefix(cluster: &str) -> String {
    format!("{NODES_PREFIX}{cluster}/")
}

/// The registration key of a node.
pub fn node_key(cluster: &str, node: &str) -> String {
    format!("{}{node}", nodes_prefix(cluster))
}

/// One address of a node registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "IP")]
    pub ip: IpAddr,
}

/// A node registration as stored: Cilium's node fields that matter here, plus the
/// address of its Hubble API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeValue {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Cluster")]
    pub cluster: String,
    #[serde(rename = "IPAddresses", default)]
    pub addresses: Vec<NodeAddress>,
    #[serde(rename = "HubbleAddress")]
    pub hubble_address: String,
}

impl NodeValue {
    /// The registration of `node`, whose internal address is `ip`.
    pub fn of(node: &Node, ip: IpAddr) -> Self {
        NodeValue {
            name: node.name.clone(),
            cluster: node.cluster_name().to_string(),
            addresses: vec![NodeAddress {
                kind: "InternalIP".to_string(),
                ip,
            }],
            hubble_address: node.address.clone(),
        }
    }

    /// Decodes the registration stored at `key`.
    pub fn decode(key: &str, value: &[u8]) -> Result<Self, EtcdError> {
        serde_json::from_slice(value).map_err(|e| EtcdError::BadValue {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The node as the peer service announces it.
    pub fn into_node(self) -> Node {
        Node {
            name: self.name,
            address: self.hubble_address,
            cluster: Some(self.cluster),
        }
    }
}

/// The key and JSON value that register `node` (at `ip`); the caller writes them under
/// its lease.
pub fn registration(node: &Node, ip: IpAddr) -> Option<(String, String)> {
    let value = NodeValue::of(node, ip);
    let json = serde_json::to_string(&value).ok()?;
    Some((node_key(&value.cluster, &node.name), json))
}

/// The nodes registered in etcd as a [`NodeSource`].
pub struct EtcdNodes {
    connection: Arc<Connection>,
    me: Node,
    listed: Option<Arc<watch::Sender<usize>>>,
}

impl EtcdNodes {
    /// The registrations of `me`'s cluster, read through `connection`; `me` is always
    /// in the list.
    pub fn new(connection: Arc<Connection>, me: Node) -> Self {
        EtcdNodes {
            connection,
            me,
            listed: None,
        }
    }

    /// Counts `listed` up once the registrations were listed for the first time.
    pub fn with_listed(mut self, listed: Arc<watch::Sender<usize>>) -> Self {
        self.listed = Some(listed);
        self
    }
}

impl NodeSource for EtcdNodes {
    fn describe(&self) -> String {
        format!("etcd {}", nodes_prefix(self.me.cluster_name()))
    }

    fn start(self: Box<Self>, hub: NodeHub) -> Running {
        let EtcdNodes {
            connection,
            me,
            listed,
        } = *self;
        let prefix = nodes_prefix(me.cluster_name());
        let handler = Arc::new(NodesHandler::new(hub, me));
        // Never turned true: the task stops when the guard aborts it.
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _stop = stop;
            watch_prefix(connection, prefix, handler, stopped, listed).await;
        });
        Running::task(task)
    }
}

/// Feeds the registered nodes of a cluster to a [`NodeHub`], keeping `me` in it.
struct NodesHandler {
    hub: NodeHub,
    me: Node,
}

impl NodesHandler {
    fn new(hub: NodeHub, me: Node) -> Self {
        hub.upsert(me.clone());
        NodesHandler { hub, me }
    }

    fn parse(key: &str, value: &[u8]) -> Option<Node> {
        match NodeValue::decode(key, value) {
            Ok(value) => Some(value.into_node()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Node {
        Node {
            name: "node1".into(),
            address: "10.0.0.1:4244".into(),
            cluster: Some("default".into()),
        }
    }

    #[test]
    fn registrations_round_trip_in_cilium_fields() {
        let (key, json) = registration(&me(), "10.0.0.1".parse().expect("ip")).expect("json");
        assert_eq!(key, "cilium/state/nodes/v1/default/node1");
        assert!(json.contains(r#""Name":"node1""#), "{json}");
        assert!(
            json.contains(r#""IPAddresses":[{"Type":"InternalIP","IP":"10.0.0.1"}]"#),
            "{json}"
        );
        let node = NodeValue::decode(&key, json.as_bytes())
            .expect("decodes")
            .into_node();
        assert_eq!(node, me());
        let bad = NodeValue::decode(&key, b"{\"Name\":1}").expect_err("bad");
        assert!(bad.to_string().contains(&key), "{bad}");
    }

    #[test]
    fn the_handler_keeps_this_node_and_follows_the_others() {
        let hub = NodeHub::new();
        let handler = NodesHandler::new(hub.clone(), me());
        assert_eq!(hub.nodes(), vec![me()]);
        let other = Node {
            name: "node2".into(),
            address: "10.0.0.2:4244".into(),
            cluster: Some("default".into()),
        };
        let value = |node: &Node| {
            registration(node, "10.0.0.9".parse().expect("ip"))
                .expect("json")
                .1
                .into_bytes()
        };
        // A snapshot without this node (not registered yet) still lists it, and a
        // bad value is skipped.
        handler.snapshot(vec![
            ("node2".into(), value(&other)),
            ("broken".into(), b"not json".to_vec()),
        ]);
        assert_eq!(hub.nodes(), vec![me(), other.clone()]);
        // Its own deletion (lease revoked) never removes this node.
        handler.delete("node1");
        handler.delete("node2");
        assert_eq!(hub.nodes(), vec![me()]);
        handler.put("node2", &value(&other));
        assert_eq!(hub.nodes().len(), 2);
    }
}
