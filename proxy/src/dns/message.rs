//! Reading queries and answers with hickory-proto, and what the records say of them.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RData;
use proto::accesslog::DnsLog;

use super::pattern::canonical_name;

/// Where DNS records were observed (Cilium's `dnsSourceProxy`).
pub const OBSERVATION_SOURCE: &str = "proxy";

/// A message the proxy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    #[error("a DNS query must carry exactly one question, this one has {0}")]
    Questions(usize),
    #[error("expected a {expected}, got a {got}")]
    Direction {
        expected: &'static str,
        got: &'static str,
    },
    #[error("cannot encode the DNS message: {0}")]
    Encode(String),
}

/// A query as the proxy needs it.
#[derive(Debug, Clone)]
pub struct Query {
    /// The whole message (to answer REFUSED with its id and question).
    pub message: Message,
    /// The question name, lowercase with the trailing dot.
    pub name: String,
    /// The question type's name (`A`, `AAAA`, ...).
    pub qtype: String,
}

fn kind(message: &Message) -> &'static str {
    match message.message_type() {
        MessageType::Query => "query",
        MessageType::Response => "response",
    }
}

/// Reads a query with exactly one question.
pub fn parse_query(bytes: &[u8]) -> Result<Query, MessageError> {
    let message = Message::from_vec(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if message.message_type() != MessageType::Query {
        return Err(MessageError::Direction {
            expected: "query",
            got: kind(&message),
        });
    }
    let [question] = message.queries() else {
        return Err(MessageError::Questions(message.queries().len()));
    };
    let name = canonical_name(&question.name().to_ascii());
    let qtype = question.query_type().to_string();
    Ok(Query {
        message,
        name,
        qtype,
    })
}

/// The request record's DNS part.
pub fn request_log(query: &Query) -> DnsLog {
    DnsLog {
        query: query.name.clone(),
        observation_source: OBSERVATION_SOURCE.to_string(),
        qtypes: vec![query.qtype.clone()],
        ..Default::default()
    }
}

/// Reads an answer to `query` and what its record says: addresses of A/AAAA records,
/// CNAME targets, the lowest TTL of the address records, the response code, and the
/// types of all answer records.
pub fn parse_answer(bytes: &[u8], query: &Query) -> Result<(Message, DnsLog), MessageError> {
    let message = Message::from_vec(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if message.message_type() != MessageType::Response {
        return Err(MessageError::Direction {
            expected: "response",
            got: kind(&message),
        });
    }
    let mut log = request_log(query);
    log.rcode = u32::from(u16::from(message.response_code()));
    let mut ttl: Option<u32> = None;
    for record in message.answers() {
        log.rrtypes.push(record.record_type().to_string());
        let address = match record.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            RData::CNAME(cname) => {
                log.cnames.push(canonical_name(&cname.0.to_ascii()));
                None
            }
            _ => None,
        };
        if let Some(address) = address {
            log.ips.push(address);
            ttl = Some(ttl.map_or(record.ttl(), |t| t.min(record.ttl())));
        }
    }
    log.ttl = ttl.unwrap_or(0);
    Ok((message, log))
}

/// The answer refusing `query` (REFUSED, as Cilium's proxy answers a denied query).
pub fn refused(query: &Query) -> Result<Vec<u8>, MessageError> {
    error_answer(query, ResponseCode::Refused)
}

/// The answer telling the client the server could not be asked (SERVFAIL).
pub fn server_failure(query: &Query) -> Result<Vec<u8>, MessageError> {
    error_answer(query, ResponseCode::ServFail)
}

fn error_answer(query: &Query, code: ResponseCode) -> Result<Vec<u8>, MessageError> {
    let request = &query.message;
    let mut answer = Message::error_msg(request.id(), request.op_code(), code);
    answer.set_recursion_desired(request.recursion_desired());
    answer.add_queries(request.queries().iter().cloned());
    answer
        .to_vec()
        .map_err(|e| MessageError::Encode(e.to_string()))
}
