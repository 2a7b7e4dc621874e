//! L7 rules of `toPorts`, printed back by `policy get`. HTTP rules are
//! enforced by the agent's proxy (`policy::redirect`); the others are accepted
//! with a warning and their port is allowed at L4.

use serde::{Deserialize, Serialize};

/// L7 rules of a port rule. They are kept so `policy get` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L7Rules {
    /// HTTP rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRule>,
    /// Kafka rules, kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kafka: Vec<serde_yaml::Value>,
    /// DNS rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<DnsRule>,
    /// Name of a generic L7 parser.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub l7proto: String,
    /// Generic key-value L7 rules, kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub l7: Vec<serde_yaml::Value>,
}

/// An HTTP rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRule {
    /// Path regex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Method regex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Host regex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Required headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Header matches, kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_matches: Vec<serde_yaml::Value>,
}

/// A DNS rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsRule {
    /// Exact name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub match_name: String,
    /// Name pattern with `*`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub match_pattern: String,
}
