//! Identities agreed through etcd.
//!
//! A label set's number is fixed by one compare-and-swap that creates its `labels/`
//! key and the `id/` key of a free number together; whoever loses the race reads the
//! winner's number. Every identity of the cluster is kept in a local cache fed by a
//! watch of the `id/` keys, so `lookup` and `list` never wait, and a label set already
//! in the cache is allocated without talking to etcd (which keeps endpoints with known
//! labels working while etcd is away). This node's use of an identity is a
//! `value/<labels>/<node>` key under its lease, counted locally: the key exists while
//! at least one local endpoint holds the identity. Numbers are never reused (see
//! [`super::keys`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use super::keys::{
    decode_labels, encode_labels, identity_id_key, identity_labels_key, identity_reference_key,
    parse_identity,
};
use super::session::Session;
use super::KvstoreError;
use crate::identity::{
    check_allocatable, reserved_identities, AllocatorFuture, Identity, IdentityAllocator,
    IdentityError, ReservedIdentity, ReservedLabels, MAX_ALLOCATED_IDENTITY,
    MIN_ALLOCATED_IDENTITY,
};
use crate::labels::LabelSet;
use peer_service::sources::etcd::WatchHandler;
use peer_service::sources::etcd::{Backoff, Connection};

/// Compare-and-swap attempts per allocation before giving up on a busy range.
pub const MAX_CAS_ATTEMPTS: usize = 64;

/// Every identity of the cluster, in both directions.
#[derive(Debug, Default)]
struct Cache {
    by_id: BTreeMap<Identity, LabelSet>,
    by_labels: HashMap<LabelSet, Identity>,
}

impl Cache {
    /// Adds an identity; returns true if it was new or changed.
    fn insert(&mut self, id: Identity, labels: LabelSet) -> bool {
        if self.by_id.get(&id) == Some(&labels) {
            return false;
        }
        if let Some(old) = self.by_id.insert(id, labels.clone()) {
            self.by_labels.remove(&old);
        }
        self.by_labels.insert(labels, id);
        true
    }

    fn remove(&mut self, id: Identity) -> bool {
        match self.by_id.remove(&id) {
            Some(labels) => {
                self.by_labels.remove(&labels);
                true
            }
            None => false,
        }
    }

    /// The lowest number at or after `from` not known to be taken.
    fn free_number(&self, from: u32) -> Option<Identity> {
        (from.max(MIN_ALLOCATED_IDENTITY)..=MAX_ALLOCATED_IDENTITY)
            .map(Identity)
            .find(|id| !self.by_id.contains_key(id))
    }
}

/// The cluster-wide identity allocator.
pub struct EtcdIdentityAllocator {
    connection: Arc<Connection>,
    session: Arc<Session>,
    node: String,
    cache: Arc<RwLock<Cache>>,
    /// References held by this node's endpoints, per identity.
    local: Mutex<HashMap<Identity, u64>>,
    /// One allocation at a time on this node, so two endpoints with the same new
    /// label set do not race each other.
    allocating: tokio::sync::Mutex<()>,
    changes: Arc<watch::Sender<u64>>,
}

impl EtcdIdentityAllocator {
    pub(super) fn new(
        connection: Arc<Connection>,
        session: Arc<Session>,
        node: String,
        changes: Arc<watch::Sender<u64>>,
    ) -> Self {
        EtcdIdentityAllocator {
            connection,
            session,
            node,
            cache: Arc::default(),
            local: Mutex::default(),
            allocating: tokio::sync::Mutex::new(()),
            changes,
        }
    }

    fn local(&self) -> MutexGuard<'_, HashMap<Identity, u64>> {
        // Counters are updated one at a time; a poisoned lock still holds valid counts.
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, labels: &LabelSet) -> Option<Identity> {
        read(&self.cache).by_labels.get(labels).copied()
    }

    /// The number of references this node holds on `identity`.
    pub fn local_references(&self, identity: Identity) -> u64 {
        self.local().get(&identity).copied().unwrap_or(0)
    }

    /// The handler that keeps the cache in step with the `id/` keys.
    pub(super) fn watch_handler(&self) -> Arc<dyn WatchHandler> {
        Arc::new(IdentityHandler {
            cache: self.cache.clone(),
            changes: self.changes.clone(),
        })
    }

    fn take_reference(&self, id: Identity, labels: &LabelSet) {
        let mut local = self.local();
        let count = local.entry(id).or_insert(0);
        *count += 1;
        if *count == 1 {
            let key = identity_reference_key(&encode_labels(labels), &self.node);
            self.session.set(key, id.0.to_string());
        }
    }

    async fn allocate_labels(&self, labels: &LabelSet) -> Result<Identity, IdentityError> {
        if let Some(reserved) = ReservedIdentity::from_labels(labels) {
            return Ok(reserved.identity());
        }
        check_allocatable(labels)?;
        let _one_at_a_time = self.allocating.lock().await;
        if let Some(id) = self.cached(labels) {
            self.take_reference(id, labels);
            return Ok(id);
        }
        let mut backoff = Backoff::default();
        let id = loop {
            match self.allocate_in_store(labels).await {
                Ok(Some(id)) => break id,
                Ok(None) => {
                    return Err(IdentityError::Exhausted {
                        first: MIN_ALLOCATED_IDENTITY,
                        last: MAX_ALLOCATED_IDENTITY,
                    })
                }
                Err(e) => {
                    tracing::warn!(labels = %labels, "allocating an identity in etcd: {e}; retrying");
                    self.connection.reset().await;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        if write(&self.cache).insert(id, labels.clone()) {
            self.changes.send_modify(|n| *n += 1);
        }
        self.take_reference(id, labels);
        Ok(id)
    }

    /// Finds or creates the number of `labels` in etcd; `None` when the range is full.
    async fn allocate_in_store(&self, labels: &LabelSet) -> Result<Option<Identity>, KvstoreError> {
        let mut client = self.connection.client().await?;
        let encoded = encode_labels(labels);
        let labels_key = identity_labels_key(&encoded);
        let existing = client.get(labels_key.as_str(), None).await?;
        if let Some(kv) = existing.kvs().first() {
            return parse_identity(&labels_key, kv.value()).map(Some);
        }
        let mut from = MIN_ALLOCATED_IDENTITY;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(candidate) = read(&self.cache).free_number(from) else {
                return Ok(None);
            };
            let id_key = identity_id_key(candidate);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(labels_key.as_str(), CompareOp::Equal, 0),
                    Compare::create_revision(id_key.as_str(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(id_key.as_str(), encoded.as_str(), None),
                    TxnOp::put(labels_key.as_str(), candidate.0.to_string(), None),
                ])
                .or_else([
                    TxnOp::get(labels_key.as_str(), None),
                    TxnOp::get(id_key.as_str(), None),
                ]);
            let response = client.txn(txn).await?;
            if response.succeeded() {
                tracing::info!(identity = candidate.0, labels = %labels, "allocated identity in etcd");
                return Ok(Some(candidate));
            }
            let gets: Vec<_> = response
                .op_responses()
                .into_iter()
                .filter_map(|r| match r {
                    TxnOpResponse::Get(get) => Some(get),
                    _ => None,
                })
                .collect();
            // Someone else gave this label set a number first.
            if let Some(kv) = gets.first().and_then(|g| g.kvs().first()) {
                return parse_identity(&labels_key, kv.value()).map(Some);
            }
            // The number went to another label set: learn it and try the next one.
            if let Some(kv) = gets.get(1).and_then(|g| g.kvs().first()) {
                if let Ok(other) = decode_labels(&String::from_utf8_lossy(kv.value())) {
                    write(&self.cache).insert(candidate, other);
                }
            }
            from = candidate.0 + 1;
        }
        Ok(None)
    }

    fn release_identity(&self, identity: Identity) -> Result<bool, IdentityError> {
        if identity.reserved().is_some() {
            return Ok(false);
        }
        let mut local = self.local();
        let count = local
            .get_mut(&identity)
            .ok_or(IdentityError::NotAllocated(identity))?;
        *count -= 1;
        if *count > 0 {
            return Ok(false);
        }
        local.remove(&identity);
        if let Some(labels) = read(&self.cache).by_id.get(&identity) {
            let key = identity_reference_key(&encode_labels(labels), &self.node);
            self.session.remove(&key);
        }
        Ok(true)
    }
}

impl IdentityAllocator for EtcdIdentityAllocator {
    fn allocate<'a>(&'a self, labels: &'a LabelSet) -> AllocatorFuture<'a, Identity> {
        Box::pin(self.allocate_labels(labels))
    }

    /// Drops one local reference; returns true when this node no longer uses the
    /// identity (its reference key goes away; the number itself stays reserved).
    fn release(&self, identity: Identity) -> AllocatorFuture<'_, bool> {
        let result = self.release_identity(identity);
        Box::pin(async move { result })
    }

    /// Puts a restored identity into the cache (unless etcd's listing already gave
    /// these labels or this number to something else) and takes a local reference,
    /// which publishes this node's reference key. The agent re-checks every endpoint
    /// against the cache whenever etcd's identities change, so a number etcd
    /// disagrees with is replaced by etcd's.
    fn restore(&self, identity: Identity, labels: &LabelSet) -> Result<(), IdentityError> {
        if identity.reserved().is_some() && ReservedIdentity::from_labels(labels).is_some() {
            return Ok(());
        }
        check_allocatable(labels)?;
        {
            let mut cache = write(&self.cache);
            let conflict = |known| IdentityError::Conflict {
                restored: identity,
                labels: labels.to_string(),
                known,
            };
            match (
                cache.by_labels.get(labels).copied(),
                cache.by_id.get(&identity),
            ) {
                (Some(known), _) if known != identity => return Err(conflict(known)),
                (None, Some(_)) => return Err(conflict(identity)),
                _ => {}
            }
            cache.insert(identity, labels.clone());
        }
        self.take_reference(identity, labels);
        Ok(())
    }

    fn lookup(&self, identity: Identity) -> Option<LabelSet> {
        if let Some(reserved) = identity.reserved() {
            return Some(reserved.labels());
        }
        read(&self.cache).by_id.get(&identity).cloned()
    }

    fn list(&self) -> Vec<(Identity, LabelSet)> {
        let mut all = reserved_identities();
        all.extend(
            read(&self.cache)
                .by_id
                .iter()
                .map(|(id, labels)| (*id, labels.clone())),
        );
        all
    }
}

fn read(cache: &RwLock<Cache>) -> std::sync::RwLockReadGuard<'_, Cache> {
    cache.read().unwrap_or_else(|e| e.into_inner())
}

fn write(cache: &RwLock<Cache>) -> std::sync::RwLockWriteGuard<'_, Cache> {
    cache.write().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the cache equal to the `id/` keys.
struct IdentityHandler {
    cache: Arc<RwLock<Cache>>,
    changes: Arc<watch::Sender<u64>>,
}

impl IdentityHandler {
    fn parse(key: &str, value: &[u8]) -> Option<(Identity, LabelSet)> {
        let id = parse_identity(key, key.as_bytes()).ok()?;
        match decode_labels(&String::from_utf8_lossy(value)) {
            Ok(labels) if !labels.is_empty() => Some((id, labels)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("ignoring identity {key}: bad labels: {e}");
                None
            }
        }
    }
}

impl WatchHandler for IdentityHandler {
    fn snapshot(&self, entries: Vec<(String, Vec<u8>)>) {
        let mut fresh = Cache::default();
        for (key, value) in &entries {
            if let Some((id, labels)) = Self::parse(key, value) {
                fresh.insert(id, labels);
            }
        }
        let mut cache = write(&self.cache);
        // Numbers are never freed: an identity this node knew stays known even if the
        // listing lacks it (etcd's data was lost), so enforcement does not change.
        for (id, labels) in &cache.by_id {
            if !fresh.by_id.contains_key(id) && !fresh.by_labels.contains_key(labels) {
                fresh.insert(*id, labels.clone());
            }
        }
        let changed = fresh.by_id != cache.by_id;
        *cache = fresh;
        drop(cache);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    fn put(&self, key: &str, value: &[u8]) {
        if let Some((id, labels)) = Self::parse(key, value) {
            if write(&self.cache).insert(id, labels) {
                self.changes.send_modify(|n| *n += 1);
            }
        }
    }

    fn delete(&self, key: &str) {
        // Only an operator deletes identity numbers; follow them.
        if let Ok(id) = parse_identity(key, key.as_bytes()) {
            if write(&self.cache).remove(id) {
                self.changes.send_modify(|n| *n += 1);
            }
        }
    }
}
