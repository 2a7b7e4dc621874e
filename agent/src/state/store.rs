//! The agent's state directory: what it must remember across a restart.
//!
//! One file, `state.json`, holds the policy repository (rules and revision), the
//! endpoints the agent was told about with their identities, the identities it
//! allocated for them and the node-local CIDR identities. It is rewritten after every
//! change by writing a temporary file next to it, syncing it to disk and renaming it
//! over the old one (then syncing the directory), so a crash at any moment leaves
//! either the old or the new file, never a mix.
//!
//! Reading is strict: a file that is not valid JSON, lacks a field, carries unknown
//! fields or another format version is an error naming the file and what is wrong. The
//! agent then refuses to start (it would otherwise come up without its policy) unless
//! the operator asks it to start empty.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::endpoints::Endpoint;
use crate::identity::Identity;
use crate::labels::LabelSet;
use crate::policy::Rule;
use crate::services::ServicesSnapshot;

/// Version of the state file format this agent reads and writes.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// Name of the state file inside the state directory.
pub const STATE_FILE_NAME: &str = "state.json";

/// Everything restored on start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// [`STATE_FORMAT_VERSION`] when written by this agent.
    pub version: u32,
    /// The node the state belongs to.
    pub node: String,
    /// The policy repository.
    pub policy: PolicySnapshot,
    /// The endpoints, by id.
    pub endpoints: Vec<Endpoint>,
    /// The identities this node's endpoints hold, by number.
    pub identities: Vec<IdentityRecord>,
    /// Node-local CIDR identities of the prefixes the rules name.
    pub cidr_identities: Vec<CidrRecord>,
    /// Declared services, API-set frontends and frontend IDs (absent in files written
    /// before services existed).
    #[serde(default)]
    pub services: ServicesSnapshot,
    /// The names the endpoints looked up (absent in files written before the DNS
    /// proxy existed).
    #[serde(default)]
    pub fqdn: Vec<crate::fqdn::FqdnRecord>,
    /// The proxy port of each L7 redirect (absent in files written before L7
    /// redirects existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_ports: Vec<crate::policy::ProxyPortRecord>,
}

/// The policy repository: rules in import order and the revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySnapshot {
    /// The repository revision (1 when empty).
    pub revision: u64,
    /// The normalized rules, as `policy get` prints them.
    pub rules: Vec<Rule>,
}

/// One allocated identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRecord {
    /// Its number.
    pub id: Identity,
    /// Its label set.
    pub labels: LabelSet,
}

/// One node-local CIDR identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CidrRecord {
    /// The prefix, e.g. `192.0.2.0/24`.
    pub prefix: String,
    /// Its identity.
    pub id: Identity,
}

/// Errors of the state directory, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or directory could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but cannot be used.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column when known.
        reason: String,
    },
    /// The file was written in another format.
    #[error("state file {path} has format version {found}; this agent reads version {expected}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// [`STATE_FORMAT_VERSION`].
        expected: u32,
    },
}

impl StoreError {
    /// True when the file exists but cannot be used (corrupt or another version):
    /// the cases `--discard-corrupt-state` covers.
    pub fn is_unusable_file(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::Version { .. }
        )
    }
}

/// The state directory of one node.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// A store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE_NAME)
    }

    /// Reads the state; `None` when there is no state file yet (a first start).
    pub fn load(&self) -> Result<Option<Snapshot>, StoreError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        parse(&path, &text).map(Some)
    }

    /// Writes the state atomically: temporary file, fsync, rename, fsync of the
    /// directory. The file is readable by root only.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.path();
        let temporary = self.dir.join(format!("{STATE_FILE_NAME}.tmp"));
        // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
        let text = serde_json::to_vec_pretty(snapshot).unwrap_or_default();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io(&temporary))?;
        file.write_all(&text).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    /// Moves an unusable state file aside (to `state.json.corrupt`) and returns where.
    pub fn set_aside(&self) -> Result<PathBuf, StoreError> {
        let path = self.path();
        let aside = self.dir.join(format!("{STATE_FILE_NAME}.corrupt"));
        fs::rename(&path, &aside).map_err(|source| StoreError::Io { path, source })?;
        Ok(aside)
    }
}

/// Parses a state file's bytes; `path` names it in errors.
pub fn parse(path: &Path, text: &[u8]) -> Result<Snapshot, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // The version is checked first, so a file from another version is reported as
    // such rather than as a field mismatch.
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
    let found = value
        .get("version")
        .ok_or_else(|| corrupt("no \"version\" field".to_string()))?
        .as_u64()
        .ok_or_else(|| corrupt("\"version\" is not a number".to_string()))?;
    if found != u64::from(STATE_FORMAT_VERSION) {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            found,
            expected: STATE_FORMAT_VERSION,
        });
    }
    let snapshot: Snapshot = serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
    for record in &snapshot.cidr_identities {
        record
            .prefix
            .parse::<ipnet::IpNet>()
            .map_err(|e| corrupt(format!("cidr_identities: {:?}: {e}", record.prefix)))?;
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests;
