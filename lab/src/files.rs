//! The files the lab writes for others: endpoint files (read by the agent) and the
//! static nodes file (read by the peer service).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::topology::{PodPlan, Topology, AGENT_PORT};

/// One endpoint file, as described in ARCHITECTURE.md ("Endpoint files").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFile {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub ipv4: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    pub interface: String,
    /// The pod's owning controller, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadRef>,
}

/// A pod's owner, as the agent's endpoint files name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub name: String,
    pub kind: String,
}

impl EndpointFile {
    /// The endpoint file of a planned pod.
    pub fn for_pod(pod: &PodPlan) -> Self {
        EndpointFile {
            name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            ipv4: pod.ipv4,
            ipv6: Some(pod.ipv6),
            interface: pod.host_link.clone(),
            workloads: pod
                .workload
                .owner()
                .map(|(name, kind)| WorkloadRef {
                    name: name.to_owned(),
                    kind: kind.to_owned(),
                })
                .into_iter()
                .collect(),
        }
    }

    /// The YAML text of the file.
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self).map_err(|error| LabError::InvalidConfig {
            what: "endpoint",
            value: format!("{}/{}", self.namespace, self.name),
            reason: error.to_string(),
        })
    }
}

/// One entry of the static nodes file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    /// `IP:PORT` of the node's Hubble API.
    pub address: String,
}

/// The static nodes file: a YAML list of `{name, address}`.
pub fn nodes_yaml(topology: &Topology) -> Result<String> {
    let entries: Vec<NodeEntry> = topology
        .nodes
        .iter()
        .map(|node| NodeEntry {
            name: node.name.clone(),
            address: format!("{}:{AGENT_PORT}", node.address),
        })
        .collect();
    serde_yaml::to_string(&entries).map_err(|error| LabError::InvalidConfig {
        what: "nodes file",
        value: format!("{} nodes", entries.len()),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologyConfig;

    fn topology(nodes: u8) -> Topology {
        Topology::plan(&TopologyConfig {
            nodes,
            prefix: "hl-".to_string(),
            node_subnet: "10.100.0.0/24".parse().expect("subnet"),
        })
        .expect("plan")
    }

    #[test]
    fn endpoint_file_matches_the_contract() {
        let topology = topology(1);
        let xwing = topology.pod("xwing").expect("xwing");
        let yaml = EndpointFile::for_pod(xwing).to_yaml().expect("yaml");
        let value: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("parse back");
        assert_eq!(value["name"].as_str(), Some("xwing"));
        assert_eq!(value["namespace"].as_str(), Some("default"));
        assert_eq!(value["labels"]["org"].as_str(), Some("alliance"));
        assert_eq!(value["labels"]["class"].as_str(), Some("xwing"));
        assert_eq!(value["ipv4"].as_str(), Some("10.200.1.13"));
        assert_eq!(value["ipv6"].as_str(), Some("fd00:200:1::13"));
        assert_eq!(value["interface"].as_str(), Some(xwing.host_link.as_str()));
        // A bare pod has no owner; the deathstars come from a Deployment.
        assert!(value.get("workloads").is_none(), "{yaml}");
        let deathstar = topology.pod("deathstar-1").expect("deathstar-1");
        let yaml = EndpointFile::for_pod(deathstar).to_yaml().expect("yaml");
        let value: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("parse back");
        assert_eq!(value["workloads"][0]["name"].as_str(), Some("deathstar"));
        assert_eq!(value["workloads"][0]["kind"].as_str(), Some("Deployment"));
    }

    #[test]
    fn nodes_file_lists_every_agent_address() {
        let yaml = nodes_yaml(&topology(2)).expect("yaml");
        let entries: Vec<NodeEntry> = serde_yaml::from_str(&yaml).expect("parse back");
        assert_eq!(
            entries,
            vec![
                NodeEntry {
                    name: "node1".to_string(),
                    address: "10.100.0.11:4244".to_string()
                },
                NodeEntry {
                    name: "node2".to_string(),
                    address: "10.100.0.12:4244".to_string()
                },
            ]
        );
    }
}
