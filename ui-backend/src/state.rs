//! What the UI knows: recent flows, the service map, the server's nodes and losses.
//!
//! One `State` sits behind a mutex shared by the upstream reader (the only writer), the
//! broadcaster and the HTTP handlers. Every critical section is short: a push, a map
//! update, or a scan of the ring that copies out `Arc`s.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::flow::{Flow, LostEvent, LostEventSource};
use proto::observer::{GetNodesResponse, ServerStatusResponse};
use proto::relay::{NodeState, NodeStatusEvent};
use serde::Serialize;

use crate::broadcast::Subscriber;
use crate::map::ServiceMap;
use crate::ring::FlowRing;

/// Window over which the flow rate is averaged.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The state shared by all tasks of one `hubble-ui`.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
}

impl Shared {
    /// Creates the state with a ring of `ring_capacity` flows.
    pub fn new(server: String, ring_capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                ring: FlowRing::new(ring_capacity),
                map: ServiceMap::default(),
                upstream: Upstream {
                    server,
                    ..Upstream::default()
                },
                rate: RateMeter::default(),
                subscribers: Vec::new(),
                delivery: DeliveryCounters::default(),
            }),
        })
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves consistent data
    /// (every update is a few plain assignments), so a poisoned lock is taken as is.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores one flow: ring, map and rate. The JSON is printed before taking the lock.
    pub fn ingest(&self, flow: Flow) {
        let json = crate::ring::page_json(&flow);
        let mut state = self.lock();
        state.map.add(&flow);
        if !flow.node_name.is_empty() && !state.upstream.nodes.contains_key(&flow.node_name) {
            let name = flow.node_name.clone();
            state.upstream.nodes.insert(name, "SEEN".to_string());
        }
        state.ring.push(flow, json);
        state.upstream.flows_received += 1;
        state.rate.count(Instant::now());
    }
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct State {
    pub ring: FlowRing,
    pub map: ServiceMap,
    pub upstream: Upstream,
    pub rate: RateMeter,
    /// Browsers waiting for updates; the broadcaster takes them out while it serves
    /// them and puts back those still there.
    pub subscribers: Vec<Subscriber>,
    /// The broadcaster's counters of what browsers missed.
    pub delivery: DeliveryCounters,
}

/// What is known about the Hubble server and its nodes.
#[derive(Debug, Default)]
pub struct Upstream {
    /// The address read from, as given.
    pub server: String,
    /// Whether the follow stream is open.
    pub connected: bool,
    /// Why the last connection attempt or stream failed.
    pub last_error: Option<String>,
    /// Number of times the follow stream was opened.
    pub connections: u64,
    /// Flows received since start.
    pub flows_received: u64,
    /// Node name -> state (`NODE_CONNECTED`, `NODE_UNAVAILABLE`, ..., or `SEEN` for a
    /// node known only from its flows).
    pub nodes: BTreeMap<String, String>,
    /// The last ServerStatus answer, if the last poll succeeded.
    pub server_status: Option<ServerStatusResponse>,
    /// Lost events by source name.
    pub lost: BTreeMap<String, u64>,
}

impl Upstream {
    /// Applies a NodeStatusEvent of the relay.
    pub fn node_event(&mut self, event: &NodeStatusEvent) {
        let state = NodeState::try_from(event.state_change)
            .map_or("UNKNOWN_NODE_STATE", |s| s.as_str_name());
        for name in &event.node_names {
            if state == "NODE_GONE" {
                self.nodes.remove(name);
            } else {
                self.nodes.insert(name.clone(), state.to_string());
            }
        }
    }

    /// Applies a GetNodes answer: the relay's own view replaces what events said.
    pub fn node_list(&mut self, answer: &GetNodesResponse) {
        for node in &answer.nodes {
            let state =
                NodeState::try_from(node.state).map_or("UNKNOWN_NODE_STATE", |s| s.as_str_name());
            self.nodes.insert(node.name.clone(), state.to_string());
        }
    }

    /// Counts a LostEvent.
    pub fn lost_event(&mut self, event: &LostEvent) {
        let source = LostEventSource::try_from(event.source)
            .map_or("UNKNOWN_LOST_EVENT_SOURCE", |s| s.as_str_name());
        *self.lost.entry(source.to_string()).or_insert(0) += event.num_events_lost;
    }
}

/// Flows per second over the last few seconds, from per-second buckets.
#[derive(Debug, Default)]
pub struct RateMeter {
    buckets: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Counts one flow seen at `now`.
    pub fn count(&mut self, now: Instant) {
        match self.buckets.back_mut() {
            Some((start, n)) if now.duration_since(*start) < Duration::from_secs(1) => *n += 1,
            _ => self.buckets.push_back((now, 1)),
        }
        while let Some((start, _)) = self.buckets.front() {
            if now.duration_since(*start) > RATE_WINDOW {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// Average flows per second over the window ending at `now` (over the time since
    /// the first flow when that is shorter, but at least one second).
    pub fn per_second(&self, now: Instant) -> f64 {
        let recent = self
            .buckets
            .iter()
            .filter(|(start, _)| now.duration_since(*start) <= RATE_WINDOW);
        let (total, oldest) = recent.fold((0u64, now), |(n, oldest), (start, count)| {
            (n + count, oldest.min(*start))
        });
        let span = now.duration_since(oldest).max(Duration::from_secs(1));
        total as f64 / span.as_secs_f64()
    }
}

/// Counters of the UI's own discards, kept by the broadcaster.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct DeliveryCounters {
    /// Browsers currently subscribed.
    pub subscribers: usize,
    /// Updates not delivered because a browser's queue was full.
    pub missed_updates: u64,
    /// Flows in those updates.
    pub missed_flows: u64,
    /// Flows left out of updates: overwritten in the ring before they were sent, or
    /// past the per-update cap.
    pub skipped_flows: u64,
}

/// What `/api/status` returns and the page's header shows.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub server: String,
    pub connected: bool,
    pub last_error: Option<String>,
    pub connections: u64,
    pub flows_received: u64,
    pub flows_per_second: f64,
    pub connected_nodes: u32,
    pub unavailable_nodes: Vec<String>,
    pub nodes: BTreeMap<String, String>,
    /// The server's figures from ServerStatus: flows in its ring, its capacity, flows
    /// seen, its own rate and version.
    pub server_num_flows: Option<u64>,
    pub server_max_flows: Option<u64>,
    pub server_seen_flows: Option<u64>,
    pub server_flows_rate: Option<f64>,
    pub server_version: Option<String>,
    pub lost_events_total: u64,
    pub lost_events: BTreeMap<String, u64>,
    pub ring_flows: usize,
    pub ring_capacity: usize,
    pub delivery: DeliveryCounters,
}

impl State {
    /// The status as shown to users.
    pub fn status_view(&self) -> StatusView {
        let up = &self.upstream;
        let status = up.server_status.as_ref();
        let mut unavailable: Vec<String> = up
            .nodes
            .iter()
            .filter(|(_, s)| matches!(s.as_str(), "NODE_UNAVAILABLE" | "NODE_ERROR"))
            .map(|(n, _)| n.clone())
            .collect();
        if let Some(names) = status
            .map(|s| &s.unavailable_nodes)
            .filter(|n| !n.is_empty())
        {
            unavailable.clone_from(names);
        }
        let from_nodes = up
            .nodes
            .values()
            .filter(|s| matches!(s.as_str(), "NODE_CONNECTED" | "SEEN"))
            .count();
        let connected_nodes = status
            .and_then(|s| s.num_connected_nodes.as_ref().map(|n| n.value))
            .unwrap_or_else(|| {
                if up.connected {
                    u32::try_from(from_nodes.max(1)).unwrap_or(u32::MAX)
                } else {
                    0
                }
            });
        StatusView {
            server: up.server.clone(),
            connected: up.connected,
            last_error: up.last_error.clone(),
            connections: up.connections,
            flows_received: up.flows_received,
            flows_per_second: self.rate.per_second(Instant::now()),
            connected_nodes,
            unavailable_nodes: unavailable,
            nodes: up.nodes.clone(),
            server_num_flows: status.map(|s| s.num_flows),
            server_max_flows: status.map(|s| s.max_flows),
            server_seen_flows: status.map(|s| s.seen_flows),
            server_flows_rate: status.map(|s| s.flows_rate),
            server_version: status.map(|s| s.version.clone()),
            lost_events_total: up.lost.values().sum(),
            lost_events: up.lost.clone(),
            ring_flows: self.ring.len(),
            ring_capacity: self.ring.capacity(),
            delivery: self.delivery,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_averaged_over_the_window() {
        let mut meter = RateMeter::default();
        let start = Instant::now();
        for second in 0..10u64 {
            for i in 0..100u64 {
                meter.count(start + Duration::from_millis(second * 1000 + i * 10));
            }
        }
        let rate = meter.per_second(start + Duration::from_secs(10));
        assert!((80.0..=120.0).contains(&rate), "{rate}");
        // Long after the last flow the rate falls to zero.
        assert_eq!(meter.per_second(start + Duration::from_secs(30)), 0.0);
    }
}
