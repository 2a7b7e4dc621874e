//! Filter flags of `hubble observe` turned into the request's FlowFilter lists, with
//! upstream's semantics: repeating a flag ORs its values, different flags AND, `--not`
//! sends the next filter flag to the denylist, and either-side flags (`--pod`, `--ip`,
//! `--port`, `--label`, ...) build a source filter and a destination filter that are
//! ORed. Namespace flags are applied to pod and service filters when the lists are
//! materialised.

use proto::flow::FlowFilter;

use crate::quote::go_quote;

mod tracker;
pub mod values;

pub use values::go_bool;

use tracker::FilterTracker;

/// A filter flag value that upstream rejects, reported as pflag does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid argument {} for {} flag: {reason}", go_quote(.value), go_quote(&flag_display(.flag)))]
pub struct FilterFlagError {
    /// The flag's long name.
    pub flag: String,
    pub value: String,
    pub reason: String,
}

/// `-t, --type` for flags with a shorthand, `--name` for the others.
fn flag_display(name: &str) -> String {
    match short_name(name) {
        Some(short) => format!("-{short}, --{name}"),
        None => format!("--{name}"),
    }
}

/// The one-letter alias of a filter flag.
pub fn short_name(name: &str) -> Option<char> {
    Some(match name {
        "type" => 't',
        "namespace" => 'n',
        "all-namespaces" => 'A',
        "label" => 'l',
        "ipv4" => '4',
        "ipv6" => '6',
        _ => return None,
    })
}

/// Errors found once all flags are read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterBuildError {
    #[error("trailing --not found in the arguments")]
    TrailingNot,
}

/// Collects filter flags in command-line order.
#[derive(Debug, Default)]
pub struct FilterBuilder {
    allow: Option<FilterTracker>,
    deny: Option<FilterTracker>,
    /// Whether the previous flag was `--not`.
    negate_next: bool,
}

impl FilterBuilder {
    /// Applies filter flag `name` (long name, without dashes) with `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FilterFlagError> {
        let fail = |reason: String| FilterFlagError {
            flag: name.to_string(),
            value: value.to_string(),
            reason,
        };
        if name == "not" {
            if self.negate_next {
                return Err(fail("consecutive --not statements".to_string()));
            }
            self.negate_next = true;
            return Ok(());
        }
        let tracker = if std::mem::take(&mut self.negate_next) {
            self.deny.get_or_insert_with(FilterTracker::default)
        } else {
            self.allow.get_or_insert_with(FilterTracker::default)
        };
        tracker.set(name, value).map_err(fail)
    }

    /// Materialises the allowlist and the denylist.
    pub fn finish(self) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), FilterBuildError> {
        if self.negate_next {
            return Err(FilterBuildError::TrailingNot);
        }
        let allow = self
            .allow
            .map(FilterTracker::flow_filters)
            .unwrap_or_default();
        let deny = self
            .deny
            .map(FilterTracker::flow_filters)
            .unwrap_or_default();
        Ok((allow, deny))
    }
}

/// Builds the lists from `(flag, value)` pairs in command-line order.
pub fn build(
    flags: &[(String, String)],
) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), anyhow::Error> {
    let mut builder = FilterBuilder::default();
    for (name, value) in flags {
        builder.set(name, value)?;
    }
    Ok(builder.finish()?)
}

#[cfg(test)]
mod tests;
