//! Self-metrics of the agent (ring fill, events seen, gRPC requests) and of the relay
//! (peer connection status, flows forwarded). Components update them through the
//! methods below; register them in the [`crate::Registry`] their server exposes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::exposition::{Collect, FamilySnapshot, Kind, SeriesSnapshot, Value};
use crate::metrics::counter_series;

/// The kind of a gRPC method, as `go-grpc-prometheus` labels it (`grpc_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    fn as_str(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

type GrpcKey = (GrpcType, String, String);

/// The agent's own metrics: the flow ring, events seen, and gRPC requests by method
/// with `go-grpc-prometheus`'s names, which upstream serves next to Hubble's.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    ring_flows: AtomicU64,
    ring_capacity: AtomicU64,
    events_seen: AtomicU64,
    grpc_started: Mutex<BTreeMap<GrpcKey, u64>>,
    grpc_handled: Mutex<BTreeMap<(GrpcKey, String), u64>>,
}

impl AgentMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many flows the ring holds and how many it can hold.
    pub fn set_ring(&self, flows: u64, capacity: u64) {
        self.ring_flows.store(flows, Ordering::Relaxed);
        self.ring_capacity.store(capacity, Ordering::Relaxed);
    }

    /// Counts `n` events received from the datapath.
    pub fn events_seen(&self, n: u64) {
        self.events_seen.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a gRPC call that started (`grpc_server_started_total`).
    pub fn grpc_started(&self, kind: GrpcType, service: &str, method: &str) {
        let key = (kind, service.to_owned(), method.to_owned());
        *self
            .grpc_started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(0) += 1;
    }

    /// Counts a gRPC call that finished with `code` (`OK`, `InvalidArgument`, ...)
    /// (`grpc_server_handled_total`).
    pub fn grpc_handled(&self, kind: GrpcType, service: &str, method: &str, code: &str) {
        let key = (
            (kind, service.to_owned(), method.to_owned()),
            code.to_owned(),
        );
        *self
            .grpc_handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(0) += 1;
    }
}

fn grpc_labels(key: &GrpcKey) -> Vec<(String, String)> {
    vec![
        ("grpc_type".to_owned(), key.0.as_str().to_owned()),
        ("grpc_service".to_owned(), key.1.clone()),
        ("grpc_method".to_owned(), key.2.clone()),
    ]
}

fn gauge(name: &str, help: &str, value: f64) -> FamilySnapshot {
    FamilySnapshot {
        name: name.to_owned(),
        help: help.to_owned(),
        kind: Kind::Gauge,
        series: vec![SeriesSnapshot {
            labels: Vec::new(),
            value: Value::Gauge(value),
        }],
    }
}

fn counter(name: &str, help: &str, series: Vec<SeriesSnapshot>) -> FamilySnapshot {
    FamilySnapshot {
        name: name.to_owned(),
        help: help.to_owned(),
        kind: Kind::Counter,
        series,
    }
}

fn count(labels: Vec<(String, String)>, n: u64) -> SeriesSnapshot {
    SeriesSnapshot {
        labels,
        value: Value::Counter {
            value: n as f64,
            exemplar: None,
        },
    }
}

impl Collect for AgentMetrics {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        out.push(gauge(
            "hubble_observer_ring_flows",
            "Number of flows held in the flow ring",
            self.ring_flows.load(Ordering::Relaxed) as f64,
        ));
        out.push(gauge(
            "hubble_observer_ring_capacity",
            "Number of flows the flow ring can hold",
            self.ring_capacity.load(Ordering::Relaxed) as f64,
        ));
        out.push(counter(
            "hubble_observer_events_seen_total",
            "Number of events received from the datapath",
            vec![count(Vec::new(), self.events_seen.load(Ordering::Relaxed))],
        ));
        let started = self
            .grpc_started
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        out.push(counter(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            started
                .iter()
                .map(|(k, n)| count(grpc_labels(k), *n))
                .collect(),
        ));
        drop(started);
        let handled = self
            .grpc_handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        out.push(counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            handled
                .iter()
                .map(|((k, code), n)| {
                    let mut labels = grpc_labels(k);
                    labels.push(("grpc_code".to_owned(), code.clone()));
                    count(labels, *n)
                })
                .collect(),
        ));
    }
}

/// The connection state of a relay's peer, as gRPC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerConnectionStatus {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
    Shutdown,
    /// The peer has no connection at all.
    NilConnection,
}

impl PeerConnectionStatus {
    const ALL: [PeerConnectionStatus; 6] = [
        PeerConnectionStatus::Idle,
        PeerConnectionStatus::Connecting,
        PeerConnectionStatus::Ready,
        PeerConnectionStatus::TransientFailure,
        PeerConnectionStatus::Shutdown,
        PeerConnectionStatus::NilConnection,
    ];

    fn label(self) -> &'static str {
        match self {
            PeerConnectionStatus::Idle => "IDLE",
            PeerConnectionStatus::Connecting => "CONNECTING",
            PeerConnectionStatus::Ready => "READY",
            PeerConnectionStatus::TransientFailure => "TRANSIENT_FAILURE",
            PeerConnectionStatus::Shutdown => "SHUTDOWN",
            PeerConnectionStatus::NilConnection => "NIL_CONNECTION",
        }
    }
}

/// The relay's own metrics: `hubble_relay_pool_peer_connection_status{status}` (upstream's
/// name) and the number of flows forwarded to clients.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    peers: [AtomicU64; 6],
    flows_forwarded: AtomicU64,
    responses_dropped: AtomicU64,
}

impl RelayMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of peers in each status; statuses not listed read 0.
    pub fn set_peer_connection_status(&self, counts: &[(PeerConnectionStatus, u64)]) {
        for (index, status) in PeerConnectionStatus::ALL.iter().enumerate() {
            let n = counts
                .iter()
                .filter(|(s, _)| s == status)
                .map(|(_, n)| n)
                .sum();
            self.peers[index].store(n, Ordering::Relaxed);
        }
    }

    /// Counts `n` flows sent to clients.
    pub fn flows_forwarded(&self, n: u64) {
        self.flows_forwarded.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` node responses dropped because a following client could not keep up
    /// (each one reaches that client as part of a LostEvent).
    pub fn responses_dropped(&self, n: u64) {
        self.responses_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Node responses dropped so far.
    pub fn responses_dropped_total(&self) -> u64 {
        self.responses_dropped.load(Ordering::Relaxed)
    }
}

impl Collect for RelayMetrics {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        let series = PeerConnectionStatus::ALL
            .iter()
            .zip(&self.peers)
            .map(|(status, n)| SeriesSnapshot {
                labels: vec![("status".to_owned(), status.label().to_owned())],
                value: Value::Gauge(n.load(Ordering::Relaxed) as f64),
            })
            .collect();
        out.push(FamilySnapshot {
            name: "hubble_relay_pool_peer_connection_status".to_owned(),
            help: "Measures the connectivity status of all peers by counting the number of peers for each given connection status.".to_owned(),
            kind: Kind::Gauge,
            series,
        });
        out.push(counter(
            "hubble_relay_flows_forwarded_total",
            "Number of flows forwarded to clients",
            vec![counter_series_unlabelled(
                self.flows_forwarded.load(Ordering::Relaxed),
            )],
        ));
        out.push(counter(
            "hubble_relay_responses_dropped_total",
            "Number of node responses dropped because a following client could not keep up",
            vec![counter_series_unlabelled(
                self.responses_dropped.load(Ordering::Relaxed),
            )],
        ));
    }
}

fn counter_series_unlabelled(n: u64) -> SeriesSnapshot {
    let mut series = counter_series("", "", n);
    series.labels.clear();
    series
}
