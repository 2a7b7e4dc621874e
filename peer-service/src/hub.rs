//! The node registry: the current node list and its subscribers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::node::{Node, NodeChange};

/// Changes queued per subscriber before it counts as fallen behind. A node list changes
/// rarely (a node joins, leaves or moves), so a subscriber that leaves this many changes
/// unread is stuck; it is closed and must subscribe again to get a fresh snapshot.
pub const SUBSCRIBER_QUEUE_CAPACITY: usize = 1024;

/// A source of node-list changes: whoever knows the nodes of the cluster.
pub trait NodeRegistry: Send + Sync + 'static {
    /// Returns the nodes known now, together with a queue of every change after them.
    fn subscribe(&self) -> Subscription;
}

/// What a subscriber receives: a snapshot, then the changes that follow it.
#[derive(Debug)]
pub struct Subscription {
    /// Every node known when the subscription started, sorted by name.
    pub initial: Vec<Node>,
    /// Changes after the snapshot. The queue ends (yields `None`) when the subscriber fell
    /// behind or the registry went away; [`Subscription::fell_behind`] tells which.
    pub changes: mpsc::Receiver<NodeChange>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// True when the registry closed this subscription because its queue was full.
    pub fn fell_behind(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }
}

struct Subscriber {
    sender: mpsc::Sender<NodeChange>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
struct HubState {
    nodes: BTreeMap<String, Node>,
    subscribers: Vec<Subscriber>,
}

/// An in-memory node registry fed by a node source (the static nodes file, a key-value
/// store). Cloning gives another handle to the same registry.
#[derive(Clone, Default)]
pub struct NodeHub {
    state: Arc<Mutex<HubState>>,
    dropped_subscribers: Arc<AtomicU64>,
}

// === impl NodeHub ===

impl NodeHub {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters here, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The nodes known now, sorted by name.
    pub fn nodes(&self) -> Vec<Node> {
        self.lock().nodes.values().cloned().collect()
    }

    /// Number of subscribers closed because they fell behind.
    pub fn dropped_subscribers(&self) -> u64 {
        self.dropped_subscribers.load(Ordering::Relaxed)
    }

    /// Replaces the whole node list and publishes the difference as changes.
    pub fn replace_all(&self, nodes: Vec<Node>) {
        let mut state = self.lock();
        let new: BTreeMap<String, Node> = nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
        let mut changes = Vec::new();
        for (name, old) in &state.nodes {
            if !new.contains_key(name) {
                changes.push(NodeChange::Deleted(old.clone()));
            }
        }
        for (name, node) in &new {
            match state.nodes.get(name) {
                None => changes.push(NodeChange::Added(node.clone())),
                Some(old) if old != node => changes.push(changed(old, node)),
                Some(_) => {}
            }
        }
        state.nodes = new;
        self.publish(&mut state, changes);
    }

    /// Adds a node or replaces the node of the same name.
    pub fn upsert(&self, node: Node) {
        let mut state = self.lock();
        let change = match state.nodes.get(&node.name) {
            None => NodeChange::Added(node.clone()),
            Some(old) if *old == node => return,
            Some(old) => changed(old, &node),
        };
        state.nodes.insert(node.name.clone(), node);
        self.publish(&mut state, vec![change]);
    }

    /// Removes the node with this name, if known.
    pub fn remove(&self, name: &str) {
        let mut state = self.lock();
        if let Some(old) = state.nodes.remove(name) {
            self.publish(&mut state, vec![NodeChange::Deleted(old)]);
        }
    }

    fn publish(&self, state: &mut HubState, changes: Vec<NodeChange>) {
        if changes.is_empty() {
            return;
        }
        state.subscribers.retain(|subscriber| {
            for change in &changes {
                match subscriber.sender.try_send(change.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        subscriber.lagged.store(true, Ordering::Relaxed);
                        self.dropped_subscribers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            capacity = SUBSCRIBER_QUEUE_CAPACITY,
                            "peer change subscriber fell behind; closing it so that it re-syncs"
                        );
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }
}

fn changed(old: &Node, new: &Node) -> NodeChange {
    NodeChange::Updated {
        old: old.clone(),
        new: new.clone(),
    }
}

impl NodeRegistry for NodeHub {
    fn subscribe(&self) -> Subscription {
        let (sender, changes) = mpsc::channel(SUBSCRIBER_QUEUE_CAPACITY);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut state = self.lock();
        state.subscribers.push(Subscriber {
            sender,
            lagged: lagged.clone(),
        });
        Subscription {
            initial: state.nodes.values().cloned().collect(),
            changes,
            lagged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_all_publishes_the_difference() {
        let hub = NodeHub::new();
        hub.replace_all(vec![Node::new("a", "1:1"), Node::new("b", "2:2")]);
        let mut sub = hub.subscribe();
        assert_eq!(sub.initial.len(), 2);
        hub.replace_all(vec![Node::new("a", "1:9"), Node::new("c", "3:3")]);
        let mut got = Vec::new();
        while let Ok(change) = sub.changes.try_recv() {
            got.push(change);
        }
        assert_eq!(
            got,
            vec![
                NodeChange::Deleted(Node::new("b", "2:2")),
                NodeChange::Updated {
                    old: Node::new("a", "1:1"),
                    new: Node::new("a", "1:9")
                },
                NodeChange::Added(Node::new("c", "3:3")),
            ]
        );
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_closed() {
        let hub = NodeHub::new();
        let mut sub = hub.subscribe();
        for i in 0..=SUBSCRIBER_QUEUE_CAPACITY {
            hub.upsert(Node::new(format!("n{i}"), "x:1"));
        }
        assert_eq!(hub.dropped_subscribers(), 1);
        assert!(sub.fell_behind());
        let mut received = 0;
        while let Ok(_change) = sub.changes.try_recv() {
            received += 1;
        }
        assert_eq!(received, SUBSCRIBER_QUEUE_CAPACITY);
        assert!(sub.changes.try_recv().is_err());
        // A new subscription sees everything in its snapshot.
        assert_eq!(hub.subscribe().initial.len(), SUBSCRIBER_QUEUE_CAPACITY + 1);
    }
}
