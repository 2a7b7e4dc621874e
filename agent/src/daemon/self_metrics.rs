//! The agent's own metrics: ring fill, events seen, and gRPC requests by method with
//! `go-grpc-prometheus`'s names, served on the agent's `/metrics` next to the flow
//! handlers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use metrics_exposition::{Collect, FamilySnapshot, SeriesSnapshot};

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
    unparsable_records: AtomicU64,
    fqdn_cache_evictions: AtomicU64,
    fqdn_identities_refused: AtomicU64,
    fqdn_answers_unprogrammed: AtomicU64,
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

    /// Sets how many datapath records could not be parsed since the agent started
    /// (`daemon::pipeline::UNPARSABLE_RECORDS`).
    pub fn set_unparsable_records(&self, total: u64) {
        self.unparsable_records.store(total, Ordering::Relaxed);
    }

    /// Sets how many FQDN cache entries were dropped at a bound since the agent
    /// started (`agent::fqdn::FQDN_CACHE_EVICTIONS`).
    pub fn set_fqdn_cache_evictions(&self, total: u64) {
        self.fqdn_cache_evictions.store(total, Ordering::Relaxed);
    }

    /// Sets how many addresses selected by `toFQDNs` the latest compilation left
    /// without an identity (`agent::policy::FQDN_IDENTITIES_REFUSED`), and how many
    /// answers were released before the datapath had their addresses
    /// (`agent::fqdn::FQDN_ANSWERS_RELEASED_UNPROGRAMMED`).
    pub fn set_fqdn_policy(&self, refused: u64, unprogrammed: u64) {
        self.fqdn_identities_refused
            .store(refused, Ordering::Relaxed);
        self.fqdn_answers_unprogrammed
            .store(unprogrammed, Ordering::Relaxed);
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

impl Collect for AgentMetrics {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        out.push(FamilySnapshot::gauge(
            "hubble_observer_ring_flows",
            "Number of flows held in the flow ring",
            self.ring_flows.load(Ordering::Relaxed) as f64,
        ));
        out.push(FamilySnapshot::gauge(
            "hubble_observer_ring_capacity",
            "Number of flows the flow ring can hold",
            self.ring_capacity.load(Ordering::Relaxed) as f64,
        ));
        out.push(FamilySnapshot::counter(
            "hubble_observer_events_seen_total",
            "Number of events received from the datapath",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.events_seen.load(Ordering::Relaxed),
            )],
        ));
        out.push(FamilySnapshot::counter(
            "hubble_observer_events_unparsable_total",
            "Number of datapath records skipped because they could not be parsed",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.unparsable_records.load(Ordering::Relaxed),
            )],
        ));
        out.push(FamilySnapshot::counter(
            "hubble_agent_fqdn_cache_evictions_total",
            "Number of FQDN cache entries dropped because a cache bound was reached",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.fqdn_cache_evictions.load(Ordering::Relaxed),
            )],
        ));
        out.push(FamilySnapshot::gauge(
            "hubble_agent_fqdn_identities_refused",
            "Addresses selected by toFQDNs left without an identity at MAX_FQDN_IDENTITIES",
            self.fqdn_identities_refused.load(Ordering::Relaxed) as f64,
        ));
        out.push(FamilySnapshot::counter(
            "hubble_agent_fqdn_answers_released_unprogrammed_total",
            "DNS answers released before the datapath had the addresses toFQDNs selects",
            vec![SeriesSnapshot::counter(
                Vec::new(),
                self.fqdn_answers_unprogrammed.load(Ordering::Relaxed),
            )],
        ));
        let started = self
            .grpc_started
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        out.push(FamilySnapshot::counter(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            started
                .iter()
                .map(|(k, n)| SeriesSnapshot::counter(grpc_labels(k), *n))
                .collect(),
        ));
        drop(started);
        let handled = self
            .grpc_handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        out.push(FamilySnapshot::counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            handled
                .iter()
                .map(|((k, code), n)| {
                    let mut labels = grpc_labels(k);
                    labels.push(("grpc_code".to_owned(), code.clone()));
                    SeriesSnapshot::counter(labels, *n)
                })
                .collect(),
        ));
    }
}

#[cfg(test)]
mod tests;
