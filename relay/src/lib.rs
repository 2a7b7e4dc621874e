//! Hubble Relay: one Observer API over every node of a cluster.
//!
//! - [`pool`]: follows `peer.Peer/Notify` and keeps one gRPC connection per node, with
//!   exponential backoff (1 s to 1 min) and reconnection as soon as a request finds a
//!   node offline.
//! - [`flows`]: GetFlows fans out to every node and merges by time through a bounded
//!   sort buffer ([`merge::SortBuffer`]), with `NODE_CONNECTED` / `NODE_UNAVAILABLE` first
//!   and `NODE_ERROR` events (aggregated by message) when a node fails mid-stream.
//! - [`raw`]: node responses are forwarded as the nodes encoded them; only their time
//!   and node name are read.
//! - [`fuzzing`]: the `node_response` fuzz target's entry point.
//! - [`status`]: ServerStatus, GetNodes, GetNamespaces aggregation.
//! - [`cli`]: `hubble-relay serve`'s flags, turned into a [`RelayConfig`].
//! - [`Relay`]: the gRPC server (Observer, health, reflection), optionally over TLS.

pub mod address;
pub mod cli;
pub mod config;
pub mod error;
pub mod flows;
pub mod fuzzing;
pub mod merge;
pub mod pool;
pub mod raw;
pub mod self_metrics;
mod server;
pub mod status;
mod wire_check;

pub use address::{Dialer, PeerAddress};
pub use config::{ClientTlsFiles, RelayConfig, ServerTlsFiles};
pub use error::RelayError;
pub use server::{Relay, RelayObserver, OBSERVER_HEALTH_SERVICE_NAME, RELAY_VERSION};
