//! An in-process Observer server that serves flows pushed by the test, as a relay
//! would: recent history on request, then live flows while following.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::flow::{Flow, LostEvent, LostEventSource};
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::observer_server::{Observer, ObserverServer};
use proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, Node, ServerStatusRequest, ServerStatusResponse,
};
use proto::relay::{NodeState, NodeStatusEvent};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Live flows buffered per follower before it counts as lagging (and gets a LostEvent).
const LIVE_CAPACITY: usize = 65_536;
/// Messages queued per GetFlows stream.
const STREAM_CAPACITY: usize = 1024;
/// The node name the scripted server reports.
pub const NODE_NAME: &str = "kind-worker";

/// The flows a scripted server serves; it outlives server restarts.
pub struct Feed {
    history: Mutex<Vec<(u64, Flow)>>,
    live: broadcast::Sender<(u64, Flow)>,
}

impl Feed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            history: Mutex::new(Vec::new()),
            live: broadcast::channel(LIVE_CAPACITY).0,
        })
    }

    /// Records `flow` and sends it to every follower.
    pub fn push(&self, flow: Flow) {
        let mut history = self.history.lock().expect("feed lock");
        let seq = history.len() as u64;
        history.push((seq, flow.clone()));
        let _ = self.live.send((seq, flow));
    }

    /// Number of flows pushed so far.
    pub fn len(&self) -> usize {
        self.history.lock().expect("feed lock").len()
    }
}

/// A running scripted server.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedServer {
    /// Serves `feed` on `addr` (port 0 picks a free port).
    pub async fn start(feed: Arc<Feed>, addr: SocketAddr) -> Self {
        let listener = bind_retrying(addr).await;
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = watch::channel(false);
        let service = Scripted {
            feed,
            stopped: stopped.clone(),
        };
        let mut signal = stopped;
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(ObserverServer::new(service))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = signal.wait_for(|s| *s).await;
                })
                .await;
        });
        Self { addr, stop, task }
    }

    /// Ends every stream and stops serving, as a relay that exits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("cannot bind scripted server on {addr}");
}

struct Scripted {
    feed: Arc<Feed>,
    stopped: watch::Receiver<bool>,
}

fn flow_response(flow: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

#[tonic::async_trait]
impl Observer for Scripted {
    type GetFlowsStream = ReceiverStream<Result<GetFlowsResponse, Status>>;
    type GetAgentEventsStream = ReceiverStream<Result<GetAgentEventsResponse, Status>>;
    type GetDebugEventsStream = ReceiverStream<Result<GetDebugEventsResponse, Status>>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        // Subscribe before reading the history so that no flow falls in between.
        let mut live = self.feed.live.subscribe();
        let backlog: Vec<(u64, Flow)> = {
            let history = self.feed.history.lock().expect("feed lock");
            let since = request.since.as_ref().map(|t| (t.seconds, t.nanos));
            let eligible: Vec<&(u64, Flow)> = history
                .iter()
                .filter(|(_, f)| {
                    let t = f.time.as_ref().map(|t| (t.seconds, t.nanos));
                    since.is_none_or(|s| t.is_some_and(|t| t >= s))
                })
                .collect();
            let skip = eligible.len().saturating_sub(request.number as usize);
            eligible.into_iter().skip(skip).cloned().collect()
        };
        let last_sent = backlog.last().map(|(seq, _)| *seq);
        let mut stopped = self.stopped.clone();
        tokio::spawn(async move {
            let status = NodeStatusEvent {
                state_change: NodeState::NodeConnected as i32,
                node_names: vec![NODE_NAME.to_string()],
                message: String::new(),
            };
            let first = GetFlowsResponse {
                response_types: Some(ResponseTypes::NodeStatus(status)),
                ..GetFlowsResponse::default()
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            for (_, flow) in backlog {
                if tx.send(Ok(flow_response(flow))).await.is_err() {
                    return;
                }
            }
            if !request.follow {
                return;
            }
            loop {
                let next = tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    next = live.recv() => next,
                };
                let response = match next {
                    Ok((seq, _)) if last_sent.is_some_and(|last| seq <= last) => continue,
                    Ok((_, flow)) => flow_response(flow),
                    Err(broadcast::error::RecvError::Lagged(n)) => GetFlowsResponse {
                        response_types: Some(ResponseTypes::LostEvents(LostEvent {
                            source: LostEventSource::HubbleRingBuffer as i32,
                            num_events_lost: n,
                            ..LostEvent::default()
                        })),
                        ..GetFlowsResponse::default()
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("agent events are not scripted"))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("debug events are not scripted"))
    }

    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Ok(Response::new(GetNodesResponse {
            nodes: vec![Node {
                name: NODE_NAME.to_string(),
                state: NodeState::NodeConnected as i32,
                ..Node::default()
            }],
        }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Err(Status::unimplemented("namespaces are not scripted"))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let n = self.feed.len() as u64;
        Ok(Response::new(ServerStatusResponse {
            num_flows: n,
            max_flows: 4095,
            seen_flows: n,
            num_connected_nodes: Some(pbjson_types::UInt32Value { value: 1 }),
            num_unavailable_nodes: Some(pbjson_types::UInt32Value { value: 0 }),
            version: "scripted".to_string(),
            ..ServerStatusResponse::default()
        }))
    }
}
