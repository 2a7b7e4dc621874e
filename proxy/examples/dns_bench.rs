//! DNS queries per second through the DNS proxy against the same server asked
//! directly, and the latency the proxy adds (p50/p99), in one run:
//!
//!     cargo run --release -p proxy --example dns_bench -- [--queries N] [--clients C]
//!
//! A small in-process DNS server (hickory-proto) answers every A query with one
//! address on loopback UDP; the proxy allows every name and records every query
//! and answer (the records are drained and counted, as the agent would read them).
//! Throughput: C clients, each sending one query and waiting for its answer, N
//! queries in all. Latency: one client, one query at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proxy::dns::{serve_udp, DnsDecision, DnsPolicy, DnsPolicyLookup, DnsProxy, NoHook};
use proxy::{ConnInfo, RecordSink, RECORD_QUEUE_CAPACITY};
use tokio::net::UdpSocket;

/// As in `hubble-agent`, which runs the proxies.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct AllowAll {
    server: SocketAddr,
    policy: Arc<DnsPolicy>,
}

impl DnsPolicyLookup for AllowAll {
    fn dns_decision(&self, _conn: &ConnInfo) -> Option<DnsDecision> {
        Some(DnsDecision {
            policy: self.policy.clone(),
            source_identity: 1,
            destination_identity: 2,
        })
    }

    fn original_destination(&self, _client: SocketAddr, _local: SocketAddr) -> SocketAddr {
        self.server
    }
}

async fn server() -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let address = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
            let Ok(request) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            let mut answer = Message::new();
            answer
                .set_id(request.id())
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::NoError)
                .add_queries(request.queries().iter().cloned());
            if let Some(question) = request.queries().first() {
                answer.add_answer(Record::from_rdata(
                    question.name().clone(),
                    30,
                    RData::A(A::new(192, 0, 2, 10)),
                ));
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    Ok(address)
}

fn query(id: u16) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii("api.github.com.")?,
            RecordType::A,
        ));
    Ok(message.to_vec()?)
}

/// Sends `count` queries one after the other; returns each round trip.
async fn client(target: SocketAddr, count: usize, first_id: u16) -> anyhow::Result<Vec<Duration>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(target).await?;
    let mut buffer = vec![0u8; 4096];
    let mut times = Vec::with_capacity(count);
    for n in 0..count {
        let id = first_id.wrapping_add(n as u16);
        let bytes = query(id)?;
        let started = Instant::now();
        socket.send(&bytes).await?;
        loop {
            let length =
                tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer)).await??;
            if Message::from_vec(&buffer[..length]).is_ok_and(|m| m.id() == id) {
                break;
            }
        }
        times.push(started.elapsed());
    }
    Ok(times)
}

async fn throughput(target: SocketAddr, queries: usize, clients: usize) -> anyhow::Result<f64> {
    let per_client = queries / clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(client(
            target,
            per_client,
            (c * per_client) as u16,
        )));
    }
    for task in tasks {
        task.await??;
    }
    Ok((per_client * clients) as f64 / started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut queries = 50_000usize;
    let mut clients = 16usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))?;
        match arg.as_str() {
            "--queries" => queries = value.parse()?,
            "--clients" => clients = value.parse()?,
            other => anyhow::bail!("unknown flag {other:?}: use --queries N or --clients C"),
        }
    }
    anyhow::ensure!(
        clients > 0 && queries >= clients,
        "need --queries >= --clients > 0"
    );

    let server = server().await?;
    let (sink, mut records) = RecordSink::channel(RECORD_QUEUE_CAPACITY);
    let record_count = Arc::new(AtomicU64::new(0));
    let counted = record_count.clone();
    tokio::spawn(async move {
        while records.recv().await.is_some() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let lookup = AllowAll {
        server,
        policy: Arc::new(DnsPolicy::allow_all()),
    };
    let proxy = DnsProxy::new(10053, Arc::new(lookup), Arc::new(NoHook), sink.clone());
    let listener = UdpSocket::bind("127.0.0.1:0").await?;
    let proxy_address = listener.local_addr()?;
    tokio::spawn(serve_udp(proxy.clone(), listener, std::future::pending()));

    // Warm up both paths.
    client(server, 200, 0).await?;
    client(proxy_address, 200, 0).await?;

    let direct_qps = throughput(server, queries, clients).await?;
    let proxied_qps = throughput(proxy_address, queries, clients).await?;

    let samples = (queries / 5).max(100);
    let mut direct = client(server, samples, 1).await?;
    let mut proxied = client(proxy_address, samples, 1).await?;
    direct.sort();
    proxied.sort();

    println!("DNS over UDP on loopback, {queries} queries from {clients} clients, then {samples} one at a time");
    println!(
        "  direct:      {direct_qps:>9.0} queries/s   p50 {:>8.1?}  p99 {:>8.1?}",
        percentile(&direct, 0.5),
        percentile(&direct, 0.99)
    );
    println!(
        "  via proxy:   {proxied_qps:>9.0} queries/s   p50 {:>8.1?}  p99 {:>8.1?}",
        percentile(&proxied, 0.5),
        percentile(&proxied, 0.99)
    );
    println!(
        "  proxy/direct throughput ratio {:.2}; added latency p50 {:?}, p99 {:?}",
        proxied_qps / direct_qps,
        percentile(&proxied, 0.5).saturating_sub(percentile(&direct, 0.5)),
        percentile(&proxied, 0.99).saturating_sub(percentile(&direct, 0.99)),
    );
    let stats = proxy.stats();
    println!(
        "  proxy counted {} queries, {} answers, {} records read, {} records dropped",
        proxy::dns::DnsStats::get(&stats.queries),
        proxy::dns::DnsStats::get(&stats.answered),
        record_count.load(Ordering::Relaxed),
        sink.dropped()
    );
    Ok(())
}
