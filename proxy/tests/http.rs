//! The HTTP proxy with real sockets on loopback: a deathstar-like backend, the
//! proxy in front of it, clients speaking HTTP/1.1.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use proto::accesslog::{RecordKind, RecordVerdict};
use proxy::http::{HttpRuleSpec, Limits, ACCESS_DENIED_BODY};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

#[tokio::test]
async fn the_seed_rule_lands_ships_and_denies_the_exhaust_port() {
    let mut running = start(&seed_rule(), Limits::default()).await;
    let mut client = client(running.addr).await;

    let response = client
        .send_request(request("POST", "/v1/request-landing", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body_text(response).await, "Ship landed\n");

    let response = client
        .send_request(request("PUT", "/v1/exhaust-port", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["content-length"], "15");
    assert!(response.headers().contains_key("date"));
    assert_eq!(body_text(response).await, ACCESS_DENIED_BODY);
    assert_eq!(ACCESS_DENIED_BODY, "Access denied\r\n");

    // The deathstar never saw the PUT.
    assert_eq!(
        *running.backend.requests.lock().unwrap(),
        vec!["POST /v1/request-landing".to_owned()]
    );
    let stats = running.proxy.snapshot();
    assert_eq!((stats.requests_forwarded, stats.requests_denied), (1, 1));

    let records = running.records();
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            let http = r.http().unwrap();
            (r.kind, r.verdict, &*http.method, &*http.url, http.code)
        })
        .collect();
    let landing = "http://deathstar.default.svc.cluster.local/v1/request-landing";
    let exhaust = "http://deathstar.default.svc.cluster.local/v1/exhaust-port";
    assert_eq!(
        summary,
        vec![
            (
                RecordKind::Request,
                RecordVerdict::Forwarded,
                "POST",
                landing,
                0
            ),
            (
                RecordKind::Response,
                RecordVerdict::Forwarded,
                "POST",
                landing,
                200
            ),
            (
                RecordKind::Request,
                RecordVerdict::Denied,
                "PUT",
                exhaust,
                0
            ),
            (
                RecordKind::Response,
                RecordVerdict::Forwarded,
                "PUT",
                exhaust,
                403
            ),
        ]
    );
    for record in &records {
        assert_eq!(record.http().unwrap().protocol, "HTTP/1.1");
        assert_eq!((record.proxy_port, record.ingress), (PROXY_PORT, true));
        assert_eq!(record.source.identity, CLIENT_IDENTITY);
        assert_eq!(record.destination.identity, DEATHSTAR_IDENTITY);
        assert_eq!(record.destination.port, running.addr.port());
        assert_eq!(
            record.latency.is_some(),
            record.kind == RecordKind::Response
        );
    }
    let request_headers = &records[0].http().unwrap().headers;
    assert!(request_headers.contains(&("user-agent".into(), "curl/7.81.0".into())));
    assert!(records[1]
        .http()
        .unwrap()
        .headers
        .iter()
        .any(|(name, _)| name == "content-length"));
}

#[tokio::test]
async fn an_egress_redirect_chained_to_the_destinations_ingress_rules_enforces_and_records_both() {
    let mut running = start_redirect(&seed_rule(), Limits::default(), false).await;
    // The client may POST and PUT under /v1/; the deathstar only takes landings.
    let egress = [
        HttpRuleSpec {
            method: "POST".into(),
            path: "/v1/.*".into(),
            ..HttpRuleSpec::default()
        },
        HttpRuleSpec {
            method: "PUT".into(),
            path: "/v1/.*".into(),
            ..HttpRuleSpec::default()
        },
    ];
    running.lookup.set_chained(&egress, &seed_rule());
    let mut client = client(running.addr).await;
    let mut status = Vec::new();
    for (method, path) in [
        ("POST", "/v1/request-landing"),
        ("PUT", "/v1/exhaust-port"),
        ("GET", "/v1/"),
    ] {
        let response = client
            .send_request(request(method, path, ""))
            .await
            .unwrap();
        status.push(response.status().as_u16());
        let _ = body_text(response).await;
    }
    assert_eq!(status, [200, 403, 403]);
    assert_eq!(
        *running.backend.requests.lock().unwrap(),
        vec!["POST /v1/request-landing".to_owned()]
    );
    let records: Vec<_> = running
        .records()
        .iter()
        .map(|r| {
            let http = r.http().unwrap();
            (
                http.method.to_string(),
                r.kind,
                r.ingress,
                r.verdict,
                http.code,
            )
        })
        .collect();
    use RecordKind::{Request as Req, Response as Resp};
    use RecordVerdict::{Denied, Forwarded};
    let row = |m: &str, k, i, v, c| (m.to_owned(), k, i, v, c);
    assert_eq!(
        records,
        [
            // Allowed by both: egress, then ingress; the response back through both.
            row("POST", Req, false, Forwarded, 0),
            row("POST", Req, true, Forwarded, 0),
            row("POST", Resp, true, Forwarded, 200),
            row("POST", Resp, false, Forwarded, 200),
            // Allowed at egress, denied by the deathstar's ingress rules.
            row("PUT", Req, false, Forwarded, 0),
            row("PUT", Req, true, Denied, 0),
            row("PUT", Resp, true, Forwarded, 403),
            row("PUT", Resp, false, Forwarded, 403),
            // Denied at egress: the ingress proxy never sees it.
            row("GET", Req, false, Denied, 0),
            row("GET", Resp, false, Forwarded, 403),
        ]
    );
}

#[tokio::test]
async fn keep_alive_carries_many_requests_on_one_upstream_connection_and_policy_changes_apply_to_the_next(
) {
    let mut running = start(&seed_rule(), Limits::default()).await;
    let mut client = client(running.addr).await;
    for _ in 0..5 {
        let response = client
            .send_request(request("POST", "/v1/request-landing", "x"))
            .await
            .unwrap();
        assert_eq!(body_text(response).await, "Ship landed\n");
        let response = client
            .send_request(request("PUT", "/v1/exhaust-port", ""))
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        body_text(response).await;
    }
    assert_eq!(running.backend.connections.load(Ordering::SeqCst), 1);

    // The policy is asked per request: `[{}]` now lets the PUT through on the same connection...
    running.lookup.set(Some(&[HttpRuleSpec::default()]));
    let response = client
        .send_request(request("PUT", "/v1/exhaust-port", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(body_text(response).await, "Panic: deathstar exploded\n");
    // ... and no L7 policy at all denies.
    running.lookup.set(None);
    let response = client
        .send_request(request("POST", "/v1/request-landing", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    body_text(response).await;
    assert_eq!(running.records().len(), 24);
    let asked = running.lookup.asked.lock().unwrap();
    assert_eq!(asked.len(), 12);
    assert!(asked
        .iter()
        .all(|conn| conn.destination == running.addr && conn.proxy_port == PROXY_PORT));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let running = start(&seed_rule(), Limits::default()).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let one =
        format!("POST /v1/request-landing HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n");
    let two = format!("PUT /v1/exhaust-port HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n");
    let three =
        format!("POST /v1/request-landing HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(format!("{one}{two}{three}").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let statuses: Vec<_> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answer[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "403", "200"], "{answer}");
    assert_eq!(answer.matches("Ship landed\n").count(), 2);
    assert_eq!(answer.matches(ACCESS_DENIED_BODY).count(), 1);
}

#[tokio::test]
async fn chunked_bodies_stream_through_without_being_held() {
    let running = start(&[HttpRuleSpec::default()], Limits::default()).await;
    let mut client = client(running.addr).await;

    // Upload: each chunk is sent only after the backend received the previous
    // one, so a proxy that waited for the whole body would never finish.
    let (chunks, receiver) =
        tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver)).boxed();
    let upload = hyper::Request::builder()
        .method("POST")
        .uri("/v1/upload")
        .header("host", HOST)
        .body(body)
        .unwrap();
    let pending = tokio::spawn(client.send_request(upload));
    let backend = running.backend.clone();
    const CHUNK: usize = 1 << 20;
    for sent in 1..=8u64 {
        chunks
            .send(Ok(Frame::data(Bytes::from(vec![7u8; CHUNK]))))
            .await
            .unwrap();
        timeout(PATIENCE, async {
            while backend.uploaded.load(Ordering::SeqCst) < sent * CHUNK as u64 {
                backend.upload_progress.notified().await;
            }
        })
        .await
        .expect("the backend received the chunk before the body ended");
    }
    drop(chunks);
    let response = timeout(PATIENCE, pending).await.unwrap().unwrap().unwrap();
    assert_eq!(body_text(response).await, (8 * CHUNK).to_string());

    // Download: the backend sends each chunk only when told, after the client
    // received the previous one.
    let mut client = support::client(running.addr).await;
    let response = client
        .send_request(request("GET", "/v1/download", ""))
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("transfer-encoding")
        .is_some_and(|te| te == "chunked"));
    let mut body = response.into_body();
    for chunk in 0..4u8 {
        running.backend.download_next.notify_one();
        let mut received = 0;
        while received < 64 * 1024 {
            let frame = timeout(PATIENCE, body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let data = frame.into_data().unwrap();
            assert!(data.iter().all(|byte| *byte == b'a' + chunk));
            received += data.len();
        }
    }
    assert!(timeout(PATIENCE, body.frame()).await.unwrap().is_none());
}

#[tokio::test]
async fn header_match_edits_reach_the_backend() {
    let rules: Vec<HttpRuleSpec> = serde_yaml::from_str(
        "- headerMatches:\n  - {name: x-token, value: sith, mismatch: REPLACE}\n",
    )
    .unwrap();
    let running = start(&rules, Limits::default()).await;
    let mut client = client(running.addr).await;
    let mut edited = request("GET", "/v1/headers", "");
    edited
        .headers_mut()
        .insert("x-token", "jedi".parse().unwrap());
    let response = client.send_request(edited).await.unwrap();
    let seen = body_text(response).await;
    assert!(seen.contains("x-token: sith"), "{seen}");
    assert!(!seen.contains("jedi"), "{seen}");
}

#[tokio::test]
async fn upgrades_and_connect_are_refused_naming_them() {
    let running = start(&[HttpRuleSpec::default()], Limits::default()).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let upgrade = format!(
        "GET /chat HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let mut answer = String::new();
    timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("protocol upgrade to \"websocket\" is not supported by the L7 proxy\r\n"),
        "{answer}"
    );
    assert!(running.backend.requests.lock().unwrap().is_empty());
    assert_eq!(running.proxy.snapshot().requests_refused, 1);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_400_and_431_and_are_counted() {
    let running = start(&seed_rule(), Limits::default()).await;
    for (sent, expected) in [
        ("GARBAGE\r\n\r\n".to_owned(), "HTTP/1.1 400 Bad Request\r\n"),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_owned(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(70 * 1024)
            ),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-Many: 1\r\n".repeat(101)
            ),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
    ] {
        let mut stream = TcpStream::connect(running.addr).await.unwrap();
        stream.write_all(sent.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = timeout(PATIENCE, stream.read_to_end(&mut answer))
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(expected), "{sent:.40} -> {answer}");
    }
    // A head over the limit that arrives whole in one segment is refused too.
    let limits = Limits {
        max_header_bytes: 1024,
        ..Limits::default()
    };
    let small = start(&seed_rule(), limits).await;
    let mut stream = TcpStream::connect(small.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    stream.write_all(big.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert_eq!(small.proxy.snapshot().headers_too_large, 1);
    // Still serving.
    let mut client = client(running.addr).await;
    let response = client
        .send_request(request("POST", "/v1/request-landing", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stats = running.proxy.snapshot();
    assert_eq!(
        (stats.malformed_requests, stats.headers_too_large),
        (2, 2),
        "{stats:?}"
    );
    assert!(running.backend.requests.lock().unwrap().len() == 1);
}

#[tokio::test]
async fn a_slowloris_client_is_closed_after_the_header_timeout_while_others_are_served() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let running = start(&seed_rule(), limits).await;
    let mut slow = TcpStream::connect(running.addr).await.unwrap();
    slow.write_all(format!("POST /v1/request-landing HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        // One byte of a never-ending header every 100 ms until the proxy closes.
        let mut sent = 0usize;
        loop {
            if slow.write_all(b"x").await.is_err() {
                return sent;
            }
            sent += 1;
            let mut byte = [0u8; 1];
            match timeout(Duration::from_millis(100), slow.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return sent,
                _ => {}
            }
        }
    });
    // Others are served while the slow client drips.
    let mut client = client(running.addr).await;
    for _ in 0..10 {
        let response = client
            .send_request(request("POST", "/v1/request-landing", ""))
            .await
            .unwrap();
        assert_eq!(body_text(response).await, "Ship landed\n");
    }
    let sent = timeout(PATIENCE, dripping)
        .await
        .expect("the slow client is closed")
        .unwrap();
    assert!(sent > 0);
    assert_eq!(running.proxy.snapshot().header_timeouts, 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_counted() {
    let limits = Limits {
        max_connections: 4,
        ..Limits::default()
    };
    let running = start(&seed_rule(), limits).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut client = client(running.addr).await;
        let response = client
            .send_request(request("POST", "/v1/request-landing", ""))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        open.push(client);
    }
    let mut extra = TcpStream::connect(running.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = timeout(PATIENCE, extra.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed at accept");
    assert_eq!(running.proxy.snapshot().connections_refused, 1);
    drop(open);
}

#[tokio::test]
async fn a_response_that_stalls_for_the_idle_timeout_is_closed_and_counted() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let running = start(&[HttpRuleSpec::default()], limits).await;
    let mut client = client(running.addr).await;
    // The backend sends the head and then nothing until told: the proxy waits for
    // the body for IDLE_TIMEOUT, then closes.
    let response = client
        .send_request(request("GET", "/v1/download", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let ended = timeout(PATIENCE, body.frame())
        .await
        .expect("closed in time");
    assert!(!matches!(ended, Some(Ok(_))), "no data: {ended:?}");
    let stats = running.proxy.snapshot();
    assert_eq!(stats.idle_timeouts, 1, "{stats:?}");
}

#[tokio::test]
async fn expect_100_continue_passes_the_interim_answer_before_the_body() {
    let running = start(&[HttpRuleSpec::default()], Limits::default()).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let head = format!(
        "POST /v1/upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The client sends the body only after the backend's 100 reached it through the proxy.
    let mut interim = [0u8; 25];
    timeout(PATIENCE, stream.read_exact(&mut interim))
        .await
        .expect("the interim answer arrives")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let mut answer = String::new();
    timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n5"), "{answer}");
}
