//! Reading the Hubble server: one follow stream of flows, reopened with backoff when it
//! ends, and a status poll (ServerStatus, GetNodes) every few seconds.

use std::sync::Arc;
use std::time::Duration;

use pbjson_types::Timestamp;
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::observer_client::ObserverClient;
use proto::observer::{GetFlowsRequest, GetNodesRequest, ServerStatusRequest};
use proto::transport::UnixConnector;
use tonic::transport::{Channel, Endpoint};

use crate::config::{Config, ServerAddress};
use crate::state::Shared;

/// First wait before reopening the stream; doubled after each failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts, so a restarted relay is picked up within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Time allowed to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings that find a server that went away without closing the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one status call.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest message accepted from the server (a flow with big L7 fields fits easily).
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// A connection to the server that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid server address {address}: {source}")]
    Endpoint {
        address: String,
        source: tonic::transport::Error,
    },
}

/// A channel to the server that connects on first use and reconnects after failures.
pub fn channel(server: &ServerAddress) -> Result<Channel, UpstreamError> {
    let endpoint = Endpoint::from_shared(server.uri())
        .map_err(|source| UpstreamError::Endpoint {
            address: server.to_string(),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_adaptive_window(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(match server {
        ServerAddress::Tcp { .. } => endpoint.connect_lazy(),
        ServerAddress::Unix(path) => endpoint.connect_with_connector_lazy(UnixConnector::new(path)),
    })
}

fn client(channel: Channel) -> ObserverClient<Channel> {
    ObserverClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE)
}

/// Keeps one follow stream open until `shutdown` resolves, feeding `shared`.
pub async fn follow(
    shared: Arc<Shared>,
    channel: Channel,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = INITIAL_BACKOFF;
    // Time of the newest flow stored; after a reconnect the server's backlog up to it
    // is already in the ring and is skipped.
    let mut newest: Option<Timestamp> = None;
    loop {
        let error = tokio::select! {
            _ = &mut shutdown => return,
            error = stream_once(&shared, channel.clone(), &config, &mut newest, &mut backoff) => error,
        };
        {
            let mut state = shared.lock();
            state.upstream.connected = false;
            state.upstream.last_error = Some(error.clone());
        }
        tracing::warn!(server = %config.server, %error, retry_in = ?backoff, "flow stream ended");
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens the stream and reads it until it ends; returns why it ended.
async fn stream_once(
    shared: &Shared,
    channel: Channel,
    config: &Config,
    newest: &mut Option<Timestamp>,
    backoff: &mut Duration,
) -> String {
    let request = GetFlowsRequest {
        follow: true,
        number: config.initial_flows,
        since: *newest,
        ..GetFlowsRequest::default()
    };
    let mut stream = match client(channel).get_flows(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return describe(&status),
    };
    let resumed_after = *newest;
    {
        let mut state = shared.lock();
        state.upstream.connected = true;
        state.upstream.last_error = None;
        state.upstream.connections += 1;
    }
    tracing::info!(server = %config.server, "flow stream open");
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return "the server closed the flow stream".to_string(),
            Err(status) => return describe(&status),
        };
        *backoff = INITIAL_BACKOFF;
        match response.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                let time = flow.time;
                if let (Some(after), Some(t)) = (resumed_after.as_ref(), time.as_ref()) {
                    if (t.seconds, t.nanos) <= (after.seconds, after.nanos) {
                        continue;
                    }
                }
                if time.is_some() {
                    *newest = time;
                }
                shared.ingest(flow);
            }
            Some(ResponseTypes::NodeStatus(event)) => shared.lock().upstream.node_event(&event),
            Some(ResponseTypes::LostEvents(event)) => shared.lock().upstream.lost_event(&event),
            None => {}
        }
    }
}

fn describe(status: &tonic::Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    // Transport failures keep the reason (connection refused, ...) in the source chain.
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        text.push_str(&format!(": {error}"));
        source = error.source();
    }
    text
}

/// Polls ServerStatus and GetNodes every `config.status_interval` until `shutdown`.
pub async fn poll_status(
    shared: Arc<Shared>,
    channel: Channel,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(config.status_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let mut observer = client(channel.clone());
        let status = tokio::time::timeout(
            STATUS_TIMEOUT,
            observer.server_status(ServerStatusRequest {}),
        )
        .await;
        let nodes =
            tokio::time::timeout(STATUS_TIMEOUT, observer.get_nodes(GetNodesRequest {})).await;
        let mut state = shared.lock();
        state.upstream.server_status = match status {
            Ok(Ok(answer)) => Some(answer.into_inner()),
            _ => None,
        };
        // An agent serves no node list (Unimplemented); its nodes come from its flows.
        if let Ok(Ok(answer)) = nodes {
            state.upstream.node_list(&answer.into_inner());
        }
    }
}
