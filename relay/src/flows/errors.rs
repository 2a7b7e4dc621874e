//! Node errors with the same message, merged into one `NODE_ERROR` event per
//! aggregation window.

use proto::relay::NodeState;

use super::node_status;
use super::order::{Merge, RELAY_EVENT};
use super::time::{now_timestamp, timestamp_from_nanos, timestamp_nanos};
use super::Held;
use crate::raw::RelayResponse;

/// Node errors with the same message, waiting to be reported as one event.
pub(super) struct PendingError {
    message: String,
    nodes: Vec<String>,
    time: i128,
    pub(super) deadline: std::time::Instant,
}

/// Adds the failure of node `name`: to the pending event when its message is the same,
/// else the pending event goes into the merge and this one waits for `window`.
pub(super) fn add_failure(
    pending: &mut Option<PendingError>,
    merge: &mut Merge,
    ready: &mut Vec<RelayResponse>,
    node_name: &str,
    failure: (String, String),
    window: std::time::Duration,
) {
    let (name, message) = failure;
    match pending {
        Some(p) if p.message == message => p.nodes.push(name),
        _ => {
            if let Some(previous) = pending.take() {
                flush_error(merge, ready, node_name, previous);
            }
            *pending = Some(PendingError {
                message,
                nodes: vec![name],
                time: timestamp_nanos(&now_timestamp()),
                deadline: std::time::Instant::now() + window,
            });
        }
    }
}

/// Puts the pending event into the merge once its window has passed.
pub(super) fn flush_due(
    pending: &mut Option<PendingError>,
    now: std::time::Instant,
    merge: &mut Merge,
    ready: &mut Vec<RelayResponse>,
    node_name: &str,
) {
    if pending.as_ref().is_some_and(|p| p.deadline <= now) {
        if let Some(due) = pending.take() {
            flush_error(merge, ready, node_name, due);
        }
    }
}

/// Reports `error` as one event, ordered by the time of its first failure.
pub(super) fn flush_error(
    merge: &mut Merge,
    ready: &mut Vec<RelayResponse>,
    node_name: &str,
    error: PendingError,
) {
    let mut event = node_status(node_name, NodeState::NodeError, error.nodes, error.message);
    event.time = Some(timestamp_from_nanos(error.time));
    let held = Held {
        node: RELAY_EVENT,
        response: event.into(),
        _credit: None,
    };
    merge.push(error.time, held, ready);
}
