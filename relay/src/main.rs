//! `hubble-relay`: serve the cluster-wide Observer API, or generate mTLS certificates.

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay::cli::ServeArgs;
use relay::Relay;

#[derive(Parser)]
#[command(
    name = "hubble-relay",
    version,
    about = "Hubble Relay: one Observer API over every node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC proxy server.
    Serve(Box<ServeArgs>),
    /// Generate a CA and certificates for agents, the relay and the CLI.
    Certs(peer_service::certs::CertsArgs),
    /// Print the version.
    Version,
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let relay = Relay::start(config)
        .await
        .context("cannot start hubble-relay")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    relay
        .shutdown()
        .await
        .context("hubble-relay stopped with an error")
}

/// Where `hubble-relay certs` writes without `--dir`.
const DEFAULT_CERTS_DIR: &str = "/var/run/hubble-rs/tls";

fn certs(args: &peer_service::certs::CertsArgs) -> anyhow::Result<()> {
    Ok(peer_service::certs::run(
        args,
        std::path::Path::new(DEFAULT_CERTS_DIR),
    )?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Certs(args) => certs(&args),
        Command::Version => {
            println!("hubble-relay {}", relay::RELAY_VERSION);
            Ok(())
        }
    }
}
