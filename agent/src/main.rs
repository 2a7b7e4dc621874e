//! `hubble-agent`: one node of hubble-rs. Without a subcommand it runs the daemon; the
//! subcommands talk to a running agent (`endpoint list`, `policy import FILE`, ...).

use std::path::PathBuf;

use agent::admin::{run_admin_command, AdminCommand, DEFAULT_ADMIN_SOCKET};
use agent::daemon::{run, DaemonConfig, TelemetryConfig};
use agent::kvstore::{KvstoreConfig, DEFAULT_LEASE_TTL};
use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};

/// The handlers a demo node serves by default: the set the Hubble docs enable.
const DEFAULT_METRICS: &str = "dns drop tcp flow port-distribution icmp policy \
    httpV2:exemplars=true;labelsContext=source_ip,source_namespace,source_workload,\
    destination_ip,destination_namespace,destination_workload,traffic_direction";

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
    /// Print the node's datapath events as they happen (like `cilium monitor -v`).
    Monitor {
        /// Only events of these types: drop, trace, policy-verdict.
        #[arg(short = 't', long = "type")]
        types: Vec<String>,
        /// The agent's Hubble API socket.
        #[arg(long, default_value = observer::serve::DEFAULT_UNIX_SOCKET)]
        unix_socket: PathBuf,
    },
    /// Generate a CA and the TLS certificates for agents, the relay and clients.
    Certs {
        /// Where to write them.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Node names to issue server certificates for.
        #[arg(long = "node", default_value = "node1")]
        nodes: Vec<String>,
        #[arg(long, default_value = "default")]
        cluster_name: String,
        /// Replace files that exist.
        #[arg(long)]
        overwrite: bool,
        /// Only issue the nodes' server certificates, with the CA already in DIR (a node
        /// that joins later).
        #[arg(long)]
        existing_ca: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Aggregation {
    /// A trace event for every packet.
    None,
    /// Trace events only for new connections and TCP SYN/FIN/RST.
    Medium,
}

#[derive(clap::Args, Debug)]
struct DaemonArgs {
    /// The admin socket (also used by the subcommands).
    #[arg(long, global = true, default_value = DEFAULT_ADMIN_SOCKET)]
    admin_socket: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    #[arg(long, default_value = "default")]
    cluster_name: String,
    /// Directory of endpoint YAML files to watch.
    #[arg(long, default_value = "/var/run/hubble-rs/endpoints")]
    endpoints_dir: PathBuf,
    /// Unix socket of the Hubble API ("" to disable).
    #[arg(long, default_value = observer::serve::DEFAULT_UNIX_SOCKET)]
    unix_socket: String,
    /// TCP address of the Hubble API, `host:port` or `:port` ("" to disable).
    #[arg(long, default_value = observer::serve::DEFAULT_LISTEN_ADDRESS)]
    listen_address: String,
    #[command(flatten)]
    tls: agent::tls::TlsArgs,
    /// Prometheus metrics address ("" to disable).
    #[arg(long, default_value = ":9965")]
    metrics_address: String,
    /// Metric handlers with options, space separated (upstream's `hubble-metrics`).
    #[arg(long, visible_alias = "hubble-metrics", default_value = DEFAULT_METRICS)]
    metrics: String,
    /// Export flows as JSON lines to this file (upstream's `hubble-export-file-path`).
    #[arg(long, visible_alias = "hubble-export-file-path")]
    export_file_path: Option<PathBuf>,
    #[arg(
        long,
        visible_alias = "hubble-export-file-max-size-mb",
        default_value_t = 10
    )]
    export_file_max_size_mb: u64,
    #[arg(
        long,
        visible_alias = "hubble-export-file-max-backups",
        default_value_t = 5
    )]
    export_file_max_backups: usize,
    /// Compress rotated export files with gzip.
    #[arg(long, visible_alias = "hubble-export-file-compress")]
    export_file_compress: bool,
    /// Only export flows matching these FlowFilters (JSON objects).
    #[arg(long, visible_alias = "hubble-export-allowlist")]
    export_allowlist: Option<String>,
    /// Never export flows matching these FlowFilters (JSON objects).
    #[arg(long, visible_alias = "hubble-export-denylist")]
    export_denylist: Option<String>,
    /// Only keep these flow fields in exported flows.
    #[arg(long, visible_alias = "hubble-export-fieldmask", value_delimiter = ',')]
    export_fieldmask: Vec<String>,
    /// Exporters declared in a YAML file (`flowLogs:`), reloaded when it changes.
    #[arg(long, visible_alias = "hubble-flowlogs-config-path")]
    flowlogs_config_path: Option<PathBuf>,
    /// Static nodes file for the peer service.
    #[arg(long)]
    peers_file: Option<PathBuf>,
    /// etcd endpoints of the cluster store, comma-separated (e.g. http://10.100.0.1:2379);
    /// without them the agent is a single node. Replaces --peers-file.
    #[arg(long)]
    kvstore_endpoints: Option<String>,
    /// Flows kept in the ring: 2^n - 1.
    #[arg(
        long,
        visible_alias = "hubble-event-buffer-capacity",
        default_value_t = 4095
    )]
    ring_capacity: u64,
    /// Serve the flows of a capture (JSON lines as `hubble observe -o jsonpb` prints).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Replay pace in flows per second (default: as fast as possible).
    #[arg(long)]
    replay_rate: Option<f64>,
    /// Give replayed flows the current time.
    #[arg(long)]
    replay_retimestamp: bool,
    /// Start the capture over when it ends.
    #[arg(long)]
    replay_loop: bool,
    /// Do not load the eBPF datapath (default when replaying).
    #[arg(long)]
    no_datapath: bool,
    /// Load the eBPF datapath even when replaying.
    #[arg(long, conflicts_with = "no_datapath")]
    datapath: bool,
    #[arg(long, value_enum, default_value = "none")]
    monitor_aggregation: Aggregation,
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn daemon_config(args: DaemonArgs) -> Result<DaemonConfig> {
    if args.ring_capacity == 0 || (args.ring_capacity + 1) & args.ring_capacity != 0 {
        bail!(
            "invalid --ring-capacity {}: must be 2^n - 1 (e.g. 4095, 65535)",
            args.ring_capacity
        );
    }
    let node_name = match args.node_name {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|n| n.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    };
    let kvstore = match args.kvstore_endpoints.as_deref() {
        Some(list) => Some(KvstoreConfig {
            endpoints: KvstoreConfig::parse_endpoints(list)?,
            node_name: node_name.clone(),
            cluster_name: args.cluster_name.clone(),
            node_ip: None,
            hubble_listen_address: optional(&args.listen_address),
            lease_ttl: DEFAULT_LEASE_TTL,
        }),
        None => None,
    };
    let tls = agent::tls::server_tls(&args.tls, optional(&args.listen_address).as_deref())?;
    Ok(DaemonConfig {
        tls,
        node_name,
        cluster_name: args.cluster_name,
        endpoints_dir: args.endpoints_dir,
        unix_socket: optional(&args.unix_socket).map(PathBuf::from),
        admin_socket: args.admin_socket,
        listen_address: optional(&args.listen_address),
        metrics_address: optional(&args.metrics_address),
        telemetry: TelemetryConfig {
            metrics: args.metrics,
            export_file_path: args.export_file_path,
            export_max_size_mb: args.export_file_max_size_mb,
            export_max_backups: args.export_file_max_backups,
            export_compress: args.export_file_compress,
            export_allowlist: args.export_allowlist,
            export_denylist: args.export_denylist,
            export_fieldmask: args.export_fieldmask,
            flowlogs_config: args.flowlogs_config_path,
        },
        peers_file: args.peers_file,
        kvstore,
        ring_capacity: args.ring_capacity,
        datapath: args.datapath || (args.replay.is_none() && !args.no_datapath),
        replay: args.replay,
        replay_rate: args.replay_rate,
        replay_retimestamp: args.replay_retimestamp,
        replay_repeat: args.replay_loop,
        monitor_aggregation: match args.monitor_aggregation {
            Aggregation::None => ebpf_events::constants::monitor_aggregation::NONE,
            Aggregation::Medium => ebpf_events::constants::monitor_aggregation::MEDIUM,
        },
    })
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Admin(cmd)) => run_admin_command(cmd, &cli.daemon.admin_socket).await,
        Some(Command::Monitor { types, unix_socket }) => {
            agent::monitor::run(&unix_socket, &types).await
        }
        Some(Command::Certs {
            dir,
            nodes,
            cluster_name,
            overwrite,
            existing_ca,
        }) => certs(&dir, nodes, &cluster_name, overwrite, existing_ca),
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
            match daemon_config(cli.daemon) {
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

fn certs(
    dir: &std::path::Path,
    nodes: Vec<String>,
    cluster_name: &str,
    overwrite: bool,
    existing_ca: bool,
) -> Result<()> {
    if existing_ca {
        for node in &nodes {
            let (cert, key) = peer_service::certs::issue_node(dir, cluster_name, node)?;
            println!("wrote {}", cert.display());
            println!("wrote {}", key.display());
        }
        return Ok(());
    }
    let spec = peer_service::certs::CertsSpec {
        cluster: cluster_name.to_string(),
        nodes,
        overwrite,
        ..Default::default()
    };
    for path in peer_service::certs::generate(dir, &spec)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
