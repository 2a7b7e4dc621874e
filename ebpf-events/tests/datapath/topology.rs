//! Network namespaces for the datapath tests: a "node" namespace with one
//! host-side veth per "pod" namespace, wired like the lab (proxy ARP on the
//! host veths, a /32 route per pod, IPv4 forwarding on the node).
//!
//! Names carry the test process id and a per-test tag, so parallel tests and
//! leftovers of other runs never collide. Everything is deleted on drop,
//! also when the test panics.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::thread;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Gateway address the node answers on every host veth.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// One pod: its namespace, its addresses and its host-side veth.
#[derive(Clone, Debug)]
pub struct Pod {
    pub netns: String,
    pub host_veth: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub host_ipv6: Ipv6Addr,
}

/// The namespaces of one test; deleted on drop.
pub struct Topology {
    pub node: String,
    pub pods: Vec<Pod>,
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

impl Topology {
    /// Creates the node namespace and `pod_count` pods.
    pub fn create(tag: &str, pod_count: u8) -> Result<Self> {
        let prefix = format!("hrt-{}-{tag}", std::process::id());
        let node = format!("{prefix}-node");
        // Registered before anything is created so a failure half-way still
        // cleans up what exists.
        let mut topology = Topology {
            node: node.clone(),
            pods: Vec::new(),
        };
        ip(&["netns", "add", &node])?;
        ip(&["-n", &node, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &node,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        for index in 1..=pod_count {
            let pod = Pod {
                netns: format!("{prefix}-pod{index}"),
                host_veth: format!("hrt{}{tag}{index}", std::process::id() % 10_000),
                ipv4: Ipv4Addr::new(10, 77, 0, 10 + index),
                ipv6: format!("fd77:{index}::11").parse()?,
                host_ipv6: format!("fd77:{index}::1").parse()?,
            };
            ip(&["netns", "add", &pod.netns])?;
            topology.pods.push(pod.clone());
            topology.wire(&pod)?;
        }
        Ok(topology)
    }

    fn wire(&self, pod: &Pod) -> Result<()> {
        let node = self.node.as_str();
        let ns = pod.netns.as_str();
        let veth = pod.host_veth.as_str();
        ip(&[
            "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                node,
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{veth}.proxy_arp=1"),
            ],
        )?;
        ip(&[
            "-n",
            node,
            "addr",
            "add",
            &format!("{GATEWAY_V4}/32"),
            "dev",
            veth,
        ])?;
        ip(&[
            "-n",
            node,
            "addr",
            "add",
            &format!("{}/64", pod.host_ipv6),
            "dev",
            veth,
            "nodad",
        ])?;
        ip(&["-n", node, "link", "set", veth, "up"])?;
        ip(&[
            "-n",
            node,
            "route",
            "add",
            &format!("{}/32", pod.ipv4),
            "dev",
            veth,
        ])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/32", pod.ipv4),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/64", pod.ipv6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            &format!("{GATEWAY_V4}/32"),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &GATEWAY_V4.to_string(),
        ])?;
        Ok(())
    }

    /// Runs `ping` from `pod` and reports whether replies came back.
    pub fn ping(&self, pod: &Pod, target: &str, count: u32) -> Result<bool> {
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod.netns,
                "ping",
                "-q",
                "-c",
                &count.to_string(),
            ])
            .args(["-i", "0.2", "-W", "1", target])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running ping")?;
        Ok(status.success())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for pod in &self.pods {
            let _ = ip(&["netns", "del", &pod.netns]);
        }
        let _ = ip(&["netns", "del", &self.node]);
    }
}

/// Moves the calling thread into network namespace `netns`.
pub fn enter_netns(netns: &str) -> Result<()> {
    let file = File::open(format!("/run/netns/{netns}"))
        .with_context(|| format!("opening network namespace {netns}"))?;
    setns(file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {netns}"))?;
    Ok(())
}

/// Runs `body` on a fresh thread inside `netns` and returns its result.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    body: impl FnOnce() -> Result<T> + Send + 'static,
) -> thread::JoinHandle<Result<T>> {
    let netns = netns.to_string();
    thread::spawn(move || {
        enter_netns(&netns)?;
        body()
    })
}
