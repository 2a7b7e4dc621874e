//! [`Metrics`]: the enabled handlers, `hubble_lost_events_total` and the removal of a
//! deleted pod's series after a grace period.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::flow::{Flow, LostEventSource};

use crate::config::{HandlerKind, MetricsConfig};
use crate::exposition::{Collect, FamilySnapshot, Kind, SeriesSnapshot};
use crate::handlers::{self, Handler};
use crate::key::KeyBuf;

/// How long the series of a deleted pod stay, as upstream: flows seen just before the
/// deletion are still scraped once or twice.
pub const DEFAULT_DELETION_GRACE: Duration = Duration::from_secs(60);

/// Pod deletions waiting for their grace period to end. Bounded: beyond this many,
/// the oldest pending deletion is applied at once (and counted).
pub const PENDING_DELETIONS_CAPACITY: usize = 65_536;

struct HandlerSet {
    handlers: Vec<(HandlerKind, Box<dyn Handler>)>,
    /// Panics caught per handler, indexed like `handlers`.
    failures: Vec<u64>,
    key: KeyBuf,
}

struct PendingDeletion {
    due: Instant,
    namespace: String,
    pod: String,
}

/// Hubble's flow metrics: feed flows with [`Metrics::process_flow`], scrape with
/// [`Collect::collect`] (through [`crate::Registry`] and [`crate::serve`]).
pub struct Metrics {
    set: Mutex<HandlerSet>,
    lost: Mutex<BTreeMap<String, u64>>,
    pending: Mutex<VecDeque<PendingDeletion>>,
    grace: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `source` label of `hubble_lost_events_total` for a lost-event source.
pub fn lost_event_source_label(source: LostEventSource) -> &'static str {
    match source {
        LostEventSource::PerfEventRingBuffer => "perf_event_ring_buffer",
        LostEventSource::ObserverEventsQueue => "observer_events_queue",
        LostEventSource::HubbleRingBuffer => "hubble_ring_buffer",
        LostEventSource::UnknownLostEventSource => "unknown_lost_event_source",
    }
}

impl Metrics {
    /// Builds the handlers of `config`. The configuration was validated when parsed,
    /// so this cannot fail.
    pub fn new(config: &MetricsConfig) -> Self {
        let handlers: Vec<_> = config
            .handlers
            .iter()
            .map(|h| (h.kind, handlers::build(h)))
            .collect();
        let failures = vec![0; handlers.len()];
        // Upstream creates these two series when its consumer starts, so they read 0
        // before anything is lost.
        let lost = [
            LostEventSource::PerfEventRingBuffer,
            LostEventSource::ObserverEventsQueue,
        ]
        .into_iter()
        .map(|s| (lost_event_source_label(s).to_owned(), 0))
        .collect();
        Self {
            set: Mutex::new(HandlerSet {
                handlers,
                failures,
                key: KeyBuf::new(),
            }),
            lost: Mutex::new(lost),
            pending: Mutex::new(VecDeque::new()),
            grace: DEFAULT_DELETION_GRACE,
        }
    }

    /// Sets how long a deleted pod's series stay before they are removed.
    pub fn with_deletion_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Adds a handler built elsewhere (tests use it to inject a faulty one).
    #[cfg(test)]
    pub(crate) fn with_extra_handler(self, kind: HandlerKind, handler: Box<dyn Handler>) -> Self {
        {
            let mut set = lock(&self.set);
            set.handlers.push((kind, handler));
            set.failures.push(0);
        }
        self
    }

    /// Counts one flow in every enabled handler. A handler that panics is skipped for
    /// this flow and counted in `hubble_metrics_handler_failures_total`; the others
    /// still run.
    pub fn process_flow(&self, flow: &Flow) {
        let mut guard = lock(&self.set);
        let set = &mut *guard;
        for (index, (kind, handler)) in set.handlers.iter_mut().enumerate() {
            set.key.clear();
            let key = &mut set.key;
            let outcome = catch_unwind(AssertUnwindSafe(|| handler.process(flow, key)));
            if outcome.is_err() {
                set.failures[index] += 1;
                if set.failures[index] == 1 {
                    tracing::error!(
                        handler = kind.name(),
                        "metrics handler panicked; it keeps running for later flows"
                    );
                }
            }
        }
    }

    /// Adds `n` to `hubble_lost_events_total{source}`. Sources are upstream's lower-case
    /// names (see [`lost_event_source_label`]).
    pub fn lost_events(&self, source: &str, n: u64) {
        *lock(&self.lost).entry(source.to_owned()).or_insert(0) += n;
    }

    /// Schedules the removal of the series bound to pod `namespace/pod` once the grace
    /// period has passed (see [`handlers::delete_pod_series`] for which series).
    pub fn on_endpoint_deleted(&self, namespace: &str, pod: &str) {
        let mut pending = lock(&self.pending);
        if pending.len() >= PENDING_DELETIONS_CAPACITY {
            if let Some(oldest) = pending.pop_front() {
                tracing::warn!(namespace = %oldest.namespace, pod = %oldest.pod, "too many pending pod deletions; removing series early");
                drop(pending);
                self.delete_now(&oldest.namespace, &oldest.pod);
                pending = lock(&self.pending);
            }
        }
        pending.push_back(PendingDeletion {
            due: Instant::now() + self.grace,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
        });
    }

    /// Applies every pending deletion due at `now`; returns how many series went.
    /// Called on each scrape; the agent may also call it from a timer.
    pub fn apply_due_deletions(&self, now: Instant) -> usize {
        let mut due = Vec::new();
        {
            let mut pending = lock(&self.pending);
            while pending.front().is_some_and(|p| p.due <= now) {
                if let Some(p) = pending.pop_front() {
                    due.push(p);
                }
            }
        }
        due.iter()
            .map(|p| self.delete_now(&p.namespace, &p.pod))
            .sum()
    }

    fn delete_now(&self, namespace: &str, pod: &str) -> usize {
        let mut set = lock(&self.set);
        set.handlers
            .iter_mut()
            .map(|(_, h)| handlers::delete_pod_series(h.as_mut(), namespace, pod))
            .sum()
    }

    /// The number of series all handlers hold.
    pub fn series_count(&self) -> usize {
        let set = lock(&self.set);
        set.handlers
            .iter()
            .flat_map(|(_, h)| h.families().into_iter().map(|f| f.len()))
            .sum()
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        self.apply_due_deletions(Instant::now());
        let set = lock(&self.set);
        for (_, handler) in &set.handlers {
            handlers::snapshot(handler.as_ref(), out);
        }
        let failures = set
            .handlers
            .iter()
            .zip(&set.failures)
            .filter(|(_, n)| **n > 0)
            .map(|((kind, _), n)| counter_series("handler", kind.name(), *n))
            .collect();
        drop(set);
        out.push(FamilySnapshot {
            name: "hubble_metrics_handler_failures_total".to_owned(),
            help: "Number of flows a metrics handler failed on (panicked)".to_owned(),
            kind: Kind::Counter,
            series: failures,
        });
        let lost = lock(&self.lost)
            .iter()
            .map(|(source, n)| counter_series("source", source, *n))
            .collect();
        out.push(FamilySnapshot {
            name: "hubble_lost_events_total".to_owned(),
            help: "Number of lost events".to_owned(),
            kind: Kind::Counter,
            series: lost,
        });
    }
}

pub(crate) fn counter_series(label: &str, value: &str, count: u64) -> SeriesSnapshot {
    SeriesSnapshot::counter(vec![(label.to_owned(), value.to_owned())], count)
}
