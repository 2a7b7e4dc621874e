//! The namespaces GetNamespaces reports: those seen in flows during the last
//! [`NAMESPACE_TTL`], as upstream forgets a namespace after an hour without flows, and
//! at most [`MAX_NAMESPACES`] of them. The ring writer notes each flow's namespaces;
//! the clock is passed in, so tests choose the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a namespace is reported after its last flow (upstream's value).
pub const NAMESPACE_TTL: Duration = Duration::from_secs(3600);

/// Most namespaces kept. A cluster has hundreds; this leaves room for many more while
/// made-up names (a crafted replay file, say) cannot grow the list without bound. A new
/// namespace beyond it is discarded and counted until older ones expire.
pub const MAX_NAMESPACES: usize = 10_000;

/// How often a full list is swept for expired namespaces at most, so that a flood of
/// new names does not sweep it on every flow.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Namespaces with the time of their last flow.
#[derive(Debug, Default)]
pub struct Namespaces {
    last_seen: HashMap<String, Instant>,
    discarded: u64,
    last_full_sweep: Option<Instant>,
}

impl Namespaces {
    /// Notes a flow of `namespace` at `now` (empty: none).
    pub fn note(&mut self, namespace: &str, now: Instant) {
        if namespace.is_empty() {
            return;
        }
        if let Some(seen) = self.last_seen.get_mut(namespace) {
            *seen = now;
            return;
        }
        if self.last_seen.len() >= MAX_NAMESPACES {
            let due = self
                .last_full_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= FULL_SWEEP_INTERVAL);
            if due {
                self.last_full_sweep = Some(now);
                self.expire(now);
            }
            if self.last_seen.len() >= MAX_NAMESPACES {
                self.discarded += 1;
                return;
            }
        }
        self.last_seen.insert(namespace.to_owned(), now);
    }

    /// Forgets the namespaces without a flow for [`NAMESPACE_TTL`] before `now`.
    pub fn expire(&mut self, now: Instant) {
        self.last_seen
            .retain(|_, seen| now.saturating_duration_since(*seen) < NAMESPACE_TTL);
    }

    /// The namespaces with a flow in the [`NAMESPACE_TTL`] before `now`, sorted.
    pub fn list(&mut self, now: Instant) -> Vec<String> {
        self.expire(now);
        let mut names: Vec<String> = self.last_seen.keys().cloned().collect();
        names.sort();
        names
    }

    /// New namespaces discarded because [`MAX_NAMESPACES`] were kept.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_expires_an_hour_after_its_last_flow() {
        let start = Instant::now();
        let mut namespaces = Namespaces::default();
        namespaces.note("default", start);
        namespaces.note("kube-system", start);
        namespaces.note("", start);
        let minutes = |m: u64| start + Duration::from_secs(60 * m);
        // A later flow keeps `default` alive.
        namespaces.note("default", minutes(30));
        assert_eq!(namespaces.list(minutes(59)), ["default", "kube-system"]);
        assert_eq!(namespaces.list(minutes(60)), ["default"]);
        assert_eq!(namespaces.list(minutes(89)), ["default"]);
        assert!(namespaces.list(minutes(90)).is_empty());
        // A namespace that comes back is listed again.
        namespaces.note("kube-system", minutes(100));
        assert_eq!(namespaces.list(minutes(100)), ["kube-system"]);
    }

    #[test]
    fn beyond_the_cap_new_namespaces_are_discarded_and_counted_until_others_expire() {
        let start = Instant::now();
        let mut namespaces = Namespaces::default();
        for i in 0..MAX_NAMESPACES {
            namespaces.note(&format!("ns-{i}"), start);
        }
        namespaces.note("one-too-many", start + Duration::from_secs(1));
        namespaces.note("ns-0", start + Duration::from_secs(2));
        assert_eq!(namespaces.discarded(), 1);
        let later = start + NAMESPACE_TTL + Duration::from_secs(1);
        assert_eq!(namespaces.list(later), ["ns-0"]);
        namespaces.note("one-too-many", later);
        assert_eq!(namespaces.list(later), ["ns-0", "one-too-many"]);
        assert_eq!(namespaces.discarded(), 1);
    }
}
