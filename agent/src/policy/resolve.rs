//! Resolving the peers and ports of a rule section into policy entries.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::api::{Peers, Section};
use super::compile::{CompileInput, Direction, PolicyEntry};
use super::fqdn::{FqdnMatcher, FqdnSelector};
use super::peers::{Cidr, CidrRule, Entity};
use super::ports::{proto, PortSpec};
use super::redirect::{RedirectCollector, RedirectKey};
use super::selector::EndpointSelector;
use crate::identity::{CidrIdentities, Identity, ReservedIdentity};
use crate::labels::{Label, LabelSet, POLICY_CLUSTER_KEY, SOURCE_K8S, SOURCE_RESERVED};

/// The peers a section selects.
enum Remote {
    Any,
    Some(BTreeSet<u32>),
}

/// Resolves peers against the known identities.
pub(super) struct Resolver<'a> {
    /// Cluster and reserved identities, then CIDR identities, with labels.
    identities: Vec<(Identity, LabelSet)>,
    cidrs: &'a CidrIdentities,
    cluster_label: Label,
    fqdn: &'a FqdnMatcher,
    fqdn_names: &'a [(String, std::net::IpAddr)],
}

impl<'a> Resolver<'a> {
    pub(super) fn new(input: &CompileInput<'a>) -> Self {
        let mut identities: Vec<(Identity, LabelSet)> = input.identities.to_vec();
        identities.extend(input.cidrs.list());
        Resolver {
            identities,
            cidrs: input.cidrs,
            cluster_label: Label::new(SOURCE_K8S, POLICY_CLUSTER_KEY, input.cluster),
            fqdn: input.fqdn,
            fqdn_names: input.fqdn_names,
        }
    }

    pub(super) fn section_entries<S: Section>(
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

    /// Collects the HTTP rules of an allow section's port rules per (redirect,
    /// peer), and the (redirect, peer) pairs its port rules without L7 rules allow.
    pub(super) fn section_redirects<S: Section>(
        &self,
        local: u32,
        section: &S,
        direction: Direction,
        out: &mut RedirectCollector,
    ) {
        let Some(port_rules) = section.to_ports() else {
            return;
        };
        let peers = section.peers();
        let remotes: Vec<u32> = if peers.absent() {
            vec![0]
        } else {
            match self.resolve(peers) {
                Remote::Any => vec![0],
                Remote::Some(ids) => ids.into_iter().collect(),
            }
        };
        for port_rule in port_rules {
            let http = port_rule.l7().map(|l7| &l7.http).filter(|h| !h.is_empty());
            let dns = port_rule.l7().map(|l7| &l7.dns).filter(|d| !d.is_empty());
            for port in port_rule.ports() {
                for (dport, protocol) in port.expand() {
                    if dport == 0 || (protocol != proto::TCP && protocol != proto::UDP) {
                        continue;
                    }
                    let key = RedirectKey {
                        local_identity: local,
                        dport,
                        protocol,
                        direction,
                    };
                    for &remote in &remotes {
                        match (http, dns) {
                            (_, Some(rules)) => out
                                .dns
                                .entry((key, remote))
                                .or_default()
                                .extend(rules.iter().cloned()),
                            (Some(rules), None) if protocol == proto::TCP => out
                                .http
                                .entry((key, remote))
                                .or_default()
                                .extend(rules.iter().cloned()),
                            (Some(_), None) => {}
                            (None, None) => {
                                out.plain.insert((key, remote));
                            }
                        }
                    }
                }
            }
        }
    }

    fn resolve(&self, peers: Peers<'_>) -> Remote {
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
        for selector in peers.fqdns.unwrap_or_default() {
            ids.extend(self.fqdn_ids(selector));
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
            names.iter().any(|r| labels.has(SOURCE_RESERVED, r.name()))
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

    /// The identities of the addresses learned for names `selector` matches (those
    /// that got one: see `policy::fqdn`).
    fn fqdn_ids(&self, selector: &FqdnSelector) -> Vec<u32> {
        self.fqdn_names
            .iter()
            .filter(|(name, _)| self.fqdn.selector_matches(selector, name))
            .filter_map(|(_, ip)| self.cidrs.get(&IpNet::from(*ip)))
            .map(|id| id.0)
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
            ids.push(ReservedIdentity::World.id());
            ids.push(family.id());
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
