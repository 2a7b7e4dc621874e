//! Parsing of the filter flag values that are more than plain strings.

use proto::flow;

use crate::names;
use crate::quote::go_quote;

/// `--ip-version`: `4`/`v4`/`ipv4`/`ip4`, the same for 6, anything else means "not IP".
pub fn ip_version(value: &str) -> flow::IpVersion {
    match value.to_lowercase().as_str() {
        "4" | "v4" | "ipv4" | "ip4" => flow::IpVersion::IPv4,
        "6" | "v6" | "ipv6" | "ip6" => flow::IpVersion::IPv6,
        _ => flow::IpVersion::IpNotUsed,
    }
}

/// Go's `strconv.ParseUint(value, 10, bits)` with its error text.
pub fn parse_uint(value: &str, bits: u32) -> Result<u64, String> {
    let syntax = || {
        format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(value)
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    match value.parse::<u64>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err(format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(value)
        )),
    }
}

/// `--ip-trace-id`: a number greater than zero.
pub fn ip_trace_id(value: &str) -> Result<u64, String> {
    if value == "0" {
        return Err("invalid --ip-trace-id value; must be greater than 0".to_string());
    }
    parse_uint(value, 64).map_err(|e| format!("invalid --ip-trace-id value: {e}"))
}

/// `--type TYPE[:SUBTYPE]` with upstream's type and sub-type names or numbers.
pub fn event_type(value: &str) -> Result<flow::EventTypeFilter, String> {
    let (type_part, sub_part) = match value.split_once(':') {
        Some((t, s)) => (t, Some(s)),
        None => (value, None),
    };
    let known = names::MESSAGE_TYPE_NAMES
        .iter()
        .find(|(name, _)| *name == type_part)
        .map(|(_, t)| *t);
    let mut filter = flow::EventTypeFilter {
        r#type: match known {
            Some(t) => t,
            None => parse_uint(type_part, 32).map_err(|e| {
                format!(
                    "unable to parse type '{type_part}', not a known type name and unable to parse as numeric value: {e}"
                )
            })? as u32 as i32,
        },
        ..Default::default()
    };
    if let Some(sub) = sub_part {
        let named = match known {
            Some(names::MESSAGE_TYPE_TRACE) => names::TRACE_OBSERVATION_POINTS
                .iter()
                .find(|(_, name)| *name == sub)
                .map(|(k, _)| i32::from(*k)),
            Some(names::MESSAGE_TYPE_AGENT) => names::AGENT_EVENT_SUBTYPES
                .iter()
                .find(|(name, _)| *name == sub)
                .map(|(_, k)| *k),
            _ => None,
        };
        filter.match_sub_type = true;
        filter.sub_type = match named {
            Some(k) => k,
            None => parse_uint(sub, 32).map_err(|e| {
                format!(
                    "unable to parse event sub-type '{sub}', not a known sub-type name and unable to parse as numeric value: {e}"
                )
            })? as u32 as i32,
        };
    }
    Ok(filter)
}

/// `--workload [kind/]name`.
pub fn workload(value: &str) -> flow::Workload {
    match value.split_once('/') {
        _ if value.is_empty() => flow::Workload::default(),
        Some((kind, name)) => flow::Workload {
            kind: kind.to_string(),
            name: name.to_string(),
        },
        None => flow::Workload {
            kind: String::new(),
            name: value.to_string(),
        },
    }
}

/// `--identity`: a reserved identity name or a number.
pub fn identity(value: &str) -> Result<u32, String> {
    names::parse_identity(value).ok_or_else(|| {
        format!(
            "invalid security identity, expected one of [{}] or a numeric value",
            names::reserved_identity_list().join(" ")
        )
    })
}

/// `--tcp-flags syn,ack`.
pub fn tcp_flags(value: &str) -> Result<flow::TcpFlags, String> {
    let mut flags = flow::TcpFlags::default();
    for flag in value.split(',') {
        match flag.to_uppercase().as_str() {
            "SYN" => flags.syn = true,
            "FIN" => flags.fin = true,
            "RST" => flags.rst = true,
            "PSH" => flags.psh = true,
            "ACK" => flags.ack = true,
            "URG" => flags.urg = true,
            "ECE" => flags.ece = true,
            "CWR" => flags.cwr = true,
            "NS" => flags.ns = true,
            _ => return Err(format!("unknown tcp flag: {flag}")),
        }
    }
    Ok(flags)
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(value)
        )),
    }
}
