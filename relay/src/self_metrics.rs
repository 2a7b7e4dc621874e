//! The relay's own metrics: `hubble_relay_pool_peer_connection_status{status}`
//! (upstream's name), flows forwarded, responses dropped and node responses refused,
//! served on `--metrics-listen-address`.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exposition::{Collect, FamilySnapshot, Kind, SeriesSnapshot, Value};

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
    invalid_responses: AtomicU64,
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

    /// Counts a node response refused because a client could not decode it (each
    /// refusal ends that node's stream in one request).
    pub fn invalid_response(&self) {
        self.invalid_responses.fetch_add(1, Ordering::Relaxed);
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
        out.push(FamilySnapshot::counter(
            "hubble_relay_flows_forwarded_total",
            "Number of flows forwarded to clients",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.flows_forwarded.load(Ordering::Relaxed),
            )],
        ));
        out.push(FamilySnapshot::counter(
            "hubble_relay_responses_dropped_total",
            "Number of node responses dropped because a following client could not keep up",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.responses_dropped.load(Ordering::Relaxed),
            )],
        ));
        out.push(FamilySnapshot::counter(
            "hubble_relay_invalid_responses_total",
            "Number of node responses refused because a client could not decode them; each ends that node's stream for one request",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.invalid_responses.load(Ordering::Relaxed),
            )],
        ));
    }
}

#[cfg(test)]
mod tests;
