//! Flow filters from an HTTP query string, compiled with `proto::filter`.
//!
//! Each parameter is one condition and all conditions must hold. A parameter that names
//! no side (`pod`, `namespace`, `label`, `service`, `ip`, `port`) holds when either the source or the
//! destination matches; `from_*` and `to_*` pick a side. Comma-separated values (and
//! repeated parameters) are alternatives. `filter` and `exclude` take a FlowFilter in
//! JSON for anything the named parameters do not cover.

use proto::filter::{FilterError, FilterSet, FlowView};
use proto::flow::{FlowFilter, Verdict};

/// Flows returned by `/api/flows` when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 500;
/// Most flows one request may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// A query parameter that cannot be used, naming the value.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("unknown filter parameter {0:?}")]
    UnknownParameter(String),
    #[error("invalid verdict {0:?}: expected one of FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED, TRANSLATED")]
    InvalidVerdict(String),
    #[error("invalid limit {0:?}: expected a number from 1 to {MAX_LIMIT}")]
    InvalidLimit(String),
    #[error("invalid {parameter} filter: {source}")]
    InvalidFilter {
        parameter: String,
        value: String,
        source: FilterError,
    },
    #[error("invalid {parameter} FlowFilter JSON {value:?}: {reason}")]
    InvalidJson {
        parameter: String,
        value: String,
        reason: String,
    },
}

/// All conditions of a query; a flow passes when every one matches.
#[derive(Debug, Default)]
pub struct FlowMatcher {
    conditions: Vec<FilterSet>,
}

impl FlowMatcher {
    /// Whether `flow` passes every condition.
    pub fn matches<F: FlowView + ?Sized>(&self, flow: &F) -> bool {
        self.conditions.iter().all(|c| c.matches(flow))
    }

    /// Whether there is no condition at all.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }
}

/// A parsed query: the filters and how many flows to return.
#[derive(Debug)]
pub struct FlowQuery {
    pub matcher: FlowMatcher,
    pub limit: usize,
}

/// Which endpoint fields a parameter sets.
#[derive(Clone, Copy)]
enum Sides {
    Either,
    Source,
    Destination,
}

impl FlowQuery {
    /// Parses `(name, value)` pairs; empty values are ignored.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, QueryError> {
        let mut matcher = FlowMatcher::default();
        let mut limit = DEFAULT_LIMIT;
        for (name, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let condition = match name.as_str() {
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| QueryError::InvalidLimit(value.to_string()))?;
                    continue;
                }
                "filter" | "exclude" => {
                    let ff: FlowFilter =
                        serde_json::from_str(value).map_err(|e| QueryError::InvalidJson {
                            parameter: name.clone(),
                            value: value.to_string(),
                            reason: e.to_string(),
                        })?;
                    let (allow, deny) = if name == "filter" {
                        (vec![ff], vec![])
                    } else {
                        (vec![], vec![ff])
                    };
                    compile(name, value, &allow, &deny)?
                }
                _ => {
                    let alternatives = alternatives(name, value)?;
                    compile(name, value, &alternatives, &[])?
                }
            };
            matcher.conditions.push(condition);
        }
        Ok(Self { matcher, limit })
    }
}

fn compile(
    name: &str,
    value: &str,
    allow: &[FlowFilter],
    deny: &[FlowFilter],
) -> Result<FilterSet, QueryError> {
    FilterSet::compile(allow, deny).map_err(|source| QueryError::InvalidFilter {
        parameter: name.to_string(),
        value: value.to_string(),
        source,
    })
}

fn split(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// The FlowFilters (any of which may match) of one named parameter.
fn alternatives(name: &str, value: &str) -> Result<Vec<FlowFilter>, QueryError> {
    let (base, sides) = match name.split_once('_') {
        Some(("from", base)) => (base, Sides::Source),
        Some(("to", base)) => (base, Sides::Destination),
        _ => (name, Sides::Either),
    };
    let one = |set: &dyn Fn(&mut FlowFilter)| {
        let mut ff = FlowFilter::default();
        set(&mut ff);
        vec![ff]
    };
    let sided = |src: &dyn Fn(&mut FlowFilter), dst: &dyn Fn(&mut FlowFilter)| {
        let mut out = Vec::new();
        if matches!(sides, Sides::Either | Sides::Source) {
            let mut ff = FlowFilter::default();
            src(&mut ff);
            out.push(ff);
        }
        if matches!(sides, Sides::Either | Sides::Destination) {
            let mut ff = FlowFilter::default();
            dst(&mut ff);
            out.push(ff);
        }
        out
    };
    let values = split(value);
    let namespaces: Vec<String> = values.iter().map(|ns| format!("{ns}/")).collect();
    let single_sided = matches!(
        base,
        "namespace" | "pod" | "label" | "service" | "ip" | "port"
    );
    if !single_sided && !matches!(sides, Sides::Either) {
        return Err(QueryError::UnknownParameter(name.to_string()));
    }
    Ok(match base {
        "namespace" => sided(&|f| f.source_pod.clone_from(&namespaces), &|f| {
            f.destination_pod.clone_from(&namespaces)
        }),
        "pod" => sided(&|f| f.source_pod.clone_from(&values), &|f| {
            f.destination_pod.clone_from(&values)
        }),
        // A label selector has commas of its own, so it is taken whole.
        "label" => sided(&|f| f.source_label = vec![value.to_string()], &|f| {
            f.destination_label = vec![value.to_string()]
        }),
        "service" => sided(&|f| f.source_service.clone_from(&values), &|f| {
            f.destination_service.clone_from(&values)
        }),
        "ip" => sided(&|f| f.source_ip.clone_from(&values), &|f| {
            f.destination_ip.clone_from(&values)
        }),
        "port" => sided(&|f| f.source_port.clone_from(&values), &|f| {
            f.destination_port.clone_from(&values)
        }),
        "verdict" => {
            let verdicts = values
                .iter()
                .map(|v| {
                    Verdict::from_str_name(&v.to_ascii_uppercase())
                        .filter(|v| *v != Verdict::Unknown)
                        .map(|v| v as i32)
                        .ok_or_else(|| QueryError::InvalidVerdict(v.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            one(&|f| f.verdict.clone_from(&verdicts))
        }
        "protocol" => one(&|f| f.protocol.clone_from(&values)),
        "http_method" => one(&|f| f.http_method.clone_from(&values)),
        // A regular expression may hold commas, so it is taken whole.
        "http_path" => one(&|f| f.http_path = vec![value.to_string()]),
        _ => return Err(QueryError::UnknownParameter(name.to_string())),
    })
}

#[cfg(test)]
mod tests;
