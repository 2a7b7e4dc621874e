use super::*;

#[test]
fn parses_a_curl_request() {
    let raw = b"POST /v1/request-landing HTTP/1.1\r\nHost: deathstar.default.svc.cluster.local\r\n\
User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    let head = parse_request_head(raw).expect("parse");
    assert_eq!(head.method, "POST");
    assert_eq!(head.target, "/v1/request-landing");
    assert_eq!(head.version, "HTTP/1.1");
    assert_eq!(
        header(&head.headers, "host"),
        Some("deathstar.default.svc.cluster.local")
    );
    assert_eq!(content_length(&head.headers).expect("length"), 0);
}

#[test]
fn rejects_malformed_requests() {
    for raw in [
        &b"\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET nopath HTTP/1.1\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    ] {
        assert!(
            parse_request_head(raw).is_err(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn content_length_is_validated() {
    let headers = vec![("content-length".to_string(), "abc".to_string())];
    assert!(matches!(content_length(&headers), Err(HttpError::BadContentLength(v)) if v == "abc"));
    let headers = vec![("content-length".to_string(), "99999999".to_string())];
    assert!(matches!(
        content_length(&headers),
        Err(HttpError::BodyTooLarge(99_999_999))
    ));
}

#[test]
fn parses_a_response_and_reads_its_body() {
    let raw = format_response(500, "Internal Server Error", "Panic: deathstar exploded\n");
    let length = head_length(&raw).expect("complete head");
    let head = parse_response_head(&raw[..length]).expect("parse");
    assert_eq!(head.status, 500);
    assert_eq!(head.reason, "Internal Server Error");
    let mut rest = &raw[length + 4..];
    let body = read_body(&mut rest, raw[length..length + 4].to_vec(), 26).expect("body");
    assert_eq!(body, b"Panic: deathstar exploded\n");
}

#[test]
fn rejects_malformed_status_lines() {
    for raw in [
        &b"HTTP/1.1\r\n\r\n"[..],
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 42 Too Small\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        assert!(
            parse_response_head(raw).is_err(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn read_head_limits_size_and_detects_early_close() {
    let endless = vec![b'a'; MAX_HEAD_BYTES + 2048];
    assert!(matches!(
        read_head(&mut endless.as_slice()),
        Err(HttpError::HeadTooLarge)
    ));
    assert!(matches!(
        read_head(&mut &b"GET / HTTP/1.1\r\n"[..]),
        Err(HttpError::IncompleteHead)
    ));
    let (head, rest) = read_head(&mut &b"GET / HTTP/1.1\r\n\r\nbody"[..]).expect("head");
    assert_eq!(head, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(rest, b"body");
}

#[test]
fn splits_urls() {
    assert_eq!(
        split_url("http://10.200.1.10/v1/request-landing").expect("url"),
        (
            "10.200.1.10:80".to_string(),
            "/v1/request-landing".to_string()
        )
    );
    assert_eq!(
        split_url("http://127.0.0.1:8080").expect("url"),
        ("127.0.0.1:8080".to_string(), "/".to_string())
    );
    assert!(split_url("https://x/").is_err());
    assert!(split_url("http:///path").is_err());
}
