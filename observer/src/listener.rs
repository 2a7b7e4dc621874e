//! Accepting connections for the gRPC servers of the agent and the relay, so that
//! careless or hostile clients cannot take a listener down.
//!
//! tonic's own accept loop ends for good on the first error it does not know, such as
//! EMFILE when the process is out of file descriptors: the server future returns and
//! the port stops answering while the process keeps running. [`incoming`] is the
//! replacement handed to `serve_with_incoming`: it never ends while its server runs;
//! on EMFILE, ENFILE, ENOBUFS or ENOMEM it logs (at most every
//! [`ACCEPT_ERROR_LOG_INTERVAL`]), backs off and listens again, so the kernel queues
//! new connections until descriptors are free.
//!
//! Descriptors come back because every accepted connection is [`Guarded`]: a client
//! must send the HTTP/2 client preface within [`HANDSHAKE_TIMEOUT`], and a connection
//! on which nothing arrives for [`READ_IDLE_TIMEOUT`] is closed. A live client always
//! sends something in that time: the server pings every [`KEEPALIVE_INTERVAL`]
//! (HTTP/2 keepalive, set by [`server_builder`]) and the client acknowledges, so only
//! stalled handshakes (TLS included) and dead peers are cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// Time a client has to send the HTTP/2 client preface (24 bytes) after connecting.
/// A Hubble client sends it with its first packet; 10 s covers a slow network many
/// times over while keeping a flood of silent connections from holding descriptors.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time without a byte from the client after which its connection is closed. Larger
/// than [`KEEPALIVE_INTERVAL`] plus [`KEEPALIVE_TIMEOUT`], so a live client (which
/// answers the keepalive pings) never reaches it.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the server pings a connection on which nothing arrived (HTTP/2
/// keepalive); grpc-go servers ping every 2 h by default, too slow to reclaim the
/// descriptors of vanished clients.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
/// Each follow stream holds buffers on the server; 1,000 streams on one connection
/// took a node to more than 1 GB. 128 is above what `hubble` or the relay open on one
/// connection (one stream per request) and above HTTP/2's recommended minimum of 100.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 128;
/// First pause after an accept failure caused by exhausted resources.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept attempts while resources stay exhausted.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures are logged at most this often (with the count since the last log).
pub const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Length of the HTTP/2 client preface (RFC 9113 section 3.4).
const HTTP2_PREFACE_LEN: usize = 24;

/// A tonic server builder with this module's HTTP/2 limits (keepalive, concurrent
/// streams per connection). Add TLS and routes, then serve it on [`incoming`].
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS_PER_CONNECTION))
}

/// A listener whose connections [`incoming`] accepts.
pub trait Accept: Send + Sync + 'static {
    /// An accepted connection.
    type Conn: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    /// Polls for the next connection.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>>;
    /// The local address, for log lines.
    fn describe(&self) -> String;
}

impl Accept for TcpListener {
    type Conn = TcpStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        TcpListener::poll_accept(self, cx).map_ok(|(stream, _)| {
            // Responses are written in batches; do not delay the last segment of one.
            let _ = stream.set_nodelay(true);
            stream
        })
    }
    fn describe(&self) -> String {
        self.local_addr()
            .map_or_else(|_| "tcp".to_string(), |a| a.to_string())
    }
}

impl Accept for UnixListener {
    type Conn = UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<UnixStream>> {
        UnixListener::poll_accept(self, cx).map_ok(|(stream, _)| stream)
    }
    fn describe(&self) -> String {
        self.local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "unix".to_string())
    }
}

/// The connections of `listener`, each [`Guarded`], for `serve_with_incoming`. The
/// stream never ends on its own and never yields an error; it ends when the server
/// drops it.
pub fn incoming<L: Accept>(listener: L) -> Incoming<L::Conn> {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(accept_loop(listener, sender));
    Incoming { receiver }
}

/// The stream returned by [`incoming`].
pub struct Incoming<C> {
    receiver: mpsc::Receiver<Guarded<C>>,
}

impl<C> Stream for Incoming<C> {
    type Item = io::Result<Guarded<C>>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

/// Whether an accept error means the process or the system ran out of something
/// (descriptors, buffers, memory), which frees up over time.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn accept_loop<L: Accept>(listener: L, sender: mpsc::Sender<Guarded<L::Conn>>) {
    let name = listener.describe();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut failures = 0u64;
    let mut last_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = std::future::poll_fn(|cx| listener.poll_accept(cx)) => accepted,
            () = sender.closed() => return,
        };
        match accepted {
            Ok(conn) => {
                if failures > 0 {
                    tracing::info!(listener = %name, failures, "accepting connections again");
                    failures = 0;
                    last_log = None;
                }
                backoff = ACCEPT_BACKOFF_MIN;
                if sender.send(Guarded::new(conn)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // Errors of one connection (reset before accept, ...) need no pause.
                let exhausted = is_resource_exhaustion(&error);
                failures += 1;
                if last_log.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
                    tracing::warn!(
                        listener = %name, %error, failures,
                        "cannot accept connections; still listening and retrying"
                    );
                    last_log = Some(Instant::now());
                }
                if exhausted {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = sender.closed() => return,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// An accepted connection with the handshake and read-idle deadlines of this module.
/// When a deadline passes, reads fail with `ConnectionAborted` (a kind tonic's TLS
/// acceptor skips, so a timed-out TLS handshake never stops the server).
pub struct Guarded<C> {
    inner: C,
    timer: Pin<Box<Sleep>>,
    accepted: Instant,
    last_read: Instant,
    preface_left: usize,
}

impl<C> Guarded<C> {
    /// Wraps a connection accepted now.
    pub fn new(inner: C) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep_until(now + HANDSHAKE_TIMEOUT)),
            accepted: now,
            last_read: now,
            preface_left: HTTP2_PREFACE_LEN,
        }
    }

    fn deadline(&self) -> Instant {
        if self.preface_left > 0 {
            self.accepted + HANDSHAKE_TIMEOUT
        } else {
            self.last_read + READ_IDLE_TIMEOUT
        }
    }

    /// Pending while the deadline is ahead; an error once it passed. The timer is only
    /// moved when it fires early (reads moved the deadline), not on every read.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.deadline();
            if Instant::now() >= deadline {
                let reason = if self.preface_left > 0 {
                    format!("no HTTP/2 preface within {HANDSHAKE_TIMEOUT:?} (HANDSHAKE_TIMEOUT)")
                } else {
                    format!("nothing received for {READ_IDLE_TIMEOUT:?} (READ_IDLE_TIMEOUT)")
                };
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    reason,
                )));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<C: Connected> Connected for Guarded<C> {
    type ConnectInfo = C::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Guarded<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.last_read = Instant::now();
                    this.preface_left = this.preface_left.saturating_sub(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Guarded<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_cut_after_the_handshake_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(server);
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = guarded.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert!(err.to_string().contains("HANDSHAKE_TIMEOUT"), "{err}");
        assert!(started.elapsed() >= HANDSHAKE_TIMEOUT);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_preface_only_silence_longer_than_the_idle_timeout_cuts() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(server);
        client
            .write_all(&[b'P'; HTTP2_PREFACE_LEN])
            .await
            .expect("write");
        let mut buf = [0u8; HTTP2_PREFACE_LEN];
        guarded.read_exact(&mut buf).await.expect("preface");
        // Past the handshake deadline, a client that keeps talking stays.
        for _ in 0..3 {
            tokio::time::advance(HANDSHAKE_TIMEOUT).await;
            client.write_all(b"x").await.expect("write");
            guarded.read_exact(&mut buf[..1]).await.expect("read");
        }
        let started = Instant::now();
        let err = guarded.read(&mut buf).await.expect_err("idle");
        assert!(err.to_string().contains("READ_IDLE_TIMEOUT"), "{err}");
        assert!(started.elapsed() >= READ_IDLE_TIMEOUT);
    }

    #[test]
    fn resource_errors_are_told_apart() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
