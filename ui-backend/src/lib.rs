//! `hubble-ui`: a web page with a live service map and a filterable flow table.
//!
//! One follow stream from the relay (or an agent) feeds a shared [`state::State`]: a
//! bounded ring of recent flows, the service map aggregate and the server's node and
//! loss figures. Browsers read it through the HTTP API ([`http`]) and get live updates
//! by Server-Sent Events from per-browser bounded queues ([`broadcast`]).

pub mod broadcast;
pub mod config;
pub mod http;
pub mod map;
pub mod query;
pub mod ring;
pub mod state;
pub mod upstream;

mod assets;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, ConfigError, ServerAddress};
pub use state::Shared;

/// A failure to start or run the UI.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// A bound, not yet running UI.
pub struct Ui {
    config: Config,
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Ui {
    /// Checks `config` and binds the listening socket.
    pub async fn bind(config: Config) -> Result<Self, UiError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_address)
            .await
            .map_err(|source| UiError::Listen {
                address: config.listen_address,
                source,
            })?;
        let shared = Shared::new(config.server.to_string(), config.ring_capacity);
        Ok(Self {
            config,
            listener,
            shared,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.listen_address)
    }

    /// The state the UI serves.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Reads the server and serves the page until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), UiError> {
        let channel = upstream::channel(&self.config.server)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let tasks = [
            tokio::spawn(upstream::follow(
                self.shared(),
                channel.clone(),
                self.config.clone(),
                stopped(),
            )),
            tokio::spawn(upstream::poll_status(
                self.shared(),
                channel,
                self.config.clone(),
                stopped(),
            )),
            tokio::spawn(broadcast::run(self.shared(), stopped())),
        ];
        let server_stopped = stopped();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let served = axum::serve(self.listener, http::router(self.shared))
            .with_graceful_shutdown(server_stopped)
            .await;
        for task in tasks {
            let _ = task.await;
        }
        served.map_err(UiError::Serve)
    }
}
