//! CiliumNetworkPolicy: parsing, the policy repository, and compilation into
//! policy map entries.
//!
//! - [`parse_policy`] reads YAML or JSON documents into normalized [`Rule`]s,
//!   rejecting the whole text on the first bad field (path and line named),
//!   after [`check_policy_text`] bounded its size, nesting and aliases.
//! - [`PolicyRepository`] holds the imported rules with Cilium's revision
//!   numbering and prints them as `cilium policy get` does.
//! - [`compile`] turns the rules, the local endpoints and the known
//!   identities into per-identity enforcement flags and [`PolicyEntry`]s.

mod api;
mod compile;
mod document;
mod fqdn;
mod icmp;
mod kubernetes;
mod l7;
mod limits;
mod peers;
mod ports;
mod redirect;
mod repository;
mod resolve;
mod selector;

pub use api::{
    DefaultDeny, EgressDenyRule, EgressRule, EgressRuleOf, IngressDenyRule, IngressRule,
    IngressRuleOf, Peers, Rule, RuleLabels, Section,
};
pub use compile::{
    cidr_prefixes, compile, enforcement_for, CompileInput, CompiledPolicy, Direction, Enforcement,
    PolicyEntry,
};
pub use document::{
    parse_policy, ParsedPolicy, DEFAULT_NAMESPACE, POLICY_DERIVED_FROM_KEY, POLICY_NAMESPACE_KEY,
    POLICY_NAME_KEY, POLICY_UID_KEY,
};
pub use fqdn::{
    note_refused as note_fqdn_refused, FqdnMatcher, FqdnSelector, FQDN_IDENTITIES_REFUSED,
    MAX_FQDN_IDENTITIES,
};
pub use icmp::{IcmpFamily, IcmpField, IcmpRule, IcmpType};
pub use l7::{DnsRule, HttpRule, L7Rules};
pub use limits::{
    check_policy_text, MAX_ALIAS_EXPANDED_NODES, MAX_NESTING_DEPTH, MAX_POLICY_BYTES,
};
pub use peers::{Cidr, CidrRule, Entity, IngressFqdns, Unsupported};
pub use ports::{
    proto, Port, PortDenyRule, PortProtocol, PortRule, PortSpec, Protocol, MAX_PORT_RANGE,
};
pub use redirect::{
    DnsPeerRules, DnsRedirects, PeerRules, ProxyPortRecord, ProxyPorts, ProxyPortsExhausted,
    RedirectKey, Redirects, PROXY_PORT_RANGE,
};
pub use repository::{DeleteSelector, ImportOutcome, PolicyRepository};
pub use selector::{split_key, EndpointSelector, Operator, Requirement, MAX_SELECTOR_KEY_LEN};

/// Errors of policy import and deletion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a valid policy. The message names the field path and,
    /// when known, the line and column.
    #[error("{message}")]
    Invalid {
        /// What is wrong, where.
        message: String,
        /// The 1-based line of the bad field, when known.
        line: Option<usize>,
    },
    /// No rule matched a delete request.
    #[error("no policy rule matches {0}")]
    NotFound(String),
}

impl PolicyError {
    /// An error without a known line.
    pub(crate) fn invalid(message: String) -> Self {
        PolicyError::Invalid {
            message,
            line: None,
        }
    }

    /// Converts a YAML/JSON error, keeping its path and line.
    pub(crate) fn from_yaml(error: serde_yaml::Error) -> Self {
        let line = error.location().map(|l| l.line());
        let mut message = error.to_string();
        // A path that starts at a top-level list reads `.[0]...`; drop the dot.
        if message.starts_with(".[") {
            message.remove(0);
        }
        PolicyError::Invalid { message, line }
    }

    /// The line of the bad field, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Invalid { line, .. } => *line,
            PolicyError::NotFound(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
