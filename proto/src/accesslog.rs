//! The record an L7 proxy writes for each request and response it sees: the
//! contract between the agent's proxies (crate `proxy`) and the observer's L7
//! parser, as Cilium's `accesslog.LogRecord` is between Envoy and Hubble.
//!
//! A plain Rust type, not part of the wire API: it never leaves the node. The
//! observer turns it into a `flow::Flow` of type L7.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One request or response seen by a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// When the proxy saw the request or the response.
    pub time: SystemTime,
    /// Request or response.
    pub kind: RecordKind,
    /// What the proxy did with it.
    pub verdict: RecordVerdict,
    /// The redirect was for the destination's ingress policy (false: the source's egress).
    pub ingress: bool,
    /// The port of the proxy listener the connection was redirected to.
    pub proxy_port: u16,
    /// The client of the connection (for responses too: records keep the
    /// connection's direction, the parser swaps the ends of responses).
    pub source: RecordEndpoint,
    /// The original destination of the connection (the backend).
    pub destination: RecordEndpoint,
    /// Responses: the time from the request to the response.
    pub latency: Option<Duration>,
    /// The protocol's part of the record.
    pub l7: L7Log,
}

/// Request or response (Cilium's `accesslog.FlowType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Request,
    Response,
}

/// What the proxy did (Cilium's `accesslog.FlowVerdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordVerdict {
    /// Allowed by policy and passed on.
    Forwarded,
    /// Refused by policy.
    Denied,
    /// The proxy could not pass it on (upstream unreachable, malformed, ...).
    Error,
}

/// One end of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEndpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// Security identity; 0 when unknown.
    pub identity: u32,
}

/// The protocol's part of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum L7Log {
    Http(HttpLog),
    Dns(DnsLog),
}

/// An HTTP request or response (Cilium's `accesslog.LogRecordHTTP`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpLog {
    /// Status code of a response; 0 in requests.
    pub code: u32,
    /// Request method (responses carry their request's, shared).
    pub method: Arc<str>,
    /// `http://host/path?query` of the request (responses carry their request's,
    /// shared).
    pub url: Arc<str>,
    /// `HTTP/1.1`, `HTTP/1.0`, `HTTP/2`.
    pub protocol: &'static str,
    /// Headers of the request or response, in order, names as received.
    pub headers: Vec<(String, String)>,
    /// The request's W3C `traceparent` header, carried by the request and by its
    /// response (Hubble's trace context, and the http metrics' exemplars).
    pub trace_parent: Option<String>,
}

/// A DNS query or answer (Cilium's `accesslog.LogRecordDNS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsLog {
    /// The queried name, fully qualified (with the trailing dot).
    pub query: String,
    /// Addresses of the answer.
    pub ips: Vec<IpAddr>,
    /// The lowest TTL of the answer's records.
    pub ttl: u32,
    /// CNAMEs of the answer.
    pub cnames: Vec<String>,
    /// Where the record was observed: `proxy`.
    pub observation_source: String,
    /// Response code (0 = NOERROR).
    pub rcode: u32,
    /// Query types by name (`A`, `AAAA`).
    pub qtypes: Vec<String>,
    /// Answer record types by name.
    pub rrtypes: Vec<String>,
    /// The transport the query came over (Cilium's `TransportProtocol`).
    pub transport: DnsTransport,
}

/// The transport of a DNS exchange; flows of its records carry it as their L4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DnsTransport {
    #[default]
    Udp,
    Tcp,
}

impl LogRecord {
    /// The HTTP part, if this is an HTTP record.
    pub fn http(&self) -> Option<&HttpLog> {
        match &self.l7 {
            L7Log::Http(http) => Some(http),
            L7Log::Dns(_) => None,
        }
    }

    /// The DNS part, if this is a DNS record.
    pub fn dns(&self) -> Option<&DnsLog> {
        match &self.l7 {
            L7Log::Dns(dns) => Some(dns),
            L7Log::Http(_) => None,
        }
    }
}
