//! One full scan of the endpoints directory, compared with what was
//! reported before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::watcher::{EndpointEvent, WatchedEndpoint};
use super::{parse_endpoint_file, EndpointError, EndpointIds, EndpointSpec};

/// What is known about one file. Files are small and few, so every scan
/// reads and parses each of them again: no modification-time heuristics
/// that could miss a quick same-size edit.
#[derive(Debug, Default)]
struct FileState {
    endpoint: Option<WatchedEndpoint>,
    reported: Option<EndpointError>,
}

/// The rescan logic, free of I/O scheduling so it can be tested directly.
#[derive(Debug)]
pub(crate) struct Scanner {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    ids: EndpointIds,
}

impl Scanner {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Scanner {
            dir,
            files: BTreeMap::new(),
            ids: EndpointIds::new(),
        }
    }

    /// A scanner that already knows `known` (endpoints restored after a restart): the
    /// first scan reports only what changed since, including files that went away,
    /// and the known endpoints keep their ids.
    pub(crate) fn with_known(dir: PathBuf, known: &[WatchedEndpoint]) -> Self {
        let mut scanner = Scanner::new(dir);
        for endpoint in known {
            if scanner.ids.reserve(&id_key(&endpoint.path), endpoint.id) {
                scanner.files.insert(
                    endpoint.path.clone(),
                    FileState {
                        endpoint: Some(endpoint.clone()),
                        reported: None,
                    },
                );
            }
        }
        scanner
    }

    /// Compares the directory with the known state and returns the changes.
    pub(crate) fn scan(&mut self) -> Vec<EndpointEvent> {
        let present = match list_endpoint_files(&self.dir) {
            Ok(present) => present,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot list the endpoints directory");
                return Vec::new();
            }
        };
        let mut events = Vec::new();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(endpoint) = self.files.remove(&path).and_then(|state| state.endpoint) {
                self.ids.release(&id_key(&path));
                events.push(EndpointEvent::Removed(endpoint));
            }
        }
        for path in present {
            if let Some(event) = self.scan_file(&path) {
                events.push(event);
            }
        }
        events
    }

    fn scan_file(&mut self, path: &Path) -> Option<EndpointEvent> {
        // The file may vanish between listing and reading; the next scan
        // sees it gone.
        let text = std::fs::read_to_string(path).ok()?;
        let result =
            parse_endpoint_file(path, &text).and_then(|spec| match self.owner_of(&spec, path) {
                Some(other) => Err(EndpointError::Duplicate {
                    path: path.display().to_string(),
                    namespace: spec.namespace,
                    name: spec.name,
                    other: other.display().to_string(),
                }),
                None => Ok(spec),
            });
        let key = id_key(path);
        let state = self.files.entry(path.to_path_buf()).or_default();
        match result {
            Ok(spec) => {
                state.reported = None;
                match &state.endpoint {
                    Some(previous) if previous.spec == spec => None,
                    Some(previous) => {
                        let previous = previous.clone();
                        let current = WatchedEndpoint {
                            spec,
                            ..previous.clone()
                        };
                        state.endpoint = Some(current.clone());
                        Some(EndpointEvent::Updated { previous, current })
                    }
                    None => match self.ids.allocate(&key) {
                        Ok(id) => {
                            let endpoint = WatchedEndpoint {
                                id,
                                path: path.to_path_buf(),
                                spec,
                            };
                            state.endpoint = Some(endpoint.clone());
                            Some(EndpointEvent::Added(endpoint))
                        }
                        Err(error) => report(state, path, error),
                    },
                }
            }
            Err(error) => report(state, path, error),
        }
    }

    /// Another file whose endpoint is the same pod, if any.
    fn owner_of(&self, spec: &EndpointSpec, path: &Path) -> Option<PathBuf> {
        self.files.iter().find_map(|(other, state)| {
            let endpoint = state.endpoint.as_ref()?;
            (other != path
                && endpoint.spec.namespace == spec.namespace
                && endpoint.spec.name == spec.name)
                .then(|| other.clone())
        })
    }
}

/// Reports an error once per distinct error.
fn report(state: &mut FileState, path: &Path, error: EndpointError) -> Option<EndpointEvent> {
    if state.reported.as_ref() == Some(&error) {
        return None;
    }
    state.reported = Some(error.clone());
    Some(EndpointEvent::Rejected {
        path: path.to_path_buf(),
        error,
    })
}

fn id_key(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `*.yaml`/`*.yml` regular files of the directory, hidden ones
/// (editors' and writers' temporary files) excluded, sorted.
fn list_endpoint_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if name.starts_with('.') || !is_yaml {
            continue;
        }
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}
