//! `toPorts`: ports, port ranges and protocols.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::l7::L7Rules;
use super::peers::{ParseStr, Unsupported};

/// The most ports one `port`..`endPort` range may span.
pub const MAX_PORT_RANGE: u32 = 4096;

/// IANA protocol numbers used in policy entries.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// An L4 protocol of a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// TCP, UDP and SCTP (or every protocol when the port is 0).
    #[default]
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
    /// ICMP; the port is the ICMP type.
    Icmp,
    /// ICMPv6; the port is the ICMPv6 type.
    Icmpv6,
}

// === impl Protocol ===

impl Protocol {
    /// The name as Cilium prints it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Any => "ANY",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPV6",
        }
    }

    fn parse(text: &str) -> Option<Protocol> {
        let protocol = match text.to_ascii_uppercase().as_str() {
            "" | "ANY" => Protocol::Any,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            "ICMP" => Protocol::Icmp,
            "ICMPV6" => Protocol::Icmpv6,
            _ => return None,
        };
        Some(protocol)
    }

    /// The IANA numbers this protocol stands for when a port is given.
    fn numbers(self, port: u16) -> &'static [u8] {
        match self {
            Protocol::Any if port == 0 => &[0],
            Protocol::Any => &[proto::TCP, proto::UDP, proto::SCTP],
            Protocol::Tcp => &[proto::TCP],
            Protocol::Udp => &[proto::UDP],
            Protocol::Sctp => &[proto::SCTP],
            Protocol::Icmp => &[proto::ICMP],
            Protocol::Icmpv6 => &[proto::ICMPV6],
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseStr {
            parse: |text| {
                Protocol::parse(text).ok_or_else(|| {
                    format!(
                        "{text:?} is not a protocol (expected TCP, UDP, SCTP, ICMP, ICMPv6 or ANY)"
                    )
                })
            },
            expecting: "a protocol name",
        })
    }
}

/// A port number written as a string (`"80"`) or a number (`80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port(pub u16);

impl Serialize for Port {
    /// Ports print as strings, as in Cilium's JSON.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl Visitor<'_> for PortVisitor {
            type Value = Port;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (0-65535) as a string or a number")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port)
                    .map_err(|_| E::custom(format!("{v} is not a port number (0-65535)")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port)
                    .map_err(|_| E::custom(format!("{v} is not a port number (0-65535)")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                v.parse::<u16>()
                    .map(Port)
                    .map_err(|_| E::custom(format!("{v:?} is not a port number")))
            }
        }

        deserializer.deserialize_any(PortVisitor)
    }
}

/// One port (or port range) with its protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawPortProtocol")]
pub struct PortProtocol {
    /// The port; absent or 0 means every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// The last port of a range starting at `port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
    /// The protocol (`ANY` when omitted).
    pub protocol: Protocol,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPortProtocol {
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    end_port: Option<i64>,
    #[serde(default)]
    protocol: Protocol,
}

impl TryFrom<RawPortProtocol> for PortProtocol {
    type Error = String;

    fn try_from(raw: RawPortProtocol) -> Result<Self, Self::Error> {
        let port = raw.port.map_or(0, |p| p.0);
        let end_port = match raw.end_port {
            None | Some(0) => None,
            Some(end) => {
                let end = u16::try_from(end)
                    .map_err(|_| format!("endPort {end} is not a port number (0-65535)"))?;
                if port == 0 {
                    return Err(format!("endPort {end} needs a non-zero port"));
                }
                if end < port {
                    return Err(format!("endPort {end} is below port {port}"));
                }
                let span = u32::from(end) - u32::from(port) + 1;
                if span > MAX_PORT_RANGE {
                    return Err(format!(
                        "ports {port}-{end} span {span} ports; at most {MAX_PORT_RANGE} are supported"
                    ));
                }
                Some(end)
            }
        };
        Ok(PortProtocol {
            port: raw.port,
            end_port,
            protocol: raw.protocol,
        })
    }
}

// === impl PortProtocol ===

impl PortProtocol {
    /// Every (destination port, IANA protocol) pair this entry allows,
    /// ranges expanded; (0, 0) stands for every port of every protocol.
    pub fn expand(&self) -> Vec<(u16, u8)> {
        let first = self.port.map_or(0, |p| p.0);
        let last = self.end_port.unwrap_or(first);
        let mut pairs = Vec::new();
        for port in first..=last {
            for &number in self.protocol.numbers(port) {
                pairs.push((port, number));
            }
        }
        pairs
    }
}

/// A `toPorts` entry of an allow rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortRule {
    /// The ports; absent or empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortProtocol>,
    /// TLS termination is not supported.
    #[serde(default, rename = "terminatingTLS", skip_serializing)]
    pub terminating_tls: Option<Unsupported>,
    /// TLS origination is not supported.
    #[serde(default, rename = "originatingTLS", skip_serializing)]
    pub originating_tls: Option<Unsupported>,
    /// SNI matching is not supported.
    #[serde(default, skip_serializing)]
    pub server_names: Option<Unsupported>,
    /// Envoy listeners are not supported.
    #[serde(default, skip_serializing)]
    pub listener: Option<Unsupported>,
    /// L7 rules: HTTP enforced through the proxy, the others accepted and not
    /// enforced (the port is allowed at L4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<L7Rules>,
}

/// A `toPorts` entry of a deny rule: ports only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortDenyRule {
    /// The ports; absent or empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortProtocol>,
}

/// Access to the ports of allow and deny port rules alike.
pub trait PortSpec {
    /// The ports of the rule.
    fn ports(&self) -> &[PortProtocol];
    /// The L7 rules, if any.
    fn l7(&self) -> Option<&L7Rules> {
        None
    }
}

impl PortSpec for PortRule {
    fn ports(&self) -> &[PortProtocol] {
        &self.ports
    }

    fn l7(&self) -> Option<&L7Rules> {
        self.rules.as_ref()
    }
}

impl PortSpec for PortDenyRule {
    fn ports(&self) -> &[PortProtocol] {
        &self.ports
    }
}
