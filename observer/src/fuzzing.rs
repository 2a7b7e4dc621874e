//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz) and of their corpus replay
//! test (`tests/tests/fuzz_replay.rs`): both call these, so what runs for minutes by
//! hand and what CI replays is the same code.
//!
//! Each function takes untrusted bytes as the observer receives them, runs them through
//! the real parser and checks what must hold for any input: no panic, and a flow that
//! was accepted survives the compact store unchanged and is filtered the same way
//! stored as it is whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ebpf_events::clock::KtimeClock;
use proto::filter::FilterSet;
use proto::flow::{self, Flow};
use proto::observer::GetFlowsRequest;

use crate::compact::{to_flow, Encoder, StoredFlow, Tables};
use crate::parser::{decode_packet, EndpointGetter, Getters, IdentityGetter, LinkGetter, Parser};
use crate::replay::parse_line;
use crate::sample;
use crate::service::flows::FlowsQuery;

/// Demo flows each compiled request is matched against.
const SAMPLE_FLOWS: u64 = 12;

/// A datapath record (ring buffer bytes, as `ebpf_events::decode` reads them) parsed
/// into a flow by the node's parser; the same bytes also go to the frame decoder alone.
pub fn datapath_record(data: &[u8]) {
    if let Ok(flow) = parser().parse(data) {
        check_stored(flow);
    }
    let _ = decode_packet(data);
}

/// A GetFlows request, written in the protobuf JSON mapping (the form `hubble observe`
/// prints with `--print-raw-filters`), validated as the server validates it (filters,
/// field mask, window), then used on demo flows whole and stored.
pub fn flows_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<GetFlowsRequest>(data) else {
        return;
    };
    let Ok(query) = FlowsQuery::new(&request) else {
        return;
    };
    let tables = Arc::new(Tables::default());
    let mut encoder = Encoder::new(tables.clone());
    for n in 0..SAMPLE_FLOWS {
        let flow = sample::flow(n);
        let encoded = encoder.encode_ref(&flow, &mut |_| {});
        if let Some(stored) = StoredFlow::new(&tables, encoded.record, encoded.extra) {
            assert_eq!(
                query.filters().matches(&stored),
                query.filters().matches(&flow),
                "a stored flow is filtered as the whole flow: {flow:?}"
            );
        }
        let _ = query.mask().apply(&flow);
    }
}

/// One line of a replay capture (`hubble-agent --replay`), as `observer::replay` reads it.
pub fn replay_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(flow)) = parse_line(line) {
        check_stored(flow);
    }
}

/// A flow the ring accepts must come back from the compact store as it went in, and a
/// filter must see the same fields stored as whole.
fn check_stored(flow: Flow) {
    let tables = Arc::new(Tables::default());
    let mut encoder = Encoder::new(tables.clone());
    let encoded = encoder.encode_ref(&flow, &mut |_| {});
    let back = to_flow(&tables, &encoded.record, encoded.extra.as_deref());
    assert_eq!(
        back.as_ref(),
        Some(&flow),
        "the compact store changed a flow"
    );
    let Some(stored) = StoredFlow::new(&tables, encoded.record, encoded.extra) else {
        panic!("a stored flow has no view: {flow:?}");
    };
    for filters in probe_filters() {
        assert_eq!(
            filters.matches(&stored),
            filters.matches(&flow),
            "a stored flow is filtered as the whole flow: {flow:?}"
        );
    }
}

/// Filters that read most of a flow's fields.
fn probe_filters() -> Vec<FilterSet> {
    let probes = [
        flow::FlowFilter {
            source_label: vec!["k8s:org=empire".into()],
            destination_port: vec!["80".into()],
            ..Default::default()
        },
        flow::FlowFilter {
            source_ip: vec!["10.200.0.0/16".into()],
            protocol: vec!["tcp".into(), "icmp".into(), "http".into()],
            ..Default::default()
        },
        flow::FlowFilter {
            verdict: vec![flow::Verdict::Dropped as i32],
            reply: vec![false],
            traffic_direction: vec![flow::TrafficDirection::Ingress as i32],
            ..Default::default()
        },
        flow::FlowFilter {
            node_name: vec!["node*".into()],
            destination_pod: vec!["default/".into()],
            ..Default::default()
        },
        flow::FlowFilter {
            tcp_flags: vec![flow::TcpFlags {
                syn: true,
                ..Default::default()
            }],
            ip_version: vec![flow::IpVersion::IPv6 as i32],
            ..Default::default()
        },
    ];
    probes
        .into_iter()
        .filter_map(|probe| FilterSet::compile(&[probe], &[]).ok())
        .collect()
}

/// The parser of a node that knows two pods, two identities and one interface.
fn parser() -> Parser {
    Parser::new(
        "fuzz-node",
        KtimeClock::with_offset_ns(1_700_000_000_000_000_000),
        Getters {
            endpoints: Some(Arc::new(Endpoints(
                [
                    (IpAddr::from([10, 200, 1, 12]), sample::endpoint(4)),
                    (IpAddr::from([10, 200, 1, 10]), sample::endpoint(0)),
                ]
                .into_iter()
                .collect(),
            ))),
            identities: Some(Arc::new(Identities)),
            links: Some(Arc::new(Links)),
            cgroups: Some(Arc::new(Cgroups)),
            services: None,
            dns: None,
        },
    )
}

/// Every IPv4 socket belongs to the first pod; IPv6 ones to nobody.
struct Cgroups;

impl crate::parser::CgroupGetter for Cgroups {
    fn endpoint_ip_by_cgroup(&self, _cgroup_id: u64, ipv6: bool) -> Option<IpAddr> {
        (!ipv6).then(|| IpAddr::from([10, 200, 1, 12]))
    }
}

struct Endpoints(HashMap<IpAddr, flow::Endpoint>);

impl EndpointGetter for Endpoints {
    fn endpoint_by_ip(&self, ip: IpAddr) -> Option<flow::Endpoint> {
        self.0.get(&ip).cloned()
    }
}

struct Identities;

impl IdentityGetter for Identities {
    fn identity_labels(&self, identity: u32) -> Option<Vec<String>> {
        match identity {
            2 => Some(vec!["reserved:world".into()]),
            1000..=1010 => Some(vec![
                "k8s:org=empire".into(),
                format!("k8s:class=c{identity}"),
            ]),
            _ => None,
        }
    }
}

struct Links;

impl LinkGetter for Links {
    fn link_name(&self, ifindex: u32) -> Option<String> {
        (ifindex < 64).then(|| format!("lxc{ifindex:08x}"))
    }
}
