//! Where the node list comes from. Every source feeds a [`NodeHub`] through one trait,
//! [`NodeSource`], and [`choose`] picks the one a node uses:
//!
//! - [`etcd::EtcdNodes`] (feature `etcd`): in a cluster, the nodes registered in etcd
//!   under their agents' leases, this node always among them;
//! - [`file::NodesFile`]: the static nodes file (`--peers-file`), watched for changes;
//! - [`local::ThisNode`]: a single node announces itself.

use crate::hub::NodeHub;
use crate::node::Node;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod file;
pub mod local;

/// A source of the node list.
pub trait NodeSource: Send + 'static {
    /// What the source is, for logs: `nodes file /x/nodes.yaml`, `etcd ...`, `this node`.
    fn describe(&self) -> String;

    /// Starts feeding `hub` (within a Tokio runtime); the hub is fed until the returned
    /// guard is dropped.
    fn start(self: Box<Self>, hub: NodeHub) -> Running;
}

/// A started [`NodeSource`]: dropping it stops the source (the nodes it put into the
/// hub stay until another source replaces them).
#[must_use = "the node source stops when this is dropped"]
pub struct Running {
    task: Option<tokio::task::JoinHandle<()>>,
    _kept: Option<Box<dyn Send>>,
}

impl Running {
    /// A source with nothing left to run once started.
    pub fn done() -> Self {
        Self {
            task: None,
            _kept: None,
        }
    }

    /// A source that runs while `value` (a watcher that stops when dropped) lives.
    pub fn keep(value: impl Send + 'static) -> Self {
        Self {
            task: None,
            _kept: Some(Box::new(value)),
        }
    }

    /// A source that runs as `task`, aborted when the guard is dropped.
    pub fn task(task: tokio::task::JoinHandle<()>) -> Self {
        Self {
            task: Some(task),
            _kept: None,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The node source of a node: a cluster store (etcd) when there is one, else the
/// nodes file when one is given, else `this_node` alone.
pub fn choose(
    cluster_store: Option<Box<dyn NodeSource>>,
    nodes_file: Option<file::NodesFile>,
    this_node: Node,
) -> Box<dyn NodeSource> {
    match (cluster_store, nodes_file) {
        (Some(store), _) => store,
        (None, Some(file)) => Box::new(file),
        (None, None) => Box::new(local::ThisNode(this_node)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_cluster_store_wins_over_the_file_which_wins_over_this_node() {
        let me = Node::new("node1", "10.0.0.1:4244");
        let file = || Some(file::NodesFile::new("/run/nodes.yaml"));
        let other =
            || Some(Box::new(local::ThisNode(Node::new("x", "y:1"))) as Box<dyn NodeSource>);
        assert_eq!(
            choose(other(), file(), me.clone()).describe(),
            "this node x"
        );
        assert_eq!(
            choose(None, file(), me.clone()).describe(),
            "nodes file /run/nodes.yaml"
        );
        assert_eq!(choose(None, None, me).describe(), "this node node1");
    }

    #[tokio::test]
    async fn each_source_feeds_the_hub() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nodes.yaml");
        std::fs::write(&path, "- {name: a, address: \"1.1.1.1:4244\"}\n").expect("write");
        let hub = NodeHub::new();
        let source = choose(
            None,
            Some(file::NodesFile {
                path,
                rescan_interval: Duration::from_secs(60),
            }),
            Node::new("me", "x:1"),
        );
        let _running = source.start(hub.clone());
        assert_eq!(hub.nodes(), vec![Node::new("a", "1.1.1.1:4244")]);

        let hub = NodeHub::new();
        let _running = choose(None, None, Node::new("me", "x:1")).start(hub.clone());
        assert_eq!(hub.nodes(), vec![Node::new("me", "x:1")]);
    }
}
