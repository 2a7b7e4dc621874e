//! The DNS proxy's records become the flows `hubble observe` prints as upstream:
//! a real query through `proxy::dns` on loopback, its records parsed by
//! `observer::parser::l7` and printed by `hubble`'s compact printer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hubble_cli::printer::{Output, Printer, PrinterOptions};
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use proxy::dns::{
    serve_udp, DnsDecision, DnsPolicy, DnsPolicyLookup, DnsProxy, DnsRuleSpec, NoHook,
};
use proxy::{ConnInfo, RecordSink};
use tokio::net::UdpSocket;

struct Lookup {
    server: SocketAddr,
    policy: Arc<DnsPolicy>,
}

impl DnsPolicyLookup for Lookup {
    fn dns_decision(&self, _conn: &ConnInfo) -> Option<DnsDecision> {
        Some(DnsDecision {
            policy: self.policy.clone(),
            source_identity: 0,
            destination_identity: 0,
        })
    }

    fn original_destination(&self, _client: SocketAddr, _local: SocketAddr) -> SocketAddr {
        self.server
    }
}

/// Answers every A query with 192.0.2.10, TTL 30.
async fn server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = socket.local_addr().expect("address");
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
                .add_queries(request.queries().iter().cloned());
            if let Some(question) = request.queries().first() {
                answer.add_answer(Record::from_rdata(
                    question.name().clone(),
                    30,
                    RData::A(A::new(192, 0, 2, 10)),
                ));
            }
            let _ = socket
                .send_to(&answer.to_vec().expect("encode"), peer)
                .await;
        }
    });
    address
}

async fn ask(proxy: SocketAddr, name: &str) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.connect(proxy).await.expect("connect");
    let mut query = Message::new();
    query
        .set_id(77)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
    socket
        .send(&query.to_vec().expect("encode"))
        .await
        .expect("send");
    let mut buffer = vec![0u8; 4096];
    let length = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
        .await
        .expect("an answer in time")
        .expect("receive");
    Message::from_vec(&buffer[..length]).expect("an answer")
}

#[tokio::test]
async fn dns_records_print_as_upstream_hubble_prints_them() {
    let server = server().await;
    let policy = DnsPolicy::compile(&[DnsRuleSpec {
        match_name: Some("api.github.com".into()),
        ..Default::default()
    }])
    .expect("compiles");
    let (sink, mut records) = RecordSink::channel(16);
    let proxy = DnsProxy::new(
        15053,
        Arc::new(Lookup {
            server,
            policy: Arc::new(policy),
        }),
        Arc::new(NoHook),
        sink,
    );
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = socket.local_addr().expect("address");
    tokio::spawn(serve_udp(proxy, socket, std::future::pending()));

    assert_eq!(
        ask(address, "api.github.com.").await.response_code(),
        ResponseCode::NoError
    );
    assert_eq!(
        ask(address, "cilium.io.").await.response_code(),
        ResponseCode::Refused
    );

    let parser = observer::parser::Parser::new(
        "node1",
        ebpf_events::clock::KtimeClock::with_offset_ns(0),
        Default::default(),
    );
    let mut out = Vec::new();
    {
        let mut printer = Printer::new(
            PrinterOptions {
                output: Output::Compact,
                ..PrinterOptions::default()
            },
            &mut out,
            None::<Vec<u8>>,
        );
        for _ in 0..3 {
            let record = records.recv().await.expect("a record");
            let flow = parser.parse_log_record(&record);
            let response = GetFlowsResponse {
                node_name: flow.node_name.clone(),
                time: flow.time,
                response_types: Some(ResponseTypes::Flow(flow)),
            };
            printer
                .write_get_flows_response(&response)
                .expect("printed");
        }
        printer.close().expect("closed");
    }
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].ends_with("dns-request proxy FORWARDED (DNS Query api.github.com. A)"),
        "{text}"
    );
    assert!(
        lines[1].ends_with(
            "dns-response proxy FORWARDED (DNS Answer \"192.0.2.10\" TTL: 30 (Proxy api.github.com. A))"
        ),
        "{text}"
    );
    assert!(
        lines[2].ends_with("dns-request proxy DROPPED (DNS Query cilium.io. A)"),
        "{text}"
    );
}
