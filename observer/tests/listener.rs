//! A flood of idle connections larger than the server's open-file limit leaves the
//! Observer API answering.
//!
//! The server runs in a child process (this test binary again, selecting
//! `server_half_of_idle_flood`) under `prlimit --nofile=256`, so the test's own 400 client
//! sockets do not count against that limit. Before the fix, the first EMFILE ended
//! tonic's accept loop and the port never answered again; connections that sent nothing
//! stayed open for good.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use observer::server::{ServeConfig, Server};
use observer::{LocalObserver, ObserverConfig};
use proto::observer::observer_client::ObserverClient;
use proto::observer::ServerStatusRequest;

/// Set in the child's environment: run the server half.
const CHILD_ENV: &str = "OBSERVER_LISTENER_TEST_CHILD";
/// Open-file limit of the server process.
const SERVER_NOFILE: u32 = 256;
/// Idle connections the test opens: more than the server can hold at once.
const IDLE_CONNECTIONS: usize = 400;
/// How long the whole scenario may take before it counts as a failure: the handshake
/// timeout frees the first batch, the kernel backlog hands over the rest, which time out
/// in turn.
const SCENARIO_BOUND: Duration = Duration::from_secs(90);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prlimit_available() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The server half: serves the observer on 127.0.0.1:0, prints the port, serves until
/// killed. Does nothing unless started by [`idle_flood_beyond_the_file_limit`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_half_of_idle_flood() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    let (observer, _ingest) = LocalObserver::new(ObserverConfig {
        node_name: "flooded".to_string(),
        ..Default::default()
    })?;
    let mut config = ServeConfig::default();
    config.unix_socket = None;
    config.listen_address = Some("127.0.0.1:0".to_string());
    let server = Server::bind(config).await?;
    let port = server.tcp_address().context("tcp address")?.port();
    println!("PORT={port}");
    server
        .run(
            observer,
            tonic::service::Routes::default(),
            std::future::pending(),
        )
        .await?;
    bail!("the server stopped serving")
}

async fn server_status(port: u16) -> anyhow::Result<u64> {
    let mut client = ObserverClient::connect(format!("http://127.0.0.1:{port}")).await?;
    let status = client.server_status(ServerStatusRequest {}).await?;
    Ok(status.into_inner().max_flows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_beyond_the_file_limit() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Ok(());
    }
    if !prlimit_available() {
        tests::skip(
            "idle_flood_beyond_the_file_limit",
            "prlimit not found (apt-get install util-linux)",
        );
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut child = KillOnDrop(
        Command::new("prlimit")
            .arg(format!("--nofile={SERVER_NOFILE}:{SERVER_NOFILE}"))
            .arg("--")
            .arg(&exe)
            .args(["--exact", "server_half_of_idle_flood", "--nocapture"])
            .env(CHILD_ENV, "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server under prlimit")?,
    );
    let stdout = child.0.stdout.take().context("child stdout")?;
    let port: u16 = tokio::task::spawn_blocking(move || -> anyhow::Result<u16> {
        for line in BufReader::new(stdout).lines() {
            if let Some(port) = line?.strip_prefix("PORT=") {
                return Ok(port.trim().parse()?);
            }
        }
        bail!("the server exited before printing its port")
    })
    .await??;
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

    // Every silent connection is closed by the server in bounded time.
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        flood
            .into_iter()
            .filter(|mut conn| {
                let mut buf = [0u8; 64];
                // The server writes its HTTP/2 settings, then closes: read to the end.
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

    // And the API answers a new client.
    let answer = tokio::time::timeout(SCENARIO_BOUND, async {
        loop {
            match server_status(port).await {
                Ok(max_flows) => return max_flows,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .context("hubble status never answered after the flood")?;
    assert!(answer > 0);
    assert!(
        child.0.try_wait()?.is_none(),
        "the server process exited during the flood"
    );
    Ok(())
}
