//! `hubble-agent`: one node of hubble-rs. Without a subcommand it runs the daemon; the
//! subcommands talk to a running agent (`endpoint list`, `policy import FILE`, ...).

use std::path::PathBuf;

use agent::admin::{run_admin_command, AdminCommand};
use agent::cli::{CleanupArgs, DaemonArgs};
use agent::daemon::run;
use anyhow::Result;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "hubble-agent",
    version,
    about = "hubble-rs node agent: eBPF datapath, policy and the Hubble API"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Admin(AdminCommand),
    /// Print the node's datapath events as they happen (like `cilium monitor`; `-v`
    /// prints each event with its packet's layers, like `cilium monitor -v`).
    Monitor {
        /// Verbose: a header line and the packet's layers for each event (`-vv` is the
        /// same: flows carry decoded fields, not the captured bytes).
        #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
        verbose: u8,
        /// Only events of these types: drop, trace, policy-verdict, l7.
        #[arg(short = 't', long = "type")]
        types: Vec<String>,
        /// The agent's Hubble API socket.
        #[arg(long, default_value = observer::server::DEFAULT_UNIX_SOCKET)]
        unix_socket: PathBuf,
    },
    Cleanup(CleanupArgs),
    /// Generate a CA and the TLS certificates for agents, the relay and clients.
    Certs(peer_service::certs::CertsArgs),
}

#[tokio::main]
async fn main() {
    if let Err(e) = agent::memory::configure_allocator() {
        eprintln!("hubble-agent: transparent huge pages stay on (prctl PR_SET_THP_DISABLE: {e})");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Admin(cmd)) => run_admin_command(cmd, &cli.daemon.admin_socket).await,
        Some(Command::Monitor {
            types,
            unix_socket,
            verbose,
        }) => agent::monitor::run(&unix_socket, &types, verbose > 0).await,
        Some(Command::Cleanup(args)) => args.run(),
        Some(Command::Certs(args)) => certs(&args),
        None => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            match cli.daemon.into_config() {
                Ok(config) => run(config).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        eprintln!("hubble-agent: {e:#}");
        std::process::exit(1);
    }
}

/// Where `hubble-agent certs` writes without `--dir`.
const DEFAULT_CERTS_DIR: &str = "certs";

fn certs(args: &peer_service::certs::CertsArgs) -> Result<()> {
    Ok(peer_service::certs::run(
        args,
        std::path::Path::new(DEFAULT_CERTS_DIR),
    )?)
}
