//! The nodes of one request: which stream (the [`Collector`]) and the reader of each
//! node's stream ([`NodeReader`]), which hands responses to the merger with credits
//! (without follow) or drops and counts them (with follow).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use proto::flow::{LostEvent, LostEventSource};
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use super::time::{now_timestamp, timestamp_from_nanos, timestamp_nanos};
use super::{NodeMessage, GET_FLOWS_PATH};
use crate::error::{is_connection_failure, node_failure_message, RequestError};
use crate::pool::{PeerManager, PeerSnapshot};
use crate::raw::{InvalidResponse, NodeFlowsCodec, NodeResponse, RelayResponse};
use crate::self_metrics::RelayMetrics;

/// A node without a connection, and why its last connection attempt failed (empty when
/// not known).
pub(super) type Unavailable = (String, String);

/// The nodes streaming for one request, and where each stopped.
pub(super) struct Collector {
    pub(super) pool: PeerManager,
    pub(super) request: GetFlowsRequest,
    pub(super) sender: mpsc::Sender<NodeMessage>,
    pub(super) metrics: Arc<RelayMetrics>,
    pub(super) active: Arc<Mutex<HashSet<String>>>,
    pub(super) last_seen: Arc<Mutex<HashMap<String, i128>>>,
    /// Responses each node may have in flight without follow; `None` with follow.
    pub(super) credits_per_node: Option<usize>,
    pub(super) next_index: std::cell::Cell<usize>,
}

impl Collector {
    /// Starts a stream for every connected node not streaming yet. Returns the nodes
    /// that started (index in this request, name) and those unavailable, each with why
    /// its last connection attempt failed (empty when not known).
    pub(super) fn collect(
        &self,
        peers: Vec<PeerSnapshot>,
    ) -> (Vec<(usize, String)>, Vec<Unavailable>) {
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

/// GetFlows on a node, its responses kept as the node encoded them.
async fn call_get_flows(
    channel: Channel,
    request: GetFlowsRequest,
) -> Result<tonic::Response<tonic::codec::Streaming<NodeResponse>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::from(RequestError::NotReady(e.to_string())))?;
    let path = PathAndQuery::from_static(GET_FLOWS_PATH);
    grpc.server_streaming(tonic::Request::new(request), path, NodeFlowsCodec)
        .await
}
