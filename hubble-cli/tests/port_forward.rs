//! `hubble port-forward` and `-P` against a real observer (the node's gRPC server) on
//! loopback: through a `tcp://` target, and the errors when a target cannot be reached
//! (connection refused, ssh that cannot connect).

use std::process::{Output, Stdio};
use std::time::Duration;

use observer::server::{ServeConfig, Server};
use observer::{LocalObserver, ObserverConfig};
use tokio::io::AsyncBufReadExt;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hubble_cmd(env: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubble"));
    cmd.args(args)
        .env("HOME", std::env::temp_dir())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HUBBLE_SERVER")
        .env_remove("HUBBLE_PORT_FORWARD_TARGET")
        .env_remove("HUBBLE_SSH_COMMAND")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn hubble(env: &[(&str, &str)], args: &[&str]) -> Output {
    hubble_cmd(env, args).output().await.expect("run hubble")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_tcp_to_a_real_observer() -> anyhow::Result<()> {
    let (observer, _ingest) = LocalObserver::new(ObserverConfig {
        node_name: "test-node".to_string(),
        ring_capacity: 15,
        ..Default::default()
    })?;
    let mut config = ServeConfig::default();
    config.listen_address = Some("127.0.0.1:0".to_string());
    config.grace_period = Duration::from_millis(200);
    let server = Server::bind(config).await?;
    let relay = server.tcp_address().expect("tcp address").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(observer, tonic::service::Routes::default(), async {
                let _ = stopped.await;
            })
            .await
    });
    let target = format!("tcp://{relay}");

    // -P: the command runs through a forwarder of its own.
    let out = hubble(
        &[("HUBBLE_PORT_FORWARD_TARGET", &target)],
        &["-P", "status"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    assert!(
        status.starts_with("Healthcheck (via 127.0.0.1:"),
        "{status}"
    );
    assert!(status.contains("Current/Max Flows: 0/15"), "{status}");
    let out = hubble(
        &[("HUBBLE_PORT_FORWARD_TARGET", &target)],
        &["observe", "--port-forward", "--last", "5"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // `hubble port-forward`: says where the relay is once the tunnel works.
    let mut child = hubble_cmd(&[], &["port-forward", &target, "--local-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await??
        .unwrap_or_default();
    let local = line
        .strip_prefix("ℹ️  Hubble Relay is available at ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(local.starts_with("127.0.0.1:"), "{local}");
    let out = hubble(&[], &["status", "--server", &local]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Current/Max Flows: 0/15"));
    child.kill().await?;

    // The local port is taken: the error names it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let busy_port = busy.local_addr()?.port().to_string();
    let out = hubble(&[], &["port-forward", &target, "--local-port", &busy_port]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{busy_port}")),
        "{err}"
    );

    let _ = stop.send(());
    let _ = task.await;
    Ok(())
}

#[tokio::test]
async fn unreachable_targets_fail_naming_the_target() {
    let port = closed_port();
    let target = format!("tcp://127.0.0.1:{port}");
    let out = hubble(&[], &["port-forward", &target, "--local-port", "0"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("failed to port forward to {target}: "))
            && err.contains("refused"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is announced: {}",
        text(&out.stdout)
    );

    let out = hubble(&[], &["port-forward", "ftp://relay"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .starts_with("invalid port-forward target \"ftp://relay\": unknown scheme"),
        "{}",
        text(&out.stderr)
    );

    // kubectl missing: the default target of -P (upstream's) says what to do.
    let out = hubble(&[("PATH", "/nonexistent")], &["-P", "status"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "failed to port forward to kubectl://kube-system/hubble-relay: kubectl is not on PATH \
         (install kubectl, or give an ssh:// or tcp:// target; for -P through \
         port-forward-target or HUBBLE_PORT_FORWARD_TARGET)"
    );
}

#[tokio::test]
async fn ssh_that_cannot_connect_fails_naming_the_target() {
    if !tests::skip::require_file("ssh_that_cannot_connect", "/usr/bin/ssh", "openssh-client") {
        return;
    }
    let port = closed_port();
    let target = format!("ssh://nobody@127.0.0.1:{port}");
    let ssh = "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null";
    let out = hubble(
        &[
            ("HUBBLE_PORT_FORWARD_TARGET", &target),
            ("HUBBLE_SSH_COMMAND", ssh),
        ],
        &["-P", "status"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "failed to port forward to {target}: ssh exited with exit status: 255: "
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "connect to host 127.0.0.1 port {port}: Connection refused"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}
