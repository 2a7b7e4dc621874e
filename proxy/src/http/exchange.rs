//! One redirected connection's requests: policy per request, the 403, the
//! upstream connection (opened on the first allowed request, kept alive), and
//! the Request/Response records.
//!
//! Bodies stream both ways as hyper's `Incoming`: the proxy never holds more of
//! a body than hyper's buffers, whatever its size or framing.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proto::accesslog::{HttpLog, L7Log, LogRecord, RecordEndpoint, RecordKind, RecordVerdict};
use std::sync::Arc;
use tokio::sync::Mutex;

use super::rules::RequestParts;
use super::server::Shared;
use super::stats::ProxyStats;
use crate::{ConnInfo, Decision};

/// The body of a denied request's answer, as Envoy under Cilium sends it.
pub const ACCESS_DENIED_BODY: &str = "Access denied\r\n";

/// A response body: the upstream's, streamed, or one the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1); hyper
/// frames each side itself.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The `h2c` upgrade's settings, meaningless once the upgrade is dropped.
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// W3C Trace Context's header, kept on the request's records.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

pub(crate) struct Exchange {
    shared: Arc<Shared>,
    conn: ConnInfo,
    upstream: Mutex<Option<SendRequest<Incoming>>>,
}

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

impl Exchange {
    pub(crate) fn new(shared: Arc<Shared>, conn: ConnInfo) -> Exchange {
        Exchange {
            shared,
            conn,
            upstream: Mutex::new(None),
        }
    }

    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let time = SystemTime::now();
        let decision = self.shared.lookup.http_decision(&self.conn);
        // Taken apart so the rules can read the target while they edit the headers;
        // the Host value is a cheap clone of its shared bytes.
        let (mut head, body) = request.into_parts();
        let host_value = request_host(&head);
        let host = String::from_utf8_lossy(host_value.as_ref().map_or(&[][..], |v| v.as_bytes()));
        let path = head.uri.path_and_query().map_or("/", |path| path.as_str());
        let log = RequestLog {
            time,
            started,
            method: Arc::from(head.method.as_str()),
            url: Arc::from(["http://", &host, path].concat()),
            protocol: protocol_name(head.version),
            source_identity: decision.as_ref().map_or(0, |d| d.source_identity),
            destination_identity: decision.as_ref().map_or(0, |d| d.destination_identity),
            trace_parent: head
                .headers
                .get(TRACEPARENT)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        };
        let parts = RequestParts {
            method: head.method.as_str(),
            path,
            host: &host,
        };
        // The directions whose proxy sees the request, in the order it passes them:
        // the redirect's own, then a chained ingress; each with its verdict.
        let mut stage_list = [(self.conn.ingress, false); 2];
        let mut stage_count = 1;
        match &decision {
            None => {}
            Some(Decision {
                policy,
                chained_ingress,
                ..
            }) => {
                let allowed = policy.evaluate(parts, &mut head.headers).allowed();
                stage_list[0].1 = allowed;
                if let (true, Some(chained)) = (allowed, chained_ingress) {
                    let allowed = chained.evaluate(parts, &mut head.headers).allowed();
                    stage_list[1] = (true, allowed);
                    stage_count = 2;
                }
            }
        }
        let stages = &stage_list[..stage_count];
        let mut request = Request::from_parts(head, body);
        let allowed = stages.iter().all(|&(_, allowed)| allowed);
        let stats = &self.shared.stats;
        if !allowed {
            ProxyStats::add(&stats.requests_denied);
            for &(ingress, allowed) in stages {
                let verdict = if allowed {
                    RecordVerdict::Forwarded
                } else {
                    RecordVerdict::Denied
                };
                self.record_request(&log, verdict, request.headers(), ingress);
            }
            let response = local_response(StatusCode::FORBIDDEN, ACCESS_DENIED_BODY);
            for &(ingress, _) in stages.iter().rev() {
                self.record_response(&log, RecordVerdict::Forwarded, &response, ingress);
            }
            return response;
        }
        if let Some(reason) = refused_feature(&request) {
            ProxyStats::add(&stats.requests_refused);
            let response = local_response(StatusCode::NOT_IMPLEMENTED, &reason);
            for &(ingress, _) in stages {
                self.record_request(&log, RecordVerdict::Error, request.headers(), ingress);
            }
            for &(ingress, _) in stages.iter().rev() {
                self.record_response(&log, RecordVerdict::Error, &response, ingress);
            }
            return response;
        }
        ProxyStats::add(&stats.requests_forwarded);
        for &(ingress, _) in stages {
            self.record_request(&log, RecordVerdict::Forwarded, request.headers(), ingress);
        }
        strip_hop_by_hop(request.headers_mut());
        let (verdict, response) = match self.forward(request).await {
            Ok(mut response) => {
                strip_hop_by_hop(response.headers_mut());
                (RecordVerdict::Forwarded, response.map(Either::Left))
            }
            Err((status, reason)) => {
                ProxyStats::add(&stats.upstream_errors);
                tracing::debug!(destination = %self.conn.destination, %reason, "http proxy: upstream failed");
                (
                    RecordVerdict::Error,
                    local_response(status, &format!("{reason}\r\n")),
                )
            }
        };
        for &(ingress, _) in stages.iter().rev() {
            self.record_response(&log, verdict, &response, ingress);
        }
        response
    }

    /// Sends the request on the kept-alive upstream connection, opening one first
    /// when there is none or it closed.
    async fn forward(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, (StatusCode, String)> {
        let pending = {
            let mut upstream = self.upstream.lock().await;
            let sender = match upstream.as_mut() {
                Some(sender) if !sender.is_closed() => sender,
                _ => upstream.insert(self.connect().await?),
            };
            sender.ready().await.map_err(|error| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "upstream connection to {} failed: {error}",
                        self.conn.destination
                    ),
                )
            })?;
            sender.send_request(request)
        };
        pending.await.map_err(|error| {
            (
                StatusCode::BAD_GATEWAY,
                format!(
                    "upstream {} failed before answering: {error}",
                    self.conn.destination
                ),
            )
        })
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, (StatusCode, String)> {
        let timeout = self.shared.config.limits.upstream_connect_timeout;
        let destination = self.conn.destination;
        let stream =
            match tokio::time::timeout(timeout, self.shared.upstream.connect(&self.conn)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("upstream connect to {destination} failed: {error}"),
                    ))
                }
                Err(_) => {
                    return Err((
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "upstream connect to {destination} timed out after {timeout:?} \
                         (UPSTREAM_CONNECT_TIMEOUT)"
                        ),
                    ))
                }
            };
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("upstream handshake with {destination} failed: {error}"),
                )
            })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%destination, %error, "http proxy: upstream connection ended");
            }
        });
        Ok(sender)
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

    fn record_request(
        &self,
        log: &RequestLog,
        verdict: RecordVerdict,
        headers: &HeaderMap,
        ingress: bool,
    ) {
        let (source, destination) = self.endpoints(log);
        self.shared.records.send(LogRecord {
            time: log.time,
            kind: RecordKind::Request,
            verdict,
            ingress,
            proxy_port: self.conn.proxy_port,
            source,
            destination,
            latency: None,
            l7: L7Log::Http(HttpLog {
                code: 0,
                method: log.method.clone(),
                url: log.url.clone(),
                protocol: log.protocol,
                headers: header_pairs(headers),
                trace_parent: log.trace_parent.clone(),
            }),
        });
    }

    fn record_response<B>(
        &self,
        log: &RequestLog,
        verdict: RecordVerdict,
        response: &Response<B>,
        ingress: bool,
    ) {
        let (source, destination) = self.endpoints(log);
        let latency = log.started.elapsed();
        self.shared.records.send(LogRecord {
            time: log.time + latency,
            kind: RecordKind::Response,
            verdict,
            ingress,
            proxy_port: self.conn.proxy_port,
            source,
            destination,
            latency: Some(latency),
            l7: L7Log::Http(HttpLog {
                code: u32::from(response.status().as_u16()),
                method: log.method.clone(),
                url: log.url.clone(),
                protocol: log.protocol,
                headers: header_pairs(response.headers()),
                trace_parent: log.trace_parent.clone(),
            }),
        });
    }
}

/// A response the proxy writes itself: `text/plain`, the body's length, and
/// the `Date` hyper adds.
fn local_response(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::copy_from_slice(
        body.as_bytes(),
    ))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// What the proxy cannot carry, and why: CONNECT tunnels and protocol upgrades
/// (WebSocket, ...). An `h2c` upgrade offer is dropped instead (a server may
/// ignore it) and the request goes on as HTTP/1.1.
fn refused_feature(request: &Request<Incoming>) -> Option<String> {
    if request.method() == Method::CONNECT {
        return Some("CONNECT is not supported by the L7 proxy\r\n".to_owned());
    }
    let upgrade = request.headers().get(header::UPGRADE)?;
    let protocols = String::from_utf8_lossy(upgrade.as_bytes());
    if protocols
        .split(',')
        .all(|p| p.trim().eq_ignore_ascii_case("h2c"))
    {
        return None;
    }
    Some(format!(
        "protocol upgrade to {protocols:?} is not supported by the L7 proxy\r\n"
    ))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names decides, so the common
    // case costs no lookups by name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Fields named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(HTTP2_SETTINGS);
}

/// Whether `name` is always hop-by-hop (Connection itself among them, so the fields
/// it names are found too).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == HTTP2_SETTINGS
}

/// The request's host: the `Host` header, else the target's authority (a clone of
/// shared bytes, not a copy).
fn request_host(head: &http::request::Parts) -> Option<HeaderValue> {
    if let Some(host) = head.headers.get(header::HOST) {
        return Some(host.clone());
    }
    head.uri
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::try_from(*name).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_stripped() {
        let mut map = headers(&[
            ("host", "deathstar"),
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut map);
        let left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["host", "x-end-to-end"]);
    }

    #[test]
    fn a_message_without_hop_by_hop_fields_is_left_alone() {
        let mut map = headers(&[("host", "deathstar"), ("x-hop", "1"), ("accept", "*/*")]);
        let before = map.clone();
        strip_hop_by_hop(&mut map);
        assert_eq!(map, before);
        let mut map = headers(&[("upgrade", "h2c"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut map);
        assert_eq!(
            map.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["accept"]
        );
    }
}
