use super::*;
use proto::flow::{Layer4, Tcp, Workload};

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
