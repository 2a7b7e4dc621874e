//! GetFlows across nodes: one stream per node, merged into time order.
//!
//! Per request, a reader task per node feeds a bounded queue ([`NODE_QUEUE_CAPACITY`]);
//! a merger task runs the sort buffer and error aggregation and feeds the client's bounded
//! queue ([`CLIENT_QUEUE_CAPACITY`]). Requests without `follow` ask for a finite amount
//! and use backpressure end to end. Follow requests never let a slow client hold a node
//! stream: when the queue is full, a reader drops the response, counts it, and delivers a
//! `LostEvent` (source `OBSERVER_EVENTS_QUEUE`, carrying the node's name) once there is
//! room again, so the client sees that it fell behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pbjson_types::Timestamp;
use proto::flow::{LostEvent, LostEventSource};
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use proto::relay::{NodeState, NodeStatusEvent};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use crate::error::{is_connection_failure, node_failure_message};
use crate::merge::SortBuffer;
use crate::raw::{InvalidResponse, NodeFlowsCodec, NodeResponse, RelayResponse};
use crate::self_metrics::RelayMetrics;

/// The gRPC path of Observer.GetFlows.
pub const GET_FLOWS_PATH: &str = "/observer.Observer/GetFlows";
use crate::pool::{PeerManager, PeerSnapshot};

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
    tokio::spawn(run(pool, config, metrics, request, out));
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

/// Compiles the request's filters with the nodes' own filter engine (on a blocking
/// thread: a request at the budget's limits takes real CPU) and drops the result.
async fn validate(request: &GetFlowsRequest) -> Result<(), Status> {
    let (allow, deny) = (request.whitelist.clone(), request.blacklist.clone());
    match tokio::task::spawn_blocking(move || proto::filter::FilterSet::compile(&allow, &deny))
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(crate::error::invalid_request(&error)),
        Err(join) => Err(Status::internal(format!(
            "checking the request's filters: {join}"
        ))),
    }
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

/// A node without a connection, and why its last connection attempt failed (empty when
/// not known).
type Unavailable = (String, String);

/// The nodes streaming for one request, and where each stopped.
struct Collector {
    pool: PeerManager,
    request: GetFlowsRequest,
    sender: mpsc::Sender<NodeMessage>,
    metrics: Arc<RelayMetrics>,
    active: Arc<Mutex<HashSet<String>>>,
    last_seen: Arc<Mutex<HashMap<String, i128>>>,
    /// Responses each node may have in flight without follow; `None` with follow.
    credits_per_node: Option<usize>,
    next_index: std::cell::Cell<usize>,
}

impl Collector {
    /// Starts a stream for every connected node not streaming yet. Returns the nodes
    /// that started (index in this request, name) and those unavailable, each with why
    /// its last connection attempt failed (empty when not known).
    fn collect(&self, peers: Vec<PeerSnapshot>) -> (Vec<(usize, String)>, Vec<Unavailable>) {
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
                unavailable.push((name, peer.last_error.unwrap_or_default()));
                continue;
            };
            active.insert(name.clone());
            let index = self.next_index.get();
            self.next_index.set(index + 1);
            let reader = NodeReader {
                index,
                credits: self
                    .credits_per_node
                    .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
                last_time: None,
                name: name.clone(),
                request: self.request_for(&name),
                sender: self.sender.clone(),
                pool: self.pool.clone(),
                metrics: self.metrics.clone(),
                active: self.active.clone(),
                last_seen: self.last_seen.clone(),
                lost: 0,
                lost_first: None,
                lost_last: None,
            };
            tokio::spawn(reader.run(channel));
            started.push((index, name));
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
    index: usize,
    /// Without follow: a credit per response in flight, so that a node running ahead
    /// of the others waits instead of filling the sort buffer.
    credits: Option<Arc<tokio::sync::Semaphore>>,
    /// Time of the last response delivered.
    last_time: Option<i128>,
    name: String,
    request: GetFlowsRequest,
    sender: mpsc::Sender<NodeMessage>,
    pool: PeerManager,
    metrics: Arc<RelayMetrics>,
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
            Err(status) => return self.fail(status, false).await,
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
                Ok(Some(Err(invalid))) => return self.refuse(invalid).await,
                Ok(Some(Ok(mut response))) => {
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
                    let _ = self
                        .sender
                        .send(NodeMessage::Finished { node: self.index })
                        .await;
                    return;
                }
                Err(status) => return self.fail(status, true).await,
            }
        }
    }

    fn leave(&self) {
        // Where to resume is recorded before the node is free to start again.
        if let Some(time) = self.last_time {
            self.last_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.name.clone(), time);
        }
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }

    /// Ends the node's stream over a response a client could not decode and reports it
    /// as that node's error. The node stays marked as streaming, so this request does
    /// not ask it again (it would send the same response); the other nodes go on.
    async fn refuse(self, invalid: InvalidResponse) {
        self.metrics.invalid_response();
        if self.sender.is_closed() {
            return;
        }
        let message = format!("{} sent an invalid response: {invalid}", self.name);
        tracing::warn!(peer = %self.name, error = %message, "refusing a node's flows");
        let failed = NodeMessage::Failed {
            node: self.index,
            name: self.name.clone(),
            message,
        };
        let _ = self.sender.send(failed).await;
    }

    /// Reports the node's failure; `streaming` tells a connection lost mid-stream from
    /// one that could not be made.
    async fn fail(self, status: Status, streaming: bool) {
        self.leave();
        if self.sender.is_closed() {
            return;
        }
        if is_connection_failure(&status) {
            self.pool.report_offline(&self.name);
        }
        let message = node_failure_message(&self.name, &status, streaming);
        tracing::warn!(peer = %self.name, error = %message, "cannot retrieve flows from peer");
        let failed = NodeMessage::Failed {
            node: self.index,
            name: self.name.clone(),
            message,
        };
        let _ = self.sender.send(failed).await;
    }

    /// Hands a response to the merger. Returns false when the request is over.
    async fn deliver(&mut self, time: i128, response: RelayResponse) -> bool {
        self.last_time = Some(time);
        if let Some(credits) = &self.credits {
            let credit = tokio::select! {
                credit = credits.clone().acquire_owned() => credit.ok(),
                () = self.sender.closed() => return false,
            };
            let message = NodeMessage::Response {
                node: self.index,
                time,
                response,
                credit,
            };
            return self.sender.send(message).await.is_ok();
        }
        let message = NodeMessage::Response {
            node: self.index,
            time,
            response,
            credit: None,
        };
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
                self.metrics.responses_dropped(1);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn lost_event(&self) -> NodeMessage {
        let time = self.lost_last.unwrap_or_default();
        NodeMessage::Response {
            node: self.index,
            time,
            credit: None,
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

/// The sort buffer, and which nodes could still send something older than what it holds.
///
/// A response leaves in time order as soon as every node whose stream is open has a
/// response in the buffer: each node's stream is in time order, so nothing older can
/// come. It also leaves when the buffer overflows or its wait exceeds the drain timeout
/// (a quiet or slow node), as upstream's sort buffer does.
struct Merge {
    buffer: SortBuffer<Held>,
    /// Responses in the buffer per node whose stream is open.
    in_buffer: HashMap<usize, usize>,
    /// Open nodes without a response in the buffer.
    waiting_on: usize,
}

/// Node index of responses the relay makes itself.
const RELAY_EVENT: usize = usize::MAX;

impl Merge {
    fn new(buffer: SortBuffer<Held>) -> Self {
        Self {
            buffer,
            in_buffer: HashMap::new(),
            waiting_on: 0,
        }
    }

    fn open(&mut self, node: usize) {
        if self.in_buffer.insert(node, 0).is_none() {
            self.waiting_on += 1;
        }
    }

    fn close(&mut self, node: usize) {
        if self.in_buffer.remove(&node) == Some(0) {
            self.waiting_on -= 1;
        }
    }

    fn added(&mut self, node: usize) {
        if let Some(n) = self.in_buffer.get_mut(&node) {
            if *n == 0 {
                self.waiting_on -= 1;
            }
            *n += 1;
        }
    }

    fn removed(&mut self, node: usize) {
        if let Some(n) = self.in_buffer.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.waiting_on += 1;
            }
        }
    }

    fn push(&mut self, time: i128, held: Held, ready: &mut Vec<RelayResponse>) {
        let node = held.node;
        match self.buffer.push(time, held, std::time::Instant::now()) {
            None => self.added(node),
            // The new response itself (too late to be ordered) or the oldest (overflow).
            Some(out) => {
                if out.node != node {
                    self.added(node);
                    self.removed(out.node);
                }
                ready.push(out.response);
            }
        }
    }

    /// Moves out every response that nothing older can follow.
    fn release_ordered(&mut self, ready: &mut Vec<RelayResponse>) {
        while self.waiting_on == 0 {
            let Some(held) = self.buffer.pop_oldest() else {
                return;
            };
            self.removed(held.node);
            ready.push(held.response);
        }
    }

    fn next_deadline(&mut self) -> Option<std::time::Instant> {
        self.buffer.next_deadline()
    }

    fn drain_expired(&mut self, now: std::time::Instant, ready: &mut Vec<RelayResponse>) {
        let mut out = Vec::new();
        self.buffer.drain_expired(now, &mut out);
        self.take(out, ready);
    }

    fn drain_all(&mut self, ready: &mut Vec<RelayResponse>) {
        let mut out = Vec::new();
        self.buffer.drain_all(&mut out);
        self.take(out, ready);
    }

    fn take(&mut self, out: Vec<Held>, ready: &mut Vec<RelayResponse>) {
        for held in out {
            self.removed(held.node);
            ready.push(held.response);
        }
    }
}

async fn run(
    pool: PeerManager,
    config: Arc<FlowsConfig>,
    metrics: Arc<RelayMetrics>,
    request: GetFlowsRequest,
    out: mpsc::Sender<Result<Vec<RelayResponse>, Status>>,
) {
    // A request is checked once, here, before any node sees it: a filter that a node
    // would refuse (a bad value, or over the request budget) never fans out.
    if let Err(status) = validate(&request).await {
        let _ = out.send(Err(status)).await;
        return;
    }
    let follow = request.follow;
    let peers = pool.list();
    let mut buffer_len = config.sort_buffer_len_max.max(1);
    let wanted = request.number.saturating_mul(peers.len() as u64);
    if wanted > 0 && wanted < buffer_len as u64 {
        buffer_len = wanted as usize;
    }
    // Without follow, credits bound what each node has in flight, so the buffer needs no
    // bound of its own and never has to let a response out of order.
    let credits_per_node =
        (!follow).then(|| (config.sort_buffer_len_max / peers.len().max(1)).max(MIN_NODE_CREDITS));
    if !follow {
        buffer_len = usize::MAX;
    }
    let (sender, mut receiver) = mpsc::channel(NODE_QUEUE_CAPACITY);
    let collector = Collector {
        pool: pool.clone(),
        request,
        sender,
        metrics: metrics.clone(),
        active: Arc::default(),
        last_seen: Arc::default(),
        credits_per_node,
        next_index: std::cell::Cell::new(0),
    };
    let mut merge = Merge::new(SortBuffer::new(
        buffer_len,
        config.sort_buffer_drain_timeout,
    ));
    let (connected, unavailable) = collector.collect(peers);
    let node_name = config.node_name.as_str();
    let connected = open_all(&mut merge, connected);
    // Unavailable nodes are grouped by why their last connection attempt failed, so a
    // wrong CA or server name is named in the event (no message: never tried yet).
    let mut unavailable_by_cause: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, cause) in unavailable {
        unavailable_by_cause.entry(cause).or_default().push(name);
    }
    let statuses = std::iter::once((NodeState::NodeConnected, connected, String::new())).chain(
        unavailable_by_cause
            .into_iter()
            .map(|(cause, nodes)| (NodeState::NodeUnavailable, nodes, cause)),
    );
    for (state, nodes, message) in statuses {
        if !nodes.is_empty() {
            let event = node_status(node_name, state, nodes, message);
            if out.send(Ok(vec![event.into()])).await.is_err() {
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
    let mut pending: Option<PendingError> = None;
    let mut ready: Vec<RelayResponse> = Vec::new();
    let mut watch_changes = follow;
    let mut messages = Vec::with_capacity(MERGE_BATCH_MAX);

    loop {
        let deadline = match (merge.next_deadline(), pending.as_ref().map(|p| p.deadline)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            count = receiver.recv_many(&mut messages, MERGE_BATCH_MAX) => {
                if count == 0 {
                    break;
                }
                for message in messages.drain(..) {
                    match message {
                        NodeMessage::Response { node, time, response, credit } => {
                            let held = Held { node, response, _credit: credit };
                            merge.push(time, held, &mut ready);
                        }
                        NodeMessage::Finished { node } => merge.close(node),
                        NodeMessage::Failed { node, name, message } => {
                            merge.close(node);
                            match &mut pending {
                                Some(p) if p.message == message => p.nodes.push(name),
                                _ => {
                                    if let Some(previous) = pending.take() {
                                        flush_error(&mut merge, &mut ready, node_name, previous);
                                    }
                                    pending = Some(PendingError {
                                        message,
                                        nodes: vec![name],
                                        time: timestamp_nanos(&now_timestamp()),
                                        deadline: std::time::Instant::now()
                                            + config.error_aggregation_window,
                                    });
                                }
                            }
                        }
                    }
                }
                merge.release_ordered(&mut ready);
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = std::time::Instant::now();
                if pending.as_ref().is_some_and(|p| p.deadline <= now) {
                    if let Some(due) = pending.take() {
                        flush_error(&mut merge, &mut ready, node_name, due);
                    }
                }
                merge.drain_expired(now, &mut ready);
            }
            _ = update_tick.tick(), if follow => {
                if let Some(collector) = &collector {
                    let started = open_all(&mut merge, collector.collect(pool.list()).0);
                    announce(node_name, started, &mut ready);
                }
            }
            changed = changes.changed(), if watch_changes => {
                if changed.is_err() {
                    watch_changes = false;
                } else if let Some(collector) = &collector {
                    let started = open_all(&mut merge, collector.collect(pool.list()).0);
                    announce(node_name, started, &mut ready);
                }
            }
            () = out.closed() => return,
        }
        if !send_all(&out, &metrics, &mut ready).await {
            return;
        }
    }
    if let Some(last) = pending.take() {
        flush_error(&mut merge, &mut ready, node_name, last);
    }
    merge.drain_all(&mut ready);
    send_all(&out, &metrics, &mut ready).await;
}

/// Opens the nodes that started streaming in the merge; returns their names.
fn open_all(merge: &mut Merge, started: Vec<(usize, String)>) -> Vec<String> {
    started
        .into_iter()
        .map(|(index, name)| {
            merge.open(index);
            name
        })
        .collect()
}

/// Sends `ready` to the client in batches, counting flows. Returns false when the client
/// is gone.
async fn send_all(
    out: &mpsc::Sender<Result<Vec<RelayResponse>, Status>>,
    metrics: &RelayMetrics,
    ready: &mut Vec<RelayResponse>,
) -> bool {
    while !ready.is_empty() {
        let batch: Vec<RelayResponse> = ready.drain(..ready.len().min(CLIENT_BATCH_MAX)).collect();
        let flows = batch.iter().filter(|r| r.is_flow()).count() as u64;
        if out.send(Ok(batch)).await.is_err() {
            ready.clear();
            return false;
        }
        metrics.flows_forwarded(flows);
    }
    true
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

/// GetFlows on a node, its responses kept as the node encoded them.
async fn call_get_flows(
    channel: Channel,
    request: GetFlowsRequest,
) -> Result<tonic::Response<tonic::codec::Streaming<NodeResponse>>, Status> {
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
