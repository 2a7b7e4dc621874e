//! Admin output (golden) and a round trip through the admin socket.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use agent::admin::{
    bind_admin_socket, execute_admin_command, format_endpoint_list, format_identity_list,
    serve_admin, AdminCommand, AdminStats, EndpointCommand, EndpointRow, IdentityCommand,
    IdentityRow, PolicyCommand,
};
use agent::endpoints::{EndpointEvent, EndpointSpec, WatchedEndpoint};
use agent::identity::LocalIdentityAllocator;
use agent::labels::DEFAULT_CLUSTER_NAME;
use agent::policy::{Direction, PolicyEntry};
use agent::state::AgentState;
use expect_test::expect;

const SEED_ENDPOINT_LIST: &str = include_str!("fixtures/cilium-endpoint-list.txt");
const RULE1_YAML: &str = include_str!("fixtures/rule1.yaml");

/// Reads the rows back out of the seed's `cilium endpoint list` output.
fn rows_of_seed_table(table: &str) -> Vec<EndpointRow> {
    let mut rows: Vec<EndpointRow> = Vec::new();
    for line in table.lines().skip(2) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            let [id, ingress, egress, identity, label, ipv6, ipv4, status] = fields[..] else {
                panic!("unexpected seed row {line:?}");
            };
            rows.push(EndpointRow {
                id: id.parse().expect("id"),
                namespace: String::new(),
                name: String::new(),
                ingress_enforced: ingress == "Enabled",
                egress_enforced: egress == "Enabled",
                identity: identity.parse().expect("identity"),
                labels: vec![label.to_string()],
                ipv6: ipv6.to_string(),
                ipv4: ipv4.to_string(),
                interface: String::new(),
                status: status.to_string(),
                proxy_redirects: Vec::new(),
            });
        } else if let (Some(row), [label]) = (rows.last_mut(), fields.as_slice()) {
            row.labels.push(label.to_string());
        }
    }
    rows
}

#[test]
fn endpoint_list_shows_proxy_redirects_under_the_labels() {
    let mut rows = rows_of_seed_table(SEED_ENDPOINT_LIST);
    rows.truncate(1);
    rows[0].proxy_redirects = vec![(format!("{}:ingress:TCP:80", rows[0].id), 10000)];
    let printed = format_endpoint_list(&rows);
    let line = printed
        .lines()
        .find(|l| l.contains("proxy-redirect"))
        .unwrap_or_else(|| panic!("no redirect line in\n{printed}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        [
            "proxy-redirect",
            &format!("{}:ingress:TCP:80", rows[0].id),
            "=>",
            "10000"
        ]
    );
}

#[test]
fn endpoint_list_reproduces_the_seed_table() {
    let rows = rows_of_seed_table(SEED_ENDPOINT_LIST);
    assert_eq!(rows.len(), 14);
    let printed = format_endpoint_list(&rows);
    // The seed lost its trailing spaces; compare without them.
    let trimmed: Vec<&str> = printed.lines().map(str::trim_end).collect();
    let seed: Vec<&str> = SEED_ENDPOINT_LIST.lines().map(str::trim_end).collect();
    assert_eq!(trimmed, seed);
}

fn spec(name: &str, labels: &[(&str, &str)], last_octet: u8) -> EndpointSpec {
    EndpointSpec {
        name: name.to_string(),
        namespace: "default".to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ipv4: Ipv4Addr::new(10, 200, 1, last_octet),
        ipv6: format!("fd00:200:1::{last_octet}").parse().ok(),
        interface: format!("lxc{name}"),
        workloads: Vec::new(),
    }
}

/// The Star Wars demo endpoints, as the watcher would report them.
fn demo_events() -> Vec<EndpointEvent> {
    let specs = [
        (
            1601,
            spec(
                "deathstar-1",
                &[("org", "empire"), ("class", "deathstar")],
                10,
            ),
        ),
        (
            2203,
            spec(
                "deathstar-2",
                &[("org", "empire"), ("class", "deathstar")],
                11,
            ),
        ),
        (
            384,
            spec(
                "tiefighter",
                &[("org", "empire"), ("class", "tiefighter")],
                12,
            ),
        ),
        (
            3017,
            spec("xwing", &[("org", "alliance"), ("class", "xwing")], 13),
        ),
    ];
    specs
        .into_iter()
        .map(|(id, spec)| {
            EndpointEvent::Added(WatchedEndpoint {
                id,
                path: PathBuf::from(format!("/eps/default_{}.yaml", spec.name)),
                spec,
            })
        })
        .collect()
}

async fn demo_state() -> Arc<AgentState> {
    let state = AgentState::new(
        Arc::new(LocalIdentityAllocator::new()),
        DEFAULT_CLUSTER_NAME,
    );
    for event in demo_events() {
        state.apply_endpoint_event(event).await.expect("identity");
    }
    state
}

#[tokio::test]
async fn golden_endpoint_and_identity_lists() {
    let state = demo_state().await;
    state.import_policy(RULE1_YAML).expect("valid policy");
    let rows: Vec<EndpointRow> = state
        .endpoints_with_enforcement()
        .iter()
        .map(|(e, enforcement)| EndpointRow::new(e, *enforcement))
        .collect();
    expect![[r#"
        ENDPOINT   POLICY (ingress)   POLICY (egress)   IDENTITY   LABELS (source:key[=value])                IPv6             IPv4          STATUS   
                   ENFORCEMENT        ENFORCEMENT                                                                                            
        384        Disabled           Disabled          257        k8s:class=tiefighter                       fd00:200:1::12   10.200.1.12   ready   
                                                                   k8s:io.cilium.k8s.policy.cluster=default                                          
                                                                   k8s:io.kubernetes.pod.namespace=default                                           
                                                                   k8s:org=empire                                                                    
        1601       Enabled            Disabled          256        k8s:class=deathstar                        fd00:200:1::10   10.200.1.10   ready   
                                                                   k8s:io.cilium.k8s.policy.cluster=default                                          
                                                                   k8s:io.kubernetes.pod.namespace=default                                           
                                                                   k8s:org=empire                                                                    
        2203       Enabled            Disabled          256        k8s:class=deathstar                        fd00:200:1::11   10.200.1.11   ready   
                                                                   k8s:io.cilium.k8s.policy.cluster=default                                          
                                                                   k8s:io.kubernetes.pod.namespace=default                                           
                                                                   k8s:org=empire                                                                    
        3017       Disabled           Disabled          258        k8s:class=xwing                            fd00:200:1::13   10.200.1.13   ready   
                                                                   k8s:io.cilium.k8s.policy.cluster=default                                          
                                                                   k8s:io.kubernetes.pod.namespace=default                                           
                                                                   k8s:org=alliance                                                                  
    "#]]
    .assert_eq(&format_endpoint_list(&rows));

    let identities: Vec<IdentityRow> = state
        .identities()
        .iter()
        .map(|(id, labels)| IdentityRow::new(*id, labels))
        .collect();
    expect![[r#"
        ID    LABELS
        1     reserved:host
        2     reserved:world
        3     reserved:unmanaged
        4     reserved:health
        5     reserved:init
        6     reserved:remote-node
        7     reserved:kube-apiserver
        8     reserved:ingress
        9     reserved:world-ipv4
        10    reserved:world-ipv6
        256   k8s:class=deathstar
              k8s:io.cilium.k8s.policy.cluster=default
              k8s:io.kubernetes.pod.namespace=default
              k8s:org=empire
        257   k8s:class=tiefighter
              k8s:io.cilium.k8s.policy.cluster=default
              k8s:io.kubernetes.pod.namespace=default
              k8s:org=empire
        258   k8s:class=xwing
              k8s:io.cilium.k8s.policy.cluster=default
              k8s:io.kubernetes.pod.namespace=default
              k8s:org=alliance
    "#]]
    .assert_eq(&format_identity_list(&identities));
}

#[tokio::test]
async fn golden_policy_get() {
    let state = demo_state().await;
    state.import_policy(RULE1_YAML).expect("valid policy");
    let (rules_json, revision) = state.policy_json();
    expect![[r#"
        [
          {
            "endpointSelector": {
              "matchLabels": {
                "any:class": "deathstar",
                "any:org": "empire",
                "k8s:io.kubernetes.pod.namespace": "default"
              }
            },
            "ingress": [
              {
                "fromEndpoints": [
                  {
                    "matchLabels": {
                      "any:org": "empire",
                      "k8s:io.kubernetes.pod.namespace": "default"
                    }
                  }
                ],
                "toPorts": [
                  {
                    "ports": [
                      {
                        "port": "80",
                        "protocol": "TCP"
                      }
                    ]
                  }
                ]
              }
            ],
            "labels": [
              {
                "key": "io.cilium.k8s.policy.derived-from",
                "value": "CiliumNetworkPolicy",
                "source": "k8s"
              },
              {
                "key": "io.cilium.k8s.policy.name",
                "value": "rule1",
                "source": "k8s"
              },
              {
                "key": "io.cilium.k8s.policy.namespace",
                "value": "default",
                "source": "k8s"
              }
            ],
            "enableDefaultDeny": {
              "ingress": true,
              "egress": false
            },
            "description": "L3-L4 policy to restrict deathstar access to empire ships only"
          }
        ]
        Revision: 2
    "#]]
    .assert_eq(&agent::admin::format_policy_get(&rules_json, revision));
}

#[tokio::test]
async fn round_trip_through_the_admin_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("run/agent.sock");
    let state = demo_state().await;
    let mut changes = state.subscribe_changes();
    changes.mark_unchanged();

    let listener = bind_admin_socket(&socket).expect("bind");
    let mode = std::fs::metadata(&socket)
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stats = Arc::new(AdminStats::default());
    let server = tokio::spawn(serve_admin(
        listener,
        Arc::clone(&state),
        Arc::clone(&stats),
        async {
            let _ = stop_rx.await;
        },
    ));

    let run = |command: AdminCommand| {
        let socket = socket.clone();
        async move { execute_admin_command(&command, &socket).await }
    };

    let before = run(AdminCommand::Endpoint(EndpointCommand::List))
        .await
        .expect("list");
    assert!(before
        .stdout
        .lines()
        .nth(2)
        .expect("a row")
        .contains("Disabled           Disabled"));

    let get = run(AdminCommand::Policy(PolicyCommand::Get))
        .await
        .expect("get");
    assert_eq!(get.stdout, "[]\nRevision: 1\n");

    let policy_file = dir.path().join("rule1.yaml");
    std::fs::write(&policy_file, RULE1_YAML).expect("write");
    let imported = run(AdminCommand::Policy(PolicyCommand::Import {
        file: policy_file,
    }))
    .await
    .expect("import");
    assert_eq!(imported.stdout, "Revision: 2\n");
    assert!(imported.warnings.is_empty());
    assert!(
        changes.has_changed().expect("state alive"),
        "the import asks for a datapath sync"
    );

    let after = run(AdminCommand::Endpoint(EndpointCommand::List))
        .await
        .expect("list");
    let enabled: Vec<&str> = after
        .stdout
        .lines()
        .filter(|l| l.contains("Enabled"))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(enabled, ["1601", "2203"], "both deathstars enforce ingress");

    let compiled = state.compile().expect("compile");
    assert_eq!(
        compiled.entries,
        [
            PolicyEntry {
                local_identity: 256,
                remote_identity: 256,
                dport: 80,
                protocol: 6,
                direction: Direction::Ingress,
                deny: false
            },
            PolicyEntry {
                local_identity: 256,
                remote_identity: 257,
                dport: 80,
                protocol: 6,
                direction: Direction::Ingress,
                deny: false
            },
        ]
    );

    let get = run(AdminCommand::Policy(PolicyCommand::Get))
        .await
        .expect("get");
    assert!(
        get.stdout
            .starts_with("[\n  {\n    \"endpointSelector\": {"),
        "{}",
        get.stdout
    );
    assert!(get.stdout.ends_with("]\nRevision: 2\n"), "{}", get.stdout);

    // A bad policy is refused with its line, and changes nothing.
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_file,
        RULE1_YAML.replace("port: \"80\"", "port: \"eighty\""),
    )
    .expect("write");
    let refused = run(AdminCommand::Policy(PolicyCommand::Import {
        file: bad_file,
    }))
    .await;
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("spec.ingress[0].toPorts[0].ports[0].port: \"eighty\" is not a port number at line 18 column 15".to_string())
    );

    let identities = run(AdminCommand::Identity(IdentityCommand::List))
        .await
        .expect("identities");
    assert!(
        identities
            .stdout
            .starts_with("ID    LABELS\n1     reserved:host\n"),
        "{}",
        identities.stdout
    );

    let missing = run(AdminCommand::Policy(PolicyCommand::Delete {
        all: false,
        namespace: Some("default".to_string()),
        target: vec!["rule2".to_string()],
    }))
    .await;
    assert_eq!(
        missing.map_err(|e| e.to_string()),
        Err("no policy rule matches default/rule2".to_string())
    );
    let deleted = run(AdminCommand::Policy(PolicyCommand::Delete {
        all: false,
        namespace: None,
        target: vec!["rule1".to_string()],
    }))
    .await
    .expect("delete");
    assert_eq!(deleted.stdout, "Revision: 3\n");
    let all = run(AdminCommand::Policy(PolicyCommand::Delete {
        all: true,
        namespace: None,
        target: vec![],
    }))
    .await
    .expect("delete all");
    assert_eq!(all.stdout, "Revision: 3\n");

    assert!(stats.requests.load(std::sync::atomic::Ordering::Relaxed) >= 9);
    let _ = stop_tx.send(());
    server.await.expect("server stops");
}

#[tokio::test]
async fn oversized_and_garbage_requests_are_answered_with_errors() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let state = demo_state().await;
    let listener = bind_admin_socket(&socket).expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_admin(
        listener,
        state,
        Arc::new(AdminStats::default()),
        async {
            let _ = stop_rx.await;
        },
    ));

    let mut stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect");
    stream
        .write_all(b"{\"command\": \"launch\"}\n")
        .await
        .expect("write");
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.expect("read");
    assert!(
        answer.starts_with(
            "{\"result\":\"error\",\"message\":\"bad request: unknown variant `launch`"
        ),
        "{answer}"
    );

    let mut stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect");
    let big = vec![b'x'; agent::admin::MAX_REQUEST_BYTES + 10];
    // The server answers and closes before reading everything; ignore the write error.
    let _ = stream.write_all(&big).await;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.expect("read");
    assert_eq!(
        answer,
        "{\"result\":\"error\",\"message\":\"request larger than 4194304 bytes\"}\n"
    );

    // A stale socket file is replaced; a regular file is not.
    let _ = stop_tx.send(());
    server.await.expect("server stops");
    bind_admin_socket(&socket).expect("rebinds over a stale socket");
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").expect("write");
    assert_eq!(
        bind_admin_socket(&file)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(format!("{}: exists and is not a socket", file.display()))
    );
}
