//! Kubernetes label selectors over Cilium labels, as `hubble observe --label` takes them.
//!
//! A selector is a comma-separated list of requirements (`key`, `!key`, `key=value`,
//! `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key>1`, `key<1`).
//! Keys may carry a Cilium label source (`k8s:app`); a key without one matches labels of
//! any source. Flow labels are `source:key=value` strings (`k8s:org=empire`).

use super::FilterError;

#[derive(Debug, Clone, PartialEq)]
enum Operator {
    Exists,
    DoesNotExist,
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    /// `None` matches any source.
    source: Option<String>,
    key: String,
    op: Operator,
}

/// A compiled label selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits a flow label `source:key=value` into its parts.
pub fn split_label(label: &str) -> (&str, &str, &str) {
    let (source, rest) = match label.split_once(':') {
        Some((source, rest)) if !source.contains('=') => (source, rest),
        _ => ("unspec", label),
    };
    let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
    (source, key, value)
}

impl LabelSelector {
    /// Parses `selector`, naming it in the error when it is not valid.
    pub fn parse(selector: &str) -> Result<Self, FilterError> {
        let invalid = |why: &str| FilterError::InvalidLabelSelector {
            selector: selector.to_string(),
            reason: why.to_string(),
        };
        let mut requirements = Vec::new();
        for part in split_top_level(selector) {
            let part = part.trim();
            if part.is_empty() {
                if selector.trim().is_empty() {
                    break;
                }
                return Err(invalid("empty requirement"));
            }
            requirements.push(parse_requirement(part).map_err(|why| invalid(&why))?);
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` (flow label strings) satisfy every requirement.
    pub fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

fn split_top_level(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
}

fn parse_key(raw: &str) -> Result<(Option<String>, String), String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("missing label key".into());
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':')))
    {
        return Err(format!("invalid character {bad:?} in label key {raw:?}"));
    }
    Ok(match raw.split_once(':') {
        Some(("any", key)) => (None, key.to_string()),
        Some((source, key)) => (Some(source.to_string()), key.to_string()),
        None => (None, raw.to_string()),
    })
}

fn check_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised value list, found {rest:?}"))?;
    inner.split(',').map(check_value).collect()
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let (source, key) = parse_key(key)?;
        return Ok(Requirement {
            source,
            key,
            op: Operator::DoesNotExist,
        });
    }
    let op_at = part.find(['=', '!', '<', '>', ' ', '\t']);
    let Some(op_at) = op_at else {
        let (source, key) = parse_key(part)?;
        return Ok(Requirement {
            source,
            key,
            op: Operator::Exists,
        });
    };
    let (source, key) = parse_key(&part[..op_at])?;
    let rest = part[op_at..].trim_start();
    let op = if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        Operator::In(vec![check_value(v)?])
    } else if let Some(v) = rest.strip_prefix("!=") {
        Operator::NotIn(vec![check_value(v)?])
    } else if let Some(v) = rest.strip_prefix("notin") {
        Operator::NotIn(parse_set(v)?)
    } else if let Some(v) = rest.strip_prefix("in") {
        Operator::In(parse_set(v)?)
    } else if let Some(v) = rest.strip_prefix('>') {
        Operator::GreaterThan(
            v.trim()
                .parse()
                .map_err(|_| format!("{:?} is not an integer", v.trim()))?,
        )
    } else if let Some(v) = rest.strip_prefix('<') {
        Operator::LessThan(
            v.trim()
                .parse()
                .map_err(|_| format!("{:?} is not an integer", v.trim()))?,
        )
    } else if rest.is_empty() {
        Operator::Exists
    } else {
        return Err(format!("unknown operator in {part:?}"));
    };
    Ok(Requirement { source, key, op })
}

impl Requirement {
    fn values<'a, S: AsRef<str>>(&'a self, labels: &'a [S]) -> impl Iterator<Item = &'a str> + 'a {
        labels.iter().filter_map(move |label| {
            let (source, key, value) = split_label(label.as_ref());
            let source_ok = self.source.as_deref().is_none_or(|s| s == source);
            (source_ok && key == self.key).then_some(value)
        })
    }

    fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        let mut values = self.values(labels).peekable();
        match &self.op {
            Operator::Exists => values.peek().is_some(),
            Operator::DoesNotExist => values.peek().is_none(),
            Operator::In(set) => values.any(|v| set.iter().any(|s| s == v)),
            Operator::NotIn(set) => values.all(|v| !set.iter().any(|s| s == v)),
            Operator::GreaterThan(n) => values.any(|v| v.parse::<i64>().is_ok_and(|v| v > *n)),
            Operator::LessThan(n) => values.any(|v| v.parse::<i64>().is_ok_and(|v| v < *n)),
        }
    }
}
