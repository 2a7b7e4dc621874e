//! Entry points of the fuzz targets (`fuzz/`) for what the proxies read from the
//! network: `dns_message` reads bytes as a query and as an answer, as the DNS proxy
//! does, and checks that every query it accepts can be refused with its own id.

use hickory_proto::op::{Message, ResponseCode};

use crate::dns::message;

/// Bytes as a DNS query and as the answer to a fixed query. Never panics; a query that
/// parses gets a REFUSED answer that parses back with the query's id and question.
pub fn dns_message(data: &[u8]) {
    if let Ok(query) = message::parse_query(data) {
        let _ = message::request_log(&query);
        let refused = message::refused(&query).expect("a parsed query can be refused");
        let back = Message::from_vec(&refused).expect("the refusal parses");
        assert_eq!(back.id(), query.message.id());
        assert_eq!(back.response_code(), ResponseCode::Refused);
        assert_eq!(back.queries(), query.message.queries());
        let _ = message::parse_answer(data, &query);
    }
    let fixed = fixed_query();
    if let Some(fixed) = &fixed {
        let _ = message::parse_answer(data, fixed);
    }
}

fn fixed_query() -> Option<message::Query> {
    use hickory_proto::op::{MessageType, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut message = Message::new();
    message
        .set_id(1)
        .set_message_type(MessageType::Query)
        .add_query(Query::query(
            Name::from_ascii("api.github.com.").ok()?,
            RecordType::A,
        ));
    message::parse_query(&message.to_vec().ok()?).ok()
}
