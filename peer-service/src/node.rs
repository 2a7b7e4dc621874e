//! Nodes as the peer service announces them, and the TLS server names derived from them.

use proto::peer::{ChangeNotification, ChangeNotificationType, Tls};

/// Cluster name used when a node does not name its cluster, as in Cilium.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// Name of the Hubble gRPC service, the third label of every TLS server name.
pub const GRPC_SERVICE_NAME: &str = "hubble-grpc";

/// Domain that ends every TLS server name.
pub const DOMAIN_NAME: &str = "cilium.io";

/// Name under which the peer service itself is reached when it is remote.
pub const PEER_SERVICE_NAME: &str = "hubble-peer";

/// One node of the cluster: where its Hubble API listens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Node name, usually the host name (`node1`).
    pub name: String,
    /// Address of the node's Hubble API: `host:port`, `ip` (port 4244 is implied by
    /// clients) or `unix:///path/to/hubble.sock`.
    pub address: String,
    /// Cluster the node belongs to; `default` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
}

impl Node {
    /// Builds a node of the default cluster.
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            cluster: None,
        }
    }

    /// The cluster name, `default` when the node names none.
    pub fn cluster_name(&self) -> &str {
        match self.cluster.as_deref() {
            Some(cluster) if !cluster.is_empty() => cluster,
            _ => DEFAULT_CLUSTER_NAME,
        }
    }

    /// The name announced to peers: `name` in the default cluster, `cluster/name` otherwise,
    /// as Cilium does so that names stay unique across a cluster mesh.
    pub fn full_name(&self) -> String {
        match self.cluster_name() {
            DEFAULT_CLUSTER_NAME => self.name.clone(),
            cluster => format!("{cluster}/{}", self.name),
        }
    }

    /// The TLS server name the node's certificate must carry.
    pub fn tls_server_name(&self) -> String {
        tls_server_name(&self.name, self.cluster_name())
    }

    /// Builds the change notification announcing this node, with the TLS server name when
    /// `with_tls` is set.
    pub fn to_notification(
        &self,
        kind: ChangeNotificationType,
        with_tls: bool,
    ) -> ChangeNotification {
        ChangeNotification {
            name: self.full_name(),
            address: self.address.clone(),
            r#type: kind as i32,
            tls: with_tls.then(|| Tls {
                server_name: self.tls_server_name(),
            }),
        }
    }
}

/// Returns `<node>.<cluster>.hubble-grpc.cilium.io`, with dots in the node and cluster names
/// replaced by dashes so that every name sits at the same DNS level. An empty node name gives
/// an empty server name; an empty cluster name means `default`.
pub fn tls_server_name(node_name: &str, cluster_name: &str) -> String {
    if node_name.is_empty() {
        return String::new();
    }
    let cluster = if cluster_name.is_empty() {
        DEFAULT_CLUSTER_NAME
    } else {
        cluster_name
    };
    format!(
        "{}.{}.{GRPC_SERVICE_NAME}.{DOMAIN_NAME}",
        node_name.replace('.', "-"),
        cluster.replace('.', "-")
    )
}

/// One change of the node list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeChange {
    /// A node joined.
    Added(Node),
    /// A known node changed its address or cluster.
    Updated {
        /// The node as it was.
        old: Node,
        /// The node as it is now.
        new: Node,
    },
    /// A node left.
    Deleted(Node),
}

impl NodeChange {
    /// The notification type of this change.
    pub fn kind(&self) -> ChangeNotificationType {
        match self {
            NodeChange::Added(_) => ChangeNotificationType::PeerAdded,
            NodeChange::Updated { .. } => ChangeNotificationType::PeerUpdated,
            NodeChange::Deleted(_) => ChangeNotificationType::PeerDeleted,
        }
    }

    /// The node the change is about, as it is after the change (or was, when deleted).
    pub fn node(&self) -> &Node {
        match self {
            NodeChange::Added(node) | NodeChange::Updated { new: node, .. } => node,
            NodeChange::Deleted(node) => node,
        }
    }

    /// The peer notifications announcing this change. A node whose announced name changes
    /// (its cluster changed) is, for peers, a removal followed by an addition.
    pub fn to_notifications(&self, with_tls: bool) -> Vec<ChangeNotification> {
        match self {
            NodeChange::Updated { old, new } if old.full_name() != new.full_name() => vec![
                old.to_notification(ChangeNotificationType::PeerDeleted, with_tls),
                new.to_notification(ChangeNotificationType::PeerAdded, with_tls),
            ],
            change => vec![change.node().to_notification(change.kind(), with_tls)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_follow_cilium() {
        assert_eq!(
            tls_server_name("node1", "default"),
            "node1.default.hubble-grpc.cilium.io"
        );
        assert_eq!(
            tls_server_name("a.b", "c.d"),
            "a-b.c-d.hubble-grpc.cilium.io"
        );
        assert_eq!(tls_server_name("n", ""), "n.default.hubble-grpc.cilium.io");
        assert_eq!(tls_server_name("", "x"), "");
    }

    #[test]
    fn full_name_prefixes_non_default_cluster() {
        let mut node = Node::new("node1", "10.0.0.1:4244");
        assert_eq!(node.full_name(), "node1");
        node.cluster = Some("mesh2".into());
        assert_eq!(node.full_name(), "mesh2/node1");
        assert_eq!(node.tls_server_name(), "node1.mesh2.hubble-grpc.cilium.io");
    }
}
