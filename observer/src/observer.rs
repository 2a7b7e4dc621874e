//! The observer of one node: its rings, its counters and its configuration. The gRPC
//! service (`server`) reads from it; the agent writes into it through the
//! [`IngestHandle`] returned at creation.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proto::flow::{AgentEvent, DebugEvent};
use proto::observer::{Namespace, ServerStatusResponse};

use crate::compact;
use crate::error::ObserverError;
use crate::event_rings::{EventRing, EventWriter, AGENT_EVENTS_CAPACITY, DEBUG_EVENTS_CAPACITY};
use crate::ingest::{self, IngestHandle, IngestStats, WriterContext, Writers};
use crate::namespaces::Namespaces;
use crate::ring::{Read, DEFAULT_CAPACITY};
use crate::store::{FlowStore, RawEvent};

/// The cluster name Cilium assumes when none is configured.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// How an observer is set up.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// This node's name, sent with every response that is not a flow.
    pub node_name: String,
    /// The cluster this node belongs to (GetNamespaces reports it).
    pub cluster_name: String,
    /// Flows the ring keeps: 2^n - 1.
    pub ring_capacity: u64,
    /// Agent events kept: 2^n - 1.
    pub agent_events_capacity: u64,
    /// Debug events kept: 2^n - 1.
    pub debug_events_capacity: u64,
    /// The version ServerStatus reports.
    pub version: String,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            cluster_name: DEFAULT_CLUSTER_NAME.to_string(),
            ring_capacity: DEFAULT_CAPACITY,
            agent_events_capacity: AGENT_EVENTS_CAPACITY,
            debug_events_capacity: DEBUG_EVENTS_CAPACITY,
            version: format!("hubble-rs v{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A node's observer: rings, counters and configuration.
pub struct LocalObserver {
    pub(crate) config: ObserverConfig,
    pub(crate) flows: FlowStore,
    pub(crate) agent_events: Arc<EventRing<AgentEvent>>,
    pub(crate) debug_events: Arc<EventRing<DebugEvent>>,
    stats: Arc<IngestStats>,
    namespaces: Arc<Mutex<Namespaces>>,
    started: Instant,
}

impl LocalObserver {
    /// Creates the observer and starts its ring writer. Push flows and events through
    /// the returned handle; the writer stops when every handle is dropped.
    pub fn new(config: ObserverConfig) -> Result<(Arc<Self>, IngestHandle), ObserverError> {
        let (flow_writer, flows) = FlowStore::new(config.ring_capacity)?;
        let (agent, agent_events) = EventWriter::new(config.agent_events_capacity)?;
        let (debug, debug_events) = EventWriter::new(config.debug_events_capacity)?;
        let stats = Arc::new(IngestStats::default());
        let namespaces = Arc::new(Mutex::new(Namespaces::default()));
        let handle = ingest::start(
            Writers {
                flows: flow_writer,
                agent,
                debug,
            },
            WriterContext {
                stats: Arc::clone(&stats),
                namespaces: Arc::clone(&namespaces),
            },
        )
        .map_err(|_| ObserverError::ShuttingDown)?;
        let observer = Arc::new(Self {
            config,
            flows,
            agent_events,
            debug_events,
            stats,
            namespaces,
            started: Instant::now(),
        });
        Ok((observer, handle))
    }

    /// The configuration.
    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    /// The flow ring.
    pub fn flows(&self) -> &FlowStore {
        &self.flows
    }

    /// Flows written into the ring since start.
    pub fn seen_flows(&self) -> u64 {
        self.stats.seen_flows.load(Ordering::Relaxed)
    }

    /// Events discarded because the ingest queue was full, since start.
    pub fn queue_discards(&self) -> u64 {
        self.stats.queue_discards.load(Ordering::Relaxed)
    }

    /// Namespaces seen in flows during the last `NAMESPACE_TTL`, with this node's
    /// cluster name, sorted.
    pub fn namespaces(&self) -> Vec<Namespace> {
        let names = self
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .list(Instant::now());
        names
            .into_iter()
            .map(|namespace| Namespace {
                cluster: self.config.cluster_name.clone(),
                namespace,
            })
            .collect()
    }

    /// New namespaces discarded because `MAX_NAMESPACES` were kept, since start.
    pub fn namespaces_discarded(&self) -> u64 {
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .discarded()
    }

    /// The answer to ServerStatus.
    pub fn status(&self) -> ServerStatusResponse {
        let ring = self.flows.ring();
        ServerStatusResponse {
            num_flows: ring.len(),
            max_flows: ring.capacity(),
            seen_flows: self.seen_flows(),
            uptime_ns: u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            version: self.config.version.clone(),
            flows_rate: self.flows_rate(ingest::now_timestamp()),
            ..Default::default()
        }
    }

    /// Flows per second over the last minute, as upstream computes it: the flows whose
    /// time is within a minute of `now`, divided by a minute, or by the time since the
    /// oldest flow when the ring no longer reaches back a minute.
    pub fn flows_rate(&self, now: pbjson_types::Timestamp) -> f64 {
        let now_s = now.seconds as f64 + f64::from(now.nanos) / 1e9;
        let mut since = now_s - 60.0;
        let ring = self.flows.ring();
        let mut pos = ring.written();
        let mut count = 0u64;
        let mut oldest_seen = None;
        while let Some(prev) = pos.checked_sub(1) {
            pos = prev;
            match ring.read(pos) {
                Read::Value(RawEvent { head, .. }) => {
                    if compact::kind(&head) == compact::KIND_LOST {
                        continue;
                    }
                    let Some(t) = compact::time(&head) else {
                        continue;
                    };
                    let t = t.seconds as f64 + f64::from(t.nanos) / 1e9;
                    if t < since {
                        break;
                    }
                    oldest_seen = Some(t);
                    count += 1;
                }
                Read::Ahead => continue,
                Read::Overwritten { .. } => {
                    if let Some(t) = oldest_seen {
                        since = t;
                    }
                    break;
                }
            }
        }
        let span = now_s - since;
        if span > 0.0 {
            count as f64 / span
        } else {
            0.0
        }
    }
}
