//! TLS on the agent's TCP Hubble API, with the real `hubble-agent` (replaying an empty
//! capture, no root): clear text off loopback is refused at start, and under mutual TLS
//! a client without a certificate, or one that expects another node, is refused while
//! the relay's client certificate gets an answer.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proto::observer::observer_client::ObserverClient;
use proto::observer::ServerStatusRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const AGENT: &str = env!("CARGO_BIN_EXE_hubble-agent");

fn agent_command(dir: &Path, listen: &str) -> Command {
    let capture = dir.join("empty.jsonl");
    std::fs::write(&capture, "").expect("capture");
    let mut command = Command::new(AGENT);
    command
        .arg("--replay")
        .arg(&capture)
        .args(["--metrics-address", "", "--node-name", "node1"])
        .args(["--listen-address", listen])
        .arg("--unix-socket")
        .arg(dir.join("hubble.sock"))
        .arg("--admin-socket")
        .arg(dir.join("agent.sock"))
        .arg("--endpoints-dir")
        .arg(dir.join("endpoints"))
        .stdin(Stdio::null());
    command
}

#[test]
fn clear_text_off_loopback_is_refused_naming_the_address_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = agent_command(dir.path(), "0.0.0.0:0")
        .output()
        .expect("run hubble-agent");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "refusing to serve the Hubble API in clear text on 0.0.0.0:0: pass \
             --tls-cert-file and --tls-key-file (and --tls-client-ca-files for mutual TLS), \
             listen on a loopback address, or pass --disable-tls"
        ),
        "{stderr}"
    );
}

/// The running agent, killed and reaped on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn status(port: u16, tls: ClientTlsConfig) -> Result<u64, String> {
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    let channel: Channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    ObserverClient::new(channel)
        .server_status(ServerStatusRequest {})
        .await
        .map(|r| r.into_inner().max_flows)
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let generated = Command::new(AGENT)
        .args(["certs", "--node", "node1", "--dir"])
        .arg(&certs)
        .output()
        .expect("hubble-agent certs");
    assert!(generated.status.success(), "{generated:?}");
    let file = |name: &str| certs.join(name).display().to_string();
    let server_name = "node1.default.hubble-grpc.cilium.io";

    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = dir.path().join("agent.log");
    let mut agent = Running(
        agent_command(dir.path(), &format!("127.0.0.1:{port}"))
            .args([
                "--hubble-tls-cert-file",
                &file(&format!("{server_name}.crt")),
            ])
            .args([
                "--hubble-tls-key-file",
                &file(&format!("{server_name}.key")),
            ])
            .args(["--hubble-tls-client-ca-files", &file("ca.crt")])
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start hubble-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(exit)) = agent.0.try_wait() {
            panic!(
                "hubble-agent exited with {exit}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(50));
    }

    let ca = Certificate::from_pem(std::fs::read(file("ca.crt")).expect("ca"));
    let relay = Identity::from_pem(
        std::fs::read(file("relay-client.crt")).expect("cert"),
        std::fs::read(file("relay-client.key")).expect("key"),
    );
    let trusted = ClientTlsConfig::new().ca_certificate(ca.clone());

    let with_certificate = trusted
        .clone()
        .identity(relay.clone())
        .domain_name(server_name);
    assert_eq!(status(port, with_certificate).await, Ok(4095));

    let without = status(port, trusted.clone().domain_name(server_name)).await;
    let error = without.expect_err("a client without a certificate is refused");
    // With TLS 1.3 the client's side of the handshake is over before the server reads
    // its (empty) certificate, so the refusal reaches the client either as the server's
    // alert or, when the request was already on its way, as the connection closing.
    assert!(
        error.contains("CertificateRequired")
            || error.contains("certificate required")
            || error.contains("broken pipe")
            || error.contains("connection reset")
            || error.contains("connection closed"),
        "{error}"
    );

    let other_node = trusted
        .identity(relay)
        .domain_name("node2.default.hubble-grpc.cilium.io");
    let error = status(port, other_node).await.expect_err("wrong name");
    assert!(error.contains("NotValidForName"), "{error}");
}
