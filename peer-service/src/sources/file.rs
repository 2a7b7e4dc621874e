//! The static nodes file: a YAML list of nodes, watched for changes.
//!
//! ```yaml
//! - {name: node1, address: "10.100.0.11:4244"}
//! - {name: node2, address: "unix:///var/run/hubble-rs/node2/hubble.sock", cluster: default}
//! ```
//!
//! The file is re-read when it changes (file-system notifications on its directory, so
//! that editors that replace the file are seen) and on a periodic rescan, in case a
//! notification is missed. A file that fails to read or parse is reported with its path
//! and line, and the last good list stays in force.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use super::{NodeSource, Running};
use crate::hub::NodeHub;
use crate::node::Node;
use crate::NodesFileError;

/// How often the file is re-read even without a change notification.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Pause between a change notification and the read, so that a writer can finish.
const SETTLE_DELAY: Duration = Duration::from_millis(50);

/// Change notifications pending for the reader. One is enough: a pending notification
/// already means "read the file again", so further ones are coalesced (not counted).
const CHANGE_SIGNAL_CAPACITY: usize = 1;

/// Parses the text of a nodes file named `path` (the path is only used in errors).
pub fn parse_nodes(path: &Path, text: &str) -> Result<Vec<Node>, NodesFileError> {
    let nodes: Option<Vec<Node>> =
        serde_yaml::from_str(text).map_err(|error| NodesFileError::Parse {
            path: path.to_owned(),
            line: error.location().map(|l| l.line()).unwrap_or(0),
            column: error.location().map(|l| l.column()).unwrap_or(0),
            message: error.to_string(),
        })?;
    let nodes = nodes.unwrap_or_default();
    let mut names = HashSet::new();
    for (index, node) in nodes.iter().enumerate() {
        let invalid = |reason: String| NodesFileError::Invalid {
            path: path.to_owned(),
            entry: index + 1,
            reason,
        };
        if node.name.trim().is_empty() {
            return Err(invalid("the node name is empty".into()));
        }
        if node.address.trim().is_empty() {
            return Err(invalid(format!(
                "node {:?} has an empty address",
                node.name
            )));
        }
        if !names.insert(node.name.as_str()) {
            return Err(invalid(format!("node {:?} is listed twice", node.name)));
        }
    }
    Ok(nodes)
}

/// Reads and parses the nodes file at `path`.
pub fn load_nodes_file(path: &Path) -> Result<Vec<Node>, NodesFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodesFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_nodes(path, &text)
}

/// The nodes file as a [`NodeSource`]: a [`NodesFileWatcher`] on `path`.
#[derive(Debug, Clone)]
pub struct NodesFile {
    /// The file.
    pub path: PathBuf,
    /// How often it is re-read without a change notification.
    pub rescan_interval: Duration,
}

impl NodesFile {
    /// The file at `path`, rescanned every [`DEFAULT_RESCAN_INTERVAL`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
        }
    }
}

impl NodeSource for NodesFile {
    fn describe(&self) -> String {
        format!("nodes file {}", self.path.display())
    }

    fn start(self: Box<Self>, hub: NodeHub) -> Running {
        Running::keep(NodesFileWatcher::spawn(
            self.path,
            hub,
            self.rescan_interval,
        ))
    }
}

/// Keeps a [`NodeHub`] in step with a nodes file until dropped.
pub struct NodesFileWatcher {
    task: tokio::task::JoinHandle<()>,
    last_error: Arc<Mutex<Option<String>>>,
    // Kept alive for its notifications; `None` when the directory could not be watched
    // (the periodic rescan still runs).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl NodesFileWatcher {
    /// Loads `path` into `hub` now, then follows its changes. Must be called within a
    /// Tokio runtime. Errors are logged and kept for [`NodesFileWatcher::last_error`]; the
    /// watcher keeps running so that a fixed file is picked up.
    pub fn spawn(path: impl Into<PathBuf>, hub: NodeHub, rescan_interval: Duration) -> Self {
        let path = path.into();
        let last_error = Arc::new(Mutex::new(None));
        let (signal, signals) = mpsc::channel(CHANGE_SIGNAL_CAPACITY);
        let watcher = watch_directory(&path, signal);
        let mut reader = Reader {
            path,
            hub,
            last_text: None,
            last_error: last_error.clone(),
        };
        reader.reload();
        let task = tokio::spawn(reader.run(signals, rescan_interval));
        Self {
            task,
            last_error,
            _watcher: watcher,
        }
    }

    /// The message of the last failed load, or `None` when the last load succeeded.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for NodesFileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn watch_directory(path: &Path, signal: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|name| name.to_owned());
    let handler = move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref()),
            Err(_) => true,
        };
        if relevant {
            // A full queue already holds a pending reload.
            let _ = signal.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot create a file watcher; relying on the periodic rescan");
            return None;
        }
    };
    if let Err(error) = watcher.watch(&directory, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(
            %error,
            directory = %directory.display(),
            "cannot watch the nodes file's directory; relying on the periodic rescan"
        );
        return None;
    }
    Some(watcher)
}

struct Reader {
    path: PathBuf,
    hub: NodeHub,
    last_text: Option<String>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Reader {
    async fn run(mut self, mut signals: mpsc::Receiver<()>, rescan_interval: Duration) {
        let mut rescan = tokio::time::interval(rescan_interval);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rescan.tick().await;
        loop {
            tokio::select! {
                signal = signals.recv() => {
                    if signal.is_none() {
                        // No watcher: only the rescan is left.
                        loop {
                            rescan.tick().await;
                            self.reload();
                        }
                    }
                    tokio::time::sleep(SETTLE_DELAY).await;
                }
                _ = rescan.tick() => {}
            }
            self.reload();
        }
    }

    fn reload(&mut self) {
        let result = std::fs::read_to_string(&self.path)
            .map_err(|source| NodesFileError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|text| {
                if self.last_text.as_deref() == Some(text.as_str()) {
                    return Ok(None);
                }
                let nodes = parse_nodes(&self.path, &text)?;
                Ok(Some((text, nodes)))
            });
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(None) => *last_error = None,
            Ok(Some((text, nodes))) => {
                tracing::info!(path = %self.path.display(), nodes = nodes.len(), "loaded nodes file");
                self.hub.replace_all(nodes);
                self.last_text = Some(text);
                *last_error = None;
            }
            Err(error) => {
                let message = error.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(%error, "keeping the last good node list");
                }
                // Forget the text so that the same content is parsed (and reported) again
                // once it becomes readable.
                self.last_text = None;
                *last_error = Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_lab_format() {
        let text = "- {name: node1, address: \"10.100.0.11:4244\"}\n\
                    - {name: node2, address: \"unix:///run/n2.sock\", cluster: c1}\n";
        let nodes = parse_nodes(Path::new("nodes.yaml"), text).expect("valid file");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].cluster.as_deref(), Some("c1"));
        assert!(parse_nodes(Path::new("n"), "").expect("empty").is_empty());
        assert!(parse_nodes(Path::new("n"), "# none yet\n")
            .expect("comment")
            .is_empty());
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let text = "- {name: node1, address: a:1}\n- {name: node2, adress: b:1}\n";
        let error = parse_nodes(Path::new("/x/nodes.yaml"), text).expect_err("typo");
        let message = error.to_string();
        assert!(message.contains("/x/nodes.yaml:2"), "{message}");
        assert!(message.contains("adress"), "{message}");

        let duplicate = "- {name: a, address: a:1}\n- {name: a, address: b:1}\n";
        let message = parse_nodes(Path::new("f"), duplicate)
            .expect_err("duplicate")
            .to_string();
        assert!(
            message.contains("entry 2") && message.contains("twice"),
            "{message}"
        );
    }
}
