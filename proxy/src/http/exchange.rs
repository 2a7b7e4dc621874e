//! One redirected connection, request by request: read a head, ask the policy,
//! answer a denied request `403` itself, pass an allowed one to the original
//! destination over a kept-alive upstream connection, pass the response back,
//! and write the Request and Response records.
//!
//! Heads are parsed in place ([`super::head`]) and passed on as they arrived
//! unless hop-by-hop fields or a rule's edits change them; bodies pass in their
//! own framing ([`super::body`]), a read buffer at a time, both ways, so the
//! proxy never holds a body whatever its size. Pipelined requests wait in the
//! client's buffer and are taken in order. While a request body passes, the
//! upstream is watched: an interim `1xx` (`100 Continue`) goes to the client at
//! once, and an early final response ends the upload (and both connections
//! after it).

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use proto::accesslog::{HttpLog, L7Log, LogRecord, RecordEndpoint, RecordKind, RecordVerdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::body::Body;
use super::head::{self, Framing, HeadError, RequestHead, ResponseHead};
use super::idle::{Deadline, IdleTimeout};
use super::rules::RequestParts;
use super::server::Shared;
use super::stats::ProxyStats;
use crate::{ConnInfo, Decision};

/// The body of a denied request's answer, as Envoy under Cilium sends it.
pub const ACCESS_DENIED_BODY: &str = "Access denied\r\n";

/// Room made in a read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// After answering a request whose body the proxy will not read (denied, refused,
/// or failed upstream) with `connection: close`, it reads and discards what the
/// client still sends for at most LINGER_TIME or LINGER_BYTES before closing, so
/// the client reads the answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// What the records of one request share.
struct RequestLog {
    time: SystemTime,
    started: Instant,
    method: Arc<str>,
    url: Arc<str>,
    protocol: &'static str,
    source_identity: u32,
    destination_identity: u32,
    trace_parent: Option<String>,
}

/// Why an exchange could not finish.
enum Failure {
    /// The client broke the exchange (closed, reset, framing): end quietly.
    Client(String),
    /// The upstream failed before a response reached the client: answer with this
    /// status and reason, then close.
    Upstream(u16, String),
    /// The upstream failed after the response started, or a write to the client
    /// failed: close.
    Broken(String),
    /// No byte either way for IDLE_TIMEOUT: close, counted.
    Idle(String),
}

/// An I/O error on the client side (or while a response streams) as a failure:
/// idle for IDLE_TIMEOUT, or broken.
fn io_failure(context: &str, error: &io::Error) -> Failure {
    let reason = format!("{context}: {error}");
    if error.kind() == io::ErrorKind::TimedOut {
        Failure::Idle(reason)
    } else {
        Failure::Broken(reason)
    }
}

struct Upstream {
    io: IdleTimeout<TcpStream>,
    buf: BytesMut,
}

struct Connection {
    shared: Arc<Shared>,
    conn: ConnInfo,
    client: IdleTimeout<TcpStream>,
    buf: BytesMut,
    upstream: Option<Upstream>,
    request: RequestHead,
    response: ResponseHead,
    /// Heads written anew and the proxy's own answers.
    out: Vec<u8>,
    header_deadline: Deadline,
}

/// Serves one redirected connection until it closes, fails, or `stopped` asks
/// (after the request in progress).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    conn: ConnInfo,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = shared.config.limits;
    let mut connection = Connection {
        client: IdleTimeout::new(stream, limits.idle_timeout),
        buf: BytesMut::with_capacity(READ_CHUNK),
        upstream: None,
        request: RequestHead::default(),
        response: ResponseHead::default(),
        out: Vec::new(),
        header_deadline: Deadline::new(tokio::time::Instant::now() + limits.header_read_timeout),
        shared,
        conn,
    };
    loop {
        match connection.read_request(&mut stopped).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                connection.refuse_head(error).await;
                return;
            }
        }
        match connection.exchange().await {
            Ok(true) if !*stopped.borrow() => {}
            Ok(_) => return,
            Err(Failure::Idle(reason)) => {
                ProxyStats::add(&connection.shared.stats.idle_timeouts);
                tracing::debug!(peer = %connection.conn.source, %reason, "http proxy: connection ended");
                return;
            }
            Err(Failure::Client(reason) | Failure::Broken(reason)) => {
                tracing::debug!(peer = %connection.conn.source, %reason, "http proxy: connection ended");
                return;
            }
            Err(Failure::Upstream(..)) => return,
        }
    }
}

/// Why no request head could be read.
enum HeadFailure {
    Head(HeadError),
    TooLarge,
    Timeout,
    Io(io::Error),
}

impl Connection {
    /// Reads the next request head into the buffer; false: the client closed
    /// between requests or a stop was asked while it was idle.
    async fn read_request(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, HeadFailure> {
        let limits = self.shared.config.limits;
        self.header_deadline
            .set(tokio::time::Instant::now() + limits.header_read_timeout);
        loop {
            if !self.buf.is_empty() {
                match head::parse_request(&self.buf, limits.max_headers, &mut self.request) {
                    // A whole head that arrived in few reads is held to the limit too.
                    Ok(true) if self.request.len > limits.max_header_bytes => {
                        return Err(HeadFailure::TooLarge)
                    }
                    Ok(true) => return Ok(true),
                    Ok(false) if self.buf.len() >= limits.max_header_bytes => {
                        return Err(HeadFailure::TooLarge)
                    }
                    Ok(false) => {}
                    Err(error) => return Err(HeadFailure::Head(error)),
                }
            }
            self.buf.reserve(READ_CHUNK);
            let idle = self.buf.is_empty();
            tokio::select! {
                biased;
                read = self.client.read_buf(&mut self.buf) => match read {
                    Ok(0) => return Ok(false),
                    Ok(_) => {}
                    Err(error) => return Err(HeadFailure::Io(error)),
                },
                () = self.header_deadline.passed() => return Err(HeadFailure::Timeout),
                () = stop_requested(stopped), if idle => return Ok(false),
            }
        }
    }

    /// Answers a head that cannot be taken (400, 431) and counts it; timeouts and
    /// I/O errors are counted and the connection closed.
    async fn refuse_head(&mut self, failure: HeadFailure) {
        let stats = &self.shared.stats;
        let peer = self.conn.source;
        let status = match failure {
            HeadFailure::Head(HeadError::Malformed(reason)) => {
                ProxyStats::add(&stats.malformed_requests);
                tracing::debug!(%peer, %reason, "http proxy: malformed request");
                400
            }
            HeadFailure::Head(HeadError::TooManyFields) | HeadFailure::TooLarge => {
                ProxyStats::add(&stats.headers_too_large);
                tracing::debug!(%peer, "http proxy: request head over MAX_REQUEST_HEADER_BYTES or MAX_REQUEST_HEADERS");
                431
            }
            HeadFailure::Timeout => {
                ProxyStats::add(&stats.header_timeouts);
                tracing::debug!(%peer, "http proxy: no request head within HEADER_READ_TIMEOUT");
                return;
            }
            HeadFailure::Io(error) => {
                if error.kind() == io::ErrorKind::TimedOut {
                    ProxyStats::add(&stats.idle_timeouts);
                }
                tracing::debug!(%peer, %error, "http proxy: connection ended");
                return;
            }
        };
        self.out.clear();
        local_response(&mut self.out, status, "", true);
        let _ = self.client.write_all(&self.out).await;
        self.linger().await;
    }

    /// One request and its response; Ok(true): the connection carries another.
    ///
    /// Records are built after the bytes they describe have been written on (the
    /// head is still in its buffer then), so they add nothing to the latency.
    async fn exchange(&mut self) -> Result<bool, Failure> {
        let decision = self.shared.lookup.http_decision(&self.conn);
        let stamp = Stamp {
            time: SystemTime::now(),
            started: Instant::now(),
            source_identity: decision.as_ref().map_or(0, |d| d.source_identity),
            destination_identity: decision.as_ref().map_or(0, |d| d.destination_identity),
        };
        let (stage_list, edited) = match self.evaluate(decision.as_ref()) {
            Ok(evaluated) => evaluated,
            Err(reason) => return self.malformed(reason).await,
        };
        let stages = stage_list.as_slice();
        let stats = self.shared.stats.clone();
        if !stages.iter().all(|&(_, allowed)| allowed) {
            ProxyStats::add(&stats.requests_denied);
            let verdicts = stage_list.map(|allowed| {
                if allowed {
                    RecordVerdict::Forwarded
                } else {
                    RecordVerdict::Denied
                }
            });
            let answer = Answer {
                verdict: RecordVerdict::Forwarded,
                status: 403,
                body: ACCESS_DENIED_BODY,
            };
            return self
                .answer_unforwarded(stamp, &verdicts, edited.as_ref(), answer)
                .await;
        }
        if let Some(reason) = refused_feature(&self.buf, &self.request) {
            ProxyStats::add(&stats.requests_refused);
            self.request.fields.close = true;
            let verdicts = stage_list.map(|_| RecordVerdict::Error);
            let answer = Answer {
                verdict: RecordVerdict::Error,
                status: 501,
                body: &reason,
            };
            return self
                .answer_unforwarded(stamp, &verdicts, edited.as_ref(), answer)
                .await;
        }
        ProxyStats::add(&stats.requests_forwarded);
        let verdicts = stage_list.map(|_| RecordVerdict::Forwarded);
        let mut log = None;
        let forwarded = self
            .forward(stamp, &verdicts, edited.as_ref(), &mut log)
            .await;
        let log = match log {
            Some(log) => log,
            None => {
                // Failed before the request went: its records go now.
                let (log, fields) = self.request_log(stamp, edited.as_ref());
                self.records(&log, 0, verdicts.as_slice(), fields);
                log
            }
        };
        match forwarded {
            Ok(mut passing) => {
                let fields = std::mem::take(&mut passing.fields);
                let verdicts = stage_list.responses(RecordVerdict::Forwarded);
                self.records(&log, passing.code, verdicts.as_slice(), fields);
                let keep_alive = passing.client_keeps;
                self.pass_response_body(passing).await?;
                Ok(keep_alive)
            }
            Err(Failure::Upstream(status, reason)) => {
                ProxyStats::add(&stats.upstream_errors);
                tracing::debug!(destination = %self.conn.destination, %reason, "http proxy: upstream failed");
                self.upstream = None;
                self.out.clear();
                let body = format!("{reason}\r\n");
                local_response(&mut self.out, status, &body, true);
                let _ = self.client.write_all(&self.out).await;
                let verdicts = stage_list.responses(RecordVerdict::Error);
                self.records(&log, status, verdicts.as_slice(), local_fields(&body));
                self.linger().await;
                Err(Failure::Upstream(status, reason))
            }
            Err(other) => Err(other),
        }
    }

    /// The policy's verdicts on the request in the buffer, and its fields as a
    /// rule edited them (None: unchanged). Err: fields no rule can read.
    fn evaluate(
        &self,
        decision: Option<&Decision>,
    ) -> Result<(Stages<bool>, Option<HeaderMap>), String> {
        let buf = &self.buf[..];
        let request = &self.request;
        let host = head::lossy(request.host(buf));
        let parts = RequestParts {
            method: request.method(buf),
            path: request.path(buf),
            host: &host,
        };
        // The directions whose proxy sees the request, in the order it passes them:
        // the redirect's own, then a chained ingress; each with its verdict.
        let mut stages = Stages {
            list: [(self.conn.ingress, false); 2],
            count: 1,
        };
        let Some(Decision {
            policy,
            chained_ingress,
            ..
        }) = decision
        else {
            return Ok((stages, None));
        };
        // A map of the fields only when a rule reads them.
        let reads =
            policy.reads_headers() || chained_ingress.as_ref().is_some_and(|c| c.reads_headers());
        let mut map = if reads {
            header_map(buf, request)?
        } else {
            HeaderMap::new()
        };
        let verdict = policy.evaluate(parts, &mut map);
        let mut edited = verdict.edits_headers();
        stages.list[0].1 = verdict.allowed();
        if let (true, Some(chained)) = (verdict.allowed(), chained_ingress) {
            let verdict = chained.evaluate(parts, &mut map);
            edited |= verdict.edits_headers();
            stages.list[1] = (true, verdict.allowed());
            stages.count = 2;
        }
        Ok((stages, edited.then_some(map)))
    }

    /// What the records of the request in the buffer share, and its fields.
    fn request_log(
        &self,
        stamp: Stamp,
        edited: Option<&HeaderMap>,
    ) -> (RequestLog, Vec<(String, String)>) {
        let buf = &self.buf[..];
        let request = &self.request;
        let host = head::lossy(request.host(buf));
        let log = RequestLog {
            time: stamp.time,
            started: stamp.started,
            method: Arc::from(request.method(buf)),
            url: Arc::from(["http://", &host, request.path(buf)].concat()),
            protocol: if request.minor == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            source_identity: stamp.source_identity,
            destination_identity: stamp.destination_identity,
            trace_parent: request
                .fields
                .traceparent
                .map(|value| head::text(value.get(buf))),
        };
        let fields = match edited {
            Some(map) => header_pairs(map),
            None => head::record_fields(buf, &request.fields),
        };
        (log, fields)
    }

    /// Answers a request the proxy does not forward; its body is skipped when it
    /// is already in the buffer, else the connection closes after the answer.
    async fn answer_unforwarded(
        &mut self,
        stamp: Stamp,
        verdicts: &Stages<RecordVerdict>,
        edited: Option<&HeaderMap>,
        answer: Answer<'_>,
    ) -> Result<bool, Failure> {
        let mut request_body = Body::new(self.request.framing());
        let after = &self.buf[self.request.len..];
        let taken = request_body.take(after).map_err(Failure::Client)?;
        let keep_alive = self.request.keep_alive() && request_body.done();
        self.out.clear();
        local_response(&mut self.out, answer.status, answer.body, !keep_alive);
        let written = self.client.write_all(&self.out).await;
        let (log, fields) = self.request_log(stamp, edited);
        self.records(&log, 0, verdicts.as_slice(), fields);
        let responses = verdicts.responses(answer.verdict);
        self.records(
            &log,
            answer.status,
            responses.as_slice(),
            local_fields(answer.body),
        );
        written.map_err(|error| io_failure("client write", &error))?;
        if keep_alive {
            self.buf.advance(self.request.len + taken);
        } else {
            self.linger().await;
        }
        Ok(keep_alive)
    }

    /// Sends the request (head and body) upstream and passes the response head
    /// (and what of its body came with it) to the client. The request's records
    /// go once its head is on its way (`log` then holds what they share).
    async fn forward(
        &mut self,
        stamp: Stamp,
        verdicts: &Stages<RecordVerdict>,
        edited: Option<&HeaderMap>,
        log: &mut Option<RequestLog>,
    ) -> Result<Passing, Failure> {
        let head_request = self.request.method(&self.buf) == "HEAD";
        let mut upstream = match self.upstream.take() {
            Some(upstream) if usable(upstream.io.get_ref()) => upstream,
            _ => self.connect().await?,
        };
        // The head, with what of the body is already here, in one write.
        let mut body = Body::new(self.request.framing());
        let len = self.request.len;
        let taken = body
            .take(&self.buf[len..])
            .map_err(|reason| Failure::Client(format!("request body: {reason}")))?;
        let sent = if edited.is_some() || self.request.fields.hop_by_hop {
            self.out.clear();
            self.request.encode(&self.buf, edited, &mut self.out);
            self.out.extend_from_slice(&self.buf[len..len + taken]);
            upstream.io.write_all(&self.out).await
        } else {
            upstream.io.write_all(&self.buf[..len + taken]).await
        };
        sent.map_err(|error| self.upstream_failed("failed", &error))?;
        let (request_log, fields) = self.request_log(stamp, edited);
        self.records(&request_log, 0, verdicts.as_slice(), fields);
        *log = Some(request_log);
        self.buf.advance(len + taken);
        let upload_whole = self.upload(&mut upstream, &mut body).await?;
        self.read_response(&mut upstream).await?;
        let response = &self.response;
        let destination = self.conn.destination;
        let framing = response.framing(head_request).map_err(|error| {
            Failure::Upstream(502, format!("upstream {destination}: {}", error))
        })?;
        let mut response_body = Body::new(framing);
        let len = response.len;
        let taken = response_body.take(&upstream.buf[len..]).map_err(|reason| {
            Failure::Upstream(
                502,
                format!("upstream {destination} response body: {reason}"),
            )
        })?;
        let written = if response.fields.hop_by_hop {
            self.out.clear();
            response.encode(&upstream.buf, &mut self.out);
            self.out.extend_from_slice(&upstream.buf[len..len + taken]);
            self.client.write_all(&self.out).await
        } else {
            self.client.write_all(&upstream.buf[..len + taken]).await
        };
        written.map_err(|error| io_failure("client write", &error))?;
        let fields = head::record_fields(&upstream.buf, &response.fields);
        upstream.buf.advance(len + taken);
        let reusable = upload_whole && framing != Framing::UntilClose;
        Ok(Passing {
            upstream_keeps: reusable && response.keep_alive(),
            client_keeps: reusable && self.request.keep_alive(),
            code: response.code,
            fields,
            upstream,
            body: response_body,
        })
    }

    /// Opens the connection to the original destination within
    /// UPSTREAM_CONNECT_TIMEOUT.
    async fn connect(&self) -> Result<Upstream, Failure> {
        let limits = self.shared.config.limits;
        let timeout = limits.upstream_connect_timeout;
        let destination = self.conn.destination;
        match tokio::time::timeout(timeout, self.shared.upstream.connect(&self.conn)).await {
            Ok(Ok(stream)) => Ok(Upstream {
                io: IdleTimeout::new(stream, limits.idle_timeout),
                buf: BytesMut::with_capacity(READ_CHUNK),
            }),
            Ok(Err(error)) => Err(Failure::Upstream(
                503,
                format!("upstream connect to {destination} failed: {error}"),
            )),
            Err(_) => Err(Failure::Upstream(
                504,
                format!(
                    "upstream connect to {destination} timed out after {timeout:?} \
                     (UPSTREAM_CONNECT_TIMEOUT)"
                ),
            )),
        }
    }

    fn upstream_failed(&self, what: &str, error: &io::Error) -> Failure {
        Failure::Upstream(
            502,
            format!(
                "upstream {} {what} before answering: {error}",
                self.conn.destination
            ),
        )
    }

    /// Passes the rest of the request body upstream, watching the upstream:
    /// interim responses go to the client, a final one ends the upload early.
    /// Returns whether the whole body went.
    async fn upload(&mut self, upstream: &mut Upstream, body: &mut Body) -> Result<bool, Failure> {
        loop {
            if body.done() {
                return Ok(true);
            }
            if !self.buf.is_empty() {
                let taken = body
                    .take(&self.buf)
                    .map_err(|reason| Failure::Client(format!("request body: {reason}")))?;
                upstream
                    .io
                    .write_all(&self.buf[..taken])
                    .await
                    .map_err(|error| self.upstream_failed("failed", &error))?;
                self.buf.advance(taken);
                continue;
            }
            self.buf.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                read = self.client.read_buf(&mut self.buf) => match read {
                    Ok(0) => return Err(Failure::Client("closed in the middle of the request body".to_owned())),
                    Ok(_) => {}
                    Err(error) => return Err(io_failure("request body", &error)),
                },
                ready = upstream.io.get_ref().readable() => {
                    ready.map_err(|error| self.upstream_failed("failed", &error))?;
                    upstream.buf.reserve(READ_CHUNK);
                    match upstream.io.get_ref().try_read_buf(&mut upstream.buf) {
                        Ok(0) => return Err(self.upstream_failed("closed", &io::ErrorKind::UnexpectedEof.into())),
                        Ok(_) => {}
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(error) => return Err(self.upstream_failed("failed", &error)),
                    }
                    if self.interim_responses(upstream).await? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Passes on the interim (`1xx`) responses at the start of the upstream's
    /// buffer; true when a final response head is there (left in the buffer).
    async fn interim_responses(&mut self, upstream: &mut Upstream) -> Result<bool, Failure> {
        let destination = self.conn.destination;
        loop {
            match head::parse_response(&upstream.buf, &mut self.response) {
                Ok(false) if upstream.buf.len() >= self.shared.config.limits.max_header_bytes => {
                    return Err(Failure::Upstream(
                        502,
                        format!("upstream {destination} response head over MAX_REQUEST_HEADER_BYTES"),
                    ))
                }
                Ok(false) => return Ok(false),
                Err(error) => {
                    return Err(Failure::Upstream(
                        502,
                        format!("upstream {destination}: {}", error),
                    ))
                }
                Ok(true) if self.response.code == 101 => {
                    return Err(Failure::Upstream(
                        502,
                        format!("upstream {destination} switched protocols, which the L7 proxy does not carry"),
                    ))
                }
                Ok(true) if self.response.code < 200 => {
                    let len = self.response.len;
                    self.client
                        .write_all(&upstream.buf[..len])
                        .await
                        .map_err(|error| io_failure("client write", &error))?;
                    upstream.buf.advance(len);
                }
                Ok(true) => return Ok(true),
            }
        }
    }

    /// Reads until a final response head is at the start of the upstream's buffer.
    async fn read_response(&mut self, upstream: &mut Upstream) -> Result<(), Failure> {
        loop {
            if !upstream.buf.is_empty() && self.interim_responses(upstream).await? {
                return Ok(());
            }
            upstream.buf.reserve(READ_CHUNK);
            match upstream.io.read_buf(&mut upstream.buf).await {
                Ok(0) => {
                    return Err(self.upstream_failed("closed", &io::ErrorKind::UnexpectedEof.into()))
                }
                Ok(_) => {}
                Err(error) => return Err(self.upstream_failed("failed", &error)),
            }
        }
    }

    /// Passes the rest of the response body; keeps the upstream connection when
    /// it can carry another request.
    async fn pass_response_body(&mut self, passing: Passing) -> Result<(), Failure> {
        let Passing {
            mut upstream,
            mut body,
            upstream_keeps,
            ..
        } = passing;
        while !body.done() {
            upstream.buf.reserve(READ_CHUNK);
            let read = upstream
                .io
                .read_buf(&mut upstream.buf)
                .await
                .map_err(|error| io_failure("upstream response body", &error))?;
            if read == 0 {
                body.closed()
                    .map_err(|reason| Failure::Broken(format!("upstream {reason}")))?;
                break;
            }
            let taken = body
                .take(&upstream.buf)
                .map_err(|reason| Failure::Broken(format!("upstream response body: {reason}")))?;
            self.client
                .write_all(&upstream.buf[..taken])
                .await
                .map_err(|error| io_failure("client write", &error))?;
            upstream.buf.advance(taken);
        }
        if upstream_keeps && upstream.buf.is_empty() {
            self.upstream = Some(upstream);
        }
        Ok(())
    }

    /// After an answer with `connection: close`: stop writing, read and discard
    /// for at most LINGER_TIME or LINGER_BYTES.
    async fn linger(&mut self) {
        let _ = self.client.shutdown().await;
        let mut discarded = 0;
        let mut scratch = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while discarded < LINGER_BYTES {
                match self.client.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => discarded += read,
                }
            }
        })
        .await;
    }

    /// A request whose fields the rules cannot read: 400, counted, closed.
    async fn malformed(&mut self, reason: String) -> Result<bool, Failure> {
        self.refuse_head(HeadFailure::Head(HeadError::Malformed(reason)))
            .await;
        Ok(false)
    }

    fn endpoints(&self, log: &RequestLog) -> (RecordEndpoint, RecordEndpoint) {
        let source = RecordEndpoint {
            ip: self.conn.source.ip(),
            port: self.conn.source.port(),
            identity: log.source_identity,
        };
        let destination = RecordEndpoint {
            ip: self.conn.destination.ip(),
            port: self.conn.destination.port(),
            identity: log.destination_identity,
        };
        (source, destination)
    }

    /// One record per direction (`verdicts`: ingress and verdict, in the order
    /// the records go); a request's when `code` is 0, else a response's. The
    /// fields are cloned only for a chained direction.
    fn records(
        &self,
        log: &RequestLog,
        code: u16,
        verdicts: &[(bool, RecordVerdict)],
        fields: Vec<(String, String)>,
    ) {
        let (source, destination) = self.endpoints(log);
        let (kind, time, latency) = if code == 0 {
            (RecordKind::Request, log.time, None)
        } else {
            let latency = log.started.elapsed();
            (RecordKind::Response, log.time + latency, Some(latency))
        };
        let mut fields = Some(fields);
        for (at, &(ingress, verdict)) in verdicts.iter().enumerate() {
            let headers = if at + 1 == verdicts.len() {
                fields.take().unwrap_or_default()
            } else {
                fields.clone().unwrap_or_default()
            };
            self.shared.records.send(LogRecord {
                time,
                kind,
                verdict,
                ingress,
                proxy_port: self.conn.proxy_port,
                source,
                destination,
                latency,
                l7: L7Log::Http(HttpLog {
                    code: u32::from(code),
                    method: log.method.clone(),
                    url: log.url.clone(),
                    protocol: log.protocol,
                    headers,
                    trace_parent: log.trace_parent.clone(),
                }),
            });
        }
    }
}

/// When a request came and whose it is, for its records.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    time: SystemTime,
    started: Instant,
    source_identity: u32,
    destination_identity: u32,
}

/// One value per direction whose proxy sees the request (the redirect's own, then a
/// chained ingress): (ingress, value).
#[derive(Debug, Clone, Copy)]
struct Stages<T> {
    list: [(bool, T); 2],
    count: usize,
}

impl<T: Copy> Stages<T> {
    fn as_slice(&self) -> &[(bool, T)] {
        &self.list[..self.count]
    }

    fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> Stages<U> {
        Stages {
            list: self.list.map(|(ingress, value)| (ingress, f(value))),
            count: self.count,
        }
    }

    /// The response records' directions: the stages in reverse order, each with `verdict`.
    fn responses<U: Copy>(&self, verdict: U) -> Stages<U> {
        let mut list = self.list.map(|(ingress, _)| (ingress, verdict));
        list[..self.count].reverse();
        Stages {
            list,
            count: self.count,
        }
    }
}

/// An answer the proxy writes itself instead of forwarding.
struct Answer<'a> {
    verdict: RecordVerdict,
    status: u16,
    body: &'a str,
}

/// A response on its way: the head has reached the client, the body follows.
struct Passing {
    upstream: Upstream,
    body: Body,
    upstream_keeps: bool,
    client_keeps: bool,
    code: u16,
    fields: Vec<(String, String)>,
}

/// The connection is still open as far as the runtime knows without a syscall:
/// no readiness since the last read, or a read that would block. A closed or
/// reset upstream (or one that sent bytes nobody asked for) is not reused.
fn usable(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// An answer the proxy writes itself: the status with its standard reason phrase,
/// `text/plain`, the body's length, the date.
fn local_response(out: &mut Vec<u8>, status: u16, body: &str, close: bool) {
    use std::io::Write;
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("");
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\ndate: {}\r\n{}\r\n{body}",
        body.len(),
        httpdate::fmt_http_date(SystemTime::now()),
        if close { "connection: close\r\n" } else { "" },
    );
}

/// The fields of an answer the proxy writes, for the records.
fn local_fields(body: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".to_owned(), "text/plain".to_owned()),
        ("content-length".to_owned(), body.len().to_string()),
    ]
}

/// What the proxy cannot carry, and why: CONNECT tunnels and protocol upgrades
/// (WebSocket, ...). An `h2c` upgrade offer is dropped instead (a server may
/// ignore it) and the request goes on as HTTP/1.1.
fn refused_feature(buf: &[u8], request: &RequestHead) -> Option<String> {
    if request.method(buf) == "CONNECT" {
        return Some("CONNECT is not supported by the L7 proxy\r\n".to_owned());
    }
    let upgrade = request.fields.upgrade?.get(buf);
    if head::tokens(upgrade).all(|p| p.eq_ignore_ascii_case(b"h2c")) {
        return None;
    }
    Some(format!(
        "protocol upgrade to {:?} is not supported by the L7 proxy\r\n",
        String::from_utf8_lossy(upgrade)
    ))
}

/// The request's fields as a map for rules that read them.
fn header_map(buf: &[u8], request: &RequestHead) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(request.fields.list.len());
    for (name, value) in &request.fields.list {
        let name = HeaderName::from_bytes(name.get(buf))
            .map_err(|_| format!("header name {:?}", String::from_utf8_lossy(name.get(buf))))?;
        let value =
            HeaderValue::from_bytes(value.get(buf)).map_err(|_| format!("header {name} value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Completes when the listener asks its connections to stop (or is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}
