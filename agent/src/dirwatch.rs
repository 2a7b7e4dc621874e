//! Watching a directory of YAML files (endpoint files, service files).
//!
//! What a file holds and how it is parsed is a [`FileKind`]; the watching is the same
//! for every kind. File system notifications only wake the watcher up; every wake-up, and a
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

mod scanner;

pub(crate) use scanner::Scanner;

/// What the files of a watched directory hold.
pub trait FileKind: Send + 'static {
    /// The content of one file.
    type Spec: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static;
    /// Why a file cannot be used.
    type Error: Clone + PartialEq + std::fmt::Display + std::fmt::Debug + Send + Sync + 'static;
    /// What the files describe, for log lines (`endpoint`, `service`).
    const WHAT: &'static str;
    /// Parses and checks a file's text; `path` names it in errors.
    fn parse(path: &Path, text: &str) -> Result<Self::Spec, Self::Error>;
    /// The `(namespace, name)` of what a spec describes: two files may not share it.
    fn name(spec: &Self::Spec) -> (&str, &str);
    /// The error of a file that describes what `other` already does.
    fn duplicate(path: &Path, spec: Self::Spec, other: &Path) -> Self::Error;
    /// The error of a file for which no id is left.
    fn ids_exhausted() -> Self::Error;
    /// The error of a directory that cannot be created.
    fn io(path: &Path, message: String) -> Self::Error;
}

/// Capacity of the event channel to the agent. The watcher waits when it is
/// full (the consumer only updates tables), so no event is ever dropped; 256
/// covers a whole demo directory appearing at once.
pub const FILE_EVENTS_CAPACITY: usize = 256;

/// Capacity of the wake-up channel from the notification thread. One pending
/// wake-up already guarantees a full rescan, so further ones are merged
/// (and counted in `merged_wakeups`).
const WAKEUP_CAPACITY: usize = 1;

/// Default period of the safety rescan.
const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Where and how often to look.
#[derive(Debug, Clone)]
pub struct WatcherConfig<S> {
    /// The directory; created when missing.
    pub dir: PathBuf,
    /// Period of the full rescan done even without notifications.
    pub rescan_interval: Duration,
    /// Whether to ask the kernel for change notifications (turn off on file
    /// systems without them; the periodic rescan still runs).
    pub notifications: bool,
    /// Files already known (restored after a restart): the first scan reports
    /// only their changes and removals.
    pub known: Vec<WatchedFile<S>>,
}

impl<S> WatcherConfig<S> {
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

/// What a file says, with the file's id (small, unique in the directory, stable for
/// the file name; endpoint files use it as the endpoint id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedFile<S> {
    /// The id, stable for the file.
    pub id: u16,
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub spec: S,
}

/// A change in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent<S, E> {
    /// A new file.
    Added(WatchedFile<S>),
    /// A file changed.
    Updated {
        /// What was reported before.
        previous: WatchedFile<S>,
        /// What the file says now.
        current: WatchedFile<S>,
    },
    /// A file was removed.
    Removed(WatchedFile<S>),
    /// A file could not be used; whatever it described before is kept.
    Rejected {
        /// The file.
        path: PathBuf,
        /// Why.
        error: E,
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
pub struct DirWatcher {
    task: JoinHandle<()>,
    stats: Arc<WatcherStats>,
}

impl DirWatcher {
    /// The watcher's counters.
    pub fn stats(&self) -> &WatcherStats {
        &self.stats
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The events of a watcher of `K` files.
pub type FileEvents<K> = mpsc::Receiver<FileEvent<<K as FileKind>::Spec, <K as FileKind>::Error>>;

/// Starts watching `config.dir`. The first events describe the files
/// already there. Must be called inside a tokio runtime.
pub fn watch<K: FileKind>(
    config: WatcherConfig<K::Spec>,
) -> Result<(DirWatcher, FileEvents<K>), K::Error> {
    std::fs::create_dir_all(&config.dir).map_err(|e| K::io(&config.dir, e.to_string()))?;
    let stats = Arc::new(WatcherStats::default());
    let (events_tx, events_rx) = mpsc::channel(FILE_EVENTS_CAPACITY);
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
        let mut scanner = Scanner::<K>::with_known(config.dir.clone(), &config.known);
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
                if let FileEvent::Rejected { error, .. } = &event {
                    task_stats.rejected_files.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "ignoring {} file", K::WHAT);
                }
                if events_tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((DirWatcher { task, stats }, events_rx))
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
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the directory; relying on periodic rescans");
            None
        }
    }
}
