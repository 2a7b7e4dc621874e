//! The in-memory identity allocator of a single node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{
    check_allocatable, reserved_identities, AllocatorFuture, Identity, IdentityAllocator,
    IdentityError, ReservedIdentity, ReservedLabels, MAX_ALLOCATED_IDENTITY,
    MIN_ALLOCATED_IDENTITY,
};
use crate::labels::LabelSet;

/// Allocates identities from 256 upward in memory, one per distinct label
/// set, reference-counted. Numbers are handed out next-fit so that a freed
/// number is not reused at once.
#[derive(Debug)]
pub struct LocalIdentityAllocator {
    state: Mutex<State>,
    first: u32,
    last: u32,
}

#[derive(Debug, Default)]
struct State {
    by_labels: HashMap<LabelSet, Identity>,
    by_id: BTreeMap<Identity, Entry>,
    /// Where the search for the next free number starts.
    next: u32,
}

#[derive(Debug)]
struct Entry {
    labels: LabelSet,
    references: u64,
}

// === impl LocalIdentityAllocator ===

impl Default for LocalIdentityAllocator {
    fn default() -> Self {
        LocalIdentityAllocator::new()
    }
}

impl LocalIdentityAllocator {
    /// An allocator over Cilium's range 256..=65535.
    pub fn new() -> Self {
        LocalIdentityAllocator::with_range(MIN_ALLOCATED_IDENTITY, MAX_ALLOCATED_IDENTITY)
    }

    /// An allocator over `first..=last` (tests use small ranges).
    pub fn with_range(first: u32, last: u32) -> Self {
        LocalIdentityAllocator {
            state: Mutex::new(State {
                next: first,
                ..State::default()
            }),
            first,
            last,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (each update is a single insert/remove pair), so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Synchronous allocation, shared by the trait method.
    pub fn allocate_now(&self, labels: &LabelSet) -> Result<Identity, IdentityError> {
        if let Some(reserved) = ReservedIdentity::from_labels(labels) {
            return Ok(reserved.identity());
        }
        check_allocatable(labels)?;
        let mut state = self.state();
        if let Some(&id) = state.by_labels.get(labels) {
            if let Some(entry) = state.by_id.get_mut(&id) {
                entry.references += 1;
                return Ok(id);
            }
        }
        let id = self.free_number(&state)?;
        state.next = if id.0 >= self.last {
            self.first
        } else {
            id.0 + 1
        };
        state.by_labels.insert(labels.clone(), id);
        state.by_id.insert(
            id,
            Entry {
                labels: labels.clone(),
                references: 1,
            },
        );
        Ok(id)
    }

    /// Synchronous release, shared by the trait method.
    pub fn release_now(&self, identity: Identity) -> Result<bool, IdentityError> {
        if identity.reserved().is_some() {
            return Ok(false);
        }
        let mut state = self.state();
        let entry = state
            .by_id
            .get_mut(&identity)
            .ok_or(IdentityError::NotAllocated(identity))?;
        entry.references -= 1;
        if entry.references > 0 {
            return Ok(false);
        }
        if let Some(entry) = state.by_id.remove(&identity) {
            state.by_labels.remove(&entry.labels);
        }
        Ok(true)
    }

    /// Synchronous restore, shared by the trait method.
    pub fn restore_now(&self, identity: Identity, labels: &LabelSet) -> Result<(), IdentityError> {
        if identity.reserved().is_some() && ReservedIdentity::from_labels(labels).is_some() {
            return Ok(());
        }
        check_allocatable(labels)?;
        let conflict = |known| IdentityError::Conflict {
            restored: identity,
            labels: labels.to_string(),
            known,
        };
        if !(self.first..=self.last).contains(&identity.0) {
            return Err(conflict(identity));
        }
        let mut state = self.state();
        match (
            state.by_labels.get(labels).copied(),
            state.by_id.get(&identity),
        ) {
            (Some(known), _) if known != identity => return Err(conflict(known)),
            (None, Some(_)) => return Err(conflict(identity)),
            _ => {}
        }
        let entry = state.by_id.entry(identity).or_insert_with(|| Entry {
            labels: labels.clone(),
            references: 0,
        });
        entry.references += 1;
        state.by_labels.insert(labels.clone(), identity);
        // Continue numbering after the highest restored number, as before the restart.
        if identity.0 >= state.next {
            state.next = if identity.0 >= self.last {
                self.first
            } else {
                identity.0 + 1
            };
        }
        Ok(())
    }

    /// The number of references held on an identity (0 when not allocated).
    pub fn references(&self, identity: Identity) -> u64 {
        self.state()
            .by_id
            .get(&identity)
            .map_or(0, |entry| entry.references)
    }

    fn free_number(&self, state: &State) -> Result<Identity, IdentityError> {
        let start = state.next.clamp(self.first, self.last);
        let candidates = (start..=self.last).chain(self.first..start);
        candidates
            .map(Identity)
            .find(|id| !state.by_id.contains_key(id))
            .ok_or(IdentityError::Exhausted {
                first: self.first,
                last: self.last,
            })
    }
}

impl IdentityAllocator for LocalIdentityAllocator {
    fn allocate<'a>(&'a self, labels: &'a LabelSet) -> AllocatorFuture<'a, Identity> {
        let result = self.allocate_now(labels);
        Box::pin(async move { result })
    }

    fn release(&self, identity: Identity) -> AllocatorFuture<'_, bool> {
        let result = self.release_now(identity);
        Box::pin(async move { result })
    }

    fn restore(&self, identity: Identity, labels: &LabelSet) -> Result<(), IdentityError> {
        self.restore_now(identity, labels)
    }

    fn lookup(&self, identity: Identity) -> Option<LabelSet> {
        if let Some(reserved) = identity.reserved() {
            return Some(reserved.labels());
        }
        self.state()
            .by_id
            .get(&identity)
            .map(|entry| entry.labels.clone())
    }

    fn list(&self) -> Vec<(Identity, LabelSet)> {
        let mut all = reserved_identities();
        all.extend(
            self.state()
                .by_id
                .iter()
                .map(|(id, entry)| (*id, entry.labels.clone())),
        );
        all
    }
}
