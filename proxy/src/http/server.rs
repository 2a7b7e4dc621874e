//! The listener: accepts redirected connections within MAX_PROXY_CONNECTIONS and
//! serves each ([`super::exchange`]) under the header limits and timeouts.
//!
//! Invariant: a connection costs at most its buffers (bounded by the header and
//! buffer limits) and one task; a slow or silent client holds only its own task
//! and is closed by HEADER_READ_TIMEOUT or IDLE_TIMEOUT, so it never stalls others.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::stats::{ProxyStats, StatsSnapshot};
use crate::{ConnInfo, PolicyLookup, RecordSink, UpstreamConnector};

/// Connections one listener serves at once; one more is closed at accept and
/// counted. Each costs a task and its buffers (16 KiB idle, at most
/// MAX_REQUEST_HEADER_BYTES and a read buffer each way busy), so the limit
/// bounds the proxy's memory to a few hundred MiB in the worst case.
pub const MAX_PROXY_CONNECTIONS: usize = 16_384;
/// Largest request head (request line and headers), Envoy's default
/// (`max_request_headers_kb` 60); larger gets 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 60 * 1024;
/// Most header fields in a request, Envoy's default (`max_headers_count`); more gets
/// 431. Responses get the same bound (more: 502). [`Limits::max_headers`] can only
/// lower it.
pub const MAX_REQUEST_HEADERS: usize = 100;
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
/// whenever a timer is set earlier than the earliest one it sleeps on; a
/// connection's timers move lazily but still re-arm when they fire, so a timer that
/// is always due sooner spares those two syscalls. The tick is also never longer
/// than the header-read timeout.
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
        HttpProxy {
            shared: Arc::new(Shared {
                config,
                lookup,
                upstream,
                records,
                stats: Arc::new(ProxyStats::default()),
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
    stopped: watch::Receiver<bool>,
) {
    let stats = shared.stats.clone();
    stats.connections_active.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    super::exchange::serve(shared, stream, conn, stopped).await;
    stats.connections_active.fetch_sub(1, Ordering::Relaxed);
}
