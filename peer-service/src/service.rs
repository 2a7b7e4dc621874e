//! The `peer.Peer` gRPC service: `Notify` streams the node list and its changes.

use std::pin::Pin;

use futures::Stream;
use proto::peer::peer_server::{Peer, PeerServer};
use proto::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::hub::NodeRegistry;

/// Notifications buffered between a subscriber's task and its gRPC stream. The stream is
/// fed with `send().await`; when the client stops reading, this fills, the task stops
/// reading its subscription, and the registry closes the subscription once its own queue
/// ([`crate::SUBSCRIBER_QUEUE_CAPACITY`]) is full.
pub const NOTIFY_STREAM_CAPACITY: usize = 64;

/// How the service announces nodes.
#[derive(Debug, Clone, Default)]
pub struct PeerServiceConfig {
    /// Announce each node's TLS server name (`<node>.<cluster>.hubble-grpc.cilium.io`):
    /// set when the agents serve their Hubble API with TLS.
    pub with_tls: bool,
}

/// The `peer.Peer` service over a node registry.
pub struct PeerService<R> {
    registry: R,
    config: PeerServiceConfig,
}

impl<R: NodeRegistry> PeerService<R> {
    /// Creates the service.
    pub fn new(registry: R, config: PeerServiceConfig) -> Self {
        Self { registry, config }
    }
}

/// Returns the gRPC server for the peer service over `registry`, ready to be added next to
/// the Observer service.
pub fn peer_service<R: NodeRegistry>(
    registry: R,
    config: PeerServiceConfig,
) -> PeerServer<PeerService<R>> {
    PeerServer::new(PeerService::new(registry, config))
}

type NotifyStream = Pin<Box<dyn Stream<Item = Result<ChangeNotification, Status>> + Send>>;

#[tonic::async_trait]
impl<R: NodeRegistry> Peer for PeerService<R> {
    type NotifyStream = NotifyStream;

    async fn notify(
        &self,
        _request: Request<NotifyRequest>,
    ) -> Result<Response<Self::NotifyStream>, Status> {
        let mut subscription = self.registry.subscribe();
        let with_tls = self.config.with_tls;
        let (sender, receiver) = mpsc::channel(NOTIFY_STREAM_CAPACITY);
        tokio::spawn(async move {
            for node in &subscription.initial {
                let added = node.to_notification(ChangeNotificationType::PeerAdded, with_tls);
                if sender.send(Ok(added)).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    change = subscription.changes.recv() => {
                        let Some(change) = change else { break };
                        for notification in change.to_notifications(with_tls) {
                            if sender.send(Ok(notification)).await.is_err() {
                                return;
                            }
                        }
                    }
                    () = sender.closed() => return,
                }
            }
            if subscription.fell_behind() {
                let status = Status::resource_exhausted(
                    "peer change notifications fell behind: reconnect to receive the node list again",
                );
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
