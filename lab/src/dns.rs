//! A minimal DNS message codec (RFC 1035): queries with one question, responses with
//! A/AAAA answers. Every read is bounds-checked; malformed input is an error, never a
//! panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest encoded name (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Most compression pointers followed while reading one name; more means a loop.
pub const MAX_POINTER_JUMPS: usize = 16;
/// Largest UDP DNS message without EDNS.
pub const MAX_UDP_MESSAGE: usize = 512;

/// Record type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;

const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_AUTHORITATIVE: u16 = 0x0400;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;
const OPCODE_MASK: u16 = 0x7800;

/// Response codes used by the responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormatError = 1,
    NameError = 3,
    NotImplemented = 4,
    Refused = 5,
}

/// Why a DNS message could not be read or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message of {0} bytes is shorter than the 12-byte header")]
    TooShort(usize),
    #[error("message ends at offset {offset} while reading {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("label of {len} bytes at offset {offset} is longer than 63")]
    LabelTooLong { len: usize, offset: usize },
    #[error("name at offset {0} is longer than 255 bytes")]
    NameTooLong(usize),
    #[error("reserved label type 0x{kind:02x} at offset {offset}")]
    BadLabelType { kind: u8, offset: usize },
    #[error("compression pointer at offset {offset} to {target} does not point backwards")]
    BadPointer { offset: usize, target: usize },
    #[error("more than 16 compression pointers in one name")]
    PointerLoop,
    #[error("a query must have exactly one question, this one has {0}")]
    QuestionCount(u16),
    #[error("the message is a response, not a query")]
    NotAQuery,
    #[error("the message is a query, not a response")]
    NotAResponse,
    #[error("invalid name {0:?}: labels must be 1 to 63 bytes and the name at most 255")]
    InvalidName(String),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    /// The question name, lowercase, dot-separated, without the trailing dot; bytes
    /// outside printable ASCII (and dots inside labels) are written as `\DDD`.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section as received, echoed in the response.
    question_wire: Vec<u8>,
}

impl Query {
    /// The opcode (0 for a standard query).
    pub fn opcode(&self) -> u16 {
        (self.flags & OPCODE_MASK) >> 11
    }
}

/// A parsed response: its id, response code and the A/AAAA addresses it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub addresses: Vec<IpAddr>,
}

/// Builds a standard recursive query for `name` (with or without trailing dot).
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut message = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    push_header(&mut message, id, FLAG_RECURSION_DESIRED, [1, 0, 0, 0]);
    encode_name(&mut message, name)?;
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(message)
}

/// Parses a query with exactly one question; additional records (EDNS) are ignored.
pub fn parse_query(message: &[u8]) -> Result<Query, DnsError> {
    let header = Header::read(message)?;
    if header.flags & FLAG_RESPONSE != 0 {
        return Err(DnsError::NotAQuery);
    }
    if header.questions != 1 {
        return Err(DnsError::QuestionCount(header.questions));
    }
    let (labels, after_name) = read_name(message, HEADER_LEN)?;
    let qtype = read_u16(message, after_name, "question type")?;
    let qclass = read_u16(message, after_name + 2, "question class")?;
    let end = after_name + 4;
    Ok(Query {
        id: header.id,
        flags: header.flags,
        name: labels_to_name(&labels),
        qtype,
        qclass,
        question_wire: message[HEADER_LEN..end].to_vec(),
    })
}

/// Builds the response to `query` with `rcode` and one answer per address (A for IPv4,
/// AAAA for IPv6), each pointing back at the question name.
pub fn encode_response(query: &Query, rcode: Rcode, addresses: &[IpAddr], ttl: u32) -> Vec<u8> {
    let flags = FLAG_RESPONSE
        | (query.flags & OPCODE_MASK)
        | FLAG_AUTHORITATIVE
        | (query.flags & FLAG_RECURSION_DESIRED)
        | rcode as u16;
    let answers = u16::try_from(addresses.len()).unwrap_or(u16::MAX);
    let mut message =
        Vec::with_capacity(HEADER_LEN + query.question_wire.len() + 28 * addresses.len());
    push_header(&mut message, query.id, flags, [1, answers, 0, 0]);
    message.extend_from_slice(&query.question_wire);
    for address in addresses.iter().take(usize::from(answers)) {
        // 0xc00c: a compression pointer to the question name right after the header.
        message.extend_from_slice(&[0xc0, 0x0c]);
        let (kind, data): (u16, Vec<u8>) = match address {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        message.extend_from_slice(&kind.to_be_bytes());
        message.extend_from_slice(&CLASS_IN.to_be_bytes());
        message.extend_from_slice(&ttl.to_be_bytes());
        message.extend_from_slice(&(data.len() as u16).to_be_bytes());
        message.extend_from_slice(&data);
    }
    message
}

/// Parses a response, collecting the addresses of its A and AAAA answers.
pub fn parse_response(message: &[u8]) -> Result<Response, DnsError> {
    let header = Header::read(message)?;
    if header.flags & FLAG_RESPONSE == 0 {
        return Err(DnsError::NotAResponse);
    }
    let mut offset = HEADER_LEN;
    for _ in 0..header.questions {
        let (_, after_name) = read_name(message, offset)?;
        offset = checked_end(message, after_name, 4, "question")?;
    }
    let mut addresses = Vec::new();
    for _ in 0..header.answers {
        let (_, after_name) = read_name(message, offset)?;
        let kind = read_u16(message, after_name, "answer type")?;
        let class = read_u16(message, after_name + 2, "answer class")?;
        let length = usize::from(read_u16(message, after_name + 8, "answer data length")?);
        let data_start = after_name + 10;
        let data_end = checked_end(message, data_start, length, "answer data")?;
        let data = &message[data_start..data_end];
        if class == CLASS_IN {
            if let (TYPE_A, Ok(octets)) = (kind, <[u8; 4]>::try_from(data)) {
                addresses.push(IpAddr::V4(Ipv4Addr::from(octets)));
            } else if let (TYPE_AAAA, Ok(octets)) = (kind, <[u8; 16]>::try_from(data)) {
                addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
        }
        offset = data_end;
    }
    Ok(Response {
        id: header.id,
        rcode: (header.flags & 0x000f) as u8,
        addresses,
    })
}

// === impl Header ===

struct Header {
    id: u16,
    flags: u16,
    questions: u16,
    answers: u16,
}

impl Header {
    fn read(message: &[u8]) -> Result<Header, DnsError> {
        if message.len() < HEADER_LEN {
            return Err(DnsError::TooShort(message.len()));
        }
        Ok(Header {
            id: read_u16(message, 0, "id")?,
            flags: read_u16(message, 2, "flags")?,
            questions: read_u16(message, 4, "question count")?,
            answers: read_u16(message, 6, "answer count")?,
        })
    }
}

fn push_header(message: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        message.extend_from_slice(&count.to_be_bytes());
    }
}

fn read_u16(message: &[u8], offset: usize, what: &'static str) -> Result<u16, DnsError> {
    match message.get(offset..offset + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(DnsError::Truncated { offset, what }),
    }
}

fn checked_end(
    message: &[u8],
    start: usize,
    length: usize,
    what: &'static str,
) -> Result<usize, DnsError> {
    let end = start.saturating_add(length);
    if end > message.len() {
        return Err(DnsError::Truncated {
            offset: message.len(),
            what,
        });
    }
    Ok(end)
}

/// Reads a possibly compressed name at `start`; returns its labels and the offset just
/// after the name as it appears at `start`.
fn read_name(message: &[u8], start: usize) -> Result<(Vec<Vec<u8>>, usize), DnsError> {
    let mut labels = Vec::new();
    let mut encoded_len = 1;
    let mut offset = start;
    let mut resume: Option<usize> = None;
    let mut jumps = 0;
    loop {
        let Some(&length_byte) = message.get(offset) else {
            return Err(DnsError::Truncated {
                offset,
                what: "name",
            });
        };
        match length_byte & 0xc0 {
            0x00 => {
                let length = usize::from(length_byte);
                if length == 0 {
                    return Ok((labels, resume.unwrap_or(offset + 1)));
                }
                let end = checked_end(message, offset + 1, length, "label")?;
                encoded_len += length + 1;
                if encoded_len > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong(start));
                }
                labels.push(message[offset + 1..end].to_vec());
                offset = end;
            }
            0xc0 => {
                let low = *message.get(offset + 1).ok_or(DnsError::Truncated {
                    offset: offset + 1,
                    what: "compression pointer",
                })?;
                let target = usize::from(length_byte & 0x3f) << 8 | usize::from(low);
                if target >= offset {
                    return Err(DnsError::BadPointer { offset, target });
                }
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err(DnsError::PointerLoop);
                }
                resume.get_or_insert(offset + 2);
                offset = target;
            }
            _ => {
                return Err(DnsError::BadLabelType {
                    kind: length_byte,
                    offset,
                })
            }
        }
    }
}

fn encode_name(message: &mut Vec<u8>, name: &str) -> Result<(), DnsError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let invalid = || DnsError::InvalidName(name.to_string());
    if trimmed.len() + 2 > MAX_NAME_LEN {
        return Err(invalid());
    }
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(invalid());
            }
            message.push(label.len() as u8);
            message.extend_from_slice(label.as_bytes());
        }
    }
    message.push(0);
    Ok(())
}

fn labels_to_name(labels: &[Vec<u8>]) -> String {
    let mut name = String::new();
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            name.push('.');
        }
        for &byte in label {
            let lower = byte.to_ascii_lowercase();
            if lower.is_ascii_graphic() && lower != b'.' && lower != b'\\' {
                name.push(char::from(lower));
            } else {
                name.push_str(&format!("\\{byte:03}"));
            }
        }
    }
    name
}

#[cfg(test)]
mod tests;
