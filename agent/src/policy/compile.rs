//! Compilation of rules into enforcement flags and policy map entries.
//!
//! For every local identity, the rules whose `endpointSelector` matches it
//! contribute entries: one per (remote identity, port, protocol) their
//! sections allow or deny. Peers are resolved against every identity known
//! cluster-wide (reserved ones included) and the node's CIDR identities.
//!
//! Conventions of [`PolicyEntry`]: remote 0 is "any peer" (used for the
//! `all` entity and for sections without peers, i.e. L4-only rules); dport
//! 0 with protocol 0 is "any port of any protocol" (L3-only rules); dport 0
//! with a protocol is "any port of that protocol". An empty endpoint
//! selector (`fromEndpoints: [{}]`) stands for every identity of the
//! cluster, world and CIDR identities excluded, so it is expanded instead of
//! being written as 0.
//!
//! A direction is enforced for an identity when some rule selecting it has
//! sections for that direction. When none of those rules asks for default
//! deny (`enableDefaultDeny: false`), an allow-all entry is added so only
//! the deny entries take effect.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::api::{Rule, Section};
use super::peers::Cidr;
use super::redirect::{DnsRedirects, RedirectCollector, Redirects};
use super::resolve::Resolver;
use crate::identity::{CidrIdentities, Identity};
use crate::labels::LabelSet;

/// Traffic direction, seen from the local endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Traffic to the local endpoint.
    Ingress,
    /// Traffic from the local endpoint.
    Egress,
}

/// One policy map entry, in host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// The local endpoint's identity.
    pub local_identity: u32,
    /// The peer's identity; 0 means any peer.
    pub remote_identity: u32,
    /// Destination port; 0 means any port.
    pub dport: u16,
    /// IANA protocol number; 0 means any protocol.
    pub protocol: u8,
    /// Direction of the traffic.
    pub direction: Direction,
    /// True for deny entries (they win over allow entries).
    pub deny: bool,
}

/// Whether policy is enforced in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// Ingress is enforced.
    pub ingress: bool,
    /// Egress is enforced.
    pub egress: bool,
}

/// What compilation needs.
#[derive(Debug, Clone, Copy)]
pub struct CompileInput<'a> {
    /// The rules in force.
    pub rules: &'a [Rule],
    /// The identities of the local endpoints with their labels.
    pub local: &'a [(Identity, LabelSet)],
    /// Every identity known cluster-wide, reserved ones included.
    pub identities: &'a [(Identity, LabelSet)],
    /// The node's CIDR identities, synced with [`cidr_prefixes`] of the rules.
    pub cidrs: &'a CidrIdentities,
    /// The cluster name (for the `cluster` entity).
    pub cluster: &'a str,
    /// The rules' `toFQDNs` selectors.
    pub fqdn: &'a super::fqdn::FqdnMatcher,
    /// (name, address) pairs alive in the FQDN cache, for `toFQDNs`; their selected
    /// addresses are in `cidrs` (see `policy::fqdn`).
    pub fqdn_names: &'a [(String, std::net::IpAddr)],
}

/// The result of compilation, sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// Enforcement per local identity.
    pub enforcement: BTreeMap<Identity, Enforcement>,
    /// Policy map entries.
    pub entries: Vec<PolicyEntry>,
    /// (prefix, identity) pairs for the datapath's ipcache.
    pub cidr_identities: Vec<(IpNet, Identity)>,
    /// L7 redirects: allow entries of these (local identity, port, protocol,
    /// direction) and peers go through the HTTP proxy with these rules.
    pub redirects: Redirects,
    /// DNS redirects: allow entries of these go through the DNS proxy with these
    /// rules.
    pub dns_redirects: DnsRedirects,
    /// The proxy port of each redirect (filled by `AgentState::compile`, which
    /// keeps the allocations).
    pub proxy_ports: BTreeMap<super::redirect::RedirectKey, u16>,
}

impl CompiledPolicy {
    /// The enforcement of a local identity (none when no rule selects it).
    pub fn enforcement_of(&self, identity: Identity) -> Enforcement {
        self.enforcement.get(&identity).copied().unwrap_or_default()
    }
}

/// Every prefix named by the rules, CIDR set exceptions included.
pub fn cidr_prefixes(rules: &[Rule]) -> BTreeSet<IpNet> {
    let mut prefixes = BTreeSet::new();
    let mut add = |peers: super::api::Peers<'_>| {
        for cidr in peers.cidrs.unwrap_or_default() {
            prefixes.insert(cidr.prefix());
        }
        for set in peers.cidr_sets.unwrap_or_default() {
            prefixes.insert(set.cidr.prefix());
            prefixes.extend(set.except.iter().map(Cidr::prefix));
        }
    };
    for rule in rules {
        rule.ingress.iter().flatten().for_each(|s| add(s.peers()));
        rule.ingress_deny
            .iter()
            .flatten()
            .for_each(|s| add(s.peers()));
        rule.egress.iter().flatten().for_each(|s| add(s.peers()));
        rule.egress_deny
            .iter()
            .flatten()
            .for_each(|s| add(s.peers()));
    }
    prefixes
}

/// The enforcement of an endpoint with these labels: a direction is
/// enforced when a rule selecting it has sections for that direction.
pub fn enforcement_for(rules: &[Rule], labels: &LabelSet) -> Enforcement {
    let mut enforcement = Enforcement::default();
    for rule in rules.iter().filter(|r| r.endpoint_selector.matches(labels)) {
        let (ingress, egress) = has_sections(rule);
        enforcement.ingress |= ingress;
        enforcement.egress |= egress;
    }
    enforcement
}

/// Whether a rule has (ingress, egress) sections, allow or deny.
fn has_sections(rule: &Rule) -> (bool, bool) {
    let present = |n: Option<usize>| n.is_some_and(|n| n > 0);
    (
        present(rule.ingress.as_ref().map(Vec::len))
            || present(rule.ingress_deny.as_ref().map(Vec::len)),
        present(rule.egress.as_ref().map(Vec::len))
            || present(rule.egress_deny.as_ref().map(Vec::len)),
    )
}

/// Compiles the rules for the local identities.
pub fn compile(input: &CompileInput<'_>) -> CompiledPolicy {
    let resolver = Resolver::new(input);
    let mut entries = BTreeSet::new();
    let mut redirects = RedirectCollector::default();
    let mut enforcement = BTreeMap::new();
    let locals: BTreeMap<Identity, &LabelSet> =
        input.local.iter().map(|(id, l)| (*id, l)).collect();

    for (&local, labels) in &locals {
        let mut flags = Enforcement::default();
        let mut default_deny = Enforcement::default();
        for rule in input
            .rules
            .iter()
            .filter(|r| r.endpoint_selector.matches(labels))
        {
            let ingress = rule.ingress.as_deref().unwrap_or_default();
            let ingress_deny = rule.ingress_deny.as_deref().unwrap_or_default();
            let egress = rule.egress.as_deref().unwrap_or_default();
            let egress_deny = rule.egress_deny.as_deref().unwrap_or_default();
            for section in ingress {
                resolver.section_entries(local.0, section, Direction::Ingress, false, &mut entries);
                resolver.section_redirects(local.0, section, Direction::Ingress, &mut redirects);
            }
            for section in ingress_deny {
                resolver.section_entries(local.0, section, Direction::Ingress, true, &mut entries);
            }
            for section in egress {
                resolver.section_entries(local.0, section, Direction::Egress, false, &mut entries);
                resolver.section_redirects(local.0, section, Direction::Egress, &mut redirects);
            }
            for section in egress_deny {
                resolver.section_entries(local.0, section, Direction::Egress, true, &mut entries);
            }
            let (has_ingress, has_egress) = has_sections(rule);
            if has_ingress {
                flags.ingress = true;
                default_deny.ingress |= rule.enable_default_deny.ingress != Some(false);
            }
            if has_egress {
                flags.egress = true;
                default_deny.egress |= rule.enable_default_deny.egress != Some(false);
            }
        }
        for (enforced, denies, direction) in [
            (flags.ingress, default_deny.ingress, Direction::Ingress),
            (flags.egress, default_deny.egress, Direction::Egress),
        ] {
            if enforced && !denies {
                entries.insert(allow_all(local.0, direction));
            }
        }
        enforcement.insert(local, flags);
    }

    let (redirects, dns_redirects) = redirects.finish();
    CompiledPolicy {
        enforcement,
        entries: entries.into_iter().collect(),
        cidr_identities: input.cidrs.entries(),
        redirects,
        dns_redirects,
        proxy_ports: BTreeMap::new(),
    }
}

fn allow_all(local: u32, direction: Direction) -> PolicyEntry {
    PolicyEntry {
        local_identity: local,
        remote_identity: 0,
        dport: 0,
        protocol: 0,
        direction,
        deny: false,
    }
}
