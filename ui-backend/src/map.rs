//! The service map: workloads as nodes, grouped by namespace, and one edge per
//! (source, destination, destination port, protocol) with counts per verdict.

use std::collections::BTreeMap;

use proto::flow::{layer4, Endpoint, Flow, Verdict};
use serde::Serialize;

/// Most distinct workloads kept on the map. A cluster with more would not be readable
/// as boxes anyway; further ones are counted in `discarded_nodes` and left out.
pub const MAX_MAP_NODES: usize = 1024;
/// Most distinct edges kept on the map; further ones are counted in `discarded_edges`.
pub const MAX_MAP_EDGES: usize = 8192;

/// Reserved identities of Cilium, named as the map shows them when a flow's endpoint
/// carries no `reserved:` label.
const RESERVED_IDENTITIES: [(u32, &str); 8] = [
    (1, "host"),
    (2, "world"),
    (3, "unmanaged"),
    (4, "health"),
    (5, "init"),
    (6, "remote-node"),
    (7, "kube-apiserver"),
    (8, "ingress"),
];

/// One box on the map: a workload of a namespace, or a reserved entity such as `world`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapNode {
    /// Stable id: `namespace/workload` for pods, `reserved:<name>` otherwise.
    pub id: String,
    /// Kubernetes namespace; empty for entities outside the cluster's pods.
    pub namespace: String,
    /// Workload name (pod name without its replica suffix) or entity name.
    pub name: String,
    /// The filter the page sets when the box is clicked: `pod` or `label`.
    pub filter_kind: &'static str,
    /// The value of that filter (`namespace/workload` or `reserved:world`).
    pub filter_value: String,
    /// Labels of the most recent endpoint seen for this node.
    pub labels: Vec<String>,
    /// Flows that had this node as source or destination.
    pub flows: u64,
}

/// One arrow on the map.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapEdge {
    pub source: String,
    pub destination: String,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
    /// L4 protocol name as Hubble prints it (`TCP`, `UDP`, `ICMPv4`, ...).
    pub protocol: &'static str,
    /// Flow count per verdict name (`FORWARDED`, `DROPPED`, ...).
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Verdict of the most recent flow on this edge.
    pub last_verdict: &'static str,
    /// Time of the most recent flow, RFC 3339.
    pub last_seen: String,
}

type EdgeKey = (String, String, u16, &'static str);

/// The aggregate that the map page draws.
#[derive(Debug, Default)]
pub struct ServiceMap {
    nodes: BTreeMap<String, MapNode>,
    edges: BTreeMap<EdgeKey, MapEdge>,
    version: u64,
    discarded_nodes: u64,
    discarded_edges: u64,
}

/// What `/api/map` returns.
#[derive(Debug, Serialize)]
pub struct MapSnapshot<'a> {
    pub version: u64,
    pub nodes: Vec<&'a MapNode>,
    pub edges: Vec<&'a MapEdge>,
    pub discarded_nodes: u64,
    pub discarded_edges: u64,
}

impl ServiceMap {
    /// Counts `flow` on its edge. Replies are left out so that each connection is drawn
    /// once, from the side that opened it.
    pub fn add(&mut self, flow: &Flow) {
        if flow.is_reply.as_ref().is_some_and(|r| r.value) {
            return;
        }
        let (Some(src), Some(dst)) = (flow.source.as_ref(), flow.destination.as_ref()) else {
            return;
        };
        let (Some(source), Some(destination)) = (self.touch(src), self.touch(dst)) else {
            return;
        };
        let (port, protocol) = port_and_protocol(flow);
        let verdict = verdict_name(flow.verdict);
        let last_seen = flow.time.as_ref().map(rfc3339).unwrap_or_default();
        let key = (source.clone(), destination.clone(), port, protocol);
        if !self.edges.contains_key(&key) && self.edges.len() >= MAX_MAP_EDGES {
            self.discarded_edges += 1;
            return;
        }
        let edge = self.edges.entry(key).or_insert_with(|| MapEdge {
            source,
            destination,
            port,
            protocol,
            verdicts: BTreeMap::new(),
            last_verdict: verdict,
            last_seen: String::new(),
        });
        *edge.verdicts.entry(verdict).or_insert(0) += 1;
        edge.last_verdict = verdict;
        edge.last_seen = last_seen;
        self.version += 1;
    }

    /// Finds or creates the node of `endpoint`, returning its id, or `None` when the
    /// node limit is reached.
    fn touch(&mut self, endpoint: &Endpoint) -> Option<String> {
        let node = node_of(endpoint);
        if let Some(known) = self.nodes.get_mut(&node.id) {
            known.flows += 1;
            if known.labels != endpoint.labels && !endpoint.labels.is_empty() {
                known.labels.clone_from(&endpoint.labels);
            }
            return Some(known.id.clone());
        }
        if self.nodes.len() >= MAX_MAP_NODES {
            self.discarded_nodes += 1;
            return None;
        }
        let id = node.id.clone();
        self.nodes.insert(id.clone(), MapNode { flows: 1, ..node });
        Some(id)
    }

    /// A counter that changes whenever the map does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The whole map, nodes ordered by namespace then name.
    pub fn snapshot(&self) -> MapSnapshot<'_> {
        let mut nodes: Vec<&MapNode> = self.nodes.values().collect();
        nodes.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        MapSnapshot {
            version: self.version,
            nodes,
            edges: self.edges.values().collect(),
            discarded_nodes: self.discarded_nodes,
            discarded_edges: self.discarded_edges,
        }
    }
}

/// The map node an endpoint belongs to (with a zero flow count).
pub fn node_of(endpoint: &Endpoint) -> MapNode {
    let (id, namespace, name, filter_kind, filter_value) = if !endpoint.pod_name.is_empty() {
        let name = endpoint
            .workloads
            .first()
            .filter(|w| !w.name.is_empty())
            .map_or_else(|| workload_name(&endpoint.pod_name), |w| w.name.clone());
        let id = format!("{}/{}", endpoint.namespace, name);
        (id.clone(), endpoint.namespace.clone(), name, "pod", id)
    } else {
        let name = entity_name(endpoint);
        let label = format!("reserved:{name}");
        (label.clone(), String::new(), name, "label", label)
    };
    MapNode {
        id,
        namespace,
        name,
        filter_kind,
        filter_value,
        labels: endpoint.labels.clone(),
        flows: 0,
    }
}

/// The name of an endpoint that is not a pod: its `reserved:` label, else its reserved
/// identity, else `world` for CIDR identities and `identity-N` for anything else.
fn entity_name(endpoint: &Endpoint) -> String {
    if let Some(name) = endpoint
        .labels
        .iter()
        .find_map(|l| l.strip_prefix("reserved:"))
    {
        return name.to_string();
    }
    if let Some((_, name)) = RESERVED_IDENTITIES
        .iter()
        .find(|(id, _)| *id == endpoint.identity)
    {
        return (*name).to_string();
    }
    if endpoint.labels.iter().any(|l| l.starts_with("cidr:")) {
        return "world".to_string();
    }
    format!("identity-{}", endpoint.identity)
}

/// A pod name without its replica suffix when it has one: `deathstar-1` and
/// `deathstar-6fb5694d48-5hmds` are both `deathstar`; `xwing` stays `xwing`.
pub fn workload_name(pod: &str) -> String {
    let mut parts: Vec<&str> = pod.split('-').collect();
    let alphanumeric = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let has_digit = |s: &str| s.chars().any(|c| c.is_ascii_digit());
    let is_template_hash = |s: &str| (6..=10).contains(&s.len()) && alphanumeric(s) && has_digit(s);
    let Some(&last) = parts.last() else {
        return pod.to_string();
    };
    if parts.len() < 2 {
        return pod.to_string();
    }
    if last.chars().all(|c| c.is_ascii_digit()) && !last.is_empty() {
        parts.pop();
    } else if last.len() == 5 && alphanumeric(last) {
        let hash_before = parts.len() > 2 && is_template_hash(parts[parts.len() - 2]);
        if hash_before || has_digit(last) {
            parts.pop();
        }
        if hash_before {
            parts.pop();
        }
    }
    parts.join("-")
}

/// Destination port and protocol name of a flow's L4 header.
pub fn port_and_protocol(flow: &Flow) -> (u16, &'static str) {
    let port = |p: u32| u16::try_from(p).unwrap_or(0);
    match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(tcp)) => (port(tcp.destination_port), "TCP"),
        Some(layer4::Protocol::Udp(udp)) => (port(udp.destination_port), "UDP"),
        Some(layer4::Protocol::Sctp(sctp)) => (port(sctp.destination_port), "SCTP"),
        Some(layer4::Protocol::IcmPv4(_)) => (0, "ICMPv4"),
        Some(layer4::Protocol::IcmPv6(_)) => (0, "ICMPv6"),
        Some(layer4::Protocol::Vrrp(_)) => (0, "VRRP"),
        Some(layer4::Protocol::Igmp(_)) => (0, "IGMP"),
        None => (0, "unknown"),
    }
}

/// A protobuf timestamp as RFC 3339 in UTC with as many fraction digits as needed.
pub fn rfc3339(time: &pbjson_types::Timestamp) -> String {
    let nanos = u32::try_from(time.nanos).unwrap_or(0);
    chrono::DateTime::from_timestamp(time.seconds, nanos).map_or_else(String::new, |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    })
}

/// The name of a verdict value as Hubble prints it.
pub fn verdict_name(verdict: i32) -> &'static str {
    Verdict::try_from(verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name())
}

#[cfg(test)]
mod tests;
