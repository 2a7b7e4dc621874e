//! Golden tests of every context option on `hubble_drop_total`.

use expect_test::{expect, Expect};
use proto::flow::{TcpFlags, TrafficDirection, Verdict};

use crate::exposition::{encode, Collect, Format};
use crate::handlers::tests::{deathstar, endpoint, tcp, xwing};
use crate::{Metrics, MetricsConfig};

fn drops() -> Vec<proto::flow::Flow> {
    let syn = TcpFlags {
        syn: true,
        ..Default::default()
    };
    let mut egress = tcp(xwing(), deathstar(), Verdict::Dropped, syn);
    egress.traffic_direction = TrafficDirection::Egress as i32;
    egress.destination_names = vec!["deathstar.default.svc.cluster.local".to_owned()];
    let world = endpoint("", "", 2, &["reserved:world", "reserved:kube-apiserver"]);
    let mut to_world = tcp(xwing(), world, Verdict::Dropped, syn);
    to_world.traffic_direction = TrafficDirection::Egress as i32;
    to_world.ip = to_world.ip.map(|mut ip| {
        ip.destination = "1.1.1.1".to_owned();
        ip
    });
    vec![
        tcp(xwing(), deathstar(), Verdict::Dropped, syn),
        egress,
        to_world,
    ]
}

fn check(config: &str, want: Expect) {
    let config = MetricsConfig::parse(config).expect("valid test config");
    let metrics = Metrics::new(&config);
    for flow in drops() {
        metrics.process_flow(&flow);
    }
    let mut families = Vec::new();
    metrics.collect(&mut families);
    families.retain(|f| f.name == "hubble_drop_total");
    want.assert_eq(&encode(families, Format::Text));
}

#[test]
fn source_and_destination_namespace() {
    check(
        "drop:sourceContext=namespace;destinationContext=namespace",
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED",source="default"} 1
            hubble_drop_total{destination="default",protocol="TCP",reason="POLICY_DENIED",source="default"} 2
        "##]],
    );
}

#[test]
fn pod_and_pod_name() {
    check(
        "drop:sourceContext=pod;destinationContext=pod-name",
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED",source="default/xwing"} 1
            hubble_drop_total{destination="deathstar-6fb5694d48-5hmds",protocol="TCP",reason="POLICY_DENIED",source="default/xwing"} 2
        "##]],
    );
}

#[test]
fn identity_and_reserved_identity() {
    check(
        "drop:sourceContext=identity;destinationContext=reserved-identity",
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED",source="k8s:class=xwing,k8s:org=alliance,k8s:app.kubernetes.io/name=xwing"} 2
            hubble_drop_total{destination="reserved:kube-apiserver",protocol="TCP",reason="POLICY_DENIED",source="k8s:class=xwing,k8s:org=alliance,k8s:app.kubernetes.io/name=xwing"} 1
        "##]],
    );
}

#[test]
fn dns_falls_back_to_ip() {
    check(
        "drop:destinationContext=dns|ip",
        expect![[r##"
        # HELP hubble_drop_total Number of drops
        # TYPE hubble_drop_total counter
        hubble_drop_total{destination="1.1.1.1",protocol="TCP",reason="POLICY_DENIED"} 1
        hubble_drop_total{destination="10.200.1.20",protocol="TCP",reason="POLICY_DENIED"} 1
        hubble_drop_total{destination="deathstar.default.svc.cluster.local",protocol="TCP",reason="POLICY_DENIED"} 1
    "##]],
    );
}

#[test]
fn workload_workload_name_and_app() {
    check(
        "drop:sourceContext=app;destinationContext=workload|workload-name",
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED",source="xwing"} 1
            hubble_drop_total{destination="default/deathstar",protocol="TCP",reason="POLICY_DENIED",source="xwing"} 2
        "##]],
    );
}

#[test]
fn pod_short_strips_replica_suffixes() {
    check(
        "drop:destinationContext=pod-short",
        expect![[r##"
        # HELP hubble_drop_total Number of drops
        # TYPE hubble_drop_total counter
        hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED"} 1
        hubble_drop_total{destination="default/deathstar",protocol="TCP",reason="POLICY_DENIED"} 2
    "##]],
    );
}

#[test]
fn direction_specific_contexts_override() {
    check(
        "drop:sourceContext=namespace;sourceEgressContext=pod;destinationContext=namespace;destinationIngressContext=ip",
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED",source="default/xwing"} 1
            hubble_drop_total{destination="10.200.1.20",protocol="TCP",reason="POLICY_DENIED",source="default"} 1
            hubble_drop_total{destination="default",protocol="TCP",reason="POLICY_DENIED",source="default/xwing"} 1
        "##]],
    );
}

#[test]
fn labels_context() {
    check(
        "drop:labelsContext=source_ip,source_namespace,source_workload,source_app,destination_ip,destination_namespace,destination_workload,destination_workload_kind,traffic_direction",
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{destination_ip="1.1.1.1",destination_namespace="",destination_workload="",destination_workload_kind="",protocol="TCP",reason="POLICY_DENIED",source_app="xwing",source_ip="10.200.1.12",source_namespace="default",source_workload="xwing",traffic_direction="egress"} 1
            hubble_drop_total{destination_ip="10.200.1.20",destination_namespace="default",destination_workload="deathstar",destination_workload_kind="Deployment",protocol="TCP",reason="POLICY_DENIED",source_app="xwing",source_ip="10.200.1.12",source_namespace="default",source_workload="xwing",traffic_direction="egress"} 1
            hubble_drop_total{destination_ip="10.200.1.20",destination_namespace="default",destination_workload="deathstar",destination_workload_kind="Deployment",protocol="TCP",reason="POLICY_DENIED",source_app="xwing",source_ip="10.200.1.12",source_namespace="default",source_workload="xwing",traffic_direction="ingress"} 1
        "##]],
    );
}

#[test]
fn deleted_pod_series_go_after_the_grace_period() {
    let config = MetricsConfig::parse(
        "drop:sourceContext=pod flow:labelsContext=source_namespace,source_pod tcp",
    )
    .expect("valid test config");
    let metrics = Metrics::new(&config).with_deletion_grace(std::time::Duration::ZERO);
    for flow in drops() {
        metrics.process_flow(&flow);
    }
    let mut other = tcp(
        deathstar(),
        xwing(),
        Verdict::Forwarded,
        TcpFlags {
            syn: true,
            ..Default::default()
        },
    );
    other.is_reply = None;
    metrics.process_flow(&other);
    let before = metrics.series_count();
    metrics.on_endpoint_deleted("default", "xwing");
    let removed = metrics.apply_due_deletions(std::time::Instant::now());
    // drop: one series (source default/xwing); flow: one series for xwing's drops.
    assert_eq!(removed, 2);
    assert_eq!(metrics.series_count(), before - 2);
    let mut families = Vec::new();
    metrics.collect(&mut families);
    let text = encode(families, Format::Text);
    assert!(!text.contains("xwing"), "{text}");
    assert!(text.contains("deathstar"), "{text}");
}

#[test]
fn deletions_wait_for_the_grace_period() {
    let config = MetricsConfig::parse("drop:sourceContext=pod").expect("valid test config");
    let metrics = Metrics::new(&config);
    for flow in drops() {
        metrics.process_flow(&flow);
    }
    metrics.on_endpoint_deleted("default", "xwing");
    assert_eq!(metrics.apply_due_deletions(std::time::Instant::now()), 0);
    let later = std::time::Instant::now() + crate::DEFAULT_DELETION_GRACE;
    assert_eq!(metrics.apply_due_deletions(later), 1);
    assert_eq!(metrics.series_count(), 0);
}
