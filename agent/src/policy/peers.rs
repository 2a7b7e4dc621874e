//! Peers of a rule other than endpoint selectors: entities and CIDRs, and the
//! marker for Cilium fields this agent does not implement.

use std::fmt;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A class of peers without labels of their own (`fromEntities`/`toEntities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entity {
    /// Every peer, inside or outside the cluster.
    All,
    /// Everything outside the cluster.
    World,
    /// IPv4 addresses outside the cluster.
    WorldIpv4,
    /// IPv6 addresses outside the cluster.
    WorldIpv6,
    /// Everything inside the cluster.
    Cluster,
    /// The local host.
    Host,
    /// Endpoints whose identity is not resolved yet.
    Init,
    /// The ingress proxy.
    Ingress,
    /// Endpoints not managed by the agent.
    Unmanaged,
    /// Other nodes.
    RemoteNode,
    /// Health-check endpoints.
    Health,
    /// Nothing.
    None,
    /// The Kubernetes API server.
    KubeApiserver,
}

/// A CIDR prefix or a single address, as written in `fromCIDR`/`toCIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub IpNet);

// === impl Cidr ===

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a host prefix).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Cidr(net));
        }
        if let Ok(address) = text.parse::<std::net::IpAddr>() {
            return Ok(Cidr(IpNet::from(address)));
        }
        Err(format!(
            "{text:?} is not a CIDR (expected a prefix such as 10.0.0.0/8 or fd00::/8, or an address)"
        ))
    }

    /// The prefix with host bits cleared.
    pub fn prefix(&self) -> IpNet {
        self.0.trunc()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseStr {
            parse: Cidr::parse,
            expecting: "a CIDR prefix such as 10.0.0.0/8",
        })
    }
}

/// A visitor that parses a string with `parse`, so that a parse error is
/// reported at the string's own path and position.
pub(crate) struct ParseStr<T> {
    /// Parses the text or says what is wrong with it.
    pub parse: fn(&str) -> Result<T, String>,
    /// What the value should look like.
    pub expecting: &'static str,
}

impl<T> de::Visitor<'_> for ParseStr<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// A `fromCIDRSet`/`toCIDRSet` entry: a prefix minus some sub-prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCidrRule")]
pub struct CidrRule {
    /// The prefix.
    pub cidr: Cidr,
    /// Sub-prefixes of `cidr` that are not included.
    #[serde(rename = "except", skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Cidr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCidrRule {
    cidr: Cidr,
    #[serde(default)]
    except: Vec<Cidr>,
    #[serde(default)]
    cidr_group_ref: Option<Unsupported>,
    #[serde(default)]
    cidr_group_selector: Option<Unsupported>,
}

impl TryFrom<RawCidrRule> for CidrRule {
    type Error = String;

    fn try_from(raw: RawCidrRule) -> Result<Self, Self::Error> {
        // The unsupported fields fail while deserializing; nothing to check here.
        let _ = (raw.cidr_group_ref, raw.cidr_group_selector);
        let outer = raw.cidr.prefix();
        for except in &raw.except {
            let inner = except.prefix();
            if !outer.contains(&inner) {
                return Err(format!("except {except} is not inside cidr {}", raw.cidr));
            }
        }
        Ok(CidrRule {
            cidr: raw.cidr,
            except: raw.except,
        })
    }
}

/// `fromFQDNs`: refused whatever its value, naming the field, as Cilium refuses it
/// (DNS names only select egress peers, through `toFQDNs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressFqdns {}

const FROM_FQDNS: &str =
    "fromFQDNs is not supported: DNS names select egress peers only (use toFQDNs in an egress rule)";

impl<'de> Deserialize<'de> for IngressFqdns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(Refuse(FROM_FQDNS))
            .map(|never| match never {})
    }
}

/// Stands for a Cilium field this agent does not implement: reading any
/// value for it fails with a message naming it (the error path names the
/// field), so such a policy is rejected instead of half-enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {}

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Refuse(UNSUPPORTED))
    }
}

/// Fails on every value, inside the value, so the error carries the path of
/// the field it was written for.
struct Refuse(&'static str);

const UNSUPPORTED: &str =
    "this field is not supported by hubble-agent (only L3/L4 policy is enforced)";

impl<'de> de::Visitor<'de> for Refuse {
    type Value = Unsupported;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Unsupported, E> {
        Err(E::custom(self.0))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Unsupported, E> {
        Err(E::custom(self.0))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Unsupported, E> {
        Err(E::custom(self.0))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Unsupported, E> {
        Err(E::custom(self.0))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Unsupported, E> {
        Err(E::custom(self.0))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Unsupported, E> {
        Err(E::custom(self.0))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Unsupported, A::Error> {
        Err(de::Error::custom(self.0))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Unsupported, A::Error> {
        Err(de::Error::custom(self.0))
    }
}
