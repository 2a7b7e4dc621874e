//! `icmps`: ICMP types allowed, by number or by name.

use serde::{Deserialize, Serialize};

use super::ports::proto;

/// An `icmps` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpRule {
    /// The ICMP types allowed.
    pub fields: Vec<IcmpField>,
}

/// One ICMP type of a family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawIcmpField")]
pub struct IcmpField {
    /// `IPv4` (default) or `IPv6`.
    #[serde(default)]
    pub family: IcmpFamily,
    /// The ICMP type, by number or by name (`EchoRequest`, ...).
    #[serde(rename = "type")]
    pub icmp_type: IcmpType,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIcmpField {
    #[serde(default)]
    family: IcmpFamily,
    #[serde(rename = "type")]
    icmp_type: IcmpType,
}

impl TryFrom<RawIcmpField> for IcmpField {
    type Error = String;

    fn try_from(raw: RawIcmpField) -> Result<Self, Self::Error> {
        let field = IcmpField {
            family: raw.family,
            icmp_type: raw.icmp_type,
        };
        field.resolve()?;
        Ok(field)
    }
}

/// The address family of an ICMP rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IcmpFamily {
    /// ICMP for IPv4.
    #[default]
    IPv4,
    /// ICMPv6.
    IPv6,
}

/// An ICMP type as written: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IcmpType {
    /// A type number.
    Number(u8),
    /// A type name.
    Name(String),
}

const ICMPV4_NAMES: &[(&str, u8)] = &[
    ("EchoReply", 0),
    ("DestinationUnreachable", 3),
    ("Redirect", 5),
    ("EchoRequest", 8),
    ("RouterAdvertisement", 9),
    ("RouterSelection", 10),
    ("TimeExceeded", 11),
    ("ParameterProblem", 12),
    ("Timestamp", 13),
    ("TimestampReply", 14),
];

const ICMPV6_NAMES: &[(&str, u8)] = &[
    ("DestinationUnreachable", 1),
    ("PacketTooBig", 2),
    ("TimeExceeded", 3),
    ("ParameterProblem", 4),
    ("EchoRequest", 128),
    ("EchoReply", 129),
    ("MulticastListenerQuery", 130),
    ("MulticastListenerReport", 131),
    ("MulticastListenerDone", 132),
    ("RouterSolicitation", 133),
    ("RouterAdvertisement", 134),
    ("NeighborSolicitation", 135),
    ("NeighborAdvertisement", 136),
];

// === impl IcmpField ===

impl IcmpField {
    /// The (type, IANA protocol) pair, or an error naming an unknown type name.
    pub fn resolve(&self) -> Result<(u16, u8), String> {
        let (names, number) = match self.family {
            IcmpFamily::IPv4 => (ICMPV4_NAMES, proto::ICMP),
            IcmpFamily::IPv6 => (ICMPV6_NAMES, proto::ICMPV6),
        };
        let icmp_type = match &self.icmp_type {
            IcmpType::Number(n) => *n,
            IcmpType::Name(name) => names
                .iter()
                .find(|(known, _)| known == name)
                .map(|(_, n)| *n)
                .ok_or_else(|| format!("{name:?} is not an ICMP type name of {:?}", self.family))?,
        };
        Ok((u16::from(icmp_type), number))
    }
}
