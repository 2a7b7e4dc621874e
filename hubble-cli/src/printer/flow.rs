//! The pieces of a flow that the text formats print: host names with ports, security
//! identities, the event type word, the verdict and the summary.

use std::fmt::Write as _;

use proto::flow::{self, layer4, Flow};

use super::color::{Color, Colorer};
use crate::names;

/// What the text formats need to know to describe a flow.
#[derive(Debug, Clone, Copy)]
pub struct FlowStyle {
    pub colors: Colorer,
    pub ip_translation: bool,
    pub policy_names: bool,
}

/// Source and destination ports, when the flow is TCP, UDP or SCTP.
fn ports(f: &Flow) -> Option<(u32, u32)> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        layer4::Protocol::Tcp(t) => Some((t.source_port, t.destination_port)),
        layer4::Protocol::Udp(u) => Some((u.source_port, u.destination_port)),
        layer4::Protocol::Sctp(s) => Some((s.source_port, s.destination_port)),
        _ => None,
    }
}

/// Writes the source and destination host names of `f` (coloured), as upstream's
/// `GetHostNames` builds them.
pub fn write_host_names(style: &FlowStyle, f: &Flow, src: &mut String, dst: &mut String) {
    let Some(ip) = f.ip.as_ref() else {
        if let Some(eth) = f.ethernet.as_ref() {
            style.colors.paint_str(src, Color::Cyan, &eth.source);
            style.colors.paint_str(dst, Color::Cyan, &eth.destination);
        }
        return;
    };
    let (mut src_ns, mut src_pod, mut src_svc) = ("", "", "");
    let (mut dst_ns, mut dst_pod, mut dst_svc) = ("", "", "");
    if let Some(ep) = f.source.as_ref() {
        src_ns = &ep.namespace;
        src_pod = &ep.pod_name;
    }
    if let Some(ep) = f.destination.as_ref() {
        dst_ns = &ep.namespace;
        dst_pod = &ep.pod_name;
    }
    if let Some(svc) = f.source_service.as_ref() {
        src_ns = &svc.namespace;
        src_svc = &svc.name;
    }
    if let Some(svc) = f.destination_service.as_ref() {
        dst_ns = &svc.namespace;
        dst_svc = &svc.name;
    }
    let (src_port, dst_port) = match ports(f) {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    let src_host = Host {
        ip: &ip.source,
        port: src_port,
        namespace: src_ns,
        pod: src_pod,
        service: src_svc,
        names: &f.source_names,
    };
    let dst_host = Host {
        ip: &ip.destination,
        port: dst_port,
        namespace: dst_ns,
        pod: dst_pod,
        service: dst_svc,
        names: &f.destination_names,
    };
    style
        .colors
        .paint(src, Color::Cyan, |out| write_host(style, &src_host, out));
    style
        .colors
        .paint(dst, Color::Cyan, |out| write_host(style, &dst_host, out));
}

/// One end of a flow as the printer names it.
pub struct Host<'a> {
    pub ip: &'a str,
    pub port: Option<u32>,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub service: &'a str,
    pub names: &'a [String],
}

/// Writes `host[:port]`: the host is the pod or service name (with its namespace), the
/// DNS names or the IP, and an IPv6-looking host is bracketed before a port.
pub fn write_host(style: &FlowStyle, h: &Host<'_>, out: &mut String) {
    let start = out.len();
    let mut translated = false;
    if style.ip_translation {
        if !h.pod.is_empty() {
            push_path_join(out, h.namespace, h.pod);
            translated = true;
        } else if !h.service.is_empty() {
            push_path_join(out, h.namespace, h.service);
            translated = true;
        } else if !h.names.is_empty() {
            for (i, name) in h.names.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
            }
            translated = true;
        }
    }
    if !translated {
        out.push_str(h.ip);
    }
    let Some(port) = h.port.filter(|p| *p != 0) else {
        return;
    };
    if out[start..].contains(':') {
        out.insert(start, '[');
        out.push(']');
    }
    out.push(':');
    style.colors.paint(out, Color::Yellow, |out| {
        out.push_str(itoa::Buffer::new().format(port));
    });
}

/// Go's `path.Join(namespace, name)`: empty parts are skipped and the result is
/// cleaned.
fn push_path_join(out: &mut String, namespace: &str, name: &str) {
    let simple = |s: &str| !s.contains('/') && s != "." && s != "..";
    if simple(namespace) && simple(name) {
        if !namespace.is_empty() {
            out.push_str(namespace);
            out.push('/');
        }
        out.push_str(name);
        return;
    }
    let joined = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    };
    out.push_str(&clean_path(&joined));
}

/// Go's `path.Clean`.
fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// Writes `(name)` for reserved identities and `(ID:n)` for others, coloured.
pub fn write_identity(colors: &Colorer, id: u32, out: &mut String) {
    colors.paint(
        out,
        Color::Magenta,
        |out| match names::reserved_identity_name(id) {
            Some(name) => {
                let _ = write!(out, "({name})");
            }
            None => {
                out.push_str("(ID:");
                out.push_str(itoa::Buffer::new().format(id));
                out.push(')');
            }
        },
    );
}

/// Writes the verdict word, coloured, with `ALLOWED`/`DENIED`/`AUDITED` for policy
/// verdict events and the deciding policies when `--print-policy-names` is on.
pub fn write_verdict(style: &FlowStyle, f: &Flow, out: &mut String) {
    let is_policy_verdict = f
        .event_type
        .as_ref()
        .is_some_and(|e| e.r#type == names::MESSAGE_TYPE_POLICY_VERDICT);
    let verdict = flow::Verdict::try_from(f.verdict);
    let colors = &style.colors;
    let by_direction = |egress: &[flow::Policy], ingress: &[flow::Policy]| -> String {
        if !style.policy_names {
            return String::new();
        }
        match flow::TrafficDirection::try_from(f.traffic_direction) {
            Ok(flow::TrafficDirection::Egress) => policy_names(egress),
            Ok(flow::TrafficDirection::Ingress) => policy_names(ingress),
            _ => String::new(),
        }
    };
    match verdict {
        Ok(flow::Verdict::Forwarded) | Ok(flow::Verdict::Redirected) => {
            colors.paint(out, Color::Green, |out| {
                if is_policy_verdict {
                    out.push_str("ALLOWED");
                    out.push_str(&by_direction(&f.egress_allowed_by, &f.ingress_allowed_by));
                } else {
                    out.push_str(&names::verdict(f.verdict));
                }
            });
        }
        Ok(flow::Verdict::Dropped) | Ok(flow::Verdict::Error) => {
            colors.paint(out, Color::Red, |out| {
                if is_policy_verdict {
                    out.push_str("DENIED");
                    out.push_str(&by_direction(&f.egress_denied_by, &f.ingress_denied_by));
                } else {
                    out.push_str(&names::verdict(f.verdict));
                }
            });
        }
        Ok(flow::Verdict::Audit) => {
            let word = if is_policy_verdict {
                "AUDITED"
            } else {
                "AUDIT"
            };
            colors.paint_str(out, Color::Yellow, word);
        }
        Ok(flow::Verdict::Traced) | Ok(flow::Verdict::Translated) => {
            colors.paint_str(out, Color::Yellow, &names::verdict(f.verdict));
        }
        _ => out.push_str(&names::verdict(f.verdict)),
    }
}

/// ` BY name (Kind), name2 (Kind2)` for the policies that have a name and a kind.
fn policy_names(policies: &[flow::Policy]) -> String {
    let mut msg = String::new();
    for policy in policies
        .iter()
        .filter(|p| !p.kind.is_empty() && !p.name.is_empty())
    {
        msg.push_str(if msg.is_empty() { " BY " } else { ", " });
        let _ = write!(msg, "{} ({})", policy.name, policy.kind);
    }
    msg
}

/// Writes the summary: the IP trace ID, the flow's summary text and its
/// authentication type when authentication is on.
#[allow(deprecated)]
pub fn write_summary(colors: &Colorer, f: &Flow, out: &mut String) {
    if let Some(trace) = f.ip_trace_id.as_ref().filter(|t| t.trace_id > 0) {
        let _ = write!(out, "IP Trace ID: {}; ", trace.trace_id);
    }
    out.push_str(&f.summary);
    match flow::AuthType::try_from(f.auth_type) {
        Ok(flow::AuthType::Disabled) => {}
        Ok(flow::AuthType::TestAlwaysFail) => {
            out.push_str("; Auth: ");
            colors.paint_str(out, Color::Red, &names::auth_type(f.auth_type));
        }
        _ => {
            out.push_str("; Auth: ");
            colors.paint_str(out, Color::Green, &names::auth_type(f.auth_type));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_joined_paths_like_go() {
        assert_eq!(clean_path("a//b"), "a/b");
        assert_eq!(clean_path("a/../b"), "b");
        assert_eq!(clean_path("../x"), "../x");
        assert_eq!(clean_path("/a/.."), "/");
        let mut out = String::new();
        push_path_join(&mut out, "", "pod");
        assert_eq!(out, "pod");
    }

    #[test]
    fn host_names_follow_upstream_rules() {
        let style = FlowStyle {
            colors: Colorer { enabled: false },
            ip_translation: true,
            policy_names: false,
        };
        let host = |ip, port, ns, pod, svc, names: &[String]| {
            let mut out = String::new();
            let h = Host {
                ip,
                port,
                namespace: ns,
                pod,
                service: svc,
                names,
            };
            write_host(&style, &h, &mut out);
            out
        };
        assert_eq!(host("", None, "default", "pod", "", &[]), "default/pod");
        assert_eq!(
            host("", None, "default", "pod", "service", &[]),
            "default/pod"
        );
        assert_eq!(
            host("", None, "default", "", "service", &[]),
            "default/service"
        );
        let names = ["a".to_string(), "b".to_string()];
        assert_eq!(host("", None, "", "", "", &names), "a,b");
        assert_eq!(host("fd00::1", Some(80), "", "", "", &[]), "[fd00::1]:80");
        assert_eq!(host("1.1.1.1", Some(0), "", "", "", &[]), "1.1.1.1");
    }
}
