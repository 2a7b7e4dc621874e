//! `hubble-ui`: serves the service map and flow table page.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use ui_backend::{Config, ServerAddress, Ui};

/// A web page with a live service map and a filterable flow table of Hubble flows.
#[derive(Debug, Parser)]
#[command(name = "hubble-ui", version)]
struct Args {
    /// Address to serve the page and the HTTP API on.
    #[arg(long, default_value = ui_backend::config::DEFAULT_LISTEN_ADDRESS, env = "HUBBLE_UI_LISTEN_ADDRESS")]
    listen_address: SocketAddr,
    /// Hubble server to read flows from: host:port (the relay) or unix:///path (an agent).
    #[arg(long, default_value = ui_backend::config::DEFAULT_SERVER, env = "HUBBLE_SERVER")]
    server: ServerAddress,
    /// Number of recent flows kept for the flow table.
    #[arg(long, default_value_t = ui_backend::config::DEFAULT_RING_CAPACITY)]
    ring_capacity: usize,
    /// Number of recent flows asked for when the flow stream opens.
    #[arg(long, default_value_t = ui_backend::config::DEFAULT_INITIAL_FLOWS)]
    initial_flows: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = Config::new(args.listen_address, args.server);
    config.ring_capacity = args.ring_capacity;
    config.initial_flows = args.initial_flows;
    let ui = Ui::bind(config.clone())
        .await
        .context("starting hubble-ui")?;
    tracing::info!(
        "serving http://{} (flows from {})",
        ui.local_addr(),
        config.server
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    ui.run(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    })
    .await
    .context("running hubble-ui")
}
