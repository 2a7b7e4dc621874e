//! Memory of GetFlows follow streams on a node's observer server, and their bound.
//!
//! Starts the observer server in a child process (this program, with `--serve`: a full
//! ring of sample flows, then one new flow a second), reads its resident memory
//! (`VmRSS` in /proc/<pid>/status), opens `--streams` follow streams over connections
//! of at most 100 streams each and reads it again; then tries to open streams up to
//! `--attempts` in all, counts those refused, and checks that the server still answers.
//!
//! ```text
//! cargo run --release -p observer --example stream_memory -- --streams 1000 --attempts 3500
//! ```

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use observer::server::{self as serve, ServeConfig};
use observer::service::limit::MAX_CONCURRENT_FLOW_STREAMS;
use observer::{LocalObserver, ObserverConfig};
use proto::observer::observer_client::ObserverClient;
use proto::observer::{GetFlowsRequest, ServerStatusRequest};
use tonic::transport::Channel;

/// Streams per client connection (below the server's 128 per connection).
const STREAMS_PER_CONNECTION: usize = 100;
/// New flows a second once the ring is full: every follower receives each one.
const FLOWS_PER_SECOND: u64 = 1;

#[derive(Parser, Debug)]
struct Args {
    /// Run as the server (the child process).
    #[arg(long)]
    serve: bool,
    /// Follow streams to measure.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Streams to try to open in all (those beyond the server's limit are refused).
    #[arg(long, default_value_t = 3500)]
    attempts: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.serve {
        runtime.block_on(serve_sample())
    } else {
        runtime.block_on(measure(&args))
    }
}

/// The child: the observer server on a loopback port (printed on stdout), fed with
/// sample flows.
async fn serve_sample() -> anyhow::Result<()> {
    let (observer, ingest) = LocalObserver::new(ObserverConfig {
        node_name: "stream-memory".into(),
        ..Default::default()
    })?;
    let capacity = observer.flows().ring().capacity();
    for n in 0..capacity {
        let mut flow = observer::sample::flow(n);
        flow.time = Some(observer::ingest::now_timestamp());
        ingest.push_flow(flow);
    }
    let mut config = ServeConfig::default();
    config.unix_socket = None;
    config.listen_address = Some("127.0.0.1:0".into());
    let server = serve::Server::bind(config).await?;
    let address = server.tcp_address().context("no TCP address")?;
    println!("{address}");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / FLOWS_PER_SECOND));
        for n in capacity.. {
            tick.tick().await;
            let mut flow = observer::sample::flow(n);
            flow.time = Some(observer::ingest::now_timestamp());
            ingest.push_flow(flow);
        }
    });
    server
        .run(
            observer,
            tonic::service::Routes::default(),
            std::future::pending(),
        )
        .await?;
    Ok(())
}

/// The server process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Opens a follow stream and drains it in the background. `Err` is the refusal.
async fn follow(channel: Channel) -> Result<(), tonic::Status> {
    let mut client = ObserverClient::new(channel);
    let request = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stream = client.get_flows(request).await?.into_inner();
    // A refusal may come as the stream's first message.
    tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
    Ok(())
}

/// Opens `count` follow streams over new connections; returns how many were refused
/// and the first refusal.
async fn open(
    address: SocketAddr,
    count: usize,
    channels: &mut Vec<Channel>,
) -> anyhow::Result<(usize, Option<tonic::Status>)> {
    let mut refused = 0;
    let mut first_refusal = None;
    let mut opened = 0;
    while opened < count {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect()
            .await?;
        channels.push(channel.clone());
        let batch = (count - opened).min(STREAMS_PER_CONNECTION);
        let results = futures::future::join_all((0..batch).map(|_| follow(channel.clone()))).await;
        for result in results {
            if let Err(status) = result {
                refused += 1;
                first_refusal.get_or_insert(status);
            }
        }
        opened += batch;
    }
    Ok((refused, first_refusal))
}

async fn measure(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Child(
        std::process::Command::new(exe)
            .arg("--serve")
            .stdout(std::process::Stdio::piped())
            .spawn()?,
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().context("child stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await??;
    let address: SocketAddr = line.trim().parse().with_context(|| format!("{line:?}"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid)?;
    println!("server pid {pid} on {address}; limit MAX_CONCURRENT_FLOW_STREAMS = {MAX_CONCURRENT_FLOW_STREAMS}");
    println!("RSS before: {before} KiB (full ring of sample flows, no stream)");

    let mut channels = Vec::new();
    let (refused, _) = open(address, args.streams, &mut channels).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    let accepted = args.streams - refused;
    println!(
        "RSS with {accepted} follow streams: {after} KiB: +{} KiB, {:.1} KiB per stream ({refused} refused)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / accepted.max(1) as f64
    );

    let more = args.attempts.saturating_sub(args.streams);
    let (refused_more, refusal) = open(address, more, &mut channels).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_limit = rss_kib(pid)?;
    let open_now = args.attempts - refused - refused_more;
    println!(
        "{} attempts in all: {open_now} open, {} refused; RSS {at_limit} KiB: +{} KiB, {:.1} KiB per stream",
        args.attempts,
        refused + refused_more,
        at_limit.saturating_sub(before),
        at_limit.saturating_sub(before) as f64 / open_now.max(1) as f64
    );
    if let Some(status) = refusal {
        println!("refusal: {:?}: {}", status.code(), status.message());
    }
    let mut client = ObserverClient::connect(format!("http://{address}")).await?;
    let status = client
        .server_status(ServerStatusRequest {})
        .await?
        .into_inner();
    println!(
        "server still up: ServerStatus answers, {} flows seen",
        status.seen_flows
    );
    Ok(())
}
