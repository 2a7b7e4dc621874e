//! The etcd client shared by the session, the watches and the allocator, and the
//! backoff they retry with.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::Mutex;

use super::EtcdError;

/// How long to wait for a TCP connection to etcd.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a unary request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keep-alive interval and timeout, so a silent etcd breaks streams quickly.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// First delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest delay between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);

/// Exponential backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay before the next attempt; doubles each time.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// A lazily (re)built etcd client, shared by everything of a node that talks to etcd.
pub struct Connection {
    endpoints: Vec<String>,
    client: Mutex<Option<Client>>,
}

impl Connection {
    /// A connection to `endpoints` (`http://host:port`), made on first use.
    pub fn new(endpoints: Vec<String>) -> Self {
        Connection {
            endpoints,
            client: Mutex::new(None),
        }
    }

    /// A client, connecting first if there is none.
    pub async fn client(&self) -> Result<Client, EtcdError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE, KEEP_ALIVE)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&self.endpoints, Some(options)).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Drops the client after a failure, so the next user connects again.
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
