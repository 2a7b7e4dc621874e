//! Policy compilation against the Star Wars demo, using the seed documents.

use std::collections::BTreeMap;

use agent::identity::{CidrIdentities, Identity, IdentityAllocator, LocalIdentityAllocator};
use agent::labels::{LabelSet, DEFAULT_CLUSTER_NAME};
use agent::policy::{
    compile, CompileInput, CompiledPolicy, Direction, Enforcement, PolicyEntry, PolicyRepository,
};

const RULE1_YAML: &str = include_str!("fixtures/rule1.yaml");
const RULE1_L7_YAML: &str = include_str!("fixtures/rule1-l7.yaml");
const RULE1_L7_JSON: &str = include_str!("fixtures/rule1-l7.json");
const RULE1_OLD_YAML: &str = include_str!("fixtures/rule1-description-at-top.yaml");
const POLICY_GET_L7: &str = include_str!("fixtures/policy-get-rule1-l7.json");
const POLICY_GET_ISTIO: &str = include_str!("fixtures/policy-get-istio-and-rule1.json");

/// The demo: deathstar (x2, one identity), tiefighter, xwing in `default`,
/// plus a deathstar-like pod in namespace `prod`.
struct Demo {
    allocator: LocalIdentityAllocator,
    local: Vec<(Identity, LabelSet)>,
    cidrs: CidrIdentities,
}

const DEATHSTAR: u32 = 256;
const TIEFIGHTER: u32 = 257;
const XWING: u32 = 258;
const PROD_EMPIRE: u32 = 259;

fn pod(labels: &[(&str, &str)], namespace: &str) -> LabelSet {
    let map: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    LabelSet::for_pod(&map, namespace, DEFAULT_CLUSTER_NAME)
}

impl Demo {
    fn new() -> Demo {
        let allocator = LocalIdentityAllocator::new();
        let pods = [
            pod(&[("org", "empire"), ("class", "deathstar")], "default"),
            pod(&[("org", "empire"), ("class", "deathstar")], "default"),
            pod(&[("org", "empire"), ("class", "tiefighter")], "default"),
            pod(&[("org", "alliance"), ("class", "xwing")], "default"),
            pod(&[("org", "empire"), ("class", "deathstar")], "prod"),
        ];
        let local = pods
            .into_iter()
            .map(|labels| {
                let id = allocator.allocate_now(&labels).expect("identity");
                (id, labels)
            })
            .collect();
        Demo {
            allocator,
            local,
            cidrs: CidrIdentities::new(),
        }
    }

    fn compile(&mut self, repo: &PolicyRepository) -> CompiledPolicy {
        self.cidrs
            .sync(&repo.cidr_prefixes())
            .expect("room for CIDR identities");
        let identities = self.allocator.list();
        compile(&CompileInput {
            rules: repo.rules(),
            local: &self.local,
            identities: &identities,
            cidrs: &self.cidrs,
            cluster: DEFAULT_CLUSTER_NAME,
            fqdn: &agent::policy::FqdnMatcher::new(repo.rules()),
            fqdn_names: &[],
        })
    }
}

fn entry(
    local: u32,
    remote: u32,
    dport: u16,
    protocol: u8,
    direction: Direction,
    deny: bool,
) -> PolicyEntry {
    PolicyEntry {
        local_identity: local,
        remote_identity: remote,
        dport,
        protocol,
        direction,
        deny,
    }
}

fn ingress(local: u32, remote: u32, dport: u16, protocol: u8) -> PolicyEntry {
    entry(local, remote, dport, protocol, Direction::Ingress, false)
}

fn compiled(text: &str) -> CompiledPolicy {
    let mut repo = PolicyRepository::new();
    repo.import(text).expect("valid policy");
    Demo::new().compile(&repo)
}

/// What rule1 compiles to: only empire ships (deathstar itself included)
/// reach deathstar on TCP/80; nothing else is enforced.
fn assert_rule1(policy: &CompiledPolicy) {
    assert_eq!(
        policy.entries,
        [
            ingress(DEATHSTAR, DEATHSTAR, 80, 6),
            ingress(DEATHSTAR, TIEFIGHTER, 80, 6)
        ]
    );
    assert!(!policy.entries.iter().any(|e| e.remote_identity == XWING));
    assert_eq!(
        policy.enforcement_of(Identity(DEATHSTAR)),
        Enforcement {
            ingress: true,
            egress: false
        }
    );
    for other in [TIEFIGHTER, XWING, PROD_EMPIRE] {
        assert_eq!(
            policy.enforcement_of(Identity(other)),
            Enforcement::default()
        );
    }
}

#[test]
fn rule1_yaml_allows_tiefighter_not_xwing() {
    assert_rule1(&compiled(RULE1_YAML));
}

#[test]
fn every_seed_form_of_rule1_compiles_the_same() {
    for text in [RULE1_L7_YAML, RULE1_L7_JSON, RULE1_OLD_YAML, POLICY_GET_L7] {
        assert_rule1(&compiled(text));
    }
}

#[test]
fn l7_seed_imports_without_warning_and_compiles_a_redirect() {
    let mut repo = PolicyRepository::new();
    let outcome = repo.import(RULE1_L7_YAML).expect("valid policy");
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.revision, 2);
    // The deathstar's port 80 goes through the proxy for every org=empire peer
    // (the tiefighter, and the deathstar itself), with the seed's one rule.
    let policy = compiled(RULE1_L7_YAML);
    let redirects: Vec<_> = policy.redirects.iter().collect();
    assert_eq!(redirects.len(), 1, "{redirects:?}");
    let (key, peers) = redirects[0];
    assert_eq!(key.local_identity, DEATHSTAR);
    assert_eq!((key.dport, key.protocol), (80, 6));
    assert_eq!(key.direction, Direction::Ingress);
    assert_eq!(
        peers.keys().copied().collect::<Vec<_>>(),
        [DEATHSTAR, TIEFIGHTER]
    );
    assert_eq!(peers[&TIEFIGHTER].len(), 1);
    assert_eq!(peers[&TIEFIGHTER][0].method, "POST");
    assert_eq!(peers[&TIEFIGHTER][0].path, "/v1/request-landing");
    // Without its L7 part, rule1 has no redirect.
    assert!(compiled(RULE1_YAML).redirects.is_empty());
}

#[test]
fn a_peer_also_allowed_without_l7_rules_gets_an_allow_all_rule() {
    // rule1 with its L7 part, plus a rule allowing the tiefighter on port 80 at L4.
    let extra = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: plain\nspec:\n  endpointSelector:\n    matchLabels:\n      class: deathstar\n  ingress:\n  - fromEndpoints:\n    - matchLabels:\n        class: tiefighter\n    toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n";
    let mut repo = PolicyRepository::new();
    repo.import(RULE1_L7_YAML).expect("valid policy");
    repo.import(extra).expect("valid policy");
    let policy = Demo::new().compile(&repo);
    let (_, peers) = policy.redirects.iter().next().expect("one redirect");
    let tiefighter = &peers[&TIEFIGHTER];
    assert_eq!(tiefighter.len(), 2, "{tiefighter:?}");
    assert_eq!(tiefighter[0].method, "POST");
    assert_eq!(tiefighter[1], agent::policy::HttpRule::default());
    // The deathstar itself is allowed only through rule1's L7 part.
    assert_eq!(peers[&DEATHSTAR].len(), 1);
}

#[test]
fn policy_get_output_round_trips_exactly() {
    let mut repo = PolicyRepository::new();
    repo.import(POLICY_GET_L7).expect("valid rules");
    assert_eq!(repo.rules_json(), POLICY_GET_L7.trim_end());
}

#[test]
fn rule1_yaml_prints_like_cilium_policy_get() {
    // The seed's `cilium policy get` output, minus the uid label our
    // documents do not carry.
    let mut repo = PolicyRepository::new();
    repo.import(RULE1_L7_YAML).expect("valid policy");
    let expected: serde_json::Value = serde_json::from_str(POLICY_GET_L7).expect("seed JSON");
    let mut expected = expected;
    if let Some(labels) = expected[0]["labels"].as_array_mut() {
        labels.retain(|l| l["key"] != "io.cilium.k8s.policy.uid");
    }
    let printed: serde_json::Value = serde_json::from_str(&repo.rules_json()).expect("our JSON");
    assert_eq!(printed, expected);
}

#[test]
fn older_policy_get_output_imports_and_gains_default_deny() {
    let mut repo = PolicyRepository::new();
    repo.import(POLICY_GET_ISTIO).expect("valid rules");
    let printed: serde_json::Value = serde_json::from_str(&repo.rules_json()).expect("our JSON");
    assert_eq!(
        printed[0]["endpointSelector"],
        serde_json::json!({"matchLabels": {"reserved:init": ""}})
    );
    assert_eq!(
        printed[0]["enableDefaultDeny"],
        serde_json::json!({"ingress": true, "egress": true})
    );
    let policy = Demo::new().compile(&repo);
    assert_rule1(&policy);
}

#[test]
fn namespace_scoping() {
    // The same rule in namespace prod selects only the prod deathstar, and
    // its peers are only prod endpoints: tiefighter (default) is not allowed.
    let text = RULE1_YAML.replace("  name: \"rule1\"", "  name: \"rule1\"\n  namespace: prod");
    let policy = compiled(&text);
    assert_eq!(policy.entries, [ingress(PROD_EMPIRE, PROD_EMPIRE, 80, 6)]);
    assert_eq!(
        policy.enforcement_of(Identity(DEATHSTAR)),
        Enforcement::default()
    );

    // Naming the namespace in the peer selector reaches across.
    let text = text.replace(
        "        org: empire\n    toPorts",
        "        org: empire\n        k8s:io.kubernetes.pod.namespace: default\n    toPorts",
    );
    let policy = compiled(&text);
    assert_eq!(
        policy.entries,
        [
            ingress(PROD_EMPIRE, DEATHSTAR, 80, 6),
            ingress(PROD_EMPIRE, TIEFIGHTER, 80, 6)
        ]
    );
}

const XWING_EGRESS: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: x\nspec:\n  endpointSelector:\n    matchLabels: {class: xwing}\n";

fn egress(remote: u32, dport: u16, protocol: u8) -> PolicyEntry {
    entry(XWING, remote, dport, protocol, Direction::Egress, false)
}

#[test]
fn entities() {
    let policy = compiled(&format!("{XWING_EGRESS}  egress:\n  - toEntities: [host, remote-node]\n  - toEntities: [world]\n    toPorts: [{{ports: [{{port: '443', protocol: TCP}}]}}]\n"));
    assert_eq!(
        policy.entries,
        [
            egress(1, 0, 0),
            egress(2, 443, 6),
            egress(6, 0, 0),
            egress(9, 443, 6),
            egress(10, 443, 6)
        ]
    );
    assert_eq!(
        policy.enforcement_of(Identity(XWING)),
        Enforcement {
            ingress: false,
            egress: true
        }
    );

    let policy = compiled(&format!("{XWING_EGRESS}  egress:\n  - toEntities: [all]\n"));
    assert_eq!(policy.entries, [egress(0, 0, 0)]);

    let policy = compiled(&format!(
        "{XWING_EGRESS}  egress:\n  - toEntities: [cluster]\n"
    ));
    let remotes: Vec<u32> = policy.entries.iter().map(|e| e.remote_identity).collect();
    assert_eq!(
        remotes,
        [
            1,
            3,
            4,
            5,
            6,
            7,
            8,
            DEATHSTAR,
            TIEFIGHTER,
            XWING,
            PROD_EMPIRE
        ]
    );
}

#[test]
fn empty_endpoint_selector_means_cluster_not_world() {
    let bare = r#"[{"endpointSelector": {"matchLabels": {"k8s:class": "xwing"}}, "egress": [{"toEndpoints": [{}]}]}]"#;
    let remotes: Vec<u32> = compiled(bare)
        .entries
        .iter()
        .map(|e| e.remote_identity)
        .collect();
    assert_eq!(
        remotes,
        [
            1,
            3,
            4,
            5,
            6,
            7,
            8,
            DEATHSTAR,
            TIEFIGHTER,
            XWING,
            PROD_EMPIRE
        ]
    );

    // In a namespaced policy `{}` is every endpoint of the namespace.
    let namespaced = compiled(&format!(
        "{XWING_EGRESS}  egress:\n  - toEndpoints: [{{}}]\n"
    ));
    let remotes: Vec<u32> = namespaced
        .entries
        .iter()
        .map(|e| e.remote_identity)
        .collect();
    assert_eq!(remotes, [DEATHSTAR, TIEFIGHTER, XWING]);
}

#[test]
fn deny_rules_and_default_deny_off() {
    let text = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: d\nspec:\n  endpointSelector:\n    matchLabels: {class: deathstar}\n  enableDefaultDeny:\n    ingress: false\n  ingressDeny:\n  - fromEndpoints:\n    - matchLabels: {org: alliance}\n";
    let policy = compiled(text);
    assert_eq!(
        policy.entries,
        [
            ingress(DEATHSTAR, 0, 0, 0),
            entry(DEATHSTAR, XWING, 0, 0, Direction::Ingress, true),
        ]
    );
    assert_eq!(
        policy.enforcement_of(Identity(DEATHSTAR)),
        Enforcement {
            ingress: true,
            egress: false
        }
    );

    // With default deny (the default), the deny rule alone allows nothing.
    let policy = compiled(&text.replace("  enableDefaultDeny:\n    ingress: false\n", ""));
    assert_eq!(
        policy.entries,
        [entry(DEATHSTAR, XWING, 0, 0, Direction::Ingress, true)]
    );
}

#[test]
fn port_ranges_expand_one_entry_per_port() {
    let policy = compiled(&format!(
        "{XWING_EGRESS}  egress:\n  - toPorts:\n    - ports:\n      - port: '8080'\n        endPort: 8082\n        protocol: TCP\n      - port: 53\n"
    ));
    assert_eq!(
        policy.entries,
        [
            egress(0, 53, 6),
            egress(0, 53, 17),
            egress(0, 53, 132),
            egress(0, 8080, 6),
            egress(0, 8081, 6),
            egress(0, 8082, 6),
        ]
    );
}

#[test]
fn cidr_sets_with_exceptions() {
    let mut repo = PolicyRepository::new();
    repo.import(&format!(
        "{XWING_EGRESS}  egress:\n  - toCIDRSet:\n    - cidr: 10.0.0.0/8\n      except: [10.96.0.0/12]\n  - toCIDR: [192.0.2.1]\n"
    ))
    .expect("valid policy");
    let mut demo = Demo::new();
    let policy = demo.compile(&repo);
    let ten = 1 << 24;
    let except = ten + 1;
    let host = ten + 2;
    assert_eq!(
        policy.cidr_identities,
        [
            ("10.0.0.0/8".parse().expect("net"), Identity(ten)),
            ("10.96.0.0/12".parse().expect("net"), Identity(except)),
            ("192.0.2.1/32".parse().expect("net"), Identity(host)),
        ]
    );
    assert_eq!(policy.entries, [egress(ten, 0, 0), egress(host, 0, 0)]);

    // The world entity covers CIDR identities too.
    repo.import(&format!(
        "{XWING_EGRESS}  egress:\n  - toEntities: [world]\n  - toCIDR: [10.0.0.0/8]\n"
    ))
    .expect("valid policy");
    let policy = demo.compile(&repo);
    let remotes: Vec<u32> = policy.entries.iter().map(|e| e.remote_identity).collect();
    assert_eq!(remotes, [2, 9, 10, ten]);
}

#[test]
fn l4_only_and_empty_sections() {
    let policy = compiled(&format!(
        "{XWING_EGRESS}  egress:\n  - toPorts: [{{ports: [{{port: '53', protocol: UDP}}]}}]\n  ingress:\n  - {{}}\n"
    ));
    assert_eq!(policy.entries, [egress(0, 53, 17)]);
    assert_eq!(
        policy.enforcement_of(Identity(XWING)),
        Enforcement {
            ingress: true,
            egress: true
        }
    );
}

#[test]
fn icmp_rules() {
    let policy = compiled(&format!(
        "{XWING_EGRESS}  egress:\n  - toEntities: [host]\n    icmps:\n    - fields:\n      - type: 8\n      - {{type: EchoRequest, family: IPv6}}\n"
    ));
    assert_eq!(policy.entries, [egress(1, 8, 1), egress(1, 128, 58)]);
}

#[test]
fn output_is_sorted_and_deduplicated() {
    let text =
        format!("{XWING_EGRESS}  egress:\n  - toEntities: [host, host]\n  - toEntities: [host]\n");
    assert_eq!(compiled(&text).entries, [egress(1, 0, 0)]);
}

#[test]
fn dns_visibility_example_compiles_dns_redirects_for_udp_and_tcp() {
    let text = include_str!("../../examples/policies/dns-visibility.yaml");
    let mut repo = PolicyRepository::new();
    let outcome = repo.import(text).expect("valid policy");
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    let mut demo = Demo::new();
    let coredns_labels = pod(&[("k8s-app", "kube-dns")], "kube-system");
    let coredns = demo
        .allocator
        .allocate_now(&coredns_labels)
        .expect("identity");
    demo.local.push((coredns, coredns_labels));
    let policy = demo.compile(&repo);
    // No HTTP redirect; one DNS redirect per ship and transport, to kube-dns only.
    assert!(policy.redirects.is_empty(), "{:?}", policy.redirects);
    let keys: Vec<(u32, u16, u8, Direction)> = policy
        .dns_redirects
        .keys()
        .map(|k| (k.local_identity, k.dport, k.protocol, k.direction))
        .collect();
    assert_eq!(
        keys,
        [
            (TIEFIGHTER, 53, 6, Direction::Egress),
            (TIEFIGHTER, 53, 17, Direction::Egress),
            (XWING, 53, 6, Direction::Egress),
            (XWING, 53, 17, Direction::Egress),
        ]
    );
    for peers in policy.dns_redirects.values() {
        assert_eq!(peers.keys().copied().collect::<Vec<_>>(), [coredns.0]);
        assert_eq!(peers[&coredns.0].len(), 1);
        assert_eq!(peers[&coredns.0][0].match_pattern, "**.cluster.local");
    }
    // The deathstar's port stays plain L4, with no redirect.
    assert!(policy
        .entries
        .contains(&entry(XWING, DEATHSTAR, 80, 6, Direction::Egress, false)));
}
