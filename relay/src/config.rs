//! The relay's configuration, parsed up front; TLS files are loaded here too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::RelayError;

/// Address of the peer service by default: the local agent's Unix socket.
pub const DEFAULT_PEER_SERVICE: &str = "unix:///var/run/cilium/hubble.sock";
/// Address clients connect to by default.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":4245";
/// Address of the separate gRPC health listener by default.
pub const DEFAULT_HEALTH_LISTEN_ADDRESS: &str = ":4222";
/// Flows buffered per request for sorting, by default.
pub const DEFAULT_SORT_BUFFER_LEN_MAX: usize = 100;
/// Longest time a flow waits in the sort buffer, by default.
pub const DEFAULT_SORT_BUFFER_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on connecting to a peer, by default.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait before reconnecting to the peer service, by default.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Window in which node errors with the same message are reported as one event.
pub const DEFAULT_ERROR_AGGREGATION_WINDOW: Duration = Duration::from_secs(10);
/// How often a follow request looks for nodes that joined, at the latest.
pub const DEFAULT_PEER_UPDATE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the health status is re-evaluated.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Cluster name by default.
pub const DEFAULT_CLUSTER_NAME: &str = peer_service::DEFAULT_CLUSTER_NAME;

/// Everything the relay needs to run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address of the peer service: `unix:///path` or `host:port`.
    pub peer_service: String,
    /// Address for clients, `[host]:port`.
    pub listen_address: String,
    /// Address of a separate listener serving only gRPC health; `None` for none.
    pub health_listen_address: Option<String>,
    /// Where to serve Prometheus metrics (`/metrics`); `None` for nowhere.
    pub metrics_listen_address: Option<String>,
    /// Cluster name, used for TLS server names.
    pub cluster_name: String,
    /// Name the relay puts in the node status events it generates.
    pub node_name: String,
    /// Bound on connecting to a peer.
    pub dial_timeout: Duration,
    /// Longest wait between attempts to reach the peer service.
    pub retry_timeout: Duration,
    /// Flows buffered per request for sorting.
    pub sort_buffer_len_max: usize,
    /// Longest time a flow waits in the sort buffer.
    pub sort_buffer_drain_timeout: Duration,
    /// Window in which node errors with the same message are merged.
    pub error_aggregation_window: Duration,
    /// How often a follow request looks for new nodes, at the latest.
    pub peer_update_interval: Duration,
    /// How often the health status is re-evaluated.
    pub health_check_interval: Duration,
    /// Most GetFlows streams served at once, over all clients
    /// (`observer::service::limit::MAX_CONCURRENT_FLOW_STREAMS`).
    pub max_flow_streams: usize,
    /// TLS towards agents; `None` to connect in plaintext.
    pub client_tls: Option<ClientTlsFiles>,
    /// TLS for clients of the relay; `None` to serve plaintext.
    pub server_tls: Option<ServerTlsFiles>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            peer_service: DEFAULT_PEER_SERVICE.into(),
            listen_address: DEFAULT_LISTEN_ADDRESS.into(),
            health_listen_address: None,
            metrics_listen_address: None,
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
            node_name: local_node_name(),
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            sort_buffer_len_max: DEFAULT_SORT_BUFFER_LEN_MAX,
            sort_buffer_drain_timeout: DEFAULT_SORT_BUFFER_DRAIN_TIMEOUT,
            error_aggregation_window: DEFAULT_ERROR_AGGREGATION_WINDOW,
            peer_update_interval: DEFAULT_PEER_UPDATE_INTERVAL,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            max_flow_streams: observer::service::limit::MAX_CONCURRENT_FLOW_STREAMS,
            client_tls: None,
            server_tls: None,
        }
    }
}

/// The host name of this machine, or `hubble-relay` when it cannot be read.
pub fn local_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "hubble-relay".into())
}

/// Parses `[host]:port` (`:4245` means every address).
pub fn parse_listen_address(address: &str) -> Result<SocketAddr, RelayError> {
    let invalid = || RelayError::InvalidListenAddress {
        address: address.to_owned(),
    };
    let full = if address.starts_with(':') {
        format!("[::]{address}")
    } else {
        address.to_owned()
    };
    full.parse::<SocketAddr>().map_err(|_| invalid())
}

/// Files for mutual TLS towards agents.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFiles {
    /// The relay's client certificate (PEM); `None` to connect without one.
    pub cert_file: Option<PathBuf>,
    /// The key of the client certificate (PEM).
    pub key_file: Option<PathBuf>,
    /// CA bundles that sign the agents' server certificates.
    pub server_ca_files: Vec<PathBuf>,
}

/// Files for serving clients over TLS.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsFiles {
    /// The relay's server certificate (PEM).
    pub cert_file: PathBuf,
    /// Its key (PEM).
    pub key_file: PathBuf,
    /// CA bundles that sign accepted client certificates; when set, clients must present
    /// a certificate (mutual TLS).
    pub client_ca_files: Vec<PathBuf>,
}

impl ServerTlsFiles {
    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(&self) -> bool {
        !self.client_ca_files.is_empty()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, RelayError> {
    std::fs::read(path).map_err(|source| RelayError::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn read_bundle(what: &'static str, paths: &[PathBuf]) -> Result<Vec<u8>, RelayError> {
    let mut bundle = Vec::new();
    for path in paths {
        bundle.extend(read(what, path)?);
        bundle.push(b'\n');
    }
    Ok(bundle)
}

impl ClientTlsFiles {
    /// Loads the files into a client TLS configuration (the server name is set per peer).
    pub fn load(&self) -> Result<ClientTlsConfig, RelayError> {
        if self.server_ca_files.is_empty() {
            return Err(RelayError::TlsSettings(
                "no CA for the agents' certificates: pass --tls-hubble-server-ca-files or --disable-client-tls".into(),
            ));
        }
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_bundle(
            "CA bundle",
            &self.server_ca_files,
        )?));
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(RelayError::TlsSettings(
                    "--tls-hubble-client-cert-file and --tls-hubble-client-key-file go together"
                        .into(),
                ))
            }
        }
        Ok(config)
    }
}

impl ServerTlsFiles {
    /// Loads the files into a server TLS configuration.
    pub fn load(&self) -> Result<ServerTlsConfig, RelayError> {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read("server certificate", &self.cert_file)?,
            read("server key", &self.key_file)?,
        ));
        if !self.client_ca_files.is_empty() {
            // The handshake accepts a client without a certificate so that the request can
            // be refused with a status that says why ([`crate::error::require_client_certificate`]);
            // a certificate that is presented must still be signed by these CAs.
            config = config
                .client_ca_root(Certificate::from_pem(read_bundle(
                    "client CA bundle",
                    &self.client_ca_files,
                )?))
                .client_auth_optional(true);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":4245").ok(),
            "[::]:4245".parse::<SocketAddr>().ok()
        );
        assert!(parse_listen_address("127.0.0.1:0").is_ok());
        let error = parse_listen_address("4245").expect_err("no colon");
        assert!(error.to_string().contains("\"4245\""), "{error}");
    }
}
