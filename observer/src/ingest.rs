//! The path from the agent into the rings: a bounded queue that producers never wait
//! on, and the one thread that drains it and writes the rings.
//!
//! A full queue discards the event and counts it; at most once per second the count
//! becomes a `LostEvent` (source `OBSERVER_EVENTS_QUEUE`) written into the flow ring,
//! as upstream does. Kernel-side losses reported by the agent go through the same
//! queue; if the queue is full their counts are kept aside and written as one
//! `PERF_EVENT_RING_BUFFER` notice, so no loss is ever lost.

use crate::namespaces::Namespaces;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::flow::{AgentEvent, DebugEvent, Flow, LostEvent, LostEventSource};

use crate::event_rings::{EventWriter, Timed};
use crate::store::FlowStoreWriter;

/// Events the queue holds between the agent and the ring writer. The writer stores
/// millions of flows per second, so the queue only absorbs bursts and moments when
/// the writer thread is descheduled: 16384 events is ~8 ms at the 2 M/s target and
/// ~4 MB of boxed flows at most (upstream sizes its monitor queue similarly, in
/// thousands of events per CPU).
pub const INGEST_QUEUE_CAPACITY: usize = 16_384;

/// How often queue discards are turned into one lost-events notice.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How many queued events the writer drains before checking the clock.
const DRAIN_BATCH: usize = 1024;

/// What travels through the queue.
enum IngestEvent {
    Flow(Box<Flow>),
    /// A replay's batch: one queue slot and one wake-up for many flows; stored by
    /// reference and handed back on the channel to be freed by the thread that made
    /// them (the allocator's fast path; a free from another thread costs several
    /// times more).
    Flows(Vec<Flow>, SyncSender<Vec<Flow>>),
    Lost(LostEvent),
    Agent(Box<AgentEvent>),
    Debug(Box<DebugEvent>),
}

/// Counters shared by producers, the writer and the status service.
#[derive(Default)]
pub struct IngestStats {
    /// Flows written into the ring.
    pub seen_flows: AtomicU64,
    /// Events discarded because the queue was full, since start.
    pub queue_discards: AtomicU64,
    /// Discards not yet reported as a lost-events notice.
    pending_discards: AtomicU64,
    /// Unix nanoseconds of the first and last pending discard.
    first_discard_ns: AtomicU64,
    last_discard_ns: AtomicU64,
    /// Kernel-side losses whose notice could not be queued.
    pending_kernel_lost: AtomicU64,
}

impl IngestStats {
    fn note_discard(&self) {
        let now = unix_nanos();
        self.queue_discards.fetch_add(1, Ordering::Relaxed);
        self.pending_discards.fetch_add(1, Ordering::Relaxed);
        let _ =
            self.first_discard_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_discard_ns.store(now, Ordering::Relaxed);
    }
}

/// Where the agent pushes what it observed. Cheap to clone; pushing never blocks.
#[derive(Clone)]
pub struct IngestHandle {
    tx: SyncSender<IngestEvent>,
    stats: Arc<IngestStats>,
}

impl IngestHandle {
    fn push(&self, event: IngestEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(IngestEvent::Lost(lost))) => {
                self.stats
                    .pending_kernel_lost
                    .fetch_add(lost.num_events_lost, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Full(_)) => {
                self.stats.note_discard();
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Queues a decoded, enriched flow. Returns `false` if it was discarded (counted,
    /// and reported as lost events).
    pub fn push_flow(&self, flow: Flow) -> bool {
        self.push(IngestEvent::Flow(Box::new(flow)))
    }

    /// Queues a flow, waiting (asynchronously) while the queue is full instead of
    /// discarding it. For replaying captures, where nothing should be dropped.
    pub async fn push_flow_wait(&self, flow: Flow) -> bool {
        self.wait_to_push(IngestEvent::Flow(Box::new(flow))).await
    }

    /// A batch of flows, stored in order (one queue slot and one wake-up of the writer
    /// for many flows), from a thread outside the runtime: blocks until the queue has
    /// room. The stored batch comes back on `spent` when it has room (else the writer
    /// frees it). False once the writer is gone.
    pub fn push_flows_returning(&self, flows: Vec<Flow>, spent: &SyncSender<Vec<Flow>>) -> bool {
        flows.is_empty()
            || self
                .tx
                .send(IngestEvent::Flows(flows, spent.clone()))
                .is_ok()
    }

    async fn wait_to_push(&self, mut event: IngestEvent) -> bool {
        loop {
            match self.tx.try_send(event) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    event = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }

    /// Queues a loss the datapath reported (e.g. `PERF_EVENT_RING_BUFFER` with the
    /// count and CPU). If the queue is full the count is kept and written later.
    pub fn push_lost_event(&self, lost: LostEvent) -> bool {
        self.push(IngestEvent::Lost(lost))
    }

    /// Queues an agent event (endpoint created, policy updated, ...).
    pub fn push_agent_event(&self, event: AgentEvent) -> bool {
        self.push(IngestEvent::Agent(Box::new(event)))
    }

    /// Queues a datapath debug event.
    pub fn push_debug_event(&self, event: DebugEvent) -> bool {
        self.push(IngestEvent::Debug(Box::new(event)))
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }
}

/// The rings' writers, owned by the ingest thread.
pub(crate) struct Writers {
    pub flows: FlowStoreWriter,
    pub agent: EventWriter<AgentEvent>,
    pub debug: EventWriter<DebugEvent>,
}

/// Shared state the writer updates besides the rings.
pub(crate) struct WriterContext {
    pub stats: Arc<IngestStats>,
    pub namespaces: Arc<Mutex<Namespaces>>,
}

/// Starts the writer thread; it ends when every handle is dropped.
pub(crate) fn start(writers: Writers, ctx: WriterContext) -> std::io::Result<IngestHandle> {
    let (tx, rx) = mpsc::sync_channel(INGEST_QUEUE_CAPACITY);
    let handle = IngestHandle {
        tx,
        stats: Arc::clone(&ctx.stats),
    };
    std::thread::Builder::new()
        .name("observer-ingest".into())
        .spawn(move || run(rx, writers, ctx))?;
    Ok(handle)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The current time as a protobuf timestamp.
pub fn now_timestamp() -> pbjson_types::Timestamp {
    timestamp_from_nanos(unix_nanos())
}

fn timestamp_from_nanos(ns: u64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

fn run(rx: mpsc::Receiver<IngestEvent>, mut writers: Writers, ctx: WriterContext) {
    let mut last_report = Instant::now();
    loop {
        match rx.recv_timeout(LOSS_REPORT_INTERVAL) {
            Ok(event) => {
                handle(&mut writers, &ctx, event);
                for event in rx.try_iter().take(DRAIN_BATCH) {
                    handle(&mut writers, &ctx, event);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                report_losses(&mut writers, &ctx);
                return;
            }
        }
        if last_report.elapsed() >= LOSS_REPORT_INTERVAL {
            report_losses(&mut writers, &ctx);
            last_report = Instant::now();
        }
    }
}

fn handle(writers: &mut Writers, ctx: &WriterContext, event: IngestEvent) {
    match event {
        IngestEvent::Flow(flow) => store_flow(writers, ctx, *flow),
        IngestEvent::Flows(flows, spent) => {
            for flow in &flows {
                note_namespaces(ctx, flow);
                writers.flows.push_flow_ref(flow, &mut |_| {});
                ctx.stats.seen_flows.fetch_add(1, Ordering::Relaxed);
            }
            let _ = spent.try_send(flows);
        }
        IngestEvent::Lost(lost) => writers.flows.push_lost(lost, now_timestamp()),
        IngestEvent::Agent(event) => writers.agent.push(Timed::now(*event)),
        IngestEvent::Debug(event) => writers.debug.push(Timed::now(*event)),
    }
}

fn store_flow(writers: &mut Writers, ctx: &WriterContext, flow: Flow) {
    note_namespaces(ctx, &flow);
    writers.flows.push_flow(flow, &mut |_| {});
    ctx.stats.seen_flows.fetch_add(1, Ordering::Relaxed);
}

/// Every flow renews its namespaces (they expire an hour after the last).
fn note_namespaces(ctx: &WriterContext, flow: &Flow) {
    let now = Instant::now();
    let mut namespaces = ctx
        .namespaces
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for endpoint in [&flow.source, &flow.destination].into_iter().flatten() {
        namespaces.note(&endpoint.namespace, now);
    }
}

/// Writes pending queue discards and kernel losses as lost-events notices.
fn report_losses(writers: &mut Writers, ctx: &WriterContext) {
    let stats = &ctx.stats;
    let discards = stats.pending_discards.swap(0, Ordering::Relaxed);
    if discards > 0 {
        let first = stats.first_discard_ns.swap(0, Ordering::Relaxed);
        let last = stats.last_discard_ns.load(Ordering::Relaxed);
        let lost = LostEvent {
            source: LostEventSource::ObserverEventsQueue as i32,
            num_events_lost: discards,
            cpu: None,
            first: (first > 0).then(|| timestamp_from_nanos(first)),
            last: (last > 0).then(|| timestamp_from_nanos(last.max(first))),
        };
        writers.flows.push_lost(lost, now_timestamp());
    }
    let kernel = stats.pending_kernel_lost.swap(0, Ordering::Relaxed);
    if kernel > 0 {
        let lost = LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: kernel,
            ..Default::default()
        };
        writers.flows.push_lost(lost, now_timestamp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Next;
    use crate::store::{FlowStore, StoredEvent};

    fn writers(capacity: u64) -> (Writers, FlowStore) {
        let (flows, store) = FlowStore::new(capacity).expect("capacity");
        let (agent, _) = EventWriter::new(7).expect("capacity");
        let (debug, _) = EventWriter::new(7).expect("capacity");
        (
            Writers {
                flows,
                agent,
                debug,
            },
            store,
        )
    }

    fn lost_events(store: &FlowStore) -> Vec<LostEvent> {
        let mut reader = store.reader(0);
        let mut out = Vec::new();
        while let Next::Value(raw) = reader.next_now() {
            if let StoredEvent::Lost { event, .. } = store.event(raw) {
                out.push(event);
            }
        }
        out
    }

    #[test]
    fn discards_and_kernel_losses_become_one_notice_each() {
        let (mut w, store) = writers(63);
        let ctx = WriterContext {
            stats: Arc::default(),
            namespaces: Arc::default(),
        };
        for _ in 0..3 {
            ctx.stats.note_discard();
        }
        ctx.stats
            .pending_kernel_lost
            .fetch_add(40, Ordering::Relaxed);
        report_losses(&mut w, &ctx);
        report_losses(&mut w, &ctx); // nothing new: no second notice
        let lost = lost_events(&store);
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[0].source, LostEventSource::ObserverEventsQueue as i32);
        assert_eq!(lost[0].num_events_lost, 3);
        assert!(lost[0].first.is_some() && lost[0].last.is_some());
        assert_eq!(lost[1].source, LostEventSource::PerfEventRingBuffer as i32);
        assert_eq!(lost[1].num_events_lost, 40);
        assert_eq!(ctx.stats.queue_discards.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_full_queue_discards_without_blocking_and_counts() {
        // A queue nobody drains: every push past the capacity is discarded at once.
        let (tx, _rx) = mpsc::sync_channel(INGEST_QUEUE_CAPACITY);
        let handle = IngestHandle {
            tx,
            stats: Arc::default(),
        };
        let extra = 10;
        let accepted = (0..INGEST_QUEUE_CAPACITY + extra)
            .filter(|_| handle.push_agent_event(AgentEvent::default()))
            .count();
        assert_eq!(accepted, INGEST_QUEUE_CAPACITY);
        assert_eq!(
            handle.stats().queue_discards.load(Ordering::Relaxed),
            extra as u64
        );
        let lost = LostEvent {
            num_events_lost: 5,
            ..Default::default()
        };
        assert!(!handle.push_lost_event(lost));
        assert_eq!(
            handle.stats().pending_kernel_lost.load(Ordering::Relaxed),
            5
        );
    }
}
