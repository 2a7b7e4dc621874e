//! `hubble-lab status`: what the state file lists and whether it still exists.

use std::io::Write;
use std::path::Path;

use crate::command;
use crate::error::Result;
use crate::paths::RunLayout;
use crate::process;
use crate::state::StateFile;

/// Prints the lab's nodes, pods and processes to `out`. Returns false if there is no lab.
pub fn status(run_dir: &Path, out: &mut dyn Write) -> Result<bool> {
    let layout = RunLayout::new(run_dir);
    let Some(state_file) = StateFile::load(&layout.state_file())? else {
        let _ = writeln!(
            out,
            "no lab under {} (run `hubble-lab up`)",
            run_dir.display()
        );
        return Ok(false);
    };
    let state = &state_file.state;
    let topology = &state.topology;
    let present = |netns: &str| {
        if command::netns_exists(netns) {
            "present"
        } else {
            "MISSING"
        }
    };
    let _ = writeln!(
        out,
        "lab in {} (cluster {}, {}):",
        run_dir.display(),
        state.cluster_name,
        if state.complete {
            "complete"
        } else {
            "INCOMPLETE: `up` did not finish"
        }
    );
    let _ = writeln!(
        out,
        "bridge {} {}",
        topology.bridge, topology.bridge_address
    );
    let _ = writeln!(out, "\nNODES");
    for node in &topology.nodes {
        let _ = writeln!(
            out,
            "{:<8} {:<16} {:<14} pods {:<15} {}",
            node.name,
            node.netns,
            node.address,
            node.pod_cidr,
            present(&node.netns)
        );
    }
    let _ = writeln!(out, "\nPODS");
    for pod in &topology.pods {
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<16} node{:<3} {:<12} {:<22} {}",
            format!("{}/{}", pod.namespace, pod.name),
            pod.ipv4,
            pod.ipv6,
            pod.node,
            pod.host_link,
            pod.netns,
            present(&pod.netns)
        );
    }
    let _ = writeln!(out, "\nPROCESSES");
    if state.processes.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    for record in &state.processes {
        let alive = if process::is_alive(record) {
            "alive"
        } else {
            "DEAD"
        };
        let _ = writeln!(
            out,
            "{:<14} pid {:<8} {:<6} log {}",
            record.role,
            record.pid,
            alive,
            record.log.display()
        );
    }
    Ok(true)
}
