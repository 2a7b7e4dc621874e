use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::kubectl::{forwarded_port, kubectl_args};
use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn parses_targets() {
    assert_eq!(
        Target::parse("ssh://root@10.118.0.1:2222").expect("ssh"),
        Target::Ssh {
            user: Some(s("root")),
            host: s("10.118.0.1"),
            port: Some(2222)
        }
    );
    assert_eq!(
        Target::parse("ssh://node1").expect("ssh"),
        Target::Ssh {
            user: None,
            host: s("node1"),
            port: None
        }
    );
    assert_eq!(
        Target::parse("ssh://[fd00::1]:22")
            .expect("ssh v6")
            .to_string(),
        "ssh://[fd00::1]:22"
    );
    assert_eq!(
        Target::parse("tcp://relay:4245").expect("tcp"),
        Target::Tcp {
            host: s("relay"),
            port: 4245
        }
    );
    assert_eq!(
        Target::parse("kubectl://").expect("kubectl"),
        Target::Kubectl {
            namespace: None,
            service: s("hubble-relay"),
            port: 80
        }
    );
    assert_eq!(
        Target::parse("kubectl://cilium/relay:4245")
            .expect("kubectl")
            .to_string(),
        "kubectl://cilium/relay:4245"
    );
}

#[test]
fn bad_targets_name_the_value() {
    let err = |v: &str| Target::parse(v).expect_err(v).to_string();
    expect_test::expect![[r#"
        invalid port-forward target "relay:4245": no scheme; expected ssh://[user@]host[:port], tcp://host:port or kubectl://[namespace/]service
        invalid port-forward target "http://relay": unknown scheme "http"; expected ssh://[user@]host[:port], tcp://host:port or kubectl://[namespace/]service
        invalid port-forward target "tcp://relay": a port is required
        invalid port-forward target "ssh://root@host:99999": invalid port "99999" (expected 1-65535)
        invalid port-forward target "ssh://-oProxyCommand=x": host "-oProxyCommand=x" cannot start with '-'
        invalid port-forward target "ssh://a b@host": invalid user name "a b"
        invalid port-forward target "ssh://host/path": expected only host[:port] after the scheme
        invalid port-forward target "ssh://fd00::1": write an IPv6 address in brackets, e.g. [::1]:4245
        invalid port-forward target "kubectl://Kube_System/relay": invalid namespace "Kube_System" (lower-case letters, digits and '-')
    "#]]
    .assert_eq(
        &[
            "relay:4245",
            "http://relay",
            "tcp://relay",
            "ssh://root@host:99999",
            "ssh://-oProxyCommand=x",
            "ssh://a b@host",
            "ssh://host/path",
            "ssh://fd00::1",
            "kubectl://Kube_System/relay",
        ]
        .iter()
        .map(|v| err(v) + "\n")
        .collect::<String>(),
    );
    assert_eq!(
        RelayAddress::parse("localhost")
            .expect_err("no port")
            .to_string(),
        "invalid relay address \"localhost\": expected HOST:PORT"
    );
}

#[test]
fn ssh_runs_with_w_and_the_options() {
    let target = Target::parse("ssh://root@10.0.0.1:2222").expect("target");
    let relay = RelayAddress::parse("127.0.0.1:4245").expect("relay");
    assert_eq!(
        ssh_args(&target, &relay, &[s("IdentityFile=/k")]).join(" "),
        "-o IdentityFile=/k -p 2222 -l root -W 127.0.0.1:4245 -- 10.0.0.1"
    );
    assert_eq!(SshProgram::from_env_value(Some(s("  "))), SshProgram::Ssh);
    assert_eq!(
        SshProgram::from_env_value(Some(s("ssh -i /k"))),
        SshProgram::Shell(s("ssh -i /k"))
    );
}

#[test]
fn kubectl_forwards_the_service() {
    let target = Target::parse("kubectl://").expect("target");
    let kube = KubeSettings {
        context: s("lab"),
        kubeconfig: String::new(),
        namespace: s("kube-system"),
    };
    assert_eq!(
        kubectl_args(&target, &kube).join(" "),
        "--context lab --namespace kube-system port-forward service/hubble-relay :80 --address 127.0.0.1"
    );
    assert_eq!(
        forwarded_port("Forwarding from 127.0.0.1:39123 -> 4245"),
        Some(39123)
    );
    assert_eq!(forwarded_port("Forwarding from [::1]:39123 -> 4245"), None);
}

#[test]
fn finds_programs_on_path_only() {
    let dir = tempfile::tempdir().expect("dir");
    let path = std::ffi::OsString::from(format!("/nonexistent:{}", dir.path().display()));
    assert_eq!(find_on_path("kubectl", Some(&path)), None);
    let exe = dir.path().join("kubectl");
    std::fs::write(&exe, "#!/bin/sh\n").expect("write");
    assert_eq!(find_on_path("kubectl", Some(&path)), None, "not executable");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(find_on_path("kubectl", Some(&path)), Some(exe));
    assert_eq!(find_on_path("kubectl", None), None);
}

/// An echo server: answers whatever it receives, so a tunnel check passes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn tcp_forwarder_config(max_connections: usize) -> ForwarderConfig {
    ForwarderConfig {
        target: s("tcp://test"),
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_connections,
        report: false,
    }
}

async fn round_trip(sock: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    sock.write_all(text).await.expect("write");
    let mut buf = vec![0u8; text.len()];
    sock.read_exact(&mut buf).await.expect("read");
    buf
}

#[tokio::test]
async fn tcp_forwarder_carries_bytes_and_refuses_over_the_limit() {
    let echo = echo_server().await;
    let dialer = Dialer::Tcp {
        host: echo.ip().to_string(),
        port: echo.port(),
    };
    let forwarder = Forwarder::start(tcp_forwarder_config(2), dialer, None)
        .await
        .expect("start");
    let local = forwarder.local_addr();
    let mut first = TcpStream::connect(local).await.expect("first");
    let mut second = TcpStream::connect(local).await.expect("second");
    assert_eq!(round_trip(&mut first, b"ping").await, b"ping");
    assert_eq!(round_trip(&mut second, b"pong").await, b"pong");

    // Both slots are taken: the third connection is closed at once, and counted.
    let mut third = TcpStream::connect(local).await.expect("third");
    let mut buf = [0u8; 1];
    let n = third.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the third connection must be closed");
    assert_eq!(forwarder.refused(), 1);

    // A slot comes back when a connection ends.
    drop(first);
    let mut again = None;
    for _ in 0..200 {
        let mut sock = TcpStream::connect(local).await.expect("again");
        if sock.write_all(b"back").await.is_ok() {
            let mut buf = [0u8; 4];
            if sock.read_exact(&mut buf).await.is_ok() {
                again = Some(buf);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(again, Some(*b"back"));
    forwarder.shutdown().await;
    assert!(
        TcpStream::connect(local).await.is_err(),
        "nothing listens once the forwarder is shut down"
    );
}

#[tokio::test]
async fn a_refused_tcp_target_is_named() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dialer = Dialer::Tcp {
        host: s("127.0.0.1"),
        port,
    };
    let err = Forwarder::start(tcp_forwarder_config(2), dialer, None)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "failed to port forward to tcp://test: connecting to 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
}
