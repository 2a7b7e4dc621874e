//! L7 redirects: which allowed connections go through the agent's HTTP proxy,
//! with which rules, and on which proxy port.
//!
//! A redirect is one (local identity, port, protocol, direction) whose allow
//! sections carry `toPorts[].rules.http` (Cilium's L4 filter with an L7 parser).
//! Each peer identity the sections allow gets the union of their HTTP rules; a
//! peer also allowed on that port by a section without L7 rules gets an allow-all
//! rule (`{}`), so its requests pass and are recorded, as Cilium merges them.
//! Only TCP ports with a number are redirected for HTTP. `rules.dns` on a port
//! number (TCP or UDP) makes a DNS redirect ([`DnsRedirects`]) to the agent's DNS
//! proxy, merged the same way (a peer also allowed without L7 rules may ask any
//! name). Other L7 rules (`kafka`, `l7proto`) are not enforced (their port is
//! allowed at L4, with a warning).
//!
//! Each redirect gets a proxy port from [`PROXY_PORT_RANGE`] ([`ProxyPorts`]), kept
//! while the redirect exists and across restarts (saved with the state), so
//! connections the datapath already steered keep reaching the same listener.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::compile::Direction;
use super::l7::{DnsRule, HttpRule};

/// Proxy ports the agent hands out (Cilium's default `--proxy-port-range`
/// minimum and maximum); a redirect beyond it is refused by name.
pub const PROXY_PORT_RANGE: RangeInclusive<u16> = 10000..=20000;

/// One redirect: one listener, one proxy port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RedirectKey {
    /// The local endpoint's identity whose policy has the L7 rules.
    pub local_identity: u32,
    /// The port the rules are for.
    pub dport: u16,
    /// IANA protocol number (TCP).
    pub protocol: u8,
    /// Ingress: connections to the endpoint; egress: from it.
    pub direction: Direction,
}

/// The HTTP rules of one redirect, per peer identity (0: any peer).
pub type PeerRules = BTreeMap<u32, Vec<HttpRule>>;

/// Every redirect of a compiled policy.
pub type Redirects = BTreeMap<RedirectKey, PeerRules>;

/// The DNS rules of one DNS redirect, per peer identity (0: any peer).
pub type DnsPeerRules = BTreeMap<u32, Vec<DnsRule>>;

/// Every DNS redirect of a compiled policy.
pub type DnsRedirects = BTreeMap<RedirectKey, DnsPeerRules>;

/// What compilation collects from allow sections before merging.
#[derive(Debug, Default)]
pub(super) struct RedirectCollector {
    pub(super) http: BTreeMap<(RedirectKey, u32), Vec<HttpRule>>,
    pub(super) dns: BTreeMap<(RedirectKey, u32), Vec<DnsRule>>,
    pub(super) plain: BTreeSet<(RedirectKey, u32)>,
}

impl RedirectCollector {
    /// The redirects: HTTP rules per key and peer, allow-all added for peers that
    /// another section allows without L7 rules; duplicates removed.
    pub(super) fn finish(self) -> (Redirects, DnsRedirects) {
        let mut out = Redirects::new();
        let mut dns_out = DnsRedirects::new();
        for ((key, remote), mut rules) in self.dns {
            // A port whose HTTP rules already redirect it stays with the HTTP proxy.
            if self.http.contains_key(&(key, remote)) {
                continue;
            }
            if self.plain.contains(&(key, remote)) || self.plain.contains(&(key, 0)) {
                rules.push(DnsRule {
                    match_name: String::new(),
                    match_pattern: "*".to_string(),
                });
            }
            let mut unique: Vec<DnsRule> = Vec::new();
            for rule in rules {
                if !unique.contains(&rule) {
                    unique.push(rule);
                }
            }
            dns_out.entry(key).or_default().insert(remote, unique);
        }
        for ((key, remote), mut rules) in self.http {
            if self.plain.contains(&(key, remote)) || self.plain.contains(&(key, 0)) {
                rules.push(HttpRule::default());
            }
            let mut unique: Vec<HttpRule> = Vec::new();
            for rule in rules {
                if !unique.contains(&rule) {
                    unique.push(rule);
                }
            }
            out.entry(key).or_default().insert(remote, unique);
        }
        (out, dns_out)
    }
}

/// A redirect that found no free proxy port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no free proxy port for the L7 redirect of identity {} port {}/{}: all {} ports of \
     PROXY_PORT_RANGE ({}-{}) are in use",
    key.local_identity,
    key.dport,
    key.protocol,
    PROXY_PORT_RANGE.len(),
    PROXY_PORT_RANGE.start(),
    PROXY_PORT_RANGE.end()
)]
pub struct ProxyPortsExhausted {
    /// The redirect left without a port.
    pub key: RedirectKey,
}

/// The proxy port of every redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyPorts {
    ports: BTreeMap<RedirectKey, u16>,
}

/// One saved allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyPortRecord {
    /// The redirect.
    pub redirect: RedirectKey,
    /// Its port.
    pub port: u16,
}

impl ProxyPorts {
    /// Allocations as saved in the state file.
    pub fn records(&self) -> Vec<ProxyPortRecord> {
        self.ports
            .iter()
            .map(|(redirect, port)| ProxyPortRecord {
                redirect: *redirect,
                port: *port,
            })
            .collect()
    }

    /// Allocations read back from the state file; a port outside the range or used
    /// twice is refused by value.
    pub fn restored(records: &[ProxyPortRecord]) -> Result<Self, String> {
        let mut ports = BTreeMap::new();
        let mut used = BTreeSet::new();
        for record in records {
            if !PROXY_PORT_RANGE.contains(&record.port) {
                return Err(format!(
                    "proxy port {} is outside PROXY_PORT_RANGE ({}-{})",
                    record.port,
                    PROXY_PORT_RANGE.start(),
                    PROXY_PORT_RANGE.end()
                ));
            }
            if !used.insert(record.port) {
                return Err(format!("proxy port {} is given twice", record.port));
            }
            ports.insert(record.redirect, record.port);
        }
        Ok(Self { ports })
    }

    /// Keeps the ports of redirects that remain, frees the others and gives each
    /// new redirect the lowest free port. Returns whether anything changed.
    pub fn assign<'a>(
        &mut self,
        redirects: impl IntoIterator<Item = &'a RedirectKey>,
    ) -> Result<bool, ProxyPortsExhausted> {
        let wanted: BTreeSet<RedirectKey> = redirects.into_iter().copied().collect();
        let before = self.ports.len();
        self.ports.retain(|key, _| wanted.contains(key));
        let mut changed = self.ports.len() != before;
        let mut used: BTreeSet<u16> = self.ports.values().copied().collect();
        for key in wanted {
            if self.ports.contains_key(&key) {
                continue;
            }
            let port = PROXY_PORT_RANGE
                .clone()
                .find(|p| !used.contains(p))
                .ok_or(ProxyPortsExhausted { key })?;
            used.insert(port);
            self.ports.insert(key, port);
            changed = true;
        }
        Ok(changed)
    }

    /// The port of a redirect.
    pub fn port(&self, key: &RedirectKey) -> Option<u16> {
        self.ports.get(key).copied()
    }

    /// Every (redirect, port).
    pub fn iter(&self) -> impl Iterator<Item = (&RedirectKey, u16)> {
        self.ports.iter().map(|(k, p)| (k, *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(identity: u32, dport: u16) -> RedirectKey {
        RedirectKey {
            local_identity: identity,
            dport,
            protocol: 6,
            direction: Direction::Ingress,
        }
    }

    #[test]
    fn ports_stay_with_their_redirect_and_are_reused_when_freed() {
        let mut ports = ProxyPorts::default();
        assert!(ports.assign(&[key(300, 80), key(301, 80)]).unwrap());
        assert_eq!(ports.port(&key(300, 80)), Some(10000));
        assert_eq!(ports.port(&key(301, 80)), Some(10001));
        // Unchanged set: nothing moves.
        assert!(!ports.assign(&[key(300, 80), key(301, 80)]).unwrap());
        // The first goes away, a new one takes its port; the second keeps its own.
        assert!(ports.assign(&[key(301, 80), key(302, 8080)]).unwrap());
        assert_eq!(ports.port(&key(301, 80)), Some(10001));
        assert_eq!(ports.port(&key(302, 8080)), Some(10000));
        let restored = ProxyPorts::restored(&ports.records()).unwrap();
        assert_eq!(restored, ports);
    }

    #[test]
    fn bad_saved_ports_and_exhaustion_are_named() {
        let bad = ProxyPortRecord {
            redirect: key(300, 80),
            port: 80,
        };
        let err = ProxyPorts::restored(&[bad]).unwrap_err();
        assert!(
            err.contains("proxy port 80 is outside PROXY_PORT_RANGE"),
            "{err}"
        );

        let mut ports = ProxyPorts::default();
        let keys: Vec<RedirectKey> = (0..=PROXY_PORT_RANGE.len() as u32)
            .map(|i| key(1000 + i, 80))
            .collect();
        let err = ports.assign(&keys).unwrap_err();
        assert!(
            err.to_string().contains("PROXY_PORT_RANGE (10000-20000)"),
            "{err}"
        );
    }
}
