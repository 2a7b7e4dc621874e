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
use super::peers::{Cidr, CidrRule, Entity};
use super::ports::PortSpec;
use super::selector::EndpointSelector;
use crate::identity::{CidrIdentities, Identity, ReservedIdentity};
use crate::labels::{Label, LabelSet, POLICY_CLUSTER_KEY, SOURCE_K8S};

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
            }
            for section in ingress_deny {
                resolver.section_entries(local.0, section, Direction::Ingress, true, &mut entries);
            }
            for section in egress {
                resolver.section_entries(local.0, section, Direction::Egress, false, &mut entries);
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

    CompiledPolicy {
        enforcement,
        entries: entries.into_iter().collect(),
        cidr_identities: input.cidrs.entries(),
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

/// The peers a section selects.
enum Remote {
    Any,
    Some(BTreeSet<u32>),
}

/// Resolves peers against the known identities.
struct Resolver<'a> {
    /// Cluster and reserved identities, then CIDR identities, with labels.
    identities: Vec<(Identity, LabelSet)>,
    cidrs: &'a CidrIdentities,
    cluster_label: Label,
}

impl<'a> Resolver<'a> {
    fn new(input: &CompileInput<'a>) -> Self {
        let mut identities: Vec<(Identity, LabelSet)> = input.identities.to_vec();
        identities.extend(input.cidrs.list());
        Resolver {
            identities,
            cidrs: input.cidrs,
            cluster_label: Label::new(SOURCE_K8S, POLICY_CLUSTER_KEY, input.cluster),
        }
    }

    fn section_entries<S: Section>(
        &self,
        local: u32,
        section: &S,
        direction: Direction,
        deny: bool,
        out: &mut BTreeSet<PolicyEntry>,
    ) {
        let ports = section_ports(section);
        let peers = section.peers();
        let remote = if peers.absent() {
            if section.to_ports().is_none() && section.icmps().is_none() {
                // A section with neither peers nor ports allows nothing; it
                // only turns enforcement on.
                return;
            }
            Remote::Any
        } else {
            self.resolve(peers)
        };
        let remotes: Vec<u32> = match remote {
            Remote::Any => vec![0],
            Remote::Some(ids) => ids.into_iter().collect(),
        };
        for remote_identity in remotes {
            for &(dport, protocol) in &ports {
                out.insert(PolicyEntry {
                    local_identity: local,
                    remote_identity,
                    dport,
                    protocol,
                    direction,
                    deny,
                });
            }
        }
    }

    fn resolve(&self, peers: super::api::Peers<'_>) -> Remote {
        let mut ids = BTreeSet::new();
        for selector in peers.endpoints.unwrap_or_default() {
            ids.extend(self.select(selector));
        }
        for entity in peers.entities.unwrap_or_default() {
            if *entity == Entity::All {
                return Remote::Any;
            }
            ids.extend(self.entity(*entity));
        }
        for cidr in peers.cidrs.unwrap_or_default() {
            ids.extend(self.cidr(&CidrRule {
                cidr: *cidr,
                except: Vec::new(),
            }));
        }
        for set in peers.cidr_sets.unwrap_or_default() {
            ids.extend(self.cidr(set));
        }
        Remote::Some(ids)
    }

    fn select(&self, selector: &EndpointSelector) -> Vec<u32> {
        self.identities
            .iter()
            .filter(|(id, labels)| {
                if selector.is_empty() {
                    !id.is_world()
                } else {
                    selector.matches(labels)
                }
            })
            .map(|(id, _)| id.0)
            .collect()
    }

    fn entity(&self, entity: Entity) -> Vec<u32> {
        let reserved = |names: &[ReservedIdentity], labels: &LabelSet| {
            names
                .iter()
                .any(|r| labels.has(crate::labels::SOURCE_RESERVED, r.name()))
        };
        let predicate = |labels: &LabelSet| -> bool {
            use ReservedIdentity as R;
            match entity {
                Entity::All => true,
                Entity::None => false,
                Entity::World => reserved(&[R::World, R::WorldIpv4, R::WorldIpv6], labels),
                Entity::WorldIpv4 => reserved(&[R::WorldIpv4], labels),
                Entity::WorldIpv6 => reserved(&[R::WorldIpv6], labels),
                Entity::Cluster => {
                    reserved(
                        &[
                            R::Host,
                            R::RemoteNode,
                            R::Init,
                            R::Health,
                            R::Unmanaged,
                            R::KubeApiServer,
                            R::Ingress,
                        ],
                        labels,
                    ) || labels.iter().any(|l| *l == self.cluster_label)
                }
                Entity::Host => reserved(&[R::Host], labels),
                Entity::Init => reserved(&[R::Init], labels),
                Entity::Ingress => reserved(&[R::Ingress], labels),
                Entity::Unmanaged => reserved(&[R::Unmanaged], labels),
                Entity::RemoteNode => reserved(&[R::RemoteNode], labels),
                Entity::Health => reserved(&[R::Health], labels),
                Entity::KubeApiserver => reserved(&[R::KubeApiServer], labels),
            }
        };
        self.identities
            .iter()
            .filter(|(_, labels)| predicate(labels))
            .map(|(id, _)| id.0)
            .collect()
    }

    /// CIDR identities inside the prefix and outside its exceptions; the
    /// world identities of the family when the prefix is a default route.
    fn cidr(&self, rule: &CidrRule) -> Vec<u32> {
        let outer = rule.cidr.prefix();
        let excepts: Vec<IpNet> = rule.except.iter().map(Cidr::prefix).collect();
        let mut ids: Vec<u32> = self
            .cidrs
            .entries()
            .into_iter()
            .filter(|(prefix, _)| {
                outer.contains(prefix) && !excepts.iter().any(|e| e.contains(prefix))
            })
            .map(|(_, id)| id.0)
            .collect();
        if outer.prefix_len() == 0 {
            let family = match outer {
                IpNet::V4(_) => ReservedIdentity::WorldIpv4,
                IpNet::V6(_) => ReservedIdentity::WorldIpv6,
            };
            ids.push(ReservedIdentity::World.id().0);
            ids.push(family.id().0);
        }
        ids
    }
}

/// The (port, protocol) pairs of a section: every port when it names none.
fn section_ports<S: Section>(section: &S) -> Vec<(u16, u8)> {
    if section.to_ports().is_none() && section.icmps().is_none() {
        return vec![(0, 0)];
    }
    let mut pairs = BTreeSet::new();
    for port_rule in section.to_ports().unwrap_or_default() {
        if port_rule.ports().is_empty() {
            pairs.insert((0, 0));
        }
        for port in port_rule.ports() {
            pairs.extend(port.expand());
        }
    }
    for icmp in section.icmps().unwrap_or_default() {
        for field in &icmp.fields {
            // Names were checked while parsing.
            if let Ok(pair) = field.resolve() {
                pairs.insert(pair);
            }
        }
    }
    pairs.into_iter().collect()
}
