//! The `/metrics` HTTP endpoint.

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::registry::Registry;
use crate::Format;

/// The metrics server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} for metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves `registry` on `http://addr/metrics` until `shutdown` completes, then lets
/// in-flight scrapes finish.
pub async fn serve<F>(addr: SocketAddr, registry: Registry, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_listener(listener, registry, shutdown).await
}

/// Like [`serve`], on a listener the caller bound (port 0 in tests).
pub async fn serve_listener<F>(
    listener: TcpListener,
    registry: Registry,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}

async fn scrape(State(registry): State<Registry>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    // Gathering takes the handlers' lock briefly; encoding happens on the snapshot.
    let body = tokio::task::spawn_blocking(move || registry.encode(format))
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, format.content_type())], body)
}
