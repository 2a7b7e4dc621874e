//! Reloads the dynamic exporters file when it changes: file-system notifications for
//! promptness, plus a periodic check for file systems and editors that notify poorly.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::config::parse_dynamic_config;
use super::manager::ExportManager;
use crate::error::ExportError;

/// How often the file is re-read even without a notification.
pub const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// After a notification, wait this long for the writer to finish before reading, so
/// that a file being rewritten in place is not read half-written.
const SETTLE_DELAY: Duration = Duration::from_millis(100);
/// Capacity of the queue of change notifications. Any one notification triggers a
/// full re-read, so when the queue is full the extra ones carry nothing and are dropped.
const NOTIFY_QUEUE_CAPACITY: usize = 16;

/// Applies `path` to `manager` now and again whenever its content changes, until
/// `shutdown` completes; then stops every exporter. A file that cannot be read or
/// parsed is logged and counted, and the running exporters stay as they were.
pub fn watch_config_file<F>(
    manager: Arc<ExportManager>,
    path: PathBuf,
    poll: Duration,
    shutdown: F,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<()>(NOTIFY_QUEUE_CAPACITY);
        let _watcher = start_notify(&path, tx);
        let mut last_hash = None;
        let mut ticker = tokio::time::interval(poll);
        tokio::pin!(shutdown);
        loop {
            reload(&manager, &path, &mut last_hash).await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = rx.recv() => {
                    tokio::time::sleep(SETTLE_DELAY).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = ticker.tick() => {}
            }
        }
        let manager = manager.clone();
        let _ = tokio::task::spawn_blocking(move || manager.stop_all()).await;
    })
}

/// Watches the file's directory (so that replacing the file by a rename, as
/// Kubernetes does with ConfigMaps, is seen). Without notifications the periodic
/// check still works, so a failure here is only logged.
fn start_notify(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full queue already holds a pending re-read.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch exporter configuration; checking it periodically");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch exporter configuration directory; checking it periodically");
        return None;
    }
    Some(watcher)
}

async fn reload(manager: &Arc<ExportManager>, path: &Path, last_hash: &mut Option<u64>) {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(source) => {
            if last_hash.is_some() || source.kind() != std::io::ErrorKind::NotFound {
                let error = ExportError::ReadConfig {
                    path: path.to_path_buf(),
                    source,
                };
                tracing::warn!(%error, "keeping the running flow exporters");
            }
            return;
        }
    };
    let hash = fnv1a(text.as_bytes());
    if *last_hash == Some(hash) {
        return;
    }
    *last_hash = Some(hash);
    let manager = manager.clone();
    let path = path.to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || {
        let applied = parse_dynamic_config(&text).and_then(|configs| manager.apply(configs));
        match applied {
            Ok(()) => {
                manager.set_config_hash(hash);
                tracing::info!(file = %path.display(), exporters = ?manager.running(), "flow exporter configuration applied");
            }
            Err(error) => {
                manager.config_error();
                tracing::error!(file = %path.display(), %error, "flow exporter configuration not applied; keeping the running exporters");
            }
        }
    })
    .await;
    if outcome.is_err() {
        tracing::error!("applying the flow exporter configuration panicked");
    }
}

/// FNV-1a, 64 bits: a stable content hash to notice changes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
