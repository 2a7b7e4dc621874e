//! Changing a running lab: adding a node, stopping and starting an agent or etcd.
//!
//! These are what a cluster operator does to a real cluster (a node joins, an agent
//! crashes and comes back, the store restarts), so demos and tests can watch Hubble
//! follow along.

use std::io::Write;
use std::path::Path;

use crate::error::{LabError, Result};
use crate::etcd;
use crate::network;
use crate::paths::RunLayout;
use crate::process;
use crate::state::{ProcessKind, ProcessRecord, StateFile};
use crate::topology::NodePlan;
use crate::up::{agent_role, ensure_root, record_dir, start_agent, wait_for_agent};

/// A process of the lab that `start` and `stop` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The agent of node N.
    Agent(u8),
    /// The cluster store.
    Etcd,
}

impl Target {
    fn role(&self) -> String {
        match self {
            Target::Agent(index) => agent_role(*index),
            Target::Etcd => etcd::ROLE.to_string(),
        }
    }
}

fn load(run_dir: &Path) -> Result<StateFile> {
    let path = RunLayout::new(run_dir).state_file();
    StateFile::load(&path)?.ok_or(LabError::NotUp(path))
}

fn find(state: &StateFile, target: &Target) -> Result<ProcessRecord> {
    let role = target.role();
    state
        .state
        .processes
        .iter()
        .rev()
        .find(|record| record.role == role)
        .cloned()
        .ok_or(LabError::NoSuchProcess { role })
}

/// Adds a node (namespace, bridge link, routes both ways, agent joined to the cluster
/// store) to a running lab and returns it. Pods stay where they are.
pub fn add_node(run_dir: &Path, self_exe: &Path, out: &mut dyn Write) -> Result<NodePlan> {
    ensure_root("adding a node")?;
    let mut state = load(run_dir)?;
    let layout = RunLayout::new(run_dir);
    let agent_bin = state
        .state
        .agent_bin
        .clone()
        .ok_or(LabError::InvalidConfig {
            what: "lab",
            value: run_dir.display().to_string(),
            reason: "was created without agents; nothing to add a node to".to_string(),
        })?;
    if state.state.kvstore_endpoint.is_none() {
        let _ = writeln!(
            out,
            "hubble-lab: this lab has no cluster store; the new node's agent stands alone"
        );
    }
    let mut topology = state.state.topology.clone();
    let node = topology.add_node()?;
    state.record(|state| state.namespaces.push(node.netns.clone()))?;
    network::create_namespace(self_exe, &node.netns)?;
    state.record(|state| state.links.push(node.root_link.clone()))?;
    network::connect_node(self_exe, &topology, &node)?;
    network::route_new_node(&topology, &node)?;
    state.record(|state| state.topology = topology)?;
    record_dir(&mut state, &layout.endpoints_dir(node.index))?;
    let cluster_name = state.state.cluster_name.clone();
    let record = start_agent(&cluster_name, &layout, &node, &agent_bin, &mut state)?;
    wait_for_agent(&layout, &record, node.index)?;
    let _ = writeln!(
        out,
        "hubble-lab: {} is up at {} (netns {}, agent pid {})",
        node.name, node.address, node.netns, record.pid
    );
    Ok(node)
}

/// Stops a process of the lab: SIGTERM with a grace period, or SIGKILL at once when
/// `kill` is set (a crash: an agent's lease then expires on its own).
pub fn stop(run_dir: &Path, target: &Target, kill: bool, out: &mut dyn Write) -> Result<()> {
    ensure_root("stopping a lab process")?;
    let state = load(run_dir)?;
    let record = find(&state, target)?;
    if kill {
        process::kill_now(&record)?;
        let _ = writeln!(out, "{} (pid {}) killed", record.role, record.pid);
    } else {
        for line in process::stop_all(std::slice::from_ref(&record)) {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(())
}

/// Starts a stopped process of the lab again with its recorded command line, and
/// waits until it serves.
pub fn start(run_dir: &Path, target: &Target, out: &mut dyn Write) -> Result<()> {
    ensure_root("starting a lab process")?;
    let mut state = load(run_dir)?;
    let old = find(&state, target)?;
    if process::is_alive(&old) {
        let _ = writeln!(out, "{} (pid {}) is already running", old.role, old.pid);
        return Ok(());
    }
    let record = process::respawn(&old)?;
    state.record(|state| {
        for slot in state.processes.iter_mut() {
            if slot.role == old.role && slot.pid == old.pid {
                *slot = record.clone();
            }
        }
    })?;
    let layout = RunLayout::new(run_dir);
    match (target, record.kind) {
        (Target::Agent(index), ProcessKind::Agent) => wait_for_agent(&layout, &record, *index)?,
        (Target::Etcd, ProcessKind::Etcd) => etcd::wait_ready(&record, &state.state.topology)?,
        _ => {}
    }
    let _ = writeln!(out, "{} started (pid {})", record.role, record.pid);
    Ok(())
}
