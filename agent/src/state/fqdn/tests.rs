//! toFQDNs through the state: answers give addresses identities and policy entries,
//! expiry takes them away, a restart gives them back with the same numbers, and the
//! DNS proxy's hook holds an answer until the datapath has them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::accesslog::DnsLog;
use proxy::dns::AnswerHook;
use proxy::ConnInfo;

use crate::endpoints::{EndpointEvent, EndpointSpec, WatchedEndpoint};
use crate::fqdn::CacheAnswerHook;
use crate::identity::{Identity, LocalIdentityAllocator};
use crate::policy::{proto as ip_proto, Direction, PolicyEntry};
use crate::state::AgentState;

const GITHUB_ONLY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fqdn, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: xwing}}
  egress:
  - toFQDNs:
    - matchName: api.github.com
    - matchPattern: "*.example.org"
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
"#;

fn github() -> IpAddr {
    "203.0.113.10".parse().expect("ip")
}

fn cilium() -> IpAddr {
    "203.0.113.20".parse().expect("ip")
}

async fn xwing_state() -> (Arc<AgentState>, Identity) {
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    state
        .apply_endpoint_event(EndpointEvent::Added(WatchedEndpoint {
            id: 12,
            path: "/eps/default_xwing.yaml".into(),
            spec: EndpointSpec {
                name: "xwing".into(),
                namespace: "default".into(),
                labels: [("class".to_string(), "xwing".to_string())].into(),
                ipv4: "127.0.0.1".parse().expect("ip"),
                ipv6: None,
                interface: "lxcxwing".into(),
                workloads: Vec::new(),
            },
        }))
        .await
        .expect("added");
    let identity = state.endpoints()[0].identity;
    state
        .import_policy(GITHUB_ONLY)
        .expect("the policy imports");
    (state, identity)
}

/// The identity the compilation gave `ip`'s host prefix, if any.
fn identity_of(compiled: &crate::policy::CompiledPolicy, ip: IpAddr) -> Option<Identity> {
    compiled
        .cidr_identities
        .iter()
        .find(|(prefix, _)| *prefix == ipnet::IpNet::from(ip))
        .map(|(_, id)| *id)
}

fn allows_443(compiled: &crate::policy::CompiledPolicy, local: Identity, remote: Identity) -> bool {
    compiled.entries.contains(&PolicyEntry {
        local_identity: local.0,
        remote_identity: remote.0,
        dport: 443,
        protocol: ip_proto::TCP,
        direction: Direction::Egress,
        deny: false,
    })
}

#[tokio::test]
async fn selected_answers_get_identities_and_allow_entries_until_they_expire() {
    let (state, xwing) = xwing_state().await;
    let compiled = state.compile().expect("compiles");
    assert!(
        identity_of(&compiled, github()).is_none(),
        "nothing learned yet"
    );
    assert!(compiled.enforcement_of(xwing).egress);

    state.record_dns_answer(12, "API.github.com.", &[github()], 1);
    state.record_dns_answer(12, "cilium.io.", &[cilium()], 30);
    let compiled = state.compile().expect("compiles");
    let id = identity_of(&compiled, github()).expect("api.github.com has an identity");
    assert!(id.is_cidr(), "{id}");
    assert!(allows_443(&compiled, xwing, id));
    // A name no selector matches gets nothing.
    assert!(identity_of(&compiled, cilium()).is_none());
    let labels = state.identity_labels(id).expect("labels").to_strings();
    assert!(
        labels.contains(&"cidr:203.0.113.10/32".to_string()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"reserved:world-ipv4".to_string()),
        "{labels:?}"
    );
    // `policy get` prints the selectors back.
    let (json, _) = state.policy_json();
    assert!(json.contains("\"toFQDNs\""), "{json}");
    assert!(
        json.contains("api.github.com") && json.contains("matchName"),
        "{json}"
    );

    // The TTL (1 s) runs out: the maintenance removes the name and asks for a sync,
    // which drops the identity and its entries.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let generation = state.generation();
    assert!(state.expire_fqdn() >= 1);
    assert!(state.generation() > generation, "expiry asks for a sync");
    let compiled = state.compile().expect("compiles");
    assert!(identity_of(&compiled, github()).is_none());
    assert!(!compiled.entries.iter().any(|e| e.remote_identity == id.0));
}

#[tokio::test]
async fn a_restart_gives_the_addresses_their_numbers_back() {
    let (state, _) = xwing_state().await;
    state.record_dns_answer(12, "api.github.com.", &[github()], 300);
    let before = identity_of(&state.compile().expect("compiles"), github()).expect("identity");
    let snapshot = state.snapshot("node1");
    assert!(
        snapshot
            .cidr_identities
            .iter()
            .any(|r| r.prefix == "203.0.113.10/32" && r.id == before),
        "the saved table holds the address: {:?}",
        snapshot.cidr_identities
    );
    let restored = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    restored
        .restore(snapshot, std::path::Path::new("/state.json"), "node1")
        .await
        .expect("restores");
    // A snapshot taken before the first compilation keeps it too.
    let again = restored.snapshot("node1");
    assert!(again
        .cidr_identities
        .iter()
        .any(|r| r.prefix == "203.0.113.10/32" && r.id == before));
    let compiled = restored.compile().expect("compiles");
    assert_eq!(identity_of(&compiled, github()), Some(before));
}

#[tokio::test]
async fn the_hook_releases_an_answer_only_once_the_datapath_has_its_addresses() {
    let (state, _) = xwing_state().await;
    state.expect_datapath();
    state.mark_realized(state.generation());
    // A stand-in for the datapath sync: it takes a while, then reports the generation
    // it saw as realized.
    let programmed = Arc::new(AtomicBool::new(false));
    let mut changes = state.subscribe_changes();
    let sync_state = state.clone();
    let sync_programmed = programmed.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let generation = *changes.borrow_and_update();
            let compiled = sync_state.compile().expect("compiles");
            tokio::time::sleep(Duration::from_millis(300)).await;
            if identity_of(&compiled, github()).is_some() {
                sync_programmed.store(true, Ordering::SeqCst);
            }
            sync_state.mark_realized(generation);
        }
    });
    let hook = CacheAnswerHook::new(state.clone());
    let conn = ConnInfo {
        source: "127.0.0.1:40000".parse().expect("address"),
        destination: "10.96.0.10:53".parse().expect("address"),
        proxy_port: 15053,
        ingress: false,
    };
    let answer = |name: &str, ip: IpAddr| DnsLog {
        query: name.to_string(),
        ips: vec![ip],
        ttl: 30,
        cnames: Vec::new(),
        observation_source: "proxy".to_string(),
        rcode: 0,
        qtypes: vec!["A".to_string()],
        rrtypes: vec!["A".to_string()],
        transport: Default::default(),
    };
    let github_answer = answer("api.github.com.", github());
    hook.allowed_answer(&conn, &github_answer).await;
    assert!(
        programmed.load(Ordering::SeqCst),
        "the answer was held until the sync had programmed the address"
    );
    assert!(state.is_realized());
    // An answer no selector wants is not held.
    let generation = state.generation();
    let cilium_answer = answer("cilium.io.", cilium());
    hook.allowed_answer(&conn, &cilium_answer).await;
    assert_eq!(state.generation(), generation);
}
