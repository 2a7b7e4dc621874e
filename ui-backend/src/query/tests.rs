use super::*;
use proto::flow::{Endpoint, Flow, Verdict};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn flow(src: &str, dst: &str, verdict: Verdict) -> Flow {
    let ep = |name: &str| Endpoint {
        namespace: "default".to_string(),
        pod_name: name.to_string(),
        labels: vec![format!("k8s:class={name}")],
        ..Endpoint::default()
    };
    Flow {
        source: Some(ep(src)),
        destination: Some(ep(dst)),
        verdict: verdict as i32,
        ..Flow::default()
    }
}

fn matcher(list: &[(&str, &str)]) -> FlowMatcher {
    FlowQuery::parse(&pairs(list))
        .expect("query parses")
        .matcher
}

#[test]
fn either_side_and_sided_parameters() {
    let f = flow("xwing", "deathstar-1", Verdict::Dropped);
    assert!(matcher(&[("pod", "default/xwing")]).matches(&f));
    assert!(matcher(&[("pod", "default/deathstar")]).matches(&f));
    assert!(matcher(&[("from_pod", "default/xwing"), ("to_pod", "deathstar")]).matches(&f));
    assert!(!matcher(&[("from_pod", "deathstar")]).matches(&f));
    assert!(matcher(&[("namespace", "default")]).matches(&f));
    assert!(!matcher(&[("namespace", "kube-system")]).matches(&f));
    assert!(matcher(&[("label", "class=xwing")]).matches(&f));
    assert!(!matcher(&[("to_label", "class=xwing")]).matches(&f));
}

#[test]
fn service_parameters_match_the_flow_services() {
    let mut f = flow("xwing", "deathstar-1", Verdict::Forwarded);
    f.destination_service = Some(proto::flow::Service {
        name: "deathstar".to_string(),
        namespace: "default".to_string(),
    });
    assert!(matcher(&[("to_service", "default/deathstar")]).matches(&f));
    assert!(matcher(&[("service", "default/deathstar")]).matches(&f));
    assert!(!matcher(&[("from_service", "default/deathstar")]).matches(&f));
    assert!(!matcher(&[("to_service", "kube-system/deathstar")]).matches(&f));
    assert!(
        !matcher(&[("to_service", "default/deathstar")]).matches(&flow(
            "xwing",
            "deathstar-1",
            Verdict::Forwarded
        ))
    );
}

#[test]
fn conditions_all_hold_and_values_are_alternatives() {
    let f = flow("xwing", "deathstar-1", Verdict::Dropped);
    assert!(matcher(&[("verdict", "dropped")]).matches(&f));
    assert!(matcher(&[("verdict", "FORWARDED,DROPPED")]).matches(&f));
    assert!(!matcher(&[("verdict", "FORWARDED")]).matches(&f));
    // Both conditions must hold: xwing is a pod of the flow but it is not forwarded.
    assert!(!matcher(&[("pod", "xwing"), ("verdict", "FORWARDED")]).matches(&f));
    // Pod and from_pod combine as AND, not as one OR list.
    assert!(!matcher(&[("pod", "deathstar"), ("from_pod", "tiefighter")]).matches(&f));
    assert!(matcher(&[("pod", "",), ("ip", "")]).is_empty());
}

#[test]
fn flow_filter_json_parameters() {
    let f = flow("xwing", "deathstar-1", Verdict::Dropped);
    assert!(matcher(&[("filter", r#"{"source_pod":["default/xwing"]}"#)]).matches(&f));
    assert!(!matcher(&[("exclude", r#"{"verdict":["DROPPED"]}"#)]).matches(&f));
}

#[test]
fn bad_values_are_named() {
    for (name, value) in [
        ("verdict", "BOGUS"),
        ("port", "eighty"),
        ("ip", "10.0.0.300"),
        ("protocol", "carrier-pigeon"),
        ("label", "a in (b"),
        ("http_path", "(["),
        ("limit", "0"),
        ("filter", "{not json"),
    ] {
        let err = FlowQuery::parse(&pairs(&[(name, value)])).expect_err(value);
        assert!(err.to_string().contains(value), "{name}={value}: {err}");
    }
    let err = FlowQuery::parse(&pairs(&[("colour", "red")])).expect_err("unknown");
    assert!(err.to_string().contains("colour"), "{err}");
    let err = FlowQuery::parse(&pairs(&[("from_verdict", "DROPPED")])).expect_err("sided");
    assert!(err.to_string().contains("from_verdict"), "{err}");
}
