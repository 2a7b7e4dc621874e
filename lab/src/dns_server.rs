//! The DNS responder of the `coredns` pod: answers A/AAAA queries from a fixed table.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use crate::dns::{self, Answer, AnswerData, DnsError, RecordType, ResponseCode};
use crate::error::{LabError, Result};
use hickory_proto::op::OpCode;
use hickory_proto::rr::DNSClass;

/// TTL of every answer, in seconds.
pub const ANSWER_TTL: u32 = 30;

/// Largest datagram read; queries with EDNS may exceed 512 bytes.
pub const MAX_DATAGRAM: usize = 4096;

/// How long a TCP client may stay silent before its connection is closed (TCP
/// connections are served one at a time).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest chain of aliases followed for one answer (a loop of aliases ends here).
pub const MAX_ALIAS_CHAIN: usize = 8;

/// Names and their addresses, and aliases (CNAME records); names are lowercase without
/// the trailing dot.
#[derive(Debug, Clone, Default)]
pub struct Records {
    entries: BTreeMap<String, Vec<IpAddr>>,
    aliases: BTreeMap<String, String>,
}

impl Records {
    /// Adds an address for `name`.
    pub fn insert(&mut self, name: &str, address: IpAddr) {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.entries.entry(key).or_default().push(address);
    }

    /// Parses `NAME=ADDRESS`.
    pub fn insert_spec(&mut self, spec: &str) -> Result<()> {
        let invalid = |reason: &str| LabError::InvalidConfig {
            what: "DNS record",
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, address) = spec
            .split_once('=')
            .ok_or_else(|| invalid("expected NAME=ADDRESS"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| invalid("the address is not an IP address"))?;
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        self.insert(name, address);
        Ok(())
    }

    /// Parses `NAME=TARGET`: `NAME` is an alias (CNAME) of `TARGET`.
    pub fn insert_alias_spec(&mut self, spec: &str) -> Result<()> {
        let invalid = |reason: &str| LabError::InvalidConfig {
            what: "DNS alias",
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, target) = spec
            .split_once('=')
            .ok_or_else(|| invalid("expected NAME=TARGET"))?;
        let normalize = |name: &str| name.trim_end_matches('.').to_ascii_lowercase();
        let (name, target) = (normalize(name), normalize(target));
        if name.is_empty() || target.is_empty() {
            return Err(invalid("the name and the target must not be empty"));
        }
        if self.entries.contains_key(&name) {
            return Err(invalid("the name already has addresses"));
        }
        dns::parse_name(&target).map_err(|error| invalid(&error.to_string()))?;
        self.aliases.insert(name, target);
        Ok(())
    }

    /// Builds the response to a query message, or an error if it is malformed.
    pub fn answer(&self, message: &[u8]) -> Result<Vec<u8>, DnsError> {
        self.answer_query(&dns::parse_query(message)?)
    }

    /// Builds the response to a query that came over UDP: when the whole answer is
    /// longer than the asker takes (512 bytes, or its EDNS payload size), a response
    /// with the TC bit and no records, so that the asker asks again over TCP.
    pub fn answer_datagram(&self, message: &[u8]) -> Result<Vec<u8>, DnsError> {
        let query = dns::parse_query(message)?;
        let response = self.answer_query(&query)?;
        if response.len() > usize::from(query.udp_payload) {
            return dns::encode_truncated(&query);
        }
        Ok(response)
    }

    fn answer_query(&self, query: &dns::Query) -> Result<Vec<u8>, DnsError> {
        if query.op_code != OpCode::Query {
            return dns::encode_response(query, ResponseCode::NotImp, &[], 0);
        }
        if query.qclass != DNSClass::IN {
            return dns::encode_response(query, ResponseCode::Refused, &[], 0);
        }
        // Aliases first, as a recursive server answers: each CNAME record, then the
        // addresses of the last name of the chain.
        let mut answers = Vec::new();
        let mut name = query.name.clone();
        while let Some(target) = self.aliases.get(&name) {
            if answers.len() >= MAX_ALIAS_CHAIN {
                return dns::encode_response(query, ResponseCode::ServFail, &[], 0);
            }
            answers.push(Answer {
                name: name.clone(),
                data: AnswerData::Alias(target.clone()),
            });
            name = target.clone();
        }
        let Some(addresses) = self.entries.get(&name) else {
            return dns::encode_response(query, ResponseCode::NXDomain, &answers, ANSWER_TTL);
        };
        answers.extend(
            addresses
                .iter()
                .filter(|address| match query.qtype {
                    RecordType::A => address.is_ipv4(),
                    RecordType::AAAA => address.is_ipv6(),
                    _ => false,
                })
                .map(|address| Answer {
                    name: name.clone(),
                    data: AnswerData::Address(*address),
                }),
        );
        dns::encode_response(query, ResponseCode::NoError, &answers, ANSWER_TTL)
    }
}

/// Serves `records` on UDP and TCP `listen` until the process is stopped. Malformed
/// queries get no answer; they are counted and logged. TCP connections (length-
/// prefixed messages, several per connection) are served one at a time, each closed
/// after [`TCP_IDLE_TIMEOUT`] of silence.
pub fn serve(listen: SocketAddr, records: &Records) -> Result<()> {
    let listener = TcpListener::bind(listen).map_err(|error| LabError::Io {
        action: "listening on",
        path: listen.to_string().into(),
        source: error,
    })?;
    let tcp_records = records.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => serve_tcp_connection(stream, &tcp_records),
                Err(error) => eprintln!("accept failed: {error}"),
            }
        }
    });
    let socket = UdpSocket::bind(listen).map_err(|error| LabError::Io {
        action: "listening on",
        path: listen.to_string().into(),
        source: error,
    })?;
    println!(
        "dns listening on {listen} with {} names",
        records.entries.len()
    );
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut malformed: u64 = 0;
    loop {
        let (length, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(error) => {
                eprintln!("receive failed: {error}");
                continue;
            }
        };
        match records.answer_datagram(&buffer[..length]) {
            Ok(response) => {
                if let Err(error) = socket.send_to(&response, peer) {
                    eprintln!("reply to {peer} failed: {error}");
                }
            }
            Err(error) => {
                malformed += 1;
                eprintln!("ignored malformed query from {peer} ({malformed} so far): {error}");
            }
        }
    }
}

/// Answers the queries of one TCP connection until it closes, stays silent for
/// [`TCP_IDLE_TIMEOUT`] or sends a malformed query.
fn serve_tcp_connection(mut stream: TcpStream, records: &Records) {
    if stream.set_read_timeout(Some(TCP_IDLE_TIMEOUT)).is_err() {
        return;
    }
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if stream.read_exact(&mut message).is_err() {
            return;
        }
        let response = match records.answer(&message) {
            Ok(response) => response,
            Err(error) => {
                eprintln!("closed a TCP connection after a malformed query: {error}");
                return;
            }
        };
        let Ok(length) = u16::try_from(response.len()) else {
            return;
        };
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Records {
        let mut records = Records::default();
        records
            .insert_spec("deathstar.default.svc.cluster.local=10.200.1.10")
            .expect("record");
        records
    }

    #[test]
    fn tcp_connections_carry_several_framed_queries() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            serve_tcp_connection(stream, &records());
        });
        let mut client = TcpStream::connect(address).expect("connect");
        for id in [7, 8] {
            let query = dns::encode_query(id, "deathstar.default.svc.cluster.local", RecordType::A)
                .expect("query");
            let mut framed = u16::try_from(query.len())
                .expect("length")
                .to_be_bytes()
                .to_vec();
            framed.extend_from_slice(&query);
            client.write_all(&framed).expect("send");
            let mut length = [0u8; 2];
            client.read_exact(&mut length).expect("length");
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
            client.read_exact(&mut answer).expect("answer");
            let response = dns::parse_response(&answer).expect("parse");
            assert_eq!(response.rcode, 0);
            assert_eq!(
                response.addresses,
                vec!["10.200.1.10".parse::<IpAddr>().expect("ip")]
            );
        }
        drop(client);
        server.join().expect("server");
    }

    #[test]
    fn an_answer_too_long_for_udp_is_truncated_there_and_whole_over_tcp() {
        let mut records = records();
        for host in 0..40u8 {
            records.insert("pool.example", IpAddr::from([203, 0, 113, 100 + host]));
        }
        let query = dns::encode_query(9, "pool.example", RecordType::A).expect("query");
        let whole = records.answer(&query).expect("answer");
        assert!(whole.len() > dns::MAX_UDP_MESSAGE, "{} bytes", whole.len());
        let whole = dns::parse_response(&whole).expect("parse");
        assert_eq!((whole.truncated, whole.addresses.len()), (false, 40));

        let datagram = records.answer_datagram(&query).expect("answer");
        assert!(datagram.len() <= dns::MAX_UDP_MESSAGE);
        let datagram = dns::parse_response(&datagram).expect("parse");
        assert_eq!((datagram.id, datagram.rcode), (9, 0));
        assert_eq!((datagram.truncated, datagram.addresses.len()), (true, 0));

        // A short answer goes over UDP whole.
        let query = dns::encode_query(10, "deathstar.default.svc.cluster.local", RecordType::A)
            .expect("query");
        let short =
            dns::parse_response(&records.answer_datagram(&query).expect("answer")).expect("parse");
        assert_eq!((short.truncated, short.addresses.len()), (false, 1));
    }

    #[test]
    fn answers_known_names_and_nxdomain_otherwise() {
        let records = records();
        let query = dns::encode_query(5, "DEATHSTAR.default.svc.cluster.local.", RecordType::A)
            .expect("query");
        let response =
            dns::parse_response(&records.answer(&query).expect("answer")).expect("parse");
        assert_eq!(response.rcode, 0);
        assert_eq!(
            response.addresses,
            vec!["10.200.1.10".parse::<IpAddr>().expect("ip")]
        );

        let query = dns::encode_query(6, "deathstar.default.svc.cluster.local", RecordType::AAAA)
            .expect("query");
        let response =
            dns::parse_response(&records.answer(&query).expect("answer")).expect("parse");
        assert_eq!((response.rcode, response.addresses.len()), (0, 0));

        let query =
            dns::encode_query(7, "xwing.default.svc.cluster.local", RecordType::A).expect("query");
        let response =
            dns::parse_response(&records.answer(&query).expect("answer")).expect("parse");
        assert_eq!(response.rcode, 3);
    }

    #[test]
    fn an_alias_answers_its_chain_then_the_addresses() {
        let mut records = records();
        records
            .insert_spec("cilium.io=203.0.113.20")
            .expect("record");
        records
            .insert_alias_spec("www.cilium.io=cilium.io.")
            .expect("alias");
        records
            .insert_alias_spec("docs.cilium.io=www.cilium.io")
            .expect("alias");
        let query = dns::encode_query(9, "docs.cilium.io", RecordType::A).expect("query");
        let response =
            dns::parse_response(&records.answer(&query).expect("answer")).expect("parse");
        assert_eq!(response.rcode, 0);
        assert_eq!(response.aliases, ["www.cilium.io", "cilium.io"]);
        assert_eq!(
            response.addresses,
            vec!["203.0.113.20".parse::<IpAddr>().expect("ip")]
        );
        // A loop of aliases is a server failure, not an endless answer.
        records.insert_alias_spec("a.loop=b.loop").expect("alias");
        records.insert_alias_spec("b.loop=a.loop").expect("alias");
        let query = dns::encode_query(10, "a.loop", RecordType::A).expect("query");
        let response =
            dns::parse_response(&records.answer(&query).expect("answer")).expect("parse");
        assert_eq!(response.rcode, 2);
        assert!(records.insert_alias_spec("cilium.io=x.io").is_err());
        assert!(records.insert_alias_spec("noequals").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_an_answer() {
        let records = records();
        assert!(records.answer(b"").is_err());
        assert!(records
            .answer(b"hello, deathstar! this is not dns")
            .is_err());
    }

    #[test]
    fn bad_record_specs_name_the_value() {
        let mut records = Records::default();
        let error = records
            .insert_spec("deathstar=not-an-ip")
            .expect_err("bad ip");
        assert!(error.to_string().contains("deathstar=not-an-ip"), "{error}");
        assert!(records.insert_spec("no-equals").is_err());
        assert!(records.insert_spec("=10.0.0.1").is_err());
    }
}
