use super::*;
use crate::flow::{layer4::Protocol, Endpoint, Layer4, Policy, Tcp, TcpFlags, Udp, Verdict};

fn flow() -> Flow {
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        uuid: "u-1".into(),
        verdict: Verdict::Forwarded as i32,
        node_name: "node1".into(),
        source: Some(Endpoint {
            identity: 4242,
            namespace: "default".into(),
            pod_name: "xwing".into(),
            labels: vec!["k8s:org=alliance".into()],
            ..Default::default()
        }),
        destination: Some(Endpoint {
            pod_name: "deathstar-1".into(),
            ..Default::default()
        }),
        l4: Some(tcp(80)),
        egress_allowed_by: vec![Policy {
            name: "allow".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn tcp(port: u32) -> Layer4 {
    Layer4 {
        protocol: Some(Protocol::Tcp(Tcp {
            source_port: 40000,
            destination_port: port,
            flags: Some(TcpFlags {
                syn: true,
                ..Default::default()
            }),
        })),
    }
}

fn masked(paths: &[&str], flow: &Flow) -> Flow {
    FieldMask::compile(paths)
        .expect("valid paths")
        .apply(flow)
        .expect("masked")
}

#[test]
fn keeps_only_the_named_paths() {
    let flow = flow();
    let out = masked(&["time", "source.pod_name", "verdict"], &flow);
    assert_eq!(
        out,
        Flow {
            time: flow.time,
            verdict: flow.verdict,
            source: Some(Endpoint {
                pod_name: "xwing".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    );
}

#[test]
fn an_empty_mask_keeps_everything() {
    let mask = FieldMask::compile::<&str>(&[]).expect("empty");
    assert!(!mask.is_active());
    assert_eq!(mask.apply(&flow()), Ok(flow()));
}

#[test]
fn nested_paths_make_the_messages_they_go_through() {
    let mut bare = flow();
    bare.destination = None;
    bare.l4 = None;
    let out = masked(&["destination.namespace", "l4.TCP.flags.SYN"], &bare);
    assert_eq!(out.destination, Some(Endpoint::default()));
    let expected = Layer4 {
        protocol: Some(Protocol::Tcp(Tcp {
            flags: Some(TcpFlags::default()),
            ..Default::default()
        })),
    };
    assert_eq!(out.l4, Some(expected));
    // Deeper paths keep what the flow has.
    let out = masked(&["l4.TCP.flags.SYN", "time.seconds"], &flow());
    let Some(Protocol::Tcp(tcp)) = out.l4.and_then(|l4| l4.protocol) else {
        panic!("TCP kept");
    };
    assert_eq!(
        (tcp.destination_port, tcp.flags.map(|f| f.syn)),
        (0, Some(true))
    );
    assert_eq!(
        out.time.map(|t| (t.seconds, t.nanos)),
        Some((1_700_000_000, 0))
    );
}

#[test]
fn oneof_members_follow_the_flow_when_it_sets_one_named() {
    let mut udp = flow();
    udp.l4 = Some(Layer4 {
        protocol: Some(Protocol::Udp(Udp {
            source_port: 5353,
            destination_port: 53,
        })),
    });
    // One member named: present, empty when the flow sets another (as upstream).
    let out = masked(&["l4.TCP.destination_port"], &udp);
    assert_eq!(
        out.l4.and_then(|l4| l4.protocol),
        Some(Protocol::Tcp(Tcp::default()))
    );
    // Two members named: the one the flow sets wins.
    let both = ["l4.TCP.destination_port", "l4.UDP.destination_port"];
    let out = masked(&both, &udp);
    assert_eq!(
        out.l4.and_then(|l4| l4.protocol),
        Some(Protocol::Udp(Udp {
            destination_port: 53,
            ..Default::default()
        }))
    );
    let out = masked(&both, &flow());
    let Some(Protocol::Tcp(tcp)) = out.l4.and_then(|l4| l4.protocol) else {
        panic!("TCP kept");
    };
    assert_eq!((tcp.source_port, tcp.destination_port), (0, 80));
    // Neither set: the last member declared.
    let mut none = flow();
    none.l4 = None;
    let out = masked(&both, &none);
    assert_eq!(
        out.l4.and_then(|l4| l4.protocol),
        Some(Protocol::Udp(Udp::default()))
    );
    // A whole member the flow lacks stays out.
    let out = masked(&["l4.UDP"], &flow());
    assert_eq!(out.l4, Some(Layer4::default()));
}

#[test]
fn a_whole_field_wins_over_its_sub_paths() {
    let flow = flow();
    for paths in [["source.pod_name", "source"], ["source", "source.pod_name"]] {
        assert_eq!(masked(&paths, &flow).source, flow.source, "{paths:?}");
    }
    let out = masked(&["egress_allowed_by"], &flow);
    assert_eq!(out.egress_allowed_by, flow.egress_allowed_by);
}

#[test]
fn bad_paths_are_refused_naming_them() {
    for (path, reason) in [
        ("nope", "flow.Flow has no field \"nope\""),
        ("source.nope", "flow.Endpoint has no field \"nope\""),
        ("source.", "flow.Endpoint has no field \"\""),
        ("", "flow.Flow has no field \"\""),
        ("verdict.x", "flow.Flow.verdict is not a message field"),
        (
            "source_names.x",
            "flow.Flow.source_names is a repeated field",
        ),
        (
            "egress_allowed_by.name",
            "flow.Flow.egress_allowed_by is a repeated field",
        ),
    ] {
        let err = FieldMask::compile(&["time", path]).expect_err(path);
        assert_eq!(err.path(), Some(path));
        let text = err.to_string();
        assert!(text.contains(&format!("{path:?}")), "{text}");
        assert!(text.contains(reason), "{text}");
    }
}
