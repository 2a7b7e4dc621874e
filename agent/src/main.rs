//! `hubble-agent`: one node of hubble-rs. Without a subcommand it runs the daemon; the
//! subcommands talk to a running agent (`endpoint list`, `policy import FILE`, ...).

use std::path::PathBuf;

use agent::admin::{run_admin_command, AdminCommand, DEFAULT_ADMIN_SOCKET};
use agent::daemon::{run, DaemonConfig, TelemetryConfig};
use agent::kvstore::{KvstoreConfig, DEFAULT_LEASE_TTL};
use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};

/// Parent of the default state directories (`<this>/<node>`).
const DEFAULT_STATE_ROOT: &str = "/var/lib/hubble-rs";
/// Parent of the default BPF pin directories (`<this>/<node>`).
const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/hubble-rs";

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
    /// Print the node's datapath events as they happen (like `cilium monitor`; `-v`
    /// prints each event with its packet's layers, like `cilium monitor -v`).
    Monitor {
        /// Verbose: a header line and the packet's layers for each event (`-vv` is the
        /// same: flows carry decoded fields, not the captured bytes).
        #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
        verbose: u8,
        /// Only events of these types: drop, trace, policy-verdict.
        #[arg(short = 't', long = "type")]
        types: Vec<String>,
        /// The agent's Hubble API socket.
        #[arg(long, default_value = observer::serve::DEFAULT_UNIX_SOCKET)]
        unix_socket: PathBuf,
    },
    /// Remove a node's pinned datapath (its programs stop enforcing at once) and its
    /// saved state. Run it when the node's agent is stopped for good.
    Cleanup {
        /// The node (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// The pin directory (default: /sys/fs/bpf/hubble-rs/<node>).
        #[arg(long)]
        bpf_pin_dir: Option<PathBuf>,
        /// The state directory (default: /var/lib/hubble-rs/<node>).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Keep the state directory (policy, endpoints, identities).
        #[arg(long)]
        keep_state: bool,
    },
    /// Generate a CA and the TLS certificates for agents, the relay and clients.
    Certs(peer_service::certs::CertsArgs),
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
    /// Directory of service YAML files to watch.
    #[arg(long, default_value = agent::services::DEFAULT_SERVICES_DIR)]
    services_dir: PathBuf,
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
    /// Where the agent keeps its policy, endpoints and identities across restarts,
    /// written atomically on every change and restored before anything else
    /// (default with the datapath: /var/lib/hubble-rs/<node>; "" keeps nothing).
    #[arg(long)]
    state_dir: Option<String>,
    /// When the saved state file is corrupt or from another format version, set it
    /// aside (as state.json.corrupt) and start empty. Without this flag the agent
    /// names the file and refuses to start.
    #[arg(long)]
    discard_corrupt_state: bool,
    /// Directory on a BPF file system where the datapath's maps and links are pinned,
    /// so it keeps enforcing while the agent is down or restarting (default:
    /// /sys/fs/bpf/hubble-rs/<node>; "" pins nothing and the datapath goes away with
    /// the agent). Remove it with `hubble-agent cleanup`.
    #[arg(long)]
    bpf_pin_dir: Option<String>,
    /// cgroup v2 directory whose processes' sockets get service load balancing: the
    /// socket programs attach there (Cilium's flag; its default is
    /// /run/cilium/cgroupv2). Pods' processes sit in child cgroups named
    /// `<namespace>_<pod>`, which is how translation events find their pod. Without
    /// it sockets are not load-balanced.
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Chooses backends by a hash of this seed and the socket cookie instead of at
    /// random, so tests can predict them (0: random).
    #[arg(long, default_value_t = 0, hide = true)]
    socket_lb_seed: u32,
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// A per-node directory: the flag's value ("" for none), else `<root>/<node>` when
/// `default` holds.
fn node_dir(flag: Option<String>, root: &str, node: &str, default: bool) -> Option<PathBuf> {
    match flag {
        Some(dir) => optional(&dir).map(PathBuf::from),
        None => default.then(|| PathBuf::from(root).join(node)),
    }
}

fn daemon_config(args: DaemonArgs) -> Result<DaemonConfig> {
    if args.ring_capacity == 0 || (args.ring_capacity + 1) & args.ring_capacity != 0 {
        bail!(
            "invalid --ring-capacity {}: must be 2^n - 1 (e.g. 4095, 65535)",
            args.ring_capacity
        );
    }
    let node_name = args.node_name.unwrap_or_else(host_name);
    if node_name.is_empty() || node_name.contains('/') || node_name.starts_with('.') {
        bail!("invalid --node-name {node_name:?}: it names directories, so it must be non-empty, without '/' and not start with '.'");
    }
    let datapath = args.datapath || (args.replay.is_none() && !args.no_datapath);
    // A replay-only agent keeps no state unless asked: nothing it holds is enforced.
    let state_dir = node_dir(args.state_dir, DEFAULT_STATE_ROOT, &node_name, datapath);
    let bpf_pin_dir = node_dir(args.bpf_pin_dir, DEFAULT_PIN_ROOT, &node_name, datapath);
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
        services_dir: args.services_dir,
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
        datapath,
        state_dir,
        discard_corrupt_state: args.discard_corrupt_state,
        bpf_pin_dir,
        socket_lb: args
            .cgroup_root
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|cgroup_root| agent::daemon::SocketLb {
                cgroup_root,
                seed: args.socket_lb_seed,
            }),
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
        Some(Command::Monitor {
            types,
            unix_socket,
            verbose,
        }) => agent::monitor::run(&unix_socket, &types, verbose > 0).await,
        Some(Command::Cleanup {
            node_name,
            bpf_pin_dir,
            state_dir,
            keep_state,
        }) => {
            let node = node_name.unwrap_or_else(host_name);
            let pins = bpf_pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_ROOT).join(&node));
            let state = state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT).join(&node));
            agent::daemon::cleanup(Some(&pins), (!keep_state).then_some(state.as_path()))
        }
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

/// Where `hubble-agent certs` writes without `--dir`.
const DEFAULT_CERTS_DIR: &str = "certs";

fn certs(args: &peer_service::certs::CertsArgs) -> Result<()> {
    Ok(peer_service::certs::run(
        args,
        std::path::Path::new(DEFAULT_CERTS_DIR),
    )?)
}
