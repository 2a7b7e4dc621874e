//! `hubble-lab`: creates, exercises and removes the Star Wars demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use lab::cluster::Target;
use lab::dns_server::Records;
use lab::paths::DEFAULT_RUN_DIR;
use lab::topology::TopologyConfig;
use lab::{cluster, dns, down, network, request, status, traffic, up, LabError};

/// The Star Wars demo on one machine: nodes and pods as network namespaces.
#[derive(Parser)]
#[command(name = "hubble-lab", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Directory for state, endpoint files, sockets and logs.
    #[arg(long, global = true, hide = true, alias = "state-dir", env = "HUBBLE_LAB_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Prefix of namespace and root-namespace link names.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "HUBBLE_LAB_PREFIX",
        default_value = "hl-"
    )]
    prefix: String,
}

#[derive(Subcommand)]
enum Command {
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
enum NodeCommand {
    /// Add a node (namespace, link, routes, agent) to the running lab.
    Add,
}

#[derive(ValueEnum, Clone, Copy)]
enum TargetKind {
    /// The agent of a node (with --node).
    Agent,
    /// The cluster store.
    Etcd,
}

#[derive(Args)]
struct TargetArgs {
    /// What to act on.
    #[arg(value_enum)]
    what: TargetKind,
    /// The node whose agent to act on.
    #[arg(long, required_if_eq("what", "agent"))]
    node: Option<u8>,
}

impl TargetArgs {
    fn target(&self) -> Target {
        match self.what {
            TargetKind::Agent => Target::Agent(self.node.unwrap_or(1)),
            TargetKind::Etcd => Target::Etcd,
        }
    }
}

#[derive(Args)]
struct UpArgs {
    /// Number of nodes (each a network namespace with its own agent).
    #[arg(long, default_value_t = 1)]
    nodes: u8,
    /// hubble-agent binary [default: hubble-agent next to this program].
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// hubble-relay binary [default: hubble-relay next to this program].
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Build the topology and workloads only; start neither agents nor relay.
    #[arg(long)]
    no_agents: bool,
    /// etcd binary for the cluster store [default: /usr/bin/etcd if installed].
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// Do not start etcd: every agent stands alone (static nodes file only).
    #[arg(long)]
    no_kvstore: bool,
    /// Where the relay listens (HOST:PORT); e.g. 0.0.0.0:4245 to reach it from
    /// another machine.
    #[arg(long, env = "HUBBLE_LAB_RELAY_ADDRESS", default_value = up::DEFAULT_RELAY_ADDRESS)]
    relay_address: String,
    /// Do not export flows: by default each node's agent writes them, rotated, to
    /// <run-dir>/node<N>/events.log (as upstream's hubble-export-file-path).
    #[arg(long)]
    no_export: bool,
    /// Cluster name given to the agents.
    #[arg(long, default_value = "default")]
    cluster_name: String,
    /// The /24 shared by the bridge (.1) and the nodes (.10+N).
    #[arg(
        long,
        hide = true,
        env = "HUBBLE_LAB_NODE_SUBNET",
        default_value = "10.100.0.0/24"
    )]
    node_subnet: Ipv4Net,
}

#[derive(Subcommand)]
enum RequestCommand {
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
enum ServeCommand {
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            if matches!(error.downcast_ref::<LabError>(), Some(LabError::NotRoot(_))) {
                eprintln!("{error}");
            } else {
                eprintln!("hubble-lab: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    let mut stdout = std::io::stdout();
    match cli.command {
        Command::Up(args) => {
            let config = up::UpConfig {
                topology: TopologyConfig {
                    nodes: args.nodes,
                    prefix: global.prefix,
                    node_subnet: args.node_subnet,
                },
                cluster_name: args.cluster_name,
                run_dir: global.run_dir.clone(),
                agent_bin: args.agent_bin,
                relay_bin: args.relay_bin,
                etcd_bin: args.etcd_bin,
                no_kvstore: args.no_kvstore,
                relay_address: args.relay_address,
                no_agents: args.no_agents,
                export: !args.no_export,
                self_exe: self_exe()?,
            };
            match up::up(&config, &mut stdout) {
                Ok(state) => {
                    print_summary(&state);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error @ (LabError::NotRoot(_) | LabError::AlreadyUp(_))) => Err(error.into()),
                Err(error) => {
                    let state_file = lab::paths::RunLayout::new(&global.run_dir).state_file();
                    let hint = if state_file.exists() {
                        format!(
                            "; what was created so far is listed in {}: run `hubble-lab down` to remove it",
                            state_file.display()
                        )
                    } else {
                        String::new()
                    };
                    Err(anyhow::anyhow!("{error}{hint}"))
                }
            }
        }
        Command::Traffic { count } => {
            traffic::traffic(&global.run_dir, &self_exe()?, count, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec { pod, command } => {
            lab::exec::exec(&global.run_dir, &pod, &command)?;
            Ok(ExitCode::FAILURE)
        }
        Command::Status => {
            let exists = status::status(&global.run_dir, &mut stdout)?;
            Ok(if exists {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Down => {
            let report = down::down(&global.run_dir, &mut stdout)?;
            let found = report.found;
            down::into_result(
                report,
                &lab::paths::RunLayout::new(&global.run_dir).state_file(),
            )?;
            if found {
                println!("hubble-lab: lab removed");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Node(NodeCommand::Add) => {
            cluster::add_node(&global.run_dir, &self_exe()?, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { target, kill } => {
            cluster::stop(&global.run_dir, &target.target(), kill, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { target } => {
            cluster::start(&global.run_dir, &target.target(), &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Request(request) => run_request(request),
        Command::Serve(ServeCommand::Deathstar { listen }) => {
            lab::deathstar::serve(listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(ServeCommand::Dns { listen, record }) => {
            let mut records = Records::default();
            for spec in &record {
                records.insert_spec(spec)?;
            }
            lab::dns_server::serve(listen, &records)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sysctl { settings } => {
            network::write_sysctls(&settings)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_request(command: RequestCommand) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        RequestCommand::Http {
            method,
            url,
            connect_timeout_ms,
            max_time_ms,
        } => request::http_request(
            &method,
            &url,
            Duration::from_millis(connect_timeout_ms),
            Duration::from_millis(max_time_ms),
        ),
        RequestCommand::Dns {
            server,
            name,
            r#type,
            timeout_ms,
        } => {
            let qtype = match r#type.to_ascii_uppercase().as_str() {
                "A" => dns::TYPE_A,
                "AAAA" => dns::TYPE_AAAA,
                other => anyhow::bail!("unsupported DNS query type {other:?}: use A or AAAA"),
            };
            request::dns_request(server, &name, qtype, Duration::from_millis(timeout_ms))
        }
    };
    println!(
        "{}",
        serde_json::to_string(&outcome).context("encoding the outcome")?
    );
    Ok(match outcome {
        request::Outcome::Failed { exit_code, .. } => {
            ExitCode::from(u8::try_from(exit_code).unwrap_or(1))
        }
        _ => ExitCode::SUCCESS,
    })
}

fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the path of hubble-lab itself")
}

fn print_summary(state: &lab::state::StateFile) {
    let state = &state.state;
    let topology = &state.topology;
    let layout = lab::paths::RunLayout::new(&state.run_dir);
    println!(
        "hubble-lab: demo is up ({} node(s), {} pods); state in {}",
        topology.nodes.len(),
        topology.pods.len(),
        layout.state_file().display()
    );
    for node in &topology.nodes {
        println!(
            "  {:<8} netns {:<14} {}",
            node.name, node.netns, node.address
        );
    }
    for pod in &topology.pods {
        println!(
            "  {:<24} {:<12} on node{} (netns {})",
            format!("{}/{}", pod.namespace, pod.name),
            pod.ipv4,
            pod.node,
            pod.netns
        );
    }
    for record in &state.processes {
        if record.kind != lab::state::ProcessKind::Workload {
            println!(
                "  {:<24} pid {} log {}",
                record.role,
                record.pid,
                record.log.display()
            );
        }
    }
    if let Some(endpoint) = &state.kvstore_endpoint {
        println!("  cluster store (etcd)     {endpoint}");
    }
    if state.export {
        for node in &topology.nodes {
            println!(
                "  flow export of {:<10} {}",
                node.name,
                layout.export_file(node.index).display()
            );
        }
    }
    println!("next:");
    println!("  hubble-lab traffic");
    println!(
        "  hubble-lab exec xwing -- curl -s -XPOST {}/v1/request-landing",
        lab::topology::DEATHSTAR_SERVICE_NAME
    );
    let has_agents = state
        .processes
        .iter()
        .any(|record| record.kind == lab::state::ProcessKind::Agent);
    if has_agents {
        println!(
            "  hubble observe --server unix://{} --last 20",
            layout.hubble_socket(1).display()
        );
    }
    if state
        .processes
        .iter()
        .any(|record| record.kind == lab::state::ProcessKind::Relay)
    {
        let relay = state
            .relay_address
            .as_deref()
            .unwrap_or(up::DEFAULT_RELAY_ADDRESS);
        println!("  hubble observe --server {relay} -f");
    }
    println!("  hubble-lab status");
    println!("  hubble-lab down");
}
