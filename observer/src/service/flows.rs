//! GetFlows: a task per request reads the flow ring and feeds a bounded channel that
//! the gRPC stream drains. The reading itself (filters, rebuilding matching flows) runs
//! in jobs on the scan pool (`service::scan`), except a follower's few new entries at
//! the tail. The task waits on that channel when the client is slow; the ring writer
//! never does. A client that falls further behind than the ring
//! holds is told how many flows it missed with `HUBBLE_RING_BUFFER` lost events, at
//! most one per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::fieldmask::FieldMask;
use proto::filter::FilterSet;
use proto::flow::{LostEvent, LostEventSource};
use proto::get_flows::EncodedResponse;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetFlowsResponse};
use tokio::sync::mpsc;

use super::batches::Batch;
use super::scan::{self, INLINE_SCAN_ENTRIES, SCAN_JOB_ENTRIES};
use super::start::{start_position, Back};
use super::window::Window;
use crate::compact;
use crate::error::ObserverError;
use crate::ingest::now_timestamp;
use crate::observer::LocalObserver;
use crate::ring::{Next, RingReader};
use crate::store::{FlowSlot, FlowStore, StoredEvent};

/// Responses buffered per GetFlows stream between the reading task and gRPC. Small:
/// the ring is the buffer; this only smooths the hand-off to the transport.
pub const STREAM_BUFFER: usize = STREAM_BATCH * STREAM_BATCHES;

/// Most responses one scan hands to gRPC at once ([`super::batches`]).
pub const STREAM_BATCH: usize = 128;

/// Batches queued per GetFlows stream. With the batch gRPC is writing and the one being
/// scanned, a stream holds at most twice [`STREAM_BUFFER`] responses, as it did when
/// they were queued one by one.
pub const STREAM_BATCHES: usize = 2;

/// Ring-overrun notices are sent at most this often (upstream's default interval).
pub const LOST_EVENT_SEND_INTERVAL: Duration = Duration::from_secs(1);

/// A validated GetFlows request.
pub struct FlowsQuery {
    window: Window,
    filters: FilterSet,
    mask: FieldMask,
}

impl FlowsQuery {
    /// Validates `req`: first with follow, filters, field mask and time range.
    pub fn new(req: &GetFlowsRequest) -> Result<Self, ObserverError> {
        let window = Window::new(req.number, req.first, req.follow, req.since, req.until)?;
        let filters = FilterSet::compile(&req.whitelist, &req.blacklist)?;
        let paths = req.field_mask.as_ref().map_or(&[][..], |m| &m.paths[..]);
        let mask = FieldMask::compile(paths)?;
        Ok(Self {
            window,
            filters,
            mask,
        })
    }

    /// The compiled allowlist and denylist.
    pub fn filters(&self) -> &FilterSet {
        &self.filters
    }

    /// The compiled field mask.
    pub fn mask(&self) -> &FieldMask {
        &self.mask
    }
}

/// Ring losses not yet told to the client.
#[derive(Default)]
struct PendingLoss {
    count: u64,
    first: Option<pbjson_types::Timestamp>,
    last: Option<pbjson_types::Timestamp>,
    last_sent: Option<Instant>,
}

impl PendingLoss {
    fn add(&mut self, n: u64) {
        let now = now_timestamp();
        self.count += n;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// The notice to send now, if any is due (or `force`d).
    fn take(&mut self, force: bool, node_name: &str) -> Option<GetFlowsResponse> {
        if self.count == 0 {
            return None;
        }
        let due = self
            .last_sent
            .is_none_or(|t| t.elapsed() >= LOST_EVENT_SEND_INTERVAL);
        if !due && !force {
            return None;
        }
        self.last_sent = Some(Instant::now());
        let lost = LostEvent {
            source: LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: std::mem::take(&mut self.count),
            cpu: None,
            first: self.first.take(),
            last: self.last.take(),
        };
        Some(lost_response(lost, Some(now_timestamp()), node_name))
    }
}

fn lost_response(
    lost: LostEvent,
    time: Option<pbjson_types::Timestamp>,
    node_name: &str,
) -> GetFlowsResponse {
    GetFlowsResponse {
        response_types: Some(ResponseTypes::LostEvents(lost)),
        node_name: node_name.to_string(),
        time,
    }
}

/// Starts streaming flows for `query` into a bounded channel, in batches.
pub fn stream(
    observer: Arc<LocalObserver>,
    query: FlowsQuery,
) -> mpsc::Receiver<Batch<EncodedResponse>> {
    let (tx, rx) = mpsc::channel(STREAM_BATCHES);
    tokio::spawn(async move {
        run(observer, Arc::new(query), &tx).await;
    });
    rx
}

/// Where a stream is: its reader, the flows it sent and the losses not told yet. Moved
/// into each scan job and back.
struct Cursor {
    reader: RingReader<FlowSlot>,
    count: u64,
    loss: PendingLoss,
}

/// Why a scan stopped.
enum Stop {
    /// It read its share of entries or filled a batch: there may be more.
    Paused,
    /// It reached the writer.
    End,
    /// The request has all it asked for (its number, or a flow after `until`).
    Done,
    /// The request cannot go on (the field mask could not be applied).
    Failed(ObserverError),
}

/// Where the request's reader starts: a backward walk, counting matching flows.
fn start_of(observer: &LocalObserver, query: &FlowsQuery) -> u64 {
    let store = observer.flows();
    start_position(store.ring(), &query.window, |raw| match store.event(raw) {
        StoredEvent::Flow(flow) if query.filters.matches(&flow) => {
            Back::Event(compact::time(flow.head()))
        }
        _ => Back::Skip,
    })
}

/// Reads at most `entries` entries from the cursor, filtering them and rebuilding the
/// matching flows into `out` (at most [`STREAM_BATCH`] responses), encoded: the scan
/// builds, encodes and frees each response on its own thread.
fn scan(
    observer: &LocalObserver,
    query: &FlowsQuery,
    cursor: &mut Cursor,
    entries: u64,
    out: &mut Vec<EncodedResponse>,
) -> Stop {
    let store: &FlowStore = observer.flows();
    let node_name = observer.config().node_name.as_str();
    let window = &query.window;
    for _ in 0..entries {
        if window.done(cursor.count) {
            return Stop::Done;
        }
        if out.len() >= STREAM_BATCH {
            return Stop::Paused;
        }
        let raw = match cursor.reader.next_now() {
            Next::End => return Stop::End,
            Next::Lost(n) => {
                cursor.loss.add(n);
                continue;
            }
            Next::Value(raw) => raw,
        };
        if let Some(resp) = cursor.loss.take(false, node_name) {
            out.push(EncodedResponse::new(&resp));
        }
        let resp = match store.event(raw) {
            StoredEvent::Lost { time, event } => lost_response(event, time, node_name),
            StoredEvent::Overwritten => {
                cursor.loss.add(1);
                continue;
            }
            StoredEvent::Flow(flow) => {
                let time = compact::time(flow.head());
                if window.after_until(time.as_ref()) {
                    return Stop::Done;
                }
                let skip = window.before_since(time.as_ref()) || !query.filters.matches(&flow);
                if flow.torn() {
                    // Overwritten while it was read: lost, as an overwritten entry is.
                    cursor.loss.add(1);
                    continue;
                }
                if skip {
                    continue;
                }
                if !query.mask.is_active() {
                    // Endpoints and context as the tables keep them encoded.
                    if let Some(encoded) = flow.encode_response() {
                        if flow.torn() {
                            cursor.loss.add(1);
                            continue;
                        }
                        cursor.count += 1;
                        out.push(encoded);
                        continue;
                    }
                }
                let whole = flow.to_flow();
                if flow.torn() {
                    cursor.loss.add(1);
                    continue;
                }
                cursor.count += 1;
                let mut flow = whole;
                if query.mask.is_active() {
                    flow = match query.mask.apply(&flow) {
                        Ok(masked) => masked,
                        Err(err) => return Stop::Failed(err.into()),
                    };
                }
                GetFlowsResponse {
                    time: flow.time,
                    node_name: flow.node_name.clone(),
                    response_types: Some(ResponseTypes::Flow(flow)),
                }
            }
        };
        out.push(EncodedResponse::new(&resp));
    }
    Stop::Paused
}

/// Runs one scan: inline when the reader is within [`INLINE_SCAN_ENTRIES`] of the
/// writer (a follower at the tail), else as a job on the scan pool. `None` when the
/// client left meanwhile.
async fn scan_step(
    observer: &Arc<LocalObserver>,
    query: &Arc<FlowsQuery>,
    mut cursor: Cursor,
    tx: &mpsc::Sender<Batch<EncodedResponse>>,
) -> Option<Result<(Cursor, Vec<EncodedResponse>, Stop), ObserverError>> {
    let backlog = observer
        .flows()
        .ring()
        .written()
        .saturating_sub(cursor.reader.position());
    if backlog <= INLINE_SCAN_ENTRIES {
        let mut batch = Vec::new();
        let stop = scan(
            observer,
            query,
            &mut cursor,
            INLINE_SCAN_ENTRIES,
            &mut batch,
        );
        return Some(Ok((cursor, batch, stop)));
    }
    let (observer, query) = (Arc::clone(observer), Arc::clone(query));
    let job = scan::run(move || {
        let mut batch = Vec::new();
        let stop = scan(&observer, &query, &mut cursor, SCAN_JOB_ENTRIES, &mut batch);
        (cursor, batch, stop)
    });
    tokio::select! {
        result = job => Some(result),
        () = tx.closed() => None,
    }
}

async fn run(
    observer: Arc<LocalObserver>,
    query: Arc<FlowsQuery>,
    tx: &mpsc::Sender<Batch<EncodedResponse>>,
) {
    let node_name = observer.config().node_name.clone();
    let start = {
        let (observer, query) = (Arc::clone(&observer), Arc::clone(&query));
        tokio::select! {
            start = scan::run(move || start_of(&observer, &query)) => start,
            () = tx.closed() => return,
        }
    };
    let start = match start {
        Ok(start) => start,
        Err(error) => {
            let _ = tx.send(Err(error.into())).await;
            return;
        }
    };
    let mut cursor = Cursor {
        reader: observer.flows().reader(start),
        count: 0,
        loss: PendingLoss::default(),
    };
    loop {
        let (next, batch, stop) = match scan_step(&observer, &query, cursor, tx).await {
            None => return,
            Some(Ok(step)) => step,
            Some(Err(error)) => {
                let _ = tx.send(Err(error.into())).await;
                return;
            }
        };
        cursor = next;
        if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
            return;
        }
        match stop {
            Stop::Paused => {}
            Stop::End if query.window.follow => {
                if let Some(resp) = cursor.loss.take(true, &node_name) {
                    if tx
                        .send(Ok(vec![EncodedResponse::new(&resp)]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let ring = Arc::clone(cursor.reader.ring());
                tokio::select! {
                    () = ring.wait_beyond(cursor.reader.position()) => {}
                    () = tx.closed() => return,
                }
            }
            Stop::End | Stop::Done => break,
            Stop::Failed(error) => {
                let _ = tx.send(Err(error.into())).await;
                return;
            }
        }
    }
    if let Some(resp) = cursor.loss.take(true, &node_name) {
        let _ = tx.send(Ok(vec![EncodedResponse::new(&resp)])).await;
    }
}
