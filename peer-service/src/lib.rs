//! Hubble's Peer service: tells relays which nodes exist and where their Hubble API is.
//!
//! - [`NodeRegistry`] is any source of node-list changes; [`NodeHub`] is the in-memory
//!   registry that node sources feed.
//! - [`sources`]: every node source behind one trait, [`sources::NodeSource`]: the
//!   static YAML nodes file ([`NodesFileWatcher`]), this node alone, and etcd (feature
//!   `etcd`, which only the agent turns on); [`sources::choose`] picks a node's source.
//! - [`peer_service`] builds the `peer.Peer` gRPC server over a registry: `Notify` first
//!   sends `PEER_ADDED` for every known node, then `PEER_ADDED` / `PEER_UPDATED` /
//!   `PEER_DELETED` as the registry changes.
//! - [`certs`] generates a CA and the server and client certificates for mTLS between
//!   agents, the relay and the CLI.
//!
//! ```no_run
//! # async fn example() {
//! use peer_service::{peer_service, NodeHub, NodesFileWatcher, PeerServiceConfig};
//! let hub = NodeHub::new();
//! let _watcher = NodesFileWatcher::spawn(
//!     "/var/run/hubble-rs/nodes.yaml",
//!     hub.clone(),
//!     peer_service::DEFAULT_RESCAN_INTERVAL,
//! );
//! let server = peer_service(hub, PeerServiceConfig::default());
//! # drop(server);
//! # }
//! ```

use std::path::PathBuf;

pub mod certs;
pub mod fuzzing;
mod hub;
mod node;
mod service;
pub mod sources;

pub use hub::{NodeHub, NodeRegistry, Subscription, SUBSCRIBER_QUEUE_CAPACITY};
pub use node::{
    tls_server_name, Node, NodeChange, DEFAULT_CLUSTER_NAME, DOMAIN_NAME, GRPC_SERVICE_NAME,
    PEER_SERVICE_NAME,
};
pub use service::{peer_service, PeerService, PeerServiceConfig, NOTIFY_STREAM_CAPACITY};
pub use sources::file::{load_nodes_file, parse_nodes, NodesFileWatcher, DEFAULT_RESCAN_INTERVAL};
pub use sources::NodeSource;

/// Why a nodes file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodesFileError {
    /// The file could not be read.
    #[error("cannot read nodes file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a YAML list of `{name, address, cluster}` entries.
    #[error("{}:{line}:{column}: invalid nodes file: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line of the error, 1-based (0 when unknown).
        line: usize,
        /// Column of the error, 1-based (0 when unknown).
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// An entry parsed but makes no sense.
    #[error("{}: entry {entry}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The entry, 1-based.
        entry: usize,
        /// What is wrong with it.
        reason: String,
    },
}
