//! A deathstar-like backend and a proxy in front of it, on loopback.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proto::accesslog::LogRecord;
use proxy::http::{HttpPolicy, HttpProxy, HttpRuleSpec, Limits, ProxyConfig};
use proxy::{ConnInfo, Decision, PolicyLookup, RecordSink, TcpConnector};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};

pub const HOST: &str = "deathstar.default.svc.cluster.local";
pub const PROXY_PORT: u16 = 15080;
pub const CLIENT_IDENTITY: u32 = 62396;
pub const DEATHSTAR_IDENTITY: u32 = 50122;

/// What the backend saw.
#[derive(Default)]
pub struct BackendLog {
    pub connections: AtomicU64,
    pub requests: Mutex<Vec<String>>,
    /// Bytes of /v1/upload bodies received so far.
    pub uploaded: AtomicU64,
    pub upload_progress: Notify,
    /// /v1/download sends a chunk each time this is notified.
    pub download_next: Notify,
}

/// The backend: `POST /v1/request-landing` -> "Ship landed\n", `PUT
/// /v1/exhaust-port` -> 500, `/v1/upload` counts the body as it streams,
/// `/v1/download` streams a chunk per `download_next`, anything else -> 404.
pub async fn backend() -> (SocketAddr, Arc<BackendLog>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test support");
    let addr = listener.local_addr().expect("test support");
    let log = Arc::new(BackendLog::default());
    let shared = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let log = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(answer(request, log).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

type BackendBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(request: Request<Incoming>, log: Arc<BackendLog>) -> Response<BackendBody> {
    let line = format!("{} {}", request.method(), request.uri());
    log.requests.lock().expect("test support").push(line);
    let text = |status: u16, body: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
            .expect("test support")
    };
    match (request.method().as_str(), request.uri().path()) {
        ("POST", "/v1/request-landing") => text(200, "Ship landed\n"),
        ("PUT", "/v1/exhaust-port") => text(500, "Panic: deathstar exploded\n"),
        ("GET", "/v1/headers") => {
            let mut seen: Vec<String> = request
                .headers()
                .iter()
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
                .collect();
            seen.sort();
            Response::new(Full::new(Bytes::from(seen.join("\n"))).boxed())
        }
        ("POST", "/v1/upload") => {
            let mut body = request.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("test support").into_data() {
                    total += data.len() as u64;
                    log.uploaded.store(total, Ordering::SeqCst);
                    log.upload_progress.notify_one();
                }
            }
            Response::new(Full::new(Bytes::from(total.to_string())).boxed())
        }
        ("GET", "/v1/download") => {
            let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            let log = log.clone();
            tokio::spawn(async move {
                for chunk in 0..4u8 {
                    log.download_next.notified().await;
                    let data = Bytes::from(vec![b'a' + chunk; 64 * 1024]);
                    if sender.send(Ok(Frame::data(data))).await.is_err() {
                        return;
                    }
                }
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
            Response::new(StreamBody::new(stream).boxed())
        }
        _ => text(404, "not found\n"),
    }
}

/// The agent's view in tests: one decision for every connection, changeable.
pub struct TestLookup {
    pub decision: Mutex<Option<Decision>>,
    pub asked: Mutex<Vec<ConnInfo>>,
}

impl TestLookup {
    pub fn new(rules: &[HttpRuleSpec]) -> Arc<TestLookup> {
        let lookup = Arc::new(TestLookup {
            decision: Mutex::new(None),
            asked: Mutex::new(Vec::new()),
        });
        lookup.set(Some(rules));
        lookup
    }

    pub fn set(&self, rules: Option<&[HttpRuleSpec]>) {
        *self.decision.lock().expect("test support") = rules.map(|rules| Decision {
            policy: Arc::new(HttpPolicy::compile(rules).expect("test support")),
            source_identity: CLIENT_IDENTITY,
            destination_identity: DEATHSTAR_IDENTITY,
            chained_ingress: None,
        });
    }

    /// An egress redirect's rules, and the destination's ingress rules chained to it.
    pub fn set_chained(&self, egress: &[HttpRuleSpec], ingress: &[HttpRuleSpec]) {
        *self.decision.lock().expect("test support") = Some(Decision {
            policy: Arc::new(HttpPolicy::compile(egress).expect("test support")),
            source_identity: CLIENT_IDENTITY,
            destination_identity: DEATHSTAR_IDENTITY,
            chained_ingress: Some(Arc::new(
                HttpPolicy::compile(ingress).expect("test support"),
            )),
        });
    }
}

impl PolicyLookup for TestLookup {
    fn http_decision(&self, conn: &ConnInfo) -> Option<Decision> {
        self.asked.lock().expect("test support").push(*conn);
        self.decision.lock().expect("test support").clone()
    }
}

pub fn seed_rule() -> Vec<HttpRuleSpec> {
    vec![HttpRuleSpec {
        method: "POST".into(),
        path: "/v1/request-landing".into(),
        ..HttpRuleSpec::default()
    }]
}

/// Connects straight to the backend through the proxy: the test connector
/// sends every upstream connection to `backend` (the original destination of
/// a loopback connection is the proxy's own address).
pub struct ToBackend(pub SocketAddr);

impl proxy::UpstreamConnector for ToBackend {
    fn connect<'a>(&'a self, _conn: &'a ConnInfo) -> proxy::ConnectFuture<'a> {
        let conn = ConnInfo {
            source: self.0,
            destination: self.0,
            proxy_port: 0,
            ingress: true,
        };
        Box::pin(async move { TcpConnector.connect(&conn).await })
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Arc<HttpProxy>,
    pub lookup: Arc<TestLookup>,
    pub records: mpsc::Receiver<LogRecord>,
    pub backend: Arc<BackendLog>,
    pub stop: Option<oneshot::Sender<()>>,
}

impl Running {
    pub fn records(&mut self) -> Vec<LogRecord> {
        let mut records = Vec::new();
        while let Ok(record) = self.records.try_recv() {
            records.push(record);
        }
        records
    }
}

/// A backend and an ingress proxy with `rules` in front of it.
pub async fn start(rules: &[HttpRuleSpec], limits: Limits) -> Running {
    start_redirect(rules, limits, true).await
}

/// A backend and a proxy of an ingress (`ingress`) or egress redirect in front of it.
pub async fn start_redirect(rules: &[HttpRuleSpec], limits: Limits, ingress: bool) -> Running {
    let (backend_addr, backend) = backend().await;
    let lookup = TestLookup::new(rules);
    let (sink, records) = RecordSink::channel(proxy::RECORD_QUEUE_CAPACITY);
    let config = ProxyConfig {
        proxy_port: PROXY_PORT,
        ingress,
        limits,
    };
    let proxy = Arc::new(HttpProxy::new(
        config,
        lookup.clone(),
        Arc::new(ToBackend(backend_addr)),
        sink,
    ));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test support");
    let addr = listener.local_addr().expect("test support");
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = proxy.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await
    });
    Running {
        addr,
        proxy,
        lookup,
        records,
        backend,
        stop: Some(stop),
    }
}

/// An HTTP/1.1 client connection (keep-alive) to `addr`.
pub async fn client(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::combinators::BoxBody<Bytes, Infallible>>
{
    let stream = TcpStream::connect(addr).await.expect("test support");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("test support");
    tokio::spawn(connection);
    sender
}

pub fn request(method: &str, path: &str, body: &'static str) -> Request<BackendBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("user-agent", "curl/7.81.0")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .expect("test support")
}

pub async fn body_text(response: Response<Incoming>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("test support")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("test support")
}

/// Generous bound for anything a test waits on; never a measured figure.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("test support");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("test support")
}
