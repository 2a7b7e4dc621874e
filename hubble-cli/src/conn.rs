//! Connections to a Hubble server or relay: `host:port`, `unix:///path`, `tls://host:port`
//! targets, TLS (custom CAs, mutual TLS, server name, insecure mode), basic auth,
//! dial and request timeouts, and gRPC errors worded as upstream words them.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use proto::transport::error_chain;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::Settings;

mod status;
mod tls;

pub use status::{rpc_error, rpc_error_for_stream};

/// The TLS marker of a server address.
const TLS_PREFIX: &str = "tls://";

/// A channel that adds the basic-auth header when one is configured.
pub type HubbleChannel = InterceptedService<Channel, AuthInterceptor>;

/// Connection settings, resolved from flags, environment and config file.
#[derive(Debug, Clone, Default)]
pub struct ConnOptions {
    pub server: String,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub tls: bool,
    pub tls_allow_insecure: bool,
    pub tls_ca_cert_files: Vec<String>,
    pub tls_client_cert_file: String,
    pub tls_client_key_file: String,
    pub tls_server_name: String,
    pub basic_auth: Option<(String, String)>,
    pub port_forward: bool,
}

/// A connection that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("invalid flag(s): must specify both basic-auth-username and basic-auth-password")]
    BasicAuthPair,
    #[error(
        "invalid flag(s): certificate and private key are both required, but only one was provided"
    )]
    InvalidKeypair,
    #[error("invalid flag(s): transport layer security required")]
    TlsRequired,
    #[error("failed to create gRPC client to '{target}': {reason}")]
    BadTarget { target: String, reason: String },
    #[error("failed to port forward: --port-forward does not apply to this command")]
    PortForward,
    #[error("{0}")]
    Tls(String),
    #[error("failed to connect to '{target}': {reason}")]
    Connect { target: String, reason: String },
}

impl ConnOptions {
    /// Reads and checks the server settings as upstream validates its flags.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConnError> {
        let username = settings.get_string("basic-auth-username");
        let password = settings.get_string("basic-auth-password");
        if username.is_empty() != password.is_empty() {
            return Err(ConnError::BasicAuthPair);
        }
        let opts = Self {
            server: settings.get_string("server"),
            dial_timeout: nanos(settings.get_duration("timeout")),
            request_timeout: nanos(settings.get_duration("request-timeout")),
            tls: settings.get_bool("tls"),
            tls_allow_insecure: settings.get_bool("tls-allow-insecure"),
            tls_ca_cert_files: settings.get_string_slice("tls-ca-cert-files"),
            tls_client_cert_file: settings.get_string("tls-client-cert-file"),
            tls_client_key_file: settings.get_string("tls-client-key-file"),
            tls_server_name: settings.get_string("tls-server-name"),
            basic_auth: (!username.is_empty()).then_some((username, password)),
            port_forward: settings.get_bool("port-forward"),
        };
        let (cert, key) = (&opts.tls_client_cert_file, &opts.tls_client_key_file);
        if cert.is_empty() != key.is_empty() {
            return Err(ConnError::InvalidKeypair);
        }
        if !cert.is_empty() && !opts.tls_enabled() {
            return Err(ConnError::TlsRequired);
        }
        Ok(opts)
    }

    /// Whether TLS is on (`--tls` or a `tls://` address).
    pub fn tls_enabled(&self) -> bool {
        self.tls || self.server.starts_with(TLS_PREFIX)
    }
}

fn nanos(ns: i64) -> Duration {
    Duration::from_nanos(ns.max(0) as u64)
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(String),
    Tcp { host: String, port: u16 },
}

/// Parses a server address as gRPC does: `unix:///path`, `unix:path`, optional
/// `tls://`, `dns:///` or `passthrough:///` prefixes, `host:port` with port 443 when
/// none is given.
pub fn parse_target(server: &str) -> Result<Target, String> {
    let rest = server.strip_prefix(TLS_PREFIX).unwrap_or(server);
    if let Some(path) = rest.strip_prefix("unix://") {
        return Ok(Target::Unix(path.to_string()));
    }
    if let Some(path) = rest.strip_prefix("unix:") {
        return Ok(Target::Unix(path.to_string()));
    }
    let rest = ["dns:///", "passthrough:///"]
        .iter()
        .find_map(|p| rest.strip_prefix(p))
        .unwrap_or(rest);
    if rest.is_empty() {
        return Err("missing address".to_string());
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in address {rest}"))?;
        match after.strip_prefix(':') {
            Some(port) => (host.to_string(), port),
            None if after.is_empty() => (host.to_string(), "443"),
            None => return Err(format!("invalid address {rest}")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => (rest.to_string(), "443"),
            Some((host, port)) => (host.to_string(), port),
            None => (rest.to_string(), "443"),
        }
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port {port:?} in address {rest}"))?;
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    Ok(Target::Tcp { host, port })
}

/// Adds `authorization: Basic ...` to every call when configured.
#[derive(Debug, Clone, Default)]
pub struct AuthInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = self.header.as_ref() {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Connects to the configured server, failing with `failed to connect to '<server>'`
/// when it cannot be reached within the dial timeout.
pub async fn connect(opts: &ConnOptions) -> Result<HubbleChannel, ConnError> {
    if opts.port_forward {
        return Err(ConnError::PortForward);
    }
    let target = parse_target(&opts.server).map_err(|reason| ConnError::BadTarget {
        target: opts.server.clone(),
        reason,
    })?;
    let tls = if opts.tls_enabled() {
        Some(tls::client_config(opts).map_err(ConnError::Tls)?)
    } else {
        None
    };
    let uri = match &target {
        Target::Tcp { host, port } if host.contains(':') => format!("http://[{host}]:{port}"),
        Target::Tcp { host, port } => format!("http://{host}:{port}"),
        Target::Unix(_) => "http://localhost".to_string(),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ConnError::BadTarget {
            target: opts.server.clone(),
            reason: e.to_string(),
        })?
        // Flow-control windows sized to the link, as grpc-go's clients do, rather than
        // HTTP/2's 64 KiB, so that `--all` or `--last 100000` stream at full speed.
        .http2_adaptive_window(true);
    let server_name = match (&target, opts.tls_server_name.is_empty()) {
        (_, false) => opts.tls_server_name.clone(),
        (Target::Tcp { host, .. }, true) => host.clone(),
        (Target::Unix(_), true) => "localhost".to_string(),
    };
    let connector = tower::service_fn(move |_: Uri| {
        let target = target.clone();
        let tls = tls.clone();
        let server_name = server_name.clone();
        async move {
            let stream: Box<dyn Io> = match &target {
                Target::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                Target::Tcp { host, port } => {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    let _ = tcp.set_nodelay(true);
                    Box::new(tcp)
                }
            };
            let stream: Box<dyn Io> = match tls {
                Some(config) => Box::new(tls::handshake(config, &server_name, stream).await?),
                None => stream,
            };
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let failed = |reason: String| ConnError::Connect {
        target: opts.server.clone(),
        reason,
    };
    let channel = match tokio::time::timeout(
        opts.dial_timeout.max(Duration::from_millis(1)),
        endpoint.connect_with_connector(connector),
    )
    .await
    {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(failed(error_chain(&e))),
        Err(_) => return Err(failed("context deadline exceeded".to_string())),
    };
    let header = match &opts.basic_auth {
        Some((user, password)) => {
            let value = basic_auth(user, password)
                .parse()
                .map_err(|_| ConnError::Tls("invalid basic auth credentials".to_string()))?;
            Some(value)
        }
        None => None,
    };
    Ok(InterceptedService::new(channel, AuthInterceptor { header }))
}

/// The `authorization` header value of HTTP basic authentication.
fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_like_grpc() {
        let tcp = |h: &str, p| Target::Tcp {
            host: h.to_string(),
            port: p,
        };
        assert_eq!(parse_target("localhost:4245"), Ok(tcp("localhost", 4245)));
        assert_eq!(parse_target("tls://relay:443"), Ok(tcp("relay", 443)));
        assert_eq!(parse_target("relay"), Ok(tcp("relay", 443)));
        assert_eq!(parse_target("[::1]:4245"), Ok(tcp("::1", 4245)));
        assert_eq!(parse_target("dns:///relay:80"), Ok(tcp("relay", 80)));
        assert_eq!(
            parse_target("unix:///var/run/cilium/hubble.sock"),
            Ok(Target::Unix("/var/run/cilium/hubble.sock".into()))
        );
        assert!(parse_target("relay:http").is_err());
    }

    #[test]
    fn encodes_basic_auth() {
        assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
    }
}
