//! The `ip` commands that build the bridge, the nodes and the pods.
//!
//! Callers record each namespace and root-namespace link in the state file before
//! calling the function that creates it.

use std::path::Path;

use crate::command::{self, ip, ip_in};
use crate::error::{LabError, Result};
use crate::topology::{NodePlan, PodPlan, Topology};

/// Link-local address of every host-side veth: the pods' IPv6 default gateway.
pub const HOST_LINK_LOCAL: &str = "fe80::1";

/// Creates the bridge in the root namespace with its address, and brings it up.
pub fn create_bridge(topology: &Topology) -> Result<()> {
    let bridge = topology.bridge.as_str();
    ip(&["link", "add", "name", bridge, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &topology.bridge_address.to_string(),
        "dev",
        bridge,
    ])?;
    ip(&["link", "set", bridge, "up"])
}

/// Creates a named network namespace with its loopback up.
pub fn create_namespace(self_exe: &Path, netns: &str) -> Result<()> {
    ip(&["netns", "add", netns])?;
    ip_in(netns, &["link", "set", "lo", "up"])?;
    // Addresses are configured once and never move: skip duplicate address detection
    // so IPv6 works at once. These settings only affect this namespace.
    set_sysctls(
        self_exe,
        netns,
        &[
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    )
}

/// Wires node `node` (its namespace already exists) to the bridge: veth, addresses,
/// forwarding, and the pod gateway address on its loopback.
pub fn connect_node(self_exe: &Path, topology: &Topology, node: &NodePlan) -> Result<()> {
    let netns = node.netns.as_str();
    let root_link = node.root_link.as_str();
    ip(&[
        "link", "add", "name", root_link, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ])?;
    ip(&["link", "set", root_link, "master", &topology.bridge, "up"])?;
    let address = format!("{}/{}", node.address, topology.bridge_address.prefix_len());
    ip_in(netns, &["addr", "add", &address, "dev", "eth0"])?;
    let address6 = format!("{}/64", node.address6);
    ip_in(
        netns,
        &["-6", "addr", "add", &address6, "dev", "eth0", "nodad"],
    )?;
    ip_in(netns, &["link", "set", "eth0", "up"])?;
    // The pods' default gateway is a local address of the node, so the node answers
    // ARP for it on every host-side veth.
    ip_in(
        netns,
        &["addr", "add", &format!("{}/32", node.gateway), "dev", "lo"],
    )?;
    set_sysctls(
        self_exe,
        netns,
        &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
    )
}

/// Adds, in every node, routes to the other nodes' pod CIDRs via their bridge address.
pub fn route_between_nodes(topology: &Topology) -> Result<()> {
    for node in &topology.nodes {
        for other in topology
            .nodes
            .iter()
            .filter(|other| other.index != node.index)
        {
            route_to(node, other)?;
        }
    }
    Ok(())
}

/// Adds routes between a node that joined later and every other node, both ways.
pub fn route_new_node(topology: &Topology, new: &NodePlan) -> Result<()> {
    for other in topology
        .nodes
        .iter()
        .filter(|other| other.index != new.index)
    {
        route_to(new, other)?;
        route_to(other, new)?;
    }
    if let Some(internet) = &topology.internet {
        crate::internet::route_node(internet, new)?;
    }
    Ok(())
}

/// Adds, in `node`, routes to the pod CIDRs of `other` via its bridge address.
fn route_to(node: &NodePlan, other: &NodePlan) -> Result<()> {
    let via = other.address.to_string();
    ip_in(
        &node.netns,
        &[
            "route",
            "add",
            &other.pod_cidr.to_string(),
            "via",
            &via,
            "dev",
            "eth0",
        ],
    )?;
    let cidr6 = other.pod_cidr6.to_string();
    let via6 = other.address6.to_string();
    ip_in(
        &node.netns,
        &["-6", "route", "add", &cidr6, "via", &via6, "dev", "eth0"],
    )
}

/// Joins pod `pod` (its namespace already exists) to its node: the veth pair, the
/// pod's addresses and default routes, proxy ARP and the /32 route on the node side.
pub fn connect_pod(self_exe: &Path, node: &NodePlan, pod: &PodPlan) -> Result<()> {
    let host = pod.host_link.as_str();
    let node_ns = node.netns.as_str();
    let pod_ns = pod.netns.as_str();
    ip(&[
        "link", "add", "name", host, "netns", node_ns, "type", "veth", "peer", "name", "eth0",
        "netns", pod_ns,
    ])?;

    ip_in(node_ns, &["link", "set", host, "up"])?;
    set_sysctls(
        self_exe,
        node_ns,
        &[&format!("net.ipv4.conf.{host}.proxy_arp=1")],
    )?;
    let link_local = format!("{HOST_LINK_LOCAL}/64");
    ip_in(
        node_ns,
        &["-6", "addr", "add", &link_local, "dev", host, "nodad"],
    )?;
    ip_in(
        node_ns,
        &["route", "add", &format!("{}/32", pod.ipv4), "dev", host],
    )?;
    ip_in(
        node_ns,
        &[
            "-6",
            "route",
            "add",
            &format!("{}/128", pod.ipv6),
            "dev",
            host,
        ],
    )?;

    ip_in(
        pod_ns,
        &["addr", "add", &format!("{}/32", pod.ipv4), "dev", "eth0"],
    )?;
    let address6 = format!("{}/128", pod.ipv6);
    ip_in(
        pod_ns,
        &["-6", "addr", "add", &address6, "dev", "eth0", "nodad"],
    )?;
    ip_in(pod_ns, &["link", "set", "eth0", "up"])?;
    let gateway = node.gateway.to_string();
    ip_in(
        pod_ns,
        &[
            "route", "add", "default", "via", &gateway, "dev", "eth0", "onlink",
        ],
    )?;
    ip_in(
        pod_ns,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            HOST_LINK_LOCAL,
            "dev",
            "eth0",
        ],
    )
}

/// Sets `key=value` sysctls inside `netns` by running `hubble-lab sysctl` there, so the
/// writes to `/proc/sys/net` reach that namespace and never the root namespace.
pub fn set_sysctls(self_exe: &Path, netns: &str, settings: &[&str]) -> Result<()> {
    let program = self_exe.display().to_string();
    let mut args = vec!["sysctl"];
    args.extend_from_slice(settings);
    let output = command::exec_in(netns, &program, &args)?;
    if !output.status.success() {
        let mut full = vec!["netns", "exec", netns, program.as_str()];
        full.extend_from_slice(&args);
        return Err(LabError::Command {
            command: command::display("ip", &full),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Writes `key=value` settings to `/proc/sys` of the current network namespace (the
/// body of the internal `sysctl` subcommand). Only `net.` keys are accepted.
pub fn write_sysctls(settings: &[String]) -> Result<()> {
    for setting in settings {
        let invalid = |reason: &str| LabError::InvalidConfig {
            what: "sysctl setting",
            value: setting.clone(),
            reason: reason.to_string(),
        };
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| invalid("expected KEY=VALUE"))?;
        let safe_key = key.starts_with("net.")
            && key
                .split('.')
                .all(|part| !part.is_empty() && part != ".." && !part.contains('/'));
        if !safe_key {
            return Err(invalid("only net.* keys are accepted"));
        }
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|error| LabError::io("writing", path, error))?;
    }
    Ok(())
}
