//! [`Registry`]: the metric sources one server exposes.

use std::sync::Arc;

use crate::{Collect, FamilySnapshot, Format};

/// The metric sources one `/metrics` endpoint serves. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    sources: Vec<Arc<dyn Collect>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source; its families appear in every later scrape.
    pub fn register(&mut self, source: Arc<dyn Collect>) {
        self.sources.push(source);
    }

    /// Snapshots every source.
    pub fn gather(&self) -> Vec<FamilySnapshot> {
        let mut families = Vec::new();
        for source in &self.sources {
            source.collect(&mut families);
        }
        families
    }

    /// Gathers and prints every source in `format`.
    pub fn encode(&self, format: Format) -> String {
        crate::encode(self.gather(), format)
    }
}

/// Lets a `prometheus-client` registry (as used by other components) include these
/// families, via `prometheus_client::registry::Registry::register_collector`. This path
/// prints OpenMetrics without exemplars.
#[cfg(feature = "prometheus-client")]
mod prometheus_client_bridge {
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;

    use super::Registry;
    use crate::{Kind, Value};

    impl prometheus_client::collector::Collector for Registry {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let mut families = self.gather();
            crate::normalize(&mut families);
            for family in families.iter().filter(|f| !f.series.is_empty()) {
                let (name, metric_type) = match family.kind {
                    Kind::Counter => (
                        family.name.strip_suffix("_total").unwrap_or(&family.name),
                        MetricType::Counter,
                    ),
                    Kind::Gauge => (family.name.as_str(), MetricType::Gauge),
                    Kind::Histogram => (family.name.as_str(), MetricType::Histogram),
                };
                let mut metric =
                    encoder.encode_descriptor(name, &family.help, None, metric_type)?;
                for series in &family.series {
                    let labels = &series.labels;
                    let mut sample = metric.encode_family(labels)?;
                    match &series.value {
                        Value::Counter { value, .. } => ConstCounter::new(*value).encode(sample)?,
                        Value::Gauge(value) => ConstGauge::new(*value).encode(sample)?,
                        Value::Histogram {
                            buckets,
                            sum,
                            count,
                            ..
                        } => {
                            // prometheus-client wants per-bucket counts, +Inf as f64::MAX.
                            let mut previous = 0;
                            let mut per_bucket: Vec<(f64, u64)> = buckets
                                .iter()
                                .map(|(upper, cumulative)| {
                                    let n = cumulative - previous;
                                    previous = *cumulative;
                                    (*upper, n)
                                })
                                .collect();
                            per_bucket.push((f64::MAX, count - previous));
                            sample.encode_histogram::<()>(*sum, *count, &per_bucket, None)?;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}
