//! Reading policy documents: CiliumNetworkPolicy and
//! CiliumClusterwideNetworkPolicy objects (YAML or JSON, one or more
//! `---`-separated documents) and bare rule lists as `cilium policy import`
//! takes them.
//!
//! Rules come out normalized the way Cilium stores them: selector keys carry
//! a source (`any:` by default), namespaced policies select and peer within
//! their namespace, Kubernetes policies carry their name labels, and
//! `enableDefaultDeny` is filled in.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::api::Rule;
use super::kubernetes::{KubernetesObject, Scope};
use super::limits::check_policy_text;
use super::ports::{PortRule, PortSpec};
use super::selector::EndpointSelector;
use super::PolicyError;
use crate::labels::{Label, SOURCE_K8S};

/// Label key naming the policy a rule came from.
pub const POLICY_NAME_KEY: &str = "io.cilium.k8s.policy.name";
/// Label key naming the namespace of the policy a rule came from.
pub const POLICY_NAMESPACE_KEY: &str = "io.cilium.k8s.policy.namespace";
/// Label key naming the kind of object a rule came from.
pub const POLICY_DERIVED_FROM_KEY: &str = "io.cilium.k8s.policy.derived-from";
/// Label key carrying the object's UID.
pub const POLICY_UID_KEY: &str = "io.cilium.k8s.policy.uid";
/// Namespace of a CiliumNetworkPolicy that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The rules of a document, ready to import, and warnings for the user.
#[derive(Debug, Clone, Default)]
pub struct ParsedPolicy {
    /// Normalized rules, in document order.
    pub rules: Vec<Rule>,
    /// Things accepted but not enforced (L7 rules other than HTTP).
    pub warnings: Vec<String>,
}

/// Parses policy text (YAML or JSON). Nothing is returned unless every
/// document in the text is valid. The text is first checked against the
/// limits of [`check_policy_text`]. Parsing takes CPU time in proportion to
/// the text: callers run it outside any lock and off async workers.
pub fn parse_policy(text: &str) -> Result<ParsedPolicy, PolicyError> {
    check_policy_text(text)?;
    let mut parsed = ParsedPolicy::default();
    for document in serde_yaml::Deserializer::from_str(text) {
        match Document::deserialize(document).map_err(PolicyError::from_yaml)? {
            Document::Empty => {}
            Document::Rules(rules) => {
                for (i, rule) in rules.into_iter().enumerate() {
                    let path = format!("[{i}]");
                    parsed.push(normalize(rule, &Scope::Bare, &path)?);
                }
            }
            Document::Kubernetes(object) => {
                let scope = object.scope();
                match (object.spec, object.specs) {
                    (Some(rule), None) => parsed.push(normalize(rule, &scope, "spec")?),
                    (None, Some(rules)) if !rules.is_empty() => {
                        for (i, rule) in rules.into_iter().enumerate() {
                            parsed.push(normalize(rule, &scope, &format!("specs[{i}]"))?);
                        }
                    }
                    (Some(_), Some(_)) => {
                        return Err(PolicyError::invalid(format!(
                            "{} {}: has both spec and specs; use one",
                            object.kind, object.metadata.name
                        )))
                    }
                    _ => {
                        return Err(PolicyError::invalid(format!(
                            "{} {}: has neither spec nor specs",
                            object.kind, object.metadata.name
                        )))
                    }
                }
            }
        }
    }
    if parsed.rules.is_empty() {
        return Err(PolicyError::invalid(
            "the policy document holds no rules".to_string(),
        ));
    }
    Ok(parsed)
}

impl ParsedPolicy {
    fn push(&mut self, (rule, warnings): (Rule, Vec<String>)) {
        self.rules.push(rule);
        self.warnings.extend(warnings);
    }
}

/// One YAML/JSON document: a rule list, a Kubernetes object, or nothing.
enum Document {
    Empty,
    Rules(Vec<Rule>),
    Kubernetes(Box<KubernetesObject>),
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocumentVisitor;

        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = Document;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CiliumNetworkPolicy object or a list of rules")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Document, A::Error> {
                Vec::<Rule>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(Document::Rules)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Document, A::Error> {
                KubernetesObject::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|object| Document::Kubernetes(Box::new(object)))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document::Empty)
            }

            fn visit_none<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document::Empty)
            }
        }

        deserializer.deserialize_any(DocumentVisitor)
    }
}

/// Normalizes one rule; `path` names it in warnings and errors.
fn normalize(
    mut rule: Rule,
    scope: &Scope,
    path: &str,
) -> Result<(Rule, Vec<String>), PolicyError> {
    let mut warnings = Vec::new();

    rule.endpoint_selector.add_sources();
    if let Scope::Namespaced { namespace, .. } = scope {
        if !selects_reserved(&rule.endpoint_selector) {
            rule.endpoint_selector.force_namespace(namespace);
        }
    }

    let scope_peer = |selector: &mut EndpointSelector| {
        selector.add_sources();
        match scope {
            Scope::Bare => {}
            Scope::Namespaced { namespace, .. } => selector.scope_peer_to_namespace(namespace),
            Scope::Clusterwide { .. } => selector.scope_peer_to_pods(),
        }
    };
    for (i, section) in rule.ingress.iter_mut().flatten().enumerate() {
        section
            .from_endpoints
            .iter_mut()
            .flatten()
            .for_each(&scope_peer);
        warn_l7(
            section.to_ports.as_deref(),
            &format!("{path}.ingress[{i}]"),
            &mut warnings,
        );
    }
    for section in rule.ingress_deny.iter_mut().flatten() {
        section
            .from_endpoints
            .iter_mut()
            .flatten()
            .for_each(&scope_peer);
    }
    for (i, section) in rule.egress.iter_mut().flatten().enumerate() {
        check_fqdn_peers(section, &format!("{path}.egress[{i}]"))?;
        section
            .to_endpoints
            .iter_mut()
            .flatten()
            .for_each(&scope_peer);
        warn_l7(
            section.to_ports.as_deref(),
            &format!("{path}.egress[{i}]"),
            &mut warnings,
        );
    }
    for (i, section) in rule.egress_deny.iter_mut().flatten().enumerate() {
        if section.to_fqdns.is_some() {
            return Err(PolicyError::invalid(format!(
                "{path}.egressDeny[{i}].toFQDNs: not supported in deny rules (as in Cilium); \
                 deny by address with toCIDR, or allow only the names wanted with toFQDNs"
            )));
        }
        section
            .to_endpoints
            .iter_mut()
            .flatten()
            .for_each(&scope_peer);
    }

    add_policy_labels(&mut rule, scope);

    let has_ingress = has_sections(&rule.ingress) || has_sections(&rule.ingress_deny);
    let has_egress = has_sections(&rule.egress) || has_sections(&rule.egress_deny);
    rule.enable_default_deny.ingress.get_or_insert(has_ingress);
    rule.enable_default_deny.egress.get_or_insert(has_egress);

    Ok((rule, warnings))
}

/// As Cilium: `toFQDNs` selects its peers alone; another peer field in the same
/// section is refused, naming both.
fn check_fqdn_peers(section: &super::api::EgressRule, path: &str) -> Result<(), PolicyError> {
    if section.to_fqdns.is_none() {
        return Ok(());
    }
    let others = [
        ("toEndpoints", section.to_endpoints.is_some()),
        ("toCIDR", section.to_cidr.is_some()),
        ("toCIDRSet", section.to_cidr_set.is_some()),
        ("toEntities", section.to_entities.is_some()),
    ];
    match others.iter().find(|(_, present)| *present) {
        Some((other, _)) => Err(PolicyError::invalid(format!(
            "{path}: combining toFQDNs and {other} in one egress rule is not supported (as in Cilium); \
             write two egress rules"
        ))),
        None => Ok(()),
    }
}

fn has_sections<T>(sections: &Option<Vec<T>>) -> bool {
    sections.as_ref().is_some_and(|s| !s.is_empty())
}

fn selects_reserved(selector: &EndpointSelector) -> bool {
    selector
        .match_labels
        .keys()
        .chain(selector.match_expressions.iter().map(|r| &r.key))
        .any(|key| key.starts_with("reserved:"))
}

fn add_policy_labels(rule: &mut Rule, scope: &Scope) {
    let (kind, name, namespace, uid) = match scope {
        Scope::Bare => return,
        Scope::Namespaced {
            name,
            namespace,
            uid,
        } => ("CiliumNetworkPolicy", name, Some(namespace), uid),
        Scope::Clusterwide { name, uid } => ("CiliumClusterwideNetworkPolicy", name, None, uid),
    };
    let labels = &mut rule.labels.0;
    labels.insert(Label::new(SOURCE_K8S, POLICY_DERIVED_FROM_KEY, kind));
    labels.insert(Label::new(SOURCE_K8S, POLICY_NAME_KEY, name.as_str()));
    if let Some(namespace) = namespace {
        labels.insert(Label::new(
            SOURCE_K8S,
            POLICY_NAMESPACE_KEY,
            namespace.as_str(),
        ));
    }
    if let Some(uid) = uid {
        labels.insert(Label::new(SOURCE_K8S, POLICY_UID_KEY, uid.as_str()));
    }
}

/// Warns about L7 rules that are accepted but not enforced: HTTP rules go
/// through the proxy (`policy::redirect`) when their port is a TCP port number,
/// DNS rules through the DNS proxy when their port is a TCP or UDP port number;
/// `kafka` and generic (`l7proto`/`l7`) rules are not enforced and their port is
/// allowed at L4.
fn warn_l7(port_rules: Option<&[PortRule]>, path: &str, warnings: &mut Vec<String>) {
    for (i, port_rule) in port_rules.unwrap_or_default().iter().enumerate() {
        let Some(l7) = port_rule.l7() else {
            continue;
        };
        let mut kinds = Vec::new();
        let tcp_port = port_rule
            .ports()
            .iter()
            .flat_map(|p| p.expand())
            .any(|(port, protocol)| port != 0 && protocol == super::ports::proto::TCP);
        if !l7.http.is_empty() && !tcp_port {
            kinds.push("http (no TCP port)");
        }
        if !l7.kafka.is_empty() {
            kinds.push("kafka");
        }
        let dns_port = port_rule
            .ports()
            .iter()
            .flat_map(|p| p.expand())
            .any(|(port, protocol)| {
                port != 0
                    && (protocol == super::ports::proto::TCP
                        || protocol == super::ports::proto::UDP)
            });
        if !l7.dns.is_empty() && !dns_port {
            kinds.push("dns (no TCP or UDP port)");
        }
        if !l7.l7proto.is_empty() || !l7.l7.is_empty() {
            kinds.push("l7proto");
        }
        if kinds.is_empty() {
            continue;
        }
        let ports: Vec<String> = port_rule
            .ports()
            .iter()
            .map(|p| {
                let port = p.port.map_or(0, |p| p.0);
                match p.end_port {
                    Some(end) => format!("{port}-{end}/{}", p.protocol.name()),
                    None => format!("{port}/{}", p.protocol.name()),
                }
            })
            .collect();
        warnings.push(format!(
            "{path}.toPorts[{i}].rules: {} rules are not enforced; {} allowed at L4",
            kinds.join(", "),
            if ports.is_empty() {
                "all ports".to_string()
            } else {
                ports.join(", ")
            }
        ));
    }
}
