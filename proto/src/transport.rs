//! What every gRPC client of the API shares about its transport: dialing a node's Unix
//! socket, and the text of a transport error with its causes.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};

/// An endpoint for a Unix-socket channel: its URI is required by tonic but unused, as
/// [`UnixConnector`] decides where to connect.
pub fn unix_endpoint() -> Endpoint {
    Endpoint::from_static("http://localhost")
}

/// A connector for `Endpoint::connect_with_connector` (or its lazy form) that dials the
/// Unix socket at `path` for every connection.
#[derive(Debug, Clone)]
pub struct UnixConnector {
    path: Arc<Path>,
}

impl UnixConnector {
    /// Dials `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::from(path.into()),
        }
    }
}

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(&*path).await?)) })
    }
}

/// An error and its causes, joined with `: ` (a cause already in the text is not
/// repeated). Transport errors hide their causes otherwise: a TLS failure is only
/// visible in the source of "transport error".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    with_causes(error.to_string(), error.source())
}

/// `message` followed by `source` and its own causes, as [`error_chain`] joins them.
pub fn with_causes(
    mut message: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(text: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn error_chain_names_each_cause_once() {
        let inner = layer("connection refused", None);
        let middle = layer("tcp connect error: connection refused", Some(inner));
        let outer = layer("transport error", Some(middle));
        assert_eq!(
            error_chain(&outer),
            "transport error: tcp connect error: connection refused"
        );
    }

    #[tokio::test]
    async fn unix_connector_dials_the_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let mut connector = UnixConnector::new(&path);
        let uri = Uri::from_static("http://localhost");
        let dial = tower::Service::call(&mut connector, uri.clone());
        let (dialed, accepted) = tokio::join!(dial, listener.accept());
        assert!(dialed.is_ok() && accepted.is_ok());
        let mut missing = UnixConnector::new(dir.path().join("none.sock"));
        let error = tower::Service::call(&mut missing, uri).await.err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }
}
