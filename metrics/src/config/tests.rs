use super::*;
use crate::context::ContextIdentifier;

#[test]
fn parses_upstream_helm_default() {
    let config = MetricsConfig::parse(
        "dns drop tcp flow port-distribution icmp policy \
         httpV2:exemplars=true;labelsContext=source_ip,source_namespace,source_workload,destination_ip,destination_namespace,destination_workload,traffic_direction",
    )
    .expect("upstream's example must parse");
    let names: Vec<&str> = config.handlers.iter().map(|h| h.kind.name()).collect();
    assert_eq!(
        names,
        [
            "dns",
            "drop",
            "tcp",
            "flow",
            "port-distribution",
            "icmp",
            "policy",
            "httpV2"
        ]
    );
    let http = &config.handlers[7];
    assert!(http.flags.exemplars);
    assert_eq!(
        http.context.label_names(),
        [
            "source_ip",
            "source_namespace",
            "source_workload",
            "destination_ip",
            "destination_namespace",
            "destination_workload",
            "traffic_direction"
        ]
    );
}

#[test]
fn list_items_and_fallback_contexts() {
    let config = MetricsConfig::from_list([
        "dns:query;ignoreAAAA",
        "flow:sourceContext=workload-name|reserved-identity;destinationContext=dns|ip",
    ])
    .expect("valid");
    assert!(config.handlers[0].flags.query && config.handlers[0].flags.ignore_aaaa);
    let context = &config.handlers[1].context;
    assert_eq!(
        context.source,
        [
            ContextIdentifier::WorkloadName,
            ContextIdentifier::ReservedIdentity
        ]
    );
    assert_eq!(
        context.destination,
        [ContextIdentifier::Dns, ContextIdentifier::Ip]
    );
}

#[test]
fn option_keys_are_case_insensitive_and_last_handler_wins() {
    let config = MetricsConfig::parse("drop:SOURCECONTEXT=pod drop:destinationContext=namespace")
        .expect("valid");
    assert_eq!(config.handlers.len(), 1);
    assert!(config.handlers[0].context.source.is_empty());
    assert_eq!(
        config.handlers[0].context.destination,
        [ContextIdentifier::Namespace]
    );
}

#[test]
fn errors_name_the_bad_value_and_list_valid_ones() {
    let cases = [
        ("dorp", "unknown metric \"dorp\"; valid metrics are: dns, drop, tcp, flow, port-distribution, icmp, http, httpV2, policy, flows-to-world"),
        ("drop:query", "metric \"drop\": unknown option \"query\"; valid options are: sourceContext, sourceEgressContext, sourceIngressContext, destinationContext, destinationEgressContext, destinationIngressContext, labelsContext"),
        ("dns:sourceContext=pods", "metric \"dns\": unknown context \"pods\" in option sourceContext; valid contexts are: identity, namespace, pod, pod-short, pod-name, dns, ip, reserved-identity, workload, workload-name, app"),
        ("flow:labelsContext=source_pod,src_ip", "metric \"flow\": invalid labelsContext value \"src_ip\"; valid labels are: source_ip, source_pod, source_namespace, source_workload, source_workload_kind, source_app, destination_ip, destination_pod, destination_namespace, destination_workload, destination_workload_kind, destination_app, traffic_direction"),
        ("http httpV2", "metric \"http\" conflicts with metric \"httpV2\": enable only one of them"),
        (":query", "metric specification \":query\" has an empty metric name"),
        ("flow:sourceContext=", "metric \"flow\": unknown context \"\" in option sourceContext; valid contexts are: identity, namespace, pod, pod-short, pod-name, dns, ip, reserved-identity, workload, workload-name, app"),
    ];
    for (text, want) in cases {
        match MetricsConfig::parse(text) {
            Ok(config) => panic!("{text:?} parsed as {config:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "for {text:?}"),
        }
    }
}

#[test]
fn empty_configuration_enables_nothing() {
    assert!(MetricsConfig::parse("  ").expect("valid").is_empty());
}
