//! Background tasks that read the server: the `GetFlows` follow stream and the
//! periodic `ServerStatus` poll, both sending to the view through one bounded channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::flow::Flow;
use proto::observer::{
    get_flows_response::ResponseTypes, observer_client::ObserverClient, GetFlowsRequest,
    ServerStatusRequest,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::conn::{rpc_error, rpc_error_for_stream, HubbleChannel};

/// Events queued between the stream task and the view. The view drains the queue
/// every ~100 ms, so this covers bursts far above what it can show; when it is full,
/// flows are discarded and counted in [`Feed::discarded`], which the view adds to the
/// lost events in its header.
pub const FEED_CAPACITY: usize = 65_536;

/// How often the server status (connected and unavailable nodes) is polled.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(3);

/// What a task reports, tagged with the stream generation it belongs to.
#[derive(Debug)]
pub enum Event {
    Flow(Box<Flow>),
    Lost(u64),
    /// A node status event: nodes and whether they are now connected.
    Nodes {
        names: Vec<String>,
        connected: bool,
    },
    /// Connected and unavailable nodes from `ServerStatus`.
    Status {
        connected: u32,
        unavailable: u32,
    },
    Error(String),
}

/// The sending side shared by the tasks.
#[derive(Debug, Clone)]
pub struct Feed {
    pub tx: mpsc::Sender<(u64, Event)>,
    /// Flows the queue had no room for: one per flow, and the count of a lost-events
    /// notice that had no room (those flows are lost to the view all the same).
    pub discarded: Arc<AtomicU64>,
}

impl Feed {
    /// A feed and the receiver the view drains.
    pub fn new() -> (Self, mpsc::Receiver<(u64, Event)>) {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let feed = Self {
            tx,
            discarded: Arc::new(AtomicU64::new(0)),
        };
        (feed, rx)
    }

    /// Queues an event. A flow or a lost-events notice is discarded and counted in
    /// [`Feed::discarded`] when the queue is full; the rare other events (node
    /// changes, server status, errors) wait for room instead, so that none is missed.
    /// Returns false once the view is gone.
    async fn send(&self, generation: u64, event: Event) -> bool {
        let flows = match &event {
            Event::Flow(_) => 1,
            Event::Lost(n) => *n,
            _ => return self.tx.send((generation, event)).await.is_ok(),
        };
        match self.tx.try_send((generation, event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.discarded.fetch_add(flows, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Starts reading flows for `request`; abort the handle to stop.
    pub fn spawn_flows(
        &self,
        channel: HubbleChannel,
        request: GetFlowsRequest,
        generation: u64,
    ) -> JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut stream = match proto::get_flows::call_get_flows(channel, request).await {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    feed.send(generation, Event::Error(rpc_error_for_stream(&s)))
                        .await;
                    return;
                }
            };
            loop {
                let event = match stream.message().await {
                    Ok(Some(res)) => match res.response_types {
                        Some(ResponseTypes::Flow(f)) => Event::Flow(Box::new(f)),
                        Some(ResponseTypes::LostEvents(l)) => Event::Lost(l.num_events_lost),
                        Some(ResponseTypes::NodeStatus(n)) => Event::Nodes {
                            connected: n.state_change
                                == proto::relay::NodeState::NodeConnected as i32,
                            names: n.node_names,
                        },
                        _ => continue,
                    },
                    Ok(None) => Event::Error("the server ended the flow stream".to_string()),
                    Err(s) => Event::Error(rpc_error_for_stream(&s)),
                };
                let last = matches!(event, Event::Error(_));
                if !feed.send(generation, event).await || last {
                    return;
                }
            }
        })
    }

    /// Starts polling the server status every [`STATUS_INTERVAL`].
    pub fn spawn_status(&self, channel: HubbleChannel, timeout: Duration) -> JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut client = ObserverClient::new(channel);
            let mut interval = tokio::time::interval(STATUS_INTERVAL);
            loop {
                interval.tick().await;
                let call = client.server_status(ServerStatusRequest {});
                let event = match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        Event::Status {
                            connected: r.num_connected_nodes.map_or(1, |v| v.value),
                            unavailable: r.num_unavailable_nodes.map_or(0, |v| v.value),
                        }
                    }
                    Ok(Err(s)) => Event::Error(format!("server status: {}", rpc_error(&s))),
                    Err(_) => Event::Error("server status: deadline exceeded".to_string()),
                };
                if !feed.send(0, event).await {
                    return;
                }
            }
        })
    }
}
