//! A walk over an encoded `GetFlowsResponse` that tells, without building it, that prost
//! decodes it: every field's wire type fits its declared type, every string is UTF-8,
//! every length and varint is whole. Built once from the API's descriptors
//! (`proto::FILE_DESCRIPTOR_SET`), so it follows the `.proto` files.
//!
//! The walk is deliberately stricter than prost: anything unusual (a group, a varint of
//! ten bytes, a nesting deeper than [`MAX_DEPTH`], an unknown type) is "not shown", and
//! the caller then decodes with prost, whose answer (and error message) is final. So a
//! response passes exactly when prost decodes it; only the common case is fast.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// Deepest nesting the walk follows (prost's own limit is 100).
const MAX_DEPTH: usize = 32;
/// The message every node response is.
const ROOT: &str = ".observer.GetFlowsResponse";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Varint,
    Fixed32,
    Fixed64,
    String,
    Bytes,
    /// A message, by index in [`Schema::messages`].
    Message(usize),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    kind: Kind,
    /// Repeated scalar numbers may also come packed (one length-delimited field).
    packable: bool,
}

/// Field numbers below this are looked up in a table, the rest by binary search.
const DIRECT_FIELDS: usize = 64;

#[derive(Debug, Default)]
struct MessageSchema {
    /// Fields numbered below [`DIRECT_FIELDS`], by number.
    direct: Vec<Option<Field>>,
    /// Fields by number, sorted.
    fields: Vec<(u32, Field)>,
}

impl MessageSchema {
    fn new(mut fields: Vec<(u32, Field)>) -> Self {
        fields.sort_by_key(|(n, _)| *n);
        let mut direct = vec![None; DIRECT_FIELDS];
        for &(number, field) in &fields {
            if let Some(slot) = direct.get_mut(number as usize) {
                *slot = Some(field);
            }
        }
        Self { direct, fields }
    }

    fn field(&self, number: u32) -> Option<Field> {
        if let Some(slot) = self.direct.get(number as usize) {
            return *slot;
        }
        self.fields
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|i| self.fields[i].1)
    }
}

#[derive(Debug)]
struct Schema {
    messages: Vec<MessageSchema>,
    root: usize,
}

fn schema() -> Option<&'static Schema> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(build_schema).as_ref()
}

fn collect<'a>(
    prefix: &str,
    message: &'a DescriptorProto,
    out: &mut Vec<(String, &'a DescriptorProto)>,
) {
    let name = format!("{prefix}.{}", message.name());
    for nested in &message.nested_type {
        collect(&name, nested, out);
    }
    out.push((name, message));
}

fn build_schema() -> Option<Schema> {
    let set = FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).ok()?;
    let mut all = Vec::new();
    for file in &set.file {
        let prefix = if file.package().is_empty() {
            String::new()
        } else {
            format!(".{}", file.package())
        };
        for message in &file.message_type {
            collect(&prefix, message, &mut all);
        }
    }
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let mut messages = Vec::with_capacity(all.len());
    for (_, message) in &all {
        let mut fields = Vec::with_capacity(message.field.len());
        for field in &message.field {
            let kind = match field.r#type() {
                Type::Double | Type::Fixed64 | Type::Sfixed64 => Kind::Fixed64,
                Type::Float | Type::Fixed32 | Type::Sfixed32 => Kind::Fixed32,
                Type::Int64
                | Type::Uint64
                | Type::Int32
                | Type::Bool
                | Type::Uint32
                | Type::Enum
                | Type::Sint32
                | Type::Sint64 => Kind::Varint,
                Type::String => Kind::String,
                Type::Bytes => Kind::Bytes,
                Type::Message => Kind::Message(*index.get(field.type_name())?),
                // Groups are left to prost.
                Type::Group => return None,
            };
            let repeated = field.label() == Label::Repeated;
            let packable = repeated && matches!(kind, Kind::Varint | Kind::Fixed32 | Kind::Fixed64);
            fields.push((
                u32::try_from(field.number()).ok()?,
                Field { kind, packable },
            ));
        }
        messages.push(MessageSchema::new(fields));
    }
    let root = *index.get(ROOT)?;
    Some(Schema { messages, root })
}

/// True when `bytes` certainly decode as a `GetFlowsResponse`; false means "ask prost".
pub fn decodes(bytes: &[u8]) -> bool {
    match schema() {
        Some(schema) => message(schema, schema.root, bytes, 0),
        None => false,
    }
}

/// A varint of at most nine bytes (anything longer is left to prost), and the rest.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    // Keys, lengths and most values fit in one byte.
    if let Some((&b, rest)) = bytes.split_first() {
        if b < 0x80 {
            return Some((u64::from(b), rest));
        }
    }
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn length_delimited(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = varint(bytes)?;
    let len = usize::try_from(len).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

fn message(schema: &Schema, index: usize, mut bytes: &[u8], depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let fields = &schema.messages[index];
    while !bytes.is_empty() {
        let Some((key, rest)) = varint(bytes) else {
            return false;
        };
        let Ok(key) = u32::try_from(key) else {
            return false;
        };
        let (number, wire) = (key >> 3, key & 7);
        if number == 0 {
            return false;
        }
        let expected = fields.field(number);
        let rest = match wire {
            0 => {
                if expected.is_some_and(|f| f.kind != Kind::Varint) {
                    return false;
                }
                match varint(rest) {
                    Some((_, rest)) => rest,
                    None => return false,
                }
            }
            1 | 5 => {
                let (size, kind) = if wire == 1 {
                    (8, Kind::Fixed64)
                } else {
                    (4, Kind::Fixed32)
                };
                if expected.is_some_and(|f| f.kind != kind) || rest.len() < size {
                    return false;
                }
                &rest[size..]
            }
            2 => {
                let Some((value, rest)) = length_delimited(rest) else {
                    return false;
                };
                let fits = match expected {
                    None => true,
                    Some(Field {
                        kind: Kind::String, ..
                    // Nearly every string is ASCII, which a word-at-a-time check
                    // tells without the UTF-8 decoder.
                    }) => value.is_ascii() || std::str::from_utf8(value).is_ok(),
                    Some(Field {
                        kind: Kind::Bytes, ..
                    }) => true,
                    Some(Field {
                        kind: Kind::Message(nested),
                        ..
                    }) => message(schema, nested, value, depth + 1),
                    Some(Field {
                        kind,
                        packable: true,
                    }) => packed(kind, value),
                    Some(_) => false,
                };
                if !fits {
                    return false;
                }
                rest
            }
            // Groups, and wire types that do not exist: prost decides.
            _ => return false,
        };
        bytes = rest;
    }
    true
}

fn packed(kind: Kind, mut value: &[u8]) -> bool {
    match kind {
        Kind::Varint => {
            while !value.is_empty() {
                match varint(value) {
                    Some((_, rest)) => value = rest,
                    None => return false,
                }
            }
            true
        }
        Kind::Fixed32 => value.len().is_multiple_of(4),
        Kind::Fixed64 => value.len().is_multiple_of(8),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::observer::GetFlowsResponse;

    fn sample() -> Vec<u8> {
        let flow = observer::sample::corpus_flow(12);
        GetFlowsResponse {
            node_name: "node1".into(),
            time: flow.time,
            response_types: Some(proto::observer::get_flows_response::ResponseTypes::Flow(
                flow,
            )),
        }
        .encode_to_vec()
    }

    #[test]
    fn the_schema_is_read_from_the_api() {
        assert!(schema().is_some());
        for n in 0..40 {
            let flow = observer::sample::corpus_flow(n);
            let bytes = GetFlowsResponse {
                node_name: "node1".into(),
                time: flow.time,
                response_types: Some(proto::observer::get_flows_response::ResponseTypes::Flow(
                    flow,
                )),
            }
            .encode_to_vec();
            assert!(decodes(&bytes), "flow {n} of the corpus mix");
        }
    }

    #[test]
    fn a_bad_string_is_not_passed() {
        let mut bytes = sample();
        let at = bytes
            .windows(5)
            .position(|w| w == b"node1")
            .expect("node name encoded");
        bytes[at] = 0xff;
        assert!(GetFlowsResponse::decode(bytes.as_slice()).is_err());
        assert!(!decodes(&bytes));
    }

    /// Whatever the bytes, the walk never passes what prost refuses: mutated encodings
    /// of the corpus mix (bytes flipped, cut, inserted), a deterministic sequence.
    #[test]
    fn never_passes_what_prost_refuses() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut passed = 0;
        for round in 0..20_000u64 {
            let flow = observer::sample::corpus_flow(round % 40);
            let mut bytes = GetFlowsResponse {
                node_name: "node1".into(),
                time: flow.time,
                response_types: Some(proto::observer::get_flows_response::ResponseTypes::Flow(
                    flow,
                )),
            }
            .encode_to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % bytes.len().max(1);
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes[at] ^= 1 << (next() % 8),
                    2 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let prost = GetFlowsResponse::decode(bytes.as_slice()).is_ok();
            let walk = decodes(&bytes);
            assert!(!walk || prost, "passed bytes prost refuses: {bytes:?}");
            passed += usize::from(walk);
        }
        // The walk is only useful if it passes most of what prost accepts.
        assert!(passed > 1_000, "{passed}");
    }
}
