//! Peer addresses (`host:port`, `ip`, `unix:///path`) and how to dial them.

use std::path::PathBuf;
use std::time::Duration;

use proto::transport::{error_chain, unix_endpoint, UnixConnector};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::RelayError;

/// Port of a node's Hubble API when an address names none.
pub const DEFAULT_SERVER_PORT: u16 = 4244;

/// Where a peer (or the peer service) listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddress {
    /// A TCP address, `host:port`.
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

impl PeerAddress {
    /// Parses `unix:///path`, `/path.sock`, `host:port`, `[v6]:port`, or a bare IP (port
    /// 4244 implied).
    pub fn parse(address: &str) -> Result<Self, RelayError> {
        let invalid = |reason: &str| RelayError::InvalidAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let address = address.trim();
        if let Some(path) = address.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if address.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(address)));
        }
        if address.is_empty() {
            return Err(invalid("the address is empty"));
        }
        if let Ok(ip) = address.parse::<std::net::IpAddr>() {
            return Ok(Self::Tcp(
                std::net::SocketAddr::new(ip, DEFAULT_SERVER_PORT).to_string(),
            ));
        }
        let Some((host, port)) = address.rsplit_once(':') else {
            return Ok(Self::Tcp(format!("{address}:{DEFAULT_SERVER_PORT}")));
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if port.parse::<u16>().is_err() {
            return Err(invalid("the port is not a number from 0 to 65535"));
        }
        Ok(Self::Tcp(address.to_owned()))
    }
}

impl std::fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddress::Tcp(address) => f.write_str(address),
            PeerAddress::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Makes gRPC connections to peers.
#[derive(Clone)]
pub struct Dialer {
    /// Bound on connecting (TCP connect and TLS handshake).
    pub dial_timeout: Duration,
    /// TLS towards TCP peers; `None` for plaintext. Unix sockets are always plaintext.
    pub tls: Option<ClientTlsConfig>,
}

/// How often idle connections are pinged, so that a dead peer is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

impl Dialer {
    /// Connects to `address`, checking the peer's certificate against `server_name` when TLS
    /// is on.
    pub async fn dial(
        &self,
        address: &PeerAddress,
        server_name: &str,
    ) -> Result<Channel, RelayError> {
        let connect_error = |message: String| RelayError::Connect {
            address: address.to_string(),
            message,
        };
        let connecting = async {
            match address {
                PeerAddress::Unix(path) => unix_endpoint()
                    .connect_timeout(self.dial_timeout)
                    .http2_adaptive_window(true)
                    .connect_with_connector(UnixConnector::new(path))
                    .await
                    .map_err(|e| connect_error(error_chain(&e))),
                PeerAddress::Tcp(host_port) => {
                    let scheme = if self.tls.is_some() { "https" } else { "http" };
                    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
                        .map_err(|e| connect_error(error_chain(&e)))?
                        .connect_timeout(self.dial_timeout)
                        // Flow-control windows sized to the link (as grpc-go's BDP
                        // estimation), not HTTP/2's 64 KiB: a node streams history fast.
                        .http2_adaptive_window(true)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                        .keep_alive_while_idle(true);
                    if let Some(tls) = &self.tls {
                        endpoint = endpoint
                            .tls_config(tls.clone().domain_name(server_name))
                            .map_err(|e| connect_error(error_chain(&e)))?;
                    }
                    endpoint
                        .connect()
                        .await
                        .map_err(|e| connect_error(error_chain(&e)))
                }
            }
        };
        tokio::time::timeout(self.dial_timeout, connecting)
            .await
            .map_err(|_| connect_error(format!("timed out after {:?}", self.dial_timeout)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peer_addresses() {
        let tcp = |s: &str| PeerAddress::Tcp(s.to_owned());
        assert_eq!(
            PeerAddress::parse("10.0.0.1:4244").ok(),
            Some(tcp("10.0.0.1:4244"))
        );
        assert_eq!(
            PeerAddress::parse("10.0.0.1").ok(),
            Some(tcp("10.0.0.1:4244"))
        );
        assert_eq!(
            PeerAddress::parse("fd00::1").ok(),
            Some(tcp("[fd00::1]:4244"))
        );
        assert_eq!(
            PeerAddress::parse("[fd00::1]:80").ok(),
            Some(tcp("[fd00::1]:80"))
        );
        assert_eq!(PeerAddress::parse("node1").ok(), Some(tcp("node1:4244")));
        assert_eq!(
            PeerAddress::parse("unix:///var/run/cilium/hubble.sock").ok(),
            Some(PeerAddress::Unix("/var/run/cilium/hubble.sock".into()))
        );
        let error = PeerAddress::parse("host:http").expect_err("bad port");
        assert!(error.to_string().contains("\"host:http\""), "{error}");
        assert!(PeerAddress::parse("unix://").is_err());
    }
}
