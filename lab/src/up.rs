//! `hubble-lab up`: builds the topology, starts the workloads, agents and relay.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent_admin::{self, ENDPOINTS_READY_TIMEOUT};
use crate::command;
use crate::error::{LabError, Result};
use crate::etcd;
use crate::files::{nodes_yaml, EndpointFile};
use crate::network;
use crate::paths::RunLayout;
use crate::pod_dns;
use crate::process::{self, Launch};
use crate::state::{
    write_atomically, LabState, ProcessKind, ProcessRecord, StateFile, STATE_VERSION,
};
use crate::tls;
use crate::topology::{NodePlan, Topology, TopologyConfig, Workload};

/// How long to wait for an agent's Unix socket.
pub const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for the relay's port.
pub const RELAY_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a workload's listening socket.
pub const WORKLOAD_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Port the deathstar serves HTTP on. Workloads listen on `[::]`, which on Linux
/// also accepts IPv4 (IPv4-mapped addresses), so pods answer on both families.
pub const DEATHSTAR_PORT: u16 = 80;
/// Port the DNS responder serves on.
pub const DNS_PORT: u16 = 53;
/// Where the relay listens by default.
pub const DEFAULT_RELAY_ADDRESS: &str = "127.0.0.1:4245";
/// Size at which an agent's flow export file rotates, as the seed's Helm values.
pub const EXPORT_MAX_SIZE_MB: u64 = 10;
/// Rotated export files kept per agent, as the seed's Helm values.
pub const EXPORT_MAX_BACKUPS: usize = 5;

/// Everything `up` needs to know.
#[derive(Debug, Clone)]
pub struct UpConfig {
    pub topology: TopologyConfig,
    pub cluster_name: String,
    pub run_dir: PathBuf,
    /// `hubble-agent` to start; `None` means next to the lab binary, if it exists.
    pub agent_bin: Option<PathBuf>,
    /// `hubble-relay` to start; `None` means next to the lab binary, if it exists.
    pub relay_bin: Option<PathBuf>,
    /// etcd to start as the cluster store; `None` means Debian's, if installed.
    pub etcd_bin: Option<PathBuf>,
    /// Run the agents without a cluster store (each node on its own, nodes file only).
    pub no_kvstore: bool,
    /// Where the relay listens.
    pub relay_address: String,
    pub no_agents: bool,
    /// Whether each agent exports its flows to `<run>/node<N>/events.log`.
    pub export: bool,
    /// This program, re-executed inside namespaces for workloads and sysctls.
    pub self_exe: PathBuf,
}

/// Fails with [`LabError::NotRoot`] unless the effective user is root; `action` names
/// what needs it, e.g. "creating the demo".
pub fn ensure_root(action: &'static str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot(action))
    }
}

/// Builds the lab. Progress and warnings go to `out`. On error, what was created so far
/// is in the state file and `down` removes it.
pub fn up(config: &UpConfig, out: &mut dyn Write) -> Result<StateFile> {
    ensure_root("creating the demo")?;
    let layout = RunLayout::new(&config.run_dir);
    let topology = Topology::plan(&config.topology)?;
    if layout.state_file().exists() {
        return Err(LabError::AlreadyUp(layout.state_file()));
    }
    check_names_are_free(&topology)?;
    let agent_bin = if config.no_agents {
        None
    } else {
        pick_binary(
            "hubble-agent",
            config.agent_bin.as_deref(),
            &config.self_exe,
            out,
        )?
    };
    let relay_bin = if agent_bin.is_none() {
        None
    } else {
        pick_binary(
            "hubble-relay",
            config.relay_bin.as_deref(),
            &config.self_exe,
            out,
        )?
    };

    let mut created_dirs = Vec::new();
    for dir in [layout.root().to_path_buf(), layout.lab_dir()] {
        create_dir(&dir, &mut created_dirs)?;
    }
    let mut state = StateFile::new(
        layout.state_file(),
        LabState {
            version: STATE_VERSION,
            cluster_name: config.cluster_name.clone(),
            run_dir: config.run_dir.clone(),
            topology: topology.clone(),
            namespaces: Vec::new(),
            links: Vec::new(),
            processes: Vec::new(),
            files: Vec::new(),
            dirs: created_dirs,
            trees: Vec::new(),
            kvstore_endpoint: None,
            agent_bin: agent_bin.clone(),
            relay_address: relay_bin.as_ref().map(|_| config.relay_address.clone()),
            export: config.export,
            export_files: Vec::new(),
            mounts: Vec::new(),
            cgroups: Vec::new(),
            complete: false,
        },
    );
    state.save()?;

    build_network(config, &topology, &mut state)?;
    write_endpoint_files(&layout, &topology, &mut state)?;
    write_pod_dns(&topology, !config.no_agents, &mut state)?;
    crate::cgroup::create(&layout, &topology, &mut state)?;
    start_workloads(config, &layout, &topology, &mut state)?;
    let nodes_file = layout.nodes_file();
    record_file(&mut state, &nodes_file)?;
    write_atomically(&nodes_file, nodes_yaml(&topology)?.as_bytes())?;
    if let Some(agent_bin) = agent_bin {
        let etcd_bin = if config.no_kvstore {
            None
        } else {
            pick_etcd(config.etcd_bin.as_deref(), out)?
        };
        if let Some(etcd_bin) = etcd_bin {
            start_etcd(&etcd_bin, &layout, &topology, &mut state)?;
            let endpoint = etcd::client_url(&topology);
            crate::services::put_in_etcd(&endpoint, &topology, &config.cluster_name)?;
        }
        tls::generate(
            &layout,
            &config.cluster_name,
            &topology,
            &agent_bin,
            &mut state,
        )?;
        mount_bpffs(&layout, &mut state)?;
        start_agents(config, &layout, &topology, &agent_bin, &mut state)?;
        if let Some(relay_bin) = relay_bin {
            start_relay(&layout, &relay_bin, &config.relay_address, &mut state)?;
        }
    }
    state.record(|state| state.complete = true)?;
    Ok(state)
}

fn check_names_are_free(topology: &Topology) -> Result<()> {
    let namespaces = topology
        .nodes
        .iter()
        .map(|node| &node.netns)
        .chain(topology.pods.iter().map(|pod| &pod.netns));
    for name in namespaces {
        if command::netns_exists(name) {
            return Err(LabError::NameTaken {
                kind: "network namespace",
                name: name.clone(),
            });
        }
    }
    for pod in &topology.pods {
        let resolv_conf = pod_dns::netns_etc_dir(&pod.netns).join("resolv.conf");
        if resolv_conf.exists() {
            return Err(LabError::NameTaken {
                kind: "file",
                name: resolv_conf.display().to_string(),
            });
        }
    }
    if let Some(internet) = &topology.internet {
        crate::internet::check_free(internet)?;
    }
    let links =
        std::iter::once(&topology.bridge).chain(topology.nodes.iter().map(|node| &node.root_link));
    for name in links {
        if command::root_link_exists(name) {
            return Err(LabError::NameTaken {
                kind: "link",
                name: name.clone(),
            });
        }
    }
    Ok(())
}

/// Resolves a binary: an explicit path must exist; the default (next to the lab
/// binary) may be missing, which is reported and skipped.
fn pick_binary(
    name: &'static str,
    explicit: Option<&Path>,
    self_exe: &Path,
    out: &mut dyn Write,
) -> Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        if !path.is_file() {
            return Err(LabError::MissingBinary {
                what: name,
                path: path.to_path_buf(),
            });
        }
        return Ok(Some(path.to_path_buf()));
    }
    let default = self_exe.with_file_name(name);
    if default.is_file() {
        return Ok(Some(default));
    }
    let _ = writeln!(
        out,
        "hubble-lab: {name} not found at {}; continuing without it",
        default.display()
    );
    Ok(None)
}

fn pick_etcd(explicit: Option<&Path>, out: &mut dyn Write) -> Result<Option<PathBuf>> {
    let picked = etcd::pick_binary(explicit);
    match (&picked, explicit) {
        (Some(path), Some(_)) if !path.is_file() => Err(LabError::MissingBinary {
            what: "etcd",
            path: path.clone(),
        }),
        (None, _) => {
            let _ = writeln!(
                out,
                "hubble-lab: etcd not found at {}; the agents run without a cluster store",
                etcd::DEFAULT_ETCD_BIN
            );
            Ok(None)
        }
        _ => Ok(picked),
    }
}

fn start_etcd(
    etcd_bin: &Path,
    layout: &RunLayout,
    topology: &Topology,
    state: &mut StateFile,
) -> Result<()> {
    let data = layout.etcd_dir();
    let log = layout.etcd_log();
    record_file(state, &log)?;
    state.record(|state| state.trees.push(data))?;
    let record = etcd::spawn(etcd_bin, topology, layout)?;
    state.record(|state| state.processes.push(record.clone()))?;
    etcd::wait_ready(&record, topology)?;
    let endpoint = etcd::client_url(topology);
    state.record(|state| state.kvstore_endpoint = Some(endpoint))
}

fn create_dir(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current {
        if path.exists() {
            break;
        }
        missing.push(path.to_path_buf());
        current = path.parent();
    }
    fs::create_dir_all(dir).map_err(|error| LabError::io("creating directory", dir, error))?;
    created.extend(missing.into_iter().rev());
    Ok(())
}

pub(crate) fn record_dir(state: &mut StateFile, dir: &Path) -> Result<()> {
    let mut created = Vec::new();
    create_dir(dir, &mut created)?;
    state.record(|state| state.dirs.extend(created))
}

pub(crate) fn record_file(state: &mut StateFile, file: &Path) -> Result<()> {
    let file = file.to_path_buf();
    state.record(|state| {
        if !state.files.contains(&file) {
            state.files.push(file)
        }
    })
}

fn build_network(config: &UpConfig, topology: &Topology, state: &mut StateFile) -> Result<()> {
    let self_exe = config.self_exe.as_path();
    state.record(|state| state.links.push(topology.bridge.clone()))?;
    network::create_bridge(topology)?;
    for node in &topology.nodes {
        state.record(|state| state.namespaces.push(node.netns.clone()))?;
        network::create_namespace(self_exe, &node.netns)?;
        state.record(|state| state.links.push(node.root_link.clone()))?;
        network::connect_node(self_exe, topology, node)?;
    }
    network::route_between_nodes(topology)?;
    if let Some(internet) = &topology.internet {
        state.record(|state| state.namespaces.push(internet.netns.clone()))?;
        network::create_namespace(self_exe, &internet.netns)?;
        state.record(|state| state.links.push(internet.root_link.clone()))?;
        crate::internet::connect(topology, internet)?;
    }
    for pod in &topology.pods {
        let node = topology
            .node(pod.node)
            .ok_or_else(|| LabError::InvalidConfig {
                what: "pod placement",
                value: format!("{} on node{}", pod.name, pod.node),
                reason: "no such node".to_string(),
            })?;
        state.record(|state| state.namespaces.push(pod.netns.clone()))?;
        network::create_namespace(self_exe, &pod.netns)?;
        network::connect_pod(self_exe, node, pod)?;
    }
    Ok(())
}

fn write_endpoint_files(
    layout: &RunLayout,
    topology: &Topology,
    state: &mut StateFile,
) -> Result<()> {
    for node in &topology.nodes {
        record_dir(state, &layout.endpoints_dir(node.index))?;
    }
    for pod in &topology.pods {
        let path = layout.endpoint_file(pod.node, &pod.namespace, &pod.name);
        record_file(state, &path)?;
        write_atomically(&path, EndpointFile::for_pod(pod).to_yaml()?.as_bytes())?;
    }
    Ok(())
}

/// Gives every pod a `resolv.conf` naming the kube-dns service (see [`pod_dns`]).
/// `/etc/netns` itself is iproute2's and stays; each pod's directory and file go into
/// the state file, so `down` removes exactly them.
fn write_pod_dns(topology: &Topology, load_balanced: bool, state: &mut StateFile) -> Result<()> {
    let Some(dns_pod) = pod_dns::dns_pod(topology) else {
        return Ok(());
    };
    // Without agents nothing translates the cluster IP: pods ask the DNS pod itself.
    let nameserver = if load_balanced {
        crate::services::KUBE_DNS_VIP
    } else {
        dns_pod.ipv4
    };
    let root = Path::new(pod_dns::NETNS_ETC_DIR);
    fs::create_dir_all(root).map_err(|error| LabError::io("creating directory", root, error))?;
    for pod in &topology.pods {
        let dir = pod_dns::netns_etc_dir(&pod.netns);
        record_dir(state, &dir)?;
        let file = dir.join("resolv.conf");
        record_file(state, &file)?;
        let text = pod_dns::resolv_conf(nameserver.into(), &pod.namespace);
        write_atomically(&file, text.as_bytes())?;
    }
    Ok(())
}

fn start_workloads(
    config: &UpConfig,
    layout: &RunLayout,
    topology: &Topology,
    state: &mut StateFile,
) -> Result<()> {
    let mut dns_args = vec![
        "serve".to_string(),
        "dns".to_string(),
        "--listen".to_string(),
        format!("[::]:{DNS_PORT}"),
    ];
    for (name, address) in pod_dns::records(topology, !config.no_agents) {
        dns_args.push("--record".to_string());
        dns_args.push(format!("{name}={address}"));
    }
    for (name, target) in crate::internet::INTERNET_ALIASES {
        dns_args.push("--cname".to_string());
        dns_args.push(format!("{name}={target}"));
    }
    for pod in &topology.pods {
        let (args, table, port) = match pod.workload {
            Workload::Client => continue,
            Workload::Deathstar => (
                vec![
                    "serve".to_string(),
                    "deathstar".to_string(),
                    "--listen".to_string(),
                    format!("[::]:{DEATHSTAR_PORT}"),
                ],
                "tcp",
                DEATHSTAR_PORT,
            ),
            Workload::Dns => (dns_args.clone(), "udp", DNS_PORT),
        };
        let log = layout.workload_log(&pod.name);
        record_file(state, &log)?;
        let record = process::spawn_detached(Launch {
            role: pod.name.clone(),
            kind: ProcessKind::Workload,
            netns: Some(&pod.netns),
            cgroup: Some(crate::cgroup::pod_cgroup(layout, topology, pod)),
            program: &config.self_exe,
            args,
            log: &log,
        })?;
        state.record(|state| state.processes.push(record.clone()))?;
        let waiting_for = format!("{table} port {port} in {}", pod.netns);
        process::wait_ready(&record, WORKLOAD_READY_TIMEOUT, &waiting_for, || {
            process::has_socket(record.pid, table, port)
        })?;
    }
    if let Some(internet) = &topology.internet {
        start_internet(config, layout, internet, state)?;
    }
    Ok(())
}

/// Starts the internet's server (outside the cluster: no cgroup, no endpoint).
fn start_internet(
    config: &UpConfig,
    layout: &RunLayout,
    internet: &crate::internet::InternetPlan,
    state: &mut StateFile,
) -> Result<()> {
    let log = crate::internet::log_file(layout);
    record_file(state, &log)?;
    let port = crate::internet::INTERNET_PORT;
    let record = process::spawn_detached(Launch {
        role: "internet".to_string(),
        kind: ProcessKind::Workload,
        netns: Some(&internet.netns),
        cgroup: None,
        program: &config.self_exe,
        args: vec![
            "serve".to_string(),
            "internet".to_string(),
            "--listen".to_string(),
            format!("[::]:{port}"),
        ],
        log: &log,
    })?;
    state.record(|state| state.processes.push(record.clone()))?;
    let waiting_for = format!("tcp port {port} in {}", internet.netns);
    process::wait_ready(&record, WORKLOAD_READY_TIMEOUT, &waiting_for, || {
        process::has_socket(record.pid, "tcp", port)
    })
}

/// Mounts the BPF file system the agents pin their datapath in, so that it stays in
/// force while an agent is down or restarting; `down` removes the pins and unmounts it.
fn mount_bpffs(layout: &RunLayout, state: &mut StateFile) -> Result<()> {
    let dir = layout.bpffs_dir();
    record_dir(state, &dir)?;
    state.record(|state| state.mounts.push(dir.clone()))?;
    nix::mount::mount(
        Some("bpf"),
        &dir,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| {
        LabError::io(
            "mounting a BPF file system on",
            &dir,
            std::io::Error::from(errno),
        )
    })
}

fn start_agents(
    config: &UpConfig,
    layout: &RunLayout,
    topology: &Topology,
    agent_bin: &Path,
    state: &mut StateFile,
) -> Result<()> {
    let mut started = Vec::new();
    for node in &topology.nodes {
        let record = start_agent(&config.cluster_name, layout, node, agent_bin, state)?;
        started.push((record, node.index));
    }
    for (record, index) in &started {
        wait_for_agent(layout, record, *index)?;
    }
    agent_admin::wait_for_endpoints(layout, topology, &started, ENDPOINTS_READY_TIMEOUT)
}

/// Starts the agent of `node` (recording its files and process) without waiting.
pub fn start_agent(
    cluster_name: &str,
    layout: &RunLayout,
    node: &NodePlan,
    agent_bin: &Path,
    state: &mut StateFile,
) -> Result<ProcessRecord> {
    let socket = layout.hubble_socket(node.index);
    let admin = layout.admin_socket(node.index);
    let log = layout.agent_log(node.index);
    for file in [&socket, &admin, &log] {
        record_file(state, file)?;
    }
    // The agent's state and pins outlive it (a restart restores them); `down` removes
    // both trees.
    let state_dir = layout.agent_state_dir(node.index);
    let pin_dir = layout.pin_dir(node.index);
    state.record(|state| {
        for tree in [&state_dir, &pin_dir] {
            if !state.trees.contains(tree) {
                state.trees.push(tree.clone());
            }
        }
    })?;
    // With a cluster store the services live there (`up` puts them); without one,
    // service files name every backend, as an agent then knows only its own pods.
    if state.state.kvstore_endpoint.is_none() {
        let topology = state.state.topology.clone();
        crate::services::write_service_files(layout, &topology, node.index, true, state)?;
    }
    let path = |path: PathBuf| path.display().to_string();
    let tls = tls::node_files(layout, cluster_name, &node.name, agent_bin)?;
    let mut args = vec![
        "--tls-cert-file".to_string(),
        path(tls.cert),
        "--tls-key-file".to_string(),
        path(tls.key),
        "--tls-client-ca-files".to_string(),
        path(tls.ca),
        "--node-name".to_string(),
        node.name.clone(),
        "--cluster-name".to_string(),
        cluster_name.to_string(),
        "--endpoints-dir".to_string(),
        path(layout.endpoints_dir(node.index)),
        "--services-dir".to_string(),
        path(layout.services_dir(node.index)),
        "--unix-socket".to_string(),
        path(socket),
        "--admin-socket".to_string(),
        path(admin),
        "--listen-address".to_string(),
        format!("0.0.0.0:{}", crate::topology::AGENT_PORT),
        "--metrics-address".to_string(),
        "0.0.0.0:9965".to_string(),
        "--state-dir".to_string(),
        path(state_dir),
        "--bpf-pin-dir".to_string(),
        path(pin_dir),
        // The node's link to the others: L7 redirects of connections from them.
        "--devices".to_string(),
        "eth0".to_string(),
    ];
    if crate::cgroup::enabled(layout, state) {
        // Socket load balancing for the processes of this node's pods.
        let cgroup = crate::cgroup::node_cgroup(layout, &state.state.topology.clone(), node.index);
        crate::cgroup::ensure(state, &cgroup)?;
        args.extend(["--cgroup-root".to_string(), path(cgroup)]);
    }
    match &state.state.kvstore_endpoint {
        // The cluster store gives every agent the node list, identities and ipcache.
        Some(endpoint) => args.extend(["--kvstore-endpoints".to_string(), endpoint.clone()]),
        None => args.extend(["--peers-file".to_string(), path(layout.nodes_file())]),
    }
    if state.state.export {
        let export = layout.export_file(node.index);
        let export_file = export.clone();
        state.record(|state| {
            if !state.export_files.contains(&export_file) {
                state.export_files.push(export_file)
            }
        })?;
        args.extend([
            "--export-file-path".to_string(),
            path(export),
            "--export-file-max-size-mb".to_string(),
            EXPORT_MAX_SIZE_MB.to_string(),
            "--export-file-max-backups".to_string(),
            EXPORT_MAX_BACKUPS.to_string(),
        ]);
    }
    let record = process::spawn_detached(Launch {
        role: agent_role(node.index),
        kind: ProcessKind::Agent,
        netns: Some(&node.netns),
        cgroup: None,
        program: agent_bin,
        args,
        log: &log,
    })?;
    state.record(|state| state.processes.push(record.clone()))?;
    Ok(record)
}

/// The role of node `index`'s agent in the state file.
pub fn agent_role(index: u8) -> String {
    format!("agent node{index}")
}

/// Waits until the agent of node `index` accepts connections on its Hubble socket (a
/// socket file left by a killed agent does not count).
pub fn wait_for_agent(layout: &RunLayout, record: &ProcessRecord, index: u8) -> Result<()> {
    let socket = layout.hubble_socket(index);
    let waiting_for = format!("socket {}", socket.display());
    process::wait_ready(record, AGENT_READY_TIMEOUT, &waiting_for, || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
}

fn start_relay(
    layout: &RunLayout,
    relay_bin: &Path,
    address: &str,
    state: &mut StateFile,
) -> Result<()> {
    let log = layout.relay_log();
    record_file(state, &log)?;
    let peer = format!("unix://{}", layout.hubble_socket(1).display());
    let tls = layout.tls_dir();
    let record = process::spawn_detached(Launch {
        role: "relay".to_string(),
        kind: ProcessKind::Relay,
        netns: None,
        cgroup: None,
        program: relay_bin,
        args: vec![
            "serve".to_string(),
            "--peer-service".to_string(),
            peer,
            "--listen-address".to_string(),
            address.to_string(),
            // Health is served on the main port too; a second port would only collide
            // between labs.
            "--health-listen-address=".to_string(),
            // Towards agents: mutual TLS, as upstream. The relay's own port stays
            // plaintext on loopback, so the demo's `hubble` commands need no certificates.
            "--tls-hubble-client-cert-file".to_string(),
            tls.join("relay-client.crt").display().to_string(),
            "--tls-hubble-client-key-file".to_string(),
            tls.join("relay-client.key").display().to_string(),
            "--tls-hubble-server-ca-files".to_string(),
            tls.join("ca.crt").display().to_string(),
            "--disable-server-tls".to_string(),
        ],
        log: &log,
    })?;
    state.record(|state| state.processes.push(record.clone()))?;
    let waiting_for = format!("the relay on {address}");
    process::wait_ready(&record, RELAY_READY_TIMEOUT, &waiting_for, || {
        std::net::TcpStream::connect(address).is_ok()
    })
}
