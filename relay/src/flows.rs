//! GetFlows across nodes: one stream per node, merged into time order.
//!
//! Per request, a reader task per node feeds a bounded queue ([`NODE_QUEUE_CAPACITY`]);
//! a merger task runs the sort buffer and error aggregation and feeds the client's bounded
//! queue ([`CLIENT_QUEUE_CAPACITY`]). Requests without `follow` ask for a finite amount
//! and use backpressure end to end. Follow requests never let a slow client hold a node
//! stream: when the queue is full, a reader drops the response, counts it, and delivers a
//! `LostEvent` (source `OBSERVER_EVENTS_QUEUE`, carrying the node's name) once there is
//! room again, so the client sees that it fell behind.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pbjson_types::Timestamp;
use proto::flow::{LostEvent, LostEventSource};
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use proto::relay::{NodeState, NodeStatusEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use crate::error::{is_connection_failure, status_message};
use crate::merge::SortBuffer;
use crate::raw::{NodeFlowsCodec, RawResponse, RelayResponse};

/// The gRPC path of Observer.GetFlows.
pub const GET_FLOWS_PATH: &str = "/observer.Observer/GetFlows";
use crate::pool::{PeerManager, PeerSnapshot};

/// Responses queued from the nodes of one request towards its merger. Large enough to
/// absorb a burst from every node while the merger sends to the client.
pub const NODE_QUEUE_CAPACITY: usize = 1024;
/// Responses queued between a request's merger and its gRPC stream.
pub const CLIENT_QUEUE_CAPACITY: usize = 128;

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

/// Counters of the flow merge, shared by every request.
#[derive(Debug, Default)]
pub struct FlowStats {
    /// Responses dropped because a follow client could not keep up.
    pub dropped_responses: AtomicU64,
    /// The relay's metrics (flows forwarded, responses dropped, peer status).
    pub metrics: Arc<metrics::RelayMetrics>,
    /// Node streams that failed.
    pub node_errors: AtomicU64,
}

enum NodeMessage {
    Response { time: i128, response: RelayResponse },
    Failed { node: String, message: String },
}

/// Starts a GetFlows request; the returned receiver yields the client's responses.
pub fn get_flows(
    pool: PeerManager,
    config: Arc<FlowsConfig>,
    stats: Arc<FlowStats>,
    request: GetFlowsRequest,
) -> mpsc::Receiver<Result<RelayResponse, Status>> {
    let (out, receiver) = mpsc::channel(CLIENT_QUEUE_CAPACITY);
    tokio::spawn(run(pool, config, stats, request, out));
    receiver
}

pub(crate) fn timestamp_nanos(timestamp: &Timestamp) -> i128 {
    i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos)
}

pub(crate) fn timestamp_from_nanos(nanos: i128) -> Timestamp {
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

pub(crate) fn now_timestamp() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    timestamp_from_nanos(since_epoch.as_nanos() as i128)
}

/// A node status event as the relay reports it.
pub(crate) fn node_status(
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

/// The nodes streaming for one request, and where each stopped.
struct Collector {
    pool: PeerManager,
    request: GetFlowsRequest,
    sender: mpsc::Sender<NodeMessage>,
    stats: Arc<FlowStats>,
    active: Arc<Mutex<HashSet<String>>>,
    last_seen: Arc<Mutex<HashMap<String, i128>>>,
}

impl Collector {
    /// Starts a stream for every connected node not streaming yet. Returns the names of
    /// the nodes that started and of those unavailable.
    fn collect(&self, peers: Vec<PeerSnapshot>) -> (Vec<String>, Vec<String>) {
        let mut started = Vec::new();
        let mut unavailable = Vec::new();
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        for peer in peers {
            let name = peer.info.name.clone();
            if active.contains(&name) {
                continue;
            }
            let Some(channel) = peer.channel else {
                self.pool.report_offline(&name);
                unavailable.push(name);
                continue;
            };
            active.insert(name.clone());
            let reader = NodeReader {
                name: name.clone(),
                request: self.request_for(&name),
                follow: self.request.follow,
                sender: self.sender.clone(),
                pool: self.pool.clone(),
                stats: self.stats.clone(),
                active: self.active.clone(),
                last_seen: self.last_seen.clone(),
                lost: 0,
                lost_first: None,
                lost_last: None,
            };
            tokio::spawn(reader.run(channel));
            started.push(name);
        }
        (started, unavailable)
    }

    /// The request for a node: the client's, except for a node that already streamed in
    /// this request, which resumes after the last response it sent.
    fn request_for(&self, name: &str) -> GetFlowsRequest {
        let mut request = self.request.clone();
        let last_seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&last) = last_seen.get(name) {
            let resume = last + 1;
            let since = request.since.as_ref().map_or(resume, timestamp_nanos);
            request.since = Some(timestamp_from_nanos(since.max(resume)));
            request.number = 0;
            request.first = false;
        }
        request
    }
}

struct NodeReader {
    name: String,
    request: GetFlowsRequest,
    follow: bool,
    sender: mpsc::Sender<NodeMessage>,
    pool: PeerManager,
    stats: Arc<FlowStats>,
    active: Arc<Mutex<HashSet<String>>>,
    last_seen: Arc<Mutex<HashMap<String, i128>>>,
    lost: u64,
    lost_first: Option<i128>,
    lost_last: Option<i128>,
}

impl NodeReader {
    async fn run(mut self, channel: Channel) {
        let result = tokio::select! {
            result = call_get_flows(channel, self.request.clone()) => result,
            () = self.sender.closed() => return,
        };
        let mut stream = match result {
            Ok(response) => response.into_inner(),
            Err(status) => return self.fail(status).await,
        };
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                // Responses were dropped: report them as soon as there is room, even if
                // the node sends nothing more.
                permit = self.sender.reserve(), if self.lost > 0 => {
                    match permit {
                        Ok(permit) => {
                            permit.send(self.lost_event());
                            self.lost = 0;
                            self.lost_first = None;
                            continue;
                        }
                        Err(_) => return,
                    }
                }
                () = self.sender.closed() => return,
            };
            match message {
                Ok(Some(mut response)) => {
                    response.set_missing_node_name(&self.name);
                    let time = response
                        .time
                        .unwrap_or_else(|| timestamp_nanos(&now_timestamp()));
                    if !self.deliver(time, RelayResponse::Raw(response)).await {
                        return;
                    }
                }
                Ok(None) => {
                    self.leave();
                    return;
                }
                Err(status) => return self.fail(status).await,
            }
        }
    }

    fn leave(&self) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }

    async fn fail(self, status: Status) {
        self.leave();
        if self.sender.is_closed() {
            return;
        }
        if is_connection_failure(&status) {
            self.pool.report_offline(&self.name);
        }
        self.stats.node_errors.fetch_add(1, Ordering::Relaxed);
        let message = status_message(&status);
        tracing::warn!(peer = %self.name, error = %message, "cannot retrieve flows from peer");
        let failed = NodeMessage::Failed {
            node: self.name.clone(),
            message,
        };
        let _ = self.sender.send(failed).await;
    }

    /// Hands a response to the merger. Returns false when the request is over.
    async fn deliver(&mut self, time: i128, response: RelayResponse) -> bool {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.name.clone(), time);
        let message = NodeMessage::Response { time, response };
        if !self.follow {
            return self.sender.send(message).await.is_ok();
        }
        if self.lost > 0 {
            match self.sender.try_send(self.lost_event()) {
                Ok(()) => {
                    self.lost = 0;
                    self.lost_first = None;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.sender.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lost += 1;
                self.lost_first.get_or_insert(time);
                self.lost_last = Some(time);
                self.stats.dropped_responses.fetch_add(1, Ordering::Relaxed);
                self.stats.metrics.responses_dropped(1);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn lost_event(&self) -> NodeMessage {
        let time = self.lost_last.unwrap_or_default();
        NodeMessage::Response {
            time,
            response: RelayResponse::from(GetFlowsResponse {
                node_name: self.name.clone(),
                time: Some(timestamp_from_nanos(time)),
                response_types: Some(ResponseTypes::LostEvents(LostEvent {
                    source: LostEventSource::ObserverEventsQueue as i32,
                    num_events_lost: self.lost,
                    cpu: None,
                    first: self.lost_first.map(timestamp_from_nanos),
                    last: self.lost_last.map(timestamp_from_nanos),
                })),
            }),
        }
    }
}

/// Node errors with the same message, waiting to be reported as one event.
struct PendingError {
    message: String,
    nodes: Vec<String>,
    time: i128,
    deadline: std::time::Instant,
}

async fn run(
    pool: PeerManager,
    config: Arc<FlowsConfig>,
    stats: Arc<FlowStats>,
    request: GetFlowsRequest,
    out: mpsc::Sender<Result<RelayResponse, Status>>,
) {
    let follow = request.follow;
    let stats_metrics = stats.metrics.clone();
    let peers = pool.list();
    let mut buffer_len = config.sort_buffer_len_max.max(1);
    let wanted = request.number.saturating_mul(peers.len() as u64);
    if wanted > 0 && wanted < buffer_len as u64 {
        buffer_len = wanted as usize;
    }
    let (sender, mut receiver) = mpsc::channel(NODE_QUEUE_CAPACITY);
    let collector = Collector {
        pool: pool.clone(),
        request,
        sender,
        stats,
        active: Arc::default(),
        last_seen: Arc::default(),
    };
    let (connected, unavailable) = collector.collect(peers);
    let node_name = config.node_name.as_str();
    for (state, nodes) in [
        (NodeState::NodeConnected, connected),
        (NodeState::NodeUnavailable, unavailable),
    ] {
        if !nodes.is_empty() {
            let event = node_status(node_name, state, nodes, String::new());
            if out.send(Ok(event.into())).await.is_err() {
                return;
            }
        }
    }
    // Without follow, the request ends when every reader has finished, which the queue
    // shows once the collector's sender is gone too.
    let collector = follow.then_some(collector);
    let mut changes = pool.subscribe_changes();
    let mut update_tick = tokio::time::interval(config.peer_update_interval);
    update_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer = SortBuffer::new(buffer_len, config.sort_buffer_drain_timeout);
    let mut pending: Option<PendingError> = None;
    let mut ready: Vec<RelayResponse> = Vec::new();
    let mut watch_changes = follow;

    loop {
        let deadline = match (buffer.next_deadline(), pending.as_ref().map(|p| p.deadline)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            message = receiver.recv() => match message {
                Some(NodeMessage::Response { time, response }) => {
                    ready.extend(buffer.push(time, response, std::time::Instant::now()));
                }
                Some(NodeMessage::Failed { node, message }) => {
                    match &mut pending {
                        Some(p) if p.message == message => p.nodes.push(node),
                        _ => {
                            if let Some(previous) = pending.take() {
                                flush_error(&mut buffer, &mut ready, node_name, previous);
                            }
                            pending = Some(PendingError {
                                message,
                                nodes: vec![node],
                                time: timestamp_nanos(&now_timestamp()),
                                deadline: std::time::Instant::now()
                                    + config.error_aggregation_window,
                            });
                        }
                    }
                }
                None => break,
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = std::time::Instant::now();
                if pending.as_ref().is_some_and(|p| p.deadline <= now) {
                    if let Some(due) = pending.take() {
                        flush_error(&mut buffer, &mut ready, node_name, due);
                    }
                }
                buffer.drain_expired(now, &mut ready);
            }
            _ = update_tick.tick(), if follow => {
                if let Some(collector) = &collector {
                    announce(node_name, collector.collect(pool.list()).0, &mut ready);
                }
            }
            changed = changes.changed(), if watch_changes => {
                if changed.is_err() {
                    watch_changes = false;
                } else if let Some(collector) = &collector {
                    announce(node_name, collector.collect(pool.list()).0, &mut ready);
                }
            }
            () = out.closed() => return,
        }
        if !send_all(&out, &stats_metrics, &mut ready).await {
            return;
        }
    }
    if let Some(last) = pending.take() {
        flush_error(&mut buffer, &mut ready, node_name, last);
    }
    buffer.drain_all(&mut ready);
    send_all(&out, &stats_metrics, &mut ready).await;
}

/// Sends `ready` to the client, counting flows. Returns false when the client is gone.
async fn send_all(
    out: &mpsc::Sender<Result<RelayResponse, Status>>,
    metrics: &metrics::RelayMetrics,
    ready: &mut Vec<RelayResponse>,
) -> bool {
    let mut flows = 0;
    let mut open = true;
    for response in ready.drain(..) {
        let is_flow = response.is_flow();
        if out.send(Ok(response)).await.is_err() {
            open = false;
            break;
        }
        flows += u64::from(is_flow);
    }
    metrics.flows_forwarded(flows);
    open
}

/// Tells a follow client about nodes that started streaming after the request began.
fn announce(node_name: &str, started: Vec<String>, ready: &mut Vec<RelayResponse>) {
    if !started.is_empty() {
        ready.push(RelayResponse::from(node_status(
            node_name,
            NodeState::NodeConnected,
            started,
            String::new(),
        )));
    }
}

fn flush_error(
    buffer: &mut SortBuffer<RelayResponse>,
    ready: &mut Vec<RelayResponse>,
    node_name: &str,
    error: PendingError,
) {
    let mut event = node_status(node_name, NodeState::NodeError, error.nodes, error.message);
    event.time = Some(timestamp_from_nanos(error.time));
    ready.extend(buffer.push(error.time, event.into(), std::time::Instant::now()));
}

/// GetFlows on a node, its responses kept as the node encoded them.
async fn call_get_flows(
    channel: Channel,
    request: GetFlowsRequest,
) -> Result<tonic::Response<tonic::codec::Streaming<RawResponse>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    let path = PathAndQuery::from_static(GET_FLOWS_PATH);
    grpc.server_streaming(tonic::Request::new(request), path, NodeFlowsCodec)
        .await
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}
