//! Serving the Observer API of a node: on a Unix socket and on TCP at once, with gRPC
//! health and server reflection, until a shutdown signal, then draining for a grace
//! period.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::ServerTlsConfig;
use tonic_health::ServingStatus;

use crate::listener::{incoming, server_builder};
use crate::observer::LocalObserver;
use crate::service::ObserverService;

/// Upstream's default Unix socket of the Hubble API.
pub const DEFAULT_UNIX_SOCKET: &str = "/var/run/cilium/hubble.sock";
/// Upstream's default TCP address of the Hubble API (all interfaces, port 4244).
pub const DEFAULT_LISTEN_ADDRESS: &str = ":4244";
/// How long in-flight streams may drain after the shutdown signal.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// The health service name clients check, set to SERVING with the empty name.
pub const HEALTH_SERVICE_NAME: &str = "hubble.server.Observer";
/// Permissions of the Unix socket.
const SOCKET_MODE: u32 = 0o660;

/// Where and how to serve. Build it from `Default` and set fields: more options (TLS
/// client authentication, ...) will be added without breaking callers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The Unix socket to serve on (`None`: no socket).
    pub unix_socket: Option<PathBuf>,
    /// The TCP address to serve on, `host:port` or `:port` for all interfaces
    /// (`None`: no TCP).
    pub listen_address: Option<String>,
    /// TLS for the TCP listener (the Unix socket is always plain, as upstream).
    pub tls: Option<ServerTlsConfig>,
    /// How long in-flight streams may drain after the shutdown signal.
    pub grace_period: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            unix_socket: Some(PathBuf::from(DEFAULT_UNIX_SOCKET)),
            listen_address: Some(DEFAULT_LISTEN_ADDRESS.to_string()),
            tls: None,
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the socket directory {path}: {source}")]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is in use by a running server")]
    SocketInUse { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to remove it")]
    NotASocket { path: PathBuf },
    #[error("cannot listen on Unix socket {path}: {source}")]
    Unix {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid listen address {address:?}: expected host:port or :port")]
    BadAddress { address: String },
    #[error("cannot listen on {address}: {source}")]
    Tcp {
        address: String,
        source: std::io::Error,
    },
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Bound listeners, ready to serve.
pub struct Server {
    config: ServeConfig,
    unix: Option<(PathBuf, UnixListener)>,
    tcp: Option<TcpListener>,
}

/// Parses `host:port` or `:port` (all IPv4 interfaces, like Go's `:port`).
fn listen_target(address: &str) -> Result<String, ServeError> {
    let bad = || ServeError::BadAddress {
        address: address.to_string(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    Ok(if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else {
        address.to_string()
    })
}

fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ServeError::SocketDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::SocketInUse {
                path: path.to_path_buf(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    let unix_err = |source| ServeError::Unix {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(unix_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(unix_err)?;
    Ok(listener)
}

impl Server {
    /// Binds the configured listeners (so start-up errors surface before serving).
    pub async fn bind(config: ServeConfig) -> Result<Self, ServeError> {
        let unix = match &config.unix_socket {
            Some(path) => Some((path.clone(), bind_unix(path)?)),
            None => None,
        };
        let tcp = match &config.listen_address {
            Some(address) => {
                let target = listen_target(address)?;
                let listener =
                    TcpListener::bind(&target)
                        .await
                        .map_err(|source| ServeError::Tcp {
                            address: address.clone(),
                            source,
                        })?;
                Some(listener)
            }
            None => None,
        };
        Ok(Self { config, unix, tcp })
    }

    /// The bound TCP address, if serving on TCP.
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The Unix socket path, if serving on one.
    pub fn unix_socket(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(p, _)| p.as_path())
    }

    /// Serves the observer plus `extra` routes until `shutdown` completes, then lets
    /// streams drain for the grace period.
    pub async fn run(
        self,
        observer: Arc<LocalObserver>,
        extra: Routes,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let (mut health, health_service) = tonic_health::server::health_reporter();
        set_health(&mut health, ServingStatus::Serving).await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let routes = extra
            .add_service(ObserverService::new(observer).into_server())
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);

        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut servers = tokio::task::JoinSet::new();
        if let Some((_, listener)) = self.unix {
            let server = server_builder()
                .add_routes(routes.clone())
                .serve_with_incoming_shutdown(incoming(listener), stopped());
            servers.spawn(server);
        }
        if let Some(listener) = self.tcp {
            let mut builder = server_builder();
            if let Some(tls) = self.config.tls.clone() {
                builder = builder.tls_config(tls)?;
            }
            let server = builder
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming(listener), stopped());
            servers.spawn(server);
        }

        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                done = servers.join_next() => match done {
                    None => break Ok(()),
                    // A listener stopped before shutdown: clients checking health must
                    // see it rather than a port that no longer answers.
                    Some(Ok(Ok(()))) => {
                        tracing::error!("a gRPC listener stopped; health is NOT_SERVING");
                        set_health(&mut health, ServingStatus::NotServing).await;
                    }
                    Some(Ok(Err(e))) => break Err(ServeError::Transport(e)),
                    Some(Err(join)) => {
                        tracing::error!(error = %join, "a gRPC listener ended abnormally; health is NOT_SERVING");
                        set_health(&mut health, ServingStatus::NotServing).await;
                    }
                },
            }
        };
        set_health(&mut health, ServingStatus::NotServing).await;
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.config.grace_period, async {
            while servers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!("grace period over; closing the remaining streams");
            servers.shutdown().await;
        }
        if let Some(path) = &self.config.unix_socket {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

/// Sets the status of every service name clients check.
async fn set_health(health: &mut tonic_health::server::HealthReporter, status: ServingStatus) {
    for name in [HEALTH_SERVICE_NAME, "observer.Observer", ""] {
        health.set_service_status(name, status).await;
    }
}

/// Serves the observer (plus `extra` routes, e.g. `peer.Peer`) on the configured Unix
/// socket and TCP address until `shutdown` completes.
pub async fn serve(
    config: ServeConfig,
    observer: Arc<LocalObserver>,
    extra: Routes,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Server::bind(config)
        .await?
        .run(observer, extra, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_target(":4244").ok().as_deref(), Some("0.0.0.0:4244"));
        assert_eq!(
            listen_target("127.0.0.1:0").ok().as_deref(),
            Some("127.0.0.1:0")
        );
        assert_eq!(
            listen_target("[::1]:4244").ok().as_deref(),
            Some("[::1]:4244")
        );
        for bad in ["4244", "host:", ":99999", ""] {
            let err = listen_target(bad).expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
