//! The `hubble` binary against a real observer (the node's gRPC server) on a Unix
//! socket and on TCP: `status`, `list namespaces`, `observe` in several formats.

use std::process::Output;
use std::time::Duration;

use observer::server::{ServeConfig, Server};
use observer::{LocalObserver, ObserverConfig};
use proto::flow::{self, layer4, Flow};

fn flow(i: u32, verdict: flow::Verdict) -> Flow {
    #[allow(deprecated)]
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: 1_721_922_966 + i64::from(i),
            nanos: 52_000_000,
        }),
        verdict: verdict as i32,
        ip: Some(flow::Ip {
            source: "10.200.1.20".into(),
            destination: "10.200.1.30".into(),
            ip_version: flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(flow::Layer4 {
            protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                source_port: 51000 + i,
                destination_port: 80,
                flags: Some(flow::TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(flow::Endpoint {
            identity: 62396,
            namespace: "default".into(),
            pod_name: "tiefighter".into(),
            ..Default::default()
        }),
        destination: Some(flow::Endpoint {
            identity: 50122,
            namespace: "empire".into(),
            pod_name: "deathstar".into(),
            ..Default::default()
        }),
        r#type: flow::FlowType::L3L4 as i32,
        event_type: Some(flow::CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        is_reply: Some(pbjson_types::BoolValue { value: false }),
        summary: "TCP Flags: SYN".into(),
        ..Default::default()
    }
}

async fn hubble(args: Vec<String>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hubble"))
        .args(args)
        .env("HOME", std::env::temp_dir())
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .await
        .expect("run hubble")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_list_and_observe_against_a_real_observer() -> anyhow::Result<()> {
    let (observer, ingest) = LocalObserver::new(ObserverConfig {
        node_name: "test-node".to_string(),
        ring_capacity: 15,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("hubble.sock");
    let mut config = ServeConfig::default();
    config.unix_socket = Some(socket.clone());
    config.listen_address = Some("127.0.0.1:0".to_string());
    config.grace_period = Duration::from_millis(200);
    let server = Server::bind(config).await?;
    let tcp = server.tcp_address().expect("tcp address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let obs = observer.clone();
    let task = tokio::spawn(async move {
        server
            .run(obs, tonic::service::Routes::default(), async {
                let _ = stopped.await;
            })
            .await
    });

    for i in 0..5 {
        let verdict = if i == 3 {
            flow::Verdict::Dropped
        } else {
            flow::Verdict::Forwarded
        };
        assert!(ingest.push_flow_wait(flow(i, verdict)).await);
    }
    // Wait until the ring holds them.
    for _ in 0..100 {
        if observer.status().num_flows >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let unix = format!("unix://{}", socket.display());
    let tcp = tcp.to_string();
    let args = |server: &str, rest: &[&str]| {
        let mut v = vec!["--server".to_string(), server.to_string()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    let out = hubble(args(&unix, &["status"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    assert!(
        status.starts_with(&format!(
            "Healthcheck (via {unix}): Ok\nCurrent/Max Flows: 5/15 (33.33%)\nFlows/s: "
        )),
        "{status}"
    );

    let out = hubble(args(&tcp, &["observe", "--last", "2"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    expect_test::expect![[r#"
        Jul 25 15:56:09.052: default/tiefighter:51003 (ID:62396) -> empire/deathstar:80 (ID:50122) to-endpoint DROPPED (TCP Flags: SYN)
        Jul 25 15:56:10.052: default/tiefighter:51004 (ID:62396) -> empire/deathstar:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
    "#]]
    .assert_eq(&text(&out.stdout));

    let out = hubble(args(
        &unix,
        &["observe", "--verdict", "DROPPED", "-o", "jsonpb"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "{\"flow\":{\"time\":\"2024-07-25T15:56:09.052Z\",\"verdict\":\"DROPPED\""
        ),
        "{}",
        lines[0]
    );

    let out = hubble(args(&unix, &["list", "namespaces"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "NAMESPACE\ndefault\nempire\n");

    let out = hubble(args(
        &unix,
        &["observe", "--not", "--to-namespace", "empire"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    let _ = stop.send(());
    let _ = task.await;
    Ok(())
}
