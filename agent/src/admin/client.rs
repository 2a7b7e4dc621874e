//! The admin client: one request, one response.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{AdminRequest, AdminResponse, MAX_REQUEST_BYTES};
use super::AdminError;

/// Largest response accepted (endpoint and identity lists of a big node).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Sends a request to the agent at `socket` and returns its response. An
/// error response becomes [`AdminError::Agent`].
pub async fn request(socket: &Path, request: &AdminRequest) -> Result<AdminResponse, AdminError> {
    let io = |e: std::io::Error| AdminError::Io {
        path: socket.display().to_string(),
        message: e.to_string(),
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| AdminError::Connect {
            path: socket.display().to_string(),
            message: e.to_string(),
        })?;
    let (read_half, mut write_half) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| AdminError::Protocol(e.to_string()))?;
    if line.len() > MAX_REQUEST_BYTES {
        return Err(AdminError::Usage(format!(
            "the request is {} bytes once encoded; the agent accepts requests up to {MAX_REQUEST_BYTES} bytes",
            line.len()
        )));
    }
    line.push(b'\n');
    // When the write fails the agent may still have answered (a refusal
    // sent before it stopped reading): that answer says more than EPIPE.
    let sent = async {
        write_half.write_all(&line).await?;
        write_half.shutdown().await
    }
    .await;

    let mut answer = Vec::new();
    let read = BufReader::new(read_half)
        .take(MAX_RESPONSE_BYTES)
        .read_until(b'\n', &mut answer)
        .await;
    if answer.is_empty() {
        sent.map_err(io)?;
        read.map_err(io)?;
        return Err(AdminError::Protocol(
            "the agent closed the connection without answering".to_string(),
        ));
    }
    match serde_json::from_slice(&answer) {
        Ok(AdminResponse::Error { message }) => Err(AdminError::Agent(message)),
        Ok(response) => Ok(response),
        Err(e) => Err(AdminError::Protocol(format!("unreadable response: {e}"))),
    }
}
