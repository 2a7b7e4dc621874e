//! The loop of one GetFlows request: check it, start every node, report which nodes
//! stream, then merge their responses, node errors and late joiners until the nodes
//! are done (or, with follow, the client leaves).

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::observer::GetFlowsRequest;
use proto::relay::NodeState;
use tokio::sync::mpsc;
use tonic::Status;

use super::errors::{add_failure, flush_due, flush_error, PendingError};
use super::node::{Collector, Unavailable};
use super::order::{open_all, Merge};
use super::time::sleep_until;
use super::{
    node_status, FlowsConfig, Held, NodeMessage, CLIENT_BATCH_MAX, MERGE_BATCH_MAX,
    MIN_NODE_CREDITS, NODE_QUEUE_CAPACITY,
};
use crate::error::RequestError;
use crate::merge::SortBuffer;
use crate::pool::PeerManager;
use crate::raw::RelayResponse;
use crate::self_metrics::RelayMetrics;

type ClientSender = mpsc::Sender<Result<Vec<RelayResponse>, Status>>;

/// Compiles the request's filters with the nodes' own filter engine (on a blocking
/// thread: a request at the budget's limits takes real CPU) and drops the result.
async fn validate(request: &GetFlowsRequest) -> Result<(), Status> {
    let (allow, deny) = (request.whitelist.clone(), request.blacklist.clone());
    match tokio::task::spawn_blocking(move || proto::filter::FilterSet::compile(&allow, &deny))
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(crate::error::invalid_request(&error)),
        Err(join) => Err(RequestError::CheckTask(join.to_string()).into()),
    }
}

/// The sort buffer's bound and, without follow, the credits of each node: credits
/// bound what each node has in flight, so the buffer needs no bound of its own and
/// never has to let a response out of order.
fn buffer_and_credits(
    config: &FlowsConfig,
    request: &GetFlowsRequest,
    nodes: usize,
) -> (usize, Option<usize>) {
    if !request.follow {
        let credits = (config.sort_buffer_len_max / nodes.max(1)).max(MIN_NODE_CREDITS);
        return (usize::MAX, Some(credits));
    }
    let mut buffer_len = config.sort_buffer_len_max.max(1);
    let wanted = request.number.saturating_mul(nodes as u64);
    if wanted > 0 && wanted < buffer_len as u64 {
        buffer_len = wanted as usize;
    }
    (buffer_len, None)
}

/// Tells the client which nodes stream and which are unavailable, the latter grouped
/// by why their last connection attempt failed, so a wrong CA or server name is named
/// in the event (no message: never tried yet). Returns false when the client is gone.
async fn report_nodes(
    out: &ClientSender,
    node_name: &str,
    connected: Vec<String>,
    unavailable: Vec<Unavailable>,
) -> bool {
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
                return false;
            }
        }
    }
    true
}

/// What the merger holds for one request between steps.
struct Merger<'a> {
    merge: Merge,
    pending: Option<PendingError>,
    ready: Vec<RelayResponse>,
    node_name: &'a str,
    config: &'a FlowsConfig,
    /// With follow, a response waits in the sort buffer at most the drain timeout (a
    /// quiet node must not hold the others back). Without follow it waits for every
    /// open node: the credits bound the buffer, and a node slowed down for longer than
    /// the timeout (a loaded machine) must not let newer responses out before its older
    /// ones.
    drain_on_timeout: bool,
}

impl Merger<'_> {
    /// Takes a batch of the nodes' messages: responses into the sort buffer, ends and
    /// failures closing their node; then lets out what is ordered.
    fn on_messages(&mut self, messages: &mut Vec<NodeMessage>) {
        for message in messages.drain(..) {
            match message {
                NodeMessage::Response {
                    node,
                    time,
                    response,
                    credit,
                } => {
                    let held = Held {
                        node,
                        response,
                        _credit: credit,
                    };
                    self.merge.push(time, held, &mut self.ready);
                }
                NodeMessage::Finished { node } => self.merge.close(node),
                NodeMessage::Failed {
                    node,
                    name,
                    message,
                } => {
                    self.merge.close(node);
                    add_failure(
                        &mut self.pending,
                        &mut self.merge,
                        &mut self.ready,
                        self.node_name,
                        (name, message),
                        self.config.error_aggregation_window,
                    );
                }
            }
        }
        self.merge.release_ordered(&mut self.ready);
    }

    /// The next time something waits out its delay: a buffered response or the
    /// pending error event.
    fn next_deadline(&mut self) -> Option<std::time::Instant> {
        let buffered = if self.drain_on_timeout {
            self.merge.next_deadline()
        } else {
            None
        };
        match (buffered, self.pending.as_ref().map(|p| p.deadline)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets out the error event and the responses whose wait is over.
    fn on_deadline(&mut self) {
        let now = std::time::Instant::now();
        flush_due(
            &mut self.pending,
            now,
            &mut self.merge,
            &mut self.ready,
            self.node_name,
        );
        if self.drain_on_timeout {
            self.merge.drain_expired(now, &mut self.ready);
        }
    }

    /// Starts the nodes that joined (follow) and announces them.
    fn on_new_nodes(&mut self, collector: &Collector, pool: &PeerManager) {
        let started = open_all(&mut self.merge, collector.collect(pool.list()).0);
        announce(self.node_name, started, &mut self.ready);
    }

    /// The nodes are done: everything still held goes out.
    fn finish(&mut self) {
        if let Some(last) = self.pending.take() {
            flush_error(&mut self.merge, &mut self.ready, self.node_name, last);
        }
        self.merge.drain_all(&mut self.ready);
    }
}

pub(super) async fn run(
    pool: PeerManager,
    config: Arc<FlowsConfig>,
    metrics: Arc<RelayMetrics>,
    request: GetFlowsRequest,
    out: ClientSender,
) {
    // A request is checked once, here, before any node sees it: a filter that a node
    // would refuse (a bad value, or over the request budget) never fans out.
    if let Err(status) = validate(&request).await {
        let _ = out.send(Err(status)).await;
        return;
    }
    let follow = request.follow;
    let peers = pool.list();
    let (buffer_len, credits_per_node) = buffer_and_credits(&config, &request, peers.len());
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
    let node_name = config.node_name.as_str();
    let mut merger = Merger {
        merge: Merge::new(SortBuffer::new(
            buffer_len,
            config.sort_buffer_drain_timeout,
        )),
        pending: None,
        ready: Vec::new(),
        node_name,
        config: &config,
        drain_on_timeout: follow,
    };
    let (connected, unavailable) = collector.collect(peers);
    let connected = open_all(&mut merger.merge, connected);
    if !report_nodes(&out, node_name, connected, unavailable).await {
        return;
    }
    // Without follow, the request ends when every reader has finished, which the queue
    // shows once the collector's sender is gone too.
    let collector = follow.then_some(collector);
    let mut changes = pool.subscribe_changes();
    let mut update_tick = tokio::time::interval(config.peer_update_interval);
    update_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch_changes = follow;
    let mut messages = Vec::with_capacity(MERGE_BATCH_MAX);

    loop {
        let deadline = merger.next_deadline();
        tokio::select! {
            count = receiver.recv_many(&mut messages, MERGE_BATCH_MAX) => {
                if count == 0 {
                    break;
                }
                merger.on_messages(&mut messages);
            },
            () = sleep_until(deadline), if deadline.is_some() => merger.on_deadline(),
            _ = update_tick.tick(), if follow => {
                if let Some(collector) = &collector {
                    merger.on_new_nodes(collector, &pool);
                }
            }
            changed = changes.changed(), if watch_changes => {
                if changed.is_err() {
                    watch_changes = false;
                } else if let Some(collector) = &collector {
                    merger.on_new_nodes(collector, &pool);
                }
            }
            () = out.closed() => return,
        }
        if !send_all(&out, &metrics, &mut merger.ready).await {
            return;
        }
    }
    merger.finish();
    send_all(&out, &metrics, &mut merger.ready).await;
}

/// Sends `ready` to the client in batches, counting flows. Returns false when the client
/// is gone.
async fn send_all(
    out: &ClientSender,
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
