//! The peer pool: follows the peer service and keeps one gRPC connection per node.
//!
//! Connections are made eagerly. A failed attempt is retried with exponential backoff
//! (1 s doubling to 1 min); a request that finds a node offline reports it, which
//! schedules an attempt at once (at most one per [`MIN_RECONNECT_GAP`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::observer::observer_client::ObserverClient;
use proto::peer::peer_client::PeerClient;
use proto::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::address::{Dialer, PeerAddress};
use crate::error::status_message;

/// First delay after a failed connection attempt.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest delay between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Shortest time between two attempts to reach the same node, even when requests keep
/// reporting it offline.
pub const MIN_RECONNECT_GAP: Duration = Duration::from_millis(500);
/// How often the pool looks for nodes whose backoff has expired.
const CONNECTION_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// A node as the peer service announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Node name (`node1`, or `cluster/node1` outside the default cluster).
    pub name: String,
    /// The address as announced; `None` when it could not be parsed.
    pub address: Option<PeerAddress>,
    /// The address text as announced.
    pub address_text: String,
    /// Whether the node serves TLS.
    pub tls_enabled: bool,
    /// The name its certificate must carry.
    pub tls_server_name: String,
}

impl PeerInfo {
    /// Builds the peer described by a change notification.
    pub fn from_notification(notification: &ChangeNotification, cluster: &str) -> Self {
        let address = PeerAddress::parse(&notification.address).ok();
        let short_name = notification
            .name
            .rsplit_once('/')
            .map(|(_, name)| name)
            .unwrap_or(&notification.name);
        let (tls_enabled, tls_server_name) = match &notification.tls {
            Some(tls) if !tls.server_name.is_empty() => (true, tls.server_name.clone()),
            Some(_) => (true, peer_service::tls_server_name(short_name, cluster)),
            None => (false, peer_service::tls_server_name(short_name, cluster)),
        };
        Self {
            name: notification.name.clone(),
            address,
            address_text: notification.address.clone(),
            tls_enabled,
            tls_server_name,
        }
    }
}

/// A node and, when it is connected, a client for its Observer API.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    /// The node.
    pub info: PeerInfo,
    /// A client over the node's connection; `None` when the node is unavailable.
    pub client: Option<ObserverClient<Channel>>,
    /// The node's connection, for calls with their own codec (GetFlows).
    pub channel: Option<Channel>,
    /// Why the last connection attempt failed (a TLS error names the certificate
    /// problem), while the node is unavailable.
    pub last_error: Option<String>,
}

/// Summary used by the health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Whether the peer service's notification stream is up.
    pub peer_service_connected: bool,
    /// Nodes with a connection.
    pub available_peers: usize,
}

struct Slot {
    info: PeerInfo,
    channel: Option<Channel>,
    attempts: u32,
    next_attempt: Instant,
    last_attempt: Option<Instant>,
    connecting: bool,
    last_error: Option<String>,
    generation: u64,
}

struct Shared {
    slots: Mutex<HashMap<String, Slot>>,
    dialer: Dialer,
    cluster: String,
    peer_service_connected: AtomicBool,
    /// Bumped whenever a node connects, joins or leaves.
    changes: watch::Sender<u64>,
    wake: Notify,
}

/// The pool of nodes. Cloning gives another handle to the same pool.
#[derive(Clone)]
pub struct PeerManager {
    shared: Arc<Shared>,
}

/// Returns the backoff before attempt `attempts + 1`, after `attempts` failures.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

// === impl PeerManager ===

impl PeerManager {
    /// Creates an empty pool; nodes come from [`PeerManager::follow_peer_service`] or
    /// [`PeerManager::upsert`].
    pub fn new(dialer: Dialer, cluster: String) -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                slots: Mutex::new(HashMap::new()),
                dialer,
                cluster,
                peer_service_connected: AtomicBool::new(false),
                changes,
                wake: Notify::new(),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.shared
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.shared
            .changes
            .send_modify(|generation| *generation += 1);
    }

    /// A receiver that changes whenever a node connects, joins or leaves.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Every known node, sorted by name, with a client when connected.
    pub fn list(&self) -> Vec<PeerSnapshot> {
        let slots = self.slots();
        let mut peers: Vec<PeerSnapshot> = slots
            .values()
            .map(|slot| PeerSnapshot {
                info: slot.info.clone(),
                client: slot.channel.clone().map(ObserverClient::new),
                channel: slot.channel.clone(),
                last_error: slot.last_error.clone(),
            })
            .collect();
        peers.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        peers
    }

    /// Summary for the health check.
    pub fn status(&self) -> PoolStatus {
        let available_peers = self
            .slots()
            .values()
            .filter(|s| s.channel.is_some())
            .count();
        PoolStatus {
            peer_service_connected: self.shared.peer_service_connected.load(Ordering::Relaxed),
            available_peers,
        }
    }

    /// Adds a node or replaces it when its address or TLS settings changed.
    pub fn upsert(&self, info: PeerInfo) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get(&info.name) {
            if slot.info == info {
                return;
            }
        }
        let generation = slots.get(&info.name).map_or(0, |s| s.generation + 1);
        tracing::info!(peer = %info.name, address = %info.address_text, "peer added or updated");
        slots.insert(
            info.name.clone(),
            Slot {
                info,
                channel: None,
                attempts: 0,
                next_attempt: Instant::now(),
                last_attempt: None,
                connecting: false,
                last_error: None,
                generation,
            },
        );
        drop(slots);
        self.bump();
        self.shared.wake.notify_one();
    }

    /// Forgets a node and closes its connection.
    pub fn remove(&self, name: &str) {
        if self.slots().remove(name).is_some() {
            tracing::info!(peer = %name, "peer deleted");
            self.bump();
        }
    }

    /// Marks a node offline after a request failed on it, and schedules a reconnection
    /// attempt right away.
    pub fn report_offline(&self, name: &str) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(name) else {
            return;
        };
        let was_connected = slot.channel.take().is_some();
        slot.next_attempt = slot
            .last_attempt
            .map_or_else(Instant::now, |last| last + MIN_RECONNECT_GAP);
        drop(slots);
        if was_connected {
            tracing::info!(peer = %name, "peer reported offline");
            self.bump();
        }
        self.shared.wake.notify_one();
    }

    /// Runs the connection manager; it runs until its task is aborted.
    pub async fn manage_connections(self) {
        let mut tick = tokio::time::interval(CONNECTION_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shared.wake.notified() => {}
            }
            self.start_due_attempts();
        }
    }

    fn start_due_attempts(&self) {
        let now = Instant::now();
        let mut slots = self.slots();
        for slot in slots.values_mut() {
            if slot.channel.is_some() || slot.connecting || slot.next_attempt > now {
                continue;
            }
            let Some(address) = slot.info.address.clone() else {
                continue;
            };
            slot.connecting = true;
            slot.last_attempt = Some(now);
            let pool = self.clone();
            let name = slot.info.name.clone();
            let server_name = slot.info.tls_server_name.clone();
            let generation = slot.generation;
            tokio::spawn(async move {
                let result = pool.shared.dialer.dial(&address, &server_name).await;
                pool.finish_attempt(&name, generation, result);
            });
        }
    }

    fn finish_attempt(
        &self,
        name: &str,
        generation: u64,
        result: Result<Channel, crate::RelayError>,
    ) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(name) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        slot.connecting = false;
        match result {
            Ok(channel) => {
                tracing::info!(peer = %name, "connected");
                slot.channel = Some(channel);
                slot.attempts = 0;
                slot.last_error = None;
                drop(slots);
                self.bump();
            }
            Err(error) => {
                slot.attempts += 1;
                let delay = backoff(slot.attempts);
                slot.next_attempt = Instant::now() + delay;
                slot.last_error = Some(error.to_string());
                tracing::warn!(peer = %name, %error, next_try_in = ?delay, "cannot connect to peer");
            }
        }
    }

    /// Follows the peer service at `target` forever, reconnecting with backoff (1 s
    /// doubling up to `retry_timeout`) when it goes away.
    pub async fn follow_peer_service(self, target: PeerAddress, retry_timeout: Duration) {
        let server_name =
            peer_service::tls_server_name(peer_service::PEER_SERVICE_NAME, &self.shared.cluster);
        let mut failures = 0u32;
        loop {
            match self.shared.dialer.dial(&target, &server_name).await {
                Ok(channel) => match PeerClient::new(channel).notify(NotifyRequest {}).await {
                    Ok(response) => {
                        self.shared
                            .peer_service_connected
                            .store(true, Ordering::Relaxed);
                        failures = 0;
                        let error = self.apply_notifications(response.into_inner()).await;
                        self.shared
                            .peer_service_connected
                            .store(false, Ordering::Relaxed);
                        tracing::warn!(%target, error = %error, "peer service stream ended");
                    }
                    Err(status) => {
                        tracing::warn!(%target, error = %status_message(&status), "peer service refused Notify");
                    }
                },
                Err(error) => tracing::warn!(%error, "cannot reach the peer service"),
            }
            failures += 1;
            let delay = backoff(failures).min(retry_timeout);
            tokio::time::sleep(delay).await;
        }
    }

    async fn apply_notifications(
        &self,
        mut stream: tonic::Streaming<ChangeNotification>,
    ) -> String {
        loop {
            match stream.message().await {
                Ok(Some(notification)) => {
                    let info = PeerInfo::from_notification(&notification, &self.shared.cluster);
                    match notification.r#type() {
                        ChangeNotificationType::PeerAdded | ChangeNotificationType::PeerUpdated => {
                            self.upsert(info)
                        }
                        ChangeNotificationType::PeerDeleted => self.remove(&info.name),
                        ChangeNotificationType::Unknown => {}
                    }
                }
                Ok(None) => return "closed by the server".into(),
                Err(status) => return status_message(&status),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_one_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn tls_server_name_falls_back_to_the_node_name() {
        let notification = ChangeNotification {
            name: "mesh/node1".into(),
            address: "10.0.0.1".into(),
            r#type: ChangeNotificationType::PeerAdded as i32,
            tls: Some(proto::peer::Tls {
                server_name: String::new(),
            }),
        };
        let info = PeerInfo::from_notification(&notification, "mesh");
        assert!(info.tls_enabled);
        assert_eq!(info.tls_server_name, "node1.mesh.hubble-grpc.cilium.io");
        assert_eq!(info.address, Some(PeerAddress::Tcp("10.0.0.1:4244".into())));
    }
}
