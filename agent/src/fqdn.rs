//! DNS names the node's endpoints looked up (Cilium's per-endpoint DNS history).
//!
//! Every answer the DNS proxy lets through is recorded for the endpoint that asked:
//! each address with the name that led to it and when that knowledge expires (the
//! answer's TTL, raised to `--tofqdns-min-ttl`). Flows take their `source_names` and
//! `destination_names` from here, `hubble-agent fqdn cache list` prints it, toFQDNs
//! policy selects addresses by it, and it is saved with the agent's state so a restart
//! keeps the names.
//!
//! The cache is bounded: at most [`MAX_IPS_PER_NAME`] addresses per name and
//! [`MAX_NAMES_PER_ENDPOINT`] names per endpoint. When a bound is hit the entry that
//! expires first gives way, and every such eviction is counted.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

mod hook;

pub use hook::{CacheAnswerHook, FQDN_ANSWERS_RELEASED_UNPROGRAMMED, MAX_ANSWER_DELAY};

/// Default of `--tofqdns-min-ttl` (Cilium's default: 0 keeps the answers' TTLs).
pub const DEFAULT_MIN_TTL: u32 = 0;

/// Most addresses remembered per name and endpoint (Cilium's
/// `--tofqdns-endpoint-max-ip-per-hostname` default): a name answering with ever new
/// addresses cannot grow an endpoint's cache without bound.
pub const MAX_IPS_PER_NAME: usize = 1000;

/// Most names remembered per endpoint: a pod resolving random names cannot grow the
/// agent's memory and state file without bound; the name that expires first gives way.
pub const MAX_NAMES_PER_ENDPOINT: usize = 4096;

/// Entries every cache of this process dropped at a bound, for the agent's
/// `/metrics` (`hubble_agent_fqdn_cache_evictions_total`).
pub static FQDN_CACHE_EVICTIONS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// What the cache list says an entry came from (Cilium's `Source` column): answers
/// seen by the DNS proxy.
pub const SOURCE_LOOKUP: &str = "lookup";

/// One address learned for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Lookup {
    /// When the answer was seen, in seconds since the epoch.
    lookup_time: u64,
    /// The TTL applied (the answer's, at least the minimum).
    ttl: u32,
}

impl Lookup {
    fn expires(&self) -> u64 {
        self.lookup_time.saturating_add(u64::from(self.ttl))
    }
}

/// One row of `fqdn cache list`, also the saved form of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FqdnRecord {
    /// The endpoint that looked the name up.
    pub endpoint: u16,
    /// The name, lowercase with the trailing dot (`api.github.com.`).
    pub fqdn: String,
    /// The TTL applied, in seconds.
    pub ttl: u32,
    /// When the answer was seen, in seconds since the epoch.
    pub lookup_time: u64,
    /// The addresses of the answer.
    pub ips: Vec<IpAddr>,
}

impl FqdnRecord {
    /// When the entry expires, in seconds since the epoch.
    pub fn expiration(&self) -> u64 {
        self.lookup_time.saturating_add(u64::from(self.ttl))
    }
}

/// What one recorded answer changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Addresses the endpoint had not known under this name.
    pub new_ips: Vec<IpAddr>,
    /// Whether anything changed (new addresses or later expiry).
    pub changed: bool,
}

/// The per-endpoint name cache.
#[derive(Debug, Clone, Default)]
pub struct FqdnCache {
    min_ttl: u32,
    /// endpoint id -> name -> address -> lookup.
    endpoints: BTreeMap<u16, BTreeMap<String, BTreeMap<IpAddr, Lookup>>>,
    evictions: u64,
}

/// Seconds since the epoch.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// A name as the cache keeps it: lowercase, with exactly one trailing dot.
pub fn normalize_name(name: &str) -> String {
    let mut name = name.trim_end_matches('.').to_ascii_lowercase();
    name.push('.');
    name
}

impl FqdnCache {
    /// An empty cache raising every TTL to at least `min_ttl` seconds.
    pub fn new(min_ttl: u32) -> Self {
        FqdnCache {
            min_ttl,
            ..Default::default()
        }
    }

    /// The minimum TTL, in seconds.
    pub fn min_ttl(&self) -> u32 {
        self.min_ttl
    }

    /// Entries dropped because a bound was reached, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Records that `endpoint` was told at `now` that `name` has `ips` for `ttl` seconds.
    pub fn update(
        &mut self,
        endpoint: u16,
        name: &str,
        ips: &[IpAddr],
        ttl: u32,
        now: SystemTime,
    ) -> UpdateOutcome {
        let mut outcome = UpdateOutcome::default();
        if ips.is_empty() {
            return outcome;
        }
        let now_seconds = unix_seconds(now);
        let lookup = Lookup {
            lookup_time: now_seconds,
            ttl: ttl.max(self.min_ttl),
        };
        let name = normalize_name(name);
        let names = self.endpoints.entry(endpoint).or_default();
        if !names.contains_key(&name) && names.len() >= MAX_NAMES_PER_ENDPOINT {
            if let Some(victim) = first_to_expire(names) {
                names.remove(&victim);
                self.evictions += 1;
                FQDN_CACHE_EVICTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let addresses = names.entry(name).or_default();
        for ip in ips {
            match addresses.get_mut(ip) {
                Some(known) => {
                    if lookup.expires() > known.expires() {
                        // An address whose entry had expired (not yet removed) is
                        // known again: new for policy.
                        if known.expires() <= now_seconds {
                            outcome.new_ips.push(*ip);
                        }
                        *known = lookup;
                        outcome.changed = true;
                    }
                }
                None => {
                    if addresses.len() >= MAX_IPS_PER_NAME {
                        let victim = addresses
                            .iter()
                            .min_by_key(|(_, l)| l.expires())
                            .map(|(ip, _)| *ip);
                        if let Some(victim) = victim {
                            addresses.remove(&victim);
                            self.evictions += 1;
                            FQDN_CACHE_EVICTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    addresses.insert(*ip, lookup);
                    outcome.new_ips.push(*ip);
                    outcome.changed = true;
                }
            }
        }
        outcome
    }

    /// The names (without the trailing dot, sorted) under which `endpoint` learned
    /// `ip` and that have not expired at `now`.
    pub fn names_of(&self, endpoint: u16, ip: IpAddr, now: SystemTime) -> Vec<String> {
        let now = unix_seconds(now);
        let Some(names) = self.endpoints.get(&endpoint) else {
            return Vec::new();
        };
        names
            .iter()
            .filter(|(_, addresses)| addresses.get(&ip).is_some_and(|l| l.expires() > now))
            .map(|(name, _)| name.trim_end_matches('.').to_string())
            .collect()
    }

    /// Every (endpoint, name, address) alive at `now`, for policy.
    pub fn live_entries(&self, now: SystemTime) -> Vec<(u16, &str, IpAddr)> {
        let now = unix_seconds(now);
        let mut entries = Vec::new();
        for (endpoint, names) in &self.endpoints {
            for (name, addresses) in names {
                for (ip, lookup) in addresses {
                    if lookup.expires() > now {
                        entries.push((*endpoint, name.as_str(), *ip));
                    }
                }
            }
        }
        entries
    }

    /// Every distinct (name, address) pair alive at `now` over all endpoints, sorted:
    /// what `toFQDNs` selects from.
    pub fn live_names(&self, now: SystemTime) -> Vec<(String, IpAddr)> {
        let names: std::collections::BTreeSet<(String, IpAddr)> = self
            .live_entries(now)
            .into_iter()
            .map(|(_, name, ip)| (name.to_string(), ip))
            .collect();
        names.into_iter().collect()
    }

    /// Removes what expired at or before `now`; returns how many addresses went.
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let now = unix_seconds(now);
        let mut removed = 0;
        for names in self.endpoints.values_mut() {
            for addresses in names.values_mut() {
                let before = addresses.len();
                addresses.retain(|_, lookup| lookup.expires() > now);
                removed += before - addresses.len();
            }
            names.retain(|_, addresses| !addresses.is_empty());
        }
        self.endpoints.retain(|_, names| !names.is_empty());
        removed
    }

    /// Forgets an endpoint that went away.
    pub fn remove_endpoint(&mut self, endpoint: u16) -> bool {
        self.endpoints.remove(&endpoint).is_some()
    }

    /// The entries, one per (endpoint, name, lookup time and TTL), by endpoint and name:
    /// what `fqdn cache list` prints and what the state file keeps.
    pub fn records(&self) -> Vec<FqdnRecord> {
        let mut records = Vec::new();
        for (endpoint, names) in &self.endpoints {
            for (name, addresses) in names {
                let mut groups: BTreeMap<(u64, u32), Vec<IpAddr>> = BTreeMap::new();
                for (ip, lookup) in addresses {
                    groups
                        .entry((lookup.lookup_time, lookup.ttl))
                        .or_default()
                        .push(*ip);
                }
                for ((lookup_time, ttl), ips) in groups.into_iter().rev() {
                    records.push(FqdnRecord {
                        endpoint: *endpoint,
                        fqdn: name.clone(),
                        ttl,
                        lookup_time,
                        ips,
                    });
                }
            }
        }
        records
    }

    /// A cache holding `records` (saved before a restart) that are still alive at
    /// `now`; the bounds apply as for new answers.
    pub fn restored(min_ttl: u32, records: &[FqdnRecord], now: SystemTime) -> Self {
        let mut cache = FqdnCache::new(min_ttl);
        let now_seconds = unix_seconds(now);
        for record in records {
            if record.expiration() <= now_seconds {
                continue;
            }
            let seen = UNIX_EPOCH + Duration::from_secs(record.lookup_time);
            // The saved TTL already includes the minimum in force when it was seen.
            cache.update(record.endpoint, &record.fqdn, &record.ips, record.ttl, seen);
        }
        cache
    }
}

/// The name of `names` whose last address expires first.
fn first_to_expire(names: &BTreeMap<String, BTreeMap<IpAddr, Lookup>>) -> Option<String> {
    names
        .iter()
        .min_by_key(|(_, addresses)| addresses.values().map(Lookup::expires).max())
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
mod tests;
