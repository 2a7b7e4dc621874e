//! Cilium labels: `source:key=value` triples and sorted label sets.
//!
//! A label names where it came from (its source: `k8s`, `reserved`, `cidr`,
//! `unspec`, ...), a key and an optional value. Printed, it reads
//! `k8s:class=xwing`, or `reserved:host` when the value is empty. Label sets
//! order their labels by that printed form, as `cilium endpoint list` does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Label source of Kubernetes pod labels.
pub const SOURCE_K8S: &str = "k8s";
/// Label source of the agent's reserved identities (`reserved:host`, ...).
pub const SOURCE_RESERVED: &str = "reserved";
/// Label source of CIDR identities (`cidr:10.0.0.0/8`).
pub const SOURCE_CIDR: &str = "cidr";
/// Label source used when a label string names none.
pub const SOURCE_UNSPEC: &str = "unspec";
/// Label source that matches every source; only meaningful in selectors.
pub const SOURCE_ANY: &str = "any";
/// Label source of container runtime labels.
pub const SOURCE_CONTAINER: &str = "container";

/// Key of the label carrying an endpoint's Kubernetes namespace.
pub const POD_NAMESPACE_KEY: &str = "io.kubernetes.pod.namespace";
/// Key of the label carrying the cluster name of an endpoint.
pub const POLICY_CLUSTER_KEY: &str = "io.cilium.k8s.policy.cluster";
/// Cluster name used when none is configured.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// Errors found while parsing a label string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The label has an empty key, as in `k8s:=x` or `=x`.
    #[error("label {0:?} has an empty key")]
    EmptyKey(String),
    /// The label has an empty source before the colon, as in `:app=x`.
    #[error("label {0:?} has an empty source before ':'")]
    EmptySource(String),
}

/// One label: a source, a key and a value (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Label {
    /// The key, without its source prefix.
    pub key: String,
    /// The value; empty for labels such as `reserved:host`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Where the label came from (`k8s`, `reserved`, ...).
    pub source: String,
}

// === impl Label ===

impl Label {
    /// Builds a label from its three parts.
    pub fn new(
        source: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Label {
            source: source.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    /// Builds a `k8s:` label.
    pub fn k8s(key: impl Into<String>, value: impl Into<String>) -> Self {
        Label::new(SOURCE_K8S, key, value)
    }

    /// Builds a `reserved:` label with an empty value.
    pub fn reserved(key: impl Into<String>) -> Self {
        Label::new(SOURCE_RESERVED, key, "")
    }

    /// Parses `source:key=value`, `source:key`, `key=value` or `key`.
    ///
    /// The source is the text before the first `:` of the part before the
    /// first `=`; without one, `default_source` is used (`unspec` for
    /// endpoint labels, `any` for selector keys).
    pub fn parse_with_default(text: &str, default_source: &str) -> Result<Label, LabelError> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, value),
            None => (text, ""),
        };
        let (source, key) = match name.split_once(':') {
            Some(("", _)) => return Err(LabelError::EmptySource(text.to_string())),
            Some((source, key)) => (source, key),
            None => (default_source, name),
        };
        if key.is_empty() {
            return Err(LabelError::EmptyKey(text.to_string()));
        }
        Ok(Label::new(source, key, value))
    }

    /// Parses a label string whose source defaults to `unspec`.
    pub fn parse(text: &str) -> Result<Label, LabelError> {
        Label::parse_with_default(text, SOURCE_UNSPEC)
    }

    /// The printed parts in order, used to sort labels by their printed form
    /// without building strings.
    fn printed_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let value_part: &[u8] = if self.value.is_empty() { b"" } else { b"=" };
        self.source
            .bytes()
            .chain(std::iter::once(b':'))
            .chain(self.key.bytes())
            .chain(value_part.iter().copied())
            .chain(self.value.bytes())
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.source, self.key)
        } else {
            write!(f, "{}:{}={}", self.source, self.key, self.value)
        }
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Label {
    /// Labels sort by their printed form (`source:key=value`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.printed_bytes().cmp(other.printed_bytes())
    }
}

/// A set of labels with at most one label per (source, key), kept sorted by
/// printed form. Two sets with the same labels are equal and hash the same,
/// which makes a set usable as the key of an identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet {
    labels: Vec<Label>,
}

// === impl LabelSet ===

impl LabelSet {
    /// An empty set.
    pub fn new() -> Self {
        LabelSet::default()
    }

    /// Builds a set from labels; a later label replaces an earlier one with
    /// the same source and key.
    pub fn from_labels(labels: impl IntoIterator<Item = Label>) -> Self {
        let mut set = LabelSet::new();
        for label in labels {
            set.insert(label);
        }
        set
    }

    /// Parses a list of label strings (each as [`Label::parse`]).
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, LabelError> {
        let mut set = LabelSet::new();
        for text in texts {
            set.insert(Label::parse(text)?);
        }
        Ok(set)
    }

    /// The security labels of a pod endpoint: its pod labels with the `k8s:`
    /// source, plus `k8s:io.kubernetes.pod.namespace=<namespace>` and
    /// `k8s:io.cilium.k8s.policy.cluster=<cluster>`.
    pub fn for_pod(pod_labels: &BTreeMap<String, String>, namespace: &str, cluster: &str) -> Self {
        let mut set = LabelSet::from_labels(
            pod_labels
                .iter()
                .map(|(key, value)| Label::k8s(key.clone(), value.clone())),
        );
        set.insert(Label::k8s(POD_NAMESPACE_KEY, namespace));
        set.insert(Label::k8s(POLICY_CLUSTER_KEY, cluster));
        set
    }

    /// Adds a label, replacing any label with the same source and key.
    pub fn insert(&mut self, label: Label) {
        self.labels
            .retain(|l| !(l.source == label.source && l.key == label.key));
        let at = self.labels.partition_point(|l| l < &label);
        self.labels.insert(at, label);
    }

    /// The labels in printed order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no label.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label with this key from this source; `any` matches every source.
    pub fn get(&self, source: &str, key: &str) -> Option<&Label> {
        self.labels
            .iter()
            .find(|l| l.key == key && (source == SOURCE_ANY || l.source == source))
    }

    /// True when the set has a label with this source and key, whatever its value.
    pub fn has(&self, source: &str, key: &str) -> bool {
        self.get(source, key).is_some()
    }

    /// The printed labels, one string each, in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.labels.iter().map(Label::to_string).collect()
    }
}

impl fmt::Display for LabelSet {
    /// Prints `[k8s:class=xwing k8s:org=alliance]`, as Cilium prints label arrays.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, label) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{label}")?;
        }
        f.write_str("]")
    }
}

impl Serialize for LabelSet {
    /// A set serializes as a list of printed labels.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.labels.iter().map(Label::to_string))
    }
}

impl<'de> Deserialize<'de> for LabelSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        LabelSet::parse(texts.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;

    fn into_iter(self) -> Self::IntoIter {
        self.labels.iter()
    }
}

impl FromIterator<Label> for LabelSet {
    fn from_iter<T: IntoIterator<Item = Label>>(iter: T) -> Self {
        LabelSet::from_labels(iter)
    }
}

#[cfg(test)]
mod tests;
