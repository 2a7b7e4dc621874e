//! A real observer served on a Unix socket and on TCP 127.0.0.1:0, and clients for
//! both.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use observer::server::{ServeConfig, Server};
use observer::{IngestHandle, LocalObserver, ObserverConfig};
use proto::flow::Flow;
use proto::observer::observer_client::ObserverClient;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetFlowsResponse};
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

pub const NODE: &str = "test-node";

pub struct Harness {
    pub observer: Arc<LocalObserver>,
    pub ingest: IngestHandle,
    pub tcp: std::net::SocketAddr,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Harness {
    pub async fn start(ring_capacity: u64) -> anyhow::Result<Self> {
        let (observer, ingest) = LocalObserver::new(ObserverConfig {
            node_name: NODE.to_string(),
            ring_capacity,
            ..Default::default()
        })?;
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("run/hubble.sock");
        let mut config = ServeConfig::default();
        config.unix_socket = Some(socket.clone());
        config.listen_address = Some("127.0.0.1:0".to_string());
        config.grace_period = Duration::from_millis(200);
        let server = Server::bind(config).await?;
        let tcp = server.tcp_address().context("tcp address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let obs = Arc::clone(&observer);
        let server = tokio::spawn(async move {
            server
                .run(obs, tonic::service::Routes::default(), async {
                    let _ = stopped.await;
                })
                .await?;
            Ok(())
        });
        Ok(Self {
            observer,
            ingest,
            tcp,
            socket,
            _dir: dir,
            stop: Some(stop),
            server: Some(server),
        })
    }

    pub async fn tcp_channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::try_from(format!("http://{}", self.tcp))?
            .connect()
            .await?)
    }

    pub async fn unix_channel(&self) -> anyhow::Result<Channel> {
        Ok(proto::transport::unix_endpoint()
            .connect_with_connector(proto::transport::UnixConnector::new(&self.socket))
            .await?)
    }

    pub async fn clients(&self) -> anyhow::Result<Vec<(&'static str, ObserverClient<Channel>)>> {
        Ok(vec![
            ("unix", ObserverClient::new(self.unix_channel().await?)),
            ("tcp", ObserverClient::new(self.tcp_channel().await?)),
        ])
    }

    /// Pushes flows and waits until the ring writer stored them all.
    pub async fn push(&self, flows: impl IntoIterator<Item = Flow>) -> anyhow::Result<()> {
        let before = self.observer.seen_flows();
        let mut n = 0;
        for flow in flows {
            anyhow::ensure!(self.ingest.push_flow_wait(flow).await, "ingest closed");
            n += 1;
        }
        self.wait_seen(before + n).await
    }

    pub async fn wait_seen(&self, total: u64) -> anyhow::Result<()> {
        for _ in 0..500 {
            if self.observer.seen_flows() >= total {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!(
            "ring writer stored {} of {total} flows",
            self.observer.seen_flows()
        )
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(5), server).await???;
        }
        anyhow::ensure!(!self.socket.exists(), "socket removed on shutdown");
        Ok(())
    }
}

/// Runs a GetFlows request to its end and returns every response.
pub async fn collect(
    client: &mut ObserverClient<Channel>,
    req: GetFlowsRequest,
) -> anyhow::Result<Vec<GetFlowsResponse>> {
    let mut stream = client.get_flows(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(resp) = stream.message().await? {
        out.push(resp);
    }
    Ok(out)
}

pub fn flows_of(responses: &[GetFlowsResponse]) -> Vec<Flow> {
    responses
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

pub fn uuids(flows: &[Flow]) -> Vec<String> {
    flows.iter().map(|f| f.uuid.clone()).collect()
}
