//! Node-local CIDR identities for the prefixes named by policies.
//!
//! As in Cilium, every prefix named by a `fromCIDR`/`toCIDR` rule (or by the
//! `except` list of a CIDR set) gets a node-local identity from 1 << 24 with
//! the labels `cidr:<prefix>` and `reserved:world-ipv4` (or `-ipv6`). The
//! datapath puts each prefix into its ipcache with that identity, so a
//! longest-prefix lookup of an outside address finds the most specific
//! prefix a policy talks about. The default routes (`/0`) are not given an
//! identity: they are the world identities.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{Identity, IdentityError, ReservedIdentity, CIDR_IDENTITY_BASE, MAX_CIDR_IDENTITY};
use crate::labels::{Label, LabelSet, SOURCE_CIDR};

/// The table of CIDR identities of one node.
#[derive(Debug, Clone)]
pub struct CidrIdentities {
    by_prefix: BTreeMap<IpNet, Identity>,
    by_id: BTreeMap<Identity, IpNet>,
    next: u32,
}

// === impl CidrIdentities ===

impl Default for CidrIdentities {
    fn default() -> Self {
        CidrIdentities::new()
    }
}

impl CidrIdentities {
    /// An empty table.
    pub fn new() -> Self {
        CidrIdentities {
            by_prefix: BTreeMap::new(),
            by_id: BTreeMap::new(),
            next: CIDR_IDENTITY_BASE,
        }
    }

    /// Makes the table hold exactly the wanted prefixes (normalized, `/0`
    /// skipped): prefixes already present keep their identity, new ones get
    /// a fresh one, the others are freed.
    pub fn sync(&mut self, wanted: &BTreeSet<IpNet>) -> Result<(), IdentityError> {
        let wanted: BTreeSet<IpNet> = wanted
            .iter()
            .map(IpNet::trunc)
            .filter(|p| p.prefix_len() > 0)
            .collect();
        let stale: Vec<IpNet> = self
            .by_prefix
            .keys()
            .filter(|p| !wanted.contains(p))
            .copied()
            .collect();
        for prefix in stale {
            if let Some(id) = self.by_prefix.remove(&prefix) {
                self.by_id.remove(&id);
            }
        }
        for prefix in wanted {
            if self.by_prefix.contains_key(&prefix) {
                continue;
            }
            let id = self.free_number()?;
            self.next = if id.0 >= MAX_CIDR_IDENTITY {
                CIDR_IDENTITY_BASE
            } else {
                id.0 + 1
            };
            self.by_prefix.insert(prefix, id);
            self.by_id.insert(id, prefix);
        }
        Ok(())
    }

    /// A table holding exactly `entries` (as saved before a restart), numbering on
    /// after the highest. Entries that are not CIDR identities, or that repeat a
    /// prefix or a number, are an error naming them.
    pub fn restored(entries: &[(IpNet, Identity)]) -> Result<Self, String> {
        let mut table = CidrIdentities::new();
        for (prefix, id) in entries {
            let prefix = prefix.trunc();
            if !id.is_cidr() {
                return Err(format!("{id} ({prefix}) is not a CIDR identity"));
            }
            if table.by_prefix.insert(prefix, *id).is_some()
                || table.by_id.insert(*id, prefix).is_some()
            {
                return Err(format!("{prefix} or {id} appears twice"));
            }
            if id.0 >= table.next {
                table.next = if id.0 >= MAX_CIDR_IDENTITY {
                    CIDR_IDENTITY_BASE
                } else {
                    id.0 + 1
                };
            }
        }
        Ok(table)
    }

    /// The identity of a prefix, if the table holds it.
    pub fn get(&self, prefix: &IpNet) -> Option<Identity> {
        self.by_prefix.get(&prefix.trunc()).copied()
    }

    /// The prefix of a CIDR identity.
    pub fn prefix_of(&self, identity: Identity) -> Option<IpNet> {
        self.by_id.get(&identity).copied()
    }

    /// The labels of a CIDR identity.
    pub fn labels(&self, identity: Identity) -> Option<LabelSet> {
        self.prefix_of(identity).map(|prefix| cidr_labels(&prefix))
    }

    /// Every (prefix, identity) pair, sorted by prefix: what the datapath
    /// puts into its ipcache.
    pub fn entries(&self) -> Vec<(IpNet, Identity)> {
        self.by_prefix.iter().map(|(p, id)| (*p, *id)).collect()
    }

    /// Every CIDR identity with its labels, sorted by number.
    pub fn list(&self) -> Vec<(Identity, LabelSet)> {
        self.by_id
            .iter()
            .map(|(id, prefix)| (*id, cidr_labels(prefix)))
            .collect()
    }

    /// Number of prefixes held.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    /// True when no prefix is held.
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    fn free_number(&self) -> Result<Identity, IdentityError> {
        let start = self.next.clamp(CIDR_IDENTITY_BASE, MAX_CIDR_IDENTITY);
        (start..=MAX_CIDR_IDENTITY)
            .chain(CIDR_IDENTITY_BASE..start)
            .map(Identity)
            .find(|id| !self.by_id.contains_key(id))
            .ok_or(IdentityError::Exhausted {
                first: CIDR_IDENTITY_BASE,
                last: MAX_CIDR_IDENTITY,
            })
    }
}

/// The `cidr:` label of a prefix. IPv6 colons become dashes, as in Cilium,
/// with a `0` added where the text would start or end with a dash.
pub fn cidr_label(prefix: &IpNet) -> Label {
    let prefix = prefix.trunc();
    let address = prefix.addr().to_string();
    let mut key = String::with_capacity(address.len() + 6);
    let last = address.len().saturating_sub(1);
    for (i, c) in address.char_indices() {
        match c {
            ':' if i == 0 => key.push_str("0-"),
            ':' if i == last => key.push_str("-0"),
            ':' => key.push('-'),
            other => key.push(other),
        }
    }
    key.push('/');
    key.push_str(&prefix.prefix_len().to_string());
    Label::new(SOURCE_CIDR, key, "")
}

fn cidr_labels(prefix: &IpNet) -> LabelSet {
    let world = match prefix {
        IpNet::V4(_) => ReservedIdentity::WorldIpv4,
        IpNet::V6(_) => ReservedIdentity::WorldIpv6,
    };
    LabelSet::from_labels([cidr_label(prefix), Label::reserved(world.name())])
}
