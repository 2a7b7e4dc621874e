//! Live updates to browsers.
//!
//! Every `UPDATE_INTERVAL` one task collects the flows that arrived since its last
//! round, the map when it changed and the status once a second, and offers each browser
//! one message on that browser's own bounded queue with `try_send`. A browser whose
//! queue is full misses that message (its flows are counted as missed; the map and
//! status, being absolute, come again in its next message), so a slow page never slows
//! the reader, the other pages or this task.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::query::FlowMatcher;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::ring::StoredFlow;
use crate::state::{Shared, State};

/// Messages queued per browser. At one message per `UPDATE_INTERVAL` this is about
/// three seconds of updates: enough to ride out a busy page or a network hiccup, short
/// enough that a stuck page is noticed (and skipped) quickly.
pub const SUBSCRIBER_QUEUE_CAPACITY: usize = 16;
/// How often browsers get a message. Five per second reads as live and lets the page
/// render rows in batches.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(200);
/// Most flows in one message. A page shows a few hundred rows; beyond this the oldest
/// flows of a round are left out and counted as skipped.
pub const MAX_FLOWS_PER_UPDATE: usize = 2000;
/// Rounds between status messages (one second).
const STATUS_EVERY_ROUNDS: u64 = 5;

/// One browser's subscription.
#[derive(Debug)]
pub struct Subscriber {
    filters: FlowMatcher,
    tx: mpsc::Sender<String>,
    /// First flow number this browser has not been offered yet.
    next_seq: u64,
    /// Map version this browser has, if any.
    map_version: Option<u64>,
    /// The count of flows received that this browser was last sent.
    flows_received: u64,
    missed_updates: u64,
    missed_flows: u64,
    skipped_flows: u64,
}

/// Registers a browser: its first message (already queued) holds the last `limit`
/// flows passing `filters`, the map and the status.
pub fn subscribe(shared: &Shared, filters: FlowMatcher, limit: usize) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE_CAPACITY);
    let mut state = shared.lock();
    let initial = state.ring.latest_matching(&filters, limit);
    let map = map_json(&state);
    let status = status_json(&state);
    let subscriber = Subscriber {
        filters,
        tx,
        next_seq: state.ring.next_seq(),
        map_version: Some(state.map.version()),
        flows_received: state.upstream.flows_received,
        missed_updates: 0,
        missed_flows: 0,
        skipped_flows: 0,
    };
    let message = subscriber.message(
        true,
        &initial,
        Some(&map),
        Some(&status),
        subscriber.flows_received,
    );
    // A fresh queue has room for one message, so this cannot fail.
    let _ = subscriber.tx.try_send(message);
    state.subscribers.push(subscriber);
    state.delivery.subscribers = state.subscribers.len();
    rx
}

/// Runs the broadcaster until `shutdown` resolves.
pub async fn run(shared: Arc<Shared>, shutdown: impl std::future::Future<Output = ()>) {
    let mut ticker = tokio::time::interval(UPDATE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = shared.lock().ring.next_seq();
    let mut cached_map: Option<(u64, String)> = None;
    let mut round: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                // Dropping the queues ends every event stream, so the server can drain.
                shared.lock().subscribers.clear();
                return;
            }
            _ = ticker.tick() => {}
        }
        round += 1;
        let (entries, overwritten, map_version, status, received, mut subscribers) = {
            let mut state = shared.lock();
            let (iter, overwritten) = state.ring.since(cursor);
            let entries: Vec<Arc<StoredFlow>> = iter.cloned().collect();
            cursor = state.ring.next_seq();
            let version = state.map.version();
            if cached_map.as_ref().is_none_or(|(v, _)| *v != version) {
                cached_map = Some((version, map_json(&state)));
            }
            let status = round
                .is_multiple_of(STATUS_EVERY_ROUNDS)
                .then(|| status_json(&state));
            let received = state.upstream.flows_received;
            let subscribers = std::mem::take(&mut state.subscribers);
            (entries, overwritten, version, status, received, subscribers)
        };
        let map = cached_map.as_ref().map(|(_, json)| json.as_str());
        let mut missed_updates = 0;
        let mut missed_flows = 0;
        let mut skipped = 0;
        subscribers.retain_mut(|sub| {
            let before = (sub.missed_updates, sub.missed_flows, sub.skipped_flows);
            let status = status.as_deref();
            let round = Round {
                entries: &entries,
                overwritten,
                cursor,
                map_version,
                map,
                status,
                flows_received: received,
            };
            let alive = sub.offer(&round);
            missed_updates += sub.missed_updates - before.0;
            missed_flows += sub.missed_flows - before.1;
            skipped += sub.skipped_flows - before.2;
            alive
        });
        let mut state = shared.lock();
        // Browsers that subscribed meanwhile are already in the list; keep them.
        subscribers.append(&mut state.subscribers);
        state.subscribers = subscribers;
        let count = state.subscribers.len();
        let delivery = &mut state.delivery;
        delivery.missed_updates += missed_updates;
        delivery.missed_flows += missed_flows;
        delivery.skipped_flows += skipped;
        delivery.subscribers = count;
    }
}

/// What one round of the broadcaster has for its browsers.
struct Round<'a> {
    /// Flows that arrived since the last round.
    entries: &'a [Arc<StoredFlow>],
    /// Flows overwritten in the ring before this round could read them.
    overwritten: u64,
    /// First flow number after this round's flows.
    cursor: u64,
    map_version: u64,
    map: Option<&'a str>,
    status: Option<&'a str>,
    /// Flows received since start (the header's "flows seen"), sent whenever it grew,
    /// so that the header keeps up with the table between status messages.
    flows_received: u64,
}

impl Subscriber {
    /// Offers this round's message; returns false when the browser has gone.
    fn offer(&mut self, round: &Round<'_>) -> bool {
        let Round {
            entries,
            overwritten,
            cursor,
            map_version,
            map,
            status,
            flows_received,
        } = *round;
        let mut flows: Vec<Arc<StoredFlow>> = entries
            .iter()
            .filter(|e| e.seq >= self.next_seq && self.filters.matches(&e.flow))
            .cloned()
            .collect();
        if overwritten > 0 {
            self.skipped_flows += overwritten;
        }
        if flows.len() > MAX_FLOWS_PER_UPDATE {
            let extra = flows.len() - MAX_FLOWS_PER_UPDATE;
            self.skipped_flows += extra as u64;
            flows.drain(..extra);
        }
        self.next_seq = cursor;
        let map = map.filter(|_| self.map_version != Some(map_version));
        let received_grew = flows_received != self.flows_received;
        if flows.is_empty() && map.is_none() && status.is_none() && !received_grew {
            return !self.tx.is_closed();
        }
        let message = self.message(false, &flows, map, status, flows_received);
        match self.tx.try_send(message) {
            Ok(()) => {
                if map.is_some() {
                    self.map_version = Some(map_version);
                }
                self.flows_received = flows_received;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.missed_updates += 1;
                self.missed_flows += flows.len() as u64;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// One SSE message:
    /// `{"reset":..,"flows":[..],"map":..,"status":..,"missed_*":..,"flows_received":..}`.
    fn message(
        &self,
        reset: bool,
        flows: &[Arc<StoredFlow>],
        map: Option<&str>,
        status: Option<&str>,
        flows_received: u64,
    ) -> String {
        let size: usize = flows.iter().map(|f| f.json.len() + 1).sum();
        let mut out = String::with_capacity(size + map.map_or(0, str::len) + 256);
        let _ = write!(out, "{{\"reset\":{reset},\"flows\":[");
        for (i, f) in flows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&f.json);
        }
        out.push_str("],\"map\":");
        out.push_str(map.unwrap_or("null"));
        out.push_str(",\"status\":");
        out.push_str(status.unwrap_or("null"));
        let _ = write!(
            out,
            ",\"missed_updates\":{},\"missed_flows\":{},\"skipped_flows\":{},\"flows_received\":{}}}",
            self.missed_updates, self.missed_flows, self.skipped_flows, flows_received
        );
        out
    }
}

/// The map as `/api/map` prints it.
pub fn map_json(state: &State) -> String {
    serde_json::to_string(&state.map.snapshot()).unwrap_or_else(|_| "null".to_string())
}

/// The status as `/api/status` prints it.
pub fn status_json(state: &State) -> String {
    serde_json::to_string(&state.status_view()).unwrap_or_else(|_| "null".to_string())
}
