//! In-process cluster pieces for tests and benchmarks: Hubble agents serving recorded
//! flows from memory, a peer service over a nodes file, and a client helper.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::Stream;
use pbjson_types::Timestamp;
use prost::Message;
use proto::flow::{Endpoint, Flow};
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::observer_server::{Observer, ObserverServer};
use proto::observer::*;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Ring capacity the test agents report.
pub const AGENT_MAX_FLOWS: u64 = 4095;
/// Live flows buffered per test agent for its followers.
const LIVE_CAPACITY: usize = 4096;

pub fn nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

pub fn ts(nanos: i128) -> Timestamp {
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn ts_nanos(t: &Timestamp) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

/// A flow of `node` at `time`, from pod `namespace/name`.
pub fn flow_response(node: &str, time: i128, namespace: &str) -> GetFlowsResponse {
    let flow = Flow {
        time: Some(ts(time)),
        node_name: node.to_owned(),
        source: Some(Endpoint {
            namespace: namespace.to_owned(),
            pod_name: format!("pod-{node}"),
            ..Default::default()
        }),
        ..Default::default()
    };
    GetFlowsResponse {
        node_name: node.to_owned(),
        time: Some(ts(time)),
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

/// What an agent sends a follower that missed `missed` flows of its ring.
fn lost_events(node: &str, missed: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node.to_owned(),
        time: Some(ts(nanos_now())),
        response_types: Some(ResponseTypes::LostEvents(proto::flow::LostEvent {
            source: proto::flow::LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: missed,
            ..Default::default()
        })),
    }
}

struct AgentState {
    name: String,
    /// When set, GetFlows (without follow) answers with these encoded responses, written
    /// as they are: an agent that costs next to nothing, for benchmarks of the relay.
    recorded: Option<Arc<Vec<relay::raw::RawResponse>>>,
    history: Mutex<Vec<GetFlowsResponse>>,
    seen: Mutex<u64>,
    live: broadcast::Sender<GetFlowsResponse>,
    started: std::time::Instant,
}

/// The Observer service of a test agent: recorded flows in memory, plus live ones.
#[derive(Clone)]
struct AgentObserver(Arc<AgentState>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Observer for AgentObserver {
    type GetFlowsStream = ReceiverStream<Result<GetFlowsResponse, Status>>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let request = request.into_inner();
        let since = request.since.as_ref().map(ts_nanos);
        let mut live = self.0.live.subscribe();
        let node_name = self.0.name.clone();
        let mut selected: Vec<GetFlowsResponse> = self
            .0
            .history
            .lock()
            .expect("history lock")
            .iter()
            .filter(|r| since.is_none_or(|s| r.time.as_ref().map(ts_nanos) >= Some(s)))
            .cloned()
            .collect();
        let number = request.number as usize;
        if number > 0 && selected.len() > number {
            if request.first {
                selected.truncate(number);
            } else {
                selected.drain(..selected.len() - number);
            }
        }
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(async move {
            for response in selected {
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
            }
            if !request.follow {
                return;
            }
            loop {
                match live.recv().await {
                    Ok(response) => {
                        if sender.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    // A follower that fell behind hears how many flows it missed, as
                    // from a real agent's ring, so nothing is lost silently.
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        if sender
                            .send(Ok(lost_events(&node_name, missed)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn get_agent_events(
        &self,
        _r: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("test agent"))
    }

    async fn get_debug_events(
        &self,
        _r: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("test agent"))
    }

    async fn get_nodes(
        &self,
        _r: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Err(Status::unimplemented("test agent"))
    }

    async fn get_namespaces(
        &self,
        _r: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let mut namespaces: Vec<Namespace> = Vec::new();
        for response in self.0.history.lock().expect("history lock").iter() {
            if let Some(ResponseTypes::Flow(flow)) = &response.response_types {
                if let Some(source) = &flow.source {
                    let ns = Namespace {
                        cluster: "default".into(),
                        namespace: source.namespace.clone(),
                    };
                    if !namespaces.contains(&ns) {
                        namespaces.push(ns);
                    }
                }
            }
        }
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }

    async fn server_status(
        &self,
        _r: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let num_flows = self.0.history.lock().expect("history lock").len() as u64;
        Ok(Response::new(ServerStatusResponse {
            num_flows,
            max_flows: AGENT_MAX_FLOWS,
            seen_flows: *self.0.seen.lock().expect("seen lock"),
            uptime_ns: self.0.started.elapsed().as_nanos() as u64,
            version: format!("test-agent-{}", self.0.name),
            flows_rate: 1.5,
            ..Default::default()
        }))
    }
}

/// GetFlows of a recorded test agent: its encoded responses, written as they are.
#[derive(Clone)]
struct RecordedCall(Arc<Vec<relay::raw::RawResponse>>);

impl tonic::server::ServerStreamingService<GetFlowsRequest> for RecordedCall {
    type Response = relay::raw::RelayResponse;
    type ResponseStream = BoxStream<relay::raw::RelayResponse>;
    type Future = tonic::codegen::BoxFuture<Response<Self::ResponseStream>, Status>;

    // Status is the stream's error type.
    #[allow(clippy::result_large_err)]
    fn call(&mut self, request: Request<GetFlowsRequest>) -> Self::Future {
        use futures::StreamExt;
        let recorded = self.0.clone();
        let stream = futures::stream::iter(
            (0..recorded.len())
                .map(move |k| Ok(relay::raw::RelayResponse::Raw(recorded[k].clone()))),
        );
        // A follower's stream stays open after the recording, as a node's would.
        let stream: Self::ResponseStream = if request.get_ref().follow {
            Box::pin(stream.chain(futures::stream::pending()))
        } else {
            Box::pin(stream)
        };
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

/// What a test agent's GetFlows writes as it is: nothing (served decoded), its history
/// encoded, or bytes given as they are.
enum Recording {
    None,
    History,
    Raw(Vec<relay::raw::RawResponse>),
}

/// TLS settings of a test agent: its certificate and the CA its clients must be signed by.
#[derive(Clone)]
pub struct AgentTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Vec<u8>,
}

/// A Hubble agent serving from memory, on its own runtime so that killing it closes every
/// connection at once, as a crashed process would.
pub struct TestAgent {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<AgentState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestAgent {
    /// Starts an agent on `addr` (port 0 for any) with recorded `history`.
    pub fn start(
        name: &str,
        addr: SocketAddr,
        history: Vec<GetFlowsResponse>,
        tls: Option<AgentTls>,
    ) -> anyhow::Result<Self> {
        Self::start_with(name, addr, history, tls, Recording::None)
    }

    /// Starts an agent that serves `history` pre-encoded (see [`AgentState::recorded`]).
    pub fn start_recorded(
        name: &str,
        addr: SocketAddr,
        history: Vec<GetFlowsResponse>,
    ) -> anyhow::Result<Self> {
        Self::start_with(name, addr, history, None, Recording::History)
    }

    /// Starts an agent whose GetFlows writes `encoded` as it is, whatever the bytes
    /// hold (a node sending what a client cannot decode), then keeps a follower's stream
    /// open.
    pub fn start_raw(
        name: &str,
        addr: SocketAddr,
        encoded: Vec<bytes::Bytes>,
    ) -> anyhow::Result<Self> {
        let recorded = encoded
            .into_iter()
            .map(relay::raw::RawResponse::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::start_with(name, addr, Vec::new(), None, Recording::Raw(recorded))
    }

    fn start_with(
        name: &str,
        addr: SocketAddr,
        history: Vec<GetFlowsResponse>,
        tls: Option<AgentTls>,
        recorded: Recording,
    ) -> anyhow::Result<Self> {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let recorded = match recorded {
            Recording::None => None,
            Recording::History => Some(
                history
                    .iter()
                    .map(|r| relay::raw::RawResponse::parse(r.encode_to_vec().into()))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Recording::Raw(raw) => Some(raw),
        }
        .map(Arc::new);
        let state = Arc::new(AgentState {
            name: name.to_owned(),
            recorded,
            seen: Mutex::new(history.len() as u64),
            history: Mutex::new(history),
            live,
            started: std::time::Instant::now(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let observer = AgentObserver(state.clone());
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(listener) => listener,
                Err(error) => return eprintln!("test agent listener: {error}"),
            };
            let mut builder = Server::builder();
            if let Some(tls) = tls {
                let config = ServerTlsConfig::new()
                    .identity(Identity::from_pem(tls.cert_pem, tls.key_pem))
                    .client_ca_root(tonic::transport::Certificate::from_pem(tls.client_ca_pem));
                builder = match builder.tls_config(config) {
                    Ok(builder) => builder,
                    Err(error) => return eprintln!("test agent TLS: {error}"),
                };
            }
            let recorded = observer.0.recorded.clone();
            let router = match recorded {
                Some(recorded) => builder.add_service(relay::raw::RawGetFlowsServer::new(
                    ObserverServer::new(observer),
                    RecordedCall(recorded),
                )),
                None => builder.add_service(ObserverServer::new(observer)),
            };
            let result = router
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(error) = result {
                eprintln!("test agent server: {error}");
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            state,
            runtime: Some(runtime),
        })
    }

    /// Records a flow and sends it to followers.
    pub fn emit(&self, response: GetFlowsResponse) {
        self.state
            .history
            .lock()
            .expect("history lock")
            .push(response.clone());
        *self.state.seen.lock().expect("seen lock") += 1;
        let _ = self.state.live.send(response);
    }

    /// Emits a flow stamped now, every `period`, until the agent is killed.
    pub fn generate(&self, period: Duration) {
        let Some(runtime) = &self.runtime else { return };
        let state = self.state.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let response = flow_response(&state.name, nanos_now(), "default");
                state
                    .history
                    .lock()
                    .expect("history lock")
                    .push(response.clone());
                let _ = state.live.send(response);
            }
        });
    }

    /// Kills the agent: every connection and task ends at once.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes a nodes file listing `nodes` as `(name, address)`.
pub fn write_nodes_file(path: &Path, nodes: &[(String, String)]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (name, address) in nodes {
        text.push_str(&format!("- {{name: {name}, address: \"{address}\"}}\n"));
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// A peer service over a watched nodes file, served on loopback.
pub struct TestPeerService {
    pub addr: SocketAddr,
    pub nodes_file: PathBuf,
    _watcher: peer_service::NodesFileWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl TestPeerService {
    /// Starts the service; `tls` is the server certificate and key (PEM) to serve with,
    /// which also makes the service announce TLS server names.
    pub async fn start(
        nodes_file: PathBuf,
        tls: Option<(Vec<u8>, Vec<u8>)>,
    ) -> anyhow::Result<Self> {
        let with_tls = tls.is_some();
        let hub = peer_service::NodeHub::new();
        let watcher = peer_service::NodesFileWatcher::spawn(
            nodes_file.clone(),
            hub.clone(),
            Duration::from_millis(500),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let service = peer_service::peer_service(hub, peer_service::PeerServiceConfig { with_tls });
        let mut builder = Server::builder();
        if let Some((cert, key)) = tls {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?;
        }
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Ok(Self {
            addr,
            nodes_file,
            _watcher: watcher,
            task,
        })
    }
}

impl Drop for TestPeerService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A relay configuration for tests: loopback, plaintext, short timers.
pub fn test_relay_config(peer_service: SocketAddr) -> relay::RelayConfig {
    relay::RelayConfig {
        peer_service: peer_service.to_string(),
        listen_address: "127.0.0.1:0".into(),
        node_name: "test-relay".into(),
        dial_timeout: Duration::from_secs(2),
        retry_timeout: Duration::from_secs(1),
        sort_buffer_drain_timeout: Duration::from_millis(300),
        error_aggregation_window: Duration::from_millis(300),
        peer_update_interval: Duration::from_secs(2),
        health_check_interval: Duration::from_millis(200),
        metrics_listen_address: Some("127.0.0.1:0".into()),
        ..relay::RelayConfig::default()
    }
}

/// The body of a plain HTTP/1.0 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP body in {response:?}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    Ok(body.to_owned())
}

/// Connects a plaintext Observer client to `addr`.
pub async fn observer_client(
    addr: SocketAddr,
) -> anyhow::Result<observer_client::ObserverClient<tonic::transport::Channel>> {
    Ok(observer_client::ObserverClient::connect(format!("http://{addr}")).await?)
}

/// Waits until `check` holds, polling every 50 ms, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
