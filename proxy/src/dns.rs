//! The DNS proxy (CiliumNetworkPolicy `rules.dns`, and the source of toFQDNs names).
//!
//! Queries that policy redirects to the proxy (UDP and TCP, port 53) are read with
//! hickory-proto. A query whose name no `matchName`/`matchPattern` of the applicable
//! rules selects is answered REFUSED and recorded as a denied request; an allowed one
//! is recorded, forwarded to the server the client asked (the original destination),
//! and its answer recorded. Before an allowed answer with addresses is released to the
//! client, the [`AnswerHook`] runs (the agent records the names in its FQDN cache and
//! programs toFQDNs identities), so the client's first connection to an answered
//! address already meets the policy that allows it.
//!
//! Invariant: every resource a client can make the proxy hold is bounded by a named
//! constant and what the bound refuses is counted in [`DnsStats`]: queries waiting for
//! their server ([`MAX_PENDING_QUERIES`]), TCP connections ([`MAX_TCP_CONNECTIONS`]),
//! message size ([`MAX_MESSAGE_BYTES`]), and the time a server or a TCP client may take
//! ([`UPSTREAM_TIMEOUT`], [`TCP_IDLE_TIMEOUT`]). Malformed messages are counted and
//! dropped, never answered or forwarded.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::accesslog::DnsLog;
use regex::Regex;

use crate::ConnInfo;

pub(crate) mod message;
pub mod pattern;
mod server;

pub use message::{parse_answer, parse_query, MessageError, Query, OBSERVATION_SOURCE};
pub use pattern::{canonical_name, Selector, SelectorError, MAX_SELECTOR_LENGTH};
pub use server::{serve_tcp, serve_udp, DnsProxy};

/// Queries forwarded and not yet answered, over all clients: each holds a socket and
/// a task until its answer or [`UPSTREAM_TIMEOUT`]. A query beyond it is dropped and
/// counted (the client retries, as after a lost datagram).
pub const MAX_PENDING_QUERIES: usize = 1024;

/// TCP connections served at once; one more is closed at once and counted.
pub const MAX_TCP_CONNECTIONS: usize = 256;

/// Largest DNS message read or relayed: the most a TCP length prefix can announce,
/// and more than any EDNS UDP payload size in use.
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// How long the server the query was meant for may take to answer (the client gets
/// SERVFAIL after it).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TCP client may stay silent between queries before its connection is
/// closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// `rules.dns[]` of a CiliumNetworkPolicy port rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsRuleSpec {
    pub match_name: Option<String>,
    pub match_pattern: Option<String>,
}

/// The DNS rules of one redirect, compiled once per policy revision.
#[derive(Debug, Clone)]
pub struct DnsPolicy {
    /// `None`: no selector, nothing is allowed.
    matcher: Option<Regex>,
}

impl DnsPolicy {
    /// Compiles `rules`; a bad selector is an error naming it.
    pub fn compile(rules: &[DnsRuleSpec]) -> Result<DnsPolicy, SelectorError> {
        let mut selectors = Vec::new();
        for rule in rules {
            if let Some(name) = &rule.match_name {
                selectors.push(Selector::Name(name.clone()));
            }
            if let Some(pattern) = &rule.match_pattern {
                selectors.push(Selector::Pattern(pattern.clone()));
            }
        }
        Ok(DnsPolicy {
            matcher: pattern::compile(&selectors)?,
        })
    }

    /// A policy allowing every name (`matchPattern: "*"`).
    pub fn allow_all() -> DnsPolicy {
        DnsPolicy::compile(&[DnsRuleSpec {
            match_pattern: Some("*".to_string()),
            ..Default::default()
        }])
        .unwrap_or(DnsPolicy { matcher: None })
    }

    /// Whether a query for `name` (any case, with or without the trailing dot) passes.
    pub fn allows(&self, name: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|matcher| matcher.is_match(&canonical_name(name)))
    }
}

/// What applies to a query.
#[derive(Debug, Clone)]
pub struct DnsDecision {
    /// The DNS rules in force.
    pub policy: Arc<DnsPolicy>,
    /// The client's security identity (for the records).
    pub source_identity: u32,
    /// The server's security identity (for the records).
    pub destination_identity: u32,
}

/// The agent's view of policy and of the datapath, asked once per query.
pub trait DnsPolicyLookup: Send + Sync + 'static {
    /// What applies to a query from `conn.source` to `conn.destination` redirected to
    /// `conn.proxy_port`; `None`: no DNS rule applies any more, the query is refused.
    fn dns_decision(&self, conn: &ConnInfo) -> Option<DnsDecision>;

    /// The server a query received at the proxy's `local` address from `client` was
    /// sent to. Under transparent socket assignment that is `local` itself (the
    /// default); tests and benchmarks name a fixed server.
    fn original_destination(&self, _client: SocketAddr, local: SocketAddr) -> SocketAddr {
        local
    }

    /// Prepares the socket of the proxy's own query for `conn` before it is bound
    /// and connected: the agent binds the client's address transparently and marks
    /// it so the datapath does not redirect it again. The default leaves it as it is
    /// (an ephemeral address of the node).
    fn prepare_upstream(&self, _conn: &ConnInfo, _socket: &socket2::Socket) -> std::io::Result<()> {
        Ok(())
    }
}

/// The future of [`AnswerHook::allowed_answer`].
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs for every allowed answer that carries addresses, before it is released to the
/// client.
pub trait AnswerHook: Send + Sync + 'static {
    fn allowed_answer<'a>(&'a self, conn: &'a ConnInfo, answer: &'a DnsLog) -> HookFuture<'a>;
}

/// A hook that does nothing (tests, benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl AnswerHook for NoHook {
    fn allowed_answer<'a>(&'a self, _: &'a ConnInfo, _: &'a DnsLog) -> HookFuture<'a> {
        Box::pin(async {})
    }
}

/// What the DNS proxy counted since start.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries read (UDP datagrams and TCP messages that parsed).
    pub queries: AtomicU64,
    /// Queries refused by policy.
    pub denied: AtomicU64,
    /// Answers released to clients.
    pub answered: AtomicU64,
    /// Messages dropped because they were not DNS (or not the expected kind).
    pub malformed: AtomicU64,
    /// Queries dropped at [`MAX_PENDING_QUERIES`].
    pub over_pending_limit: AtomicU64,
    /// TCP connections closed at [`MAX_TCP_CONNECTIONS`].
    pub over_connection_limit: AtomicU64,
    /// Queries whose server did not answer in [`UPSTREAM_TIMEOUT`] or could not be
    /// reached (answered SERVFAIL).
    pub upstream_failures: AtomicU64,
}

impl DnsStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
