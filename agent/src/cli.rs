//! The command line of `hubble-agent`'s daemon and of `cleanup`, turned into typed
//! configuration by the library's own checks (unit-tested below), so `main` only
//! parses and runs.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::admin::DEFAULT_ADMIN_SOCKET;
use crate::daemon::{DaemonConfig, TelemetryConfig};
use crate::kvstore::{KvstoreConfig, DEFAULT_LEASE_TTL};

/// Parent of the default state directories (`<this>/<node>`).
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/hubble-rs";
/// Parent of the default BPF pin directories (`<this>/<node>`).
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/hubble-rs";

/// The handlers a demo node serves by default: the set the Hubble docs enable.
pub const DEFAULT_METRICS: &str = "dns drop tcp flow port-distribution icmp policy \
    httpV2:exemplars=true;labelsContext=source_ip,source_namespace,source_workload,\
    destination_ip,destination_namespace,destination_workload,traffic_direction";

/// How many trace events the datapath sends (`--monitor-aggregation`).
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Aggregation {
    /// A trace event for every packet.
    None,
    /// Trace events only for new connections and TCP SYN/FIN/RST.
    Medium,
}

/// The daemon's flags, upstream's spellings as aliases.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// The admin socket (also used by the subcommands).
    #[arg(long, global = true, default_value = DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long, default_value = "default")]
    pub cluster_name: String,
    /// Directory of endpoint YAML files to watch.
    #[arg(long, default_value = "/var/run/hubble-rs/endpoints")]
    pub endpoints_dir: PathBuf,
    /// Directory of service YAML files to watch.
    #[arg(long, default_value = crate::services::DEFAULT_SERVICES_DIR)]
    pub services_dir: PathBuf,
    /// Unix socket of the Hubble API ("" to disable).
    #[arg(long, default_value = observer::server::DEFAULT_UNIX_SOCKET)]
    pub unix_socket: String,
    /// TCP address of the Hubble API, `host:port` or `:port` ("" to disable).
    #[arg(long, default_value = observer::server::DEFAULT_LISTEN_ADDRESS)]
    pub listen_address: String,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// Prometheus metrics address ("" to disable).
    #[arg(long, default_value = ":9965")]
    pub metrics_address: String,
    /// Metric handlers with options, space separated (upstream's `hubble-metrics`).
    #[arg(long, visible_alias = "hubble-metrics", default_value = DEFAULT_METRICS)]
    pub metrics: String,
    /// Export flows as JSON lines to this file (upstream's `hubble-export-file-path`).
    #[arg(long, visible_alias = "hubble-export-file-path")]
    pub export_file_path: Option<PathBuf>,
    #[arg(
        long,
        visible_alias = "hubble-export-file-max-size-mb",
        default_value_t = 10
    )]
    pub export_file_max_size_mb: u64,
    #[arg(
        long,
        visible_alias = "hubble-export-file-max-backups",
        default_value_t = 5
    )]
    pub export_file_max_backups: usize,
    /// Compress rotated export files with gzip.
    #[arg(long, visible_alias = "hubble-export-file-compress")]
    pub export_file_compress: bool,
    /// Only export flows matching these FlowFilters (JSON objects).
    #[arg(long, visible_alias = "hubble-export-allowlist")]
    pub export_allowlist: Option<String>,
    /// Never export flows matching these FlowFilters (JSON objects).
    #[arg(long, visible_alias = "hubble-export-denylist")]
    pub export_denylist: Option<String>,
    /// Only keep these flow fields in exported flows.
    #[arg(long, visible_alias = "hubble-export-fieldmask", value_delimiter = ',')]
    pub export_fieldmask: Vec<String>,
    /// Exporters declared in a YAML file (`flowLogs:`), reloaded when it changes.
    #[arg(long, visible_alias = "hubble-flowlogs-config-path")]
    pub flowlogs_config_path: Option<PathBuf>,
    /// Static nodes file for the peer service.
    #[arg(long)]
    pub peers_file: Option<PathBuf>,
    /// etcd endpoints of the cluster store, comma-separated (e.g. http://10.100.0.1:2379);
    /// without them the agent is a single node. Replaces --peers-file.
    #[arg(long)]
    pub kvstore_endpoints: Option<String>,
    /// Flows kept in the ring: 2^n - 1.
    #[arg(
        long,
        visible_alias = "hubble-event-buffer-capacity",
        default_value_t = 4095
    )]
    pub ring_capacity: u64,
    /// Serve the flows of a capture (JSON lines as `hubble observe -o jsonpb` prints).
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Replay pace in flows per second (default: as fast as possible).
    #[arg(long)]
    pub replay_rate: Option<f64>,
    /// Give replayed flows the current time.
    #[arg(long)]
    pub replay_retimestamp: bool,
    /// Start the capture over when it ends.
    #[arg(long)]
    pub replay_loop: bool,
    /// Do not load the eBPF datapath (default when replaying).
    #[arg(long)]
    pub no_datapath: bool,
    /// Load the eBPF datapath even when replaying.
    #[arg(long, conflicts_with = "no_datapath")]
    pub datapath: bool,
    #[arg(long, value_enum, default_value = "none")]
    pub monitor_aggregation: Aggregation,
    /// The minimum time, in seconds, to use DNS data for toFQDNs policies and flow
    /// names; shorter TTLs in answers are raised to it (0 keeps the answers' TTLs).
    #[arg(long = "tofqdns-min-ttl", value_name = "SECONDS", default_value_t = crate::fqdn::DEFAULT_MIN_TTL)]
    pub tofqdns_min_ttl: u32,
    /// Where the agent keeps its policy, endpoints and identities across restarts,
    /// written atomically on every change and restored before anything else
    /// (default with the datapath: /var/lib/hubble-rs/<node>; "" keeps nothing).
    #[arg(long)]
    pub state_dir: Option<String>,
    /// When the saved state file is corrupt or from another format version, set it
    /// aside (as state.json.corrupt) and start empty. Without this flag the agent
    /// names the file and refuses to start.
    #[arg(long)]
    pub discard_corrupt_state: bool,
    /// Directory on a BPF file system where the datapath's maps and links are pinned,
    /// so it keeps enforcing while the agent is down or restarting (default:
    /// /sys/fs/bpf/hubble-rs/<node>; "" pins nothing and the datapath goes away with
    /// the agent). Remove it with `hubble-agent cleanup`.
    #[arg(long)]
    pub bpf_pin_dir: Option<String>,
    /// cgroup v2 directory whose processes' sockets get service load balancing: the
    /// socket programs attach there (Cilium's flag; its default is
    /// /run/cilium/cgroupv2). Pods' processes sit in child cgroups named
    /// `<namespace>_<pod>`, which is how translation events find their pod. Without
    /// it sockets are not load-balanced.
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Chooses backends by a hash of this seed and the socket cookie (at the socket
    /// programs) or the client's address and port (at the tc programs) instead of at
    /// random, so tests can predict them (0: random).
    #[arg(long, default_value_t = 0, hide = true)]
    pub socket_lb_seed: u32,
    /// The node's uplink devices (Cilium's flag; repeated or comma-separated):
    /// connections from other nodes to local endpoints whose ingress policy has L7
    /// rules are redirected to the agent's proxy at their ingress.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// This machine's host name, the default node name.
pub fn host_name() -> String {
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

impl DaemonArgs {
    /// The daemon's configuration, checked with the owners' own rules: the ring
    /// capacity by the observer's ring, the TLS settings by [`crate::tls`], the kvstore
    /// endpoints by [`KvstoreConfig`].
    pub fn into_config(self) -> Result<DaemonConfig> {
        daemon_config(self)
    }
}

fn daemon_config(args: DaemonArgs) -> Result<DaemonConfig> {
    let ring_capacity =
        observer::ring::validate_capacity(args.ring_capacity).context("--ring-capacity")?;
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
    let tls = crate::tls::server_tls(&args.tls, optional(&args.listen_address).as_deref())?;
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
        ring_capacity,
        datapath,
        state_dir,
        discard_corrupt_state: args.discard_corrupt_state,
        fqdn_min_ttl: args.tofqdns_min_ttl,
        bpf_pin_dir,
        socket_lb: args
            .cgroup_root
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|cgroup_root| crate::daemon::SocketLb {
                cgroup_root,
                seed: args.socket_lb_seed,
            }),
        devices: args.devices.into_iter().filter(|d| !d.is_empty()).collect(),
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

/// Remove a node's pinned datapath (its programs stop enforcing at once) and its
/// saved state. Run it when the node's agent is stopped for good.
#[derive(clap::Args, Debug)]
pub struct CleanupArgs {
    /// The node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The pin directory (default: /sys/fs/bpf/hubble-rs/<node>).
    #[arg(long)]
    pub bpf_pin_dir: Option<PathBuf>,
    /// The state directory (default: /var/lib/hubble-rs/<node>).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Keep the state directory (policy, endpoints, identities).
    #[arg(long)]
    pub keep_state: bool,
}

impl CleanupArgs {
    /// Removes the node's pins and, unless kept, its state.
    pub fn run(self) -> Result<()> {
        let node = self.node_name.unwrap_or_else(host_name);
        let pins = self
            .bpf_pin_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_ROOT).join(&node));
        let state = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT).join(&node));
        crate::daemon::cleanup(Some(&pins), (!self.keep_state).then_some(state.as_path()))
    }
}

#[cfg(test)]
mod tests;
