//! CiliumNetworkPolicy `toPorts[].rules.http[]`, compiled once per policy revision
//! and evaluated per request.
//!
//! Semantics, as Cilium gives them to Envoy:
//! - `method`, `path` and `host` are regular expressions matched against the
//!   whole request method, the whole request target (`:path`, path and query) and
//!   the whole `Host` (`:authority`): they are anchored at both ends. An empty
//!   field places no constraint.
//! - `headers` entries are `Name` (the header must be present) or `Name: value`
//!   / `Name value` (present with exactly that value).
//! - `headerMatches` entries compare a header with a value; on mismatch the
//!   action decides: none fails the rule, `LOG` lets the rule match and reports
//!   the mismatch, `ADD` adds the header with the value, `DELETE` removes the
//!   mismatching header, `REPLACE` sets the header to the value. Values from
//!   Kubernetes secrets are refused (there is no secret store on a node here).
//! - A request is allowed when any rule matches; the first matching rule's header
//!   edits are applied. `[{}]` (one empty rule) allows every request; no rule
//!   at all allows none.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// Compiled size limit of one rule regex: a policy cannot make the proxy build
/// huge automata (the regex crate's default is 10 MiB per regex).
pub const MAX_RULE_REGEX_SIZE: usize = 1 << 20;

/// One `rules.http[]` entry as written in a CiliumNetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRuleSpec {
    /// Method regex (`GET`, `POST|PUT`); empty matches any.
    #[serde(default)]
    pub method: String,
    /// Path regex matched against the request target (path and query); empty matches any.
    #[serde(default)]
    pub path: String,
    /// Host regex matched against the `Host` header; empty matches any.
    #[serde(default)]
    pub host: String,
    /// Required headers: `Name`, or `Name: value` for an exact value.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Header comparisons with mismatch actions.
    #[serde(default)]
    pub header_matches: Vec<HeaderMatchSpec>,
}

/// One `headerMatches[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatchSpec {
    /// Header name.
    pub name: String,
    /// The expected value; empty means "present".
    #[serde(default)]
    pub value: String,
    /// What to do on mismatch; none fails the rule.
    #[serde(default)]
    pub mismatch: Option<MismatchAction>,
    /// A Kubernetes secret holding the value (refused by [`HttpPolicy::compile`]).
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// The action on a header mismatch (Cilium's `MismatchAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MismatchAction {
    Log,
    Add,
    Delete,
    Replace,
}

/// A Kubernetes secret reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub namespace: String,
    pub name: String,
}

/// A rule that cannot be compiled; names the rule and the bad value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("http rule {rule}: invalid {field} regex {pattern:?}: {reason}")]
    Regex {
        rule: usize,
        field: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("http rule {rule}: invalid header name {name:?} in {field}")]
    HeaderName {
        rule: usize,
        field: &'static str,
        name: String,
    },
    #[error("http rule {rule}: invalid header value {value:?} for {name:?} in {field}")]
    HeaderValue {
        rule: usize,
        field: &'static str,
        name: String,
        value: String,
    },
    #[error(
        "http rule {rule}: headerMatches {name:?} takes its value from secret {secret:?}; \
         secrets are not supported, give the value"
    )]
    Secret {
        rule: usize,
        name: String,
        secret: String,
    },
    #[error(
        "http rule {rule}: headerMatches {name:?} with mismatch action {action:?} needs a value \
         to add or replace"
    )]
    MissingValue {
        rule: usize,
        name: String,
        action: MismatchAction,
    },
}

/// An HTTP policy: the rules of one redirect, compiled.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    method: Option<Pattern>,
    path: Option<Pattern>,
    host: Option<Pattern>,
    headers: Vec<HeaderCheck>,
    header_matches: Vec<CompiledHeaderMatch>,
}

/// An anchored regular expression; one without metacharacters (`POST`,
/// `/v1/request-landing`) is compared as the string it is.
#[derive(Debug, Clone)]
enum Pattern {
    Literal(String),
    Regex(Regex),
}

impl Pattern {
    fn is_match(&self, text: &str) -> bool {
        match self {
            Pattern::Literal(literal) => literal == text,
            Pattern::Regex(regex) => regex.is_match(text),
        }
    }
}

#[derive(Debug, Clone)]
struct HeaderCheck {
    name: HeaderName,
    /// None: presence only.
    value: Option<HeaderValue>,
}

#[derive(Debug, Clone)]
struct CompiledHeaderMatch {
    check: HeaderCheck,
    mismatch: Option<MismatchAction>,
}

/// A header mismatch that a rule's action resolved (the request still matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMismatch {
    pub name: String,
    pub action: MismatchAction,
}

/// The outcome of evaluating a request against a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVerdict {
    /// The index of the first matching rule; None: denied.
    pub matched_rule: Option<usize>,
    /// Header mismatches the matching rule's actions resolved (logged, added,
    /// deleted or replaced), in rule order.
    pub mismatches: Vec<HeaderMismatch>,
}

impl RuleVerdict {
    pub fn allowed(&self) -> bool {
        self.matched_rule.is_some()
    }

    /// The matching rule changed the request's fields (ADD, REPLACE or DELETE).
    pub fn edits_headers(&self) -> bool {
        self.mismatches
            .iter()
            .any(|mismatch| mismatch.action != MismatchAction::Log)
    }
}

/// The parts of a request a policy looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The request target's path and query (`/v1/x?y=1`), as Envoy's `:path`.
    pub path: &'a str,
    /// The `Host` header (or the target's authority); empty when absent.
    pub host: &'a str,
}

// === impl HttpPolicy ===

impl HttpPolicy {
    /// Compiles `rules.http`; a bad regex, header name or value, or an
    /// unsupported secret reference is refused with the rule's index and the value.
    pub fn compile(specs: &[HttpRuleSpec]) -> Result<HttpPolicy, RuleError> {
        let rules = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| CompiledRule::compile(index, spec))
            .collect::<Result<_, _>>()?;
        Ok(HttpPolicy { rules })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rule: every request is denied.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Some rule looks at header fields (`headers` or `headerMatches`); without
    /// one, [`HttpPolicy::evaluate`] never reads or edits the map it is given.
    pub fn reads_headers(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| !rule.headers.is_empty() || !rule.header_matches.is_empty())
    }

    /// Evaluates a request. On a match, the matching rule's header edits are
    /// applied to `headers`; on a denial `headers` is left as it was.
    pub fn evaluate(&self, request: RequestParts<'_>, headers: &mut HeaderMap) -> RuleVerdict {
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches_request(request, headers) {
                continue;
            }
            let Some(edits) = rule.header_match_edits(headers) else {
                continue;
            };
            let mismatches = edits
                .iter()
                .map(|edit| HeaderMismatch {
                    name: edit.check.name.as_str().to_owned(),
                    action: edit.action,
                })
                .collect();
            for edit in edits {
                edit.apply(headers);
            }
            return RuleVerdict {
                matched_rule: Some(index),
                mismatches,
            };
        }
        RuleVerdict {
            matched_rule: None,
            mismatches: Vec::new(),
        }
    }
}

// === impl CompiledRule ===

impl CompiledRule {
    fn compile(rule: usize, spec: &HttpRuleSpec) -> Result<CompiledRule, RuleError> {
        let regex = |field: &'static str, pattern: &str| -> Result<Option<Pattern>, RuleError> {
            if pattern.is_empty() {
                return Ok(None);
            }
            // Outside a class, only these characters are not themselves.
            if !pattern.contains([
                '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
            ]) {
                return Ok(Some(Pattern::Literal(pattern.to_owned())));
            }
            RegexBuilder::new(&format!("^(?:{pattern})$"))
                .size_limit(MAX_RULE_REGEX_SIZE)
                .build()
                .map(|regex| Some(Pattern::Regex(regex)))
                .map_err(|error| RuleError::Regex {
                    rule,
                    field,
                    pattern: pattern.to_owned(),
                    reason: error.to_string(),
                })
        };
        let headers = spec
            .headers
            .iter()
            .map(|entry| parse_header_entry(rule, entry))
            .collect::<Result<_, _>>()?;
        let header_matches = spec
            .header_matches
            .iter()
            .map(|entry| compile_header_match(rule, entry))
            .collect::<Result<_, _>>()?;
        Ok(CompiledRule {
            method: regex("method", &spec.method)?,
            path: regex("path", &spec.path)?,
            host: regex("host", &spec.host)?,
            headers,
            header_matches,
        })
    }

    fn matches_request(&self, request: RequestParts<'_>, headers: &HeaderMap) -> bool {
        let field = |pattern: &Option<Pattern>, text: &str| {
            pattern.as_ref().is_none_or(|p| p.is_match(text))
        };
        field(&self.method, request.method)
            && field(&self.path, request.path)
            && field(&self.host, request.host)
            && self.headers.iter().all(|check| check.matches(headers))
    }

    /// The edits the header matches ask for, or None when one fails the rule.
    fn header_match_edits(&self, headers: &HeaderMap) -> Option<Vec<HeaderEdit<'_>>> {
        let mut edits = Vec::new();
        for header_match in &self.header_matches {
            if header_match.check.matches(headers) {
                continue;
            }
            let action = header_match.mismatch?;
            // Deleting a header that is absent changes nothing and is no mismatch to report.
            if action == MismatchAction::Delete && !headers.contains_key(&header_match.check.name) {
                continue;
            }
            edits.push(HeaderEdit {
                check: &header_match.check,
                action,
            });
        }
        Some(edits)
    }
}

struct HeaderEdit<'a> {
    check: &'a HeaderCheck,
    action: MismatchAction,
}

impl HeaderEdit<'_> {
    fn apply(&self, headers: &mut HeaderMap) {
        let name = self.check.name.clone();
        match (self.action, &self.check.value) {
            (MismatchAction::Log, _) => {}
            (MismatchAction::Add, Some(value)) => {
                headers.append(name, value.clone());
            }
            (MismatchAction::Replace, Some(value)) => {
                headers.insert(name, value.clone());
            }
            (MismatchAction::Delete, _) => {
                headers.remove(name);
            }
            // compile() refuses ADD and REPLACE without a value.
            (MismatchAction::Add | MismatchAction::Replace, None) => {}
        }
    }
}

// === impl HeaderCheck ===

impl HeaderCheck {
    /// Present (and, with a value, equal to it; several fields of the same name
    /// are compared joined by commas, as Envoy does).
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let Some(expected) = &self.value else {
            return true;
        };
        let Some(second) = values.next() else {
            return first == expected;
        };
        let mut joined = Vec::with_capacity(expected.len());
        for value in [first, second].into_iter().chain(values) {
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(value.as_bytes());
        }
        joined == expected.as_bytes()
    }
}

/// `Name`, `Name: value` or `Name value` (Cilium splits at the first space and
/// trims the name's trailing colons).
fn parse_header_entry(rule: usize, entry: &str) -> Result<HeaderCheck, RuleError> {
    let (name, value) = match entry.split_once(' ') {
        Some((name, value)) => (name.trim_end_matches(':'), Some(value)),
        None => (entry, None),
    };
    header_check(rule, "headers", name, value)
}

fn compile_header_match(
    rule: usize,
    spec: &HeaderMatchSpec,
) -> Result<CompiledHeaderMatch, RuleError> {
    if let Some(secret) = &spec.secret {
        return Err(RuleError::Secret {
            rule,
            name: spec.name.clone(),
            secret: format!("{}/{}", secret.namespace, secret.name),
        });
    }
    let value = (!spec.value.is_empty()).then_some(spec.value.as_str());
    if let Some(action @ (MismatchAction::Add | MismatchAction::Replace)) = spec.mismatch {
        if value.is_none() {
            return Err(RuleError::MissingValue {
                rule,
                name: spec.name.clone(),
                action,
            });
        }
    }
    Ok(CompiledHeaderMatch {
        check: header_check(rule, "headerMatches", &spec.name, value)?,
        mismatch: spec.mismatch,
    })
}

fn header_check(
    rule: usize,
    field: &'static str,
    name: &str,
    value: Option<&str>,
) -> Result<HeaderCheck, RuleError> {
    let header_name = HeaderName::try_from(name).map_err(|_| RuleError::HeaderName {
        rule,
        field,
        name: name.to_owned(),
    })?;
    let value = value
        .map(|value| {
            HeaderValue::try_from(value).map_err(|_| RuleError::HeaderValue {
                rule,
                field,
                name: name.to_owned(),
                value: value.to_owned(),
            })
        })
        .transpose()?;
    Ok(HeaderCheck {
        name: header_name,
        value,
    })
}

#[cfg(test)]
mod tests;
