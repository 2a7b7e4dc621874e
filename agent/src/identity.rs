//! Security identities: numbers standing for label sets.
//!
//! Numbering follows Cilium: 0 is "unknown", 1..=10 are the reserved
//! identities (host, world, ...), identities allocated for label sets start at
//! 256 and are shared cluster-wide, and node-local CIDR identities start at
//! 1 << 24.
//!
//! The [`IdentityAllocator`] trait is what the rest of the agent uses. It is
//! object safe (`Arc<dyn IdentityAllocator>`); allocation and release return
//! boxed futures because a cluster allocator has to talk to its store, while
//! lookups are synchronous and answer from the allocator's cache. The
//! in-memory [`LocalIdentityAllocator`] serves a single node.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::labels::{Label, LabelSet, SOURCE_CIDR, SOURCE_RESERVED};

mod cidr;
mod local;

pub use cidr::{cidr_label, CidrIdentities};
pub use local::LocalIdentityAllocator;

/// First identity number handed out for a label set.
pub const MIN_ALLOCATED_IDENTITY: u32 = 256;
/// Last identity number handed out for a label set (Cilium's cluster-local maximum).
pub const MAX_ALLOCATED_IDENTITY: u32 = 65535;
/// First node-local CIDR identity (Cilium's local identity scope bit).
pub const CIDR_IDENTITY_BASE: u32 = 1 << 24;
/// Last node-local CIDR identity.
pub const MAX_CIDR_IDENTITY: u32 = CIDR_IDENTITY_BASE | 0x00ff_ffff;

/// A numeric security identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Identity(pub u32);

// === impl Identity ===

impl Identity {
    /// The identity of traffic whose source is not known.
    pub const UNKNOWN: Identity = Identity(0);

    /// The reserved identity with this number, if it is one.
    pub fn reserved(self) -> Option<ReservedIdentity> {
        ReservedIdentity::from_id(self.0)
    }

    /// True for node-local CIDR identities.
    pub fn is_cidr(self) -> bool {
        (CIDR_IDENTITY_BASE..=MAX_CIDR_IDENTITY).contains(&self.0)
    }

    /// True for identities of the world (2, 9, 10) and for CIDR identities,
    /// which stand for addresses outside the cluster.
    pub fn is_world(self) -> bool {
        matches!(
            self.reserved(),
            Some(
                ReservedIdentity::World | ReservedIdentity::WorldIpv4 | ReservedIdentity::WorldIpv6
            )
        ) || self.is_cidr()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Cilium's reserved identities (numbers and names are `proto::names`').
pub use proto::names::ReservedIdentity;

/// What the agent adds to a reserved identity: its number as an [`Identity`] and its
/// labels.
pub trait ReservedLabels: Sized {
    /// The identity number.
    fn identity(self) -> Identity;
    /// The labels of the identity: `reserved:<name>`.
    fn labels(self) -> LabelSet;
    /// The reserved identity whose labels are exactly `labels`, if any.
    fn from_labels(labels: &LabelSet) -> Option<Self>;
}

impl ReservedLabels for ReservedIdentity {
    fn identity(self) -> Identity {
        Identity(self.id())
    }

    fn labels(self) -> LabelSet {
        LabelSet::from_labels([Label::reserved(self.name())])
    }

    fn from_labels(labels: &LabelSet) -> Option<ReservedIdentity> {
        ReservedIdentity::ALL
            .iter()
            .copied()
            .find(|r| &r.labels() == labels)
    }
}

/// Errors of identity allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No free number is left in the range.
    #[error("no free identity left in {first}..={last}")]
    Exhausted {
        /// First number of the range.
        first: u32,
        /// Last number of the range.
        last: u32,
    },
    /// The label set is empty.
    #[error("cannot allocate an identity for an empty label set")]
    EmptyLabels,
    /// The label set mixes `reserved:` or `cidr:` labels with others; those
    /// identities are not allocated from label sets.
    #[error("cannot allocate an identity for {labels}: label {label} belongs to a reserved or CIDR identity")]
    ReservedLabels {
        /// The offending set.
        labels: String,
        /// The offending label.
        label: String,
    },
    /// The identity was never allocated, or was already released.
    #[error("identity {0} is not allocated")]
    NotAllocated(Identity),
    /// A restored identity disagrees with what the allocator knows.
    #[error("restored identity {restored} for {labels} conflicts with identity {known}")]
    Conflict {
        /// The restored number.
        restored: Identity,
        /// The restored labels.
        labels: String,
        /// What the allocator knows: the number of these labels, or the number itself
        /// when it holds other labels.
        known: Identity,
    },
    /// The backing store failed (cluster allocators).
    #[error("identity store: {0}")]
    Store(String),
}

/// A boxed future as returned by [`IdentityAllocator`] methods.
pub type AllocatorFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, IdentityError>> + Send + 'a>>;

/// Hands out one identity per distinct label set, reference-counted: the
/// number of a label set stays the same while anyone holds a reference.
///
/// The trait is object safe. `allocate` and `release` return futures so that
/// a cluster implementation can reach its store; `lookup` and `list` answer
/// from memory and never block.
pub trait IdentityAllocator: Send + Sync {
    /// Returns the identity of `labels`, allocating it on first use, and
    /// takes one reference to it. A set equal to a reserved identity's
    /// labels returns that reserved identity (and takes no reference).
    fn allocate<'a>(&'a self, labels: &'a LabelSet) -> AllocatorFuture<'a, Identity>;

    /// Drops one reference; returns true when it was the last one and the
    /// identity was freed. Releasing a reserved identity does nothing.
    fn release(&self, identity: Identity) -> AllocatorFuture<'_, bool>;

    /// The labels of an identity known to this allocator, reserved ones included.
    fn lookup(&self, identity: Identity) -> Option<LabelSet>;

    /// Every identity known cluster-wide, reserved ones included, sorted by number.
    fn list(&self) -> Vec<(Identity, LabelSet)>;

    /// Takes one reference to `identity` for `labels` as restored from the state
    /// directory, so the number stays the same across a restart. Fails with
    /// [`IdentityError::Conflict`] when the allocator already gives either of them to
    /// something else (the caller then allocates afresh).
    fn restore(&self, identity: Identity, labels: &LabelSet) -> Result<(), IdentityError>;
}

/// Rejects label sets that cannot get an allocated identity.
pub(crate) fn check_allocatable(labels: &LabelSet) -> Result<(), IdentityError> {
    if labels.is_empty() {
        return Err(IdentityError::EmptyLabels);
    }
    if let Some(label) = labels
        .iter()
        .find(|l| l.source == SOURCE_RESERVED || l.source == SOURCE_CIDR)
    {
        return Err(IdentityError::ReservedLabels {
            labels: labels.to_string(),
            label: label.to_string(),
        });
    }
    Ok(())
}

/// The reserved identities with their labels, in numeric order.
pub fn reserved_identities() -> Vec<(Identity, LabelSet)> {
    ReservedIdentity::ALL
        .iter()
        .map(|r| (r.identity(), r.labels()))
        .collect()
}

#[cfg(test)]
mod tests;
