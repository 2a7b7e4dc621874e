//! Start-up configuration: where to listen, which Hubble server to read, how much to keep.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default address of the web page and HTTP API (Hubble UI's port).
pub const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:12000";
/// Default Hubble server: the relay on its usual port.
pub const DEFAULT_SERVER: &str = "localhost:4245";
/// Default number of recent flows kept for the table. Large enough for several minutes
/// of the demo's traffic, small enough (a few MB of JSON) to scan on every request.
pub const DEFAULT_RING_CAPACITY: usize = 8191;
/// Default number of recent flows asked for when the follow stream (re)opens.
pub const DEFAULT_INITIAL_FLOWS: u64 = 1000;
/// Default interval between ServerStatus/GetNodes polls.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(3);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid server address {0:?}: expected host:port, http://host:port or unix:///path")]
    InvalidServer(String),
    #[error("invalid server address {0:?}: a unix socket path must be absolute")]
    RelativeUnixPath(String),
    #[error("invalid ring capacity {0}: must be at least 1")]
    RingCapacity(usize),
}

/// Where the Hubble server (relay or agent) is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// A TCP address, `host:port`.
    Tcp { host: String, port: u16 },
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl ServerAddress {
    /// The `http://` URI tonic is given; Unix sockets get a placeholder authority
    /// because the connector ignores it.
    pub fn uri(&self) -> String {
        match self {
            ServerAddress::Tcp { host, port } if host.contains(':') => {
                format!("http://[{host}]:{port}")
            }
            ServerAddress::Tcp { host, port } => format!("http://{host}:{port}"),
            ServerAddress::Unix(_) => "http://localhost:4245".to_string(),
        }
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl FromStr for ServerAddress {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::InvalidServer(text.to_string());
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(ConfigError::RelativeUnixPath(text.to_string()));
            }
            return Ok(ServerAddress::Unix(PathBuf::from(path)));
        }
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("dns:///"))
            .unwrap_or(text);
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || rest.contains("://") {
            return Err(bad());
        }
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(ServerAddress::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

/// Everything `hubble-ui` needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the web page and HTTP API.
    pub listen_address: SocketAddr,
    /// The relay or agent to read flows from.
    pub server: ServerAddress,
    /// Number of recent flows kept for the table.
    pub ring_capacity: usize,
    /// Number of recent flows asked for when the follow stream opens.
    pub initial_flows: u64,
    /// Interval between status polls of the server.
    pub status_interval: Duration,
}

impl Config {
    /// A configuration with the defaults for everything but the two addresses.
    pub fn new(listen_address: SocketAddr, server: ServerAddress) -> Self {
        Self {
            listen_address,
            server,
            ring_capacity: DEFAULT_RING_CAPACITY,
            initial_flows: DEFAULT_INITIAL_FLOWS,
            status_interval: DEFAULT_STATUS_INTERVAL,
        }
    }

    /// Checks the values that parsing alone does not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ring_capacity == 0 {
            return Err(ConfigError::RingCapacity(self.ring_capacity));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_addresses() {
        let tcp = |host: &str, port| ServerAddress::Tcp {
            host: host.to_string(),
            port,
        };
        assert_eq!("localhost:4245".parse(), Ok(tcp("localhost", 4245)));
        assert_eq!("http://10.0.0.1:4244".parse(), Ok(tcp("10.0.0.1", 4244)));
        assert_eq!("[::1]:4245".parse(), Ok(tcp("::1", 4245)));
        assert_eq!(
            "unix:///var/run/cilium/hubble.sock".parse(),
            Ok(ServerAddress::Unix("/var/run/cilium/hubble.sock".into()))
        );
        assert_eq!(tcp("::1", 4245).uri(), "http://[::1]:4245");
    }

    #[test]
    fn rejects_bad_server_addresses_by_name() {
        for bad in [
            "localhost",
            "localhost:http",
            ":4245",
            "ftp://x:1",
            "host:70000",
        ] {
            let err = bad.parse::<ServerAddress>().expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        let err = "unix://relative.sock"
            .parse::<ServerAddress>()
            .expect_err("relative");
        assert!(err.to_string().contains("must be absolute"), "{err}");
    }
}
