//! The HTTP proxy: CiliumNetworkPolicy `rules.http` enforcement on HTTP/1.1.
//!
//! - [`rules`]: rule specs, compiled once per policy revision into an [`HttpPolicy`].
//! - [`HttpProxy`]: one listener. Per request it asks the agent's [`crate::PolicyLookup`],
//!   answers a denied request `403` `Access denied\r\n` itself, passes an allowed
//!   one to the original destination over a kept-alive upstream connection
//!   (keep-alive, pipelining, bodies streamed in their own framing, heads passed
//!   on as they came unless they change), and writes a Request and a Response
//!   record per exchange.
//!   CONNECT and protocol upgrades other than `h2c` (dropped, the request goes on
//!   in HTTP/1.1) are refused with `501` naming them.

mod body;
mod exchange;
mod head;
mod idle;
pub mod rules;
mod server;
mod stats;

pub use body::MAX_CHUNK_METADATA_BYTES;
pub use exchange::ACCESS_DENIED_BODY;
pub use rules::{
    HeaderMatchSpec, HeaderMismatch, HttpPolicy, HttpRuleSpec, MismatchAction, RequestParts,
    RuleError, RuleVerdict, SecretRef, MAX_RULE_REGEX_SIZE,
};
pub use server::{
    HttpProxy, Limits, ProxyConfig, HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_PROXY_CONNECTIONS,
    MAX_REQUEST_HEADERS, MAX_REQUEST_HEADER_BYTES, SHUTDOWN_GRACE, UPSTREAM_CONNECT_TIMEOUT,
};
pub use stats::{ProxyStats, StatsSnapshot};
