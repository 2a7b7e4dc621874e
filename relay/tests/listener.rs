//! A flood of idle connections larger than the relay's open-file limit leaves its API
//! answering. The real `hubble-relay` runs under `prlimit --nofile=256`; before the fix,
//! the first EMFILE ended tonic's accept loop and :4245 never answered again.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::observer::observer_client::ObserverClient;
use proto::observer::ServerStatusRequest;

/// Open-file limit of the relay process.
const RELAY_NOFILE: u32 = 256;
/// Idle connections the test opens: more than the relay can hold at once.
const IDLE_CONNECTIONS: usize = 400;
/// Bound on the whole scenario (handshake timeouts free descriptors batch by batch).
const SCENARIO_BOUND: Duration = Duration::from_secs(90);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The log line without terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn server_status(port: u16) -> anyhow::Result<()> {
    let mut client = ObserverClient::connect(format!("http://127.0.0.1:{port}")).await?;
    client.server_status(ServerStatusRequest {}).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_beyond_the_file_limit() -> anyhow::Result<()> {
    let prlimit = Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !prlimit {
        tests::skip(
            "idle_flood_beyond_the_file_limit",
            "prlimit not found (apt-get install util-linux)",
        );
        return Ok(());
    }
    let mut relay = KillOnDrop(
        Command::new("prlimit")
            .arg(format!("--nofile={RELAY_NOFILE}:{RELAY_NOFILE}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_hubble-relay"))
            .args([
                "serve",
                "--peer-service=127.0.0.1:1",
                "--listen-address=127.0.0.1:0",
                "--health-listen-address=",
                "--disable-client-tls",
                "--disable-server-tls",
            ])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .context("starting hubble-relay under prlimit")?,
    );
    let stderr = relay.0.stderr.take().context("relay stderr")?;
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            let port = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
                .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok());
            if let (Some(port), Some(tx)) = (port, port_tx.take()) {
                let _ = tx.send(port);
            }
            // Keep draining so the relay never blocks on a full pipe.
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
        .await
        .context("the relay did not log its address")??;
    server_status(port)
        .await
        .context("status before the flood")?;

    let flood = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<TcpStream>> {
        (0..IDLE_CONNECTIONS)
            .map(|_| {
                let conn = TcpStream::connect(("127.0.0.1", port))?;
                conn.set_read_timeout(Some(SCENARIO_BOUND))?;
                Ok(conn)
            })
            .collect()
    })
    .await??;
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        flood
            .into_iter()
            .filter(|mut conn| {
                let mut buf = [0u8; 64];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) => return true,
                        Ok(_) => continue,
                        Err(e) => {
                            return matches!(
                                e.kind(),
                                std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionAborted
                            )
                        }
                    }
                }
            })
            .count()
    })
    .await?;
    assert_eq!(
        closed,
        IDLE_CONNECTIONS,
        "idle connections still open after {:?}",
        started.elapsed()
    );
    tokio::time::timeout(SCENARIO_BOUND, async {
        while server_status(port).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .context("the relay never answered after the flood")?;
    assert!(
        relay.0.try_wait()?.is_none(),
        "the relay exited during the flood"
    );
    Ok(())
}
