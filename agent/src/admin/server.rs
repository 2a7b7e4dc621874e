//! The admin server on a Unix socket.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::protocol::{AdminRequest, AdminResponse, EndpointRow, IdentityRow, MAX_REQUEST_BYTES};
use super::AdminError;
use crate::state::AgentState;

/// Default path of the admin socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/var/run/hubble-rs/agent.sock";

/// File mode of the admin socket: owner and group may connect.
pub const ADMIN_SOCKET_MODE: u32 = 0o660;

/// Most connections served at once; more are answered with an error and
/// closed (and counted in `refused_connections`). Admin commands are short
/// and rare, so 32 is plenty.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;

/// Most bytes of an oversized request read and dropped after the refusal,
/// so that an old client still writing it reads the answer. Past this the
/// connection is closed.
const MAX_DISCARDED_BYTES: u64 = 64 * 1024 * 1024;

/// Counters of the admin server.
#[derive(Debug, Default)]
pub struct AdminStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections refused because `MAX_ADMIN_CONNECTIONS` were open.
    pub refused_connections: AtomicU64,
}

/// Binds the admin socket: creates the parent directory, replaces a stale
/// socket file (never another kind of file) and sets mode 0660.
pub fn bind_admin_socket(path: &Path) -> Result<UnixListener, AdminError> {
    let io = |e: std::io::Error| AdminError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(io)?,
        Ok(_) => {
            return Err(AdminError::Io {
                path: path.display().to_string(),
                message: "exists and is not a socket".to_string(),
            })
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(ADMIN_SOCKET_MODE))
        .map_err(io)?;
    Ok(listener)
}

/// Serves admin requests until `shutdown` completes.
pub async fn serve_admin(
    listener: UnixListener,
    state: Arc<AgentState>,
    stats: Arc<AdminStats>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin socket accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        let state = Arc::clone(&state);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream, &state, &stats).await {
                tracing::debug!(%error, "admin connection ended");
            }
            drop(permit);
        });
    }
}

async fn refuse(mut stream: UnixStream) {
    let response = AdminResponse::Error {
        message: format!("too many admin connections (at most {MAX_ADMIN_CONNECTIONS})"),
    };
    let _ = write_response(&mut stream, &response).await;
}

async fn serve_connection(
    stream: UnixStream,
    state: &Arc<AgentState>,
    stats: &AdminStats,
) -> std::io::Result<()> {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX) + 1;
        let read = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST_BYTES {
            let response = AdminResponse::Error {
                message: format!("request larger than {MAX_REQUEST_BYTES} bytes"),
            };
            write_response(&mut write_half, &response).await?;
            // Read (and drop) the rest of the line, up to a bound, so that a
            // client still writing gets the answer instead of a broken pipe.
            let _ = tokio::io::copy(
                &mut (&mut reader).take(MAX_DISCARDED_BYTES),
                &mut tokio::io::sink(),
            )
            .await;
            return Ok(());
        }
        let response = match serde_json::from_slice::<AdminRequest>(&line) {
            // A policy import parses up to MAX_REQUEST_BYTES of YAML: CPU
            // work that must not stall the runtime's async workers.
            Ok(request) => {
                let state = Arc::clone(state);
                tokio::task::spawn_blocking(move || handle_request(&state, request))
                    .await
                    .unwrap_or_else(|error| AdminResponse::Error {
                        message: format!("the request failed: {error}"),
                    })
            }
            Err(error) => AdminResponse::Error {
                message: format!("bad request: {error}"),
            },
        };
        stats.requests.fetch_add(1, Ordering::Relaxed);
        write_response(&mut write_half, &response).await?;
    }
}

async fn write_response(
    writer: &mut (impl AsyncWriteExt + Unpin),
    response: &AdminResponse,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// Answers one request.
pub fn handle_request(state: &AgentState, request: AdminRequest) -> AdminResponse {
    let error = |message: String| AdminResponse::Error { message };
    match request {
        AdminRequest::EndpointList => {
            let endpoints = state.endpoints_with_enforcement();
            // Read after the endpoints: one added since has bumped the generation.
            let realized = state.is_realized();
            let redirects = state.proxy_redirects();
            AdminResponse::Endpoints {
                endpoints: endpoints
                    .iter()
                    .map(|(endpoint, enforcement)| {
                        EndpointRow::new(endpoint, *enforcement)
                            .with_datapath_realized(realized)
                            .with_redirects(&redirects)
                    })
                    .collect(),
            }
        }
        AdminRequest::PolicyImport { text } => match state.import_policy(&text) {
            Ok(outcome) => AdminResponse::Imported {
                revision: outcome.revision,
                warnings: outcome.warnings,
            },
            Err(e) => error(e.to_string()),
        },
        AdminRequest::PolicyGet => {
            let (rules_json, revision) = state.policy_json();
            AdminResponse::Policy {
                rules_json,
                revision,
            }
        }
        AdminRequest::PolicyDelete { selector } => match selector.to_selector() {
            Ok(selector) => match state.delete_policy(&selector) {
                Ok(revision) => AdminResponse::Deleted { revision },
                Err(e) => error(e.to_string()),
            },
            Err(message) => error(message),
        },
        request @ (AdminRequest::ServiceList
        | AdminRequest::ServiceUpdate { .. }
        | AdminRequest::ServiceDelete { .. }) => super::service::handle(state, request),
        AdminRequest::FqdnCacheList { endpoint } => super::fqdn::handle(state, endpoint),
        AdminRequest::IdentityList => AdminResponse::Identities {
            identities: state
                .identities()
                .iter()
                .map(|(id, labels)| IdentityRow::new(*id, labels))
                .collect(),
        },
    }
}
