//! A small HTTP/1.1 codec over `std::net::TcpStream`: request and response heads,
//! `Content-Length` bodies, one request per connection (`Connection: close`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest request or response head accepted (request line/status line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest body accepted; the demo's bodies are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why an HTTP message could not be read, parsed or exchanged.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("message head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("connection closed before the message head was complete")]
    IncompleteHead,
    #[error("malformed {what}: {line:?}")]
    Malformed { what: &'static str, line: String },
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
    #[error("body of {0} bytes is larger than {MAX_BODY_BYTES}")]
    BodyTooLarge(usize),
    #[error("unsupported URL {0:?}: expected http://HOST[:PORT]/PATH")]
    BadUrl(String),
    #[error("cannot resolve {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("connection timed out after {} s", .0.as_secs())]
    ConnectTimeout(Duration),
    #[error("connection refused")]
    ConnectionRefused,
    #[error("failed to connect: {0}")]
    ConnectFailed(std::io::Error),
    #[error("no reply within {} s", .0.as_secs())]
    ReplyTimeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The head of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

/// The head of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

/// A complete response as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Returns the length of the head (through the blank line), if `buffer` holds one.
pub fn head_length(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
}

/// Reads from `stream` until a full head has arrived; returns the head's bytes and
/// whatever arrived after it.
pub fn read_head(stream: &mut impl Read) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(length) = head_length(&buffer) {
            let rest = buffer.split_off(length);
            return Ok((buffer, rest));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(HttpError::HeadTooLarge);
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(HttpError::IncompleteHead);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn head_lines(head: &[u8]) -> Result<Vec<&str>, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed {
        what: "head (not UTF-8)",
        line: String::from_utf8_lossy(head).into_owned(),
    })?;
    Ok(text
        .split("\r\n")
        .take_while(|line| !line.is_empty())
        .collect())
}

fn parse_headers(lines: &[&str]) -> Result<Vec<(String, String)>, HttpError> {
    lines
        .iter()
        .map(|line| match line.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains(' ') => {
                Ok((name.to_ascii_lowercase(), value.trim().to_string()))
            }
            _ => Err(HttpError::Malformed {
                what: "header",
                line: line.to_string(),
            }),
        })
        .collect()
}

/// Parses a request head (`METHOD TARGET HTTP/1.x` and headers).
pub fn parse_request_head(head: &[u8]) -> Result<RequestHead, HttpError> {
    let lines = head_lines(head)?;
    let first = lines.first().copied().unwrap_or_default();
    let parts: Vec<&str> = first.split(' ').collect();
    let &[method, target, version] = parts.as_slice() else {
        return Err(HttpError::Malformed {
            what: "request line",
            line: first.to_string(),
        });
    };
    let valid_method = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !valid_method || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed {
            what: "request line",
            line: first.to_string(),
        });
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers: parse_headers(&lines[1..])?,
    })
}

/// Parses a response head (`HTTP/1.x STATUS REASON` and headers).
pub fn parse_response_head(head: &[u8]) -> Result<ResponseHead, HttpError> {
    let lines = head_lines(head)?;
    let first = lines.first().copied().unwrap_or_default();
    let mut parts = first.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|code| code.parse::<u16>().ok());
    let (true, Some(status @ 100..=999)) = (version.starts_with("HTTP/1."), status) else {
        return Err(HttpError::Malformed {
            what: "status line",
            line: first.to_string(),
        });
    };
    Ok(ResponseHead {
        status,
        reason: parts.next().unwrap_or_default().to_string(),
        headers: parse_headers(&lines[1..])?,
    })
}

/// The value of a header (names are stored lowercase).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The body length announced by `Content-Length` (0 when absent).
pub fn content_length(headers: &[(String, String)]) -> Result<usize, HttpError> {
    let Some(value) = header(headers, "content-length") else {
        return Ok(0);
    };
    let length: usize = value
        .parse()
        .map_err(|_| HttpError::BadContentLength(value.to_string()))?;
    if length > MAX_BODY_BYTES {
        return Err(HttpError::BodyTooLarge(length));
    }
    Ok(length)
}

/// Reads the rest of a `length`-byte body, of which `already` has arrived.
pub fn read_body(
    stream: &mut impl Read,
    mut already: Vec<u8>,
    length: usize,
) -> Result<Vec<u8>, HttpError> {
    if already.len() < length {
        let mut rest = vec![0u8; length - already.len()];
        stream.read_exact(&mut rest)?;
        already.extend_from_slice(&rest);
    }
    already.truncate(length);
    Ok(already)
}

/// Serialises a response with a text body and `Connection: close`.
pub fn format_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Splits `http://HOST[:PORT]/PATH` into the authority (with port 80 if none) and path.
pub fn split_url(url: &str) -> Result<(String, String), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::BadUrl(url.to_string()));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((with_port, path.to_string()))
}

/// Sends `method url` with an empty body and returns the status and body, like `curl
/// -s -X METHOD --connect-timeout C --max-time T`.
pub fn send(
    method: &str,
    url: &str,
    connect_timeout: Duration,
    total_timeout: Duration,
) -> Result<Reply, HttpError> {
    let started = Instant::now();
    let (authority, path) = split_url(url)?;
    let address: SocketAddr = authority
        .to_socket_addrs()
        .map_err(|error| HttpError::Resolve {
            host: authority.clone(),
            reason: error.to_string(),
        })?
        .next()
        .ok_or_else(|| HttpError::Resolve {
            host: authority.clone(),
            reason: "no address".to_string(),
        })?;
    let mut stream = TcpStream::connect_timeout(&address, connect_timeout).map_err(|error| {
        match error.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                HttpError::ConnectTimeout(connect_timeout)
            }
            std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
            _ => HttpError::ConnectFailed(error),
        }
    })?;
    let remaining = total_timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining))?;
    stream.set_write_timeout(Some(remaining))?;
    let host = authority.strip_suffix(":80").unwrap_or(&authority);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hubble-lab\r\n\
         Accept: */*\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let timed_out = |error: HttpError| match error {
        HttpError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            HttpError::ReplyTimeout(total_timeout)
        }
        other => other,
    };
    stream
        .write_all(request.as_bytes())
        .map_err(|error| timed_out(error.into()))?;
    let (head, rest) = read_head(&mut stream).map_err(timed_out)?;
    let response = parse_response_head(&head)?;
    let body = match header(&response.headers, "content-length") {
        Some(_) => {
            let length = content_length(&response.headers)?;
            read_body(&mut stream, rest, length).map_err(timed_out)?
        }
        None => {
            let mut body = rest;
            stream
                .take((MAX_BODY_BYTES + 1) as u64)
                .read_to_end(&mut body)
                .map_err(|error| timed_out(error.into()))?;
            if body.len() > MAX_BODY_BYTES {
                return Err(HttpError::BodyTooLarge(body.len()));
            }
            body
        }
    };
    Ok(Reply {
        status: response.status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests;
