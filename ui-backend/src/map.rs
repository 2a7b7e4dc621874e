//! The service map: workloads as nodes, grouped by namespace, and one edge per
//! (source, destination, destination port, protocol) with counts per verdict.
//! A flow to a Kubernetes service (`destination_service` set) is drawn through a node of
//! that service: client -> service, and service -> backend workload when the
//! destination is one.

use std::collections::{BTreeMap, HashMap};

use proto::flow::{layer4, Endpoint, Flow, Service, Verdict};
use proto::names::ReservedIdentity;
use serde::Serialize;

/// Most distinct workloads kept on the map. A cluster with more would not be readable
/// as boxes anyway; further ones are counted in `discarded_nodes` and left out.
pub const MAX_MAP_NODES: usize = 1024;
/// Most distinct edges kept on the map; further ones are counted in `discarded_edges`.
pub const MAX_MAP_EDGES: usize = 8192;
/// Most security identities remembered for attributing endpoints without a pod name
/// to their workload (a workload may have had several label sets over time).
const MAX_KNOWN_IDENTITIES: usize = 4 * MAX_MAP_NODES;

/// Label keys that name an application, after the `k8s:`, `io.kubernetes.pod.` and
/// `app.kubernetes.io/` prefixes are removed; the first one found names the workload
/// in upstream Hubble UI.
const APP_LABEL_KEYS: [&str; 4] = ["app", "name", "functionName", "k8s-app"];
const LABEL_KEY_PREFIXES: [&str; 3] = ["k8s:", "io.kubernetes.pod.", "app.kubernetes.io/"];
/// Label that carries a pod's namespace in Cilium's identity labels.
const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// What a map node stands for.
pub const KIND_WORKLOAD: &str = "workload";
pub const KIND_ENTITY: &str = "entity";
pub const KIND_SERVICE: &str = "service";

/// One box on the map: a workload of a namespace, a Kubernetes service, or a reserved
/// entity such as `world`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapNode {
    /// Stable id: `namespace/workload` for pods, `service:namespace/name` for services,
    /// `reserved:<name>` otherwise.
    pub id: String,
    /// `workload`, `service` or `entity`.
    pub kind: &'static str,
    /// Kubernetes namespace; empty for entities outside the cluster's pods.
    pub namespace: String,
    /// Workload name (pod name without its replica suffix), service name or entity name.
    pub name: String,
    /// The filter the page sets when the box is clicked: `pod`, `service` or `label`.
    pub filter_kind: &'static str,
    /// The value of that filter (`namespace/workload`, `namespace/service` or
    /// `reserved:world`).
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
    /// Security identity -> id of the workload node whose pods carried it.
    identities: HashMap<u32, String>,
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
    ///
    /// Only flows with a pod on at least one side are drawn. Upstream Hubble UI draws
    /// the map of a namespace from flows whose `source_pod` or `destination_pod` is in
    /// it, so a flow between two endpoints without a pod name never reaches its map:
    /// host <-> world chatter, and multicast and link-local packets such as
    /// `fe80::1 (host) -> ff02::16 (ID:259) ICMPv6 143(0)` (an MLDv2 report), whose
    /// group-address side carries the receiving pod's identity and labels but no pod
    /// name (names are looked up by IP). Drawing them would add a `host` box and an
    /// anonymous `identity-259` box for a pod that is already on the map.
    pub fn add(&mut self, flow: &Flow) {
        if flow.is_reply.as_ref().is_some_and(|r| r.value) {
            return;
        }
        let (Some(src), Some(dst)) = (flow.source.as_ref(), flow.destination.as_ref()) else {
            return;
        };
        if src.pod_name.is_empty() && dst.pod_name.is_empty() {
            return;
        }
        let service = flow
            .destination_service
            .as_ref()
            .filter(|s| !s.name.is_empty());
        let (port, protocol) = port_and_protocol(flow);
        let verdict = verdict_name(flow.verdict);
        let last_seen = flow.time.as_ref().map(rfc3339).unwrap_or_default();
        let count = |map: &mut Self, source: String, destination: String| {
            map.count_edge((source, destination, port, protocol), verdict, &last_seen);
        };
        let Some(src_node) = self.resolve(src) else {
            return;
        };
        let Some(service) = service else {
            let Some(dst_node) = self.resolve(dst) else {
                return;
            };
            let (Some(source), Some(destination)) =
                (self.touch(src_node, src), self.touch(dst_node, dst))
            else {
                return;
            };
            count(self, source, destination);
            return;
        };
        // A flow to a service: before translation its destination is the service's
        // address (no workload), after it the backend. Backends are drawn when they are
        // workloads; an address outside the cluster's pods is the service itself.
        let backend = self.resolve(dst).filter(|node| node.kind == KIND_WORKLOAD);
        let (Some(source), Some(service_id)) = (
            self.touch(src_node, src),
            self.touch_node(service_node(service)),
        ) else {
            return;
        };
        count(self, source, service_id.clone());
        if let Some(backend) = backend.and_then(|node| self.touch(node, dst)) {
            count(self, service_id, backend);
        }
    }

    /// Counts one flow with `verdict` on the edge `key`, creating the edge if new and
    /// there is room.
    fn count_edge(&mut self, key: EdgeKey, verdict: &'static str, last_seen: &str) {
        if !self.edges.contains_key(&key) && self.edges.len() >= MAX_MAP_EDGES {
            self.discarded_edges += 1;
            return;
        }
        let (source, destination, port, protocol) = key.clone();
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
        last_seen.clone_into(&mut edge.last_seen);
        self.version += 1;
    }

    /// The node `endpoint` is drawn as, or `None` when it is a cluster endpoint without
    /// a pod name whose workload is not on the map.
    ///
    /// Such an endpoint (a security identity with a pod's labels, but no pod name) is
    /// never a box of its own: upstream Hubble UI keys its boxes by security identity
    /// and names them by the `app`/`k8s-app`/`name` label, so it draws the endpoint in
    /// the box of the pods with that identity. Here boxes are workloads, so the endpoint
    /// goes to the workload whose pods carried its identity, else the one whose pods
    /// carried the same labels, else the one of its namespace with the same application
    /// label. Without one of those its flow is left out rather than drawn as an
    /// anonymous `identity-N` box.
    fn resolve(&self, endpoint: &Endpoint) -> Option<MapNode> {
        if !endpoint.pod_name.is_empty() || is_entity(endpoint) {
            return Some(node_of(endpoint));
        }
        let id = self
            .identities
            .get(&endpoint.identity)
            .filter(|_| endpoint.identity != 0)
            .or_else(|| self.workload_with_labels(endpoint))?;
        self.nodes.get(id).map(|known| MapNode {
            flows: 0,
            ..known.clone()
        })
    }

    /// The workload node whose pods carried `endpoint`'s labels, or failing that the
    /// one of the same namespace with the same application name.
    fn workload_with_labels(&self, endpoint: &Endpoint) -> Option<&String> {
        if endpoint.labels.is_empty() {
            return None;
        }
        let mut wanted: Vec<&str> = endpoint.labels.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        let pods = || self.nodes.values().filter(|n| n.kind == KIND_WORKLOAD);
        let same_labels = pods().find(|n| {
            let mut labels: Vec<&str> = n.labels.iter().map(String::as_str).collect();
            labels.sort_unstable();
            labels == wanted
        });
        if let Some(node) = same_labels {
            return Some(&node.id);
        }
        let namespace = namespace_of(endpoint)?;
        let app = app_name(&endpoint.labels)?;
        pods()
            .find(|n| n.namespace == namespace && app_name(&n.labels) == Some(app))
            .map(|n| &n.id)
    }

    /// Counts a flow of `endpoint` on `node`, creating the node if new; returns its id,
    /// or `None` when the node limit is reached.
    fn touch(&mut self, node: MapNode, endpoint: &Endpoint) -> Option<String> {
        let has_pod = !endpoint.pod_name.is_empty();
        let id = self.touch_node(node)?;
        if has_pod {
            // Only the pods' own endpoints update the labels; one attributed to this
            // node by its identity or labels says nothing new.
            if let Some(known) = self.nodes.get_mut(&id) {
                if known.labels != endpoint.labels && !endpoint.labels.is_empty() {
                    known.labels.clone_from(&endpoint.labels);
                }
            }
            self.remember_identity(endpoint.identity, &id);
        }
        Some(id)
    }

    /// Counts a flow on `node`, creating it if new; returns its id, or `None` when the
    /// node limit is reached.
    fn touch_node(&mut self, node: MapNode) -> Option<String> {
        if let Some(known) = self.nodes.get_mut(&node.id) {
            known.flows += 1;
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

    /// Records that pods of workload `id` carry security identity `identity`.
    fn remember_identity(&mut self, identity: u32, id: &str) {
        if identity == 0 {
            return;
        }
        let room = self.identities.len() < MAX_KNOWN_IDENTITIES;
        match self.identities.get_mut(&identity) {
            Some(known) if known != id => id.clone_into(known),
            Some(_) => {}
            None if room => {
                self.identities.insert(identity, id.to_string());
            }
            None => {}
        }
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
    let (id, kind, namespace, name, filter_kind, filter_value) = if !endpoint.pod_name.is_empty() {
        let name = endpoint
            .workloads
            .first()
            .filter(|w| !w.name.is_empty())
            .map_or_else(|| workload_name(&endpoint.pod_name), |w| w.name.clone());
        let id = format!("{}/{}", endpoint.namespace, name);
        let namespace = endpoint.namespace.clone();
        (id.clone(), KIND_WORKLOAD, namespace, name, "pod", id)
    } else {
        let name = entity_name(endpoint);
        let label = format!("reserved:{name}");
        (
            label.clone(),
            KIND_ENTITY,
            String::new(),
            name,
            "label",
            label,
        )
    };
    MapNode {
        id,
        kind,
        namespace,
        name,
        filter_kind,
        filter_value,
        labels: endpoint.labels.clone(),
        flows: 0,
    }
}

/// The map node of a Kubernetes service (with a zero flow count).
pub fn service_node(service: &Service) -> MapNode {
    let qualified = if service.namespace.is_empty() {
        service.name.clone()
    } else {
        format!("{}/{}", service.namespace, service.name)
    };
    MapNode {
        id: format!("service:{qualified}"),
        kind: KIND_SERVICE,
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        filter_kind: "service",
        filter_value: qualified,
        labels: Vec::new(),
        flows: 0,
    }
}

/// Cilium's local-scope identities (CIDR and FQDN selections) have this bit set.
const LOCAL_IDENTITY_SCOPE: u32 = 1 << 24;

/// Whether `endpoint` (without a pod name) is an entity outside the cluster's pods:
/// a reserved identity or a CIDR identity.
fn is_entity(endpoint: &Endpoint) -> bool {
    endpoint
        .labels
        .iter()
        .any(|l| l.starts_with("reserved:") || l.starts_with("cidr:"))
        || ReservedIdentity::from_id(endpoint.identity).is_some()
        || endpoint.identity & LOCAL_IDENTITY_SCOPE != 0
}

/// The name of an endpoint that is not a pod: its `reserved:` label, else its reserved
/// identity, else `world` for CIDR identities and `identity-N` for anything else
/// (which `ServiceMap` never draws: see `ServiceMap::resolve`).
fn entity_name(endpoint: &Endpoint) -> String {
    if let Some(name) = endpoint
        .labels
        .iter()
        .find_map(|l| l.strip_prefix("reserved:"))
    {
        return name.to_string();
    }
    if let Some(reserved) = ReservedIdentity::from_id(endpoint.identity) {
        return reserved.name().to_string();
    }
    if endpoint.labels.iter().any(|l| l.starts_with("cidr:"))
        || endpoint.identity & LOCAL_IDENTITY_SCOPE != 0
    {
        return "world".to_string();
    }
    format!("identity-{}", endpoint.identity)
}

/// The namespace of an endpoint: its own field, else its namespace label.
fn namespace_of(endpoint: &Endpoint) -> Option<&str> {
    if !endpoint.namespace.is_empty() {
        return Some(&endpoint.namespace);
    }
    endpoint.labels.iter().find_map(|l| {
        l.strip_prefix(NAMESPACE_LABEL)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// The application name in `labels` as upstream Hubble UI reads it: the value of the
/// first label whose key, without the usual prefixes, is `app`, `name`,
/// `functionName` or `k8s-app`.
fn app_name(labels: &[String]) -> Option<&str> {
    labels.iter().find_map(|label| {
        let (key, value) = label.split_once('=')?;
        let key = LABEL_KEY_PREFIXES
            .iter()
            .fold(key.to_string(), |k, prefix| k.replace(prefix, ""));
        APP_LABEL_KEYS.contains(&key.as_str()).then_some(value)
    })
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
