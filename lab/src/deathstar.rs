//! The deathstar: the demo's HTTP service on port 80.
//!
//! `POST /v1/request-landing` answers `Ship landed`; `PUT /v1/exhaust-port` answers 500
//! with the panic text the original demo's Go service prints; everything else is 404.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::http::{self, HttpError};

/// Most connections handled at once; the demo sends a few requests at a time, so a
/// connection beyond this is closed at once and counted.
pub const MAX_CONNECTIONS: usize = 64;

/// Read and write timeout of a connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of a successful landing.
pub const LANDED_BODY: &str = "Ship landed\n";

/// Body of the exhaust port answer, like the demo's goroutine panic.
pub const PANIC_BODY: &str = "Panic: deathstar exploded\n\n\
goroutine 1 [running]:\n\
main.HandleGarbage(0x2080c3f50, 0x2, 0x4, 0x425c0, 0x5, 0xa)\n\
\t/code/src/github.com/empire/deathstar/\n\
\ttemp/main.go:9 +0x64\n\
main.main()\n\
\t/code/src/github.com/empire/deathstar/\n\
\ttemp/main.go:5 +0x85\n";

/// Chooses the response to a request: status, reason phrase and body.
pub fn route(method: &str, target: &str) -> (u16, &'static str, &'static str) {
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("POST", "/v1/request-landing") => (200, "OK", LANDED_BODY),
        ("PUT", "/v1/exhaust-port") => (500, "Internal Server Error", PANIC_BODY),
        _ => (404, "Not Found", "404 page not found\n"),
    }
}

/// Serves the deathstar on `listen` until the process is stopped.
pub fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).map_err(|error| LabError::Io {
        action: "listening on",
        path: listen.to_string().into(),
        source: error,
    })?;
    println!("deathstar listening on {listen}");
    let active = Arc::new(AtomicUsize::new(0));
    let rejected = AtomicU64::new(0);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                eprintln!("accept failed: {error}");
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let total = rejected.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!("too many connections ({MAX_CONNECTIONS}); closed one ({total} so far)");
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let active = Arc::clone(&active);
        thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            if let Err(error) = handle(stream) {
                eprintln!("connection from {peer:?}: {error}");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(())
}

fn handle(mut stream: TcpStream) -> Result<(), HttpError> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = stream.peer_addr()?;
    let peer = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let (head, rest) = http::read_head(&mut stream)?;
    let request = match http::parse_request_head(&head) {
        Ok(request) => request,
        Err(error) => {
            stream.write_all(&http::format_response(400, "Bad Request", "bad request\n"))?;
            return Err(error);
        }
    };
    if http::header(&request.headers, "transfer-encoding").is_some() {
        stream.write_all(&http::format_response(
            411,
            "Length Required",
            "send a Content-Length body\n",
        ))?;
        return Ok(());
    }
    let length = http::content_length(&request.headers)?;
    http::read_body(&mut stream, rest, length)?;
    let (status, reason, body) = route(&request.method, &request.target);
    println!("{peer} {} {} -> {status}", request.method, request.target);
    stream.write_all(&http::format_response(status, reason, body))?;
    stream.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_the_demo() {
        assert_eq!(
            route("POST", "/v1/request-landing"),
            (200, "OK", LANDED_BODY)
        );
        let (status, _, body) = route("PUT", "/v1/exhaust-port");
        assert_eq!(status, 500);
        assert!(body.starts_with("Panic: deathstar exploded\n"));
        assert_eq!(route("GET", "/v1/request-landing").0, 404);
        assert_eq!(route("POST", "/v1/request-landing?x=1").0, 200);
        assert_eq!(route("GET", "/").0, 404);
    }

    #[test]
    fn serves_over_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        thread::spawn(move || {
            for stream in listener.incoming().take(3).flatten() {
                let _ = handle(stream);
            }
        });
        let url = format!("http://{address}");
        let timeout = Duration::from_secs(2);
        let landed = http::send(
            "POST",
            &format!("{url}/v1/request-landing"),
            timeout,
            timeout,
        )
        .expect("landing");
        assert_eq!((landed.status, landed.body.as_str()), (200, LANDED_BODY));
        let panic = http::send("PUT", &format!("{url}/v1/exhaust-port"), timeout, timeout)
            .expect("exhaust port");
        assert_eq!((panic.status, panic.body.as_str()), (500, PANIC_BODY));
        let missing =
            http::send("GET", &format!("{url}/nowhere"), timeout, timeout).expect("missing");
        assert_eq!(missing.status, 404);
    }
}
