//! [`ExportManager`]: the set of running exporters, reconfigured as a whole.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::Utc;
use pbjson_types::Timestamp;
use proto::flow::{Flow, LostEvent};

use super::config::ExporterConfig;
use super::exporter::{ExportItem, ExporterStats, Prepared, RunningExporter};
use crate::error::ExportError;
use crate::exposition::{Collect, FamilySnapshot, Kind, SeriesSnapshot, Value};
use crate::metrics::counter_series;

#[derive(Default)]
struct Control {
    running: BTreeMap<String, Arc<RunningExporter>>,
    /// Kept across restarts of an exporter so that its counters do not reset.
    stats: BTreeMap<String, Arc<ExporterStats>>,
    reconfigurations: BTreeMap<&'static str, u64>,
    config_errors: u64,
    config_hash: Option<u64>,
    last_applied: Option<f64>,
}

/// Runs the exporters of a configuration and hands them every flow.
#[derive(Default)]
pub struct ExportManager {
    control: Mutex<Control>,
    /// The exporters flows go to, read on every flow.
    targets: RwLock<Vec<Arc<RunningExporter>>>,
}

impl ExportManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `configs` the running set: exporters not listed stop (after writing what
    /// they have queued), changed ones restart, new ones start. Every configuration is
    /// checked first; on error nothing changes.
    pub fn apply(&self, configs: Vec<ExporterConfig>) -> Result<(), ExportError> {
        let mut prepared = BTreeMap::new();
        for config in configs {
            if prepared.contains_key(&config.name) {
                return Err(ExportError::Invalid {
                    name: config.name,
                    reason: "name used twice".to_owned(),
                });
            }
            prepared.insert(config.name.clone(), Prepared::new(config)?);
        }
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        let stopping: Vec<String> = control
            .running
            .iter()
            .filter(|(name, running)| {
                prepared
                    .get(*name)
                    .is_none_or(|p| p.config != running.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        // Stop before starting, so that a restarted exporter never shares its file.
        let mut stopped = Vec::new();
        for name in &stopping {
            if let Some(running) = control.running.remove(name) {
                stopped.push(running);
            }
        }
        self.publish(&control);
        for running in stopped {
            let op = if prepared.contains_key(&running.config.name) {
                "update"
            } else {
                "remove"
            };
            *control.reconfigurations.entry(op).or_insert(0) += 1;
            match Arc::try_unwrap(running) {
                Ok(running) => running.stop(),
                Err(shared) => drop(shared),
            }
        }
        for (name, prepared) in prepared {
            if control.running.contains_key(&name) {
                continue;
            }
            let stats = control.stats.entry(name.clone()).or_default().clone();
            let updated = stopping.contains(&name);
            match RunningExporter::start(prepared, stats) {
                Ok(running) => {
                    if !updated {
                        *control.reconfigurations.entry("add").or_insert(0) += 1;
                    }
                    tracing::info!(exporter = %name, "flow exporter started");
                    control.running.insert(name, Arc::new(running));
                }
                Err(e) => {
                    tracing::error!(exporter = %name, error = %e, "cannot start flow exporter")
                }
            }
        }
        control.last_applied = Some(now_seconds());
        self.publish(&control);
        Ok(())
    }

    fn publish(&self, control: &Control) {
        let targets = control.running.values().cloned().collect();
        *self.targets.write().unwrap_or_else(PoisonError::into_inner) = targets;
    }

    /// Records the hash of the configuration file last applied.
    pub(crate) fn set_config_hash(&self, hash: u64) {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config_hash = Some(hash);
    }

    /// Counts a configuration that could not be applied.
    pub(crate) fn config_error(&self) {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config_errors += 1;
    }

    /// Hands `flow` to every exporter without waiting.
    pub fn export_flow(&self, flow: &Arc<Flow>) {
        let targets = self.targets.read().unwrap_or_else(PoisonError::into_inner);
        for target in targets.iter() {
            target.offer(ExportItem::Flow(flow.clone()));
        }
    }

    /// Hands a lost-event notice to every exporter without waiting.
    pub fn export_lost(&self, event: LostEvent, node_name: &str, time: Timestamp) {
        let targets = self.targets.read().unwrap_or_else(PoisonError::into_inner);
        let event = Arc::new(event);
        let node_name: Arc<str> = node_name.into();
        for target in targets.iter() {
            target.offer(ExportItem::Lost {
                event: event.clone(),
                node_name: node_name.clone(),
                time,
            });
        }
    }

    /// The counters of exporter `name`, if it ever ran.
    pub fn stats(&self, name: &str) -> Option<Arc<ExporterStats>> {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats
            .get(name)
            .cloned()
    }

    /// The names of the running exporters.
    pub fn running(&self) -> Vec<String> {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running
            .keys()
            .cloned()
            .collect()
    }

    /// Stops every exporter after it has written what it has queued.
    pub fn stop_all(&self) {
        // An empty set is always valid.
        let _ = self.apply(Vec::new());
    }
}

fn now_seconds() -> f64 {
    Utc::now().timestamp_millis() as f64 / 1000.0
}

fn family(name: &str, help: &str, kind: Kind, series: Vec<SeriesSnapshot>) -> FamilySnapshot {
    FamilySnapshot {
        name: name.to_owned(),
        help: help.to_owned(),
        kind,
        series,
    }
}

fn gauge(labels: Vec<(String, String)>, value: f64) -> SeriesSnapshot {
    SeriesSnapshot {
        labels,
        value: Value::Gauge(value),
    }
}

impl Collect for ExportManager {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        let control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        let active = control
            .running
            .values()
            .filter(|r| r.config.is_active(now))
            .count();
        let inactive = control.running.len() - active;
        out.push(family(
            "hubble_dynamic_exporter_exporters_total",
            "Number of configured hubble exporters",
            Kind::Gauge,
            vec![
                gauge(vec![("status".into(), "active".into())], active as f64),
                gauge(vec![("status".into(), "inactive".into())], inactive as f64),
            ],
        ));
        out.push(family(
            "hubble_dynamic_exporter_up",
            "Status of exporter (1 - active, 0 - inactive)",
            Kind::Gauge,
            control
                .running
                .iter()
                .map(|(name, r)| {
                    let up = if r.config.is_active(now) { 1.0 } else { 0.0 };
                    gauge(vec![("name".into(), name.clone())], up)
                })
                .collect(),
        ));
        out.push(family(
            "hubble_dynamic_exporter_reconfigurations_total",
            "Number of dynamic exporters reconfigurations",
            Kind::Counter,
            control
                .reconfigurations
                .iter()
                .map(|(op, n)| counter_series("op", op, *n))
                .collect(),
        ));
        if let Some(hash) = control.config_hash {
            out.push(family(
                "hubble_dynamic_exporter_config_hash",
                "Hash of last applied config",
                Kind::Gauge,
                vec![gauge(Vec::new(), (hash & 0xffff_ffff) as f64)],
            ));
        }
        if let Some(at) = control.last_applied {
            out.push(family(
                "hubble_dynamic_exporter_config_last_applied",
                "Timestamp of last applied config",
                Kind::Gauge,
                vec![gauge(Vec::new(), at)],
            ));
        }
        out.push(family(
            "hubble_dynamic_exporter_config_errors_total",
            "Number of exporter configurations that could not be applied",
            Kind::Counter,
            vec![counter_series("", "", control.config_errors)]
                .into_iter()
                .map(|mut s| {
                    s.labels.clear();
                    s
                })
                .collect(),
        ));
        let per_exporter = |read: fn(&ExporterStats) -> u64| {
            control
                .stats
                .iter()
                .map(|(name, stats)| counter_series("name", name, read(stats)))
                .collect::<Vec<_>>()
        };
        out.push(family(
            "hubble_export_events_total",
            "Number of events written to flow logs",
            Kind::Counter,
            per_exporter(|s| s.written.load(Ordering::Relaxed)),
        ));
        out.push(family(
            "hubble_export_errors_total",
            "Number of events lost to flow log write errors",
            Kind::Counter,
            per_exporter(|s| s.errors.load(Ordering::Relaxed)),
        ));
        out.push(family(
            "hubble_export_discarded_total",
            "Number of events dropped because a flow log queue was full",
            Kind::Counter,
            per_exporter(|s| s.discarded.load(Ordering::Relaxed)),
        ));
    }
}
