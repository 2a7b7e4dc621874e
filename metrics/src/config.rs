//! The metrics configuration, in upstream's syntax.
//!
//! `--hubble-metrics` takes handler specifications separated by whitespace (or given as
//! a list); each is a handler name, optionally followed by `:` and options separated by
//! `;`, each option `key=value` or a bare `key`:
//!
//! ```text
//! dns drop tcp flow port-distribution icmp policy
//! httpV2:exemplars=true;labelsContext=source_ip,source_namespace,destination_ip
//! ```
//!
//! Unlike upstream, which ignores what it does not know, an unknown handler, option,
//! context identifier or label is an error that names it and lists what is valid.

use crate::context::{ContextOptions, CONTEXT_OPTION_KEYS};
use crate::error::ConfigError;

/// A metrics handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    Dns,
    Drop,
    Tcp,
    Flow,
    PortDistribution,
    Icmp,
    Http,
    HttpV2,
    Policy,
    FlowsToWorld,
}

impl HandlerKind {
    /// Every handler with its configuration name.
    pub const ALL: &'static [(&'static str, HandlerKind)] = &[
        ("dns", HandlerKind::Dns),
        ("drop", HandlerKind::Drop),
        ("tcp", HandlerKind::Tcp),
        ("flow", HandlerKind::Flow),
        ("port-distribution", HandlerKind::PortDistribution),
        ("icmp", HandlerKind::Icmp),
        ("http", HandlerKind::Http),
        ("httpV2", HandlerKind::HttpV2),
        ("policy", HandlerKind::Policy),
        ("flows-to-world", HandlerKind::FlowsToWorld),
    ];

    /// The configuration name (`port-distribution`).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("", |(name, _)| name)
    }

    /// The handler-specific option keys (context options come on top).
    fn own_options(self) -> &'static [&'static str] {
        match self {
            HandlerKind::Dns => &["query", "ignoreAAAA"],
            HandlerKind::Http | HandlerKind::HttpV2 => &["exemplars"],
            HandlerKind::FlowsToWorld => &["any-drop", "port", "syn-only"],
            _ => &[],
        }
    }
}

/// Handler-specific switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerFlags {
    /// dns: add the query as label `query`.
    pub query: bool,
    /// dns: ignore requests and responses whose only question type is AAAA.
    pub ignore_aaaa: bool,
    /// http, httpV2: attach trace IDs as exemplars (`exemplars=true`).
    pub exemplars: bool,
    /// flows-to-world: count drops of any reason, not only policy denials.
    pub any_drop: bool,
    /// flows-to-world: add the destination port as label `port`.
    pub port: bool,
    /// flows-to-world: count only TCP SYNs that are not replies.
    pub syn_only: bool,
}

/// One enabled handler with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerConfig {
    pub kind: HandlerKind,
    pub context: ContextOptions,
    pub flags: HandlerFlags,
    /// The options as written, for status output.
    pub options: String,
}

/// The enabled handlers, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    pub handlers: Vec<HandlerConfig>,
}

impl MetricsConfig {
    /// Parses a whitespace-separated list of handler specifications.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::from_list(text.split_whitespace())
    }

    /// Parses handler specifications given one per item; an item may itself hold
    /// several specifications separated by whitespace.
    pub fn from_list<I, S>(items: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut config = MetricsConfig::default();
        for item in items {
            for spec in item.as_ref().split_whitespace() {
                let handler = parse_spec(spec)?;
                // As upstream, a handler given twice keeps its last options.
                config.handlers.retain(|h| h.kind != handler.kind);
                config.handlers.push(handler);
            }
        }
        let has = |kind| config.handlers.iter().any(|h| h.kind == kind);
        if has(HandlerKind::Http) && has(HandlerKind::HttpV2) {
            return Err(ConfigError::Conflict {
                first: "http".to_owned(),
                second: "httpV2".to_owned(),
            });
        }
        Ok(config)
    }

    /// Whether no handler is enabled.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

fn parse_spec(spec: &str) -> Result<HandlerConfig, ConfigError> {
    let (name, options) = spec.split_once(':').unwrap_or((spec, ""));
    if name.is_empty() {
        return Err(ConfigError::EmptyName(spec.to_owned()));
    }
    let kind = HandlerKind::ALL
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| ConfigError::UnknownHandler {
            name: name.to_owned(),
            valid: HandlerKind::ALL
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let mut handler = HandlerConfig {
        kind,
        context: ContextOptions::default(),
        flags: HandlerFlags::default(),
        options: options.to_owned(),
    };
    for option in options.split(';').filter(|o| !o.is_empty()) {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        if handler.context.apply(name, key, value)? {
            continue;
        }
        let flags = &mut handler.flags;
        match (kind, key.to_ascii_lowercase().as_str()) {
            (HandlerKind::Dns, "query") => flags.query = true,
            (HandlerKind::Dns, "ignoreaaaa") => flags.ignore_aaaa = true,
            (HandlerKind::Http | HandlerKind::HttpV2, "exemplars") => {
                flags.exemplars = value == "true"
            }
            (HandlerKind::FlowsToWorld, "any-drop") => flags.any_drop = true,
            (HandlerKind::FlowsToWorld, "port") => flags.port = true,
            (HandlerKind::FlowsToWorld, "syn-only") => flags.syn_only = true,
            _ => {
                let valid: Vec<&str> = kind
                    .own_options()
                    .iter()
                    .chain(CONTEXT_OPTION_KEYS)
                    .copied()
                    .collect();
                return Err(ConfigError::UnknownOption {
                    handler: name.to_owned(),
                    option: key.to_owned(),
                    valid: valid.join(", "),
                });
            }
        }
    }
    Ok(handler)
}

#[cfg(test)]
mod tests;
