use std::sync::Arc;

use expect_test::expect;
use metrics_exposition::{Format, Registry};

use super::*;

#[test]
fn prints_ring_events_unparsable_records_and_grpc_counters() {
    let agent = Arc::new(AgentMetrics::new());
    agent.set_ring(5, 4095);
    agent.events_seen(5);
    agent.set_unparsable_records(2);
    agent.set_fqdn_cache_evictions(3);
    agent.grpc_started(GrpcType::ServerStream, "observer.Observer", "GetFlows");
    agent.grpc_handled(GrpcType::Unary, "observer.Observer", "ServerStatus", "OK");
    let mut registry = Registry::new();
    registry.register(agent);
    expect![[r##"
        # HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
        # TYPE grpc_server_handled_total counter
        grpc_server_handled_total{grpc_code="OK",grpc_method="ServerStatus",grpc_service="observer.Observer",grpc_type="unary"} 1
        # HELP grpc_server_started_total Total number of RPCs started on the server.
        # TYPE grpc_server_started_total counter
        grpc_server_started_total{grpc_method="GetFlows",grpc_service="observer.Observer",grpc_type="server_stream"} 1
        # HELP hubble_agent_fqdn_answers_released_unprogrammed_total DNS answers released before the datapath had the addresses toFQDNs selects
        # TYPE hubble_agent_fqdn_answers_released_unprogrammed_total counter
        hubble_agent_fqdn_answers_released_unprogrammed_total 0
        # HELP hubble_agent_fqdn_cache_evictions_total Number of FQDN cache entries dropped because a cache bound was reached
        # TYPE hubble_agent_fqdn_cache_evictions_total counter
        hubble_agent_fqdn_cache_evictions_total 3
        # HELP hubble_agent_fqdn_identities_refused Addresses selected by toFQDNs left without an identity at MAX_FQDN_IDENTITIES
        # TYPE hubble_agent_fqdn_identities_refused gauge
        hubble_agent_fqdn_identities_refused 0
        # HELP hubble_observer_events_seen_total Number of events received from the datapath
        # TYPE hubble_observer_events_seen_total counter
        hubble_observer_events_seen_total 5
        # HELP hubble_observer_events_unparsable_total Number of datapath records skipped because they could not be parsed
        # TYPE hubble_observer_events_unparsable_total counter
        hubble_observer_events_unparsable_total 2
        # HELP hubble_observer_ring_capacity Number of flows the flow ring can hold
        # TYPE hubble_observer_ring_capacity gauge
        hubble_observer_ring_capacity 4095
        # HELP hubble_observer_ring_flows Number of flows held in the flow ring
        # TYPE hubble_observer_ring_flows gauge
        hubble_observer_ring_flows 5
    "##]].assert_eq(&registry.encode(Format::Text));
}
