//! Parsing and normalization tests; compilation is tested in `tests/policy.rs`.

use super::*;

fn error_of(text: &str) -> PolicyError {
    match parse_policy(text) {
        Ok(parsed) => panic!("expected an error, parsed {:?}", parsed.rules),
        Err(error) => error,
    }
}

const HEADER: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n";

#[test]
fn bad_port_names_path_and_line() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports:\n      - port: eighty\n"
    );
    let error = error_of(&text);
    assert_eq!(
        error.to_string(),
        "spec.ingress[0].toPorts[0].ports[0].port: \"eighty\" is not a port number at line 10 column 15"
    );
    assert_eq!(error.line(), Some(10));
}

#[test]
fn port_out_of_range_and_bad_protocol() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports:\n      - port: 65536\n"
    );
    assert_eq!(
        error_of(&text).to_string(),
        "spec.ingress[0].toPorts[0].ports[0].port: 65536 is not a port number (0-65535) at line 10 column 15"
    );
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - toPorts:\n    - ports:\n      - port: 53\n        protocol: DNS\n"
    );
    assert_eq!(
        error_of(&text).to_string(),
        "spec.egress[0].toPorts[0].ports[0].protocol: \"DNS\" is not a protocol (expected TCP, UDP, SCTP, ICMP, ICMPv6 or ANY) at line 11 column 19"
    );
}

#[test]
fn unknown_field_names_field_and_line() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEndpoint:\n    - {{}}\n"
    );
    let error = error_of(&text);
    let message = error.to_string();
    assert!(
        message.starts_with(
            "spec.ingress[0]: unknown field `fromEndpoint`, expected one of `fromEndpoints`"
        ),
        "{message}"
    );
    assert!(message.ends_with("at line 8 column 5"), "{message}");
    assert_eq!(error.line(), Some(8));
}

#[test]
fn bad_operator_is_rejected() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector:\n    matchExpressions:\n    - key: org\n      operator: Equals\n      values: [empire]\n"
    );
    assert_eq!(
        error_of(&text).to_string(),
        "spec.endpointSelector.matchExpressions[0].operator: unknown variant `Equals`, expected one of `In`, `NotIn`, `Exists`, `DoesNotExist` at line 9 column 17"
    );
}

#[test]
fn operator_values_are_checked() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector:\n    matchExpressions:\n    - key: org\n      operator: In\n"
    );
    let message = error_of(&text).to_string();
    assert!(
        message.starts_with("spec.endpointSelector.matchExpressions: operator In on key \"org\" needs at least one value"),
        "{message}"
    );
}

#[test]
fn bad_cidr_and_except_outside_are_rejected() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - toCIDR:\n    - 10.0.0.0/33\n"
    );
    assert_eq!(
        error_of(&text).to_string(),
        "spec.egress[0].toCIDR[0]: \"10.0.0.0/33\" is not a CIDR (expected a prefix such as 10.0.0.0/8 or fd00::/8, or an address) at line 9 column 7"
    );
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - toCIDRSet:\n    - cidr: 10.0.0.0/8\n      except: [192.168.0.0/16]\n"
    );
    let message = error_of(&text).to_string();
    assert!(
        message.starts_with(
            "spec.egress[0].toCIDRSet: except 192.168.0.0/16 is not inside cidr 10.0.0.0/8"
        ),
        "{message}"
    );
}

#[test]
fn port_ranges_are_checked() {
    let base = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports:\n"
    );
    let below = format!("{base}      - port: 80\n        endPort: 79\n");
    assert!(error_of(&below)
        .to_string()
        .contains("endPort 79 is below port 80"));
    let too_wide = format!("{base}      - port: 1000\n        endPort: 5096\n");
    assert!(error_of(&too_wide)
        .to_string()
        .contains("ports 1000-5096 span 4097 ports; at most 4096 are supported"));
    let widest = format!("{base}      - port: 1000\n        endPort: 5095\n");
    assert!(parse_policy(&widest).is_ok());
}

#[test]
fn unsupported_cilium_fields_are_named() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - toServices:\n    - k8sService: {{serviceName: x}}\n"
    );
    let message = error_of(&text).to_string();
    assert!(
        message
            .starts_with("spec.egress[0].toServices: this field is not supported by hubble-agent"),
        "{message}"
    );
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromFQDNs:\n    - matchName: example.com\n"
    );
    let message = error_of(&text).to_string();
    assert!(
        message.starts_with("spec.ingress[0].fromFQDNs: fromFQDNs is not supported"),
        "{message}"
    );
}

#[test]
fn wrong_api_version_and_kind() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n";
    assert_eq!(
        error_of(text).to_string(),
        "apiVersion: unknown variant `networking.k8s.io/v1`, expected `cilium.io/v2` at line 1 column 13"
    );
    let text = "apiVersion: cilium.io/v2\nkind: CiliumEndpoint\nmetadata:\n  name: p\n";
    assert!(error_of(text)
        .to_string()
        .starts_with("kind: unknown variant `CiliumEndpoint`"));
}

#[test]
fn missing_spec_and_empty_text() {
    assert_eq!(
        error_of(HEADER).to_string(),
        "CiliumNetworkPolicy p: has neither spec nor specs"
    );
    assert_eq!(
        error_of("").to_string(),
        "the policy document holds no rules"
    );
    assert_eq!(
        error_of("[]").to_string(),
        "the policy document holds no rules"
    );
}

#[test]
fn bare_rule_list_errors_start_at_the_index() {
    let text =
        r#"[{"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": "x"}]}]}]}]"#;
    assert_eq!(
        error_of(text).to_string(),
        "[0].ingress[0].toPorts[0].ports[0].port: \"x\" is not a port number at line 1 column 72"
    );
}

#[test]
fn namespaced_policy_scopes_subject_and_peers() {
    let text = format!(
        "{HEADER}  namespace: prod\nspec:\n  endpointSelector:\n    matchLabels: {{app: db, k8s:io.kubernetes.pod.namespace: other}}\n  ingress:\n  - fromEndpoints:\n    - matchLabels: {{app: web}}\n    - matchLabels: {{k8s:io.kubernetes.pod.namespace: monitoring}}\n    - matchLabels: {{reserved:host: ''}}\n    - {{}}\n"
    );
    let parsed = parse_policy(&text).expect("valid policy");
    let rule = &parsed.rules[0];
    let json = serde_json::to_value(rule).expect("serializable");
    assert_eq!(
        json["endpointSelector"],
        serde_json::json!({"matchLabels": {"any:app": "db", "k8s:io.kubernetes.pod.namespace": "prod"}})
    );
    assert_eq!(
        json["ingress"][0]["fromEndpoints"],
        serde_json::json!([
            {"matchLabels": {"any:app": "web", "k8s:io.kubernetes.pod.namespace": "prod"}},
            {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "monitoring"}},
            {"matchLabels": {"reserved:host": ""}},
            {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "prod"}},
        ])
    );
    assert_eq!(
        rule.labels.0.to_strings(),
        [
            "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
            "k8s:io.cilium.k8s.policy.name=p",
            "k8s:io.cilium.k8s.policy.namespace=prod",
        ]
    );
}

#[test]
fn clusterwide_policy_peers_need_a_namespace() {
    let text = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: cw\nspec:\n  endpointSelector: {}\n  egress:\n  - toEndpoints:\n    - {}\n";
    let parsed = parse_policy(text).expect("valid policy");
    let json = serde_json::to_value(&parsed.rules[0]).expect("serializable");
    assert_eq!(json["endpointSelector"], serde_json::json!({}));
    assert_eq!(
        json["egress"][0]["toEndpoints"],
        serde_json::json!([{"matchExpressions": [{"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"}]}])
    );
    assert_eq!(
        json["enableDefaultDeny"],
        serde_json::json!({"ingress": false, "egress": true})
    );
}

#[test]
fn http_rules_are_enforced_other_l7_rules_warned() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports:\n      - port: 80\n        protocol: TCP\n      rules:\n        http:\n        - method: GET\n"
    );
    let parsed = parse_policy(&text).expect("valid policy");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports:\n      - port: 9092\n        protocol: TCP\n      rules:\n        kafka:\n        - topic: t\n    - ports:\n      - port: 53\n        protocol: UDP\n      rules:\n        http:\n        - method: GET\n"
    );
    let parsed = parse_policy(&text).expect("valid policy");
    assert_eq!(
        parsed.warnings,
        [
            "spec.ingress[0].toPorts[0].rules: kafka rules are not enforced; 9092/TCP allowed at L4",
            "spec.ingress[0].toPorts[1].rules: http (no TCP port) rules are not enforced; 53/UDP allowed at L4"
        ]
    );
}

#[test]
fn several_documents_and_specs() {
    let text = format!(
        "{HEADER}specs:\n- endpointSelector: {{}}\n- endpointSelector: {{matchLabels: {{a: b}}}}\n---\n{HEADER}  namespace: x\nspec:\n  endpointSelector: {{}}\n"
    );
    let parsed = parse_policy(&text).expect("valid policies");
    assert_eq!(parsed.rules.len(), 3);
    // A bad field in the second document is reported with its own line.
    let text = format!("{HEADER}spec:\n  endpointSelector: {{}}\n---\n{HEADER}spec:\n  endpointSelector: {{}}\n  bogus: 1\n");
    assert_eq!(
        error_of(&text).to_string().rsplit(" at ").next(),
        Some("line 14 column 3")
    );
}

#[test]
fn entities_and_icmp_parse() {
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - toEntities: [world, cluster, kube-apiserver]\n  - icmps:\n    - fields:\n      - {{type: 8, family: IPv4}}\n      - {{type: EchoRequest, family: IPv6}}\n"
    );
    parse_policy(&text).expect("valid policy");
    let text =
        format!("{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - toEntities: [wrld]\n");
    assert!(error_of(&text)
        .to_string()
        .starts_with("spec.egress[0].toEntities[0]: unknown variant `wrld`"));
    let text = format!(
        "{HEADER}spec:\n  endpointSelector: {{}}\n  egress:\n  - icmps:\n    - fields:\n      - {{type: Ping}}\n"
    );
    assert!(error_of(&text)
        .to_string()
        .contains("\"Ping\" is not an ICMP type name of IPv4"));
}

#[test]
fn repository_revisions_and_replacement() {
    let mut repo = PolicyRepository::new();
    assert_eq!(repo.revision(), 1);
    assert_eq!(repo.rules_json(), "[]");
    let policy = format!("{HEADER}spec:\n  endpointSelector: {{}}\n");
    let first = repo.import(&policy).expect("valid");
    assert_eq!((first.revision, first.added, first.replaced), (2, 1, 0));
    let again = repo.import(&policy).expect("valid");
    assert_eq!((again.revision, again.added, again.replaced), (3, 1, 1));
    assert_eq!(repo.rules().len(), 1);

    // A bad document changes nothing.
    assert!(repo.import("[{}]").is_err());
    assert_eq!(repo.revision(), 3);

    let bare = r#"[{"endpointSelector": {}}, {"endpointSelector": {}, "labels": ["team=a"]}]"#;
    assert_eq!(repo.import(bare).map(|o| o.revision), Ok(4));
    assert_eq!(repo.rules().len(), 3);

    let by_label =
        DeleteSelector::Labels(crate::labels::LabelSet::parse(["team=a"]).expect("label"));
    assert_eq!(repo.delete(&by_label), Ok(5));
    let missing = DeleteSelector::Name {
        name: "nope".into(),
        namespace: Some("default".into()),
    };
    assert_eq!(
        repo.delete(&missing).map_err(|e| e.to_string()),
        Err("no policy rule matches default/nope".to_string())
    );
    let by_name = DeleteSelector::Name {
        name: "p".into(),
        namespace: None,
    };
    assert_eq!(repo.delete(&by_name), Ok(6));
    assert_eq!(repo.delete(&DeleteSelector::All), Ok(7));
    assert_eq!(repo.delete(&DeleteSelector::All), Ok(7));
    assert!(repo.rules().is_empty());
}

#[test]
fn printed_rules_import_as_themselves() {
    // Found by the policy_document fuzz target: a YAML escape (`\P`, U+2029) in a label
    // value was printed raw by `policy get`, and YAML reads U+2029 as a line break, so
    // the printed rules imported with a different value.
    let policy = format!(
        "{HEADER}spec:\n  endpointSelector:\n    matchLabels: {{org: \"a \\P b\\N\\x7f\\u2028\\x85\"}}\n"
    );
    let mut repo = PolicyRepository::new();
    repo.import(&policy).expect("valid");
    let printed = repo.rules_json();
    assert!(
        printed.contains(r"a \u2029 b\u0085\u007f\u2028\u0085"),
        "{printed}"
    );
    let again = parse_policy(&printed).expect("printed rules import");
    assert_eq!(again.rules, repo.rules());
}

#[test]
fn selector_keys_are_label_keys() {
    // Found by the policy_document fuzz target: a selector key of over 1024 characters
    // was printed by `policy get` as a JSON key that YAML (and so `policy import`)
    // refuses.
    let long = "a".repeat(MAX_SELECTOR_KEY_LEN + 1);
    let error = error_of(&format!(
        "{HEADER}spec:\n  endpointSelector:\n    matchLabels: {{{long}: x}}\n"
    ));
    assert!(error.to_string().contains("the limit is 512"), "{error}");
    assert_eq!(error.line(), Some(7));
    let error = error_of(&format!(
        "{HEADER}spec:\n  endpointSelector:\n    matchExpressions: [{{key: \"a b\", operator: Exists}}]\n"
    ));
    assert!(
        error.to_string().contains("invalid character ' '"),
        "{error}"
    );
    parse_policy(&format!(
        "{HEADER}spec:\n  endpointSelector:\n    matchLabels: {{k8s:io.kubernetes.pod.namespace: default, any:app.kubernetes.io/name: x}}\n"
    ))
    .expect("label keys with sources");
}
