//! The demo topology as a plan: names, addresses and labels, computed without side effects.
//!
//! Node N is namespace `<prefix>node<N>` at `10.100.0.(10+N)` on the bridge `<prefix>br0`;
//! its pod CIDR is `10.200.N.0/24` with gateway `10.200.N.1`. Pods are spread over the
//! nodes round-robin and get `10.200.<node>.<10+i>` where `i` is their index in
//! [`DEMO_PODS`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// Linux limit on interface names (IFNAMSIZ - 1).
pub const MAX_LINK_NAME: usize = 15;

/// Most nodes a lab may have; keeps link names short and addresses in range.
pub const MAX_NODES: u8 = 16;

/// Port of the Hubble API on every agent.
pub const AGENT_PORT: u16 = 4244;

/// Name the DNS responder answers with deathstar-1's address.
pub const DEATHSTAR_SERVICE_NAME: &str = "deathstar.default.svc.cluster.local";

/// What runs inside a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// The deathstar HTTP server on port 80.
    Deathstar,
    /// The DNS responder on UDP port 53.
    Dns,
    /// Nothing; the pod only makes requests.
    Client,
}

impl Workload {
    /// The controller that owns such a pod (name, kind), as in the Star Wars demo's
    /// manifests: the deathstars and coredns come from Deployments, the tiefighter
    /// and the xwing are bare pods.
    pub fn owner(self) -> Option<(&'static str, &'static str)> {
        match self {
            Workload::Deathstar => Some(("deathstar", "Deployment")),
            Workload::Dns => Some(("coredns", "Deployment")),
            Workload::Client => None,
        }
    }
}

/// One pod of the demo: name, Kubernetes namespace, labels and workload.
pub struct DemoPod {
    pub name: &'static str,
    pub namespace: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    pub workload: Workload,
}

/// The Star Wars demo's pods, in placement order.
pub const DEMO_PODS: &[DemoPod] = &[
    DemoPod {
        name: "deathstar-1",
        namespace: "default",
        labels: &[
            ("org", "empire"),
            ("class", "deathstar"),
            ("app.kubernetes.io/name", "deathstar"),
        ],
        workload: Workload::Deathstar,
    },
    DemoPod {
        name: "deathstar-2",
        namespace: "default",
        labels: &[
            ("org", "empire"),
            ("class", "deathstar"),
            ("app.kubernetes.io/name", "deathstar"),
        ],
        workload: Workload::Deathstar,
    },
    DemoPod {
        name: "tiefighter",
        namespace: "default",
        labels: &[
            ("org", "empire"),
            ("class", "tiefighter"),
            ("app.kubernetes.io/name", "tiefighter"),
        ],
        workload: Workload::Client,
    },
    DemoPod {
        name: "xwing",
        namespace: "default",
        labels: &[
            ("org", "alliance"),
            ("class", "xwing"),
            ("app.kubernetes.io/name", "xwing"),
        ],
        workload: Workload::Client,
    },
    DemoPod {
        name: "coredns",
        namespace: "kube-system",
        labels: &[("k8s-app", "kube-dns")],
        workload: Workload::Dns,
    },
];

/// Inputs that shape the topology.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// Number of nodes, 1..=[`MAX_NODES`].
    pub nodes: u8,
    /// Prefix of every namespace and root-namespace link name, e.g. `hl-`.
    pub prefix: String,
    /// The /24 the nodes and the bridge share; the bridge is `.1`, node N is `.(10+N)`.
    pub node_subnet: Ipv4Net,
}

/// A node of the planned topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub index: u8,
    /// Node name as the agent reports it, `node<N>`.
    pub name: String,
    pub netns: String,
    /// Root-namespace side of the node's veth, enslaved to the bridge.
    pub root_link: String,
    pub address: Ipv4Addr,
    pub address6: Ipv6Addr,
    pub pod_cidr: Ipv4Net,
    /// IPv6 pod CIDR, `fd00:200:<N>::/64`.
    pub pod_cidr6: Ipv6Net,
    pub gateway: Ipv4Addr,
}

/// A pod of the planned topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Workload,
    /// Index of the node the pod sits on.
    pub node: u8,
    pub netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Host-side veth in the node namespace, `lxc<8 hex>`.
    pub host_link: String,
}

/// The whole planned topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub prefix: String,
    pub bridge: String,
    pub bridge_address: Ipv4Net,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
    /// The namespace standing for the internet (absent in labs made before it).
    #[serde(default)]
    pub internet: Option<crate::internet::InternetPlan>,
}

impl Topology {
    /// Plans the topology for `config`, validating the prefix, node count and link names.
    pub fn plan(config: &TopologyConfig) -> Result<Topology> {
        validate_prefix(&config.prefix)?;
        if config.nodes == 0 || config.nodes > MAX_NODES {
            return Err(LabError::InvalidConfig {
                what: "node count",
                value: config.nodes.to_string(),
                reason: format!("must be between 1 and {MAX_NODES}"),
            });
        }
        if config.node_subnet.prefix_len() != 24 {
            return Err(LabError::InvalidConfig {
                what: "node subnet",
                value: config.node_subnet.to_string(),
                reason: "must be a /24".to_string(),
            });
        }
        let base = config.node_subnet.network().octets();
        let prefix = &config.prefix;
        let bridge = checked_link_name(format!("{prefix}br0"))?;
        let bridge_address = Ipv4Net::new(Ipv4Addr::new(base[0], base[1], base[2], 1), 24)
            .map_err(|error| invalid_subnet(config, error))?;

        let nodes = (1..=config.nodes)
            .map(|index| plan_node(prefix, bridge_address, index))
            .collect::<Result<Vec<_>>>()?;

        let mut pods = Vec::new();
        for (position, demo) in DEMO_PODS.iter().enumerate() {
            // Round-robin placement: with two or more nodes the deathstars land on
            // different nodes because they are adjacent in DEMO_PODS.
            let node = (position % usize::from(config.nodes)) as u8 + 1;
            let host = 10 + position as u8;
            pods.push(PodPlan {
                name: demo.name.to_string(),
                namespace: demo.namespace.to_string(),
                labels: demo
                    .labels
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                workload: demo.workload,
                node,
                netns: format!("{prefix}{}", demo.name),
                ipv4: Ipv4Addr::new(10, 200, node, host),
                ipv6: Ipv6Addr::new(
                    0xfd00,
                    0x200,
                    decimal_as_hex(node),
                    0,
                    0,
                    0,
                    0,
                    decimal_as_hex(host),
                ),
                host_link: host_link_name(prefix, demo.namespace, demo.name),
            });
        }
        let internet = crate::internet::InternetPlan::plan(prefix, bridge_address)?;
        Ok(Topology {
            prefix: prefix.clone(),
            bridge,
            bridge_address,
            nodes,
            pods,
            internet: Some(internet),
        })
    }

    /// Plans one more node (without pods) after the existing ones, for `node add`.
    pub fn add_node(&mut self) -> Result<NodePlan> {
        let index = self.nodes.iter().map(|node| node.index).max().unwrap_or(0) + 1;
        if index > MAX_NODES {
            return Err(LabError::InvalidConfig {
                what: "node count",
                value: index.to_string(),
                reason: format!("must be between 1 and {MAX_NODES}"),
            });
        }
        let node = plan_node(&self.prefix, self.bridge_address, index)?;
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Finds a pod by name.
    pub fn pod(&self, name: &str) -> Option<&PodPlan> {
        self.pods.iter().find(|pod| pod.name == name)
    }

    /// Finds a node by index.
    pub fn node(&self, index: u8) -> Option<&NodePlan> {
        self.nodes.iter().find(|node| node.index == index)
    }
}

/// Plans node `index` on the bridge's /24: `.(10+index)`, pod CIDR `10.200.<index>.0/24`.
fn plan_node(prefix: &str, bridge_address: Ipv4Net, index: u8) -> Result<NodePlan> {
    let base = bridge_address.network().octets();
    let invalid = |error: ipnet::PrefixLenError| LabError::InvalidConfig {
        what: "node subnet",
        value: bridge_address.to_string(),
        reason: error.to_string(),
    };
    Ok(NodePlan {
        index,
        name: format!("node{index}"),
        netns: format!("{prefix}node{index}"),
        root_link: checked_link_name(format!("{prefix}node{index}"))?,
        address: Ipv4Addr::new(base[0], base[1], base[2], 10 + index),
        address6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, decimal_as_hex(10 + index)),
        pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 200, index, 0), 24).map_err(invalid)?,
        pod_cidr6: Ipv6Net::new(
            Ipv6Addr::new(0xfd00, 0x200, decimal_as_hex(index), 0, 0, 0, 0, 0),
            64,
        )
        .map_err(invalid)?,
        gateway: Ipv4Addr::new(10, 200, index, 1),
    })
}

/// Checks that a prefix is short and made of lowercase letters, digits and dashes.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let valid_chars = prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if prefix.is_empty() || prefix.len() > 10 || !valid_chars {
        return Err(LabError::InvalidConfig {
            what: "prefix",
            value: prefix.to_string(),
            reason: "must be 1 to 10 characters of a-z, 0-9 and '-'".to_string(),
        });
    }
    Ok(())
}

/// Host-side veth name of a pod: `lxc` and 8 hex digits of an FNV-1a hash of
/// the prefix, Kubernetes namespace and pod name.
pub fn host_link_name(prefix: &str, namespace: &str, pod: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in prefix
        .bytes()
        .chain(namespace.bytes())
        .chain([b'/'])
        .chain(pod.bytes())
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("lxc{hash:08x}")
}

/// Writes a small decimal number's digits as an IPv6 group, so host 12 becomes `::12`.
fn decimal_as_hex(value: u8) -> u16 {
    u16::from_str_radix(&value.to_string(), 16).unwrap_or(u16::from(value))
}

fn checked_link_name(name: String) -> Result<String> {
    if name.len() > MAX_LINK_NAME {
        return Err(LabError::InvalidConfig {
            what: "link name",
            value: name,
            reason: format!("longer than {MAX_LINK_NAME} characters; use a shorter --prefix"),
        });
    }
    Ok(name)
}

fn invalid_subnet(config: &TopologyConfig, error: ipnet::PrefixLenError) -> LabError {
    LabError::InvalidConfig {
        what: "node subnet",
        value: config.node_subnet.to_string(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests;
