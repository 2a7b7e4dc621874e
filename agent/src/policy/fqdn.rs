//! `toFQDNs` egress peers: DNS name selectors whose addresses come from the answers
//! the DNS proxy let through (the FQDN cache).
//!
//! As in Cilium, every address an allowed answer gave for a name that some `toFQDNs`
//! selector matches gets a node-local CIDR identity (its /32 or /128, labels
//! `cidr:<address>/<len>` and `reserved:world-ipv4`/`-ipv6`), which goes into the
//! ipcache; the egress sections with that selector allow it. Selectors use the DNS
//! rules' syntax (`proxy::dns::pattern`): `matchName` exact, `matchPattern` with `*`
//! inside one label. The names are the cache's of every endpoint of the node
//! (Cilium's selector cache is node-wide too); an address leaves when its names expire.
//!
//! Bounded: at most [`MAX_FQDN_IDENTITIES`] addresses get an identity; the others
//! (highest addresses first) are left out, counted in [`FQDN_IDENTITIES_REFUSED`]
//! and logged, and stay denied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;
use proxy::dns::pattern::{self, Selector};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::api::Rule;

/// Most addresses selected by `toFQDNs` that get an identity at once: a pod resolving
/// ever new names under a broad pattern cannot fill the ipcache (65,536 entries) and
/// the policy map. Addresses beyond it stay denied.
pub const MAX_FQDN_IDENTITIES: usize = 8192;

/// Addresses left without an identity at [`MAX_FQDN_IDENTITIES`] by the latest
/// compilation (`hubble_agent_fqdn_identities_refused`).
pub static FQDN_IDENTITIES_REFUSED: AtomicU64 = AtomicU64::new(0);

/// One `toFQDNs` entry: `matchName` or `matchPattern`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawFqdnSelector", rename_all = "camelCase")]
pub struct FqdnSelector {
    /// Exact name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub match_name: String,
    /// Name pattern with `*`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub match_pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFqdnSelector {
    #[serde(default)]
    match_name: String,
    #[serde(default)]
    match_pattern: String,
}

impl TryFrom<RawFqdnSelector> for FqdnSelector {
    type Error = String;

    fn try_from(raw: RawFqdnSelector) -> Result<Self, Self::Error> {
        let selector = FqdnSelector {
            match_name: raw.match_name,
            match_pattern: raw.match_pattern,
        };
        match (
            selector.match_name.is_empty(),
            selector.match_pattern.is_empty(),
        ) {
            (true, true) => return Err("a toFQDNs entry needs matchName or matchPattern".into()),
            (false, false) => {
                return Err(format!(
                    "a toFQDNs entry has both matchName {:?} and matchPattern {:?}; use one",
                    selector.match_name, selector.match_pattern
                ))
            }
            _ => {}
        }
        selector.regex().map_err(|e| e.to_string())?;
        Ok(selector)
    }
}

impl FqdnSelector {
    fn selector(&self) -> Selector {
        if self.match_name.is_empty() {
            Selector::Pattern(self.match_pattern.clone())
        } else {
            Selector::Name(self.match_name.clone())
        }
    }

    /// The anchored regex over canonical names (lowercase, trailing dot).
    pub fn regex(&self) -> Result<Regex, pattern::SelectorError> {
        pattern::compile(&[self.selector()])?
            .ok_or_else(|| pattern::SelectorError::Regex("no selector".to_string()))
    }
}

/// Every `toFQDNs` selector of the rules' egress allow sections, compiled once.
#[derive(Debug, Clone, Default)]
pub struct FqdnMatcher {
    selectors: BTreeMap<FqdnSelector, Regex>,
}

impl FqdnMatcher {
    /// The selectors of `rules` (each was checked when its rule was parsed; one that
    /// does not compile now is logged and selects nothing).
    pub fn new(rules: &[Rule]) -> Self {
        let mut selectors = BTreeMap::new();
        for selector in rules
            .iter()
            .flat_map(|rule| rule.egress.iter().flatten())
            .flat_map(|section| section.to_fqdns.iter().flatten())
        {
            if selectors.contains_key(selector) {
                continue;
            }
            match selector.regex() {
                Ok(regex) => {
                    selectors.insert(selector.clone(), regex);
                }
                Err(e) => tracing::error!("toFQDNs selector {selector:?}: {e}"),
            }
        }
        FqdnMatcher { selectors }
    }

    /// True when no rule has a `toFQDNs` selector.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// Whether some selector matches `name` (any spelling; compared canonically).
    pub fn selects(&self, name: &str) -> bool {
        let name = pattern::canonical_name(name);
        self.selectors.values().any(|regex| regex.is_match(&name))
    }

    /// Whether `selector` matches `name`.
    pub fn selector_matches(&self, selector: &FqdnSelector, name: &str) -> bool {
        let name = pattern::canonical_name(name);
        self.selectors
            .get(selector)
            .is_some_and(|regex| regex.is_match(&name))
    }

    /// The host prefixes of the addresses of `names` ((name, address) pairs alive in
    /// the FQDN cache) that some selector matches, at most [`MAX_FQDN_IDENTITIES`]
    /// (lowest addresses first); also how many were left out.
    pub fn prefixes(&self, names: &[(String, IpAddr)]) -> (BTreeSet<IpNet>, usize) {
        if self.is_empty() {
            return (BTreeSet::new(), 0);
        }
        let selected: BTreeSet<IpAddr> = names
            .iter()
            .filter(|(name, _)| self.selects(name))
            .map(|(_, ip)| *ip)
            .collect();
        let refused = selected.len().saturating_sub(MAX_FQDN_IDENTITIES);
        let prefixes = selected
            .into_iter()
            .take(MAX_FQDN_IDENTITIES)
            .map(IpNet::from)
            .collect();
        (prefixes, refused)
    }
}

/// Records how many addresses the latest compilation left out, logging a change.
pub fn note_refused(refused: usize) {
    let refused = refused as u64;
    let before = FQDN_IDENTITIES_REFUSED.swap(refused, Ordering::Relaxed);
    if refused > 0 && refused != before {
        tracing::warn!(
            refused,
            "toFQDNs: addresses beyond MAX_FQDN_IDENTITIES ({MAX_FQDN_IDENTITIES}) get no identity and stay denied"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> Result<FqdnSelector, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn selectors_are_checked_and_match_as_ciliums() {
        let name = selector("matchName: API.github.com").expect("name");
        let pattern = selector("matchPattern: \"*.cilium.io\"").expect("pattern");
        assert!(selector("{}").is_err());
        let both = selector("{matchName: a.io, matchPattern: \"*.io\"}").expect_err("both");
        assert!(both.contains("a.io"), "{both}");
        let bad = selector("matchPattern: \"a/b\"").expect_err("bad");
        assert!(bad.contains("a/b"), "{bad}");
        assert!(selector("matchNames: a.io").is_err());

        let rule: Rule = serde_yaml::from_str(
            "endpointSelector: {}\negress:\n- toFQDNs:\n  - matchName: API.github.com\n  - matchPattern: \"*.cilium.io\"\n",
        )
        .expect("rule");
        let matcher = FqdnMatcher::new(std::slice::from_ref(&rule));
        assert!(matcher.selects("api.github.com."));
        assert!(matcher.selects("API.GITHUB.COM"));
        assert!(!matcher.selects("github.com"));
        assert!(matcher.selects("www.cilium.io"));
        // `*` stays inside one label.
        assert!(!matcher.selects("a.b.cilium.io"));
        assert!(!matcher.selects("cilium.io"));
        assert!(matcher.selector_matches(&name, "api.github.com"));
        assert!(!matcher.selector_matches(&pattern, "api.github.com"));

        let names = vec![
            (
                "api.github.com.".to_string(),
                "203.0.113.10".parse().expect("ip"),
            ),
            (
                "cilium.io.".to_string(),
                "203.0.113.20".parse().expect("ip"),
            ),
            (
                "api.github.com.".to_string(),
                "2001:db8::10".parse().expect("ip"),
            ),
        ];
        let (prefixes, refused) = matcher.prefixes(&names);
        let prefixes: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
        assert_eq!(prefixes, ["203.0.113.10/32", "2001:db8::10/128"]);
        assert_eq!(refused, 0);
    }

    #[test]
    fn documents_refuse_what_cilium_refuses() {
        let refused = |spec: &str| {
            let text = format!(
                "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  endpointSelector: {{}}\n{spec}"
            );
            super::super::parse_policy(&text)
                .map(|_| ())
                .expect_err("refused")
                .to_string()
        };
        let error = refused("  ingress:\n  - fromFQDNs: [{matchName: api.github.com}]\n");
        assert!(error.contains("fromFQDNs"), "{error}");
        let error = refused("  egressDeny:\n  - toFQDNs: [{matchName: api.github.com}]\n");
        assert!(error.contains("egressDeny[0].toFQDNs"), "{error}");
        let error = refused(
            "  egress:\n  - toFQDNs: [{matchName: api.github.com}]\n    toEntities: [world]\n",
        );
        assert!(
            error.contains("toEntities") && error.contains("egress[0]"),
            "{error}"
        );
        let error = refused("  egress:\n  - toFQDNs: [{matchPattern: \"api.git hub.com\"}]\n");
        assert!(error.contains("api.git hub.com"), "{error}");
        let accepted = super::super::parse_policy(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchName: api.github.com}]\n    toPorts: [{ports: [{port: \"443\", protocol: TCP}]}]\n",
        )
        .expect("accepted");
        assert!(accepted.warnings.is_empty(), "{:?}", accepted.warnings);
    }

    #[test]
    fn at_the_bound_the_rest_is_refused() {
        let rule: Rule = serde_yaml::from_str(
            "endpointSelector: {}\negress:\n- toFQDNs:\n  - matchPattern: \"*\"\n",
        )
        .expect("rule");
        let matcher = FqdnMatcher::new(std::slice::from_ref(&rule));
        let names: Vec<(String, IpAddr)> = (0..MAX_FQDN_IDENTITIES as u32 + 5)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0xcb00_0000 + i);
                (format!("h{i}.example."), IpAddr::V4(ip))
            })
            .collect();
        let (prefixes, refused) = matcher.prefixes(&names);
        assert_eq!((prefixes.len(), refused), (MAX_FQDN_IDENTITIES, 5));
    }
}
