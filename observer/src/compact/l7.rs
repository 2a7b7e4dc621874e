//! A flow's DNS names and L7 record as a compact flow keeps them (its packed parts):
//! the protobuf encoding of the `Flow` fields they are (13, 14, 15), with the strings
//! that repeat across flows (names, URLs, methods, header names and values, DNS
//! queries, answers and types) replaced by their number in [`Tables::l7_strings`]. A
//! replaced string is its field with the varint wire type holding the number, where
//! the `.proto` has a length-delimited string: the parts stay one walk from the bytes
//! a client reads ([`expand`]), which GetFlows writes without building a `Layer7`.
//!
//! A string is interned the second time the writer sees it within a while (a table of
//! recent hashes, [`RECENT_SLOTS`]): values seen once (request ids, random names) stay
//! inline and never take table space. The table only grows, by at most
//! [`L7_STRINGS_MAX_BYTES`]; beyond it every new string stays inline.

use std::collections::HashMap;
use std::hash::BuildHasher;

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use proto::wire::{key, put_varint};

use super::rare::{Packed, PackedParts};
use super::table::{Ref, Table, TABLE_CAPACITY};
use super::wire::set_len;
use super::{Tables, SCRATCH_KEPT};

/// Bytes the interned L7 strings may take, counted as the table's copy, the writer's
/// key and a map entry each. Distinct repeating values (URLs, names, answers) in a
/// ring's lifetime fit; a workload of ever-new repeating strings fills it and its
/// further strings stay inline.
pub const L7_STRINGS_MAX_BYTES: usize = 32 << 20;

/// Strings shorter than this stay inline (a number and its key take 2-4 bytes).
const MIN_INTERNED: usize = 4;
/// Strings longer than this stay inline.
const MAX_INTERNED: usize = 2048;
/// Hashes of recently seen strings the writer remembers (a string is interned when
/// its hash is found here).
pub const RECENT_SLOTS: usize = 1 << 16;
/// What a table entry costs besides its bytes (two boxes and a map slot).
const ENTRY_OVERHEAD: usize = 48;

/// The messages of the packed parts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Msg {
    /// The `Flow` fields packed: names (13, 14) and the L7 record (15).
    Parts,
    Layer7,
    Dns,
    Http,
    Header,
    Kafka,
}

/// The message a field of `msg` holds, if it holds one (flow.proto).
fn child(msg: Msg, field: u32) -> Option<Msg> {
    match (msg, field) {
        (Msg::Parts, 15) => Some(Msg::Layer7),
        (Msg::Layer7, 100) => Some(Msg::Dns),
        (Msg::Layer7, 101) => Some(Msg::Http),
        (Msg::Layer7, 102) => Some(Msg::Kafka),
        (Msg::Http, 5) => Some(Msg::Header),
        _ => None,
    }
}

/// Whether a field of `msg` is a string (flow.proto).
fn is_string(msg: Msg, field: u32) -> bool {
    match msg {
        Msg::Parts => matches!(field, 13 | 14),
        Msg::Layer7 => false,
        Msg::Dns => matches!(field, 1 | 2 | 4 | 5 | 7 | 8),
        Msg::Http => matches!(field, 2..=4),
        Msg::Header => matches!(field, 1 | 2),
        Msg::Kafka => matches!(field, 3 | 5),
    }
}

/// A string field as the walk finds it.
enum Found<'a> {
    Text(&'a [u8]),
    Number(u64),
}

/// Why bytes are not an L7 record of this form.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(&'static str);

/// Copies the message `msg` in `input` to `out`, handing each string field to
/// `string` (which writes it), and each embedded message through the same walk.
fn walk<F>(msg: Msg, mut input: &[u8], out: &mut Vec<u8>, string: &mut F) -> Result<(), Malformed>
where
    F: FnMut(u32, Found<'_>, &mut Vec<u8>) -> Result<(), Malformed>,
{
    while let Some(&first) = input.first() {
        // Every key of these messages below field 16 is one byte (field 0 is none).
        let (field, wire_type) = if (8..0x80).contains(&first) {
            input = &input[1..];
            let wire_type =
                WireType::try_from(u64::from(first & 7)).map_err(|_| Malformed("key"))?;
            (u32::from(first >> 3), wire_type)
        } else {
            decode_key(&mut input).map_err(|_| Malformed("key"))?
        };
        match wire_type {
            WireType::LengthDelimited => {
                let len = varint(&mut input).ok_or(Malformed("length"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= input.len())
                    .ok_or(Malformed("length past the end"))?;
                let (value, rest) = input.split_at(len);
                input = rest;
                if let Some(inner) = child(msg, field) {
                    key(field, WireType::LengthDelimited, out);
                    // One byte for the length, as most nested messages need.
                    out.push(0);
                    let at = out.len();
                    walk(inner, value, out, string)?;
                    set_len(out, at);
                } else if is_string(msg, field) {
                    string(field, Found::Text(value), out)?;
                } else {
                    key(field, WireType::LengthDelimited, out);
                    put_varint(len as u64, out);
                    out.extend_from_slice(value);
                }
            }
            WireType::Varint => {
                let value = varint(&mut input).ok_or(Malformed("varint"))?;
                if is_string(msg, field) {
                    string(field, Found::Number(value), out)?;
                } else {
                    key(field, WireType::Varint, out);
                    put_varint(value, out);
                }
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let len = if wire_type == WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                if input.len() < len {
                    return Err(Malformed("fixed-size field past the end"));
                }
                key(field, wire_type, out);
                out.extend_from_slice(&input[..len]);
                input.advance(len);
            }
            WireType::StartGroup | WireType::EndGroup => return Err(Malformed("group")),
        }
    }
    Ok(())
}

/// A varint read off the front of `input` (most are one byte).
#[inline]
fn varint(input: &mut &[u8]) -> Option<u64> {
    match input.first() {
        Some(&b) if b < 0x80 => {
            *input = &input[1..];
            Some(u64::from(b))
        }
        _ => decode_varint(input).ok(),
    }
}

fn write_text(field: u32, text: &[u8], out: &mut Vec<u8>) {
    key(field, WireType::LengthDelimited, out);
    put_varint(text.len() as u64, out);
    out.extend_from_slice(text);
}

/// Writes the parts `packed` as a client reads them (every string in place) to `out`.
pub fn expand(
    strings: &Table<Box<str>>,
    packed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    walk(Msg::Parts, packed, out, &mut |field, found, out| {
        match found {
            Found::Text(text) => write_text(field, text, out),
            Found::Number(n) => {
                let text = Ref::try_from(n)
                    .ok()
                    .and_then(|r| strings.get(r))
                    .ok_or(Malformed("unknown string number"))?;
                write_text(field, text.as_bytes(), out);
            }
        }
        Ok(())
    })
}

/// The parts `packed`, decoded.
pub fn decode(tables: &Tables, packed: &[u8]) -> Option<PackedParts> {
    let mut bytes = Vec::with_capacity(packed.len() * 2);
    expand(&tables.l7_strings, packed, &mut bytes).ok()?;
    prost::Message::decode(bytes.as_slice()).ok()
}

/// The writer's side: which strings are interned, and which were seen lately.
pub struct L7Strings {
    by_text: HashMap<Box<[u8]>, Ref, foldhash::fast::RandomState>,
    recent: Box<[u64]>,
    hasher: foldhash::fast::RandomState,
    /// Bytes the interned strings take, as counted against [`L7_STRINGS_MAX_BYTES`].
    bytes: usize,
    /// The buffer a record is packed in before it is stored.
    scratch: Vec<u8>,
}

impl Default for L7Strings {
    fn default() -> Self {
        Self {
            by_text: HashMap::default(),
            recent: vec![0; RECENT_SLOTS].into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
            bytes: 0,
            scratch: Vec::new(),
        }
    }
}

impl L7Strings {
    /// The stored form of the packed parts `encoded` as prost writes them (the `Flow`
    /// fields 13, 14 and 15); the bytes as they are if they are not those.
    pub fn pack(&mut self, strings: &Table<Box<str>>, encoded: &[u8]) -> Packed {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let packed = walk(Msg::Parts, encoded, &mut out, &mut |field, found, out| {
            let Found::Text(text) = found else {
                return Err(Malformed("a number where prost writes a string"));
            };
            match self.number(strings, text) {
                Some(r) => {
                    key(field, WireType::Varint, out);
                    put_varint(u64::from(r), out);
                }
                None => write_text(field, text, out),
            }
            Ok(())
        });
        let stored = match packed {
            Ok(()) => Packed::new(&out),
            // Never for prost's own encoding; kept whole, `expand` copies it as it is.
            Err(_) => Packed::new(encoded),
        };
        if out.capacity() <= SCRATCH_KEPT {
            self.scratch = out;
        }
        stored
    }

    /// The number of `text`, interning it if it was seen lately and there is room.
    fn number(&mut self, strings: &Table<Box<str>>, text: &[u8]) -> Option<Ref> {
        if !(MIN_INTERNED..=MAX_INTERNED).contains(&text.len()) {
            return None;
        }
        if let Some(r) = self.by_text.get(text) {
            return Some(*r);
        }
        let hash = self.hasher.hash_one(text) | 1;
        let slot = &mut self.recent[(hash as usize) % RECENT_SLOTS];
        if *slot != hash {
            *slot = hash;
            return None;
        }
        let cost = 2 * text.len() + ENTRY_OVERHEAD;
        let index = self.by_text.len();
        if self.bytes + cost > L7_STRINGS_MAX_BYTES || index >= TABLE_CAPACITY {
            return None;
        }
        // Prost wrote these bytes from a `String`: they are UTF-8.
        let value: Box<str> = std::str::from_utf8(text).ok()?.into();
        strings.set(index, value);
        let r = Ref::try_from(index + 1).ok()?;
        self.by_text.insert(text.into(), r);
        self.bytes += cost;
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::flow;

    fn http(url: &str, request_id: &str) -> flow::Layer7 {
        flow::Layer7 {
            r#type: flow::L7FlowType::Request as i32,
            latency_ns: 0,
            record: Some(flow::layer7::Record::Http(flow::Http {
                code: 0,
                method: "GET".into(),
                url: url.into(),
                protocol: "HTTP/1.1".into(),
                headers: vec![
                    flow::HttpHeader {
                        key: "X-Request-Id".into(),
                        value: request_id.into(),
                    },
                    flow::HttpHeader {
                        key: "User-Agent".into(),
                        value: "curl/8.5.0".into(),
                    },
                ],
            })),
        }
    }

    fn round_trip(
        writer: &mut L7Strings,
        tables: &Tables,
        l7: &flow::Layer7,
    ) -> (Packed, Option<flow::Layer7>) {
        let parts = PackedParts {
            l7: Some(l7.clone()),
            ..Default::default()
        };
        let (packed, back) = parts_round_trip(writer, tables, &parts);
        (packed, back.and_then(|parts| parts.l7))
    }

    fn parts_round_trip(
        writer: &mut L7Strings,
        tables: &Tables,
        parts: &PackedParts,
    ) -> (Packed, Option<PackedParts>) {
        let encoded = prost::Message::encode_to_vec(parts);
        let packed = writer.pack(&tables.l7_strings, &encoded);
        let mut expanded = Vec::new();
        expand(&tables.l7_strings, &packed, &mut expanded).expect("expands");
        assert_eq!(expanded, encoded, "expands to prost's bytes");
        let back = decode(tables, &packed);
        (packed, back)
    }

    #[test]
    fn repeated_strings_are_kept_once_and_unique_ones_inline() {
        let tables = Tables::default();
        let mut writer = L7Strings::default();
        let url = "http://deathstar.default.svc.cluster.local/v1/request-landing";
        let first = http(url, "a1b2c3d4e5f60718");
        let (packed, back) = round_trip(&mut writer, &tables, &first);
        assert_eq!(back.as_ref(), Some(&first));
        assert!(writer.by_text.is_empty(), "nothing interned on first sight");
        let plain_len = packed.len();
        let second = http(url, "90817263544536ab");
        let (packed, back) = round_trip(&mut writer, &tables, &second);
        assert_eq!(back.as_ref(), Some(&second));
        // The URL, the protocol, both header names and the agent: interned; the
        // method is short and the request ids were each seen once.
        assert_eq!(writer.by_text.len(), 5, "{:?}", writer.by_text.keys());
        assert!(
            packed.len() + url.len() < plain_len,
            "{} vs {plain_len}",
            packed.len()
        );
        let unique = |t: &str| writer.by_text.contains_key(t.as_bytes());
        assert!(!unique("a1b2c3d4e5f60718") && !unique("90817263544536ab"));
    }

    #[test]
    fn the_table_stops_at_its_limit() {
        let tables = Tables::default();
        let mut writer = L7Strings::default();
        let long = |n: usize| format!("{n:0>2000}");
        let mut n = 0;
        // Each string twice: interned until the budget is spent, inline after.
        while writer.bytes + 2 * 2000 + ENTRY_OVERHEAD <= L7_STRINGS_MAX_BYTES {
            for _ in 0..2 {
                writer.number(&tables.l7_strings, long(n).as_bytes());
            }
            n += 1;
        }
        let interned = writer.by_text.len();
        assert_eq!(interned, n);
        for _ in 0..2 {
            assert_eq!(writer.number(&tables.l7_strings, long(n).as_bytes()), None);
        }
        assert_eq!(writer.by_text.len(), interned);
        assert!(writer.bytes <= L7_STRINGS_MAX_BYTES);
        // What is interned is still found.
        assert!(writer
            .number(&tables.l7_strings, long(0).as_bytes())
            .is_some());
    }

    #[test]
    fn bad_numbers_and_bytes_are_refused() {
        let tables = Tables::default();
        // L7 (15) { Http (101) { url (3) = number 7 } }: no such string.
        let packed = [0x7a, 0x05, 0xaa, 0x06, 0x02, 0x18, 0x07];
        assert_eq!(
            expand(&tables.l7_strings, &packed, &mut Vec::new()),
            Err(Malformed("unknown string number"))
        );
        assert_eq!(decode(&tables, &packed), None);
        let truncated = [0x7a, 0x04, 0xaa, 0x06, 0x09, 0x1a];
        assert!(expand(&tables.l7_strings, &truncated, &mut Vec::new()).is_err());
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("GET".to_string()),
            Just("A".to_string()),
            Just("svc.cluster.local.".to_string()),
            "\\PC{0,40}",
            "[\\x00-\\x7f]{0,300}",
        ]
    }

    fn any_l7() -> impl Strategy<Value = flow::Layer7> {
        let header =
            (any_text(), any_text()).prop_map(|(key, value)| flow::HttpHeader { key, value });
        let http = (
            any::<u32>(),
            any_text(),
            any_text(),
            any_text(),
            prop::collection::vec(header, 0..4),
        )
            .prop_map(|(code, method, url, protocol, headers)| {
                flow::layer7::Record::Http(flow::Http {
                    code,
                    method,
                    url,
                    protocol,
                    headers,
                })
            });
        let texts = || prop::collection::vec(any_text(), 0..3);
        let dns = (
            any_text(),
            texts(),
            any::<u32>(),
            texts(),
            any_text(),
            texts(),
            texts(),
        )
            .prop_map(
                |(query, ips, ttl, cnames, observation_source, qtypes, rrtypes)| {
                    flow::layer7::Record::Dns(flow::Dns {
                        query,
                        ips,
                        ttl,
                        cnames,
                        observation_source,
                        rcode: ttl % 6,
                        qtypes,
                        rrtypes,
                    })
                },
            );
        #[allow(deprecated)]
        let kafka = (any::<i32>(), any_text(), any_text()).prop_map(|(code, api_key, topic)| {
            flow::layer7::Record::Kafka(flow::Kafka {
                error_code: code,
                api_version: code / 2,
                api_key,
                correlation_id: -code,
                topic,
            })
        });
        (
            0..4i32,
            any::<u64>(),
            prop::option::of(prop_oneof![http, dns, kafka]),
        )
            .prop_map(|(r#type, latency_ns, record)| flow::Layer7 {
                r#type,
                latency_ns,
                record,
            })
    }

    proptest! {
        /// Whatever is interned, every record reads back as it was written, in
        /// prost's bytes, the first time and the times after.
        #[test]
        fn records_read_back_as_written(records in prop::collection::vec(any_l7(), 1..12)) {
            let tables = Tables::default();
            let mut writer = L7Strings::default();
            for _ in 0..3 {
                for l7 in &records {
                    let (_, back) = round_trip(&mut writer, &tables, l7);
                    prop_assert_eq!(back.as_ref(), Some(l7));
                }
            }
        }

        /// Names with or without an L7 record read back as written too.
        #[test]
        fn names_read_back_as_written(
            parts in prop::collection::vec(
                (
                    prop::collection::vec(any_text(), 0..3),
                    prop::collection::vec(any_text(), 0..3),
                    prop::option::of(any_l7()),
                ),
                1..12,
            )
        ) {
            let tables = Tables::default();
            let mut writer = L7Strings::default();
            for _ in 0..3 {
                for (source_names, destination_names, l7) in &parts {
                    let parts = PackedParts {
                        source_names: source_names.clone(),
                        destination_names: destination_names.clone(),
                        l7: l7.clone(),
                    };
                    let (_, back) = parts_round_trip(&mut writer, &tables, &parts);
                    prop_assert_eq!(back, Some(parts));
                }
            }
        }
    }
}
