//! One full scan of a watched directory, compared with what was reported before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{FileEvent, FileKind, WatchedFile};
use crate::endpoints::EndpointIds;

type Event<K> = FileEvent<<K as FileKind>::Spec, <K as FileKind>::Error>;

/// What is known about one file. Files are small and few, so every scan
/// reads and parses each of them again: no modification-time heuristics
/// that could miss a quick same-size edit.
#[derive(Debug)]
struct FileState<K: FileKind> {
    endpoint: Option<WatchedFile<K::Spec>>,
    reported: Option<K::Error>,
}

impl<K: FileKind> Default for FileState<K> {
    fn default() -> Self {
        FileState {
            endpoint: None,
            reported: None,
        }
    }
}

/// The rescan logic, free of I/O scheduling so it can be tested directly.
#[derive(Debug)]
pub(crate) struct Scanner<K: FileKind> {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState<K>>,
    ids: EndpointIds,
}

impl<K: FileKind> Scanner<K> {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Scanner {
            dir,
            files: BTreeMap::new(),
            ids: EndpointIds::new(),
        }
    }

    /// A scanner that already knows `known` (restored after a restart): the first
    /// scan reports only what changed since, including files that went away, and the
    /// known files keep their ids.
    pub(crate) fn with_known(dir: PathBuf, known: &[WatchedFile<K::Spec>]) -> Self {
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
    pub(crate) fn scan(&mut self) -> Vec<Event<K>> {
        let present = match list_yaml_files(&self.dir) {
            Ok(present) => present,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot list the {} directory", K::WHAT);
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
                events.push(FileEvent::Removed(endpoint));
            }
        }
        for path in present {
            if let Some(event) = self.scan_file(&path) {
                events.push(event);
            }
        }
        events
    }

    fn scan_file(&mut self, path: &Path) -> Option<Event<K>> {
        // The file may vanish between listing and reading; the next scan
        // sees it gone.
        let text = std::fs::read_to_string(path).ok()?;
        let result = K::parse(path, &text).and_then(|spec| match self.owner_of(&spec, path) {
            Some(other) => Err(K::duplicate(path, spec, &other)),
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
                        let current = WatchedFile {
                            spec,
                            ..previous.clone()
                        };
                        state.endpoint = Some(current.clone());
                        Some(FileEvent::Updated { previous, current })
                    }
                    None => match self.ids.allocate(&key) {
                        Ok(id) => {
                            let endpoint = WatchedFile {
                                id,
                                path: path.to_path_buf(),
                                spec,
                            };
                            state.endpoint = Some(endpoint.clone());
                            Some(FileEvent::Added(endpoint))
                        }
                        Err(_) => report(state, path, K::ids_exhausted()),
                    },
                }
            }
            Err(error) => report(state, path, error),
        }
    }

    /// Another file that describes the same thing (namespace and name), if any.
    fn owner_of(&self, spec: &K::Spec, path: &Path) -> Option<PathBuf> {
        self.files.iter().find_map(|(other, state)| {
            let endpoint = state.endpoint.as_ref()?;
            (other != path && K::name(&endpoint.spec) == K::name(spec)).then(|| other.clone())
        })
    }
}

/// Reports an error once per distinct error.
fn report<K: FileKind>(state: &mut FileState<K>, path: &Path, error: K::Error) -> Option<Event<K>> {
    if state.reported.as_ref() == Some(&error) {
        return None;
    }
    state.reported = Some(error.clone());
    Some(FileEvent::Rejected {
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
fn list_yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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
