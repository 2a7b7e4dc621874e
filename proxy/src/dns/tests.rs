//! The DNS proxy over real sockets on loopback, in front of a small DNS server.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use hickory_proto::op::{Message, MessageType, OpCode, Query as Question, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proto::accesslog::{DnsTransport, LogRecord, RecordKind, RecordVerdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::RecordSink;

const GITHUB: &str = "192.0.2.10";
const EDGE: &str = "192.0.2.30";

/// The server's answer to a query: api.github.com A, www.example CNAME edge.example
/// with its A, NXDOMAIN for anything else.
fn server_answer(query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries().first()?.clone();
    let mut answer = Message::new();
    answer
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .add_query(question.clone());
    let name = question.name().to_ascii().to_ascii_lowercase();
    let a = |name: &str, ip: &str| {
        Record::from_rdata(
            Name::from_ascii(name).expect("name"),
            30,
            RData::A(A(ip.parse().expect("ip"))),
        )
    };
    match name.as_str() {
        "api.github.com." => {
            answer.add_answer(a("api.github.com.", GITHUB));
        }
        "www.example." => {
            answer.add_answer(Record::from_rdata(
                Name::from_ascii("www.example.").expect("name"),
                300,
                RData::CNAME(CNAME(Name::from_ascii("edge.example.").expect("name"))),
            ));
            let mut edge = a("edge.example.", EDGE);
            edge.set_ttl(20);
            answer.add_answer(edge);
        }
        _ => {
            answer.set_response_code(ResponseCode::NXDomain);
        }
    }
    answer.to_vec().ok()
}

/// A DNS server on UDP and TCP at one loopback address; counts the queries it got.
async fn start_server() -> (SocketAddr, Arc<AtomicU64>) {
    // The UDP port the kernel picks may be taken for TCP (another test's connection):
    // pick again.
    let mut attempts = 0;
    let (udp, tcp, address) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let address = udp.local_addr().expect("address");
        match TcpListener::bind(address).await {
            Ok(tcp) => break (udp, tcp, address),
            Err(e) if attempts < 20 => {
                attempts += 1;
                eprintln!("{address} taken for TCP ({e}); another port");
            }
            Err(e) => panic!("bind tcp: {e}"),
        }
    };
    let count = Arc::new(AtomicU64::new(0));
    let udp_count = count.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((length, peer)) = udp.recv_from(&mut buffer).await {
            udp_count.fetch_add(1, Ordering::Relaxed);
            if let Some(answer) = server_answer(&buffer[..length]) {
                let _ = udp.send_to(&answer, peer).await;
            }
        }
    });
    let tcp_count = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            tcp_count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let Ok(length) = stream.read_u16().await else {
                    return;
                };
                let mut query = vec![0u8; usize::from(length)];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                if let Some(answer) = server_answer(&query) {
                    let _ = stream.write_u16(answer.len() as u16).await;
                    let _ = stream.write_all(&answer).await;
                }
            });
        }
    });
    (address, count)
}

/// Allows `*.github.com` and `www.example` from identity 100; the server is fixed.
struct Lookup {
    server: SocketAddr,
    policy: Arc<DnsPolicy>,
}

impl DnsPolicyLookup for Lookup {
    fn dns_decision(&self, _conn: &ConnInfo) -> Option<DnsDecision> {
        Some(DnsDecision {
            policy: self.policy.clone(),
            source_identity: 100,
            destination_identity: 200,
        })
    }

    fn original_destination(&self, _client: SocketAddr, _local: SocketAddr) -> SocketAddr {
        self.server
    }
}

/// Records each allowed answer after a pause, so a test can tell whether the client's
/// answer waited for it.
#[derive(Default)]
struct Hook {
    answers: Mutex<Vec<DnsLog>>,
    done: AtomicBool,
}

impl AnswerHook for Arc<Hook> {
    fn allowed_answer<'a>(&'a self, _conn: &'a ConnInfo, answer: &'a DnsLog) -> HookFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.answers.lock().expect("lock").push(answer.clone());
            self.done.store(true, Ordering::SeqCst);
        })
    }
}

struct Harness {
    proxy: Arc<DnsProxy>,
    udp: SocketAddr,
    tcp: SocketAddr,
    records: mpsc::Receiver<LogRecord>,
    hook: Arc<Hook>,
    server_queries: Arc<AtomicU64>,
    _stop: watch::Sender<bool>,
}

async fn harness() -> Harness {
    let (server, server_queries) = start_server().await;
    let policy = DnsPolicy::compile(&[
        DnsRuleSpec {
            match_pattern: Some("*.github.com".into()),
            ..Default::default()
        },
        DnsRuleSpec {
            match_name: Some("www.example".into()),
            ..Default::default()
        },
    ])
    .expect("rules compile");
    let (sink, records) = RecordSink::channel(64);
    let hook = Arc::new(Hook::default());
    let proxy = DnsProxy::new(
        15053,
        Arc::new(Lookup {
            server,
            policy: Arc::new(policy),
        }),
        Arc::new(hook.clone()),
        sink,
    );
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let udp_address = udp.local_addr().expect("address");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_address = tcp.local_addr().expect("address");
    let (stop, stopped) = watch::channel(false);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(serve_udp(proxy.clone(), udp, until(stopped.clone())));
    tokio::spawn(serve_tcp(proxy.clone(), tcp, until(stopped)));
    Harness {
        proxy,
        udp: udp_address,
        tcp: tcp_address,
        records,
        hook,
        server_queries,
        _stop: stop,
    }
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true)
        .add_query(Question::query(
            Name::from_ascii(name).expect("name"),
            qtype,
        ));
    message.to_vec().expect("encode")
}

async fn ask_udp(proxy: SocketAddr, bytes: &[u8]) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.connect(proxy).await.expect("connect");
    socket.send(bytes).await.expect("send");
    let mut buffer = vec![0u8; 4096];
    let length = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
        .await
        .ok()?
        .expect("receive");
    Some(Message::from_vec(&buffer[..length]).expect("an answer"))
}

async fn ask_tcp(proxy: SocketAddr, bytes: &[u8]) -> Message {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream.write_u16(bytes.len() as u16).await.expect("write");
    stream.write_all(bytes).await.expect("write");
    let length = stream.read_u16().await.expect("length");
    let mut answer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut answer).await.expect("answer");
    Message::from_vec(&answer).expect("an answer")
}

fn ips(message: &Message) -> Vec<IpAddr> {
    message
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn allowed_query_is_forwarded_recorded_and_hooked_before_release() {
    let mut h = harness().await;
    let answer = ask_udp(h.udp, &query(41, "API.github.com.", RecordType::A))
        .await
        .expect("answered");
    // The hook ran (and finished) before the client got the answer.
    assert!(h.hook.done.load(Ordering::SeqCst));
    assert_eq!(answer.id(), 41);
    assert_eq!(ips(&answer), vec![GITHUB.parse::<IpAddr>().expect("ip")]);

    let request = h.records.recv().await.expect("request record");
    assert_eq!(
        (request.kind, request.verdict),
        (RecordKind::Request, RecordVerdict::Forwarded)
    );
    assert_eq!(
        (request.source.identity, request.destination.identity),
        (100, 200)
    );
    assert_eq!(request.proxy_port, 15053);
    let dns = request.dns().expect("dns").clone();
    assert_eq!(dns.query, "api.github.com.");
    assert_eq!(dns.qtypes, vec!["A".to_string()]);
    assert_eq!(dns.observation_source, "proxy");
    assert!(dns.ips.is_empty());

    let response = h.records.recv().await.expect("response record");
    assert_eq!(
        (response.kind, response.verdict),
        (RecordKind::Response, RecordVerdict::Forwarded)
    );
    assert!(response.latency.is_some());
    let dns = response.dns().expect("dns");
    assert_eq!(dns.ips, vec![GITHUB.parse::<IpAddr>().expect("ip")]);
    assert_eq!((dns.ttl, dns.rcode), (30, 0));
    assert_eq!(dns.rrtypes, vec!["A".to_string()]);
    assert_eq!(dns.transport, DnsTransport::Udp);
    assert_eq!(
        h.hook.answers.lock().expect("lock")[0].query,
        "api.github.com."
    );
}

#[tokio::test]
async fn cname_chains_record_aliases_and_the_lowest_address_ttl() {
    let mut h = harness().await;
    let answer = ask_udp(h.udp, &query(7, "www.example", RecordType::A))
        .await
        .expect("answered");
    assert_eq!(ips(&answer), vec![EDGE.parse::<IpAddr>().expect("ip")]);
    let _request = h.records.recv().await.expect("request");
    let response = h.records.recv().await.expect("response");
    let dns = response.dns().expect("dns");
    assert_eq!(dns.cnames, vec!["edge.example.".to_string()]);
    assert_eq!(dns.rrtypes, vec!["CNAME".to_string(), "A".to_string()]);
    assert_eq!(dns.ttl, 20);
}

#[tokio::test]
async fn denied_query_is_refused_and_never_forwarded() {
    let mut h = harness().await;
    let answer = ask_udp(h.udp, &query(9, "cilium.io", RecordType::A))
        .await
        .expect("answered");
    assert_eq!(answer.response_code(), ResponseCode::Refused);
    assert_eq!(answer.id(), 9);
    assert_eq!(answer.queries().len(), 1);
    let request = h.records.recv().await.expect("request record");
    assert_eq!(
        (request.kind, request.verdict),
        (RecordKind::Request, RecordVerdict::Denied)
    );
    assert_eq!(request.dns().expect("dns").query, "cilium.io.");
    assert_eq!(h.server_queries.load(Ordering::Relaxed), 0);
    assert_eq!(DnsStats::get(&h.proxy.stats().denied), 1);
    assert!(h.hook.answers.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn nxdomain_is_recorded_without_the_hook() {
    let mut h = harness().await;
    let answer = ask_udp(h.udp, &query(3, "nowhere.github.com", RecordType::AAAA))
        .await
        .expect("answered");
    assert_eq!(answer.response_code(), ResponseCode::NXDomain);
    let _request = h.records.recv().await.expect("request");
    let response = h.records.recv().await.expect("response");
    let dns = response.dns().expect("dns");
    assert_eq!((dns.rcode, dns.ips.len()), (3, 0));
    assert_eq!(dns.qtypes, vec!["AAAA".to_string()]);
    assert!(h.hook.answers.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn tcp_queries_are_served_too() {
    let mut h = harness().await;
    let answer = ask_tcp(h.tcp, &query(11, "api.github.com", RecordType::A)).await;
    assert_eq!(ips(&answer), vec![GITHUB.parse::<IpAddr>().expect("ip")]);
    let request = h.records.recv().await.expect("request");
    assert_eq!(request.verdict, RecordVerdict::Forwarded);
    let response = h.records.recv().await.expect("response");
    for record in [&request, &response] {
        let dns = record.dns().expect("dns");
        assert_eq!(dns.transport, DnsTransport::Tcp, "{record:?}");
    }
    let refused = ask_tcp(h.tcp, &query(12, "cilium.io", RecordType::A)).await;
    assert_eq!(refused.response_code(), ResponseCode::Refused);
}

#[tokio::test]
async fn malformed_datagrams_are_counted_and_dropped() {
    let h = harness().await;
    assert!(ask_udp(h.udp, b"certainly not dns").await.is_none());
    // A response sent to the proxy is not a query either.
    let mut response = query(5, "api.github.com", RecordType::A);
    response[2] |= 0x80;
    assert!(ask_udp(h.udp, &response).await.is_none());
    assert_eq!(DnsStats::get(&h.proxy.stats().malformed), 2);
    assert_eq!(h.server_queries.load(Ordering::Relaxed), 0);
    // The proxy still answers.
    assert!(ask_udp(h.udp, &query(6, "api.github.com", RecordType::A))
        .await
        .is_some());
}

#[test]
fn no_rules_allow_nothing_and_star_allows_everything() {
    let none = DnsPolicy::compile(&[]).expect("compiles");
    assert!(!none.allows("api.github.com"));
    assert!(DnsPolicy::allow_all().allows("api.github.com."));
    let error = DnsPolicy::compile(&[DnsRuleSpec {
        match_pattern: Some("(.*)".into()),
        ..Default::default()
    }])
    .expect_err("a regex is not a pattern");
    assert!(error.to_string().contains("(.*)"), "{error}");
}

/// Binds the proxy's own query to 127.0.0.3, as the agent binds the client's address.
struct BoundLookup(Lookup);

impl DnsPolicyLookup for BoundLookup {
    fn dns_decision(&self, conn: &ConnInfo) -> Option<DnsDecision> {
        self.0.dns_decision(conn)
    }

    fn original_destination(&self, client: SocketAddr, local: SocketAddr) -> SocketAddr {
        self.0.original_destination(client, local)
    }

    fn prepare_upstream(&self, _conn: &ConnInfo, socket: &socket2::Socket) -> std::io::Result<()> {
        socket.bind(&socket2::SockAddr::from(SocketAddr::from((
            [127, 0, 0, 3],
            0,
        ))))
    }
}

#[tokio::test]
async fn upstream_queries_leave_from_the_socket_the_lookup_prepared() {
    // A server that answers over UDP and TCP and notes where each query came from.
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let server = udp.local_addr().expect("address");
    let tcp = TcpListener::bind(server).await.expect("bind tcp");
    let peers = Arc::new(Mutex::new(Vec::<IpAddr>::new()));
    let udp_peers = peers.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((length, peer)) = udp.recv_from(&mut buffer).await {
            udp_peers.lock().expect("lock").push(peer.ip());
            if let Some(answer) = server_answer(&buffer[..length]) {
                let _ = udp.send_to(&answer, peer).await;
            }
        }
    });
    let tcp_peers = peers.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = tcp.accept().await {
            tcp_peers.lock().expect("lock").push(peer.ip());
            let Ok(length) = stream.read_u16().await else {
                continue;
            };
            let mut query = vec![0u8; usize::from(length)];
            if stream.read_exact(&mut query).await.is_err() {
                continue;
            }
            if let Some(answer) = server_answer(&query) {
                let _ = stream.write_u16(answer.len() as u16).await;
                let _ = stream.write_all(&answer).await;
            }
        }
    });
    let (sink, _records) = RecordSink::channel(64);
    let proxy = DnsProxy::new(
        15053,
        Arc::new(BoundLookup(Lookup {
            server,
            policy: Arc::new(DnsPolicy::allow_all()),
        })),
        Arc::new(NoHook),
        sink,
    );
    let proxy_udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let proxy_udp_address = proxy_udp.local_addr().expect("address");
    let proxy_tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_tcp_address = proxy_tcp.local_addr().expect("address");
    tokio::spawn(serve_udp(proxy.clone(), proxy_udp, std::future::pending()));
    tokio::spawn(serve_tcp(proxy, proxy_tcp, std::future::pending()));

    let answer = ask_udp(
        proxy_udp_address,
        &query(21, "api.github.com", RecordType::A),
    )
    .await
    .expect("answer");
    assert_eq!(ips(&answer), vec![GITHUB.parse::<IpAddr>().expect("ip")]);
    let answer = ask_tcp(
        proxy_tcp_address,
        &query(22, "api.github.com", RecordType::A),
    )
    .await;
    assert_eq!(ips(&answer), vec![GITHUB.parse::<IpAddr>().expect("ip")]);
    let from = IpAddr::from([127, 0, 0, 3]);
    assert_eq!(*peers.lock().expect("lock"), [from, from]);
}
