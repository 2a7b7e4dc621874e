//! `hubble tui` in a real terminal (tmux, 80x24) against an in-process observer fed by
//! replaying a generated capture of Star Wars flows.

use std::process::Command;
use std::time::{Duration, Instant};

use observer::replay::{replay, ReplayOptions};
use observer::server::{ServeConfig, Server};
use observer::{LocalObserver, ObserverConfig};
use proto::flow::{self, layer4, Flow};

/// A Star Wars demo flow: xwing or tiefighter to deathstar, every fourth one dropped.
fn flow(i: u32) -> Flow {
    let xwing = i.is_multiple_of(2);
    let dropped = i.is_multiple_of(4);
    let (pod, ns, id, ip) = if xwing {
        ("xwing", "default", 9203, "10.244.1.21")
    } else {
        ("tiefighter", "default", 62396, "10.244.1.22")
    };
    #[allow(deprecated)]
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: 1_721_922_966 + i64::from(i),
            nanos: 0,
        }),
        node_name: "kind-worker".into(),
        verdict: if dropped {
            flow::Verdict::Dropped
        } else {
            flow::Verdict::Forwarded
        } as i32,
        ip: Some(flow::Ip {
            source: ip.into(),
            destination: "10.244.1.30".into(),
            ip_version: flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(flow::Layer4 {
            protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                source_port: 40000 + i,
                destination_port: 80,
                flags: Some(flow::TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(flow::Endpoint {
            identity: id,
            namespace: ns.into(),
            pod_name: pod.into(),
            ..Default::default()
        }),
        destination: Some(flow::Endpoint {
            identity: 50122,
            namespace: "default".into(),
            pod_name: "deathstar-1".into(),
            ..Default::default()
        }),
        r#type: flow::FlowType::L3L4 as i32,
        event_type: Some(flow::CiliumEventType {
            r#type: if dropped { 1 } else { 4 },
            sub_type: if dropped { 133 } else { 0 },
        }),
        summary: "TCP Flags: SYN".into(),
        ..Default::default()
    }
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the tmux session when the test ends, passing or not.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

impl Session {
    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.0])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.0.as_str()];
        args.extend_from_slice(keys);
        tmux(&args);
    }

    /// Waits until the screen satisfies `ok`, returning the last screen either way.
    async fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The table rows on a screen (every flow goes to deathstar-1 port 80; the filter bar
/// names deathstar-1 too, without the port).
fn table_lines(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| l.contains("/deathstar-1:80"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_shows_filters_pauses_and_quits() -> anyhow::Result<()> {
    if Command::new("tmux").arg("-V").output().is_err() {
        tests::skip(
            "tui_shows_filters_pauses_and_quits",
            "tmux not found (apt-get install tmux)",
        );
        return Ok(());
    }
    let (observer, ingest) = LocalObserver::new(ObserverConfig {
        node_name: "kind-worker".to_string(),
        ring_capacity: 4095,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let capture = dir.path().join("starwars.jsonl");
    let lines: Vec<String> = (0..300).map(|i| proto::json::to_string(&flow(i))).collect();
    std::fs::write(&capture, lines.join("\n") + "\n")?;
    let stats = replay(&capture, &ReplayOptions::default(), &ingest).await?;
    assert_eq!(stats.flows, 300);

    let socket = dir.path().join("hubble.sock");
    let mut config = ServeConfig::default();
    config.unix_socket = Some(socket.clone());
    config.grace_period = Duration::from_millis(200);
    let server = Server::bind(config).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let obs = observer.clone();
    let task = tokio::spawn(async move {
        server
            .run(obs, tonic::service::Routes::default(), async {
                let _ = stopped.await;
            })
            .await
    });

    let name = format!("hubble-tui-test-{}", std::process::id());
    let command = format!(
        "HOME={} {} tui --server unix://{} --to-pod default/deathstar-1; \
         echo TUI-EXITED-$?; sleep 60",
        dir.path().display(),
        env!("CARGO_BIN_EXE_hubble"),
        socket.display()
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "80",
            "-y",
            "24",
            &command,
        ])
        .status()?;
    assert!(status.success());
    let session = Session(name);

    // Rows appear, both verdicts, in an 80-column table.
    let screen = session
        .wait("rows", |s| {
            s.contains("xwing") && s.contains("deathstar") && s.contains("DROPPED")
        })
        .await;
    assert!(screen.contains("FORWARDED"), "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80));
    // The command line's filter is shown in its own syntax.
    assert!(
        screen.contains("filter: --to-pod default/deathstar-1 "),
        "{screen}"
    );
    // Cells too long for 80 columns are shortened visibly, keeping the port:
    // `default/tiefighter:40001` as `de…/tiefighter:40001`.
    let rows = table_lines(&screen);
    assert!(
        rows.iter().all(|l| l.contains(" defa…/deathstar-1:80 ")),
        "{screen}"
    );
    let tiefighter_ports: Vec<&str> = rows
        .iter()
        .filter_map(|l| l.split("…/tiefighter:").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert!(!tiefighter_ports.is_empty(), "{screen}");
    assert!(
        tiefighter_ports
            .iter()
            .all(|p| p.len() == 5 && p.starts_with("40")),
        "{screen}"
    );
    assert!(
        rows.iter()
            .filter(|l| l.contains("xwing"))
            .all(|l| l.contains(" default/xwing:40")),
        "{screen}"
    );

    // `/` edits the filter in effect; an added flag narrows the rows to drops
    // (restarting the stream on the server).
    session.keys(&["/"]);
    session
        .wait("the editor with the filter", |s| {
            s.lines()
                .any(|l| l.trim_end() == "filter: --to-pod default/deathstar-1")
        })
        .await;
    session.keys(&["-l", "--", " --verdict DROPPED"]);
    session.keys(&["Enter"]);
    let screen = session
        .wait("only drops", |s| {
            let rows = table_lines(s);
            !rows.is_empty() && rows.iter().all(|l| l.contains("DROPPED"))
        })
        .await;
    assert!(
        screen.contains("filter: --to-pod default/deathstar-1 --verdict DROPPED"),
        "{screen}"
    );

    // An invalid filter is shown inline and the previous one stays.
    session.keys(&["/"]);
    for _ in 0..60 {
        session.keys(&["BSpace"]);
    }
    session.keys(&["-l", "--", "--verdict FOO"]);
    session.keys(&["Enter"]);
    let screen = session
        .wait("filter error", |s| s.contains("invalid filter"))
        .await;
    assert!(screen.contains("FOO"), "{screen}");
    assert!(
        table_lines(&screen).iter().all(|l| l.contains("DROPPED")),
        "{screen}"
    );

    // Pause: new flows arrive, the view stays, the count of new rows grows.
    session.keys(&["Space"]);
    let before = session.wait("paused", |s| s.contains("PAUSED")).await;
    for i in 300..340 {
        assert!(ingest.push_flow_wait(flow(i)).await);
    }
    let paused = session
        .wait("new rows counted", |s| s.contains("(+10 new)"))
        .await;
    assert_eq!(table_lines(&before), table_lines(&paused), "{paused}");
    session.keys(&["Space"]);
    session
        .wait("resumed", |s| {
            !s.contains("PAUSED") && s.contains("16:01:42.000")
        })
        .await;

    // q quits and gives the terminal back.
    session.keys(&["q"]);
    let screen = session.wait("exit", |s| s.contains("TUI-EXITED-0")).await;
    assert!(
        !screen.contains("VERDICT"),
        "alternate screen left behind:\n{screen}"
    );

    drop(session);
    let _ = stop.send(());
    task.await??;
    Ok(())
}
