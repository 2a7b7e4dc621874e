//! Filter flags to FlowFilters, family by family, checked as the JSON upstream's
//! `--print-raw-filters` shows.

use super::*;

fn flags(args: &[(&str, &str)]) -> Vec<(String, String)> {
    args.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The allow and deny lists as one JSON line per filter.
fn lists(args: &[(&str, &str)]) -> String {
    let (allow, deny) = build(&flags(args)).expect("filters");
    let mut out = String::new();
    for f in &allow {
        out.push_str(&format!("allow {}\n", proto::json::to_string(f)));
    }
    for f in &deny {
        out.push_str(&format!("deny  {}\n", proto::json::to_string(f)));
    }
    out
}

fn error(args: &[(&str, &str)]) -> String {
    build(&flags(args)).expect_err("an error").to_string()
}

#[test]
fn same_flag_ors_and_different_flags_and() {
    expect_test::expect![[r#"
        allow {"source_pod":["default/xwing","tiefighter"],"verdict":["DROPPED","FORWARDED"]}
    "#]]
    .assert_eq(&lists(&[
        ("from-pod", "default/xwing"),
        ("verdict", "DROPPED"),
        ("from-pod", "tiefighter"),
        ("verdict", "FORWARDED"),
    ]));
}

#[test]
fn either_side_flags_build_two_filters() {
    expect_test::expect![[r#"
        allow {"source_ip":["10.0.0.1"],"protocol":["tcp"]}
        allow {"destination_ip":["10.0.0.1"],"protocol":["tcp"]}
    "#]]
    .assert_eq(&lists(&[("ip", "10.0.0.1"), ("protocol", "tcp")]));
    expect_test::expect![[r#"
        allow {"source_pod":["deathstar"],"source_port":["80"]}
        allow {"destination_pod":["deathstar"],"destination_port":["80"]}
    "#]]
    .assert_eq(&lists(&[("pod", "deathstar"), ("port", "80")]));
    expect_test::expect![[r#"
        allow {"source_label":["org=empire"],"source_service":["default/deathstar"],"source_workload":[{"name":"deathstar","kind":"Deployment"}],"source_cluster_name":["c1"],"source_identity":[6305]}
        allow {"destination_label":["org=empire"],"destination_service":["default/deathstar"],"destination_workload":[{"name":"deathstar","kind":"Deployment"}],"destination_cluster_name":["c1"],"destination_identity":[6305]}
    "#]]
    .assert_eq(&lists(&[
        ("label", "org=empire"),
        ("service", "default/deathstar"),
        ("workload", "Deployment/deathstar"),
        ("cluster", "c1"),
        ("identity", "6305"),
    ]));
    expect_test::expect![[r#"
        allow {"source_fqdn":["*.cilium.io"]}
        allow {"destination_fqdn":["*.cilium.io"]}
    "#]]
    .assert_eq(&lists(&[("fqdn", "*.cilium.io")]));
}

#[test]
fn not_negates_only_the_next_flag() {
    expect_test::expect![[r#"
        allow {"source_ip":["1.1.1.1"]}
        deny  {"destination_ip":["2.2.2.2"],"http_method":["get"]}
    "#]]
    .assert_eq(&lists(&[
        ("not", "true"),
        ("to-ip", "2.2.2.2"),
        ("from-ip", "1.1.1.1"),
        ("not", "true"),
        ("http-method", "get"),
    ]));
    assert_eq!(
        error(&[("not", "true")]),
        "trailing --not found in the arguments"
    );
    assert_eq!(
        error(&[("not", "true"), ("not", "true")]),
        "invalid argument \"true\" for \"--not\" flag: consecutive --not statements"
    );
}

#[test]
fn namespaces_fold_into_pods_and_services() {
    expect_test::expect![[r#"
        allow {"source_pod":["kube-system/"]}
        allow {"destination_pod":["kube-system/"]}
    "#]]
    .assert_eq(&lists(&[("namespace", "kube-system")]));
    expect_test::expect![[r#"
        allow {"source_pod":["a/","b/"],"destination_pod":["default/deathstar"]}
    "#]]
    .assert_eq(&lists(&[
        ("from-namespace", "a"),
        ("to-pod", "default/deathstar"),
        ("from-namespace", "b"),
    ]));
    expect_test::expect![[r#"
        allow {"source_service":["a/svc"],"destination_pod":["b/"]}
    "#]]
    .assert_eq(&lists(&[
        ("from-service", "svc"),
        ("from-namespace", "a"),
        ("to-namespace", "b"),
    ]));
    expect_test::expect![[r#"
        allow {"source_pod":["/"]}
        allow {"destination_pod":["/"]}
    "#]]
    .assert_eq(&lists(&[("all-namespaces", "true")]));
    assert_eq!(
        error(&[("from-namespace", "a"), ("from-pod", "b/c")]),
        "invalid argument \"b/c\" for \"--from-pod\" flag: namespace conflict: \"a\" does not contain \"b/c\""
    );
    assert_eq!(
        error(&[("from-pod", "a/x"), ("from-service", "b/y")]),
        "invalid argument \"b/y\" for \"--from-service\" flag: namespace of service \"b/y\" conflict with pod \"a\""
    );
}

#[test]
fn conflicting_flags_are_rejected_in_upstream_order() {
    assert_eq!(
        error(&[("from-pod", "xwing"), ("namespace", "default")]),
        "invalid argument \"default\" for \"-n, --namespace\" flag: filters --from-pod and --namespace cannot be combined"
    );
    assert_eq!(
        error(&[("ip", "1.1.1.1"), ("namespace", "default")]),
        "invalid argument \"default\" for \"-n, --namespace\" flag: filters --ip and --namespace cannot be combined"
    );
    assert_eq!(
        error(&[("label", "a"), ("from-label", "b")]),
        "invalid argument \"b\" for \"--from-label\" flag: filters --label and --from-label cannot be combined"
    );
    assert_eq!(
        error(&[("encrypted", "true"), ("unencrypted", "true")]),
        "invalid argument \"true\" for \"--unencrypted\" flag: filters --encrypted and --unencrypted cannot be combined"
    );
    // The same flag in the allowlist and the denylist is fine.
    assert!(build(&flags(&[
        ("port", "80"),
        ("not", "true"),
        ("to-port", "8080")
    ]))
    .is_ok());
}

#[test]
fn event_types_and_subtypes() {
    expect_test::expect![[r#"
        allow {"event_type":[{"type":4,"match_sub_type":true},{"type":1},{"type":5},{"type":129},{"type":4,"match_sub_type":true,"sub_type":11},{"type":130,"match_sub_type":true,"sub_type":5},{"type":7},{"type":3},{"type":42,"match_sub_type":true,"sub_type":7}]}
    "#]]
    .assert_eq(&lists(&[
        ("type", "trace:to-endpoint"),
        ("type", "drop"),
        ("type", "policy-verdict"),
        ("type", "l7"),
        ("type", "trace:to-network"),
        ("type", "agent:policy-updated"),
        ("type", "trace-sock"),
        ("type", "capture"),
        ("type", "42:7"),
    ]));
    assert_eq!(
        error(&[("type", "bogus")]),
        "invalid argument \"bogus\" for \"-t, --type\" flag: unable to parse type 'bogus', not a known type name and unable to parse as numeric value: strconv.ParseUint: parsing \"bogus\": invalid syntax"
    );
    assert_eq!(
        error(&[("type", "trace:nowhere")]),
        "invalid argument \"trace:nowhere\" for \"-t, --type\" flag: unable to parse event sub-type 'nowhere', not a known sub-type name and unable to parse as numeric value: strconv.ParseUint: parsing \"nowhere\": invalid syntax"
    );
}

#[test]
fn verdicts_drop_reasons_and_directions() {
    expect_test::expect![[r#"
        allow {"traffic_direction":["INGRESS","EGRESS"],"verdict":["DROPPED","AUDIT"],"drop_reason_desc":["POLICY_DENIED"]}
    "#]]
    .assert_eq(&lists(&[
        ("verdict", "DROPPED"),
        ("verdict", "AUDIT"),
        ("drop-reason-desc", "POLICY_DENIED"),
        ("traffic-direction", "ingress"),
        ("traffic-direction", "EGRESS"),
    ]));
    assert_eq!(
        error(&[("verdict", "dropped")]),
        "invalid argument \"dropped\" for \"--verdict\" flag: invalid --verdict value: dropped"
    );
    assert_eq!(
        error(&[("drop-reason-desc", "NOPE")]),
        "invalid argument \"NOPE\" for \"--drop-reason-desc\" flag: invalid --drop-reason-desc value: NOPE"
    );
    assert_eq!(
        error(&[("drop-reason-desc", "")]),
        "invalid argument \"\" for \"--drop-reason-desc\" flag: empty --drop-reason-desc value"
    );
    assert_eq!(
        error(&[("traffic-direction", "sideways")]),
        "invalid argument \"sideways\" for \"--traffic-direction\" flag: sideways: invalid traffic direction, expected ingress or egress"
    );
}

#[test]
fn l7_tcp_ip_version_and_misc() {
    expect_test::expect![[r#"
        allow {"uuid":["u1"],"source_ip_xlated":["10.0.0.0/8"],"interface":[{"name":"eth0"}],"http_status_code":["5+"],"protocol":["http"],"reply":[true],"dns_query":["cilium"],"http_method":["PUT"],"http_path":["/v1/.*"],"http_url":["http://x/"],"http_header":[{"key":"foo","value":"bar:baz"}],"tcp_flags":[{"SYN":true,"ACK":true},{"FIN":true}],"node_name":["kind-*"],"node_labels":["zone=a"],"ip_version":["IPv4","IPv6","IP_NOT_USED","IPv6"],"trace_id":["abc"],"ip_trace_id":["42"],"encrypted":[true],"experimental":{"cel_expression":["true"]}}
    "#]]
    .assert_eq(&lists(&[
        ("uuid", "u1"),
        ("snat-ip", "10.0.0.0/8"),
        ("interface", "eth0"),
        ("http-status", "5+"),
        ("protocol", "http"),
        ("http-method", "PUT"),
        ("http-path", "/v1/.*"),
        ("http-url", "http://x/"),
        ("http-header", "foo:bar:baz"),
        ("tcp-flags", "syn,ACK"),
        ("tcp-flags", "fin"),
        ("node-name", "kind-*"),
        ("node-label", "zone=a"),
        ("ipv4", "v4"),
        ("ipv6", "v6"),
        ("ip-version", "none"),
        ("ip-version", "ip6"),
        ("trace-id", "abc"),
        ("ip-trace-id", "42"),
        ("encrypted", "true"),
        ("cel-expression", "true"),
        ("is-reply", "true"),
        ("dns-query", "cilium"),
    ]));
    assert_eq!(
        error(&[("tcp-flags", "syn,xmas")]),
        "invalid argument \"syn,xmas\" for \"--tcp-flags\" flag: unknown tcp flag: xmas"
    );
    assert_eq!(
        error(&[("http-header", "nocolon")]),
        "invalid argument \"nocolon\" for \"--http-header\" flag: invalid http-header value \"nocolon\", expected name:value"
    );
    assert_eq!(
        error(&[("ip-trace-id", "0")]),
        "invalid argument \"0\" for \"--ip-trace-id\" flag: invalid --ip-trace-id value; must be greater than 0"
    );
    assert_eq!(
        error(&[("from-identity", "nobody")]),
        "invalid argument \"nobody\" for \"--from-identity\" flag: invalid security identity, expected one of [host world unmanaged health init remote-node kube-apiserver ingress world-ipv4 world-ipv6 11] or a numeric value"
    );
    assert_eq!(
        error(&[("is-reply", "maybe")]),
        "invalid argument \"maybe\" for \"--is-reply\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
    );
}
