//! A node's Observer API without a datapath: serves the observer on a Unix socket and
//! TCP, fed by replaying a captured `hubble observe -o jsonpb` file (or, without one,
//! by demo-like sample flows), until Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run -p observer --example observer_server -- \
//!     --replay flows.jsonl --unix-socket /tmp/hubble.sock --listen-address 127.0.0.1:4244
//! hubble observe --server unix:///tmp/hubble.sock --last 20
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use observer::replay::{replay, ReplayOptions};
use observer::server::{self, ServeConfig};
use observer::{LocalObserver, ObserverConfig};

#[derive(Parser, Debug)]
#[command(about = "Serve the Observer API from replayed or sample flows")]
struct Args {
    /// JSON lines to replay (`hubble observe -o jsonpb` or `-o json` output).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Replay pace in flows per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    replay_rate: f64,
    /// Set replayed flows' time to now.
    #[arg(long)]
    replay_retimestamp: bool,
    /// Start the replay file over when it ends.
    #[arg(long)]
    replay_loop: bool,
    /// Sample flows per second when no replay file is given (0: none).
    #[arg(long, default_value_t = 100.0)]
    sample_rate: f64,
    /// Unix socket to serve on.
    #[arg(long, default_value = server::DEFAULT_UNIX_SOCKET)]
    unix_socket: PathBuf,
    /// TCP address to serve on (`:port` for all interfaces, empty for none).
    #[arg(long, default_value = server::DEFAULT_LISTEN_ADDRESS)]
    listen_address: String,
    /// Flows the ring keeps (2^n - 1).
    #[arg(long, default_value_t = observer::ring::DEFAULT_CAPACITY)]
    ring_capacity: u64,
    /// This node's name.
    #[arg(long, default_value = "observer-example")]
    node_name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let (observer, ingest) = LocalObserver::new(ObserverConfig {
        node_name: args.node_name.clone(),
        ring_capacity: args.ring_capacity,
        ..Default::default()
    })?;

    let mut config = ServeConfig::default();
    config.unix_socket = Some(args.unix_socket.clone());
    config.listen_address = (!args.listen_address.is_empty()).then(|| args.listen_address.clone());
    let server = server::Server::bind(config).await?;
    tracing::info!(
        unix = %args.unix_socket.display(),
        tcp = ?server.tcp_address(),
        "serving the Observer API"
    );

    let feeder = tokio::spawn(async move {
        if let Some(path) = args.replay {
            let options = ReplayOptions {
                retimestamp: args.replay_retimestamp,
                rate: Some(args.replay_rate),
                repeat: args.replay_loop,
            };
            let stats = replay(&path, &options, &ingest)
                .await
                .with_context(|| format!("replaying {}", path.display()))?;
            for error in &stats.errors {
                tracing::warn!("{}: {error}", path.display());
            }
            tracing::info!(
                flows = stats.flows,
                bad_lines = stats.bad_lines,
                "replay finished"
            );
            // Keep the handle (and so the ring writer) alive while serving.
            std::future::pending::<()>().await;
        } else if args.sample_rate > 0.0 {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.sample_rate));
            for n in 0.. {
                tick.tick().await;
                let mut flow = observer::sample::flow(n);
                flow.time = Some(observer::ingest::now_timestamp());
                flow.node_name.clone_from(&args.node_name);
                ingest.push_flow(flow);
            }
        }
        std::future::pending::<anyhow::Result<()>>().await
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    };
    tokio::select! {
        served = server.run(observer, tonic::service::Routes::default(), shutdown) => served?,
        fed = feeder => fed??,
    }
    Ok(())
}
