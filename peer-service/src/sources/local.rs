//! A single node: the node list is this node alone.

use super::{NodeSource, Running};
use crate::hub::NodeHub;
use crate::node::Node;

/// Announces only this node, as an agent without a cluster does.
#[derive(Debug, Clone)]
pub struct ThisNode(pub Node);

impl NodeSource for ThisNode {
    fn describe(&self) -> String {
        format!("this node {}", self.0.name)
    }

    fn start(self: Box<Self>, hub: NodeHub) -> Running {
        hub.upsert(self.0);
        Running::done()
    }
}
