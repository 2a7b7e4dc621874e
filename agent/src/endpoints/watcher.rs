//! Watching the endpoints directory.
//!
//! File system notifications only wake the watcher up; every wake-up, and a
//! periodic timer, runs a full rescan of the directory that compares it with
//! what was already reported. A missed or merged notification therefore
//! costs at most one rescan interval, never an endpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::scanner::Scanner;
use super::{EndpointError, EndpointSpec};

/// Capacity of the event channel to the agent. The watcher waits when it is
/// full (the consumer only updates tables), so no event is ever dropped; 256
/// covers a whole demo directory appearing at once.
pub const ENDPOINT_EVENTS_CAPACITY: usize = 256;

/// Capacity of the wake-up channel from the notification thread. One pending
/// wake-up already guarantees a full rescan, so further ones are merged
/// (and counted in `merged_wakeups`).
const WAKEUP_CAPACITY: usize = 1;

/// Default period of the safety rescan.
const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Where and how often to look.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// The endpoints directory; created when missing.
    pub dir: PathBuf,
    /// Period of the full rescan done even without notifications.
    pub rescan_interval: Duration,
    /// Whether to ask the kernel for change notifications (turn off on file
    /// systems without them; the periodic rescan still runs).
    pub notifications: bool,
    /// Endpoints already known (restored after a restart): the first scan reports
    /// only their changes and removals.
    pub known: Vec<WatchedEndpoint>,
}

impl WatcherConfig {
    /// A config for `dir` with the default rescan period.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WatcherConfig {
            dir: dir.into(),
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            notifications: true,
            known: Vec::new(),
        }
    }
}

/// An endpoint as found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedEndpoint {
    /// The endpoint id, stable for the file.
    pub id: u16,
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub spec: EndpointSpec,
}

/// A change in the endpoints directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A new endpoint file.
    Added(WatchedEndpoint),
    /// An endpoint file changed.
    Updated {
        /// What was reported before.
        previous: WatchedEndpoint,
        /// What the file says now.
        current: WatchedEndpoint,
    },
    /// An endpoint file was removed.
    Removed(WatchedEndpoint),
    /// A file could not be used; any endpoint it described before is kept.
    Rejected {
        /// The file.
        path: PathBuf,
        /// Why.
        error: EndpointError,
    },
}

/// Counters of the watcher.
#[derive(Debug, Default)]
pub struct WatcherStats {
    /// Full rescans done.
    pub rescans: AtomicU64,
    /// Notifications merged into an already pending rescan.
    pub merged_wakeups: AtomicU64,
    /// Files rejected (each distinct error counted once).
    pub rejected_files: AtomicU64,
}

/// A running watcher; dropping it stops the watch.
#[derive(Debug)]
pub struct EndpointWatcher {
    task: JoinHandle<()>,
    stats: Arc<WatcherStats>,
}

impl EndpointWatcher {
    /// The watcher's counters.
    pub fn stats(&self) -> &WatcherStats {
        &self.stats
    }
}

impl Drop for EndpointWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `config.dir`. The first events describe the files
/// already there. Must be called inside a tokio runtime.
pub fn watch_endpoints(
    config: WatcherConfig,
) -> Result<(EndpointWatcher, mpsc::Receiver<EndpointEvent>), EndpointError> {
    std::fs::create_dir_all(&config.dir).map_err(|e| EndpointError::Io {
        path: config.dir.display().to_string(),
        message: e.to_string(),
    })?;
    let stats = Arc::new(WatcherStats::default());
    let (events_tx, events_rx) = mpsc::channel(ENDPOINT_EVENTS_CAPACITY);
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(WAKEUP_CAPACITY);

    let notifier = if config.notifications {
        start_notifier(&config.dir, wake_tx, Arc::clone(&stats))
    } else {
        None
    };

    let task_stats = Arc::clone(&stats);
    let task = tokio::spawn(async move {
        // Keep the notifier alive as long as the task runs.
        let _notifier = notifier;
        let mut scanner = Scanner::with_known(config.dir.clone(), &config.known);
        let mut ticker = tokio::time::interval(config.rescan_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                woke = wake_rx.recv() => {
                    if woke.is_none() {
                        // The notifier is gone; keep rescanning on the timer.
                        ticker.tick().await;
                    }
                }
            }
            task_stats.rescans.fetch_add(1, Ordering::Relaxed);
            for event in scanner.scan() {
                if let EndpointEvent::Rejected { error, .. } = &event {
                    task_stats.rejected_files.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "ignoring endpoint file");
                }
                if events_tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((EndpointWatcher { task, stats }, events_rx))
}

/// Asks the kernel for change notifications on `dir`; each one sends a
/// wake-up. Returns `None` (after a warning) when that is not possible.
fn start_notifier(
    dir: &Path,
    wake_tx: mpsc::Sender<()>,
    stats: Arc<WatcherStats>,
) -> Option<notify::RecommendedWatcher> {
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (including the rescan's own opens and closes-without-write) change
        // nothing; every other event, and errors, ask for a rescan.
        if let Ok(event) = &event {
            if matches!(
                event.kind,
                notify::EventKind::Access(
                    notify::event::AccessKind::Open(_)
                        | notify::event::AccessKind::Read
                        | notify::event::AccessKind::Any
                        | notify::event::AccessKind::Close(notify::event::AccessMode::Read)
                )
            ) {
                return;
            }
        }
        if wake_tx.try_send(()).is_err() {
            stats.merged_wakeups.fetch_add(1, Ordering::Relaxed);
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the endpoints directory; relying on periodic rescans");
            None
        }
    }
}
