//! Ten thousand concurrent client connections through the proxy: all served,
//! memory bounded per connection, and the proxy still answers a new client.
//!
//! The clients run in a child process (this test binary again, test
//! `client_side`), so this process holds only the proxy's and the backend's
//! descriptors and its memory is theirs. Allowed requests hold an upstream
//! connection (three descriptors here), denied ones only the client's (one):
//! the mix keeps 10,000 connections within a 20,000 descriptor limit.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use proxy::http::Limits;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Wanted connections.
const CONNECTIONS: u64 = 10_000;
/// Of which this many send an allowed request (and so hold an upstream connection).
const ALLOWED: u64 = 4_000;
/// Connections the child opens at once (the listen backlog is 1,024).
const BATCH: u64 = 500;
/// Bound on the proxy's and backend's resident memory per connection.
const MAX_KIB_PER_CONNECTION: u64 = 64;

/// Raises the soft descriptor limit to the hard one (and the hard one when allowed).
fn raise_descriptor_limit(wanted: u64) -> u64 {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("client or limit setup");
    if setrlimit(Resource::RLIMIT_NOFILE, wanted.max(hard), wanted.max(hard)).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("client or limit setup");
    }
    getrlimit(Resource::RLIMIT_NOFILE)
        .expect("client or limit setup")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections_leave_it_serving_with_bounded_memory() {
    let limit = raise_descriptor_limit(CONNECTIONS * 3 + 1_000);
    // Descriptors here: 3 per allowed connection, 1 per denied one.
    let scale = |n: u64| {
        n * (limit.saturating_sub(1_000)).min(3 * ALLOWED + CONNECTIONS - ALLOWED)
            / (3 * ALLOWED + CONNECTIONS - ALLOWED)
    };
    let (connections, allowed) = (scale(CONNECTIONS), scale(ALLOWED));
    // Connections stay open for the whole test: keep-alive must not end them.
    let limits = Limits {
        header_read_timeout: PATIENCE * 4,
        ..Limits::default()
    };
    let mut running = start(&seed_rule(), limits).await;
    let mut warm = client(running.addr).await;
    let response = warm
        .send_request(request("POST", "/v1/request-landing", ""))
        .await
        .unwrap();
    body_text(response).await;
    let before = rss_kib();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "client_side",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROXY_TEST_ADDR", running.addr.to_string())
        .env("PROXY_TEST_CONNECTIONS", connections.to_string())
        .env("PROXY_TEST_ALLOWED", allowed.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        // libtest may print `test client_side ... ` on the same line first.
        let found = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.find("opened ").map(|at| line[at..].to_owned()));
        (found, lines)
    });
    let (ready, _lines) = timeout(PATIENCE * 4, ready).await.unwrap().unwrap();
    assert_eq!(ready, Some(format!("opened {connections}")));

    let stats = running.proxy.snapshot();
    assert_eq!(stats.connections_active, connections + 1, "{stats:?}");
    assert_eq!(stats.connections_refused, 0);
    assert_eq!(
        (stats.requests_forwarded, stats.requests_denied),
        (allowed + 1, connections - allowed)
    );

    // A new client is served while all of them are open.
    let mut fresh = client(running.addr).await;
    let response = fresh
        .send_request(request("POST", "/v1/request-landing", ""))
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "Ship landed\n");

    let after = rss_kib();
    let per_connection = after.saturating_sub(before) / connections;
    println!(
        "{connections} concurrent connections ({allowed} with an upstream connection): proxy and \
         backend RSS {before} KiB -> {after} KiB, {per_connection} KiB per connection \
         (descriptor limit {limit})"
    );
    assert!(
        per_connection <= MAX_KIB_PER_CONNECTION,
        "{per_connection} KiB per connection > {MAX_KIB_PER_CONNECTION}"
    );
    assert!(!running.records().is_empty());

    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
    // Everything closes when the clients go.
    let closed = timeout(PATIENCE, async {
        while running.proxy.snapshot().connections_active > 2 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "{:?}", running.proxy.snapshot());
}

/// The client side, in the child process: opens the connections, sends one
/// request on each, prints `opened N`, holds them until stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by ten_thousand_concurrent_connections_leave_it_serving_with_bounded_memory"]
async fn client_side() {
    let (Ok(addr), Ok(connections), Ok(allowed)) = (
        std::env::var("PROXY_TEST_ADDR"),
        std::env::var("PROXY_TEST_CONNECTIONS"),
        std::env::var("PROXY_TEST_ALLOWED"),
    ) else {
        return;
    };
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let connections: u64 = connections.parse().unwrap();
    let allowed: u64 = allowed.parse().unwrap();
    raise_descriptor_limit(connections + 1_000);
    let mut open = Vec::new();
    let mut opened = 0;
    while opened < connections {
        let batch = BATCH.min(connections - opened);
        let mut tasks = JoinSet::new();
        for index in opened..opened + batch {
            tasks.spawn(one_request(addr, index < allowed));
        }
        while let Some(stream) = timeout(PATIENCE, tasks.join_next()).await.unwrap() {
            open.push(stream.unwrap());
        }
        opened += batch;
    }
    println!("opened {}", open.len());
    std::io::stdout().flush().unwrap();
    tokio::task::spawn_blocking(|| {
        let mut rest = String::new();
        let _ = std::io::stdin().read_line(&mut rest);
    })
    .await
    .unwrap();
}

async fn one_request(addr: std::net::SocketAddr, allowed: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("client or limit setup");
    let (line, expected) = if allowed {
        ("POST /v1/request-landing", "Ship landed\n")
    } else {
        ("PUT /v1/exhaust-port", "Access denied\r\n")
    };
    let request = format!("{line} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("client or limit setup");
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(expected.as_bytes()) {
        let read = stream.read(&mut buf).await.expect("client or limit setup");
        assert!(read > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..read]);
    }
    stream
}
