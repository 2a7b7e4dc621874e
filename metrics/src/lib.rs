//! Hubble's Prometheus metrics and flow export.
//!
//! - [`MetricsConfig`]: upstream's `--hubble-metrics` syntax
//!   (`dns drop flow httpV2:exemplars=true;labelsContext=source_pod`), validated up front.
//! - [`Metrics`]: the handlers (`dns`, `drop`, `tcp`, `flow`, `port-distribution`,
//!   `icmp`, `http`, `httpV2`, `policy`, `flows-to-world`) with upstream's metric names,
//!   label names and label values; `hubble_lost_events_total`; removal of a deleted
//!   pod's series after a grace period.
//! - [`AgentMetrics`], [`RelayMetrics`]: self-metrics of the agent and the relay.
//! - [`serve`]: `/metrics` over HTTP, Prometheus text 0.0.4 by default and OpenMetrics
//!   (with exemplars) when the scraper asks for it.
//! - [`export`]: flows to JSON-lines files as upstream's exporter writes them, with
//!   size-based rotation, filters, field masks and a reloadable multi-exporter config.
//!
//! The exposition is written here rather than by `prometheus-client`, whose encoder
//! only speaks OpenMetrics and cannot take exemplars for histograms kept elsewhere;
//! the output follows Go's `client_golang` (sorted labels, `%g` floats) so that a
//! scrape reads like upstream's.

pub mod config;
pub mod context;
pub mod error;
pub mod export;
pub mod exposition;
mod family;
mod handlers;
mod key;
mod metrics;
mod names;
mod registry;
mod self_metrics;
mod server;

pub use config::{HandlerKind, MetricsConfig};
pub use error::{ConfigError, ExportError};
pub use exposition::{Collect, Format};
pub use metrics::{lost_event_source_label, Metrics, DEFAULT_DELETION_GRACE};
pub use registry::Registry;
pub use self_metrics::{AgentMetrics, GrpcType, PeerConnectionStatus, RelayMetrics};
pub use server::{serve, serve_listener, ServeError};
