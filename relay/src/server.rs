//! The relay's gRPC server: Observer over the pool, gRPC health and reflection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use observer::listener::{incoming, server_builder};
use observer::service::batches::Batched;
use observer::service::limit::{Limited, StreamLimit};
use proto::observer::observer_server::{Observer, ObserverServer};
use proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, ServerStatusRequest, ServerStatusResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codegen::BoxFuture;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::address::{Dialer, PeerAddress};
use crate::config::{parse_listen_address, RelayConfig};
use crate::error::RelayError;
use crate::error::RequestError;
use crate::flows::{get_flows, FlowsConfig};
use crate::pool::PeerManager;
use crate::raw::{RawGetFlowsServer, RelayResponse};
use crate::status;

/// Service name under which upstream relays report the Observer's health.
pub const OBSERVER_HEALTH_SERVICE_NAME: &str = "hubble.server.Observer";

/// Version reported in ServerStatus.
pub const RELAY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long streams may take to finish after shutdown is asked before they are cut.
pub const SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// The Observer service of the relay.
pub struct RelayObserver {
    pool: PeerManager,
    flows: Arc<FlowsConfig>,
    metrics: Arc<crate::self_metrics::RelayMetrics>,
    streams: StreamLimit,
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Observer for RelayObserver {
    type GetFlowsStream = EventStream<GetFlowsResponse>;
    type GetAgentEventsStream = EventStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = EventStream<GetDebugEventsResponse>;

    // The stream item type is set by the generated service trait.
    #[allow(clippy::result_large_err)]
    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let slot = self.streams.acquire()?;
        let receiver = get_flows(
            self.pool.clone(),
            self.flows.clone(),
            self.metrics.clone(),
            request.into_inner(),
        );
        // Served by `ObserverService`, which forwards node responses without decoding
        // them; this decoding path answers anyone calling the trait directly.
        let stream =
            Batched::new(receiver).map(|result| result.and_then(RelayResponse::into_message));
        Ok(Response::new(Box::pin(Limited::new(
            Box::pin(stream),
            slot,
        ))))
    }

    async fn get_agent_events(
        &self,
        _request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        // As upstream's relay: agent events are only served by each node.
        Err(RequestError::Unimplemented("GetAgentEvents").into())
    }

    async fn get_debug_events(
        &self,
        _request: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(RequestError::Unimplemented("GetDebugEvents").into())
    }

    async fn get_nodes(
        &self,
        _request: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Ok(Response::new(status::get_nodes(&self.pool).await))
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(Response::new(status::get_namespaces(&self.pool).await))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(
            status::server_status(&self.pool, RELAY_VERSION).await,
        ))
    }
}

impl RelayObserver {
    // Status is the error type of the gRPC method this serves.
    #[allow(clippy::result_large_err)]
    fn flows(&self, request: GetFlowsRequest) -> Result<EventStream<RelayResponse>, Status> {
        let slot = self.streams.acquire()?;
        let stream = Batched::new(get_flows(
            self.pool.clone(),
            self.flows.clone(),
            self.metrics.clone(),
            request,
        ));
        Ok(Box::pin(Limited::new(Box::pin(stream), slot)))
    }
}

/// GetFlows of the relay, with node responses kept as the nodes encoded them.
#[derive(Clone)]
struct GetFlowsCall(Arc<RelayObserver>);

impl tonic::server::ServerStreamingService<GetFlowsRequest> for GetFlowsCall {
    type Response = RelayResponse;
    type ResponseStream = EventStream<RelayResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<GetFlowsRequest>) -> Self::Future {
        let stream = self.0.flows(request.into_inner());
        Box::pin(async move { Ok(Response::new(stream?)) })
    }
}

/// A running relay.
pub struct Relay {
    local_addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    pool: PeerManager,
    metrics: Arc<crate::self_metrics::RelayMetrics>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    background: Vec<JoinHandle<()>>,
}

async fn bind(address: &str) -> Result<TcpListener, RelayError> {
    let socket_address = parse_listen_address(address)?;
    TcpListener::bind(socket_address)
        .await
        .map_err(|source| RelayError::Listen {
            address: address.to_owned(),
            source,
        })
}

// === impl Relay ===

impl Relay {
    /// Loads TLS files, binds the listeners and starts serving.
    // The interceptor's signature is tonic's.
    #[allow(clippy::result_large_err)]
    pub async fn start(config: RelayConfig) -> Result<Self, RelayError> {
        let peer_target = PeerAddress::parse(&config.peer_service)?;
        let client_tls = config.client_tls.as_ref().map(|f| f.load()).transpose()?;
        let server_tls = config.server_tls.as_ref().map(|f| f.load()).transpose()?;
        let require_client_certificate = config
            .server_tls
            .as_ref()
            .is_some_and(|files| files.requires_client_certificate());
        let dialer = Dialer {
            dial_timeout: config.dial_timeout,
            tls: client_tls,
        };
        let pool = PeerManager::new(dialer, config.cluster_name.clone());
        let relay_metrics = Arc::new(crate::self_metrics::RelayMetrics::new());
        let observer = RelayObserver {
            pool: pool.clone(),
            flows: Arc::new(FlowsConfig {
                sort_buffer_len_max: config.sort_buffer_len_max,
                sort_buffer_drain_timeout: config.sort_buffer_drain_timeout,
                error_aggregation_window: config.error_aggregation_window,
                peer_update_interval: config.peer_update_interval,
                node_name: config.node_name.clone(),
            }),
            metrics: relay_metrics.clone(),
            streams: StreamLimit::new(config.max_flow_streams),
        };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| RelayError::TlsSettings(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| RelayError::TlsSettings(format!("reflection: {e}")))?;

        let listener = bind(&config.listen_address).await?;
        let local_addr = listener.local_addr().map_err(|source| RelayError::Listen {
            address: config.listen_address.clone(),
            source,
        })?;
        let health_listener = match &config.health_listen_address {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let health_addr = health_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let metrics_listener = match &config.metrics_listen_address {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let metrics_addr = metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());

        let (shutdown, shutdown_signal) = watch::channel(false);
        let mut builder = server_builder();
        if let Some(tls) = server_tls {
            builder = builder.tls_config(tls)?;
        }
        let router = builder
            .layer(tonic::service::interceptor(move |request| {
                if require_client_certificate {
                    crate::error::require_client_certificate(request)
                } else {
                    Ok(request)
                }
            }))
            .add_service({
                let observer = Arc::new(observer);
                RawGetFlowsServer::new(
                    ObserverServer::from_arc(observer.clone()),
                    GetFlowsCall(observer),
                )
            })
            .add_service(health_service.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        // Health turns NOT_SERVING if the API listener stops before shutdown.
        let (listener_up, listener_state) = watch::channel(true);
        let api = router
            .serve_with_incoming_shutdown(incoming(listener), wait_for(shutdown_signal.clone()));
        let api_shutdown = shutdown_signal.clone();
        let mut servers = vec![tokio::spawn(async move {
            let result = api.await;
            if !*api_shutdown.borrow() {
                tracing::error!(?result, "the API listener stopped; health is NOT_SERVING");
                let _ = listener_up.send(false);
            }
            result
        })];
        if let Some(listener) = health_listener {
            servers.push(tokio::spawn(
                server_builder()
                    .add_service(health_service)
                    .serve_with_incoming_shutdown(
                        incoming(listener),
                        wait_for(shutdown_signal.clone()),
                    ),
            ));
        }
        let mut background = vec![
            tokio::spawn(pool.clone().manage_connections()),
            tokio::spawn(
                pool.clone()
                    .follow_peer_service(peer_target, config.retry_timeout),
            ),
            tokio::spawn(report_health(
                pool.clone(),
                health_reporter,
                listener_state,
                config.health_check_interval,
            )),
        ];
        if let Some(listener) = metrics_listener {
            let mut registry = metrics_exposition::Registry::new();
            registry.register(relay_metrics.clone());
            background.push(tokio::spawn(report_peer_status(
                pool.clone(),
                relay_metrics.clone(),
            )));
            let shutdown = wait_for(shutdown_signal.clone());
            background.push(tokio::spawn(async move {
                if let Err(error) =
                    metrics_exposition::serve_listener(listener, registry, shutdown).await
                {
                    tracing::error!(%error, "metrics server stopped");
                }
            }));
        }
        tracing::info!(address = %local_addr, peer_service = %config.peer_service, "hubble-relay serving");
        Ok(Self {
            local_addr,
            health_addr,
            metrics_addr,
            pool,
            metrics: relay_metrics,
            shutdown,
            servers,
            background,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the separate health listener, if any.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The address of the metrics listener, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The peer pool.
    pub fn pool(&self) -> &PeerManager {
        &self.pool
    }

    /// The relay's own metrics (peer status, flows forwarded, responses dropped).
    pub fn metrics(&self) -> &crate::self_metrics::RelayMetrics {
        &self.metrics
    }

    /// Stops accepting requests, lets running ones finish for up to
    /// [`SHUTDOWN_GRACE_PERIOD`], then cuts the rest.
    pub async fn shutdown(self) -> Result<(), RelayError> {
        let _ = self.shutdown.send(true);
        for task in &self.background {
            task.abort();
        }
        let mut result = Ok(());
        for mut server in self.servers {
            match tokio::time::timeout(SHUTDOWN_GRACE_PERIOD, &mut server).await {
                Ok(Ok(Err(error))) => result = Err(RelayError::Serve(error)),
                Ok(_) => {}
                Err(_) => server.abort(),
            }
        }
        result
    }
}

async fn wait_for(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

/// Keeps `hubble_relay_pool_peer_connection_status` up to date: connected nodes are
/// READY, the others (dialing or backing off) TRANSIENT_FAILURE.
async fn report_peer_status(pool: PeerManager, metrics: Arc<crate::self_metrics::RelayMetrics>) {
    use crate::self_metrics::PeerConnectionStatus;
    let mut changes = pool.subscribe_changes();
    loop {
        let peers = pool.list();
        let ready = peers.iter().filter(|p| p.channel.is_some()).count() as u64;
        metrics.set_peer_connection_status(&[
            (PeerConnectionStatus::Ready, ready),
            (
                PeerConnectionStatus::TransientFailure,
                peers.len() as u64 - ready,
            ),
        ]);
        tokio::select! {
            _ = tokio::time::sleep(PEER_STATUS_INTERVAL) => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// How often the peer status metric is refreshed without a pool change.
const PEER_STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Serving when the peer service is followed and at least one node is connected, as
/// upstream's relay reports it, and the API listener runs, for the empty service name
/// and the Observer's.
async fn report_health(
    pool: PeerManager,
    mut reporter: tonic_health::server::HealthReporter,
    mut listener_up: watch::Receiver<bool>,
    interval: Duration,
) {
    let mut changes = pool.subscribe_changes();
    let mut last = None;
    let mut listener_watched = true;
    loop {
        let pool_status = pool.status();
        let serving = if *listener_up.borrow_and_update()
            && pool_status.peer_service_connected
            && pool_status.available_peers > 0
        {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(serving) {
            reporter.set_service_status("", serving).await;
            reporter
                .set_service_status(OBSERVER_HEALTH_SERVICE_NAME, serving)
                .await;
            last = Some(serving);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = changes.changed() => if changed.is_err() { return },
            changed = listener_up.changed(), if listener_watched => {
                listener_watched = changed.is_ok();
            }
        }
    }
}
