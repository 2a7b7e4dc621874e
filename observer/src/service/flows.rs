//! GetFlows: a task per request reads the flow ring and feeds a bounded channel that
//! the gRPC stream drains. The task waits on that channel when the client is slow;
//! the ring writer never does. A client that falls further behind than the ring
//! holds is told how many flows it missed with `HUBBLE_RING_BUFFER` lost events, at
//! most one per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::fieldmask::FieldMask;
use proto::filter::FilterSet;
use proto::flow::{LostEvent, LostEventSource};
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetFlowsResponse};
use tokio::sync::mpsc;
use tonic::Status;

use super::start::{start_position, Back, SCAN_YIELD_EVERY};
use super::window::Window;
use crate::compact;
use crate::error::ObserverError;
use crate::ingest::now_timestamp;
use crate::observer::LocalObserver;
use crate::ring::Next;
use crate::store::{FlowStore, StoredEvent};

/// Responses buffered per GetFlows stream between the reading task and gRPC. Small:
/// the ring is the buffer; this only smooths the hand-off to the transport.
pub const STREAM_BUFFER: usize = 256;

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

/// Starts streaming flows for `query` into a bounded channel.
pub fn stream(
    observer: Arc<LocalObserver>,
    query: FlowsQuery,
) -> mpsc::Receiver<Result<GetFlowsResponse, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        run(&observer, &query, &tx).await;
    });
    rx
}

async fn run(
    observer: &LocalObserver,
    query: &FlowsQuery,
    tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
) {
    let store: &FlowStore = observer.flows();
    let node_name = observer.config().node_name.as_str();
    let window = &query.window;
    let start = start_position(store.ring(), window, |raw| match store.event(raw) {
        StoredEvent::Flow(flow) if query.filters.matches(&flow) => {
            Back::Event(compact::time(flow.record()))
        }
        _ => Back::Skip,
    })
    .await;
    let mut reader = store.reader(start);
    let mut count = 0u64;
    let mut loss = PendingLoss::default();
    let mut idle = 0u64;
    loop {
        if window.done(count) {
            break;
        }
        let next = match reader.next_now() {
            Next::End if window.follow => {
                if let Some(resp) = loss.take(true, node_name) {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    next = reader.next_follow() => next,
                    () = tx.closed() => return,
                }
            }
            other => other,
        };
        let raw = match next {
            Next::End => break,
            Next::Lost(n) => {
                loss.add(n);
                continue;
            }
            Next::Value(raw) => raw,
        };
        if let Some(resp) = loss.take(false, node_name) {
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
        let resp = match store.event(raw) {
            StoredEvent::Lost { time, event } => lost_response(event, time, node_name),
            StoredEvent::Flow(flow) => {
                let time = compact::time(flow.record());
                if window.after_until(time.as_ref()) {
                    break;
                }
                if window.before_since(time.as_ref()) || !query.filters.matches(&flow) {
                    idle += 1;
                    if idle.is_multiple_of(SCAN_YIELD_EVERY) {
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                count += 1;
                let mut flow = flow.to_flow();
                if query.mask.is_active() {
                    flow = match query.mask.apply(&flow) {
                        Ok(masked) => masked,
                        Err(err) => {
                            let _ = tx.send(Err(ObserverError::from(err).into())).await;
                            return;
                        }
                    };
                }
                GetFlowsResponse {
                    time: flow.time,
                    node_name: flow.node_name.clone(),
                    response_types: Some(ResponseTypes::Flow(flow)),
                }
            }
        };
        if tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
    if let Some(resp) = loss.take(true, node_name) {
        let _ = tx.send(Ok(resp)).await;
    }
}
