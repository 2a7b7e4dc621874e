//! IP filters as upstream compares them (`pkg/hubble/filters/ip.go`): an address value
//! matches the flow's address text exactly (so `fd00::0:1` does not match a flow
//! carrying `fd00::1`), a value with a `/` is a prefix the parsed address must fall in.
//! Values are accepted and refused as Go's `netip.ParseAddr` / `netip.ParsePrefix` do.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::FilterError;

/// An address as a flow carries it: its text, or the address itself for a store that
/// keeps only addresses whose text is the canonical one (`addr.to_string()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowIp<'a> {
    Text(&'a str),
    Addr(IpAddr),
}

impl fmt::Display for FlowIp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowIp::Text(t) => f.write_str(t),
            FlowIp::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Parses an address as Go's `netip.ParseAddr`: IPv4 in four decimal octets, IPv6
/// with an optional non-empty zone (`fe80::1%eth0`). Returns the address and whether
/// it had a zone.
fn parse_addr(text: &str) -> Option<(IpAddr, bool)> {
    match text.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() => {
            addr.parse::<Ipv6Addr>().ok().map(|a| (IpAddr::V6(a), true))
        }
        Some(_) => None,
        None => text.parse().ok().map(|a| (a, false)),
    }
}

/// Parses a prefix as Go's `netip.ParsePrefix`: no zone, the length in decimal without
/// sign or leading zero, at most 32 or 128; host bits may be set.
fn parse_prefix(text: &str) -> Option<IpNet> {
    let (addr, bits) = text.rsplit_once('/')?;
    let (addr, zoned) = parse_addr(addr)?;
    let plain_decimal = !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && (bits == "0" || !bits.starts_with('0'));
    if zoned || !plain_decimal {
        return None;
    }
    IpNet::new(addr, bits.parse().ok()?).ok()
}

/// The compiled values of one IP filter field.
#[derive(Debug)]
pub struct IpMatcher {
    /// Every address value, as given.
    texts: Vec<String>,
    /// The address values whose text is canonical, to compare with [`FlowIp::Addr`].
    canonical: Vec<IpAddr>,
    prefixes: Vec<IpNet>,
}

impl IpMatcher {
    /// Validates and compiles `values`.
    pub fn compile(values: &[String]) -> Result<Self, FilterError> {
        let mut m = IpMatcher {
            texts: Vec::new(),
            canonical: Vec::new(),
            prefixes: Vec::new(),
        };
        for value in values {
            if value.contains('/') {
                let prefix =
                    parse_prefix(value).ok_or_else(|| FilterError::InvalidPrefix(value.clone()))?;
                m.prefixes.push(prefix);
            } else {
                let (addr, _) =
                    parse_addr(value).ok_or_else(|| FilterError::InvalidIp(value.clone()))?;
                if addr.to_string() == *value {
                    m.canonical.push(addr);
                }
                m.texts.push(value.clone());
            }
        }
        Ok(m)
    }

    /// Whether the flow's address `ip` matches a value.
    pub fn matches(&self, ip: FlowIp<'_>) -> bool {
        match ip {
            FlowIp::Text("") => false,
            FlowIp::Text(text) => {
                self.texts.iter().any(|v| v == text)
                    || (!self.prefixes.is_empty()
                        && parse_addr(text).is_some_and(|(addr, zoned)| {
                            !zoned && self.prefixes.iter().any(|p| p.contains(&addr))
                        }))
            }
            FlowIp::Addr(addr) => {
                self.canonical.contains(&addr) || self.prefixes.iter().any(|p| p.contains(&addr))
            }
        }
    }
}
