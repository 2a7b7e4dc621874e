//! `hubble-relay`: serve the cluster-wide Observer API, or generate mTLS certificates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use relay::config::{self, RelayConfig};
use relay::{ClientTlsFiles, Relay, ServerTlsFiles};

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
    Certs(CertsArgs),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct ServeArgs {
    /// Address of the server that implements the peer gRPC service (unix:///path or host:port).
    #[arg(long, default_value = config::DEFAULT_PEER_SERVICE)]
    peer_service: String,
    /// Address on which to listen.
    #[arg(long, default_value = config::DEFAULT_LISTEN_ADDRESS)]
    listen_address: String,
    /// Address on which the gRPC health server listens (empty to disable).
    #[arg(long, default_value = config::DEFAULT_HEALTH_LISTEN_ADDRESS)]
    health_listen_address: String,
    /// Address to serve Prometheus metrics on (`/metrics`), e.g. `:9966`; empty for none.
    #[arg(long, default_value = "")]
    metrics_listen_address: String,
    /// Name of the cluster, used in TLS server names.
    #[arg(long, default_value = config::DEFAULT_CLUSTER_NAME)]
    cluster_name: String,
    /// Dial timeout when connecting to hubble peers.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    dial_timeout: Duration,
    /// Longest time to wait before attempting to reconnect to the peer service.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    retry_timeout: Duration,
    /// Max number of flows that can be buffered for sorting before being sent to the client (per request).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    sort_buffer_len_max: u32,
    /// Longest time a flow waits in the sort buffer before being sent (follow mode).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    sort_buffer_drain_timeout: Duration,
    /// Client certificate for connecting to Hubble servers (agents).
    #[arg(long, alias = "tls-client-cert-file")]
    tls_hubble_client_cert_file: Option<PathBuf>,
    /// Key of the client certificate for connecting to Hubble servers.
    #[arg(long, alias = "tls-client-key-file")]
    tls_hubble_client_key_file: Option<PathBuf>,
    /// CA bundles that sign the Hubble servers' certificates (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    tls_hubble_server_ca_files: Vec<PathBuf>,
    /// Connect to Hubble servers in plaintext.
    #[arg(long)]
    disable_client_tls: bool,
    /// Server certificate of the relay.
    #[arg(long, alias = "tls-server-cert-file")]
    tls_relay_server_cert_file: Option<PathBuf>,
    /// Key of the relay's server certificate.
    #[arg(long, alias = "tls-server-key-file")]
    tls_relay_server_key_file: Option<PathBuf>,
    /// CA bundles that sign accepted client certificates; when set, clients must present one.
    #[arg(long, alias = "tls-client-ca-files", value_delimiter = ',')]
    tls_relay_client_ca_files: Vec<PathBuf>,
    /// Serve clients in plaintext.
    #[arg(long)]
    disable_server_tls: bool,
}

#[derive(Args)]
struct CertsArgs {
    /// Directory to write the certificates into.
    #[arg(long, default_value = "/var/run/hubble-rs/tls")]
    dir: PathBuf,
    /// Cluster name, part of each node's server name.
    #[arg(long, default_value = config::DEFAULT_CLUSTER_NAME)]
    cluster_name: String,
    /// Node names to issue server certificates for (comma-separated or repeated).
    #[arg(long = "node", value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Names of the relay's server certificate (comma-separated or repeated).
    #[arg(long = "relay-server-name", value_delimiter = ',')]
    relay_server_names: Vec<String>,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<RelayConfig> {
        let client_tls = if self.disable_client_tls {
            None
        } else if self.tls_hubble_server_ca_files.is_empty() {
            bail!("no client TLS config is set: pass --tls-hubble-server-ca-files (and --tls-hubble-client-cert-file, --tls-hubble-client-key-file for mTLS) or --disable-client-tls");
        } else {
            Some(ClientTlsFiles {
                cert_file: self.tls_hubble_client_cert_file,
                key_file: self.tls_hubble_client_key_file,
                server_ca_files: self.tls_hubble_server_ca_files,
            })
        };
        let server_tls = if self.disable_server_tls {
            None
        } else {
            match (self.tls_relay_server_cert_file, self.tls_relay_server_key_file) {
                (Some(cert_file), Some(key_file)) => Some(ServerTlsFiles {
                    cert_file,
                    key_file,
                    client_ca_files: self.tls_relay_client_ca_files,
                }),
                _ => bail!("no server TLS config is set: pass --tls-relay-server-cert-file and --tls-relay-server-key-file, or --disable-server-tls"),
            }
        };
        Ok(RelayConfig {
            peer_service: self.peer_service,
            listen_address: self.listen_address,
            health_listen_address: Some(self.health_listen_address).filter(|a| !a.is_empty()),
            metrics_listen_address: Some(self.metrics_listen_address).filter(|a| !a.is_empty()),
            cluster_name: self.cluster_name,
            dial_timeout: self.dial_timeout,
            retry_timeout: self.retry_timeout,
            sort_buffer_len_max: self.sort_buffer_len_max as usize,
            sort_buffer_drain_timeout: self.sort_buffer_drain_timeout,
            client_tls,
            server_tls,
            ..RelayConfig::default()
        })
    }
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

fn certs(args: CertsArgs) -> anyhow::Result<()> {
    let mut spec = peer_service::certs::CertsSpec {
        cluster: args.cluster_name,
        nodes: args.nodes,
        overwrite: args.overwrite,
        ..Default::default()
    };
    if !args.relay_server_names.is_empty() {
        spec.relay_server_names = args.relay_server_names;
    }
    for path in peer_service::certs::generate(&args.dir, &spec)? {
        println!("{}", path.display());
    }
    Ok(())
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
        Command::Certs(args) => certs(args),
        Command::Version => {
            println!("hubble-relay {}", relay::RELAY_VERSION);
            Ok(())
        }
    }
}
