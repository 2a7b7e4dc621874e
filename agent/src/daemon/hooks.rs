//! Hooks that see every flow before the ring does, as Hubble runs them: metrics, then
//! export. Both are optional; neither ever blocks the pipeline.

use std::sync::Arc;

use metrics::export::ExportManager;
use metrics::Metrics;
use proto::flow::{Flow, LostEventSource};

/// The per-flow hooks of the agent.
#[derive(Clone, Default)]
pub struct FlowHooks {
    pub metrics: Option<Arc<Metrics>>,
    pub export: Option<Arc<ExportManager>>,
}

impl FlowHooks {
    /// Runs the hooks on `flow` and hands it back for the ring.
    pub fn on_flow(&self, flow: Flow) -> Flow {
        if let Some(metrics) = &self.metrics {
            metrics.process_flow(&flow);
        }
        match &self.export {
            Some(export) => {
                let shared = Arc::new(flow);
                export.export_flow(&shared);
                Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone())
            }
            None => flow,
        }
    }

    /// Counts `n` events lost at `source`.
    pub fn on_lost(&self, source: LostEventSource, n: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.lost_events(metrics::lost_event_source_label(source), n);
        }
    }

    /// Starts removing a deleted pod's series (after the grace period).
    pub fn on_endpoint_deleted(&self, namespace: &str, pod: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.on_endpoint_deleted(namespace, pod);
        }
    }
}
