//! The services directory: service files watched with [`crate::dirwatch`] and applied
//! to the state.

use std::path::Path;
use std::sync::Arc;

use super::{parse_service_file, ServiceError, ServiceSource, ServiceSpec};
use crate::dirwatch::{self, DirWatcher, FileEvent, FileEvents, FileKind, WatchedFile};
use crate::endpoints::WatcherConfig;
use crate::state::AgentState;

/// Service files, for [`crate::dirwatch`].
#[derive(Debug)]
pub struct ServiceFiles;

impl FileKind for ServiceFiles {
    type Spec = ServiceSpec;
    type Error = ServiceError;
    const WHAT: &'static str = "service";

    fn parse(path: &Path, text: &str) -> Result<ServiceSpec, ServiceError> {
        parse_service_file(path, text)
    }

    fn name(spec: &ServiceSpec) -> (&str, &str) {
        (&spec.namespace, &spec.name)
    }

    fn duplicate(path: &Path, spec: ServiceSpec, other: &Path) -> ServiceError {
        ServiceError::Duplicate {
            path: path.display().to_string(),
            name: spec.service_name(),
            other: other.display().to_string(),
        }
    }

    fn ids_exhausted() -> ServiceError {
        ServiceError::Io {
            path: String::new(),
            message: format!(
                "too many service files (at most {})",
                crate::endpoints::MAX_ENDPOINT_ID
            ),
        }
    }

    fn io(path: &Path, message: String) -> ServiceError {
        ServiceError::Io {
            path: path.display().to_string(),
            message,
        }
    }
}

/// Starts watching the services directory `dir`, knowing the services `state` already
/// holds from files there (restored after a restart): the first scan reports only
/// what changed since. Must be called inside a tokio runtime.
pub fn watch_services(
    dir: &Path,
    state: &AgentState,
) -> Result<(DirWatcher, FileEvents<ServiceFiles>), ServiceError> {
    let mut config = WatcherConfig::new(dir);
    config.known = state
        .declared_services()
        .into_iter()
        .filter_map(|declared| match declared.source {
            ServiceSource::File(path) if path.parent() == Some(dir) => Some((path, declared.spec)),
            _ => None,
        })
        .zip(1..)
        .map(|((path, spec), id)| WatchedFile { id, path, spec })
        .collect();
    dirwatch::watch::<ServiceFiles>(config)
}

/// Applies service file events to the state until the watcher stops. A file the
/// state refuses (its name or a frontend belongs to another service) is logged and
/// ignored, as a file that does not parse is.
pub async fn apply_service_events(state: Arc<AgentState>, mut events: FileEvents<ServiceFiles>) {
    while let Some(event) = events.recv().await {
        apply(&state, event);
    }
}

/// Applies one service file event.
pub fn apply(state: &AgentState, event: FileEvent<ServiceSpec, ServiceError>) {
    let upsert = |file: WatchedFile<ServiceSpec>| {
        let name = file.spec.service_name();
        let source = ServiceSource::File(file.path.clone());
        match state.upsert_service(source, file.spec) {
            Ok(true) => {
                tracing::info!(service = %name, file = %file.path.display(), "service declared")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!("ignoring service file {}: {error}", file.path.display())
            }
        }
    };
    match event {
        FileEvent::Added(file) => upsert(file),
        FileEvent::Updated { previous, current } => {
            if previous.spec.service_name() != current.spec.service_name() {
                state.remove_service(
                    &ServiceSource::File(previous.path.clone()),
                    &previous.spec.service_name(),
                );
            }
            upsert(current);
        }
        FileEvent::Removed(file) => {
            let name = file.spec.service_name();
            if state.remove_service(&ServiceSource::File(file.path.clone()), &name) {
                tracing::info!(service = %name, file = %file.path.display(), "service removed");
            }
        }
        FileEvent::Rejected { path, error } => {
            tracing::warn!("ignoring service file {}: {error}", path.display());
        }
    }
}
