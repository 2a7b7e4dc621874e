//! DNS messages of the lab's responder and of its `request dns` client, read and written
//! with hickory-proto. Malformed input is an error naming what is wrong, never a panic.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query as Question};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record};

pub use hickory_proto::op::ResponseCode;
pub use hickory_proto::rr::RecordType;

/// Largest UDP DNS message without EDNS.
pub const MAX_UDP_MESSAGE: usize = 512;

/// Why a DNS message could not be read or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    #[error("a query must have exactly one question, this one has {0}")]
    QuestionCount(usize),
    #[error("the message is a response, not a query")]
    NotAQuery,
    #[error("the message is a query, not a response")]
    NotAResponse,
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("cannot encode the DNS message: {0}")]
    Encode(String),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub op_code: OpCode,
    pub recursion_desired: bool,
    /// The question name, lowercase, without the trailing dot.
    pub name: String,
    pub qtype: RecordType,
    pub qclass: DNSClass,
    /// Largest response the asker takes over UDP: its EDNS payload size, or
    /// [`MAX_UDP_MESSAGE`] without EDNS.
    pub udp_payload: u16,
    /// The question as received, echoed in the response.
    question: Question,
}

/// What one answer record says about the question's name (or a name it led to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    /// An A (IPv4) or AAAA (IPv6) record.
    Address(IpAddr),
    /// A CNAME record pointing at another name.
    Alias(String),
}

/// One answer record: the owner name and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub data: AnswerData,
}

/// A parsed response: its id, response code, the addresses of its A/AAAA answers and
/// the targets of its CNAME answers, in the order they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    /// The header's 4-bit response code.
    pub rcode: u8,
    /// The TC bit: the answer did not fit and must be asked for again over TCP.
    pub truncated: bool,
    pub addresses: Vec<IpAddr>,
    pub aliases: Vec<String>,
}

/// Parses a name written with or without the trailing dot into a fully qualified name.
pub fn parse_name(name: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.contains("..") {
        return Err(invalid("labels must not be empty".to_string()));
    }
    let mut parsed = Name::from_ascii(name).map_err(|error| invalid(error.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// A name as the lab writes it: lowercase, without the trailing dot.
pub fn name_text(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_string(),
        _ => text,
    }
}

/// Builds a standard recursive query for `name` (with or without trailing dot).
pub fn encode_query(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Question::query(parse_name(name)?, qtype));
    encode(&message)
}

/// Parses a query with exactly one question; additional records (EDNS) are ignored.
pub fn parse_query(bytes: &[u8]) -> Result<Query, DnsError> {
    let message = decode(bytes)?;
    if message.message_type() != MessageType::Query {
        return Err(DnsError::NotAQuery);
    }
    let [question] = message.queries() else {
        return Err(DnsError::QuestionCount(message.queries().len()));
    };
    Ok(Query {
        id: message.id(),
        op_code: message.op_code(),
        recursion_desired: message.recursion_desired(),
        name: name_text(question.name()),
        qtype: question.query_type(),
        qclass: question.query_class(),
        udp_payload: message.max_payload(),
        question: question.clone(),
    })
}

/// Builds the response to `query` with `rcode` and `answers` (A for IPv4, AAAA for IPv6,
/// CNAME for aliases), every record with `ttl`.
pub fn encode_response(
    query: &Query,
    rcode: ResponseCode,
    answers: &[Answer],
    ttl: u32,
) -> Result<Vec<u8>, DnsError> {
    let mut message = response_header(query, rcode);
    for answer in answers {
        let data = match &answer.data {
            AnswerData::Address(IpAddr::V4(v4)) => RData::A(A(*v4)),
            AnswerData::Address(IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            AnswerData::Alias(target) => RData::CNAME(CNAME(parse_name(target)?)),
        };
        message.add_answer(Record::from_rdata(parse_name(&answer.name)?, ttl, data));
    }
    encode(&message)
}

/// The response to `query` that says only "truncated, ask again over TCP": the TC bit
/// set and no records, as a server answers over UDP when the whole answer would be
/// longer than the asker takes.
pub fn encode_truncated(query: &Query) -> Result<Vec<u8>, DnsError> {
    let mut message = response_header(query, ResponseCode::NoError);
    message.set_truncated(true);
    encode(&message)
}

fn response_header(query: &Query, rcode: ResponseCode) -> Message {
    let mut message = Message::new();
    message
        .set_id(query.id)
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code)
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired)
        .set_response_code(rcode)
        .add_query(query.question.clone());
    message
}

/// Parses a response, collecting the addresses of its A and AAAA answers and the
/// targets of its CNAME answers.
pub fn parse_response(bytes: &[u8]) -> Result<Response, DnsError> {
    let message = decode(bytes)?;
    if message.message_type() != MessageType::Response {
        return Err(DnsError::NotAResponse);
    }
    let mut addresses = Vec::new();
    let mut aliases = Vec::new();
    for record in message.answers() {
        if record.dns_class() != DNSClass::IN {
            continue;
        }
        match record.data() {
            RData::A(a) => addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => addresses.push(IpAddr::V6(aaaa.0)),
            RData::CNAME(cname) => aliases.push(name_text(&cname.0)),
            _ => {}
        }
    }
    Ok(Response {
        id: message.id(),
        rcode: message.response_code().low(),
        truncated: message.truncated(),
        addresses,
        aliases,
    })
}

fn decode(bytes: &[u8]) -> Result<Message, DnsError> {
    Message::from_vec(bytes).map_err(|error| DnsError::Malformed(error.to_string()))
}

fn encode(message: &Message) -> Result<Vec<u8>, DnsError> {
    message
        .to_vec()
        .map_err(|error| DnsError::Encode(error.to_string()))
}

#[cfg(test)]
mod tests;
