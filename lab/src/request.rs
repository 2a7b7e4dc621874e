//! The requests a pod makes (the internal `request` subcommand, run inside the pod's
//! namespace). Each prints one JSON [`Outcome`] line that `traffic` reads.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dns;
use crate::http::{self, HttpError};

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// An HTTP response arrived.
    Http { status: u16, body: String },
    /// A DNS response arrived.
    Dns { rcode: u8, addresses: Vec<IpAddr> },
    /// The request failed; `exit_code` is what curl (or dig, for DNS) would exit with.
    Failed { exit_code: i32, error: String },
}

/// Sends an HTTP request like `curl -s -X METHOD --connect-timeout C --max-time T URL`.
pub fn http_request(
    method: &str,
    url: &str,
    connect_timeout: Duration,
    max_time: Duration,
) -> Outcome {
    match http::send(method, url, connect_timeout, max_time) {
        Ok(reply) => Outcome::Http {
            status: reply.status,
            body: reply.body,
        },
        Err(error) => Outcome::Failed {
            exit_code: curl_exit_code(&error),
            error: error.to_string(),
        },
    }
}

/// The exit code curl uses for a comparable failure.
fn curl_exit_code(error: &HttpError) -> i32 {
    match error {
        HttpError::BadUrl(_) => 3,
        HttpError::Resolve { .. } => 6,
        HttpError::ConnectionRefused | HttpError::ConnectFailed(_) => 7,
        HttpError::Malformed { .. } | HttpError::HeadTooLarge => 8,
        HttpError::ConnectTimeout(_) | HttpError::ReplyTimeout(_) => 28,
        HttpError::IncompleteHead => 52,
        HttpError::BadContentLength(_) | HttpError::BodyTooLarge(_) => 63,
        HttpError::Io(_) => 56,
    }
}

/// Exit code dig uses when no reply arrives.
const DIG_NO_REPLY: i32 = 9;
/// Exit code for a reply that cannot be read.
const DIG_BAD_REPLY: i32 = 10;

/// Sends one DNS query over UDP and waits up to `timeout` for the matching reply.
pub fn dns_request(
    server: SocketAddr,
    name: &str,
    qtype: dns::RecordType,
    timeout: Duration,
) -> Outcome {
    let failed = |exit_code: i32, error: String| Outcome::Failed { exit_code, error };
    let id = query_id();
    let query = match dns::encode_query(id, name, qtype) {
        Ok(query) => query,
        Err(error) => return failed(DIG_BAD_REPLY, error.to_string()),
    };
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = match UdpSocket::bind(bind)
        .and_then(|socket| socket.connect(server).map(|()| socket))
        .and_then(|socket| socket.set_read_timeout(Some(timeout)).map(|()| socket))
    {
        Ok(socket) => socket,
        Err(error) => return failed(DIG_NO_REPLY, format!("cannot reach {server}: {error}")),
    };
    if let Err(error) = socket.send(&query) {
        return failed(DIG_NO_REPLY, format!("sending to {server}: {error}"));
    }
    let mut buffer = vec![0u8; 4096];
    loop {
        let length = match socket.recv(&mut buffer) {
            Ok(length) => length,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return failed(
                    DIG_NO_REPLY,
                    format!("no reply from {server} within {} s", timeout.as_secs()),
                )
            }
            Err(error) => return failed(DIG_NO_REPLY, format!("receiving from {server}: {error}")),
        };
        match dns::parse_response(&buffer[..length]) {
            // A stray datagram with another id is skipped; the timeout still applies.
            Ok(response) if response.id != id => continue,
            Ok(response) => {
                return Outcome::Dns {
                    rcode: response.rcode,
                    addresses: response.addresses,
                }
            }
            Err(error) => {
                return failed(DIG_BAD_REPLY, format!("bad reply from {server}: {error}"))
            }
        }
    }
}

fn query_id() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_round_trips() {
        let outcomes = [
            Outcome::Http {
                status: 200,
                body: "Ship landed\n".to_string(),
            },
            Outcome::Dns {
                rcode: 0,
                addresses: vec!["10.200.1.10".parse().expect("ip")],
            },
            Outcome::Failed {
                exit_code: 28,
                error: "connection timed out after 2 s".to_string(),
            },
        ];
        for outcome in outcomes {
            let json = serde_json::to_string(&outcome).expect("json");
            assert_eq!(
                serde_json::from_str::<Outcome>(&json).expect("parse"),
                outcome
            );
        }
    }

    #[test]
    fn refused_connection_maps_to_curl_exit_7() {
        // Bind and drop a listener to get a local port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("port")
            .port();
        let outcome = http_request(
            "POST",
            &format!("http://127.0.0.1:{port}/v1/request-landing"),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(
            matches!(outcome, Outcome::Failed { exit_code: 7, .. }),
            "{outcome:?}"
        );
    }

    #[test]
    fn dns_query_without_server_times_out() {
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let server = silent.local_addr().expect("address");
        let outcome = dns_request(
            server,
            "deathstar.default.svc.cluster.local",
            dns::RecordType::A,
            Duration::from_millis(200),
        );
        assert!(
            matches!(outcome, Outcome::Failed { exit_code: 9, .. }),
            "{outcome:?}"
        );
    }
}
