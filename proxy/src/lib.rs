//! The agent's L7 proxies. A connection that policy redirects to a proxy port
//! arrives here with its original destination intact (transparent socket
//! assignment); the proxy asks the agent what applies to it ([`PolicyLookup`]),
//! enforces that request by request, passes allowed requests on to the original
//! destination ([`UpstreamConnector`]) and writes one [`proto::accesslog::LogRecord`]
//! per request and response into a bounded [`RecordSink`].
//!
//! API boundary: the agent is the only user. This crate depends on `proto` (for the
//! record type) and on no other crate of the workspace; the agent supplies policy,
//! identities and the upstream sockets, and reads the records.
//!
//! - [`http`]: HTTP/1.1 (CiliumNetworkPolicy `rules.http`).
//! - [`dns`]: DNS over UDP and TCP (`rules.dns`; answers feed the agent's FQDN cache).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;

pub mod dns;
pub mod fuzzing;
pub mod http;
mod records;

pub use records::{RecordSink, RECORD_QUEUE_CAPACITY};

/// A connection the datapath redirected to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client (the connection's peer address).
    pub source: SocketAddr,
    /// The original destination (the proxy socket's local address under
    /// transparent socket assignment).
    pub destination: SocketAddr,
    /// The proxy port the policy entry named.
    pub proxy_port: u16,
    /// The redirect enforces the destination's ingress policy (false: the source's egress).
    pub ingress: bool,
}

/// What applies to a redirected connection.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The HTTP rules in force.
    pub policy: Arc<http::HttpPolicy>,
    /// The client's security identity (for the records).
    pub source_identity: u32,
    /// The original destination's security identity (for the records).
    pub destination_identity: u32,
    /// For an egress redirect to a local endpoint whose ingress policy redirects the
    /// same connection too: that endpoint's HTTP rules for the client. The egress
    /// proxy enforces both and records both directions, and its connection to the
    /// destination carries the ingress proxy's mark, so it is not redirected twice.
    pub chained_ingress: Option<Arc<http::HttpPolicy>>,
}

/// The agent's view of policy, asked once per request (so a policy change
/// applies to the next request on a kept-alive connection).
pub trait PolicyLookup: Send + Sync + 'static {
    /// What applies to a connection redirected to `conn.proxy_port` from
    /// `conn.source` to `conn.destination`. None: no L7 policy applies any more,
    /// and the request is denied.
    fn http_decision(&self, conn: &ConnInfo) -> Option<Decision>;
}

/// The future of [`UpstreamConnector::connect`].
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send + 'a>>;

/// Opens the proxy's connection to a redirected connection's original destination.
/// The agent's connector marks or binds the socket so the datapath recognises
/// proxy traffic and does not redirect it again.
pub trait UpstreamConnector: Send + Sync + 'static {
    fn connect<'a>(&'a self, conn: &'a ConnInfo) -> ConnectFuture<'a>;
}

/// A plain TCP connection to the original destination (tests, benchmarks, and
/// setups where the datapath needs no mark).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl UpstreamConnector for TcpConnector {
    fn connect<'a>(&'a self, conn: &'a ConnInfo) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = TcpStream::connect(conn.destination).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }
}
