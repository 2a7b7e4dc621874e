use super::*;

#[test]
fn parses_source_key_and_value() {
    let label = Label::parse("k8s:class=xwing").expect("valid label");
    assert_eq!(label, Label::k8s("class", "xwing"));
    assert_eq!(label.to_string(), "k8s:class=xwing");

    let reserved = Label::parse("reserved:host").expect("valid label");
    assert_eq!(reserved, Label::reserved("host"));
    assert_eq!(reserved.to_string(), "reserved:host");

    let bare = Label::parse("org=empire").expect("valid label");
    assert_eq!(bare.source, SOURCE_UNSPEC);
    assert_eq!(bare.to_string(), "unspec:org=empire");

    let any = Label::parse_with_default("org", SOURCE_ANY).expect("valid label");
    assert_eq!(any.to_string(), "any:org");
}

#[test]
fn values_may_hold_colons_and_keys_may_hold_slashes() {
    let label = Label::parse("k8s:app.kubernetes.io/name=a:b").expect("valid label");
    assert_eq!(label.key, "app.kubernetes.io/name");
    assert_eq!(label.value, "a:b");
}

#[test]
fn rejects_empty_key_and_source() {
    assert_eq!(
        Label::parse("k8s:=x"),
        Err(LabelError::EmptyKey("k8s:=x".into()))
    );
    assert_eq!(
        Label::parse(":app=x").map_err(|e| e.to_string()),
        Err("label \":app=x\" has an empty source before ':'".into())
    );
}

#[test]
fn sets_sort_by_printed_form() {
    // Byte order of the printed form puts `a.b=` before `a=` ('.' < '=').
    let set = LabelSet::parse(["k8s:a=1", "k8s:a.b=2", "reserved:host"]).expect("valid labels");
    assert_eq!(set.to_strings(), ["k8s:a.b=2", "k8s:a=1", "reserved:host"]);
    assert_eq!(set.to_string(), "[k8s:a.b=2 k8s:a=1 reserved:host]");
}

#[test]
fn insert_replaces_same_source_and_key() {
    let mut set = LabelSet::parse(["k8s:org=empire"]).expect("valid labels");
    set.insert(Label::k8s("org", "alliance"));
    set.insert(Label::new("container", "org", "x"));
    assert_eq!(set.to_strings(), ["container:org=x", "k8s:org=alliance"]);
    assert!(set.has(SOURCE_ANY, "org"));
    assert_eq!(
        set.get(SOURCE_K8S, "org").map(|l| l.value.as_str()),
        Some("alliance")
    );
}

#[test]
fn pod_security_labels_add_namespace_and_cluster() {
    let pod: BTreeMap<String, String> = [("org", "empire"), ("class", "deathstar")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let set = LabelSet::for_pod(&pod, "default", DEFAULT_CLUSTER_NAME);
    assert_eq!(
        set.to_strings(),
        [
            "k8s:class=deathstar",
            "k8s:io.cilium.k8s.policy.cluster=default",
            "k8s:io.kubernetes.pod.namespace=default",
            "k8s:org=empire",
        ]
    );
}

#[test]
fn equal_sets_are_equal_whatever_the_insert_order() {
    let a = LabelSet::parse(["k8s:a=1", "k8s:b=2"]).expect("valid labels");
    let b = LabelSet::parse(["k8s:b=2", "k8s:a=1"]).expect("valid labels");
    assert_eq!(a, b);
}

#[test]
fn label_json_matches_cilium_field_order() {
    let json = serde_json::to_string(&Label::k8s("io.cilium.k8s.policy.name", "rule1"))
        .expect("serializable");
    assert_eq!(
        json,
        r#"{"key":"io.cilium.k8s.policy.name","value":"rule1","source":"k8s"}"#
    );
}
