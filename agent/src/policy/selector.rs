//! Endpoint selectors: `matchLabels` and `matchExpressions` over label sets.
//!
//! Selector keys may carry a source prefix (`k8s:org`, `reserved:host`,
//! `any:org`); a key without one matches labels of any source and is stored
//! with the `any:` prefix once a rule is imported, as Cilium prints it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{LabelSet, POD_NAMESPACE_KEY, SOURCE_ANY, SOURCE_K8S, SOURCE_RESERVED};

/// Key prefix of labels Cilium derives from namespace labels.
const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

/// Longest selector key: a Cilium source, a 253-character DNS prefix, `/` and a
/// 63-character name fit. The bound also keeps printed rules importable: YAML, which
/// `policy import` reads, refuses mapping keys over 1024 characters.
pub const MAX_SELECTOR_KEY_LEN: usize = 512;

/// A Kubernetes-style label selector. An empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSelector {
    /// Labels that must all be present with these values.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "match_labels"
    )]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRequirement")]
pub struct Requirement {
    /// The label key, possibly with a source prefix.
    pub key: String,
    /// How the key's value is tested.
    pub operator: Operator,
    /// The values for `In` and `NotIn`; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operators of `matchExpressions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The key is present with one of the values.
    In,
    /// The key is absent, or present with none of the values.
    NotIn,
    /// The key is present.
    Exists,
    /// The key is absent.
    DoesNotExist,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    key: String,
    operator: Operator,
    #[serde(default)]
    values: Vec<String>,
}

/// Checks a selector key: a Kubernetes label key (letters, digits, `-`, `_`, `.`,
/// `/`), possibly after a source and `:`, of at most [`MAX_SELECTOR_KEY_LEN`] bytes.
fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_SELECTOR_KEY_LEN {
        return Err(format!(
            "label key {:?}... is {} characters long; the limit is {MAX_SELECTOR_KEY_LEN}",
            key.chars().take(32).collect::<String>(),
            key.len()
        ));
    }
    match key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':')))
    {
        Some(bad) => Err(format!("invalid character {bad:?} in label key {key:?}")),
        None => Ok(()),
    }
}

fn match_labels<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let labels = BTreeMap::<String, String>::deserialize(deserializer)?;
    for key in labels.keys() {
        check_key(key).map_err(serde::de::Error::custom)?;
    }
    Ok(labels)
}

impl TryFrom<RawRequirement> for Requirement {
    type Error = String;

    fn try_from(raw: RawRequirement) -> Result<Self, Self::Error> {
        if raw.key.is_empty() {
            return Err("matchExpressions key must not be empty".to_string());
        }
        check_key(&raw.key)?;
        match raw.operator {
            Operator::In | Operator::NotIn if raw.values.is_empty() => Err(format!(
                "operator {:?} on key {:?} needs at least one value",
                raw.operator, raw.key
            )),
            Operator::Exists | Operator::DoesNotExist if !raw.values.is_empty() => Err(format!(
                "operator {:?} on key {:?} takes no values, got {:?}",
                raw.operator, raw.key, raw.values
            )),
            _ => Ok(Requirement {
                key: raw.key,
                operator: raw.operator,
                values: raw.values,
            }),
        }
    }
}

/// Splits a selector key into (source, key); without a prefix the source is `any`.
pub fn split_key(key: &str) -> (&str, &str) {
    match key.split_once(':') {
        Some((source, name)) if !source.is_empty() => (source, name),
        _ => (SOURCE_ANY, key),
    }
}

fn with_source(key: &str) -> String {
    let (source, name) = split_key(key);
    format!("{source}:{name}")
}

// === impl EndpointSelector ===

impl EndpointSelector {
    /// True when the selector has neither labels nor expressions.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// True when every label and expression of the selector holds for `labels`.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let labels_hold = self.match_labels.iter().all(|(key, value)| {
            let (source, name) = split_key(key);
            labels.iter().any(|l| {
                l.key == name && (source == SOURCE_ANY || l.source == source) && &l.value == value
            })
        });
        labels_hold
            && self.match_expressions.iter().all(|requirement| {
                let (source, name) = split_key(&requirement.key);
                let value = labels
                    .iter()
                    .find(|l| l.key == name && (source == SOURCE_ANY || l.source == source))
                    .map(|l| l.value.as_str());
                match requirement.operator {
                    Operator::In => {
                        value.is_some_and(|v| requirement.values.iter().any(|x| x == v))
                    }
                    Operator::NotIn => {
                        !value.is_some_and(|v| requirement.values.iter().any(|x| x == v))
                    }
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Gives every key a source prefix (`any:` when it has none).
    pub fn add_sources(&mut self) {
        self.match_labels = std::mem::take(&mut self.match_labels)
            .into_iter()
            .map(|(key, value)| (with_source(&key), value))
            .collect();
        for requirement in &mut self.match_expressions {
            requirement.key = with_source(&requirement.key);
        }
    }

    /// True when some key of the selector is `name` from `k8s` or any source.
    fn names_key(&self, wanted: impl Fn(&str) -> bool) -> bool {
        let keys = self
            .match_labels
            .keys()
            .chain(self.match_expressions.iter().map(|r| &r.key));
        keys.map(|k| split_key(k))
            .any(|(source, name)| (source == SOURCE_K8S || source == SOURCE_ANY) && wanted(name))
    }

    /// True when some key has the `reserved:` source.
    fn names_reserved(&self) -> bool {
        self.match_labels
            .keys()
            .chain(self.match_expressions.iter().map(|r| &r.key))
            .any(|k| split_key(k).0 == SOURCE_RESERVED)
    }

    /// Restricts the selector of a namespaced policy's subject endpoints to
    /// the policy's namespace, whatever it said.
    pub fn force_namespace(&mut self, namespace: &str) {
        self.match_labels.retain(|k, _| {
            let (source, name) = split_key(k);
            !(name == POD_NAMESPACE_KEY && (source == SOURCE_K8S || source == SOURCE_ANY))
        });
        self.match_labels.insert(
            format!("{SOURCE_K8S}:{POD_NAMESPACE_KEY}"),
            namespace.to_string(),
        );
    }

    /// Scopes a peer selector of a namespaced policy to the policy's
    /// namespace unless it names a namespace itself (or selects reserved
    /// identities, which have none).
    pub fn scope_peer_to_namespace(&mut self, namespace: &str) {
        if self.names_reserved()
            || self.names_key(|name| {
                name == POD_NAMESPACE_KEY || name.starts_with(NAMESPACE_LABELS_PREFIX)
            })
        {
            return;
        }
        self.match_labels.insert(
            format!("{SOURCE_K8S}:{POD_NAMESPACE_KEY}"),
            namespace.to_string(),
        );
    }

    /// Scopes a peer selector of a cluster-wide policy to pods (endpoints
    /// with a namespace label) unless it names a namespace or reserved labels.
    pub fn scope_peer_to_pods(&mut self) {
        if self.names_reserved() || self.names_key(|name| name == POD_NAMESPACE_KEY) {
            return;
        }
        self.match_expressions.push(Requirement {
            key: format!("{SOURCE_K8S}:{POD_NAMESPACE_KEY}"),
            operator: Operator::Exists,
            values: Vec::new(),
        });
    }
}
