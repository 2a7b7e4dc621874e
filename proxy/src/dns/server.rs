//! Serving redirected queries over UDP and TCP.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use proto::accesslog::{DnsLog, L7Log, LogRecord, RecordEndpoint, RecordKind, RecordVerdict};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::message::{self, Query};
use super::{
    AnswerHook, DnsDecision, DnsPolicyLookup, DnsStats, MAX_MESSAGE_BYTES, MAX_PENDING_QUERIES,
    MAX_TCP_CONNECTIONS, TCP_IDLE_TIMEOUT, UPSTREAM_TIMEOUT,
};
use crate::{ConnInfo, RecordSink};

/// How a query reached the proxy, and so how it goes on to its server; its records
/// carry it.
use proto::accesslog::DnsTransport as Transport;

/// One DNS proxy listener's shared part: policy, hook, records and bounds.
pub struct DnsProxy {
    proxy_port: u16,
    lookup: Arc<dyn DnsPolicyLookup>,
    hook: Arc<dyn AnswerHook>,
    records: RecordSink,
    stats: Arc<DnsStats>,
    pending: Arc<Semaphore>,
    connections: Arc<Semaphore>,
}

impl DnsProxy {
    /// A proxy whose policy entries name `proxy_port`.
    pub fn new(
        proxy_port: u16,
        lookup: Arc<dyn DnsPolicyLookup>,
        hook: Arc<dyn AnswerHook>,
        records: RecordSink,
    ) -> Arc<DnsProxy> {
        Arc::new(DnsProxy {
            proxy_port,
            lookup,
            hook,
            records,
            stats: Arc::default(),
            pending: Arc::new(Semaphore::new(MAX_PENDING_QUERIES)),
            connections: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<DnsStats> {
        &self.stats
    }

    fn pending_permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.pending.clone().try_acquire_owned().ok();
        if permit.is_none() {
            DnsStats::bump(&self.stats.over_pending_limit);
        }
        permit
    }

    /// Handles one query message from `client` received at `local`; returns what to
    /// send back, or `None` when the message is dropped.
    async fn handle(
        &self,
        client: SocketAddr,
        local: SocketAddr,
        bytes: &[u8],
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let query = match message::parse_query(bytes) {
            Ok(query) => query,
            Err(error) => {
                DnsStats::bump(&self.stats.malformed);
                tracing::debug!(%client, "dropped DNS message: {error}");
                return None;
            }
        };
        DnsStats::bump(&self.stats.queries);
        let conn = ConnInfo {
            source: client,
            destination: self.lookup.original_destination(client, local),
            proxy_port: self.proxy_port,
            ingress: false,
        };
        let decision = self.lookup.dns_decision(&conn);
        let allowed = decision
            .as_ref()
            .is_some_and(|decision| decision.policy.allows(&query.name));
        let started = Instant::now();
        let mut request = message::request_log(&query);
        request.transport = transport;
        if !allowed {
            DnsStats::bump(&self.stats.denied);
            self.record(
                &conn,
                decision.as_ref(),
                RecordKind::Request,
                RecordVerdict::Denied,
                None,
                request,
            );
            return message::refused(&query).ok();
        }
        self.record(
            &conn,
            decision.as_ref(),
            RecordKind::Request,
            RecordVerdict::Forwarded,
            None,
            request,
        );
        let answer = match exchange(&*self.lookup, &conn, bytes, &query, transport).await {
            Ok(answer) => answer,
            Err(error) => {
                DnsStats::bump(&self.stats.upstream_failures);
                tracing::debug!(server = %conn.destination, "DNS query failed: {error}");
                let mut log = message::request_log(&query);
                log.transport = transport;
                log.rcode = u32::from(u16::from(hickory_proto::op::ResponseCode::ServFail));
                self.record(
                    &conn,
                    decision.as_ref(),
                    RecordKind::Response,
                    RecordVerdict::Error,
                    Some(started),
                    log,
                );
                return message::server_failure(&query).ok();
            }
        };
        let (answer_bytes, mut log) = answer;
        log.transport = transport;
        if log.rcode == 0 && !log.ips.is_empty() {
            self.hook.allowed_answer(&conn, &log).await;
        }
        self.record(
            &conn,
            decision.as_ref(),
            RecordKind::Response,
            RecordVerdict::Forwarded,
            Some(started),
            log,
        );
        DnsStats::bump(&self.stats.answered);
        Some(answer_bytes)
    }

    fn record(
        &self,
        conn: &ConnInfo,
        decision: Option<&DnsDecision>,
        kind: RecordKind,
        verdict: RecordVerdict,
        started: Option<Instant>,
        log: DnsLog,
    ) {
        let (source_identity, destination_identity) = decision
            .map(|d| (d.source_identity, d.destination_identity))
            .unwrap_or((0, 0));
        self.records.send(LogRecord {
            time: SystemTime::now(),
            kind,
            verdict,
            ingress: conn.ingress,
            proxy_port: conn.proxy_port,
            source: RecordEndpoint {
                ip: conn.source.ip(),
                port: conn.source.port(),
                identity: source_identity,
            },
            destination: RecordEndpoint {
                ip: conn.destination.ip(),
                port: conn.destination.port(),
                identity: destination_identity,
            },
            latency: started.map(|started| started.elapsed()),
            l7: L7Log::Dns(log),
        });
    }
}

/// Asks `server` over the query's transport; the answer must parse and carry the
/// query's id. Bounded by [`UPSTREAM_TIMEOUT`].
async fn exchange(
    lookup: &dyn DnsPolicyLookup,
    conn: &ConnInfo,
    bytes: &[u8],
    query: &Query,
    transport: Transport,
) -> io::Result<(Vec<u8>, DnsLog)> {
    let server = conn.destination;
    let exchange = async {
        match transport {
            Transport::Udp => {
                exchange_udp(
                    upstream_socket(lookup, conn, transport)?,
                    server,
                    bytes,
                    query,
                )
                .await
            }
            Transport::Tcp => {
                exchange_tcp(
                    upstream_socket(lookup, conn, transport)?,
                    server,
                    bytes,
                    query,
                )
                .await
            }
        }
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {server} within {UPSTREAM_TIMEOUT:?}"),
            )
        })?
}

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// The socket of the proxy's own query to `conn.destination`, prepared by the
/// lookup (the agent binds the client's address and marks it), non-blocking.
fn upstream_socket(
    lookup: &dyn DnsPolicyLookup,
    conn: &ConnInfo,
    transport: Transport,
) -> io::Result<Socket> {
    let domain = Domain::for_address(conn.destination);
    let socket = match transport {
        Transport::Udp => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
        Transport::Tcp => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
    };
    lookup.prepare_upstream(conn, &socket)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

async fn exchange_udp(
    socket: Socket,
    server: SocketAddr,
    bytes: &[u8],
    query: &Query,
) -> io::Result<(Vec<u8>, DnsLog)> {
    let socket = UdpSocket::from_std(socket.into())?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    loop {
        let length = socket.recv(&mut buffer).await?;
        // A stray datagram (another id, not DNS) is skipped; the timeout still applies.
        match message::parse_answer(&buffer[..length], query) {
            Ok((answer, log)) if answer.id() == query.message.id() => {
                return Ok((buffer[..length].to_vec(), log));
            }
            _ => continue,
        }
    }
}

async fn exchange_tcp(
    socket: Socket,
    server: SocketAddr,
    bytes: &[u8],
    query: &Query,
) -> io::Result<(Vec<u8>, DnsLog)> {
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    let mut stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    write_framed(&mut stream, bytes).await?;
    let answer = read_framed(&mut stream).await?;
    let (message, log) = message::parse_answer(&answer, query).map_err(invalid)?;
    if message.id() != query.message.id() {
        return Err(invalid(format!(
            "answer id {} does not match query id {}",
            message.id(),
            query.message.id()
        )));
    }
    Ok((answer, log))
}

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let length = usize::from(stream.read_u16().await?);
    if length == 0 {
        return Err(invalid("empty DNS message"));
    }
    let mut message = vec![0u8; length];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let length = u16::try_from(message.len()).map_err(|_| {
        invalid(format!(
            "DNS message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
            message.len()
        ))
    })?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// One datagram read with its original destination: the `IP_ORIGDSTADDR` /
/// `IPV6_ORIGDSTADDR` control message when the socket asks for it (a transparent
/// proxy socket receiving redirected queries), else `None`.
fn recv_original(
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SocketAddr>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buffer)];
    let mut cmsg = nix::cmsg_space!(nix::libc::sockaddr_in6);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let length = msg.bytes;
    let client = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a)))
                })
        })
        .ok_or_else(|| invalid("datagram without a source address"))?;
    let mut original = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4OrigDstAddr(addr) => {
                let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
                original = Some(SocketAddr::new(ip.into(), u16::from_be(addr.sin_port)));
            }
            ControlMessageOwned::Ipv6OrigDstAddr(addr) => {
                let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
                original = Some(SocketAddr::new(ip.into(), u16::from_be(addr.sin6_port)));
            }
            _ => {}
        }
    }
    Ok((length, client, original))
}

/// Sends a reply to `client` from `from`, the address the client sent its query
/// to: a socket bound to that (non-local) address with `IP_TRANSPARENT`, so the
/// client's connected socket accepts it.
fn send_from(from: SocketAddr, client: SocketAddr, reply: &[u8]) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(from), Type::DGRAM, Some(Protocol::UDP))?;
    if from.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_ip_transparent(true)?;
    socket.bind(&SockAddr::from(from))?;
    socket.send_to(reply, &SockAddr::from(client))?;
    Ok(())
}

/// Serves queries arriving on `socket` until `shutdown` completes. Each query runs
/// as its own task holding one of [`MAX_PENDING_QUERIES`] permits. A query's
/// original destination is the socket's `IP_ORIGDSTADDR` control message when the
/// socket asks for it (the agent's transparent sockets; the answer then goes back
/// from that address), else the socket's own address.
pub async fn serve_udp(
    proxy: Arc<DnsProxy>,
    socket: UdpSocket,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let socket = Arc::new(socket);
    let local = socket.local_addr()?;
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    tokio::pin!(shutdown);
    loop {
        let (length, client, original) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            received = socket.async_io(Interest::READABLE, || recv_original(&socket, &mut buffer)) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!("DNS proxy receive failed: {error}");
                    continue;
                }
            },
        };
        let Some(permit) = proxy.pending_permit() else {
            continue;
        };
        let datagram = buffer[..length].to_vec();
        let proxy = proxy.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let at = original.unwrap_or(local);
            if let Some(reply) = proxy.handle(client, at, &datagram, Transport::Udp).await {
                let sent = if at == local {
                    socket.send_to(&reply, client).await.map(drop)
                } else {
                    send_from(at, client, &reply)
                };
                if let Err(error) = sent {
                    tracing::debug!(%client, "DNS proxy reply failed: {error}");
                }
            }
        });
    }
}

/// Serves DNS over TCP on `listener` until `shutdown` completes: at most
/// [`MAX_TCP_CONNECTIONS`] connections, each closed after [`TCP_IDLE_TIMEOUT`] of
/// silence or on a malformed message.
pub async fn serve_tcp(
    proxy: Arc<DnsProxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!("DNS proxy accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = proxy.connections.clone().try_acquire_owned() else {
            DnsStats::bump(&proxy.stats.over_connection_limit);
            drop(stream);
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(&proxy, stream, client).await;
        });
    }
}

async fn serve_connection(proxy: &DnsProxy, mut stream: TcpStream, client: SocketAddr) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    loop {
        let message = match tokio::time::timeout(TCP_IDLE_TIMEOUT, read_framed(&mut stream)).await {
            Ok(Ok(message)) => message,
            Ok(Err(error)) if error.kind() == io::ErrorKind::InvalidData => {
                DnsStats::bump(&proxy.stats.malformed);
                return;
            }
            // Closed by the client, or silent for too long.
            _ => return,
        };
        let Some(_permit) = proxy.pending_permit() else {
            return;
        };
        let Some(reply) = proxy.handle(client, local, &message, Transport::Tcp).await else {
            return;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}
