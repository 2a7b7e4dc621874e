//! The local end: a loopback listener whose every accepted connection is carried to the
//! relay by its own tunnel, with a bound on the tunnels open at once. A connection over
//! the bound is closed at once and counted, never queued.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::kubectl::KubectlForward;
use super::tunnel::Dialer;
use super::PortForwardError;

/// Tunnelled connections open at once. A `hubble` command opens one; a few tools side by
/// side (CLI, UI, scripts) stay far below. Each ssh tunnel is a process, so this also
/// bounds the processes a forwarder starts.
pub const MAX_TUNNELLED_CONNECTIONS: usize = 32;
/// Pause after a failed accept (e.g. out of file descriptors) before accepting again.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What a forwarder is set up with.
pub struct ForwarderConfig {
    /// The target as the user wrote it, for messages.
    pub target: String,
    /// Where to listen (a loopback address; port 0 picks one).
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Whether to report each failed tunnel and refusal on standard error.
    pub report: bool,
}

/// A running forwarder. Dropping it (or [`Forwarder::shutdown`]) stops accepting and
/// ends every tunnel and process it started.
pub struct Forwarder {
    local: SocketAddr,
    refused: Arc<AtomicU64>,
    accept_task: JoinHandle<()>,
    _kubectl: Option<KubectlForward>,
}

impl Forwarder {
    /// Listens, checks one tunnel end to end, then starts accepting.
    pub async fn start(
        config: ForwarderConfig,
        dialer: Dialer,
        kubectl: Option<KubectlForward>,
    ) -> Result<Self, PortForwardError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| PortForwardError::Listen {
                    address: config.listen,
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| PortForwardError::Listen {
                address: config.listen,
                source,
            })?;
        let failed = |reason: String| PortForwardError::Tunnel {
            target: config.target.clone(),
            reason,
        };
        let tunnel = dialer.dial().await.map_err(failed)?;
        tunnel.check().await.map_err(failed)?;
        let refused = Arc::new(AtomicU64::new(0));
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Arc::new(dialer),
            config,
            refused.clone(),
        ));
        Ok(Self {
            local,
            refused,
            accept_task,
            _kubectl: kubectl,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connections closed because [`MAX_TUNNELLED_CONNECTIONS`] tunnels were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Stops accepting and ends every tunnel.
    pub async fn shutdown(mut self) {
        self.accept_task.abort();
        let _ = (&mut self.accept_task).await;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    dialer: Arc<Dialer>,
    config: ForwarderConfig,
    refused: Arc<AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Dropped with this task, which aborts every connection and kills its process.
    let mut connections = JoinSet::new();
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if config.report {
                    eprintln!("port-forward: accepting a connection failed: {e}");
                }
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if config.report && (count == 1 || count.is_multiple_of(100)) {
                eprintln!(
                    "port-forward: refused a connection: {} tunnelled connections are open (the limit); {count} refused so far",
                    config.max_connections
                );
            }
            drop(client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let dialer = dialer.clone();
        let target = config.target.clone();
        let report = config.report;
        connections.spawn(async move {
            let _slot = slot;
            match dialer.dial().await {
                Ok(tunnel) => {
                    let pumped = tunnel.pump(client).await;
                    if let (true, Some(failure)) = (report, pumped.failure) {
                        eprintln!("port-forward: tunnel through {target} failed: {failure}");
                    }
                }
                Err(reason) if report => {
                    eprintln!("port-forward: tunnel through {target} failed: {reason}");
                }
                Err(_) => {}
            }
        });
    }
}
