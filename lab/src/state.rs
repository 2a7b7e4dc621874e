//! The state file: a record of everything the lab created, written before each step.
//!
//! `up` records a namespace, link, file or directory before it creates it and a process
//! right after it starts, and saves the file each time, so that `down` can remove exactly
//! what was made even if `up` crashed half-way.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::topology::Topology;

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// What kind of process the lab started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessKind {
    /// A pod's server (deathstar or DNS).
    Workload,
    /// A node's `hubble-agent`.
    Agent,
    /// The `hubble-relay` in the root namespace.
    Relay,
    /// The etcd of the cluster store, in the root namespace.
    Etcd,
}

/// A process the lab started, identified by PID and start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Human name, e.g. `deathstar-1` or `agent node1`.
    pub role: String,
    pub kind: ProcessKind,
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// Network namespace it runs in; `None` for the root namespace.
    pub netns: Option<String>,
    pub log: PathBuf,
    pub command: Vec<String>,
}

/// Everything the lab created, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub cluster_name: String,
    pub run_dir: PathBuf,
    pub topology: Topology,
    /// Network namespaces (recorded before each is created).
    pub namespaces: Vec<String>,
    /// Links in the root namespace (recorded before each is created).
    pub links: Vec<String>,
    /// Started processes.
    pub processes: Vec<ProcessRecord>,
    /// Files the lab wrote.
    pub files: Vec<PathBuf>,
    /// Directories the lab created (they did not exist before).
    pub dirs: Vec<PathBuf>,
    /// Directories removed with everything in them (etcd's data directory).
    #[serde(default)]
    pub trees: Vec<PathBuf>,
    /// The cluster store's client URL given to the agents, when etcd runs.
    #[serde(default)]
    pub kvstore_endpoint: Option<String>,
    /// The `hubble-agent` the nodes run (used by `node add`).
    #[serde(default)]
    pub agent_bin: Option<PathBuf>,
    /// Where the relay listens.
    #[serde(default)]
    pub relay_address: Option<String>,
    /// Whether the agents export their flows to `node<N>/events.log`.
    #[serde(default)]
    pub export: bool,
    /// Flow export files of the agents: `down` removes each with its rotated backups.
    #[serde(default)]
    pub export_files: Vec<PathBuf>,
    /// File systems the lab mounted (the agents' BPF file system), unmounted by
    /// `down` after the trees in them are removed.
    #[serde(default)]
    pub mounts: Vec<PathBuf>,
    /// cgroups the lab made (node and pod cgroups for socket load balancing), removed
    /// by `down` children first, before the hierarchy is unmounted.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// True once `up` finished.
    pub complete: bool,
}

/// The state together with the file it is saved to.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    pub state: LabState,
}

impl StateFile {
    /// Wraps a fresh state that will be saved at `path`.
    pub fn new(path: PathBuf, state: LabState) -> Self {
        StateFile { path, state }
    }

    /// Path of the state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state file at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<StateFile>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(LabError::io("reading", path, error)),
        };
        let state: LabState = serde_json::from_str(&text).map_err(|error| LabError::BadState {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(LabError::BadState {
                path: path.to_path_buf(),
                reason: format!(
                    "version {} is not the supported version {STATE_VERSION}",
                    state.version
                ),
            });
        }
        Ok(Some(StateFile {
            path: path.to_path_buf(),
            state,
        }))
    }

    /// Applies `change` to the state and saves it before returning.
    pub fn record(&mut self, change: impl FnOnce(&mut LabState)) -> Result<()> {
        change(&mut self.state);
        self.save()
    }

    /// Writes the state atomically (temporary file, fsync, rename).
    pub fn save(&self) -> Result<()> {
        let text =
            serde_json::to_string_pretty(&self.state).map_err(|error| LabError::BadState {
                path: self.path.clone(),
                reason: error.to_string(),
            })?;
        write_atomically(&self.path, text.as_bytes())
    }

    /// Deletes the state file; a missing file is fine.
    pub fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(LabError::io("removing", &self.path, error)),
        }
    }
}

/// Writes `contents` to `path` through a temporary file in the same directory, so a
/// reader (the agent watching endpoint files, `down` reading the state) never sees a
/// half-written file.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = fs::File::create(&temporary)
        .map_err(|error| LabError::io("creating", &temporary, error))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| LabError::io("writing", &temporary, error))?;
    fs::rename(&temporary, path).map_err(|error| LabError::io("renaming into", path, error))
}
