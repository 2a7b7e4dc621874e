//! The HTTP proxy: CiliumNetworkPolicy `rules.http` enforcement.
//!
//! - [`rules`]: rule specs, compiled once per policy revision into an [`HttpPolicy`].

pub mod rules;

pub use rules::{
    HeaderMatchSpec, HeaderMismatch, HttpPolicy, HttpRuleSpec, MismatchAction, RequestParts,
    RuleError, RuleVerdict, SecretRef, MAX_RULE_REGEX_SIZE,
};
