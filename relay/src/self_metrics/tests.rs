use std::sync::Arc;

use expect_test::expect;
use metrics_exposition::{Format, Registry};

use super::*;

#[test]
fn prints_upstream_names_in_both_formats() {
    let relay = Arc::new(RelayMetrics::new());
    relay.set_peer_connection_status(&[
        (PeerConnectionStatus::Ready, 2),
        (PeerConnectionStatus::TransientFailure, 1),
    ]);
    relay.flows_forwarded(40);
    relay.responses_dropped(3);
    assert_eq!(relay.responses_dropped_total(), 3);
    let mut registry = Registry::new();
    registry.register(relay);
    expect![[r##"
        # HELP hubble_relay_flows_forwarded_total Number of flows forwarded to clients
        # TYPE hubble_relay_flows_forwarded_total counter
        hubble_relay_flows_forwarded_total 40
        # HELP hubble_relay_invalid_responses_total Number of node responses refused because a client could not decode them; each ends that node's stream for one request
        # TYPE hubble_relay_invalid_responses_total counter
        hubble_relay_invalid_responses_total 0
        # HELP hubble_relay_pool_peer_connection_status Measures the connectivity status of all peers by counting the number of peers for each given connection status.
        # TYPE hubble_relay_pool_peer_connection_status gauge
        hubble_relay_pool_peer_connection_status{status="CONNECTING"} 0
        hubble_relay_pool_peer_connection_status{status="IDLE"} 0
        hubble_relay_pool_peer_connection_status{status="NIL_CONNECTION"} 0
        hubble_relay_pool_peer_connection_status{status="READY"} 2
        hubble_relay_pool_peer_connection_status{status="SHUTDOWN"} 0
        hubble_relay_pool_peer_connection_status{status="TRANSIENT_FAILURE"} 1
        # HELP hubble_relay_responses_dropped_total Number of node responses dropped because a following client could not keep up
        # TYPE hubble_relay_responses_dropped_total counter
        hubble_relay_responses_dropped_total 3
    "##]].assert_eq(&registry.encode(Format::Text));
    expect![[r##"
        # HELP hubble_relay_flows_forwarded Number of flows forwarded to clients
        # TYPE hubble_relay_flows_forwarded counter
        hubble_relay_flows_forwarded_total 40.0
        # HELP hubble_relay_invalid_responses Number of node responses refused because a client could not decode them; each ends that node's stream for one request
        # TYPE hubble_relay_invalid_responses counter
        hubble_relay_invalid_responses_total 0.0
        # HELP hubble_relay_pool_peer_connection_status Measures the connectivity status of all peers by counting the number of peers for each given connection status.
        # TYPE hubble_relay_pool_peer_connection_status gauge
        hubble_relay_pool_peer_connection_status{status="CONNECTING"} 0.0
        hubble_relay_pool_peer_connection_status{status="IDLE"} 0.0
        hubble_relay_pool_peer_connection_status{status="NIL_CONNECTION"} 0.0
        hubble_relay_pool_peer_connection_status{status="READY"} 2.0
        hubble_relay_pool_peer_connection_status{status="SHUTDOWN"} 0.0
        hubble_relay_pool_peer_connection_status{status="TRANSIENT_FAILURE"} 1.0
        # HELP hubble_relay_responses_dropped Number of node responses dropped because a following client could not keep up
        # TYPE hubble_relay_responses_dropped counter
        hubble_relay_responses_dropped_total 3.0
        # EOF
    "##]].assert_eq(&registry.encode(Format::OpenMetrics));
}
