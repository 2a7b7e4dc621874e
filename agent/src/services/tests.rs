use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::endpoints::{EndpointEvent, EndpointSpec, WatchedEndpoint};
use crate::identity::LocalIdentityAllocator;
use crate::state::AgentState;

pub(crate) const DEATHSTAR: &str = "name: deathstar
namespace: default
type: ClusterIP
clusterIP: 10.96.60.53
ports:
- name: http
  port: 80
  targetPort: 80
  protocol: TCP
selector: {org: empire, class: deathstar}
";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn pod(id: u16, name: &str, class: &str, org: &str, ipv4: &str) -> WatchedEndpoint {
    WatchedEndpoint {
        id,
        path: format!("/eps/default_{name}.yaml").into(),
        spec: EndpointSpec {
            name: name.to_string(),
            namespace: "default".to_string(),
            labels: [
                ("org".to_string(), org.to_string()),
                ("class".to_string(), class.to_string()),
            ]
            .into(),
            ipv4: ipv4.parse().expect("address"),
            ipv6: None,
            interface: format!("lxc{id}"),
            workloads: Vec::new(),
        },
    }
}

fn file() -> ServiceSource {
    ServiceSource::File("/svc/default_deathstar.yaml".into())
}

#[test]
fn parses_the_service_file() {
    let spec = parse_service_file(Path::new("deathstar.yaml"), DEATHSTAR).expect("valid");
    assert_eq!(spec.service_name().to_string(), "default/deathstar");
    let frontends: Vec<String> = spec
        .frontends()
        .iter()
        .map(|(f, kind, _)| format!("{f} {kind}"))
        .collect();
    assert_eq!(frontends, ["10.96.60.53:80/TCP ClusterIP"]);
}

#[test]
fn bad_values_are_named_with_path_and_line() {
    let bad = DEATHSTAR.replace("protocol: TCP", "protocol: SCTP");
    let error = parse_service_file(Path::new("/svc/d.yaml"), &bad).expect_err("bad protocol");
    assert!(error.to_string().starts_with("/svc/d.yaml: "), "{error}");
    assert!(error.to_string().contains("line 9"), "{error}");
    let bad = DEATHSTAR.replace("  port: 80\n", "  port: 0\n");
    let error = parse_service_file(Path::new("/svc/d.yaml"), &bad).expect_err("port 0");
    assert_eq!(
        error.to_string(),
        "/svc/d.yaml: ports: port 0 is not a service port at line 5"
    );
    let bad = DEATHSTAR.replace("clusterIP: 10.96.60.53\n", "");
    let error = parse_service_file(Path::new("/svc/d.yaml"), &bad).expect_err("no VIP");
    assert!(error.to_string().contains("needs a cluster IP"), "{error}");
}

#[test]
fn frontend_and_state_parse_and_print() {
    let frontend: Frontend = "10.96.0.10:53/UDP".parse().expect("frontend");
    assert_eq!(frontend.to_string(), "10.96.0.10:53/UDP");
    let frontend: Frontend = "[fd00::10]:80".parse().expect("frontend");
    assert_eq!(frontend.to_string(), "[fd00::10]:80/TCP");
    let error = "10.96.0.10".parse::<Frontend>().expect_err("no port");
    assert!(error.contains("\"10.96.0.10\""), "{error}");
    assert_eq!(
        "maintenance".parse::<BackendState>(),
        Ok(BackendState::Maintenance)
    );
    assert!("gone".parse::<BackendState>().is_err());
}

#[tokio::test]
async fn selector_backends_follow_the_endpoints() {
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    let spec = parse_service_file(Path::new("d.yaml"), DEATHSTAR).expect("valid");
    assert!(state
        .upsert_service(file(), spec.clone())
        .expect("declared"));
    assert!(!state.upsert_service(file(), spec).expect("unchanged"));
    for watched in [
        pod(1, "deathstar-1", "deathstar", "empire", "10.200.1.11"),
        pod(2, "deathstar-2", "deathstar", "empire", "10.200.1.13"),
        pod(3, "xwing", "xwing", "alliance", "10.200.1.12"),
    ] {
        state
            .apply_endpoint_event(EndpointEvent::Added(watched))
            .await
            .expect("added");
    }
    let services = state.lb_services();
    assert_eq!(services.len(), 1);
    let service = &services[0];
    assert_eq!(service.id, 1);
    assert_eq!(service.name, ServiceName::new("default", "deathstar"));
    let backends: Vec<String> = service
        .backends
        .iter()
        .map(|b| format!("{}:{} {}", b.address, b.port, b.state))
        .collect();
    assert_eq!(backends, ["10.200.1.11:80 active", "10.200.1.13:80 active"]);

    let by_frontend = state
        .service_by_frontend(ip("10.96.60.53"), 80, Protocol::TCP)
        .expect("frontend");
    assert_eq!(by_frontend.id, 1);
    assert!(state
        .service_by_frontend(ip("10.96.60.53"), 80, Protocol::UDP)
        .is_none());
    let by_backend = state
        .service_by_backend(ip("10.200.1.13"), 80)
        .expect("backend");
    assert_eq!(by_backend.name.to_string(), "default/deathstar");
    assert!(state.service_by_backend(ip("10.200.1.12"), 80).is_none());

    // A removed pod stops being a backend.
    state
        .apply_endpoint_event(EndpointEvent::Removed(pod(
            2,
            "deathstar-2",
            "deathstar",
            "empire",
            "10.200.1.13",
        )))
        .await
        .expect("removed");
    assert!(state.service_by_backend(ip("10.200.1.13"), 80).is_none());
    assert_eq!(state.lb_services()[0].backends.len(), 1);
}

#[test]
fn changes_wait_for_the_datapath() {
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    state.expect_datapath();
    assert!(state.is_realized());
    let spec = parse_service_file(Path::new("d.yaml"), DEATHSTAR).expect("valid");
    state.upsert_service(file(), spec).expect("declared");
    assert!(!state.is_realized());
    state.mark_realized(state.generation());
    assert!(state.is_realized());
}

#[test]
fn ids_are_stable_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = crate::state::store::StateStore::new(dir.path());
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    state.persist_to(store.clone(), "node1").expect("saved");
    let dns = DEATHSTAR
        .replace("deathstar", "kube-dns")
        .replace("namespace: default", "namespace: kube-system")
        .replace("10.96.60.53", "10.96.0.10")
        .replace("name: http", "name: dns")
        .replace("port: 80", "port: 53")
        .replace("protocol: TCP", "protocol: UDP");
    let dns = parse_service_file(Path::new("dns.yaml"), &dns).expect("valid");
    let deathstar = parse_service_file(Path::new("d.yaml"), DEATHSTAR).expect("valid");
    state
        .upsert_service(ServiceSource::File("/svc/dns.yaml".into()), dns)
        .expect("declared");
    state
        .upsert_service(file(), deathstar.clone())
        .expect("declared");
    let ids: Vec<(u16, String)> = state
        .lb_services()
        .iter()
        .map(|s| (s.id, s.name.to_string()))
        .collect();
    assert_eq!(
        ids,
        [
            (1, "kube-system/kube-dns".into()),
            (2, "default/deathstar".into())
        ]
    );
    // Another frontend of deathstar gets a new ID; the old one keeps its own.
    let mut more = deathstar.clone();
    more.cluster_ips.push(ip("fd00:96::53"));
    state.upsert_service(file(), more).expect("changed");
    let (id, warning) = state
        .update_api_service(
            ApiService {
                frontend: "10.96.60.53:80".parse().expect("frontend"),
                kind: ServiceKind::ClusterIP,
                name: ServiceName::default(),
                backends: vec![Backend {
                    address: ip("10.200.2.11"),
                    port: 8080,
                    state: BackendState::Maintenance,
                    node: Some("node2".into()),
                }],
                session_affinity: None,
            },
            None,
        )
        .expect("updated");
    assert_eq!((id, warning), (2, None));

    let snapshot = store.load().expect("readable").expect("saved");
    let restored = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(restored.restore(snapshot, &store.path(), "node1"))
        .expect("restored");
    let after = restored.lb_services();
    assert_eq!(after, state.lb_services());
    let summary: Vec<String> = after
        .iter()
        .map(|s| format!("{} {} {} {}", s.id, s.frontend, s.name, s.backends.len()))
        .collect();
    assert_eq!(
        summary,
        [
            "1 10.96.0.10:53/UDP kube-system/kube-dns 0",
            "2 10.96.60.53:80/TCP default/deathstar 1",
            "3 [fd00:96::53]:80/TCP default/deathstar 0",
        ]
    );
    // Deleting the API's backends gives the declared ones back; a declared frontend
    // itself cannot be deleted through the API.
    assert!(restored.delete_api_service(2).is_ok());
    let error = restored.delete_api_service(2).expect_err("declared");
    assert!(error.contains("default/deathstar"), "{error}");
    assert_eq!(
        restored.delete_api_service(9).expect_err("unknown"),
        "service 9 not found"
    );
}

#[test]
fn a_name_or_frontend_of_another_source_is_refused() {
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    let spec = parse_service_file(Path::new("d.yaml"), DEATHSTAR).expect("valid");
    state
        .upsert_service(file(), spec.clone())
        .expect("declared");
    let error = state
        .upsert_service(ServiceSource::Kvstore, spec.clone())
        .expect_err("other source");
    assert!(
        error.contains("already declared by file /svc/default_deathstar.yaml"),
        "{error}"
    );
    let mut other = spec;
    other.name = "deathstar-copy".into();
    let error = state
        .upsert_service(ServiceSource::File("/svc/copy.yaml".into()), other)
        .expect_err("same frontend");
    assert!(
        error.contains("already used by service default/deathstar"),
        "{error}"
    );
    assert_eq!(state.lb_services().len(), 1);
}

mod admin {
    use super::*;
    use crate::admin::{format_service_list, handle_request, AdminRequest, AdminResponse};
    use crate::admin::{AdminCommand, ServiceCommand, ServiceUpdate};

    fn list(state: &AgentState) -> String {
        match handle_request(state, AdminRequest::ServiceList) {
            AdminResponse::Services { services } => format_service_list(&services),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn update(state: &AgentState, update: ServiceUpdate) -> AdminResponse {
        handle_request(state, AdminRequest::ServiceUpdate { update })
    }

    #[tokio::test]
    async fn list_update_and_delete_as_cilium_prints_them() {
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        let spec = parse_service_file(Path::new("d.yaml"), DEATHSTAR).expect("valid");
        state.upsert_service(file(), spec).expect("declared");
        for watched in [
            pod(1, "deathstar-1", "deathstar", "empire", "10.200.1.11"),
            pod(2, "deathstar-2", "deathstar", "empire", "10.200.2.11"),
        ] {
            state
                .apply_endpoint_event(EndpointEvent::Added(watched))
                .await
                .expect("added");
        }
        let created = update(
            &state,
            ServiceUpdate {
                id: None,
                frontend: Some("10.96.0.10:53/UDP".parse().expect("frontend")),
                backends: vec!["10.200.1.15:53".parse().expect("address")],
                states: vec![],
                kind: ServiceKind::ClusterIP,
                name: Some("kube-system/kube-dns".parse().expect("name")),
            },
        );
        assert!(
            matches!(
                created,
                AdminResponse::ServiceUpdated {
                    id: 2,
                    created: true,
                    backends: 1,
                    ..
                }
            ),
            "{created:?}"
        );
        let states = update(
            &state,
            ServiceUpdate {
                id: None,
                frontend: None,
                backends: vec!["10.200.2.11:80".parse().expect("address")],
                states: vec![BackendState::Maintenance],
                kind: ServiceKind::ClusterIP,
                name: None,
            },
        );
        assert!(
            matches!(
                states,
                AdminResponse::BackendStatesUpdated { backends: 1, .. }
            ),
            "{states:?}"
        );
        expect_test::expect![[r#"
            ID   Frontend             Service Type   Backend                                 
            1    10.96.60.53:80/TCP   ClusterIP      1 => 10.200.1.11:80/TCP (active)        
                                                     2 => 10.200.2.11:80/TCP (maintenance)   
            2    10.96.0.10:53/UDP    ClusterIP      1 => 10.200.1.15:53/UDP (active)        
        "#]]
        .assert_eq(&list(&state));
        // The maintenance backend takes no new connections.
        let service = state
            .service_by_frontend(ip("10.96.60.53"), 80, Protocol::TCP)
            .expect("deathstar");
        assert_eq!(service.active_backends().count(), 1);

        let unknown = update(
            &state,
            ServiceUpdate {
                id: None,
                frontend: None,
                backends: vec!["10.9.9.9:80".parse().expect("address")],
                states: vec![BackendState::Quarantined],
                kind: ServiceKind::ClusterIP,
                name: None,
            },
        );
        assert_eq!(
            unknown,
            AdminResponse::Error {
                message: "10.9.9.9:80 is not a backend of any service".into()
            }
        );
        let deleted = handle_request(
            &state,
            AdminRequest::ServiceDelete {
                id: Some(2),
                all: false,
            },
        );
        assert_eq!(deleted, AdminResponse::ServicesDeleted { ids: vec![2] });
        let refused = handle_request(
            &state,
            AdminRequest::ServiceDelete {
                id: Some(1),
                all: false,
            },
        );
        assert!(
            matches!(&refused, AdminResponse::Error { message } if message.contains("remove it there")),
            "{refused:?}"
        );
        assert_eq!(state.lb_services().len(), 1);
    }

    #[test]
    fn the_command_line_is_checked_before_sending() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: AdminCommand,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("hubble-agent").chain(args.iter().copied()))
                .map(|cli| cli.command)
        };
        let command = parse(&[
            "service",
            "update",
            "--frontend",
            "10.96.0.1:80",
            "--backends",
            "10.0.0.1:80,10.0.0.2:80",
            "--states",
            "active,maintenance",
            "--id",
            "7",
        ])
        .expect("parses");
        assert!(matches!(
            command,
            AdminCommand::Service(ServiceCommand::Update { id: Some(7), .. })
        ));
        assert!(parse(&["service", "delete"]).is_err());
        assert!(parse(&["service", "list", "-o", "json"]).is_ok());
    }
}

mod files {
    use super::*;
    use crate::dirwatch::Scanner;

    #[test]
    fn added_changed_bad_and_removed_files() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        let mut scanner = Scanner::<ServiceFiles>::new(dir.path().to_path_buf());
        let path = dir.path().join("default_deathstar.yaml");
        let scan = |scanner: &mut Scanner<ServiceFiles>| {
            for event in scanner.scan() {
                super::super::files::apply(&state, event);
            }
        };
        std::fs::write(&path, DEATHSTAR).expect("written");
        scan(&mut scanner);
        assert_eq!(
            state.lb_services()[0].frontend.to_string(),
            "10.96.60.53:80/TCP"
        );

        std::fs::write(&path, DEATHSTAR.replace("port: 80\n", "port: 8080\n")).expect("written");
        scan(&mut scanner);
        assert_eq!(
            state.lb_services()[0].frontend.to_string(),
            "10.96.60.53:8080/TCP"
        );

        // A bad file keeps the working service.
        std::fs::write(&path, DEATHSTAR.replace("10.96.60.53", "10.96.60.300")).expect("written");
        let events = scanner.scan();
        let [crate::dirwatch::FileEvent::Rejected { error, .. }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert!(
            error.to_string().contains("default_deathstar.yaml"),
            "{error}"
        );
        assert!(error.to_string().contains("line 4"), "{error}");
        for event in events {
            super::super::files::apply(&state, event);
        }
        assert_eq!(state.lb_services().len(), 1);

        std::fs::remove_file(&path).expect("removed");
        scan(&mut scanner);
        assert!(state.lb_services().is_empty());
    }
}

#[test]
fn cluster_services_from_etcd_become_declared_services() {
    use crate::kvstore::ClusterService;
    let json = r#"{"cluster":"default","namespace":"kube-system","name":"kube-dns",
        "frontends":{"10.96.0.10":{"dns":{"protocol":"UDP","port":53},"dns-tcp":{"protocol":"TCP","port":53}}},
        "backends":{"10.200.1.14":{"dns":{"protocol":"UDP","port":5353},"dns-tcp":{"protocol":"TCP","port":5353}}},
        "labels":{},"selector":{"k8s-app":"kube-dns"},"shared":false,"includeExternal":false}"#;
    let service: ClusterService = serde_json::from_str(json).expect("ClusterService");
    let spec = service.to_spec().expect("valid");
    let frontends: Vec<String> = spec
        .frontends()
        .iter()
        .map(|(f, _, port)| format!("{f} -> {}", port.backend_port()))
        .collect();
    assert_eq!(
        frontends,
        ["10.96.0.10:53/UDP -> 5353", "10.96.0.10:53/TCP -> 5353"]
    );
    assert_eq!(
        spec.backends,
        [ServiceBackendSpec::Address(ip("10.200.1.14"))]
    );
    // Written back the same way.
    let again = ClusterService::from_spec("default", &spec);
    assert_eq!(again.frontends, service.frontends);
    assert_eq!(again.backends, service.backends);

    let mut bad = service;
    bad.frontends
        .insert("10.96.0.300".into(), Default::default());
    let error = bad.to_spec().expect_err("bad address");
    assert!(error.contains("\"10.96.0.300\""), "{error}");

    // etcd is one source: its services replace what it declared before.
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    state.sync_services(&ServiceSource::Kvstore, vec![spec]);
    assert_eq!(state.lb_services().len(), 2);
    state.sync_services(&ServiceSource::Kvstore, vec![]);
    assert!(state.lb_services().is_empty());
}
