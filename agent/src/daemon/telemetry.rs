//! Prometheus metrics on `:9965` and flow export, configured with upstream's syntax.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics::export::{
    parse_flow_filters, watch_config_file, ExportManager, ExporterConfig, CONFIG_POLL_INTERVAL,
};
use metrics::{Collect, Metrics, MetricsConfig, Registry};
use observer::LocalObserver;
use proto::flow::LostEventSource;

use super::hooks::FlowHooks;
use super::self_metrics::AgentMetrics;

/// How often the agent's own gauges (ring fill, events seen, queue loss) are refreshed.
const SELF_METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Metric handlers and exporters, as `cilium config view` shows them
/// (`hubble-metrics`, `hubble-export-*`, `hubble-flowlogs-config-path`).
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Handlers with options, e.g. `dns drop flow httpV2:exemplars=true`.
    pub metrics: String,
    pub export_file_path: Option<PathBuf>,
    pub export_max_size_mb: u64,
    pub export_max_backups: usize,
    pub export_compress: bool,
    pub export_allowlist: Option<String>,
    pub export_denylist: Option<String>,
    pub export_fieldmask: Vec<String>,
    /// Dynamic exporters (`flowLogs:` YAML), reloaded on change.
    pub flowlogs_config: Option<PathBuf>,
}

/// Parses `host:port` or `:port` (all interfaces).
fn socket_address(text: &str) -> Result<SocketAddr> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse()
        .with_context(|| format!("invalid metrics address {text:?}: expected host:port or :port"))
}

/// Starts the metrics server and the exporters; returns the hooks the pipeline runs.
pub async fn start<S, F>(
    config: &TelemetryConfig,
    metrics_address: Option<&str>,
    observer: Arc<LocalObserver>,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: S,
) -> Result<FlowHooks>
where
    S: Fn() -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut hooks = FlowHooks::default();
    let mut registry = Registry::new();

    if let Some(address) = metrics_address {
        let address = socket_address(address)?;
        let handlers = MetricsConfig::parse(&config.metrics).context("invalid --metrics")?;
        let flow_metrics = Arc::new(Metrics::new(&handlers));
        registry.register(flow_metrics.clone() as Arc<dyn Collect>);
        hooks.metrics = Some(flow_metrics.clone());
        let agent_metrics = Arc::new(AgentMetrics::new());
        registry.register(agent_metrics.clone() as Arc<dyn Collect>);
        tasks.spawn(self_metrics(observer, agent_metrics, flow_metrics));
        tracing::info!(%address, handlers = %config.metrics, "serving metrics");
        // The registry is complete once the exporters are registered below.
        let exporters = start_exporters(config, tasks, shutdown())?;
        if let Some(export) = &exporters {
            registry.register(export.clone() as Arc<dyn Collect>);
        }
        hooks.export = exporters;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} for metrics"))?;
        let stop = shutdown();
        tasks.spawn(async move {
            if let Err(e) = metrics::serve_listener(listener, registry, stop).await {
                tracing::error!("metrics server: {e}");
            }
        });
    } else {
        hooks.export = start_exporters(config, tasks, shutdown())?;
    }
    Ok(hooks)
}

fn start_exporters(
    config: &TelemetryConfig,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<Arc<ExportManager>>> {
    if config.export_file_path.is_none() && config.flowlogs_config.is_none() {
        return Ok(None);
    }
    let manager = Arc::new(ExportManager::new());
    if let Some(path) = &config.export_file_path {
        let mut exporter = ExporterConfig::new("static-exporter", path);
        exporter.file_max_size_bytes = config.export_max_size_mb.saturating_mul(1024 * 1024);
        exporter.file_max_backups = config.export_max_backups;
        exporter.file_compress = config.export_compress;
        exporter.field_mask = config.export_fieldmask.clone();
        if let Some(text) = &config.export_allowlist {
            exporter.include_filters =
                parse_flow_filters(text).context("invalid --export-allowlist")?;
        }
        if let Some(text) = &config.export_denylist {
            exporter.exclude_filters =
                parse_flow_filters(text).context("invalid --export-denylist")?;
        }
        manager
            .apply(vec![exporter])
            .context("starting the flow exporter")?;
    }
    if let Some(path) = &config.flowlogs_config {
        let handle = watch_config_file(
            manager.clone(),
            path.clone(),
            CONFIG_POLL_INTERVAL,
            shutdown,
        );
        tasks.spawn(async move {
            let _ = handle.await;
        });
    }
    Ok(Some(manager))
}

/// Keeps the agent's own gauges and the observer-queue loss counter current.
async fn self_metrics(observer: Arc<LocalObserver>, agent: Arc<AgentMetrics>, flows: Arc<Metrics>) {
    let mut seen = 0;
    let mut discards = 0;
    let mut tick = tokio::time::interval(SELF_METRICS_INTERVAL);
    loop {
        tick.tick().await;
        let status = observer.status();
        agent.set_ring(status.num_flows, status.max_flows);
        agent.events_seen(status.seen_flows.saturating_sub(seen));
        seen = status.seen_flows;
        agent.set_unparsable_records(
            super::pipeline::UNPARSABLE_RECORDS.load(std::sync::atomic::Ordering::Relaxed),
        );
        agent.set_fqdn_cache_evictions(
            crate::fqdn::FQDN_CACHE_EVICTIONS.load(std::sync::atomic::Ordering::Relaxed),
        );
        agent.set_fqdn_policy(
            crate::policy::FQDN_IDENTITIES_REFUSED.load(std::sync::atomic::Ordering::Relaxed),
            crate::fqdn::FQDN_ANSWERS_RELEASED_UNPROGRAMMED
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let total = observer.queue_discards();
        if total > discards {
            flows.lost_events(
                metrics::lost_event_source_label(LostEventSource::ObserverEventsQueue),
                total - discards,
            );
            discards = total;
        }
    }
}
