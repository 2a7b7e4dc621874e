//! The policy repository: imported rules and their revision.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;

use super::api::Rule;
use super::compile::cidr_prefixes;
use super::document::{parse_policy, ParsedPolicy, POLICY_NAMESPACE_KEY, POLICY_NAME_KEY};
use super::PolicyError;
use crate::labels::{LabelSet, SOURCE_ANY, SOURCE_K8S, SOURCE_UNSPEC};

/// The rules in force and a revision number. As in Cilium, an empty
/// repository is at revision 1 and every change (an import, a delete that
/// removed something) adds one.
#[derive(Debug, Clone)]
pub struct PolicyRepository {
    rules: Vec<Rule>,
    revision: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The repository revision after the import.
    pub revision: u64,
    /// Number of rules added.
    pub added: usize,
    /// Number of older rules replaced (same labels).
    pub replaced: usize,
    /// Things accepted but not enforced.
    pub warnings: Vec<String>,
}

/// Which rules a delete removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteSelector {
    /// Every rule.
    All,
    /// The rules of a Kubernetes policy, by name, in one namespace or in any.
    Name {
        /// The policy name.
        name: String,
        /// The namespace; `None` matches every namespace (and cluster-wide policies).
        namespace: Option<String>,
    },
    /// Rules carrying all these labels; an `unspec` or `any` source matches every source.
    Labels(LabelSet),
}

impl fmt::Display for DeleteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteSelector::All => f.write_str("--all"),
            DeleteSelector::Name {
                name,
                namespace: Some(ns),
            } => write!(f, "{ns}/{name}"),
            DeleteSelector::Name {
                name,
                namespace: None,
            } => write!(f, "{name}"),
            DeleteSelector::Labels(labels) => write!(f, "labels {labels}"),
        }
    }
}

// === impl DeleteSelector ===

impl DeleteSelector {
    fn matches(&self, rule: &Rule) -> bool {
        let labels = &rule.labels.0;
        match self {
            DeleteSelector::All => true,
            DeleteSelector::Name { name, namespace } => {
                has_value(labels, SOURCE_K8S, POLICY_NAME_KEY, name)
                    && namespace
                        .as_ref()
                        .is_none_or(|ns| has_value(labels, SOURCE_K8S, POLICY_NAMESPACE_KEY, ns))
            }
            DeleteSelector::Labels(wanted) => wanted.iter().all(|w| {
                let source = if w.source == SOURCE_UNSPEC {
                    SOURCE_ANY
                } else {
                    w.source.as_str()
                };
                has_value(labels, source, &w.key, &w.value)
            }),
        }
    }
}

fn has_value(labels: &LabelSet, source: &str, key: &str, value: &str) -> bool {
    labels.get(source, key).is_some_and(|l| l.value == value)
}

// === impl PolicyRepository ===

impl Default for PolicyRepository {
    fn default() -> Self {
        PolicyRepository::new()
    }
}

impl PolicyRepository {
    /// An empty repository at revision 1.
    pub fn new() -> Self {
        PolicyRepository {
            rules: Vec::new(),
            revision: 1,
        }
    }

    /// A repository holding `rules` at `revision`, as saved before a restart.
    pub fn restored(rules: Vec<Rule>, revision: u64) -> Self {
        PolicyRepository {
            rules,
            revision: revision.max(1),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The rules in import order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Parses and imports policy text. The text is validated as a whole
    /// first: on error the repository is unchanged.
    pub fn import(&mut self, text: &str) -> Result<ImportOutcome, PolicyError> {
        let parsed = parse_policy(text)?;
        Ok(self.import_parsed(parsed))
    }

    /// Imports already parsed rules. Rules with labels replace the rules
    /// that carry exactly the same labels (re-importing a policy updates it);
    /// rules without labels are added.
    pub fn import_parsed(&mut self, parsed: ParsedPolicy) -> ImportOutcome {
        let replaced_labels: BTreeSet<&LabelSet> = parsed
            .rules
            .iter()
            .map(|r| &r.labels.0)
            .filter(|l| !l.is_empty())
            .collect();
        let before = self.rules.len();
        let kept: Vec<Rule> = self
            .rules
            .drain(..)
            .filter(|r| !replaced_labels.contains(&r.labels.0))
            .collect();
        let replaced = before - kept.len();
        self.rules = kept;
        let added = parsed.rules.len();
        self.rules.extend(parsed.rules);
        self.revision += 1;
        ImportOutcome {
            revision: self.revision,
            added,
            replaced,
            warnings: parsed.warnings,
        }
    }

    /// Deletes the selected rules and returns the new revision. Deleting
    /// nothing is an error, except for [`DeleteSelector::All`], which then
    /// leaves the revision as it is.
    pub fn delete(&mut self, selector: &DeleteSelector) -> Result<u64, PolicyError> {
        let before = self.rules.len();
        self.rules.retain(|r| !selector.matches(r));
        if self.rules.len() == before {
            if *selector == DeleteSelector::All {
                return Ok(self.revision);
            }
            return Err(PolicyError::NotFound(selector.to_string()));
        }
        self.revision += 1;
        Ok(self.revision)
    }

    /// The rules as `cilium policy get` prints them: indented JSON, which
    /// `policy import` reads back as the same rules.
    pub fn rules_json(&self) -> String {
        // Serializing plain data (strings, numbers, maps with string keys)
        // into a string cannot fail.
        let json = serde_json::to_string_pretty(&self.rules).unwrap_or_else(|_| "[]".to_string());
        escape_for_yaml(json)
    }

    /// Every prefix named by a rule (CIDRs and their exceptions).
    pub fn cidr_prefixes(&self) -> BTreeSet<IpNet> {
        cidr_prefixes(&self.rules)
    }
}

/// Escapes the characters that JSON leaves raw but a YAML reader (which `policy
/// import` is) takes otherwise: U+2028, U+2029 and NEL are line breaks in YAML (a
/// label value `a \u{2029} b` came back as `a\u{2029}b`), and DEL, the C1 controls and
/// the byte-order mark are not allowed raw. Outside strings JSON is ASCII, so only
/// string contents change, each to an equal JSON string.
fn escape_for_yaml(json: String) -> String {
    fn yaml_reads_differently(c: char) -> bool {
        matches!(
            c,
            '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
    }
    if !json.chars().any(yaml_reads_differently) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if yaml_reads_differently(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}
