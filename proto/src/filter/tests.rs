use super::*;
use crate::flow::{layer4, layer7, Endpoint, Flow, FlowFilter, Layer4, Layer7, Verdict};

fn endpoint(ns: &str, pod: &str, identity: u32, labels: &[&str]) -> Endpoint {
    Endpoint {
        identity,
        namespace: ns.into(),
        pod_name: pod.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        cluster_name: "default".into(),
        ..Default::default()
    }
}

fn tcp_flow(src: Endpoint, dst: Endpoint, sport: u32, dport: u32, verdict: Verdict) -> Flow {
    Flow {
        verdict: verdict as i32,
        ip: Some(crate::flow::Ip {
            source: "10.200.1.12".into(),
            destination: "10.200.1.10".into(),
            ip_version: crate::flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(crate::flow::Tcp {
                source_port: sport,
                destination_port: dport,
                flags: Some(crate::flow::TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(src),
        destination: Some(dst),
        node_name: "node1".into(),
        event_type: Some(crate::flow::CiliumEventType {
            r#type: 1,
            sub_type: 133,
        }),
        ..Default::default()
    }
}

fn xwing_to_deathstar() -> Flow {
    tcp_flow(
        endpoint(
            "default",
            "xwing",
            6305,
            &["k8s:org=alliance", "k8s:class=xwing"],
        ),
        endpoint(
            "default",
            "deathstar-1",
            50122,
            &["k8s:org=empire", "k8s:class=deathstar"],
        ),
        38870,
        80,
        Verdict::Dropped,
    )
}

fn set(allow: Vec<FlowFilter>, deny: Vec<FlowFilter>) -> FilterSet {
    FilterSet::compile(&allow, &deny).expect("filters compile")
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[test]
fn empty_set_matches_everything() {
    assert!(set(vec![], vec![]).matches(&xwing_to_deathstar()));
}

#[test]
fn pod_filter_uses_prefix_and_namespace() {
    let flow = xwing_to_deathstar();
    let pod = |v: &[&str]| FlowFilter {
        source_pod: strings(v),
        ..Default::default()
    };
    assert!(set(vec![pod(&["default/xwing"])], vec![]).matches(&flow));
    assert!(set(vec![pod(&["default/x"])], vec![]).matches(&flow));
    assert!(set(vec![pod(&["default/"])], vec![]).matches(&flow));
    assert!(set(vec![pod(&["xwing"])], vec![]).matches(&flow));
    assert!(!set(vec![pod(&["kube-system/xwing"])], vec![]).matches(&flow));
    assert!(!set(vec![pod(&["default/tiefighter"])], vec![]).matches(&flow));
    // A name without a namespace is in "default", as upstream reads it.
    let coredns = tcp_flow(
        endpoint("kube-system", "coredns-5d78c9869d-abcde", 0, &[]),
        endpoint("default", "xwing", 0, &[]),
        53,
        40000,
        Verdict::Forwarded,
    );
    assert!(!set(vec![pod(&["coredns"])], vec![]).matches(&coredns));
    assert!(set(vec![pod(&["kube-system/coredns"])], vec![]).matches(&coredns));
    assert!(set(vec![pod(&["/coredns"])], vec![]).matches(&coredns));
    assert!(set(vec![pod(&["kube-system/coredns/extra"])], vec![]).matches(&coredns));
    let svc = FlowFilter {
        source_service: strings(&["coredns"]),
        ..Default::default()
    };
    let mut via_service = coredns.clone();
    via_service.source_service = Some(crate::flow::Service {
        name: "coredns".into(),
        namespace: "kube-system".into(),
    });
    assert!(!set(vec![svc], vec![]).matches(&via_service));
    let dst = FlowFilter {
        destination_pod: strings(&["default/deathstar"]),
        ..Default::default()
    };
    assert!(set(vec![dst], vec![]).matches(&flow));
}

#[test]
fn fields_and_values_combine_as_upstream() {
    let flow = xwing_to_deathstar();
    // OR across values of one field.
    let verdicts = FlowFilter {
        verdict: vec![Verdict::Forwarded as i32, Verdict::Dropped as i32],
        ..Default::default()
    };
    assert!(set(vec![verdicts], vec![]).matches(&flow));
    // AND across fields of one filter.
    let both = FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        source_pod: strings(&["default/tiefighter"]),
        ..Default::default()
    };
    assert!(!set(vec![both], vec![]).matches(&flow));
    // OR across filters of the allowlist.
    let a = FlowFilter {
        source_pod: strings(&["default/tiefighter"]),
        ..Default::default()
    };
    let b = FlowFilter {
        destination_port: strings(&["80"]),
        ..Default::default()
    };
    assert!(set(vec![a, b], vec![]).matches(&flow));
    // The denylist wins.
    let deny = FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        ..Default::default()
    };
    assert!(!set(vec![], vec![deny]).matches(&flow));
}

#[test]
fn ip_filters_take_addresses_and_prefixes() {
    let flow = xwing_to_deathstar();
    let f = |v: &[&str]| FlowFilter {
        destination_ip: strings(v),
        ..Default::default()
    };
    assert!(set(vec![f(&["10.200.1.10"])], vec![]).matches(&flow));
    assert!(set(vec![f(&["10.200.0.0/16"])], vec![]).matches(&flow));
    assert!(set(vec![f(&["10.0.0.0/8", "10.200.1.11"])], vec![]).matches(&flow));
    assert!(!set(vec![f(&["192.168.0.0/16"])], vec![]).matches(&flow));
    // Addresses compare as text, as upstream does; prefixes compare parsed.
    let mut v6 = flow.clone();
    if let Some(ip) = v6.ip.as_mut() {
        ip.destination = "fd00:10:244:2::3c2a".into();
    }
    assert!(set(vec![f(&["fd00:10:244:2::3c2a"])], vec![]).matches(&v6));
    assert!(!set(vec![f(&["fd00:10:244:2:0:0:0:3c2a"])], vec![]).matches(&v6));
    assert!(!set(vec![f(&["FD00:10:244:2::3C2A"])], vec![]).matches(&v6));
    assert!(set(vec![f(&["fd00:10:244:2:0:0:0:0/64"])], vec![]).matches(&v6));
    // Values as Go's netip takes them: a zone on an address, host bits in a prefix.
    assert!(FilterSet::compile(&[f(&["fe80::1%eth0"])], &[]).is_ok());
    assert!(set(vec![f(&["10.200.1.99/24"])], vec![]).matches(&flow));
    for bad in [
        "fe80::1%",
        "10.0.0.1%eth0",
        "10.0.0.0/08",
        "10.0.0.0/+8",
        "fe80::%eth0/64",
    ] {
        assert!(FilterSet::compile(&[f(&[bad])], &[]).is_err(), "{bad}");
    }
    let err = FilterSet::compile(&[f(&["10.0.0.300"])], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid IP address "10.0.0.300" in filter"#
    );
    let err = FilterSet::compile(&[f(&["10.0.0.0/33"])], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid IP prefix "10.0.0.0/33" in filter"#
    );
}

#[test]
fn label_selectors() {
    let flow = xwing_to_deathstar();
    let f = |v: &[&str]| FlowFilter {
        source_label: strings(v),
        ..Default::default()
    };
    let yes = [
        "org=alliance",
        "k8s:org=alliance",
        "org in (alliance,empire)",
        "class",
        "!foo",
        "org!=empire",
        "org notin (empire)",
        "org=alliance,class=xwing",
        "any:class=xwing",
    ];
    for selector in yes {
        assert!(
            set(vec![f(&[selector])], vec![]).matches(&flow),
            "{selector}"
        );
    }
    let no = [
        "org=empire",
        "reserved:org=alliance",
        "!class",
        "org=alliance,class=tiefighter",
    ];
    for selector in no {
        assert!(
            !set(vec![f(&[selector])], vec![]).matches(&flow),
            "{selector}"
        );
    }
    let err = FilterSet::compile(&[f(&["org in alliance"])], &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"invalid label selector "org in alliance""#),
        "{err}"
    );
}

#[test]
fn ports_protocols_and_tcp_flags() {
    let flow = xwing_to_deathstar();
    let port = FlowFilter {
        destination_port: strings(&["80"]),
        ..Default::default()
    };
    assert!(set(vec![port], vec![]).matches(&flow));
    let err = FilterSet::compile(
        &[FlowFilter {
            source_port: strings(&["http"]),
            ..Default::default()
        }],
        &[],
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        r#"invalid port "http": must be a number from 0 to 65535"#
    );
    let proto = |p: &[&str]| FlowFilter {
        protocol: strings(p),
        ..Default::default()
    };
    assert!(set(vec![proto(&["TCP"])], vec![]).matches(&flow));
    assert!(!set(vec![proto(&["udp", "icmp"])], vec![]).matches(&flow));
    let err = FilterSet::compile(&[proto(&["tcpp"])], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid protocol filter: unknown protocol: "tcpp""#
    );
    let flags = |syn, ack| FlowFilter {
        tcp_flags: vec![crate::flow::TcpFlags {
            syn,
            ack,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(set(vec![flags(true, false)], vec![]).matches(&flow));
    assert!(!set(vec![flags(true, true)], vec![]).matches(&flow));
}

#[test]
fn event_type_identity_direction_reply() {
    let mut flow = xwing_to_deathstar();
    let et = |t, m, s| FlowFilter {
        event_type: vec![crate::flow::EventTypeFilter {
            r#type: t,
            match_sub_type: m,
            sub_type: s,
        }],
        ..Default::default()
    };
    assert!(set(vec![et(1, false, 0)], vec![]).matches(&flow));
    assert!(set(vec![et(1, true, 133)], vec![]).matches(&flow));
    assert!(!set(vec![et(4, false, 0)], vec![]).matches(&flow));
    let id = FlowFilter {
        source_identity: vec![6305],
        ..Default::default()
    };
    assert!(set(vec![id], vec![]).matches(&flow));
    // A drop without is_reply counts as not a reply; a forwarded flow without it never matches.
    let reply = |v| FlowFilter {
        reply: vec![v],
        ..Default::default()
    };
    assert!(set(vec![reply(false)], vec![]).matches(&flow));
    flow.verdict = Verdict::Forwarded as i32;
    assert!(!set(vec![reply(false)], vec![]).matches(&flow));
    flow.is_reply = Some(pbjson_types::BoolValue { value: true });
    assert!(set(vec![reply(true)], vec![]).matches(&flow));
}

#[test]
fn node_names_and_fqdns() {
    let mut flow = xwing_to_deathstar();
    let node = |v: &[&str]| FlowFilter {
        node_name: strings(v),
        ..Default::default()
    };
    for yes in ["node1", "node*", "default/node1", "default/", "*/node1"] {
        assert!(set(vec![node(&[yes])], vec![]).matches(&flow), "{yes}");
    }
    assert!(!set(vec![node(&["other/node1"])], vec![]).matches(&flow));
    assert!(FilterSet::compile(&[node(&["a/b/c"])], &[]).is_err());
    flow.destination_names = strings(&["deathstar.default.svc.cluster.local"]);
    let fqdn = |v: &[&str]| FlowFilter {
        destination_fqdn: strings(v),
        ..Default::default()
    };
    assert!(set(vec![fqdn(&["*.cluster.local"])], vec![]).matches(&flow));
    assert!(set(
        vec![fqdn(&["deathstar.default.svc.cluster.local."])],
        vec![]
    )
    .matches(&flow));
    assert!(!set(vec![fqdn(&["*.cilium.io"])], vec![]).matches(&flow));
    let err = FilterSet::compile(&[fqdn(&["a$b"])], &[]).unwrap_err();
    assert!(err.to_string().contains("invalid rune"), "{err}");
}

#[test]
fn http_filters_need_l7_and_validate() {
    let mut flow = xwing_to_deathstar();
    flow.l7 = Some(Layer7 {
        record: Some(layer7::Record::Http(crate::flow::Http {
            code: 503,
            method: "PUT".into(),
            url: "http://deathstar.default.svc.cluster.local/v1/exhaust-port?x=1".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    let status = |v: &[&str]| FlowFilter {
        http_status_code: strings(v),
        ..Default::default()
    };
    assert!(set(vec![status(&["5+"])], vec![]).matches(&flow));
    assert!(set(vec![status(&["503"])], vec![]).matches(&flow));
    assert!(!set(vec![status(&["4+", "200"])], vec![]).matches(&flow));
    assert!(FilterSet::compile(&[status(&["600"])], &[]).is_err());
    let path = FlowFilter {
        http_path: strings(&["^/v1/exhaust-port$"]),
        ..Default::default()
    };
    assert!(set(vec![path], vec![]).matches(&flow));
    let method = FlowFilter {
        http_method: strings(&["put"]),
        ..Default::default()
    };
    assert!(set(vec![method], vec![]).matches(&flow));
    let bad = FlowFilter {
        http_method: strings(&["GET"]),
        event_type: vec![crate::flow::EventTypeFilter {
            r#type: 4,
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = FilterSet::compile(&[bad], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "filtering by http method requires the event type filter to only match 'l7' events"
    );
    let re = FlowFilter {
        http_path: strings(&["("]),
        ..Default::default()
    };
    assert!(FilterSet::compile(&[re], &[])
        .unwrap_err()
        .to_string()
        .contains(r#""(""#));
}

proptest::proptest! {
    /// A filter never panics on arbitrary values and its compile errors name the value.
    #[test]
    fn arbitrary_values_never_panic(value in ".{0,24}") {
        let filter = FlowFilter {
            source_ip: vec![value.clone()],
            ..Default::default()
        };
        match FilterSet::compile(&[filter], &[]) {
            Ok(set) => { set.matches(&xwing_to_deathstar()); }
            Err(err) => {
                let quoted = format!("{:?}", value);
                proptest::prop_assert!(err.to_string().contains(&quoted));
            }
        }
        for f in [
            FlowFilter { source_label: vec![value.clone()], ..Default::default() },
            FlowFilter { node_name: vec![value.clone()], ..Default::default() },
            FlowFilter { destination_fqdn: vec![value.clone()], ..Default::default() },
            FlowFilter { http_status_code: vec![value.clone()], ..Default::default() },
        ] {
            if let Ok(set) = FilterSet::compile(&[f], &[]) {
                set.matches(&xwing_to_deathstar());
            }
        }
    }
}

#[test]
fn cel_expressions_read_the_flow_as_upstream() {
    let cel = |exprs: &[&str]| FlowFilter {
        experimental: Some(crate::flow::flow_filter::Experimental {
            cel_expression: strings(exprs),
        }),
        ..Default::default()
    };
    let tcp = xwing_to_deathstar();
    let mut http = tcp.clone();
    http.verdict = Verdict::Forwarded as i32;
    http.l7 = Some(Layer7 {
        record: Some(layer7::Record::Http(crate::flow::Http {
            code: 503,
            method: "GET".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    let s = |exprs: &[&str]| set(vec![cel(exprs)], vec![]);
    assert!(s(&["_flow.l7.http.code >= 500u"]).matches(&http));
    // An unset message reads as its defaults, as in protobuf.
    assert!(!s(&["_flow.l7.http.code >= 500u"]).matches(&tcp));
    assert!(s(&["_flow.l7.http.code == 0u"]).matches(&tcp));
    assert!(
        s(&["_flow.source.namespace == \"default\" && _flow.source.pod_name == \"xwing\""])
            .matches(&tcp)
    );
    assert!(s(&["_flow.verdict == Verdict.DROPPED"]).matches(&tcp));
    assert!(s(&["_flow.verdict == flow.Verdict.DROPPED"]).matches(&tcp));
    assert!(!s(&["_flow.verdict == Verdict.DROPPED"]).matches(&http));
    assert!(s(&["_flow.verdict == 2"]).matches(&tcp));
    assert!(s(&["_flow.IP.destination.startsWith(\"10.200.\")"]).matches(&tcp));
    assert!(s(&["_flow.l4.TCP.destination_port == 80u"]).matches(&tcp));
    // Expressions of one filter are alternatives; an error or a non-bool is no match.
    assert!(s(&["false", "_flow.verdict == Verdict.DROPPED"]).matches(&tcp));
    assert!(!s(&["_flow.no_such_field == 1"]).matches(&tcp));
    // A result that is not a bool is refused when compiled, as upstream's type check.
    let err = FilterSet::compile(&[cel(&["_flow.source.pod_name"])], &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"got "string", wanted "bool" result type"#),
        "{err}"
    );
    // A compile error names the expression.
    let err = FilterSet::compile(&[cel(&["_flow.verdict =="])], &[]).unwrap_err();
    assert!(err.to_string().contains("\"_flow.verdict ==\""), "{err}");
}

#[test]
fn reads_labels_only_with_a_label_selector_or_cel() {
    let compiled = |allow: Vec<FlowFilter>, deny: Vec<FlowFilter>| {
        FilterSet::compile(&allow, &deny).expect("compiles")
    };
    let pod = FlowFilter {
        source_pod: vec!["default/xwing".into()],
        ..Default::default()
    };
    let labels = FlowFilter {
        destination_label: vec!["k8s:org=empire".into()],
        ..Default::default()
    };
    let node_labels = FlowFilter {
        node_labels: vec!["zone=a".into()],
        ..Default::default()
    };
    let cel = FlowFilter {
        experimental: Some(crate::flow::flow_filter::Experimental {
            cel_expression: vec!["_flow.verdict == Verdict.DROPPED".into()],
        }),
        ..Default::default()
    };
    assert!(!compiled(vec![], vec![]).reads_labels());
    assert!(!compiled(vec![pod.clone()], vec![pod.clone()]).reads_labels());
    assert!(compiled(vec![pod.clone(), labels.clone()], vec![]).reads_labels());
    assert!(compiled(vec![], vec![labels]).reads_labels());
    assert!(compiled(vec![node_labels], vec![]).reads_labels());
    assert!(compiled(vec![pod], vec![cel]).reads_labels());
}
