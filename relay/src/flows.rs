//! GetFlows across nodes: one stream per node, merged into time order.
//!
//! Per request, a reader task per node feeds a bounded queue ([`NODE_QUEUE_CAPACITY`]);
//! a merger task runs the sort buffer and error aggregation and feeds the client's bounded
//! queue ([`CLIENT_QUEUE_CAPACITY`]). Requests without `follow` ask for a finite amount
//! and use backpressure end to end. Follow requests never let a slow client hold a node
//! stream: when the queue is full, a reader drops the response, counts it, and delivers a
//! `LostEvent` (source `OBSERVER_EVENTS_QUEUE`, carrying the node's name) once there is
//! room again, so the client sees that it fell behind.
//!
//! By concern: [`time`] (timestamps as nanoseconds), [`node`] (the nodes of a request
//! and the reader of each), [`order`] (the sort buffer and which nodes it waits on),
//! [`errors`] (node errors with one message merged into one event) and [`run`] (the
//! request's loop, made of those steps).

use std::sync::Arc;
use std::time::Duration;

use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use proto::relay::{NodeState, NodeStatusEvent};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tonic::Status;

use crate::pool::PeerManager;
use crate::raw::RelayResponse;
use crate::self_metrics::RelayMetrics;

mod errors;
mod node;
mod order;
mod run;
mod time;

use time::now_timestamp;

pub use proto::get_flows::GET_FLOWS_PATH;

/// Responses queued from the nodes of one request towards its merger. Large enough to
/// absorb a burst from every node while the merger sends to the client.
pub const NODE_QUEUE_CAPACITY: usize = 1024;
/// Batches of responses queued between a request's merger and its gRPC stream.
pub const CLIENT_QUEUE_CAPACITY: usize = 16;
/// Most responses in one batch towards the client: a batch is encoded into one write.
pub const CLIENT_BATCH_MAX: usize = 64;
/// Most messages the merger takes from the node queue before it sends to the client.
const MERGE_BATCH_MAX: usize = 256;
/// Fewest responses a node may have in flight (queued or in the sort buffer) in a
/// request without `follow`; the sort buffer's size is shared out among the nodes above
/// that.
pub const MIN_NODE_CREDITS: usize = 32;

/// Settings of the flow merge.
#[derive(Debug, Clone)]
pub struct FlowsConfig {
    /// Largest sort buffer per request.
    pub sort_buffer_len_max: usize,
    /// Longest wait of a response in the sort buffer.
    pub sort_buffer_drain_timeout: Duration,
    /// Window in which node errors with the same message are merged into one event.
    pub error_aggregation_window: Duration,
    /// How often a follow request looks for new nodes, at the latest.
    pub peer_update_interval: Duration,
    /// Name put in the node status events the relay generates.
    pub node_name: String,
}

enum NodeMessage {
    Response {
        node: usize,
        time: i128,
        response: RelayResponse,
        credit: Option<OwnedSemaphorePermit>,
    },
    /// The node's stream ended normally.
    Finished { node: usize },
    /// The node's stream failed.
    Failed {
        node: usize,
        name: String,
        message: String,
    },
}

/// A response in the sort buffer, with the node it came from and, without follow, the
/// credit it holds until it leaves.
struct Held {
    node: usize,
    response: RelayResponse,
    _credit: Option<OwnedSemaphorePermit>,
}

/// Starts a GetFlows request; the returned receiver yields the client's responses.
pub fn get_flows(
    pool: PeerManager,
    config: Arc<FlowsConfig>,
    metrics: Arc<RelayMetrics>,
    request: GetFlowsRequest,
) -> mpsc::Receiver<Result<Vec<RelayResponse>, Status>> {
    let (out, receiver) = mpsc::channel(CLIENT_QUEUE_CAPACITY);
    tokio::spawn(run::run(pool, config, metrics, request, out));
    receiver
}

/// A node status event as the relay reports it.
fn node_status(
    node_name: &str,
    state: NodeState,
    nodes: Vec<String>,
    message: String,
) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node_name.to_owned(),
        time: Some(now_timestamp()),
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: nodes,
            message,
        })),
    }
}
