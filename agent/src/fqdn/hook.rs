//! The DNS proxy's answer hook: an allowed answer with addresses goes into the FQDN
//! cache of the endpoint that asked before the proxy releases it, so flows to the
//! answered addresses carry the name from the first packet on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::accesslog::DnsLog;
use proxy::dns::{AnswerHook, HookFuture};
use proxy::ConnInfo;

use crate::state::AgentState;

/// Longest an answer with new addresses for a `toFQDNs` selector is held while the
/// datapath takes them (Cilium's `--tofqdns-proxy-response-max-delay` plays the same
/// part); after it the answer is released anyway and
/// [`FQDN_ANSWERS_RELEASED_UNPROGRAMMED`] counts it.
pub const MAX_ANSWER_DELAY: Duration = Duration::from_secs(2);

/// Answers released before the datapath had their addresses
/// (`hubble_agent_fqdn_answers_released_unprogrammed_total`).
pub static FQDN_ANSWERS_RELEASED_UNPROGRAMMED: AtomicU64 = AtomicU64::new(0);

/// Records allowed answers in [`AgentState`]'s FQDN cache.
#[derive(Clone)]
pub struct CacheAnswerHook {
    state: Arc<AgentState>,
}

impl CacheAnswerHook {
    pub fn new(state: Arc<AgentState>) -> Self {
        CacheAnswerHook { state }
    }
}

impl AnswerHook for CacheAnswerHook {
    fn allowed_answer<'a>(&'a self, conn: &'a ConnInfo, answer: &'a DnsLog) -> HookFuture<'a> {
        Box::pin(async move {
            // Only local endpoints have a cache; a client the agent does not know
            // (not one of its pods) leaves no names.
            let Some(endpoint) = self.state.endpoint_by_ip(conn.source.ip()) else {
                tracing::debug!(client = %conn.source, "DNS answer for an unknown client");
                return;
            };
            let outcome =
                self.state
                    .record_dns_answer(endpoint.id, &answer.query, &answer.ips, answer.ttl);
            // New addresses of a name toFQDNs selects: their identities and policy
            // entries go into the datapath before the pod has the answer, so its first
            // connection is already allowed.
            if outcome.new_ips.is_empty() || !self.state.fqdn_matcher().selects(&answer.query) {
                return;
            }
            if !self.state.program_fqdn_policy(MAX_ANSWER_DELAY).await {
                FQDN_ANSWERS_RELEASED_UNPROGRAMMED.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    name = %answer.query,
                    "the datapath did not take the answer's addresses within {MAX_ANSWER_DELAY:?}; released it anyway"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use proxy::dns::{serve_udp, DnsDecision, DnsPolicy, DnsPolicyLookup, DnsProxy};
    use proxy::RecordSink;
    use tokio::net::UdpSocket;

    use super::*;
    use crate::endpoints::EndpointEvent;
    use crate::identity::LocalIdentityAllocator;

    struct AllowAll(SocketAddr);

    impl DnsPolicyLookup for AllowAll {
        fn dns_decision(&self, _conn: &ConnInfo) -> Option<DnsDecision> {
            Some(DnsDecision {
                policy: Arc::new(DnsPolicy::allow_all()),
                source_identity: 0,
                destination_identity: 0,
            })
        }

        fn original_destination(&self, _client: SocketAddr, _local: SocketAddr) -> SocketAddr {
            self.0
        }
    }

    /// Answers api.github.com with 192.0.2.10 for 30 s.
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

    #[tokio::test]
    async fn an_answer_names_the_address_for_its_endpoint_before_the_client_has_it() {
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        // The endpoint sits on loopback here, where the test's client sends from.
        let xwing = crate::endpoints::WatchedEndpoint {
            id: 12,
            path: "/eps/default_xwing.yaml".into(),
            spec: crate::endpoints::EndpointSpec {
                name: "xwing".into(),
                namespace: "default".into(),
                labels: [("class".to_string(), "xwing".to_string())]
                    .into_iter()
                    .collect(),
                ipv4: "127.0.0.1".parse().expect("ip"),
                ipv6: None,
                interface: "lxcxwing".into(),
                workloads: Vec::new(),
            },
        };
        state
            .apply_endpoint_event(EndpointEvent::Added(xwing))
            .await
            .expect("added");
        let (sink, _records) = RecordSink::channel(16);
        let proxy = DnsProxy::new(
            15053,
            Arc::new(AllowAll(server().await)),
            Arc::new(CacheAnswerHook::new(state.clone())),
            sink,
        );
        let listener = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(serve_udp(proxy, listener, std::future::pending()));

        let github: std::net::IpAddr = "192.0.2.10".parse().expect("ip");
        assert!(state.fqdn_names_of(12, github).is_empty());
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut query = Message::new();
        query
            .set_id(5)
            .set_message_type(MessageType::Query)
            .add_query(Query::query(
                Name::from_ascii("api.github.com.").expect("name"),
                RecordType::A,
            ));
        client
            .send_to(&query.to_vec().expect("encode"), address)
            .await
            .expect("send");
        let mut buffer = vec![0u8; 4096];
        tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buffer))
            .await
            .expect("answered in time")
            .expect("received");
        // The name was in the cache when the answer left the proxy.
        assert_eq!(state.fqdn_names_of(12, github), vec!["api.github.com"]);
        let records = state.fqdn_records();
        assert_eq!(records[0].fqdn, "api.github.com.");
        assert_eq!(records[0].ttl, 30);
    }
}
