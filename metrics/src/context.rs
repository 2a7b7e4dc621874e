//! Context options: the `source`, `destination` and `labelsContext` labels that most
//! handlers add to their series, computed from a flow as upstream does.

use std::sync::OnceLock;

use proto::flow::{Endpoint, Flow, TrafficDirection};
use regex::Regex;

use crate::error::ConfigError;
use crate::key::KeyBuf;

/// One way of naming a flow's source or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextIdentifier {
    Identity,
    Namespace,
    Pod,
    PodShort,
    PodName,
    Dns,
    Ip,
    ReservedIdentity,
    Workload,
    WorkloadName,
    App,
}

/// The identifier names accepted in `sourceContext=` and friends.
pub const CONTEXT_IDENTIFIERS: &[(&str, ContextIdentifier)] = &[
    ("identity", ContextIdentifier::Identity),
    ("namespace", ContextIdentifier::Namespace),
    ("pod", ContextIdentifier::Pod),
    ("pod-short", ContextIdentifier::PodShort),
    ("pod-name", ContextIdentifier::PodName),
    ("dns", ContextIdentifier::Dns),
    ("ip", ContextIdentifier::Ip),
    ("reserved-identity", ContextIdentifier::ReservedIdentity),
    ("workload", ContextIdentifier::Workload),
    ("workload-name", ContextIdentifier::WorkloadName),
    ("app", ContextIdentifier::App),
];

/// The labels `labelsContext=` may list, in the order they appear on a series.
pub const CONTEXT_LABELS: &[&str] = &[
    "source_ip",
    "source_pod",
    "source_namespace",
    "source_workload",
    "source_workload_kind",
    "source_app",
    "destination_ip",
    "destination_pod",
    "destination_namespace",
    "destination_workload",
    "destination_workload_kind",
    "destination_app",
    "traffic_direction",
];

/// The option keys handled here (matched case-insensitively, as upstream does).
pub const CONTEXT_OPTION_KEYS: &[&str] = &[
    "sourceContext",
    "sourceEgressContext",
    "sourceIngressContext",
    "destinationContext",
    "destinationEgressContext",
    "destinationIngressContext",
    "labelsContext",
];

/// The identity label that wins `reserved-identity` over every other reserved label.
const KUBE_APISERVER_LABEL: &str = "reserved:kube-apiserver";
/// Pod labels that name an app, most preferred first.
const APP_LABELS: &[&str] = &["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="];

/// The parsed context options of one handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextOptions {
    pub source: Vec<ContextIdentifier>,
    pub source_egress: Option<Vec<ContextIdentifier>>,
    pub source_ingress: Option<Vec<ContextIdentifier>>,
    pub destination: Vec<ContextIdentifier>,
    pub destination_egress: Option<Vec<ContextIdentifier>>,
    pub destination_ingress: Option<Vec<ContextIdentifier>>,
    /// Indexes into [`CONTEXT_LABELS`], ascending.
    pub labels: Vec<usize>,
}

impl ContextOptions {
    /// Applies option `key=value` if `key` is a context option; returns whether it was.
    pub fn apply(&mut self, handler: &str, key: &str, value: &str) -> Result<bool, ConfigError> {
        let list = |option: &str| parse_identifiers(handler, option, value);
        match key.to_ascii_lowercase().as_str() {
            "sourcecontext" => self.source = list(key)?,
            "sourceegresscontext" => self.source_egress = Some(list(key)?),
            "sourceingresscontext" => self.source_ingress = Some(list(key)?),
            "destinationcontext" => self.destination = list(key)?,
            "destinationegresscontext" => self.destination_egress = Some(list(key)?),
            "destinationingresscontext" => self.destination_ingress = Some(list(key)?),
            "labelscontext" => self.labels = parse_labels(handler, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The label names this context adds, in the order [`ContextOptions::push_values`]
    /// writes their values.
    pub fn label_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.labels.iter().map(|i| CONTEXT_LABELS[*i]).collect();
        if !self.source.is_empty() {
            names.push("source");
        }
        if !self.destination.is_empty() {
            names.push("destination");
        }
        names
    }

    /// Pushes the context label values of `flow`. With `invert`, source and destination
    /// swap places (for metrics counted on the reply of a request).
    pub fn push_values<'a>(&'a self, flow: &Flow, invert: bool, key: &mut KeyBuf) {
        for index in &self.labels {
            push_context_label(CONTEXT_LABELS[*index], flow, invert, key);
        }
        if self.source.is_empty() && self.destination.is_empty() {
            return;
        }
        let direction = flow.traffic_direction;
        let pick = |all: &'a [ContextIdentifier],
                    egress: &'a Option<Vec<ContextIdentifier>>,
                    ingress: &'a Option<Vec<ContextIdentifier>>|
         -> &'a [ContextIdentifier] {
            match (ingress, egress) {
                (Some(list), _) if direction == TrafficDirection::Ingress as i32 => list,
                (_, Some(list)) if direction == TrafficDirection::Egress as i32 => list,
                _ => all,
            }
        };
        let mut source_ids = pick(&self.source, &self.source_egress, &self.source_ingress);
        let mut destination_ids = pick(
            &self.destination,
            &self.destination_egress,
            &self.destination_ingress,
        );
        if invert {
            std::mem::swap(&mut source_ids, &mut destination_ids);
        }
        let (first, second) = if invert { (false, true) } else { (true, false) };
        if !self.source.is_empty() {
            push_first_non_empty(source_ids, flow, first, key);
        }
        if !self.destination.is_empty() {
            push_first_non_empty(destination_ids, flow, second, key);
        }
    }

    /// Whether any identifier list of the source (`true`) or the destination (`false`)
    /// names the `pod` context, whose series belong to one pod.
    pub fn uses_pod(&self, source: bool) -> bool {
        let lists: [Option<&Vec<ContextIdentifier>>; 3] = if source {
            [
                Some(&self.source),
                self.source_egress.as_ref(),
                self.source_ingress.as_ref(),
            ]
        } else {
            [
                Some(&self.destination),
                self.destination_egress.as_ref(),
                self.destination_ingress.as_ref(),
            ]
        };
        lists
            .iter()
            .flatten()
            .any(|list| list.contains(&ContextIdentifier::Pod))
    }

    /// Whether `labelsContext` lists `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|i| CONTEXT_LABELS[*i] == label)
    }
}

fn parse_identifiers(
    handler: &str,
    option: &str,
    value: &str,
) -> Result<Vec<ContextIdentifier>, ConfigError> {
    value
        .split('|')
        .map(|name| {
            CONTEXT_IDENTIFIERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|(_, id)| *id)
                .ok_or_else(|| ConfigError::UnknownContext {
                    handler: handler.to_owned(),
                    option: option.to_owned(),
                    value: name.to_owned(),
                    valid: CONTEXT_IDENTIFIERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

fn parse_labels(handler: &str, value: &str) -> Result<Vec<usize>, ConfigError> {
    let mut indexes = Vec::new();
    for label in value.split(',') {
        let index = CONTEXT_LABELS
            .iter()
            .position(|known| *known == label)
            .ok_or_else(|| ConfigError::UnknownLabel {
                handler: handler.to_owned(),
                value: label.to_owned(),
                valid: CONTEXT_LABELS.join(", "),
            })?;
        if !indexes.contains(&index) {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    Ok(indexes)
}

fn endpoint(flow: &Flow, source: bool) -> Option<&Endpoint> {
    if source {
        flow.source.as_ref()
    } else {
        flow.destination.as_ref()
    }
}

fn ip(flow: &Flow, source: bool) -> &str {
    match &flow.ip {
        Some(ip) if source => &ip.source,
        Some(ip) => &ip.destination,
        None => "",
    }
}

fn push_context_label(label: &str, flow: &Flow, invert: bool, key: &mut KeyBuf) {
    let (side, field) = match label.split_once('_') {
        Some(("source", field)) => (!invert, field),
        Some(("destination", field)) => (invert, field),
        _ => {
            key.push(direction_label(flow.traffic_direction));
            return;
        }
    };
    let ep = endpoint(flow, side);
    let workload = ep.and_then(|e| e.workloads.first());
    match field {
        "ip" => key.push(ip(flow, side)),
        "pod" => key.push(ep.map_or("", |e| &e.pod_name)),
        "namespace" => key.push(ep.map_or("", |e| &e.namespace)),
        "workload" => key.push(workload.map_or("", |w| &w.name)),
        "workload_kind" => key.push(workload.map_or("", |w| &w.kind)),
        _ => key.push(ep.map_or("", |e| app_from_labels(&e.labels))),
    }
}

fn direction_label(direction: i32) -> &'static str {
    match TrafficDirection::try_from(direction) {
        Ok(TrafficDirection::Ingress) => "ingress",
        Ok(TrafficDirection::Egress) => "egress",
        _ => "unknown",
    }
}

fn push_first_non_empty(ids: &[ContextIdentifier], flow: &Flow, source: bool, key: &mut KeyBuf) {
    let mark = key.mark();
    for id in ids {
        key.truncate(mark);
        push_identifier(*id, flow, source, key);
        if key.mark() > mark + 4 {
            return;
        }
    }
    if ids.is_empty() {
        key.push("");
    }
}

fn push_identifier(id: ContextIdentifier, flow: &Flow, source: bool, key: &mut KeyBuf) {
    let ep = endpoint(flow, source);
    let namespace = ep.map_or("", |e| e.namespace.as_str());
    let pod = ep.map_or("", |e| e.pod_name.as_str());
    let with_namespace = |key: &mut KeyBuf, name: &str| {
        if namespace.is_empty() {
            key.push(name);
        } else {
            key.push_parts(&[namespace, "/", name]);
        }
    };
    match id {
        ContextIdentifier::Namespace => key.push(namespace),
        ContextIdentifier::Identity => key.push_joined(ep.map_or(&[], |e| &e.labels[..]), ","),
        ContextIdentifier::Pod => with_namespace(key, pod),
        ContextIdentifier::PodShort => with_namespace(key, &shorten_pod_name(pod)),
        ContextIdentifier::PodName => key.push(pod),
        ContextIdentifier::Dns => {
            let names = if source {
                &flow.source_names
            } else {
                &flow.destination_names
            };
            key.push_joined(names, ",");
        }
        ContextIdentifier::Ip => key.push(ip(flow, source)),
        ContextIdentifier::ReservedIdentity => {
            key.push(ep.map_or("", |e| reserved_identity(&e.labels)))
        }
        ContextIdentifier::Workload => match ep.and_then(|e| e.workloads.first()) {
            Some(w) if !w.name.is_empty() => with_namespace(key, &w.name),
            _ => key.push(""),
        },
        ContextIdentifier::WorkloadName => {
            key.push(ep.and_then(|e| e.workloads.first()).map_or("", |w| &w.name))
        }
        ContextIdentifier::App => key.push(ep.map_or("", |e| app_from_labels(&e.labels))),
    }
}

/// `reserved:kube-apiserver` when present, else the first `reserved:` label.
pub fn reserved_identity(labels: &[String]) -> &str {
    if labels.iter().any(|l| l == KUBE_APISERVER_LABEL) {
        return KUBE_APISERVER_LABEL;
    }
    labels
        .iter()
        .find(|l| l.starts_with("reserved:"))
        .map_or("", |l| l.as_str())
}

/// The value of the first app label (`app.kubernetes.io/name`, `k8s-app`, `app`).
pub fn app_from_labels(labels: &[String]) -> &str {
    for label in labels {
        for prefix in APP_LABELS {
            if let Some(value) = label.strip_prefix(prefix) {
                if !value.is_empty() {
                    return value;
                }
            }
        }
    }
    ""
}

/// Drops one or two trailing `-<suffix>` parts (a ReplicaSet hash and a pod suffix).
fn shorten_pod_name(name: &str) -> String {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| Regex::new("^(.+?)(-[a-z0-9]+){1,2}$").ok());
    match pattern {
        Some(re) => re.replace(name, "${1}").into_owned(),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests;
