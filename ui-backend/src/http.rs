//! The HTTP side: the page's files and the JSON/SSE API.
//!
//! - `GET /` and `GET /assets/<file>`: the page, embedded in the binary.
//! - `GET /api/flows?<filters>&limit=N`: recent flows passing the filters, oldest first.
//! - `GET /api/map`: the service map.
//! - `GET /api/status`: connection, nodes, rates, lost events, delivery counters.
//! - `GET /api/events?<filters>&limit=N`: Server-Sent Events, one `update` message per
//!   round (see `broadcast`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::assets;
use crate::broadcast;
use crate::query::{FlowQuery, QueryError};
use crate::state::Shared;

/// Interval of SSE comments that keep idle connections (and proxies) open.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

type Pairs = Query<Vec<(String, String)>>;

/// The router of the page and the API over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/:file", get(asset))
        .route("/api/flows", get(flows))
        .route("/api/map", get(map))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .with_state(shared)
}

async fn index() -> Response {
    asset_response("index.html")
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    asset_response(&file)
}

fn asset_response(name: &str) -> Response {
    match assets::get(name) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no such file {name:?}\n")).into_response(),
    }
}

fn bad_request(error: QueryError) -> Response {
    let body = serde_json::json!({ "error": error.to_string() });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn flows(State(shared): State<Arc<Shared>>, Query(pairs): Pairs) -> Response {
    let query = match FlowQuery::parse(&pairs) {
        Ok(query) => query,
        Err(error) => return bad_request(error),
    };
    let (found, next_seq) = {
        let state = shared.lock();
        let found = state.ring.latest_matching(&query.matcher, query.limit);
        (found, state.ring.next_seq())
    };
    let size: usize = found.iter().map(|f| f.json.len() + 1).sum();
    let mut body = String::with_capacity(size + 64);
    body.push_str("{\"flows\":[");
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&f.json);
    }
    body.push_str("],\"next_seq\":");
    body.push_str(&next_seq.to_string());
    body.push('}');
    json_response(body)
}

async fn map(State(shared): State<Arc<Shared>>) -> Response {
    json_response(broadcast::map_json(&shared.lock()))
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    json_response(broadcast::status_json(&shared.lock()))
}

async fn events(State(shared): State<Arc<Shared>>, Query(pairs): Pairs) -> Response {
    let query = match FlowQuery::parse(&pairs) {
        Ok(query) => query,
        Err(error) => return bad_request(error),
    };
    let rx = broadcast::subscribe(&shared, query.matcher, query.limit);
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        ReceiverStream::new(rx).map(|message| Ok(Event::default().event("update").data(message))),
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(SSE_KEEPALIVE))
        .into_response()
}
