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
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut relay = KillOnDrop(
        Command::new("prlimit")
            .arg(format!("--nofile={RELAY_NOFILE}:{RELAY_NOFILE}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_hubble-relay"))
            .args([
                "serve",
                "--peer-service=127.0.0.1:1",
                &format!("--listen-address=127.0.0.1:{port}"),
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
    std::thread::spawn(move || {
        // Shown when the test fails; drained so the relay never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("relay: {}", strip_ansi(&line));
        }
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Err(error) = server_status(port).await {
            if let Ok(Some(exit)) = relay.0.try_wait() {
                panic!("the relay exited before the flood: {exit}");
            }
            eprintln!("relay not answering yet on port {port}: {error:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .context("the relay never answered before the flood")?;

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
