//! List-then-watch of a key prefix, resumed after every failure.
//!
//! A watch starts by reading the whole prefix (handed over as one snapshot, which
//! replaces what the handler knew) and then watches from the next revision, so no
//! change between the two is missed. When the stream breaks, etcd goes away or the
//! revision was compacted, the loop waits (with backoff) and lists again.

use std::sync::Arc;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use super::connection::{stopped, Backoff, Connection};
use super::EtcdError;

/// Receives the contents of a prefix; keys come without the prefix.
pub trait WatchHandler: Send + Sync + 'static {
    /// Everything under the prefix now, replacing what was known before.
    fn snapshot(&self, entries: Vec<(String, Vec<u8>)>);
    /// A key was created or changed.
    fn put(&self, key: &str, value: &[u8]);
    /// A key was deleted (or its lease expired).
    fn delete(&self, key: &str);
}

/// Lists and watches `prefix` until `shutdown` turns true. `listed`, when given, is
/// counted up once, after the first listing.
pub async fn run(
    connection: Arc<Connection>,
    prefix: String,
    handler: Arc<dyn WatchHandler>,
    mut shutdown: watch::Receiver<bool>,
    listed: Option<Arc<watch::Sender<usize>>>,
) {
    let mut backoff = Backoff::default();
    let mut first = listed;
    loop {
        match watch_once(
            &connection,
            &prefix,
            handler.as_ref(),
            &mut backoff,
            &mut shutdown,
            &mut first,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("etcd watch of {prefix}: {e}; listing again");
                connection.reset().await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stopped(&mut shutdown) => return,
        }
    }
}

fn strip<'a>(prefix: &str, key: &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(key).ok()?.strip_prefix(prefix)
}

async fn watch_once(
    connection: &Connection,
    prefix: &str,
    handler: &dyn WatchHandler,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
    first: &mut Option<Arc<watch::Sender<usize>>>,
) -> Result<(), EtcdError> {
    let mut client = connection.client().await?;
    let listed = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let entries = listed
        .kvs()
        .iter()
        .filter_map(|kv| Some((strip(prefix, kv.key())?.to_string(), kv.value().to_vec())))
        .collect();
    handler.snapshot(entries);
    // Counts the prefixes listed at least once (the agent waits for its watches).
    if let Some(listed) = first.take() {
        listed.send_modify(|n| *n += 1);
    }
    let (_watcher, mut stream) = client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    backoff.reset();
    let ended = |reason: String| EtcdError::WatchEnded {
        prefix: prefix.to_string(),
        reason,
    };
    loop {
        let message = tokio::select! {
            _ = stopped(shutdown) => return Ok(()),
            message = stream.message() => message?,
        };
        let Some(response) = message else {
            return Err(ended("the stream closed".into()));
        };
        if response.canceled() {
            let reason = match response.compact_revision() {
                0 => format!("cancelled: {}", response.cancel_reason()),
                compacted => format!("revision compacted up to {compacted}"),
            };
            return Err(ended(reason));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(key) = strip(prefix, kv.key()) else {
                continue;
            };
            match event.event_type() {
                EventType::Put => handler.put(key, kv.value()),
                EventType::Delete => handler.delete(key),
            }
        }
    }
}
