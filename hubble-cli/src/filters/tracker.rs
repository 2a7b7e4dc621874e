//! One list (allow or deny) being built from filter flags: a "left" filter and a
//! "right" filter that end up ORed (identical ones collapse into one), plus the
//! namespaces that are folded into pod and service filters at the end.

use proto::flow::{self, FlowFilter};

use super::values;
use crate::quote::go_quote;

/// Flags that cannot be combined within one list, as upstream groups them.
const CONFLICTS: &[&[&str]] = &[
    &[
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &[
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
        "to-all-namespaces",
        "all-namespaces",
    ],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
    &["to-pod", "namespace", "all-namespaces"],
    &["from-pod", "namespace", "all-namespaces"],
    &["to-service", "namespace", "all-namespaces"],
    &["from-service", "namespace", "all-namespaces"],
    &["snat-ip"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["verdict"],
    &["drop-reason-desc"],
    &["type"],
    &["http-status"],
    &["http-method"],
    &["http-path"],
    &["http-url"],
    &["http-header"],
    &["protocol"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
    &["workload", "to-workload"],
    &["workload", "from-workload"],
    &["node-label"],
    &["tcp-flags"],
    &["uuid"],
    &["traffic-direction"],
    &["cel-expression"],
    &["encrypted", "unencrypted"],
];

/// Which of the two filters an update goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Both,
    /// Source-side value of an either-side flag.
    Left,
    /// Destination-side value of an either-side flag.
    Right,
}

#[derive(Debug, Default)]
pub struct FilterTracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    ns: Vec<String>,
    src_ns: Vec<String>,
    dst_ns: Vec<String>,
    /// Flags used so far, for conflict checks.
    changed: Vec<String>,
}

impl FilterTracker {
    fn apply(&mut self, side: Side, update: impl Fn(&mut FlowFilter)) {
        if side != Side::Right {
            update(self.left.get_or_insert_with(FlowFilter::default));
        }
        if side != Side::Left {
            update(self.right.get_or_insert_with(FlowFilter::default));
        }
    }

    fn check_conflicts(&self) -> Result<(), String> {
        for group in CONFLICTS {
            for flag in group
                .iter()
                .filter(|f| self.changed.iter().any(|c| c == *f))
            {
                for other in group.iter() {
                    if other != flag && self.changed.iter().any(|c| c == other) {
                        return Err(format!("filters --{flag} and --{other} cannot be combined"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies one flag; the error text is upstream's reason.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        if !self.changed.iter().any(|c| c == name) {
            self.changed.push(name.to_string());
        }
        self.check_conflicts()?;
        let v = value.to_string();
        match name {
            "uuid" => self.apply(Side::Both, |f| f.uuid.push(v.clone())),
            "fqdn" => {
                self.apply(Side::Left, |f| f.source_fqdn.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_fqdn.push(v.clone()));
            }
            "from-fqdn" => self.apply(Side::Both, |f| f.source_fqdn.push(v.clone())),
            "to-fqdn" => self.apply(Side::Both, |f| f.destination_fqdn.push(v.clone())),
            "pod" => {
                self.apply(Side::Left, |f| f.source_pod.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_pod.push(v.clone()));
            }
            "from-pod" => self.apply(Side::Both, |f| f.source_pod.push(v.clone())),
            "to-pod" => self.apply(Side::Both, |f| f.destination_pod.push(v.clone())),
            "from-ip" => self.apply(Side::Both, |f| f.source_ip.push(v.clone())),
            "snat-ip" => self.apply(Side::Both, |f| f.source_ip_xlated.push(v.clone())),
            "ip" => {
                self.apply(Side::Left, |f| f.source_ip.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_ip.push(v.clone()));
            }
            "to-ip" => self.apply(Side::Both, |f| f.destination_ip.push(v.clone())),
            "ipv4" => self.apply(Side::Both, |f| {
                f.ip_version.push(flow::IpVersion::IPv4 as i32)
            }),
            "ipv6" => self.apply(Side::Both, |f| {
                f.ip_version.push(flow::IpVersion::IPv6 as i32)
            }),
            "ip-version" => {
                let version = values::ip_version(value) as i32;
                self.apply(Side::Both, |f| f.ip_version.push(version));
            }
            "label" => {
                self.apply(Side::Left, |f| f.source_label.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_label.push(v.clone()));
            }
            "from-label" => self.apply(Side::Both, |f| f.source_label.push(v.clone())),
            "to-label" => self.apply(Side::Both, |f| f.destination_label.push(v.clone())),
            "namespace" => self.ns.push(v),
            "from-namespace" => self.src_ns.push(v),
            "to-namespace" => self.dst_ns.push(v),
            "all-namespaces" => self.ns.push(String::new()),
            "from-all-namespaces" => self.src_ns.push(String::new()),
            "to-all-namespaces" => self.dst_ns.push(String::new()),
            "service" => {
                self.apply(Side::Left, |f| f.source_service.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_service.push(v.clone()));
            }
            "from-service" => self.apply(Side::Both, |f| f.source_service.push(v.clone())),
            "to-service" => self.apply(Side::Both, |f| f.destination_service.push(v.clone())),
            "port" => {
                self.apply(Side::Left, |f| f.source_port.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_port.push(v.clone()));
            }
            "from-port" => self.apply(Side::Both, |f| f.source_port.push(v.clone())),
            "to-port" => self.apply(Side::Both, |f| f.destination_port.push(v.clone())),
            "trace-id" => self.apply(Side::Both, |f| f.trace_id.push(v.clone())),
            "ip-trace-id" => {
                let id = values::ip_trace_id(value)?;
                self.apply(Side::Both, |f| f.ip_trace_id.push(id));
            }
            "verdict" => {
                let verdict = flow::Verdict::from_str_name(value)
                    .ok_or_else(|| format!("invalid --verdict value: {value}"))?;
                self.apply(Side::Both, |f| f.verdict.push(verdict as i32));
            }
            "drop-reason-desc" => {
                if value.is_empty() {
                    return Err("empty --drop-reason-desc value".to_string());
                }
                let reason = flow::DropReason::from_str_name(value)
                    .ok_or_else(|| format!("invalid --drop-reason-desc value: {value}"))?;
                self.apply(Side::Both, |f| f.drop_reason_desc.push(reason as i32));
            }
            "http-status" => self.apply(Side::Both, |f| f.http_status_code.push(v.clone())),
            "http-method" => self.apply(Side::Both, |f| f.http_method.push(v.clone())),
            "http-path" => self.apply(Side::Both, |f| f.http_path.push(v.clone())),
            "http-url" => self.apply(Side::Both, |f| f.http_url.push(v.clone())),
            "http-header" => {
                let (key, header_value) = value.split_once(':').ok_or_else(|| {
                    format!(
                        "invalid http-header value {}, expected name:value",
                        go_quote(value)
                    )
                })?;
                let header = flow::HttpHeader {
                    key: key.to_string(),
                    value: header_value.to_string(),
                };
                self.apply(Side::Both, |f| f.http_header.push(header.clone()));
            }
            "type" => {
                let filter = values::event_type(value)?;
                self.apply(Side::Both, |f| f.event_type.push(filter));
            }
            "protocol" => self.apply(Side::Both, |f| f.protocol.push(v.clone())),
            "workload" => {
                let w = values::workload(value);
                self.apply(Side::Left, |f| f.source_workload.push(w.clone()));
                self.apply(Side::Right, |f| f.destination_workload.push(w.clone()));
            }
            "from-workload" => {
                let w = values::workload(value);
                self.apply(Side::Both, |f| f.source_workload.push(w.clone()));
            }
            "to-workload" => {
                let w = values::workload(value);
                self.apply(Side::Both, |f| f.destination_workload.push(w.clone()));
            }
            "identity" => {
                let id = values::identity(value)?;
                self.apply(Side::Left, |f| f.source_identity.push(id));
                self.apply(Side::Right, |f| f.destination_identity.push(id));
            }
            "from-identity" => {
                let id = values::identity(value)?;
                self.apply(Side::Both, |f| f.source_identity.push(id));
            }
            "to-identity" => {
                let id = values::identity(value)?;
                self.apply(Side::Both, |f| f.destination_identity.push(id));
            }
            "node-name" => self.apply(Side::Both, |f| f.node_name.push(v.clone())),
            "node-label" => self.apply(Side::Both, |f| f.node_labels.push(v.clone())),
            "cluster" => {
                self.apply(Side::Left, |f| f.source_cluster_name.push(v.clone()));
                self.apply(Side::Right, |f| f.destination_cluster_name.push(v.clone()));
            }
            "from-cluster" => self.apply(Side::Both, |f| f.source_cluster_name.push(v.clone())),
            "to-cluster" => self.apply(Side::Both, |f| f.destination_cluster_name.push(v.clone())),
            "tcp-flags" => {
                let flags = values::tcp_flags(value)?;
                self.apply(Side::Both, |f| f.tcp_flags.push(flags));
            }
            "traffic-direction" => {
                let direction = match value.to_lowercase().as_str() {
                    "ingress" => flow::TrafficDirection::Ingress,
                    "egress" => flow::TrafficDirection::Egress,
                    other => {
                        return Err(format!(
                            "{other}: invalid traffic direction, expected ingress or egress"
                        ))
                    }
                };
                self.apply(Side::Both, |f| f.traffic_direction.push(direction as i32));
            }
            "cel-expression" => self.apply(Side::Both, |f| {
                f.experimental
                    .get_or_insert_with(Default::default)
                    .cel_expression
                    .push(v.clone())
            }),
            "interface" => self.apply(Side::Both, |f| {
                f.interface.push(flow::NetworkInterface {
                    index: 0,
                    name: v.clone(),
                })
            }),
            "encrypted" => self.apply(Side::Both, |f| f.encrypted.push(true)),
            "unencrypted" => self.apply(Side::Both, |f| f.encrypted.push(false)),
            "is-reply" => {
                let reply = values::go_bool(value)?;
                self.apply(Side::Both, |f| f.reply.push(reply));
            }
            "dns-query" => self.apply(Side::Both, |f| f.dns_query.push(v.clone())),
            other => return Err(format!("unknown filter flag --{other}")),
        }
        let mut errors = Vec::new();
        for filter in [self.left.as_ref(), self.right.as_ref()]
            .into_iter()
            .flatten()
        {
            errors.extend(self.namespace_conflicts(filter));
            if !errors.is_empty() {
                break;
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    /// Namespaces that contradict pod or service names, and services whose namespace
    /// differs from the pods' (upstream reports all of them, joined).
    fn namespace_conflicts(&self, f: &FlowFilter) -> Vec<String> {
        let mut errors = Vec::new();
        let checks: [(&[String], &[String]); 6] = [
            (&self.ns, &f.source_pod),
            (&self.ns, &f.source_service),
            (&self.ns, &f.destination_pod),
            (&self.ns, &f.destination_service),
            (&self.src_ns, &f.source_pod),
            (&self.src_ns, &f.source_service),
        ];
        let dst_checks: [(&[String], &[String]); 2] = [
            (&self.dst_ns, &f.destination_pod),
            (&self.dst_ns, &f.destination_service),
        ];
        for (namespaces, names) in checks.iter().chain(dst_checks.iter()) {
            if let Some(err) = namespace_conflict(namespaces, names) {
                errors.push(err);
            }
        }
        for (pods, services) in [
            (&f.source_pod, &f.source_service),
            (&f.destination_pod, &f.destination_service),
        ] {
            if let Some(err) = inconsistent_namespaces(pods, services) {
                errors.push(err);
            }
        }
        errors
    }

    /// The final filters: namespaces folded in, and a single filter when left and
    /// right are the same.
    pub fn flow_filters(mut self) -> Vec<FlowFilter> {
        if self.left.is_none()
            && self.right.is_none()
            && self.ns.is_empty()
            && self.src_ns.is_empty()
            && self.dst_ns.is_empty()
        {
            return Vec::new();
        }
        let mut left = self.left.take().unwrap_or_default();
        let mut right = self.right.take().unwrap_or_default();
        if !self.dst_ns.is_empty() {
            apply_destination_namespaces(&self.dst_ns, &mut left);
            apply_destination_namespaces(&self.dst_ns, &mut right);
        }
        if !self.src_ns.is_empty() {
            apply_source_namespaces(&self.src_ns, &mut left);
            apply_source_namespaces(&self.src_ns, &mut right);
        }
        if !self.ns.is_empty() {
            apply_source_namespaces(&self.ns, &mut left);
            apply_destination_namespaces(&self.ns, &mut right);
        }
        if left == right {
            vec![left]
        } else {
            vec![left, right]
        }
    }
}

fn namespace_of(name: &str) -> &str {
    match name.split_once('/') {
        Some((ns, _)) => ns,
        None => "",
    }
}

fn namespace_conflict(namespaces: &[String], names: &[String]) -> Option<String> {
    for ns in namespaces {
        for name in names {
            let nn = namespace_of(name);
            if !nn.is_empty() && nn != ns {
                return Some(format!(
                    "namespace conflict: {} does not contain {}",
                    go_quote(ns),
                    go_quote(name)
                ));
            }
        }
    }
    None
}

fn inconsistent_namespaces(pods: &[String], services: &[String]) -> Option<String> {
    for pod in pods {
        let pod_ns = namespace_of(pod);
        if pod_ns.is_empty() {
            continue;
        }
        for svc in services {
            if namespace_of(svc) != pod_ns {
                return Some(format!(
                    "namespace of service {} conflict with pod {}",
                    go_quote(svc),
                    go_quote(pod_ns)
                ));
            }
        }
    }
    None
}

fn add_namespaces(names: &[String], namespaces: &[String]) -> Vec<String> {
    if namespaces.is_empty() || names.is_empty() {
        return names.to_vec();
    }
    let mut out = Vec::new();
    for name in names {
        if name.contains('/') {
            out.push(name.clone());
            continue;
        }
        for ns in namespaces {
            out.push(format!("{ns}/{name}"));
        }
    }
    out
}

fn apply_source_namespaces(namespaces: &[String], f: &mut FlowFilter) {
    if f.source_pod.is_empty() && f.source_service.is_empty() {
        f.source_pod = vec![String::new()];
    }
    f.source_pod = add_namespaces(&f.source_pod, namespaces);
    f.source_service = add_namespaces(&f.source_service, namespaces);
}

fn apply_destination_namespaces(namespaces: &[String], f: &mut FlowFilter) {
    if f.destination_pod.is_empty() && f.destination_service.is_empty() {
        f.destination_pod = vec![String::new()];
    }
    f.destination_pod = add_namespaces(&f.destination_pod, namespaces);
    f.destination_service = add_namespaces(&f.destination_service, namespaces);
}
