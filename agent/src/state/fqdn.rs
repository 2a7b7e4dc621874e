//! The name cache's part of [`AgentState`]: answers recorded by the DNS proxy, names
//! for flows, and the batched saving of the cache with the rest of the state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{lock, AgentState};
use crate::fqdn::{FqdnCache, FqdnRecord, UpdateOutcome};

impl AgentState {
    /// Starts the name cache afresh with `--tofqdns-min-ttl` (seconds); called once at
    /// start, before a restore.
    pub fn configure_fqdn(&self, min_ttl: u32) {
        *lock(&self.fqdn) = FqdnCache::new(min_ttl);
    }

    /// Records an answer the DNS proxy let through to `endpoint`: `name` has `ips`
    /// for `ttl` seconds. The cache is saved in the next batch.
    pub fn record_dns_answer(
        &self,
        endpoint: u16,
        name: &str,
        ips: &[IpAddr],
        ttl: u32,
    ) -> UpdateOutcome {
        let outcome = lock(&self.fqdn).update(endpoint, name, ips, ttl, SystemTime::now());
        if outcome.changed {
            self.fqdn_unsaved.store(true, Ordering::Release);
        }
        outcome
    }

    /// The names `endpoint` looked up that answered `ip` and have not expired.
    pub fn fqdn_names_of(&self, endpoint: u16, ip: IpAddr) -> Vec<String> {
        lock(&self.fqdn).names_of(endpoint, ip, SystemTime::now())
    }

    /// The cache's entries, as `fqdn cache list` prints them.
    pub fn fqdn_records(&self) -> Vec<FqdnRecord> {
        lock(&self.fqdn).records()
    }

    /// Entries dropped because a cache bound was reached.
    pub fn fqdn_evictions(&self) -> u64 {
        lock(&self.fqdn).evictions()
    }

    /// Removes expired entries; returns how many addresses went. When `toFQDNs`
    /// rules exist, the datapath then drops the identities and policy entries of
    /// addresses no live name selects any more.
    pub fn expire_fqdn(&self) -> usize {
        let removed = lock(&self.fqdn).expire(SystemTime::now());
        if removed > 0 {
            self.fqdn_unsaved.store(true, Ordering::Release);
            if !self.fqdn_matcher().is_empty() {
                self.request_sync();
            }
        }
        removed
    }

    /// The distinct (name, address) pairs alive in the cache, for `toFQDNs`.
    pub(super) fn fqdn_live_names(&self) -> Vec<(String, IpAddr)> {
        lock(&self.fqdn).live_names(SystemTime::now())
    }

    /// Programs the datapath for the names learned so far (identities of the
    /// addresses `toFQDNs` selects, their ipcache and policy entries) and waits, at
    /// most `timeout`, until it is in force; false when the time ran out. The name
    /// cache is then saved off this task, so a restart finds what was programmed.
    pub async fn program_fqdn_policy(self: &Arc<Self>, timeout: Duration) -> bool {
        self.request_sync();
        let generation = self.generation();
        let programmed = self.wait_realized(generation, timeout).await;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = state.save_fqdn_if_changed() {
                tracing::warn!("saving the FQDN cache: {e}");
            }
        });
        programmed
    }

    /// Saves the state if the name cache changed since the last save. The daemon calls
    /// this periodically and at shutdown, so a burst of answers costs one write.
    pub fn save_fqdn_if_changed(&self) -> Result<bool, super::store::StoreError> {
        if !self.fqdn_unsaved.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        self.save().inspect_err(|_| {
            self.fqdn_unsaved.store(true, Ordering::Release);
        })?;
        Ok(true)
    }

    /// Puts saved entries back (only those of endpoints restored with them and still
    /// alive), keeping the configured minimum TTL.
    pub(super) fn restore_fqdn(&self, records: &[FqdnRecord], endpoints: &BTreeMap<u16, String>) {
        let kept: Vec<FqdnRecord> = records
            .iter()
            .filter(|record| endpoints.contains_key(&record.endpoint))
            .cloned()
            .collect();
        let mut cache = lock(&self.fqdn);
        *cache = FqdnCache::restored(cache.min_ttl(), &kept, SystemTime::now());
    }
}

#[cfg(test)]
mod tests;
