//! The command line of `hubble-lab`: its flags parsed into the library's typed
//! configuration (`up::UpConfig`, `TopologyConfig`) and each command run, so `main`
//! only parses and reports.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

use crate::cluster::Target;
use crate::paths::DEFAULT_RUN_DIR;
use crate::topology::TopologyConfig;
use crate::up;

mod run;
mod summary;

pub use run::run;

/// The Star Wars demo on one machine: nodes and pods as network namespaces.
#[derive(Parser)]
#[command(name = "hubble-lab", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// Directory for state, endpoint files, sockets and logs.
    #[arg(long, global = true, hide = true, alias = "state-dir", env = "HUBBLE_LAB_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Prefix of namespace and root-namespace link names.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "HUBBLE_LAB_PREFIX",
        default_value = "hl-"
    )]
    pub prefix: String,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the demo: bridge, nodes, pods, workloads, agents and relay.
    Up(UpArgs),
    /// Send the demo's requests from inside the pods and print each outcome.
    Traffic {
        /// How many times to send the whole set of requests.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Run a command inside a pod (`kubectl exec` for the lab): its network namespace
    /// and its resolv.conf, with the caller's standard streams and the command's exit code.
    #[command(
        after_help = "Example:\n  hubble-lab exec xwing -- curl -s -XPOST deathstar.default.svc.cluster.local/v1/request-landing"
    )]
    Exec {
        /// The pod, `NAME` or `NAMESPACE/NAME` (see `hubble-lab status`).
        pod: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Show the nodes, pods and processes of the lab.
    Status,
    /// Stop the lab's processes and remove its namespaces, links and files.
    Down,
    /// Change the nodes of a running lab.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Stop an agent or etcd of a running lab (SIGTERM; --kill for a crash).
    Stop {
        #[command(flatten)]
        target: TargetArgs,
        /// SIGKILL at once, as a crash would (an agent's node then leaves the cluster
        /// when its lease expires).
        #[arg(long)]
        kill: bool,
    },
    /// Start a stopped agent or etcd again, with the same command line.
    Start {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Make one request from the current network namespace (used by `traffic`).
    #[command(hide = true, subcommand)]
    Request(RequestCommand),
    /// Run a pod's workload (used by `up`).
    #[command(hide = true, subcommand)]
    Serve(ServeCommand),
    /// Write net.* sysctls of the current network namespace (used by `up`).
    #[command(hide = true)]
    Sysctl { settings: Vec<String> },
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Add a node (namespace, link, routes, agent) to the running lab.
    Add,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum TargetKind {
    /// The agent of a node (with --node).
    Agent,
    /// The cluster store.
    Etcd,
}

#[derive(Args)]
pub struct TargetArgs {
    /// What to act on.
    #[arg(value_enum)]
    pub what: TargetKind,
    /// The node whose agent to act on.
    #[arg(long, required_if_eq("what", "agent"))]
    pub node: Option<u8>,
}

impl TargetArgs {
    /// The process this names.
    pub fn target(&self) -> Target {
        match self.what {
            TargetKind::Agent => Target::Agent(self.node.unwrap_or(1)),
            TargetKind::Etcd => Target::Etcd,
        }
    }
}

#[derive(Args)]
pub struct UpArgs {
    /// Number of nodes (each a network namespace with its own agent).
    #[arg(long, default_value_t = 1)]
    pub nodes: u8,
    /// hubble-agent binary [default: hubble-agent next to this program].
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// hubble-relay binary [default: hubble-relay next to this program].
    #[arg(long)]
    pub relay_bin: Option<PathBuf>,
    /// Build the topology and workloads only; start neither agents nor relay.
    #[arg(long)]
    pub no_agents: bool,
    /// etcd binary for the cluster store [default: /usr/bin/etcd if installed].
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// Do not start etcd: every agent stands alone (static nodes file only).
    #[arg(long)]
    pub no_kvstore: bool,
    /// Where the relay listens (HOST:PORT); e.g. 0.0.0.0:4245 to reach it from
    /// another machine.
    #[arg(long, env = "HUBBLE_LAB_RELAY_ADDRESS", default_value = up::DEFAULT_RELAY_ADDRESS)]
    pub relay_address: String,
    /// Do not export flows: by default each node's agent writes them, rotated, to
    /// <run-dir>/node<N>/events.log (as upstream's hubble-export-file-path).
    #[arg(long)]
    pub no_export: bool,
    /// Cluster name given to the agents.
    #[arg(long, default_value = "default")]
    pub cluster_name: String,
    /// The /24 shared by the bridge (.1) and the nodes (.10+N).
    #[arg(
        long,
        hide = true,
        env = "HUBBLE_LAB_NODE_SUBNET",
        default_value = "10.100.0.0/24"
    )]
    pub node_subnet: Ipv4Net,
}

#[derive(Subcommand)]
pub enum RequestCommand {
    /// An HTTP request with an empty body.
    Http {
        #[arg(long)]
        method: String,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 2000)]
        connect_timeout_ms: u64,
        #[arg(long, default_value_t = 5000)]
        max_time_ms: u64,
    },
    /// A DNS query over UDP.
    Dns {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        name: String,
        /// A or AAAA.
        #[arg(long, default_value = "A")]
        r#type: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand)]
pub enum ServeCommand {
    /// The deathstar HTTP service.
    Deathstar {
        #[arg(long, default_value = "0.0.0.0:80")]
        listen: SocketAddr,
    },
    /// The DNS responder.
    Dns {
        #[arg(long, default_value = "0.0.0.0:53")]
        listen: SocketAddr,
        /// NAME=ADDRESS, repeatable.
        #[arg(long)]
        record: Vec<String>,
        /// NAME=TARGET: NAME is an alias (CNAME) of TARGET, repeatable.
        #[arg(long)]
        cname: Vec<String>,
    },
    /// The internet's hosts: plain HTTP naming the called host.
    Internet {
        #[arg(long, default_value = "[::]:443")]
        listen: SocketAddr,
    },
}

impl UpArgs {
    /// The configuration of `up`, with the global flags and the path of this program
    /// (which the pods' workloads run).
    pub fn into_config(self, global: &Global, self_exe: PathBuf) -> up::UpConfig {
        up::UpConfig {
            topology: TopologyConfig {
                nodes: self.nodes,
                prefix: global.prefix.clone(),
                node_subnet: self.node_subnet,
            },
            cluster_name: self.cluster_name,
            run_dir: global.run_dir.clone(),
            agent_bin: self.agent_bin,
            relay_bin: self.relay_bin,
            etcd_bin: self.etcd_bin,
            no_kvstore: self.no_kvstore,
            relay_address: self.relay_address,
            no_agents: self.no_agents,
            export: !self.no_export,
            self_exe,
        }
    }
}

#[cfg(test)]
mod tests;
