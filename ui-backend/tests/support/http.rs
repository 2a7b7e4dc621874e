//! A small HTTP/1.1 client over a TCP socket: plain GETs and a Server-Sent Events reader.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends `GET path` and returns the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to hubble-ui");
    let mut reader = Response::start(stream, addr, path).await;
    let mut body = Vec::new();
    while let Some(chunk) = reader.chunk().await {
        body.extend_from_slice(&chunk);
    }
    (reader.status, String::from_utf8(body).expect("utf-8 body"))
}

/// `GET path` as JSON, asserting status 200.
pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// A response being read: status, then the body chunk by chunk.
pub struct Response {
    pub status: u16,
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<usize>,
}

impl Response {
    /// Sends the request on `stream` and reads the head of the response.
    pub async fn start(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Self {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut chunked = false;
        let mut length = None;
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("header line");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if lower == "transfer-encoding: chunked" {
                chunked = true;
            }
            if let Some(n) = lower.strip_prefix("content-length:") {
                length = n.trim().parse().ok();
            }
        }
        Self {
            status,
            reader,
            chunked,
            remaining: length,
        }
    }

    /// The next piece of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        if self.chunked {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut data = vec![0; size + 2];
            self.reader.read_exact(&mut data).await.ok()?;
            data.truncate(size);
            return Some(data);
        }
        let mut data = vec![0; 64 * 1024];
        let limit = self.remaining.unwrap_or(data.len()).min(data.len());
        if limit == 0 {
            return None;
        }
        let n = self.reader.read(&mut data[..limit]).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= n;
        }
        data.truncate(n);
        Some(data)
    }
}

/// Reads `update` messages from `/api/events`.
pub struct EventReader {
    response: Response,
    buffer: String,
}

impl EventReader {
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to hubble-ui");
        let response = Response::start(stream, addr, path).await;
        assert_eq!(response.status, 200, "GET {path}");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next update message, or `None` if none comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                let data: String = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data).expect("update is JSON"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
