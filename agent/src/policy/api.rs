//! The policy rule types, field for field as Cilium reads and prints them.
//!
//! Deserializing validates everything that can be checked locally (ports,
//! protocols, CIDRs, selector operators, unknown fields), so a bad document
//! fails with the path of the bad field and its line.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::fqdn::FqdnSelector;
use super::icmp::IcmpRule;
use super::peers::{Cidr, CidrRule, Entity, IngressFqdns, Unsupported};
use super::ports::{PortDenyRule, PortRule};
use super::selector::EndpointSelector;
use crate::labels::{Label, LabelSet, SOURCE_UNSPEC};

/// One policy rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// The endpoints the rule applies to.
    pub endpoint_selector: EndpointSelector,
    /// Host policies are not supported.
    #[serde(default, skip_serializing)]
    pub node_selector: Option<Unsupported>,
    /// Allowed ingress; `None` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    /// Denied ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_deny: Option<Vec<IngressDenyRule>>,
    /// Allowed egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
    /// Denied egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_deny: Option<Vec<EgressDenyRule>>,
    /// Labels naming the rule (policy name and namespace for Kubernetes documents).
    #[serde(default, skip_serializing_if = "RuleLabels::is_empty")]
    pub labels: RuleLabels,
    /// Whether selected endpoints become default-deny in each direction.
    #[serde(default, skip_serializing_if = "DefaultDeny::is_unset")]
    pub enable_default_deny: DefaultDeny,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Policy logging is not supported.
    #[serde(default, skip_serializing)]
    pub log: Option<Unsupported>,
}

/// `enableDefaultDeny`: per direction, absent means "when the rule has
/// sections for that direction".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultDeny {
    /// Ingress default-deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<bool>,
    /// Egress default-deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<bool>,
}

impl DefaultDeny {
    fn is_unset(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }
}

/// An ingress section; `P` is [`PortRule`] for allow and [`PortDenyRule`] for deny.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressRuleOf<P> {
    /// Peer endpoints by labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_endpoints: Option<Vec<EndpointSelector>>,
    /// Deprecated requirements are not supported.
    #[serde(default, skip_serializing)]
    pub from_requires: Option<Unsupported>,
    /// Peer prefixes.
    #[serde(default, rename = "fromCIDR", skip_serializing_if = "Option::is_none")]
    pub from_cidr: Option<Vec<Cidr>>,
    /// Peer prefixes with exceptions.
    #[serde(
        default,
        rename = "fromCIDRSet",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_cidr_set: Option<Vec<CidrRule>>,
    /// Peer entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_entities: Option<Vec<Entity>>,
    /// Cloud groups are not supported.
    #[serde(default, skip_serializing)]
    pub from_groups: Option<Unsupported>,
    /// Node selectors are not supported.
    #[serde(default, skip_serializing)]
    pub from_nodes: Option<Unsupported>,
    /// DNS names select egress peers only, as in Cilium: refused by name.
    #[serde(default, rename = "fromFQDNs", skip_serializing)]
    pub from_fqdns: Option<IngressFqdns>,
    /// Ports; absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<P>>,
    /// ICMP types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmps: Option<Vec<IcmpRule>>,
    /// Mutual authentication is not supported.
    #[serde(default, skip_serializing)]
    pub authentication: Option<Unsupported>,
}

/// An egress section; `P` is [`PortRule`] for allow and [`PortDenyRule`] for deny.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRuleOf<P> {
    /// Peer endpoints by labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_endpoints: Option<Vec<EndpointSelector>>,
    /// Deprecated requirements are not supported.
    #[serde(default, skip_serializing)]
    pub to_requires: Option<Unsupported>,
    /// Peer prefixes.
    #[serde(default, rename = "toCIDR", skip_serializing_if = "Option::is_none")]
    pub to_cidr: Option<Vec<Cidr>>,
    /// Peer prefixes with exceptions.
    #[serde(default, rename = "toCIDRSet", skip_serializing_if = "Option::is_none")]
    pub to_cidr_set: Option<Vec<CidrRule>>,
    /// Peer entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_entities: Option<Vec<Entity>>,
    /// Services are not supported.
    #[serde(default, skip_serializing)]
    pub to_services: Option<Unsupported>,
    /// Cloud groups are not supported.
    #[serde(default, skip_serializing)]
    pub to_groups: Option<Unsupported>,
    /// Node selectors are not supported.
    #[serde(default, skip_serializing)]
    pub to_nodes: Option<Unsupported>,
    /// Ports; absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<P>>,
    /// Peers by DNS name, from the answers the DNS proxy let through (allow
    /// sections only; refused in `egressDeny`, as in Cilium).
    #[serde(default, rename = "toFQDNs", skip_serializing_if = "Option::is_none")]
    pub to_fqdns: Option<Vec<FqdnSelector>>,
    /// ICMP types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmps: Option<Vec<IcmpRule>>,
    /// Mutual authentication is not supported.
    #[serde(default, skip_serializing)]
    pub authentication: Option<Unsupported>,
}

/// An ingress allow section.
pub type IngressRule = IngressRuleOf<PortRule>;
/// An ingress deny section.
pub type IngressDenyRule = IngressRuleOf<PortDenyRule>;
/// An egress allow section.
pub type EgressRule = EgressRuleOf<PortRule>;
/// An egress deny section.
pub type EgressDenyRule = EgressRuleOf<PortDenyRule>;

/// The peers of a section, the same for ingress and egress.
#[derive(Debug, Clone, Copy)]
pub struct Peers<'a> {
    /// Endpoint selectors.
    pub endpoints: Option<&'a [EndpointSelector]>,
    /// Prefixes.
    pub cidrs: Option<&'a [Cidr]>,
    /// Prefixes with exceptions.
    pub cidr_sets: Option<&'a [CidrRule]>,
    /// Entities.
    pub entities: Option<&'a [Entity]>,
    /// DNS names (`toFQDNs`, egress only).
    pub fqdns: Option<&'a [FqdnSelector]>,
}

impl Peers<'_> {
    /// True when no peer field is present at all (an L4-only section).
    pub fn absent(&self) -> bool {
        self.endpoints.is_none()
            && self.cidrs.is_none()
            && self.cidr_sets.is_none()
            && self.entities.is_none()
            && self.fqdns.is_none()
    }
}

/// What the compiler needs from a section, allow or deny, ingress or egress.
pub trait Section {
    /// The port rule type.
    type Ports: super::ports::PortSpec;
    /// The peers.
    fn peers(&self) -> Peers<'_>;
    /// The port rules, if present.
    fn to_ports(&self) -> Option<&[Self::Ports]>;
    /// The ICMP rules, if present.
    fn icmps(&self) -> Option<&[IcmpRule]>;
}

impl<P: super::ports::PortSpec> Section for IngressRuleOf<P> {
    type Ports = P;

    fn peers(&self) -> Peers<'_> {
        Peers {
            endpoints: self.from_endpoints.as_deref(),
            cidrs: self.from_cidr.as_deref(),
            cidr_sets: self.from_cidr_set.as_deref(),
            entities: self.from_entities.as_deref(),
            fqdns: None,
        }
    }

    fn to_ports(&self) -> Option<&[P]> {
        self.to_ports.as_deref()
    }

    fn icmps(&self) -> Option<&[IcmpRule]> {
        self.icmps.as_deref()
    }
}

impl<P: super::ports::PortSpec> Section for EgressRuleOf<P> {
    type Ports = P;

    fn peers(&self) -> Peers<'_> {
        Peers {
            endpoints: self.to_endpoints.as_deref(),
            cidrs: self.to_cidr.as_deref(),
            cidr_sets: self.to_cidr_set.as_deref(),
            entities: self.to_entities.as_deref(),
            fqdns: self.to_fqdns.as_deref(),
        }
    }

    fn to_ports(&self) -> Option<&[P]> {
        self.to_ports.as_deref()
    }

    fn icmps(&self) -> Option<&[IcmpRule]> {
        self.icmps.as_deref()
    }
}

/// The labels of a rule. They read as `{key, value, source}` objects (as
/// Cilium prints them) or as `source:key=value` strings, and print as objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleLabels(pub LabelSet);

impl RuleLabels {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for RuleLabels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for RuleLabels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Object {
                key: String,
                #[serde(default)]
                value: String,
                #[serde(default)]
                source: Option<String>,
            },
        }
        let written = Vec::<Written>::deserialize(deserializer)?;
        let mut set = LabelSet::new();
        for item in written {
            let label = match item {
                Written::Text(text) => Label::parse(&text).map_err(de::Error::custom)?,
                Written::Object { key, value, source } => {
                    if key.is_empty() {
                        return Err(de::Error::custom("a rule label has an empty key"));
                    }
                    Label::new(
                        source.unwrap_or_else(|| SOURCE_UNSPEC.to_string()),
                        key,
                        value,
                    )
                }
            };
            set.insert(label);
        }
        Ok(RuleLabels(set))
    }
}
