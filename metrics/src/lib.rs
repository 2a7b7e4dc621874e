//! Hubble's Prometheus metrics and flow export.
//!
//! - [`MetricsConfig`]: upstream's `--hubble-metrics` syntax
//!   (`dns drop flow httpV2:exemplars=true;labelsContext=source_pod`), validated up front.
//! - [`Metrics`]: the handlers (`dns`, `drop`, `tcp`, `flow`, `port-distribution`,
//!   `icmp`, `http`, `httpV2`, `policy`, `flows-to-world`) with upstream's metric names,
//!   label names and label values; `hubble_lost_events_total`; removal of a deleted
//!   pod's series after a grace period.
//! - [`serve`], [`Registry`], [`exposition`]: re-exported from `metrics-exposition`, the
//!   exposition shared with the agent's and the relay's self-metrics: `/metrics` over
//!   HTTP, Prometheus text 0.0.4 by default and OpenMetrics (with exemplars) when the
//!   scraper asks for it.
//! - [`export`]: flows to JSON-lines files as upstream's exporter writes them, with
//!   size-based rotation, filters, field masks and a reloadable multi-exporter config.

pub mod config;
pub mod context;
pub mod error;
pub mod export;
mod family;
mod handlers;
mod key;
mod metrics;
mod names;

pub use config::{HandlerKind, MetricsConfig};
pub use error::{ConfigError, ExportError};
pub use metrics::{lost_event_source_label, Metrics, DEFAULT_DELETION_GRACE};
pub use metrics_exposition as exposition;
pub use metrics_exposition::{serve, serve_listener, Collect, Format, Registry, ServeError};
