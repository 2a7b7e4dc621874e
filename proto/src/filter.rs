//! FlowFilter compilation and evaluation with upstream Hubble's semantics.
//!
//! A request carries an allowlist and a denylist of FlowFilters. A flow passes when it
//! matches at least one filter of the allowlist (or the allowlist is empty) and none of
//! the denylist. Within one FlowFilter every set field must match (AND); within one field
//! any of its values may match (OR). Filters are compiled once per request: every value
//! is validated then, and a bad one is an error that names it; evaluation allocates
//! nothing.

use regex::Regex;

use crate::flow::{self, FlowFilter};

mod budget;
pub mod cel;
mod ip;
mod labels;
mod memo;
mod patterns;
mod view;

pub use budget::{MAX_FILTER_VALUES, MAX_FLOW_FILTERS, MAX_REGEX_BYTES};
pub use ip::FlowIp;
pub use labels::{split_label, LabelSelector};
pub use memo::{Interned, MEMO_ENTRIES};
pub use view::{parts, tcp_flag_bits, FlowView, L4Protocol, TcpFlagBits};

/// Cilium's monitor message type of L7 access-log events.
const MESSAGE_TYPE_ACCESS_LOG: i32 = 129;
/// The cluster name assumed for node names that carry none.
const DEFAULT_CLUSTER_NAME: &str = "default";

/// A filter value that cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("invalid IP address {0:?} in filter")]
    InvalidIp(String),
    #[error("invalid IP prefix {0:?} in filter")]
    InvalidPrefix(String),
    #[error("invalid port {0:?}: must be a number from 0 to 65535")]
    InvalidPort(String),
    #[error("invalid protocol filter: unknown protocol: {0:?}")]
    UnknownProtocol(String),
    #[error("invalid {field} filter, name must not be empty")]
    EmptyName { field: &'static str },
    #[error("invalid label selector {selector:?}: {reason}")]
    InvalidLabelSelector { selector: String, reason: String },
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("invalid {field} regular expression {pattern:?}: {reason}")]
    InvalidRegex {
        field: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("request refused: {got} {what} exceed the limit {limit} ({max} per request)")]
    LimitExceeded {
        limit: &'static str,
        max: usize,
        what: &'static str,
        got: usize,
    },
    #[error("invalid http status code filter: invalid status code prefix: {0:?}")]
    InvalidHttpStatus(String),
    #[error("filtering by {0} requires the event type filter to only match 'l7' events")]
    HttpNeedsL7(&'static str),
    #[error("error compiling CEL expression {expression:?}: {reason}")]
    InvalidCel { expression: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// One compiled condition of a FlowFilter.
#[derive(Debug)]
enum Predicate {
    Uuid(Vec<String>),
    EventType(Vec<flow::EventTypeFilter>),
    Verdict(Vec<i32>),
    DropReasonDesc(Vec<i32>),
    Reply(Vec<bool>),
    Encrypted(Vec<bool>),
    Identity(Side, Vec<u32>),
    Protocol {
        l4: Vec<ProtocolName>,
        l7: Vec<ProtocolName>,
    },
    Ip(IpGetter, ip::IpMatcher),
    IpVersion(Vec<i32>),
    Pod(Side, Vec<(String, String)>),
    Service(Side, Vec<(String, String)>),
    Workload(Side, Vec<flow::Workload>),
    Fqdn(Side, Regex),
    DnsQuery(Vec<Regex>),
    Labels(LabelsOf, Vec<LabelSelector>),
    Port(Side, Vec<u16>),
    HttpStatus {
        full: Vec<u32>,
        prefixes: Vec<String>,
    },
    HttpMethod(Vec<String>),
    HttpPath(Vec<Regex>),
    HttpUrl(Vec<Regex>),
    HttpHeader(Vec<(String, String)>),
    TcpFlags(Vec<TcpFlagBits>),
    NodeName(Regex),
    ClusterName(Side, Vec<String>),
    TraceId(Vec<String>),
    IpTraceId(Vec<u64>),
    TrafficDirection(Vec<i32>),
    Interface(Vec<flow::NetworkInterface>),
    Cel(cel::CelFilter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpGetter {
    Source,
    SourceXlated,
    Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelsOf {
    Source,
    Destination,
    Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProtocolName {
    Icmp,
    L4(L4Protocol),
    Dns,
    Http,
    Kafka,
}

/// A compiled FlowFilter: all predicates must match.
#[derive(Debug)]
pub struct CompiledFilter {
    /// Conditions on the flow's own fields.
    predicates: Vec<Predicate>,
    /// Conditions on one part flows share, each part's with what they found for it.
    on_parts: Vec<PartConditions>,
}

/// A part of a flow that stores intern (see [`Interned`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Source,
    Destination,
    Context,
}

impl Part {
    fn of_side(side: Side) -> Self {
        match side {
            Side::Source => Part::Source,
            Side::Destination => Part::Destination,
        }
    }

    fn number(self, interned: &Interned) -> u32 {
        match self {
            Part::Source => interned.source,
            Part::Destination => interned.destination,
            Part::Context => interned.context,
        }
    }
}

/// The conditions of a filter that read one shared part alone, evaluated once per
/// interned part of a store.
#[derive(Debug)]
struct PartConditions {
    part: Part,
    predicates: Vec<Predicate>,
    memo: memo::Memo,
}

impl PartConditions {
    fn matches<F: FlowView + ?Sized>(&self, flow: &F, interned: Option<&Interned>) -> bool {
        let all = || self.predicates.iter().all(|p| p.matches(flow));
        match interned {
            Some(i) => self.memo.get_or(i.store, self.part.number(i), all),
            None => all(),
        }
    }
}

/// A compiled allowlist and denylist.
#[derive(Debug, Default)]
pub struct FilterSet {
    allow: Vec<CompiledFilter>,
    deny: Vec<CompiledFilter>,
}

impl FilterSet {
    /// Compiles both lists, failing on the first bad value.
    pub fn compile(allow: &[FlowFilter], deny: &[FlowFilter]) -> Result<Self, FilterError> {
        let regex_size = budget::check(allow, deny)?;
        Ok(Self {
            allow: allow
                .iter()
                .map(|ff| CompiledFilter::compile_with(ff, regex_size))
                .collect::<Result<_, _>>()?,
            deny: deny
                .iter()
                .map(|ff| CompiledFilter::compile_with(ff, regex_size))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether neither list has a filter (every flow passes).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a condition may read the endpoints' or the node's labels (a label
    /// selector, or a CEL expression, which may read anything): when none does, flows
    /// read only to be filtered and printed without labels need not keep them.
    pub fn reads_labels(&self) -> bool {
        self.allow.iter().chain(&self.deny).any(|f| {
            f.predicates
                .iter()
                .chain(f.on_parts.iter().flat_map(|part| &part.predicates))
                .any(|p| matches!(p, Predicate::Labels(..) | Predicate::Cel(_)))
        })
    }

    /// Whether `flow` passes: it matches one allow filter (or there are none) and no
    /// deny filter.
    pub fn matches<F: FlowView + ?Sized>(&self, flow: &F) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(flow)))
            && !self.deny.iter().any(|f| f.matches(flow))
    }
}

fn regexes(
    field: &'static str,
    patterns: &[String],
    size_limit: usize,
) -> Result<Vec<Regex>, FilterError> {
    patterns
        .iter()
        .map(|p| {
            regex::RegexBuilder::new(p)
                .size_limit(size_limit)
                .build()
                .map_err(|e| FilterError::InvalidRegex {
                    field,
                    pattern: p.clone(),
                    reason: regex_error(&e, size_limit),
                })
        })
        .collect()
}

/// A regex compile error; one over the size limit names the request's budget.
fn regex_error(error: &regex::Error, size_limit: usize) -> String {
    match error {
        regex::Error::CompiledTooBig(_) => format!(
            "compiled size over {size_limit} bytes, its share of the request's limit \
             MAX_REGEX_BYTES ({} bytes for all regular expressions together)",
            budget::MAX_REGEX_BYTES
        ),
        other => other.to_string(),
    }
}

fn namespaced_names(
    field: &'static str,
    names: &[String],
) -> Result<Vec<(String, String)>, FilterError> {
    names
        .iter()
        .map(|name| {
            if name.is_empty() {
                return Err(FilterError::EmptyName { field });
            }
            // As upstream's `k8s.ParseNamespaceName`: a name without a namespace is in
            // "default"; `ns/` is every name in ns, `/name` a name in any namespace;
            // anything after a second `/` is ignored.
            let mut parts = name.split('/');
            let first = parts.next().unwrap_or_default();
            Ok(match parts.next() {
                Some(rest) => (first.to_string(), rest.to_string()),
                None => ("default".to_string(), first.to_string()),
            })
        })
        .collect()
}

fn ips(getter: IpGetter, values: &[String]) -> Result<Predicate, FilterError> {
    Ok(Predicate::Ip(getter, ip::IpMatcher::compile(values)?))
}

fn ports(values: &[String]) -> Result<Vec<u16>, FilterError> {
    values
        .iter()
        .map(|p| p.parse().map_err(|_| FilterError::InvalidPort(p.clone())))
        .collect()
}

fn protocols(values: &[String]) -> Result<Predicate, FilterError> {
    let mut l4 = Vec::new();
    let mut l7 = Vec::new();
    for value in values {
        let name = match value.to_lowercase().as_str() {
            "icmp" => ProtocolName::Icmp,
            "icmpv4" => ProtocolName::L4(L4Protocol::Icmpv4),
            "icmpv6" => ProtocolName::L4(L4Protocol::Icmpv6),
            "tcp" => ProtocolName::L4(L4Protocol::Tcp),
            "udp" => ProtocolName::L4(L4Protocol::Udp),
            "sctp" => ProtocolName::L4(L4Protocol::Sctp),
            "vrrp" => ProtocolName::L4(L4Protocol::Vrrp),
            "igmp" => ProtocolName::L4(L4Protocol::Igmp),
            "dns" => ProtocolName::Dns,
            "http" => ProtocolName::Http,
            "kafka" => ProtocolName::Kafka,
            _ => return Err(FilterError::UnknownProtocol(value.clone())),
        };
        if matches!(
            name,
            ProtocolName::Dns | ProtocolName::Http | ProtocolName::Kafka
        ) {
            l7.push(name);
        } else {
            l4.push(name);
        }
    }
    Ok(Predicate::Protocol { l4, l7 })
}

fn http_status(values: &[String]) -> Result<Predicate, FilterError> {
    let mut full = Vec::new();
    let mut prefixes = Vec::new();
    for value in values {
        let b = value.as_bytes();
        let digit = |i: usize, lo: u8| b.get(i).is_some_and(|c| (lo..=b'9').contains(c));
        let first = b.first().is_some_and(|c| (b'1'..=b'5').contains(c));
        if first && b.len() == 3 && digit(1, b'0') && digit(2, b'0') {
            full.push(
                value
                    .parse()
                    .map_err(|_| FilterError::InvalidHttpStatus(value.clone()))?,
            );
        } else if first
            && value.ends_with('+')
            && (b.len() == 2 || (b.len() == 3 && digit(1, b'0')))
        {
            prefixes.push(value.trim_end_matches('+').to_string());
        } else {
            return Err(FilterError::InvalidHttpStatus(value.clone()));
        }
    }
    Ok(Predicate::HttpStatus { full, prefixes })
}

impl CompiledFilter {
    /// Compiles one FlowFilter.
    pub fn compile(ff: &FlowFilter) -> Result<Self, FilterError> {
        let regex_size = budget::check(std::slice::from_ref(ff), &[])?;
        Self::compile_with(ff, regex_size)
    }

    /// Compiles `ff` with each regex limited to `regex_size` bytes.
    fn compile_with(ff: &FlowFilter, regex_size: usize) -> Result<Self, FilterError> {
        use Predicate as P;
        let mut p = Vec::new();
        if !ff.uuid.is_empty() {
            p.push(P::Uuid(ff.uuid.clone()));
        }
        if !ff.event_type.is_empty() {
            p.push(P::EventType(ff.event_type.clone()));
        }
        if !ff.verdict.is_empty() {
            p.push(P::Verdict(ff.verdict.clone()));
        }
        if !ff.drop_reason_desc.is_empty() {
            p.push(P::DropReasonDesc(ff.drop_reason_desc.clone()));
        }
        if !ff.reply.is_empty() {
            p.push(P::Reply(ff.reply.clone()));
        }
        if !ff.encrypted.is_empty() {
            p.push(P::Encrypted(ff.encrypted.clone()));
        }
        if !ff.source_identity.is_empty() {
            p.push(P::Identity(Side::Source, ff.source_identity.clone()));
        }
        if !ff.destination_identity.is_empty() {
            p.push(P::Identity(
                Side::Destination,
                ff.destination_identity.clone(),
            ));
        }
        if !ff.protocol.is_empty() {
            p.push(protocols(&ff.protocol)?);
        }
        if !ff.source_ip.is_empty() {
            p.push(ips(IpGetter::Source, &ff.source_ip)?);
        }
        if !ff.destination_ip.is_empty() {
            p.push(ips(IpGetter::Destination, &ff.destination_ip)?);
        }
        if !ff.source_ip_xlated.is_empty() {
            p.push(ips(IpGetter::SourceXlated, &ff.source_ip_xlated)?);
        }
        if !ff.ip_version.is_empty() {
            p.push(P::IpVersion(ff.ip_version.clone()));
        }
        if !ff.source_pod.is_empty() {
            p.push(P::Pod(
                Side::Source,
                namespaced_names("source pod", &ff.source_pod)?,
            ));
        }
        if !ff.destination_pod.is_empty() {
            let names = namespaced_names("destination pod", &ff.destination_pod)?;
            p.push(P::Pod(Side::Destination, names));
        }
        if !ff.source_workload.is_empty() {
            p.push(P::Workload(Side::Source, ff.source_workload.clone()));
        }
        if !ff.destination_workload.is_empty() {
            p.push(P::Workload(
                Side::Destination,
                ff.destination_workload.clone(),
            ));
        }
        if !ff.source_service.is_empty() {
            let names = namespaced_names("source service", &ff.source_service)?;
            p.push(P::Service(Side::Source, names));
        }
        if !ff.destination_service.is_empty() {
            let names = namespaced_names("destination service", &ff.destination_service)?;
            p.push(P::Service(Side::Destination, names));
        }
        if !ff.source_fqdn.is_empty() {
            p.push(P::Fqdn(
                Side::Source,
                patterns::compile_fqdn(&ff.source_fqdn, regex_size)?,
            ));
        }
        if !ff.destination_fqdn.is_empty() {
            p.push(P::Fqdn(
                Side::Destination,
                patterns::compile_fqdn(&ff.destination_fqdn, regex_size)?,
            ));
        }
        if !ff.dns_query.is_empty() {
            p.push(P::DnsQuery(regexes(
                "DNS query",
                &ff.dns_query,
                regex_size,
            )?));
        }
        for (of, selectors) in [
            (LabelsOf::Source, &ff.source_label),
            (LabelsOf::Destination, &ff.destination_label),
            (LabelsOf::Node, &ff.node_labels),
        ] {
            if !selectors.is_empty() {
                let compiled = selectors
                    .iter()
                    .map(|s| LabelSelector::parse(s))
                    .collect::<Result<_, _>>()?;
                p.push(P::Labels(of, compiled));
            }
        }
        if !ff.source_port.is_empty() {
            p.push(P::Port(Side::Source, ports(&ff.source_port)?));
        }
        if !ff.destination_port.is_empty() {
            p.push(P::Port(Side::Destination, ports(&ff.destination_port)?));
        }
        let l7_compatible = ff.event_type.is_empty()
            || ff
                .event_type
                .iter()
                .any(|t| t.r#type == MESSAGE_TYPE_ACCESS_LOG);
        let require_l7 = |what: &'static str| {
            if l7_compatible {
                Ok(())
            } else {
                Err(FilterError::HttpNeedsL7(what))
            }
        };
        if !ff.http_status_code.is_empty() {
            require_l7("http status code")?;
            p.push(http_status(&ff.http_status_code)?);
        }
        if !ff.http_method.is_empty() {
            require_l7("http method")?;
            p.push(P::HttpMethod(ff.http_method.clone()));
        }
        if !ff.http_path.is_empty() {
            require_l7("http path")?;
            p.push(P::HttpPath(regexes(
                "http path",
                &ff.http_path,
                regex_size,
            )?));
        }
        if !ff.http_url.is_empty() {
            require_l7("http url")?;
            p.push(P::HttpUrl(regexes("http url", &ff.http_url, regex_size)?));
        }
        if !ff.http_header.is_empty() {
            require_l7("http headers")?;
            let headers = ff
                .http_header
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()));
            p.push(P::HttpHeader(headers.collect()));
        }
        if !ff.tcp_flags.is_empty() {
            p.push(P::TcpFlags(
                ff.tcp_flags.iter().map(tcp_flag_bits).collect(),
            ));
        }
        if !ff.node_name.is_empty() {
            p.push(P::NodeName(patterns::compile_node_names(
                &ff.node_name,
                regex_size,
            )?));
        }
        for (side, names, field) in [
            (Side::Source, &ff.source_cluster_name, "source cluster name"),
            (
                Side::Destination,
                &ff.destination_cluster_name,
                "destination cluster name",
            ),
        ] {
            if !names.is_empty() {
                if names.iter().any(String::is_empty) {
                    return Err(FilterError::EmptyName { field });
                }
                p.push(P::ClusterName(side, names.clone()));
            }
        }
        if !ff.trace_id.is_empty() {
            p.push(P::TraceId(ff.trace_id.clone()));
        }
        if !ff.ip_trace_id.is_empty() {
            p.push(P::IpTraceId(ff.ip_trace_id.clone()));
        }
        if !ff.traffic_direction.is_empty() {
            p.push(P::TrafficDirection(ff.traffic_direction.clone()));
        }
        if !ff.interface.is_empty() {
            p.push(P::Interface(ff.interface.clone()));
        }
        if let Some(exprs) = ff
            .experimental
            .as_ref()
            .map(|e| &e.cel_expression)
            .filter(|e| !e.is_empty())
        {
            p.push(P::Cel(cel::CelFilter::compile(exprs)?));
        }
        let mut predicates = Vec::new();
        let mut on_parts: Vec<PartConditions> = Vec::new();
        for predicate in p {
            let Some(part) = predicate.part() else {
                predicates.push(predicate);
                continue;
            };
            match on_parts.iter_mut().find(|c| c.part == part) {
                Some(conditions) => conditions.predicates.push(predicate),
                None => on_parts.push(PartConditions {
                    part,
                    predicates: vec![predicate],
                    memo: memo::Memo::default(),
                }),
            }
        }
        Ok(Self {
            predicates,
            on_parts,
        })
    }

    /// Whether every predicate holds for `flow`.
    pub fn matches<F: FlowView + ?Sized>(&self, flow: &F) -> bool {
        let interned = if self.on_parts.is_empty() {
            None
        } else {
            flow.interned()
        };
        self.on_parts
            .iter()
            .all(|c| c.matches(flow, interned.as_ref()))
            && self.predicates.iter().all(|p| p.matches(flow))
    }
}

fn endpoint<F: FlowView + ?Sized>(flow: &F, side: Side) -> Option<&flow::Endpoint> {
    match side {
        Side::Source => flow.source(),
        Side::Destination => flow.destination(),
    }
}

fn name_matches(filters: &[(String, String)], ns: &str, name: &str) -> bool {
    if ns.is_empty() && name.is_empty() {
        return false;
    }
    filters
        .iter()
        .any(|(f_ns, prefix)| name.starts_with(prefix.as_str()) && (f_ns.is_empty() || f_ns == ns))
}

impl Predicate {
    /// The one shared part this condition reads, if it reads nothing else.
    fn part(&self) -> Option<Part> {
        match self {
            Predicate::Identity(side, _)
            | Predicate::Pod(side, _)
            | Predicate::Workload(side, _)
            | Predicate::ClusterName(side, _) => Some(Part::of_side(*side)),
            Predicate::Labels(LabelsOf::Source, _) => Some(Part::Source),
            Predicate::Labels(LabelsOf::Destination, _) => Some(Part::Destination),
            Predicate::Labels(LabelsOf::Node, _)
            | Predicate::Service(..)
            | Predicate::NodeName(_)
            | Predicate::Interface(_) => Some(Part::Context),
            _ => None,
        }
    }

    fn matches<F: FlowView + ?Sized>(&self, flow: &F) -> bool {
        match self {
            Predicate::Uuid(ids) => ids.iter().any(|id| id == flow.uuid()),
            Predicate::EventType(types) => flow.event_type().is_some_and(|(t, sub)| {
                types.iter().any(|f| {
                    (f.r#type == 0 || f.r#type == t) && (!f.match_sub_type || f.sub_type == sub)
                })
            }),
            Predicate::Verdict(v) => v.contains(&flow.verdict()),
            Predicate::DropReasonDesc(v) => v.contains(&flow.drop_reason_desc()),
            Predicate::Reply(values) => {
                let reply = flow.is_reply();
                if reply.is_none() && flow.verdict() != flow::Verdict::Dropped as i32 {
                    return false;
                }
                values.contains(&reply.unwrap_or(false))
            }
            Predicate::Encrypted(values) => values.contains(&flow.encrypted()),
            Predicate::Identity(side, ids) => {
                endpoint(flow, *side).is_some_and(|ep| ids.contains(&ep.identity))
            }
            Predicate::Protocol { l4, l7 } => {
                let proto = flow.l4_protocol();
                let l4_match = l4.iter().any(|name| match (name, proto) {
                    (ProtocolName::Icmp, Some(L4Protocol::Icmpv4 | L4Protocol::Icmpv6)) => true,
                    (ProtocolName::L4(want), Some(have)) => *want == have,
                    _ => false,
                });
                l4_match
                    || l7.iter().any(|name| match name {
                        ProtocolName::Dns => flow.dns().is_some(),
                        ProtocolName::Http => flow.http().is_some(),
                        ProtocolName::Kafka => flow.is_kafka(),
                        _ => false,
                    })
            }
            Predicate::Ip(getter, matcher) => {
                let ip = match getter {
                    IpGetter::Source => flow.source_ip(),
                    IpGetter::SourceXlated => flow.source_ip_xlated(),
                    IpGetter::Destination => flow.destination_ip(),
                };
                ip.is_some_and(|ip| matcher.matches(ip))
            }
            Predicate::IpVersion(v) => v.contains(&flow.ip_version()),
            Predicate::Pod(side, names) => endpoint(flow, *side)
                .is_some_and(|ep| name_matches(names, &ep.namespace, &ep.pod_name)),
            Predicate::Service(side, names) => {
                let svc = match side {
                    Side::Source => flow.source_service(),
                    Side::Destination => flow.destination_service(),
                };
                svc.is_some_and(|s| name_matches(names, &s.namespace, &s.name))
            }
            Predicate::Workload(side, wanted) => endpoint(flow, *side).is_some_and(|ep| {
                ep.workloads.iter().any(|w| {
                    wanted.iter().any(|f| {
                        (f.name.is_empty() || f.name == w.name)
                            && (f.kind.is_empty() || f.kind == w.kind)
                    })
                })
            }),
            Predicate::Fqdn(side, re) => {
                let names = match side {
                    Side::Source => flow.source_names(),
                    Side::Destination => flow.destination_names(),
                };
                names.iter().any(|n| re.is_match(n))
            }
            Predicate::DnsQuery(res) => flow
                .dns()
                .is_some_and(|dns| res.iter().any(|re| re.is_match(&dns.query))),
            Predicate::Labels(of, selectors) => {
                let labels: &[String] = match of {
                    LabelsOf::Source => flow.source().map_or(&[], |ep| ep.labels.as_slice()),
                    LabelsOf::Destination => {
                        flow.destination().map_or(&[], |ep| ep.labels.as_slice())
                    }
                    LabelsOf::Node => flow.node_labels(),
                };
                selectors.iter().any(|s| s.matches(labels))
            }
            Predicate::Port(side, wanted) => flow.ports().is_some_and(|(src, dst)| {
                wanted.contains(&if *side == Side::Source { src } else { dst })
            }),
            Predicate::HttpStatus { full, prefixes } => flow.http().is_some_and(|http| {
                if http.code == 0 {
                    return false;
                }
                if full.contains(&http.code) {
                    return true;
                }
                let code = format!("{:03}", http.code);
                prefixes.iter().any(|p| code.starts_with(p.as_str()))
            }),
            Predicate::HttpMethod(methods) => flow.http().is_some_and(|http| {
                !http.method.is_empty()
                    && methods.iter().any(|m| m.eq_ignore_ascii_case(&http.method))
            }),
            Predicate::HttpPath(res) => flow.http().is_some_and(|http| {
                request_uri_path(&http.url)
                    .is_some_and(|path| res.iter().any(|re| re.is_match(path)))
            }),
            Predicate::HttpUrl(res) => flow.http().is_some_and(|http| {
                !http.url.is_empty() && res.iter().any(|re| re.is_match(&http.url))
            }),
            Predicate::HttpHeader(wanted) => flow.http().is_some_and(|http| {
                http.headers
                    .iter()
                    .any(|h| wanted.iter().any(|(k, v)| *k == h.key && *v == h.value))
            }),
            Predicate::TcpFlags(wanted) => flow
                .tcp_flags()
                .is_some_and(|have| wanted.iter().any(|want| have & want == *want)),
            Predicate::NodeName(re) => {
                let node = flow.node_name();
                if node.is_empty() {
                    false
                } else if node.contains('/') {
                    re.is_match(node)
                } else {
                    re.is_match(&format!("{DEFAULT_CLUSTER_NAME}/{node}"))
                }
            }
            Predicate::ClusterName(side, names) => {
                let cluster = endpoint(flow, *side).map_or("", |ep| ep.cluster_name.as_str());
                names.iter().any(|n| n == cluster)
            }
            Predicate::TraceId(ids) => ids.iter().any(|id| id == flow.trace_id()),
            Predicate::IpTraceId(ids) => ids.contains(&flow.ip_trace_id()),
            Predicate::TrafficDirection(v) => v.contains(&flow.traffic_direction()),
            Predicate::Interface(wanted) => flow.interface().is_some_and(|iface| {
                wanted.iter().any(|f| {
                    (f.index == 0 || f.index == iface.index)
                        && (f.name.is_empty() || f.name == iface.name)
                })
            }),
            // CEL reads the whole flow: a compact store rebuilds it here.
            Predicate::Cel(filter) => filter.matches(&flow.whole()),
        }
    }
}

/// The path of an HTTP request URI (absolute URL or absolute path), as Go's
/// `url.ParseRequestURI` would find it.
fn request_uri_path(url: &str) -> Option<&str> {
    if url.starts_with('/') {
        return Some(url.split(['?', '#']).next().unwrap_or(url));
    }
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    Some(rest.find('/').map_or("", |at| &rest[at..]))
}

#[cfg(test)]
mod tests;
