//! The parts of `scripts/bench-proxy.sh`, each on one thread:
//!
//!   l7_bench backend LISTEN          a deathstar: POST /v1/request-landing -> "Ship landed\n"
//!   l7_bench proxy LISTEN UPSTREAM   the HTTP proxy with the seed's rule (POST
//!                                    /v1/request-landing) in front of UPSTREAM
//!
//! Both run until killed. The proxy's records are read, as the agent would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use proxy::http::{HttpPolicy, HttpProxy, HttpRuleSpec, ProxyConfig};
use proxy::{
    ConnInfo, ConnectFuture, Decision, PolicyLookup, RecordSink, TcpConnector, UpstreamConnector,
    RECORD_QUEUE_CAPACITY,
};
use tokio::net::TcpListener;

/// As in `hubble-agent`, which runs the proxies.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["backend", listen] => runtime.block_on(backend(listen.parse()?)),
        ["proxy", listen, upstream] => {
            runtime.block_on(run_proxy(listen.parse()?, upstream.parse()?))
        }
        _ => Err(format!(
            "usage: l7_bench backend LISTEN | l7_bench proxy LISTEN UPSTREAM (got {args:?})"
        )
        .into()),
    }
}

async fn backend(listen: SocketAddr) -> Result<(), Error> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                let landing =
                    request.method() == "POST" && request.uri().path() == "/v1/request-landing";
                let (status, body) = if landing {
                    (StatusCode::OK, "Ship landed\n")
                } else {
                    (StatusCode::NOT_FOUND, "not found\n")
                };
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The seed's rule for every connection.
struct SeedRule(Decision);

impl PolicyLookup for SeedRule {
    fn http_decision(&self, _conn: &ConnInfo) -> Option<Decision> {
        Some(self.0.clone())
    }
}

/// On loopback the original destination is the proxy itself: go to the backend.
struct Fixed(SocketAddr);

impl UpstreamConnector for Fixed {
    fn connect<'a>(&'a self, conn: &'a ConnInfo) -> ConnectFuture<'a> {
        let upstream = ConnInfo {
            destination: self.0,
            ..*conn
        };
        Box::pin(async move { TcpConnector.connect(&upstream).await })
    }
}

async fn run_proxy(listen: SocketAddr, upstream: SocketAddr) -> Result<(), Error> {
    let rule = HttpRuleSpec {
        method: "POST".into(),
        path: "/v1/request-landing".into(),
        ..HttpRuleSpec::default()
    };
    let decision = Decision {
        policy: Arc::new(HttpPolicy::compile(&[rule])?),
        source_identity: 62396,
        destination_identity: 50122,
        chained_ingress: None,
    };
    let (records, mut reader) = RecordSink::channel(RECORD_QUEUE_CAPACITY);
    tokio::spawn(async move { while reader.recv().await.is_some() {} });
    let proxy = HttpProxy::new(
        ProxyConfig::new(listen.port(), true),
        Arc::new(SeedRule(decision)),
        Arc::new(Fixed(upstream)),
        records,
    );
    let listener = TcpListener::bind(listen).await?;
    proxy.serve(listener, std::future::pending()).await?;
    Ok(())
}
