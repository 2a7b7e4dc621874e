use super::*;
use proto::flow::{IcmPv6, Ip, Layer4, Service, Tcp, Workload};

fn pod(ns: &str, name: &str, labels: &[&str]) -> Endpoint {
    Endpoint {
        namespace: ns.to_string(),
        pod_name: name.to_string(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        identity: 300,
        ..Endpoint::default()
    }
}

fn tcp_flow(src: Endpoint, dst: Endpoint, port: u32, verdict: Verdict) -> Flow {
    Flow {
        source: Some(src),
        destination: Some(dst),
        verdict: verdict as i32,
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40000,
                destination_port: port,
                flags: None,
            })),
        }),
        ..Flow::default()
    }
}

#[test]
fn strips_replica_suffixes_only_when_they_look_like_one() {
    assert_eq!(workload_name("deathstar-1"), "deathstar");
    assert_eq!(workload_name("deathstar-6fb5694d48-5hmds"), "deathstar");
    assert_eq!(workload_name("coredns-7db6d8ff4d-x2k9p"), "coredns");
    assert_eq!(workload_name("cilium-x7k2q"), "cilium");
    assert_eq!(workload_name("xwing"), "xwing");
    assert_eq!(workload_name("tiefighter"), "tiefighter");
    assert_eq!(workload_name("my-app"), "my-app");
    assert_eq!(workload_name("hello-world"), "hello-world");
}

#[test]
fn names_entities_from_reserved_labels_and_identities() {
    let world = Endpoint {
        identity: 2,
        labels: vec!["reserved:world".to_string()],
        ..Endpoint::default()
    };
    let node = node_of(&world);
    assert_eq!(
        (node.id.as_str(), node.filter_kind),
        ("reserved:world", "label")
    );
    let host = Endpoint {
        identity: 1,
        ..Endpoint::default()
    };
    assert_eq!(node_of(&host).name, "host");
    let cidr = Endpoint {
        identity: 16777217,
        labels: vec!["cidr:1.1.1.1/32".to_string()],
        ..Endpoint::default()
    };
    assert_eq!(node_of(&cidr).name, "world");
    let mut with_workload = pod("default", "deathstar-abc", &[]);
    with_workload.workloads = vec![Workload {
        name: "deathstar".to_string(),
        kind: "Deployment".to_string(),
    }];
    assert_eq!(node_of(&with_workload).id, "default/deathstar");
}

#[test]
fn counts_edges_per_port_and_verdict_and_tracks_last_verdict() {
    let mut map = ServiceMap::default();
    let xwing = pod("default", "xwing", &["k8s:org=alliance"]);
    let ds1 = pod("default", "deathstar-1", &["k8s:org=empire"]);
    let ds2 = pod("default", "deathstar-2", &["k8s:org=empire"]);
    map.add(&tcp_flow(
        xwing.clone(),
        ds1.clone(),
        80,
        Verdict::Forwarded,
    ));
    map.add(&tcp_flow(
        xwing.clone(),
        ds2.clone(),
        80,
        Verdict::Forwarded,
    ));
    let version = map.version();
    map.add(&tcp_flow(xwing.clone(), ds1, 80, Verdict::Dropped));
    assert!(map.version() > version);
    map.add(&tcp_flow(xwing.clone(), ds2.clone(), 443, Verdict::Dropped));
    let mut reply = tcp_flow(ds2, xwing, 40000, Verdict::Forwarded);
    reply.is_reply = Some(pbjson_types::BoolValue { value: true });
    map.add(&reply);

    let snapshot = map.snapshot();
    assert_eq!(snapshot.nodes.len(), 2, "{:?}", snapshot.nodes);
    assert_eq!(snapshot.edges.len(), 2, "{:?}", snapshot.edges);
    let http = snapshot
        .edges
        .iter()
        .find(|e| e.port == 80)
        .expect("port 80 edge");
    assert_eq!(http.source, "default/xwing");
    assert_eq!(http.destination, "default/deathstar");
    assert_eq!(http.verdicts.get("FORWARDED"), Some(&2));
    assert_eq!(http.verdicts.get("DROPPED"), Some(&1));
    assert_eq!(http.last_verdict, "DROPPED");
    assert_eq!(http.protocol, "TCP");
}

fn with_identity(mut endpoint: Endpoint, identity: u32) -> Endpoint {
    endpoint.identity = identity;
    endpoint
}

/// The demo's pods on a map: xwing and deathstar talking, coredns answering.
fn demo_map() -> (ServiceMap, Endpoint, Endpoint, Endpoint) {
    let mut map = ServiceMap::default();
    let ns = |n: &str| format!("k8s:io.kubernetes.pod.namespace={n}");
    let xwing = with_identity(
        pod("default", "xwing", &["k8s:class=xwing", &ns("default")]),
        258,
    );
    let deathstar = with_identity(
        pod(
            "default",
            "deathstar-1",
            &["k8s:class=deathstar", &ns("default")],
        ),
        256,
    );
    let coredns = with_identity(
        pod(
            "kube-system",
            "coredns-7db6d8ff4d-x2k9p",
            &["k8s:k8s-app=kube-dns", &ns("kube-system")],
        ),
        259,
    );
    map.add(&tcp_flow(
        xwing.clone(),
        deathstar.clone(),
        80,
        Verdict::Forwarded,
    ));
    map.add(&tcp_flow(
        xwing.clone(),
        coredns.clone(),
        53,
        Verdict::Forwarded,
    ));
    (map, xwing, deathstar, coredns)
}

fn node_ids(map: &ServiceMap) -> Vec<String> {
    map.snapshot().nodes.iter().map(|n| n.id.clone()).collect()
}

#[test]
fn multicast_from_the_host_to_a_nameless_endpoint_is_left_out() {
    let (mut map, xwing, _, coredns) = demo_map();
    let before = node_ids(&map).len();
    let version = map.version();
    // `fe80::1 (host) -> ff02::16 (ID:259) to-endpoint FORWARDED
    // (ICMPv6 143(0))`: the endpoint has coredns's identity and
    // labels, but no pod name, since names are looked up by the group address.
    let host = Endpoint {
        identity: 1,
        labels: vec!["reserved:host".to_string()],
        ..Endpoint::default()
    };
    let group = |of: &Endpoint| Endpoint {
        identity: of.identity,
        labels: of.labels.clone(),
        ..Endpoint::default()
    };
    for member in [&coredns, &xwing] {
        map.add(&Flow {
            source: Some(host.clone()),
            destination: Some(group(member)),
            verdict: Verdict::Forwarded as i32,
            ip: Some(Ip {
                source: "fe80::1".to_string(),
                destination: "ff02::16".to_string(),
                ..Ip::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::IcmPv6(IcmPv6 {
                    r#type: 143,
                    code: 0,
                })),
            }),
            ..Flow::default()
        });
    }
    let ids = node_ids(&map);
    assert_eq!(ids.len(), before, "{ids:?}");
    assert!(
        !ids.iter()
            .any(|id| id.contains("identity-") || id.contains("host")),
        "{ids:?}"
    );
    assert_eq!(map.version(), version, "the map did not change");
}

#[test]
fn nameless_cluster_endpoints_are_drawn_in_their_workload_box() {
    let (mut map, xwing, deathstar, coredns) = demo_map();
    let before = node_ids(&map);
    // By identity: deathstar's identity without a pod name.
    let nameless = |of: &Endpoint, identity: u32| Endpoint {
        identity,
        labels: of.labels.clone(),
        ..Endpoint::default()
    };
    map.add(&tcp_flow(
        xwing.clone(),
        nameless(&deathstar, deathstar.identity),
        443,
        Verdict::Dropped,
    ));
    // By labels: another identity (say a new allocation) with deathstar's labels.
    map.add(&tcp_flow(
        xwing.clone(),
        nameless(&deathstar, 4000),
        8080,
        Verdict::Forwarded,
    ));
    // By namespace and application label: kube-dns with one more label.
    let mut dns = nameless(&coredns, 4001);
    dns.labels
        .push("k8s:pod-template-hash=7db6d8ff4d".to_string());
    map.add(&tcp_flow(xwing.clone(), dns, 9153, Verdict::Forwarded));
    // Unknown to the map: left out rather than drawn as `identity-4002`.
    let stranger = Endpoint {
        identity: 4002,
        labels: vec!["k8s:class=stranger".to_string()],
        ..Endpoint::default()
    };
    map.add(&tcp_flow(xwing.clone(), stranger, 80, Verdict::Forwarded));

    assert_eq!(node_ids(&map), before);
    let snapshot = map.snapshot();
    let edge = |port: u16| snapshot.edges.iter().find(|e| e.port == port);
    assert_eq!(
        edge(443).map(|e| e.destination.as_str()),
        Some("default/deathstar")
    );
    assert_eq!(
        edge(8080).map(|e| e.destination.as_str()),
        Some("default/deathstar")
    );
    assert_eq!(
        edge(9153).map(|e| e.destination.as_str()),
        Some("kube-system/coredns")
    );
    assert!(edge(80).is_some_and(|e| e.verdicts.values().sum::<u64>() == 1));
    let deathstar_node = snapshot
        .nodes
        .iter()
        .find(|n| n.id == "default/deathstar")
        .expect("deathstar");
    assert_eq!(deathstar_node.labels, deathstar.labels);
}

fn deathstar_service() -> Service {
    Service {
        name: "deathstar".to_string(),
        namespace: "default".to_string(),
    }
}

/// The lab's deathstar service as the datapath reports it: xwing's socket translation
/// (before: the service address, world to the datapath; after: a backend) and
/// translated packets delivered to both backends.
fn service_flows(xwing: &Endpoint, tiefighter: &Endpoint) -> Vec<Flow> {
    let ds1 = pod("default", "deathstar-1", &["k8s:class=deathstar"]);
    let ds2 = pod("default", "deathstar-2", &["k8s:class=deathstar"]);
    let vip = Endpoint {
        identity: 2,
        labels: vec!["reserved:world".to_string()],
        ..Endpoint::default()
    };
    let via_service = |mut flow: Flow| {
        flow.destination_service = Some(deathstar_service());
        flow
    };
    vec![
        via_service(tcp_flow(xwing.clone(), vip, 80, Verdict::Traced)),
        via_service(tcp_flow(
            xwing.clone(),
            ds1.clone(),
            80,
            Verdict::Translated,
        )),
        via_service(tcp_flow(xwing.clone(), ds1, 80, Verdict::Forwarded)),
        via_service(tcp_flow(
            tiefighter.clone(),
            ds2.clone(),
            80,
            Verdict::Forwarded,
        )),
        via_service(tcp_flow(xwing.clone(), ds2, 80, Verdict::Dropped)),
    ]
}

#[test]
fn flows_to_a_service_go_through_its_node_to_the_backends() {
    let mut map = ServiceMap::default();
    let xwing = pod("default", "xwing", &["k8s:class=xwing"]);
    let tiefighter = pod("default", "tiefighter", &["k8s:class=tiefighter"]);
    for flow in service_flows(&xwing, &tiefighter) {
        map.add(&flow);
    }
    let snapshot = map.snapshot();
    let service = snapshot
        .nodes
        .iter()
        .find(|n| n.kind == KIND_SERVICE)
        .expect("a service node");
    assert_eq!(service.id, "service:default/deathstar");
    assert_eq!(
        (service.namespace.as_str(), service.name.as_str()),
        ("default", "deathstar")
    );
    assert_eq!(
        (service.filter_kind, service.filter_value.as_str()),
        ("service", "default/deathstar")
    );
    assert_eq!(service.flows, 5);
    let mut ids = node_ids(&map);
    ids.sort_unstable();
    // The service address is not drawn as `world`: the service stands for it.
    assert_eq!(
        ids,
        [
            "default/deathstar",
            "default/tiefighter",
            "default/xwing",
            "service:default/deathstar"
        ]
    );
    let edge = |from: &str, to: &str| {
        snapshot
            .edges
            .iter()
            .find(|e| e.source == from && e.destination == to)
            .map(|e| e.verdicts.clone())
    };
    let counts = |list: &[(&'static str, u64)]| Some(list.iter().copied().collect());
    assert_eq!(
        edge("default/xwing", "service:default/deathstar"),
        counts(&[
            ("DROPPED", 1),
            ("FORWARDED", 1),
            ("TRACED", 1),
            ("TRANSLATED", 1)
        ])
    );
    assert_eq!(
        edge("default/tiefighter", "service:default/deathstar"),
        counts(&[("FORWARDED", 1)])
    );
    // Every flow that reached a backend, whichever client sent it.
    assert_eq!(
        edge("service:default/deathstar", "default/deathstar"),
        counts(&[("DROPPED", 1), ("FORWARDED", 2), ("TRANSLATED", 1)])
    );
    // No edge skips the service.
    assert_eq!(edge("default/xwing", "default/deathstar"), None);
    assert_eq!(snapshot.edges.len(), 3, "{:?}", snapshot.edges);
}

#[test]
fn service_nodes_and_edges_count_against_the_limits() {
    let mut map = ServiceMap::default();
    let client = pod("default", "xwing", &[]);
    // Fill the map to one node short of its limit with client -> workload edges.
    for i in 0..MAX_MAP_NODES - 2 {
        map.add(&tcp_flow(
            client.clone(),
            pod("default", &format!("w{i}"), &[]),
            80,
            Verdict::Forwarded,
        ));
    }
    assert_eq!(map.snapshot().nodes.len(), MAX_MAP_NODES - 1);
    // The service fits, its backend does not: the flow is still drawn up to the service.
    let mut flow = tcp_flow(
        client.clone(),
        pod("default", "deathstar-1", &[]),
        80,
        Verdict::Forwarded,
    );
    flow.destination_service = Some(deathstar_service());
    map.add(&flow);
    let snapshot = map.snapshot();
    assert_eq!(snapshot.nodes.len(), MAX_MAP_NODES);
    assert_eq!(snapshot.discarded_nodes, 1);
    assert!(snapshot
        .edges
        .iter()
        .any(|e| e.destination == "service:default/deathstar"));
    assert!(!snapshot
        .edges
        .iter()
        .any(|e| e.source == "service:default/deathstar"));
    // A second service has no room at all: the flow is left out and counted.
    flow.destination_service = Some(Service {
        name: "other".to_string(),
        namespace: "default".to_string(),
    });
    let version = map.version();
    map.add(&flow);
    assert_eq!(map.snapshot().discarded_nodes, 2);
    assert_eq!(map.version(), version);
}

#[test]
fn service_edges_count_against_the_edge_limit() {
    let mut map = ServiceMap::default();
    let client = pod("default", "xwing", &[]);
    let backend = pod("default", "deathstar-1", &[]);
    // One edge short of the limit, over distinct ports between two workloads.
    for port in 0..MAX_MAP_EDGES - 1 {
        map.add(&tcp_flow(
            client.clone(),
            backend.clone(),
            u32::try_from(port).expect("port") + 1,
            Verdict::Forwarded,
        ));
    }
    let mut flow = tcp_flow(client, backend, 80, Verdict::Forwarded);
    flow.destination_service = Some(deathstar_service());
    map.add(&flow);
    let snapshot = map.snapshot();
    assert_eq!(snapshot.edges.len(), MAX_MAP_EDGES);
    assert_eq!(
        snapshot.discarded_edges, 1,
        "service -> backend did not fit"
    );
    assert!(snapshot
        .edges
        .iter()
        .any(|e| e.destination == "service:default/deathstar"));
}
