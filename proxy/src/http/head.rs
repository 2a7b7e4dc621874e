//! Request and response heads, parsed in place by httparse (hyper's parser) and
//! described by offsets into the read buffer, so a head the proxy does not change
//! is passed on as the bytes it arrived as; one that loses hop-by-hop fields or
//! gets a rule's header edits is written anew.
//!
//! Message framing follows RFC 9112 §6: a request with both `Transfer-Encoding`
//! and `Content-Length`, a request whose last transfer coding is not `chunked`,
//! or conflicting lengths is malformed (the request-smuggling cases).

use std::mem::MaybeUninit;

use http::header::HeaderMap;

use super::server::MAX_REQUEST_HEADERS;

/// A byte range of the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start,
            end: start + part.len(),
        }
    }

    pub(crate) fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start..self.end]
    }

    /// The range as text; httparse admits only visible ASCII (and obs-text in
    /// values), so this is lossless for tokens and targets.
    pub(crate) fn text(self, buf: &[u8]) -> &str {
        std::str::from_utf8(self.get(buf)).unwrap_or("")
    }
}

/// How a message's body ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    #[default]
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// One header field: name and value ranges.
pub(crate) type Field = (Span, Span);

/// What the proxy needs of a head's fields.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// Every field, in order (reused between heads).
    pub(crate) list: Vec<Field>,
    /// Some field is hop-by-hop (RFC 9110 §7.6.1): the head is written anew
    /// without them rather than passed on as it came.
    pub(crate) hop_by_hop: bool,
    /// `Connection: close`.
    pub(crate) close: bool,
    /// `Connection: keep-alive`.
    pub(crate) keep_alive: bool,
    pub(crate) host: Option<Span>,
    pub(crate) upgrade: Option<Span>,
    pub(crate) traceparent: Option<Span>,
    content_length: Option<Result<u64, ()>>,
    /// The last transfer coding is `chunked` (None: no Transfer-Encoding).
    chunked: Option<bool>,
}

/// Why a head cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or fields that break framing; the reason names the part.
    #[error("{0}")]
    Malformed(String),
    /// More header fields than the limit.
    #[error("more than {MAX_REQUEST_HEADERS} header fields (MAX_REQUEST_HEADERS)")]
    TooManyFields,
}

/// A parsed request head.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    /// Length of the head in the buffer (the body, if any, follows).
    pub(crate) len: usize,
    pub(crate) method: Span,
    pub(crate) target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    pub(crate) framing: Framing,
    pub(crate) fields: Fields,
}

/// A parsed response head.
#[derive(Debug, Default)]
pub(crate) struct ResponseHead {
    pub(crate) len: usize,
    pub(crate) code: u16,
    pub(crate) reason: Span,
    pub(crate) minor: u8,
    pub(crate) fields: Fields,
}

/// Names that always describe one hop (Connection among them, so the fields it
/// names are found too). Transfer-Encoding is not among them here: the proxy
/// passes bodies on in their framing.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "http2-settings",
];

fn parse_fields(buf: &[u8], headers: &[httparse::Header<'_>], fields: &mut Fields) {
    fields.list.clear();
    fields.hop_by_hop = false;
    fields.close = false;
    fields.keep_alive = false;
    fields.host = None;
    fields.upgrade = None;
    fields.traceparent = None;
    fields.content_length = None;
    fields.chunked = None;
    for header in headers {
        let name = Span::of(buf, header.name.as_bytes());
        let value = Span::of(buf, header.value);
        fields.list.push((name, value));
        let lower = header.name;
        if HOP_BY_HOP.iter().any(|hop| lower.eq_ignore_ascii_case(hop)) {
            fields.hop_by_hop = true;
        }
        if lower.eq_ignore_ascii_case("content-length") {
            let parsed = content_length(header.value);
            fields.content_length = match (fields.content_length, parsed) {
                (None, parsed) => Some(parsed),
                (Some(Ok(a)), Ok(b)) if a == b => Some(Ok(a)),
                _ => Some(Err(())),
            };
        } else if lower.eq_ignore_ascii_case("transfer-encoding") {
            // A later field's codings follow an earlier one's: the last one decides.
            if let Some(last) = tokens(header.value).last() {
                fields.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if lower.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                fields.close |= token.eq_ignore_ascii_case(b"close");
                fields.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if lower.eq_ignore_ascii_case("host") {
            fields.host.get_or_insert(value);
        } else if lower.eq_ignore_ascii_case("upgrade") {
            fields.upgrade.get_or_insert(value);
        } else if lower.eq_ignore_ascii_case("traceparent") {
            fields.traceparent.get_or_insert(value);
        }
    }
}

/// The comma-separated tokens of a field value, trimmed, empty ones skipped.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|byte| *byte == b',')
        .map(|token| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

/// `Content-Length`: digits, or a list of equal values (`5, 5`).
fn content_length(value: &[u8]) -> Result<u64, ()> {
    let mut length = None;
    for token in tokens(value) {
        if token.is_empty() || token.len() > 19 || !token.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let parsed = std::str::from_utf8(token)
            .ok()
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or(())?;
        match length {
            Some(previous) if previous != parsed => return Err(()),
            _ => length = Some(parsed),
        }
    }
    length.ok_or(())
}

/// Parses a request head at the start of `buf`; Ok(false): not complete yet.
/// At most `max_fields` fields (no more than MAX_REQUEST_HEADERS).
pub(crate) fn parse_request(
    buf: &[u8],
    max_fields: usize,
    head: &mut RequestHead,
) -> Result<bool, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let slots = &mut slots[..max_fields.clamp(1, MAX_REQUEST_HEADERS)];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
        Err(error) => return Err(HeadError::Malformed(format!("request head: {error}"))),
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed("request head: incomplete".to_owned()));
    };
    head.len = len;
    head.method = Span::of(buf, method.as_bytes());
    head.target = Span::of(buf, target.as_bytes());
    head.minor = minor;
    parse_fields(buf, request.headers, &mut head.fields);
    let fields = &head.fields;
    head.framing = match (fields.chunked, fields.content_length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Malformed(
                "request has both Content-Length and Transfer-Encoding".to_owned(),
            ))
        }
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) => {
            return Err(HeadError::Malformed(
                "request's last transfer coding is not chunked".to_owned(),
            ))
        }
        (None, Some(Ok(0))) | (None, None) => Framing::Empty,
        (None, Some(Ok(length))) => Framing::Length(length),
        (None, Some(Err(()))) => {
            return Err(HeadError::Malformed(
                "request has an invalid Content-Length".to_owned(),
            ))
        }
    };
    Ok(true)
}

/// Parses a response head at the start of `buf`; Ok(false): not complete yet.
pub(crate) fn parse_response(buf: &[u8], head: &mut ResponseHead) -> Result<bool, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
        Err(error) => return Err(HeadError::Malformed(format!("response head: {error}"))),
    };
    let (Some(code), Some(minor)) = (response.code, response.version) else {
        return Err(HeadError::Malformed("response head: incomplete".to_owned()));
    };
    head.len = len;
    head.code = code;
    head.reason = response
        .reason
        .map_or(Span::default(), |reason| Span::of(buf, reason.as_bytes()));
    head.minor = minor;
    parse_fields(buf, response.headers, &mut head.fields);
    Ok(true)
}

impl RequestHead {
    pub(crate) fn method<'b>(&self, buf: &'b [u8]) -> &'b str {
        self.method.text(buf)
    }

    /// The request's keep-alive (RFC 9112 §9.3): HTTP/1.1 unless `close`. HTTP/1.0
    /// connections end after one exchange.
    pub(crate) fn keep_alive(&self) -> bool {
        self.minor >= 1 && !self.fields.close
    }

    /// The target's path and query (`/v1/x?y=1`) as Envoy's `:path`: an origin-form
    /// target as it is, the path of an absolute-form one (`/` when it has none).
    pub(crate) fn path<'b>(&self, buf: &'b [u8]) -> &'b str {
        let target = self.target.text(buf);
        if target.starts_with('/') || target == "*" {
            return target;
        }
        match target.split_once("://") {
            Some((_, rest)) => rest.find(['/', '?']).map_or("/", |at| &rest[at..]),
            None => target,
        }
    }

    /// The `Host` field, else the authority of an absolute-form target; empty when neither.
    pub(crate) fn host<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        if let Some(host) = self.fields.host {
            return host.get(buf);
        }
        let target = self.target.text(buf);
        match target.split_once("://") {
            Some((_, rest)) => &rest.as_bytes()[..rest.find(['/', '?']).unwrap_or(rest.len())],
            None => b"",
        }
    }

    /// The body's framing.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// Writes the head without hop-by-hop fields, with `edited`'s fields instead
    /// of the parsed ones when a rule changed them.
    pub(crate) fn encode(&self, buf: &[u8], edited: Option<&HeaderMap>, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.get(buf));
        out.push(b' ');
        out.extend_from_slice(self.target.get(buf));
        out.extend_from_slice(if self.minor == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        match edited {
            None => encode_fields(buf, &self.fields, out),
            Some(map) => {
                let named = connection_named(buf, &self.fields);
                for (name, value) in map {
                    if !stripped(name.as_str().as_bytes(), &named) {
                        push_field(out, name.as_str().as_bytes(), value.as_bytes());
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

impl ResponseHead {
    /// The body's framing for a response to `method` (RFC 9112 §6.3).
    pub(crate) fn framing(&self, head_request: bool) -> Result<Framing, HeadError> {
        if head_request || self.code < 200 || self.code == 204 || self.code == 304 {
            return Ok(Framing::Empty);
        }
        Ok(match (self.fields.chunked, self.fields.content_length) {
            (Some(_), Some(_)) => {
                return Err(HeadError::Malformed(
                    "response has both Content-Length and Transfer-Encoding".to_owned(),
                ))
            }
            (Some(true), None) => Framing::Chunked,
            (Some(false), None) | (None, None) => Framing::UntilClose,
            (None, Some(Ok(0))) => Framing::Empty,
            (None, Some(Ok(length))) => Framing::Length(length),
            (None, Some(Err(()))) => {
                return Err(HeadError::Malformed(
                    "response has an invalid Content-Length".to_owned(),
                ))
            }
        })
    }

    /// The upstream keeps the connection for another request.
    pub(crate) fn keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.fields.keep_alive && !self.fields.close
        } else {
            !self.fields.close
        }
    }

    /// Writes the head without hop-by-hop fields.
    pub(crate) fn encode(&self, buf: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(if self.minor == 0 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(self.code.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.get(buf));
        out.extend_from_slice(b"\r\n");
        encode_fields(buf, &self.fields, out);
    }
}

/// The tokens of the Connection fields: the fields they name are hop-by-hop too.
fn connection_named<'b>(buf: &'b [u8], fields: &Fields) -> Vec<&'b [u8]> {
    fields
        .list
        .iter()
        .filter(|(name, _)| name.get(buf).eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| tokens(value.get(buf)))
        .collect()
}

fn stripped(name: &[u8], named: &[&[u8]]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes()))
        || named.iter().any(|other| name.eq_ignore_ascii_case(other))
}

fn encode_fields(buf: &[u8], fields: &Fields, out: &mut Vec<u8>) {
    let named = if fields.hop_by_hop {
        connection_named(buf, fields)
    } else {
        Vec::new()
    };
    for (name, value) in &fields.list {
        let name = name.get(buf);
        if !(fields.hop_by_hop && stripped(name, &named)) {
            push_field(out, name, value.get(buf));
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The fields of a head for the records: lower-case names, values as text,
/// hop-by-hop fields left out.
pub(crate) fn record_fields(buf: &[u8], fields: &Fields) -> Vec<(String, String)> {
    let named = if fields.hop_by_hop {
        connection_named(buf, fields)
    } else {
        Vec::new()
    };
    fields
        .list
        .iter()
        .filter(|(name, _)| !(fields.hop_by_hop && stripped(name.get(buf), &named)))
        .map(|(name, value)| {
            let mut name = name.text(buf).to_owned();
            name.make_ascii_lowercase();
            (name, text(value.get(buf)))
        })
        .collect()
}

/// A field value as text: as it is when it is UTF-8 (the common case, checked
/// quickly), else with replacement characters.
pub(crate) fn text(value: &[u8]) -> String {
    lossy(value).into_owned()
}

/// Bytes as text, borrowed when they are UTF-8.
pub(crate) fn lossy(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<RequestHead, HeadError> {
        let mut head = RequestHead::default();
        assert!(parse_request(
            text.as_bytes(),
            MAX_REQUEST_HEADERS,
            &mut head
        )?);
        Ok(head)
    }

    #[test]
    fn a_request_head_is_described_by_offsets() {
        let text = "POST http://deathstar/v1/request-landing?x=1 HTTP/1.1\r\nX-Trace: a\r\nContent-Length: 5\r\n\r\nhello";
        let head = request(text).unwrap();
        let buf = text.as_bytes();
        assert_eq!(head.method(buf), "POST");
        assert_eq!(head.path(buf), "/v1/request-landing?x=1");
        assert_eq!(head.host(buf), b"deathstar");
        assert_eq!(head.framing(), Framing::Length(5));
        assert_eq!(&buf[head.len..], b"hello");
        assert!(head.keep_alive());
        assert!(!head.fields.hop_by_hop);
    }

    #[test]
    fn smuggling_shapes_are_malformed() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        ] {
            assert!(
                matches!(request(text), Err(HeadError::Malformed(_))),
                "{text:?}"
            );
        }
        let head = request("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").unwrap();
        assert_eq!(head.framing(), Framing::Length(5));
        let head = request(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.framing(), Framing::Chunked);
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_left_out_when_encoding() {
        let text = "GET / HTTP/1.1\r\nHost: deathstar\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\nHTTP2-Settings: AAMA\r\nX-End-To-End: kept\r\n\r\n";
        let head = request(text).unwrap();
        assert!(head.fields.hop_by_hop);
        let mut out = Vec::new();
        head.encode(text.as_bytes(), None, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nHost: deathstar\r\nX-End-To-End: kept\r\n\r\n"
        );
        let kept = record_fields(text.as_bytes(), &head.fields);
        assert_eq!(
            kept,
            [
                ("host".to_owned(), "deathstar".to_owned()),
                ("x-end-to-end".to_owned(), "kept".to_owned())
            ]
        );
    }

    #[test]
    fn response_framing_follows_the_request_and_the_status() {
        let mut head = ResponseHead::default();
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        assert!(parse_response(text.as_bytes(), &mut head).unwrap());
        assert_eq!(head.framing(false), Ok(Framing::Length(12)));
        assert_eq!(head.framing(true), Ok(Framing::Empty));
        let text = "HTTP/1.0 200 OK\r\n\r\n";
        assert!(parse_response(text.as_bytes(), &mut head).unwrap());
        assert_eq!(head.framing(false), Ok(Framing::UntilClose));
        assert!(!head.keep_alive());
        let text = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        assert!(parse_response(text.as_bytes(), &mut head).unwrap());
        assert_eq!(head.framing(false), Ok(Framing::Empty));
        assert!(!head.keep_alive());
        let mut out = Vec::new();
        head.encode(text.as_bytes(), &mut out);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
    }
}
