//! The listener: accepts redirected connections within MAX_PROXY_CONNECTIONS and
//! serves each with hyper's HTTP/1.1 server under the header limits and timeouts.
//!
//! Invariant: a connection costs at most its buffers (bounded by the header and
//! buffer limits) and one task; a slow or silent client holds only its own task
//! and is closed by HEADER_READ_TIMEOUT or IDLE_TIMEOUT, so it never stalls others.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::exchange::Exchange;
use super::idle::IdleTimeout;
use super::stats::{ProxyStats, StatsSnapshot};
use crate::{ConnInfo, PolicyLookup, RecordSink, UpstreamConnector};

/// Connections one listener serves at once; one more is closed at accept and
/// counted. Each costs a task and its buffers (a few KiB idle, at most
/// MAX_REQUEST_HEADER_BYTES plus hyper's write buffer busy), so the limit
/// bounds the proxy's memory to a few hundred MiB in the worst case.
pub const MAX_PROXY_CONNECTIONS: usize = 16_384;
/// Largest request head (request line and headers), Envoy's default
/// (`max_request_headers_kb` 60); larger gets 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 60 * 1024;
/// Most header fields in a request, Envoy's default (`max_headers_count`); more gets 431.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// The number of header fields hyper allows when not told otherwise.
const HYPER_MAX_HEADERS: usize = 100;
/// A request head must be complete within this time from when the proxy starts
/// waiting for it (slowloris; also ends idle keep-alive connections).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no byte read or written for this long is closed (Envoy's
/// `stream_idle_timeout` default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time to open the connection to the original destination; then 503.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After shutdown is asked, connections get this long to finish their request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest interval between two ticks of the listener's keep-warm timer. Tokio's
/// timer wakes its sleeping driver (an eventfd write, then one more `epoll_wait`)
/// whenever a timer is set earlier than the earliest one it sleeps on; hyper sets
/// the header-read timer after every response, so without a timer that is always
/// due sooner, every keep-alive request would pay those two syscalls. The tick is
/// also never longer than the header-read timeout.
pub const TIMER_TICK: Duration = Duration::from_secs(1);

/// The first pause after a failed accept (EMFILE and friends); it doubles up to
/// ACCEPT_BACKOFF_MAX while accepting keeps failing.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The proxy's bounds; [`Limits::default`] has the named constants. Tests and
/// benchmarks lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_PROXY_CONNECTIONS,
            max_header_bytes: MAX_REQUEST_HEADER_BYTES,
            max_headers: MAX_REQUEST_HEADERS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            upstream_connect_timeout: UPSTREAM_CONNECT_TIMEOUT,
        }
    }
}

/// What one proxy listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The proxy port policy entries name (records and [`ConnInfo`] carry it).
    pub proxy_port: u16,
    /// The listener enforces ingress policy (false: egress).
    pub ingress: bool,
    pub limits: Limits,
}

impl ProxyConfig {
    /// A listener with the default limits.
    pub fn new(proxy_port: u16, ingress: bool) -> Self {
        ProxyConfig {
            proxy_port,
            ingress,
            limits: Limits::default(),
        }
    }
}

/// One HTTP proxy listener's state, shared by its connections.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) lookup: Arc<dyn PolicyLookup>,
    pub(crate) upstream: Arc<dyn UpstreamConnector>,
    pub(crate) records: RecordSink,
    pub(crate) stats: Arc<ProxyStats>,
    http: http1::Builder,
}

/// An HTTP proxy listener: build it, keep its [`HttpProxy::stats`], then [`HttpProxy::serve`].
pub struct HttpProxy {
    shared: Arc<Shared>,
}

impl HttpProxy {
    pub fn new(
        config: ProxyConfig,
        lookup: Arc<dyn PolicyLookup>,
        upstream: Arc<dyn UpstreamConnector>,
        records: RecordSink,
    ) -> HttpProxy {
        let limits = config.limits;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        // hyper's own limit is MAX_REQUEST_HEADERS already; naming it again would make
        // hyper fill a header array of that size for every request instead of leaving
        // it uninitialised on the stack.
        if limits.max_headers != HYPER_MAX_HEADERS {
            http.max_headers(limits.max_headers);
        }
        HttpProxy {
            shared: Arc::new(Shared {
                config,
                lookup,
                upstream,
                records,
                stats: Arc::new(ProxyStats::default()),
                http,
            }),
        }
    }

    /// The listener's counters (live; take a snapshot to read them).
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.shared.stats.clone()
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Serves `listener` until `shutdown` completes, then lets open connections
    /// finish their request for up to SHUTDOWN_GRACE. Accept errors (EMFILE, ...)
    /// never end it: it pauses and accepts again.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let limits = self.shared.config.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopped) = watch::channel(false);
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut tick = tokio::time::interval(TIMER_TICK.min(limits.header_read_timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => continue,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(error) => {
                    tracing::warn!(%error, pause = ?backoff, "http proxy: accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                ProxyStats::add(&self.shared.stats.connections_refused);
                tracing::debug!(
                    %peer,
                    "http proxy: connection refused: MAX_PROXY_CONNECTIONS ({}) open",
                    limits.max_connections
                );
                continue;
            };
            let destination = match stream.local_addr() {
                Ok(local) => local,
                Err(error) => {
                    tracing::debug!(%peer, %error, "http proxy: connection without a local address");
                    continue;
                }
            };
            let conn = ConnInfo {
                source: peer,
                destination,
                proxy_port: self.shared.config.proxy_port,
                ingress: self.shared.config.ingress,
            };
            ProxyStats::add(&self.shared.stats.connections_accepted);
            tokio::spawn(serve_connection(
                self.shared.clone(),
                stream,
                conn,
                slot,
                stopped.clone(),
            ));
        }
        let _ = stop.send(true);
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
        Ok(())
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    conn: ConnInfo,
    _slot: OwnedSemaphorePermit,
    mut stopped: watch::Receiver<bool>,
) {
    let stats = shared.stats.clone();
    stats.connections_active.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(IdleTimeout::new(stream, shared.config.limits.idle_timeout));
    let exchange = Arc::new(Exchange::new(shared.clone(), conn));
    let service = service_fn(move |request| {
        let exchange = exchange.clone();
        async move { Ok::<_, std::convert::Infallible>(exchange.handle(request).await) }
    });
    let connection = shared.http.serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop_requested(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        count_connection_error(&stats, &error);
        tracing::debug!(peer = %conn.source, %error, "http proxy: connection ended");
    }
    stats.connections_active.fetch_sub(1, Ordering::Relaxed);
}

/// Completes when the listener asks its connections to stop (or is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

fn count_connection_error(stats: &ProxyStats, error: &hyper::Error) {
    if error.is_parse_too_large() {
        ProxyStats::add(&stats.headers_too_large);
    } else if error.is_parse() {
        ProxyStats::add(&stats.malformed_requests);
    } else if error.is_timeout() {
        ProxyStats::add(&stats.header_timeouts);
    } else if io_error_kind(error) == Some(io::ErrorKind::TimedOut) {
        ProxyStats::add(&stats.idle_timeouts);
    }
}

fn io_error_kind(error: &hyper::Error) -> Option<io::ErrorKind> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}
