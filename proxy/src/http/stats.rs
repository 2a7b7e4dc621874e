//! What the HTTP proxy counts: requests by outcome and every refusal by limit.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one HTTP proxy listener, shared with its connections.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_active: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) requests_forwarded: AtomicU64,
    pub(crate) requests_denied: AtomicU64,
    pub(crate) requests_refused: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) malformed_requests: AtomicU64,
    pub(crate) headers_too_large: AtomicU64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted and served.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections closed at accept because MAX_PROXY_CONNECTIONS were open.
    pub connections_refused: u64,
    /// Requests allowed by policy and passed on.
    pub requests_forwarded: u64,
    /// Requests denied by policy (403).
    pub requests_denied: u64,
    /// Requests the proxy cannot carry (CONNECT, protocol upgrades): 501.
    pub requests_refused: u64,
    /// Allowed requests whose upstream failed (502/503/504).
    pub upstream_errors: u64,
    /// Connections closed on a malformed request (400).
    pub malformed_requests: u64,
    /// Connections closed because a request head exceeded MAX_REQUEST_HEADER_BYTES
    /// or MAX_REQUEST_HEADERS (431).
    pub headers_too_large: u64,
    /// Connections closed because no complete request head arrived within
    /// HEADER_READ_TIMEOUT (slow or silent clients, idle keep-alive).
    pub header_timeouts: u64,
    /// Connections closed after IDLE_TIMEOUT without a byte either way.
    pub idle_timeouts: u64,
}

impl ProxyStats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_accepted: load(&self.connections_accepted),
            connections_active: load(&self.connections_active),
            connections_refused: load(&self.connections_refused),
            requests_forwarded: load(&self.requests_forwarded),
            requests_denied: load(&self.requests_denied),
            requests_refused: load(&self.requests_refused),
            upstream_errors: load(&self.upstream_errors),
            malformed_requests: load(&self.malformed_requests),
            headers_too_large: load(&self.headers_too_large),
            header_timeouts: load(&self.header_timeouts),
            idle_timeouts: load(&self.idle_timeouts),
        }
    }
}
