//! The agent's lease and the keys attached to it.
//!
//! Everything an agent publishes about itself (its node, its pods, its identity
//! references) lives under one lease, so it disappears when the agent dies. Publishers
//! only state what should exist ([`Session::set`], [`Session::remove`]); the session
//! task writes the difference to etcd, keeps the lease alive, and after any failure
//! reconnects with backoff, re-attaches to its lease if etcd still has it (or grants a
//! new one), writes every wanted key again and deletes keys of its lease nobody wants
//! any more.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{Client, LeaseTimeToLiveOptions, PutOptions};
use tokio::sync::{watch, Notify};

use super::KvstoreError;
use peer_service::sources::etcd::{stopped, Backoff, Connection};

/// The wanted keys and their values, and the lease state.
pub struct Session {
    connection: Arc<Connection>,
    ttl: Duration,
    wanted: Mutex<BTreeMap<String, String>>,
    wake: Notify,
    lease: watch::Sender<Option<i64>>,
}

impl Session {
    pub fn new(connection: Arc<Connection>, ttl: Duration) -> Self {
        Session {
            connection,
            ttl,
            wanted: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            lease: watch::channel(None).0,
        }
    }

    fn wanted(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        // The map is only ever updated by single inserts and removals.
        self.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `key` = `value` under the lease.
    pub fn set(&self, key: String, value: String) {
        let changed = self.wanted().insert(key, value.clone()).as_ref() != Some(&value);
        if changed {
            self.wake.notify_one();
        }
    }

    /// Asks for `key` to be gone.
    pub fn remove(&self, key: &str) {
        if self.wanted().remove(key).is_some() {
            self.wake.notify_one();
        }
    }

    /// The lease currently held, if any (changes when it is granted or lost).
    pub fn lease(&self) -> watch::Receiver<Option<i64>> {
        self.lease.subscribe()
    }

    /// Runs until `shutdown` turns true, then revokes the lease.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut lease = None;
        let mut backoff = Backoff::default();
        loop {
            match self.serve(&mut lease, &mut backoff, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!("etcd session: {e}; retrying");
                    self.lease.send_replace(None);
                    self.connection.reset().await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    async fn serve(
        &self,
        lease: &mut Option<i64>,
        backoff: &mut Backoff,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), KvstoreError> {
        let mut client = self.connection.client().await?;
        let id = match *lease {
            Some(id) if client.lease_time_to_live(id, None).await?.ttl() > 0 => id,
            _ => {
                let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
                let id = client.lease_grant(ttl, None).await?.id();
                tracing::info!(lease = format!("{id:x}"), ttl, "etcd lease granted");
                *lease = Some(id);
                id
            }
        };
        let mut written = self.write_all(&mut client, id).await?;
        self.lease.send_replace(Some(id));
        backoff.reset();

        let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped(shutdown) => {
                    if let Err(e) = client.lease_revoke(id).await {
                        tracing::warn!("revoking lease {id:x}: {e}");
                    }
                    *lease = None;
                    self.lease.send_replace(None);
                    return Ok(());
                }
                _ = tick.tick() => {
                    keeper.keep_alive().await?;
                    match responses.message().await? {
                        Some(response) if response.ttl() > 0 => {}
                        _ => {
                            *lease = None;
                            return Err(KvstoreError::LeaseLost(id));
                        }
                    }
                }
                _ = self.wake.notified() => {
                    written = self.write_changes(&mut client, id, written).await?;
                }
            }
        }
    }

    /// Writes every wanted key and deletes the lease's other keys. Returns what etcd
    /// now holds.
    async fn write_all(
        &self,
        client: &mut Client,
        id: i64,
    ) -> Result<BTreeMap<String, String>, KvstoreError> {
        let attached = client
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await?;
        let wanted = self.wanted().clone();
        for (key, value) in &wanted {
            put(client, id, key, value).await?;
        }
        for key in attached.keys() {
            let key = String::from_utf8_lossy(key);
            if !wanted.contains_key(key.as_ref()) {
                client.delete(key.as_bytes(), None).await?;
            }
        }
        tracing::info!(keys = wanted.len(), "published this node's keys to etcd");
        Ok(wanted)
    }

    /// Writes the difference between what is wanted and what was written.
    async fn write_changes(
        &self,
        client: &mut Client,
        id: i64,
        mut written: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, KvstoreError> {
        let wanted = self.wanted().clone();
        for (key, value) in &wanted {
            if written.get(key) != Some(value) {
                put(client, id, key, value).await?;
                written.insert(key.clone(), value.clone());
            }
        }
        let gone: Vec<String> = written
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            client.delete(key.as_bytes(), None).await?;
            written.remove(&key);
        }
        Ok(written)
    }
}

async fn put(client: &mut Client, lease: i64, key: &str, value: &str) -> Result<(), KvstoreError> {
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await?;
    Ok(())
}
