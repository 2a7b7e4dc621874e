//! L7 flows from the proxies' access records, as Hubble's `parser/seven` makes
//! them from Cilium's `accesslog.LogRecord`: event type 129 (access log), `Type:
//! L7`, `l7.type` REQUEST or RESPONSE, `l7.latency_ns` on responses, `l7.http` /
//! `l7.dns`, the verdict (Denied -> DROPPED), `is_reply` on responses, the
//! traffic direction of the redirect, and the summary Hubble prints.
//!
//! Records keep the connection's direction (client -> server); a response flow
//! goes from the server to the client, as Cilium's proxy logger writes it, so
//! the parser swaps the ends of responses. Both ends are enriched with the same
//! getters as L3/L4 flows (endpoints, identity labels, services by frontend,
//! DNS names). Header keys are Go's canonical form (`User-Agent`), sorted, as
//! Cilium's Go access log carries them.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use proto::accesslog::{
    DnsLog, DnsTransport, HttpLog, L7Log, LogRecord, RecordKind, RecordVerdict,
};
use proto::flow::{self, layer4, layer7, Flow};
use proto::names::MESSAGE_TYPE_ACCESS_LOG;

use super::{new_uuid, Parser};

impl Parser {
    /// The flow of one proxy access record.
    pub fn parse_log_record(&self, record: &LogRecord) -> Flow {
        let response = record.kind == RecordKind::Response;
        let (from, to) = if response {
            (record.destination, record.source)
        } else {
            (record.source, record.destination)
        };
        let latency_ns = record.latency.filter(|_| response).map_or(0, |latency| {
            u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
        });
        let l7 = flow::Layer7 {
            r#type: if response {
                flow::L7FlowType::Response
            } else {
                flow::L7FlowType::Request
            } as i32,
            latency_ns,
            record: Some(match &record.l7 {
                L7Log::Http(http) => layer7::Record::Http(http_record(http, response)),
                L7Log::Dns(dns) => layer7::Record::Dns(dns_record(dns, response)),
            }),
        };
        let summary = match &record.l7 {
            L7Log::Http(http) => http_summary(http, response, latency_ns),
            L7Log::Dns(dns) => dns_summary(dns, response),
        };
        let ipv6 = from.ip.is_ipv6();
        let protocol = match record.l7 {
            L7Log::Http(_) => layer4::Protocol::Tcp(flow::Tcp {
                source_port: u32::from(from.port),
                destination_port: u32::from(to.port),
                flags: None,
            }),
            L7Log::Dns(DnsLog {
                transport: DnsTransport::Tcp,
                ..
            }) => layer4::Protocol::Tcp(flow::Tcp {
                source_port: u32::from(from.port),
                destination_port: u32::from(to.port),
                flags: None,
            }),
            L7Log::Dns(_) => layer4::Protocol::Udp(flow::Udp {
                source_port: u32::from(from.port),
                destination_port: u32::from(to.port),
            }),
        };
        let mut flow = Flow {
            time: Some(timestamp(record)),
            uuid: new_uuid(),
            verdict: match record.verdict {
                RecordVerdict::Forwarded => flow::Verdict::Forwarded,
                RecordVerdict::Denied => flow::Verdict::Dropped,
                RecordVerdict::Error => flow::Verdict::Error,
            } as i32,
            ip: Some(flow::Ip {
                source: from.ip.to_string(),
                destination: to.ip.to_string(),
                ip_version: if ipv6 {
                    flow::IpVersion::IPv6
                } else {
                    flow::IpVersion::IPv4
                } as i32,
                ..Default::default()
            }),
            l4: Some(flow::Layer4 {
                protocol: Some(protocol),
            }),
            source: Some(self.resolve_endpoint(Some(from.ip), from.identity)),
            destination: Some(self.resolve_endpoint(Some(to.ip), to.identity)),
            r#type: flow::FlowType::L7 as i32,
            node_name: self.node_name.clone(),
            l7: Some(l7),
            is_reply: Some(pbjson_types::BoolValue { value: response }),
            event_type: Some(flow::CiliumEventType {
                r#type: MESSAGE_TYPE_ACCESS_LOG,
                sub_type: 0,
            }),
            traffic_direction: if record.ingress {
                flow::TrafficDirection::Ingress
            } else {
                flow::TrafficDirection::Egress
            } as i32,
            ..Default::default()
        };
        if let L7Log::Http(http) = &record.l7 {
            flow.trace_context = http.trace_parent.as_deref().and_then(trace_context);
        }
        #[allow(deprecated)]
        {
            flow.reply = response;
            flow.summary = summary;
        }
        self.fill_services(&mut flow, false);
        self.fill_names(&mut flow);
        flow
    }
}

fn timestamp(record: &LogRecord) -> pbjson_types::Timestamp {
    let since_epoch = record
        .time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    pbjson_types::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

/// The trace context of a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`),
/// as Hubble extracts it: only a well-formed header with a non-zero trace id and
/// parent id; later versions may append fields after the flags.
fn trace_context(traceparent: &str) -> Option<flow::TraceContext> {
    fn hex(field: &str, len: usize) -> bool {
        field.len() == len
            && field
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    let mut fields = traceparent.trim().split('-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let parent_id = fields.next()?;
    let flags = fields.next()?;
    let rest_ok = if version == "00" {
        fields.next().is_none()
    } else {
        true
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && rest_ok;
    valid.then(|| flow::TraceContext {
        parent: Some(flow::TraceParent {
            trace_id: trace_id.to_owned(),
        }),
    })
}

/// Requests carry no code (Hubble sets only the request's fields).
fn http_record(http: &HttpLog, response: bool) -> flow::Http {
    let mut headers: Vec<flow::HttpHeader> = http
        .headers
        .iter()
        .filter(|(key, _)| !key.starts_with(':'))
        .map(|(key, value)| flow::HttpHeader {
            key: canonical_header_key(key),
            value: value.clone(),
        })
        .collect();
    // Sorted by key; the values of one key keep their order.
    headers.sort_by(|a, b| a.key.cmp(&b.key));
    flow::Http {
        code: if response { http.code } else { 0 },
        method: http.method.to_string(),
        url: http.url.to_string(),
        protocol: http.protocol.to_owned(),
        headers,
    }
}

/// `HTTP/1.1 PUT http://...` for a request, `HTTP/1.1 200 3ms (POST http://...)`
/// for a response (whole milliseconds, truncated).
fn http_summary(http: &HttpLog, response: bool, latency_ns: u64) -> String {
    if response {
        format!(
            "{} {} {}ms ({} {})",
            http.protocol,
            http.code,
            latency_ns / 1_000_000,
            http.method,
            http.url
        )
    } else {
        format!("{} {} {}", http.protocol, http.method, http.url)
    }
}

/// Requests carry only the query, its types and the observation source.
fn dns_record(dns: &DnsLog, response: bool) -> flow::Dns {
    if !response {
        return flow::Dns {
            query: dns.query.clone(),
            observation_source: dns.observation_source.clone(),
            qtypes: dns.qtypes.clone(),
            ..Default::default()
        };
    }
    flow::Dns {
        query: dns.query.clone(),
        ips: dns.ips.iter().map(IpAddr::to_string).collect(),
        ttl: dns.ttl,
        cnames: dns.cnames.clone(),
        observation_source: dns.observation_source.clone(),
        rcode: dns.rcode,
        qtypes: dns.qtypes.clone(),
        rrtypes: dns.rrtypes.clone(),
    }
}

/// `DNS Query name. A` for a query; for an answer `DNS Answer "ips" CNAMEs:
/// "..." TTL: n (Proxy name. A)`, or `RCode: <name>` instead of the addresses
/// when the answer is an error.
fn dns_summary(dns: &DnsLog, response: bool) -> String {
    let qtypes = dns.qtypes.join(",");
    if !response {
        return format!("DNS Query {} {}", dns.query, qtypes);
    }
    let answer = if dns.rcode != 0 {
        format!("RCode: {}", proto::names::dns_rcode(dns.rcode))
    } else {
        let mut parts = Vec::new();
        if !dns.ips.is_empty() {
            let ips: Vec<String> = dns.ips.iter().map(IpAddr::to_string).collect();
            parts.push(format!("{:?}", ips.join(",")));
        }
        if !dns.cnames.is_empty() {
            parts.push(format!("CNAMEs: {:?}", dns.cnames.join(",")));
        }
        parts.join(" ")
    };
    let source = if dns.observation_source == "proxy" {
        "Proxy"
    } else {
        "Query"
    };
    format!(
        "DNS Answer {answer} TTL: {} ({source} {} {qtypes})",
        dns.ttl, dns.query
    )
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: the first letter and each letter
/// after a hyphen upper case, the rest lower case; a key with a character that
/// is not a token character is returned as it is.
fn canonical_header_key(key: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !key.chars().all(token) {
        return key.to_owned();
    }
    let mut upper = true;
    key.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

#[cfg(test)]
mod tests;
