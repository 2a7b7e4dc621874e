//! A compact flow's own fields written as protobuf bytes straight from its record and
//! rare parts, without a `Flow` or a string of it: the one reading of the record's
//! bits. GetFlows serves every compact flow this way (with the tables' encoded
//! endpoints and context beside it), and [`super::own_parts`] decodes these bytes to
//! rebuild a flow.
//!
//! The bytes are the fields prost writes for the same values (proto3: a field at its
//! default is left out, a present message is written even when empty), so they decode
//! as the stored flow; the tests compare them with it on every sample flow.

use prost::encoding::{message, WireType};
use proto::wire::{key, length_delimited, put_varint, varint_field, Sink, StackBuf};

use super::{
    bits, l7, packed_trace, text, Rare, Record, Tables, F_ETHERNET, F_EVENT_TYPE, F_IP, F_TIME,
    L4_EMPTY, L4_ICMPV4, L4_ICMPV6, L4_SCTP, L4_TCP, L4_UDP, UUID_PACKED, UUID_SHIFT, W_CTX,
    W_DST_IP, W_ENUMS, W_FLAGS, W_L4, W_MAC_DST, W_MAC_SRC, W_SECS, W_SRC_IP, W_UUID,
};

// `Flow` field numbers (flow.proto).
const TIME: u32 = 1;
const VERDICT: u32 = 2;
const DROP_REASON: u32 = 3;
const ETHERNET: u32 = 4;
const IP: u32 = 5;
const L4: u32 = 6;
const TYPE: u32 = 10;
const REPLY: u32 = 16;
const EVENT_TYPE: u32 = 19;
const TRAFFIC_DIRECTION: u32 = 22;
const POLICY_MATCH_TYPE: u32 = 23;
const TRACE_OBSERVATION_POINT: u32 = 24;
const DROP_REASON_DESC: u32 = 25;
const IS_REPLY: u32 = 26;
const PROXY_PORT: u32 = 29;
const TRACE_CONTEXT: u32 = 30;
const SOCKET_COOKIE: u32 = 32;
const CGROUP_ID: u32 = 33;
const UUID: u32 = 34;
const AUTH_TYPE: u32 = 35;
const TRACE_REASON: u32 = 36;
const FILE: u32 = 38;
const TUNNEL: u32 = 39;
const IP_TRACE_ID: u32 = 40;
const EXTENSIONS: u32 = 150_000;
const AGGREGATE: u32 = 21_007;

/// The most bytes [`record_fields`] writes (every field at its longest: an IPv6
/// pair's texts, a negative nanosecond count, ...), well above.
const RECORD_FIELDS_MAX: usize = 512;

/// Writes the `Flow` fields a compact record holds (none of the extra's).
pub(super) fn record_fields(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(record_buf(r).as_bytes());
}

/// [`record_fields`] into its stack buffer.
fn write_record(r: &Record, out: &mut RecordBuf) {
    let flags = r[W_FLAGS];
    if flags & F_TIME != 0 {
        // int32 nanos are written sign-extended, as prost writes an `int32`.
        let nanos = i64::from((r[W_CTX] >> 32) as u32 as i32) as u64;
        short_message(TIME, out, |out| {
            varint_field(1, r[W_SECS], out);
            varint_field(2, nanos, out);
        });
    }
    if bits(flags, UUID_SHIFT, 2) == UUID_PACKED {
        bytes(UUID, &text::uuid_bytes(r[W_UUID], r[W_UUID + 1]), out);
    }
    if let Some((hi, lo)) = packed_trace(r) {
        short_message(TRACE_CONTEXT, out, |out| {
            short_message(1, out, |out| bytes(1, &text::trace_id_bytes(hi, lo), out));
        });
    }
    let l4w = r[W_L4];
    if flags & F_IP != 0 {
        short_message(IP, out, |out| {
            for (tag, shift, word) in [(1, 50, W_SRC_IP), (2, 52, W_DST_IP)] {
                let kind = bits(l4w, shift, 2);
                bytes(
                    tag,
                    text::ip_bytes(kind, r[word], r[word + 1]).as_bytes(),
                    out,
                );
            }
            varint_field(3, bits(l4w, 48, 2), out);
            varint_field(4, bits(l4w, 54, 1), out);
        });
    }
    if flags & F_ETHERNET != 0 {
        short_message(ETHERNET, out, |out| {
            for (tag, word) in [(1, W_MAC_SRC), (2, W_MAC_DST)] {
                bytes(tag, &text::mac_bytes(bits(r[word], 0, 48)), out);
            }
        });
    }
    varint_field(PROXY_PORT, bits(r[W_MAC_SRC], 48, 16), out);
    varint_field(POLICY_MATCH_TYPE, bits(r[W_MAC_DST], 48, 8), out);
    varint_field(DROP_REASON, bits(r[W_MAC_DST], 56, 8), out);
    layer4(l4w, out);
    let e = r[W_ENUMS];
    varint_field(VERDICT, bits(e, 0, 8), out);
    varint_field(DROP_REASON_DESC, bits(e, 8, 8), out);
    if flags & F_EVENT_TYPE != 0 {
        short_message(EVENT_TYPE, out, |out| {
            varint_field(1, bits(e, 16, 8), out);
            varint_field(2, bits(e, 24, 8), out);
        });
    }
    varint_field(TRACE_OBSERVATION_POINT, bits(e, 32, 8), out);
    varint_field(TRACE_REASON, bits(e, 40, 8), out);
    varint_field(TRAFFIC_DIRECTION, bits(e, 48, 2), out);
    match bits(e, 50, 2) {
        0 => {}
        v => short_message(IS_REPLY, out, |out| varint_field(1, u64::from(v == 2), out)),
    }
    varint_field(REPLY, bits(e, 52, 1), out);
    varint_field(TYPE, bits(e, 53, 2), out);
    varint_field(AUTH_TYPE, bits(e, 55, 2), out);
}

/// The `Layer4` message of the packed L4 bits (nothing when there is none, or when
/// the extra holds it).
fn layer4(w: u64, out: &mut RecordBuf) {
    let tag = match bits(w, 0, 4) {
        L4_EMPTY => {
            short_message(L4, out, |_| {});
            return;
        }
        L4_TCP => 1,
        L4_UDP => 2,
        L4_ICMPV4 => 3,
        L4_ICMPV6 => 4,
        L4_SCTP => 5,
        _ => return,
    };
    short_message(L4, out, |out| {
        short_message(tag, out, |out| {
            varint_field(1, bits(w, 16, 16), out);
            varint_field(2, bits(w, 32, 16), out);
            if tag == 1 && bits(w, 4, 1) == 1 {
                let flag_bits = bits(w, 5, 9);
                short_message(3, out, |out| {
                    for i in 0..9 {
                        varint_field(i + 1, flag_bits >> i & 1, out);
                    }
                });
            }
        });
    });
}

/// Writes the rare parts' `Flow` fields (the names and L7 record with their interned
/// strings in place; packed parts that do not expand, which this crate's writer never
/// stores, are left out).
pub(super) fn rare_fields(tables: &Tables, rare: &Rare, out: &mut Vec<u8>) {
    if let Some(packed) = rare.packed.as_deref() {
        let start = out.len();
        if l7::expand(&tables.l7_strings, packed, out).is_err() {
            out.truncate(start);
        }
    }
    let other = rare.other.as_deref();
    optional(
        TRACE_CONTEXT,
        other.and_then(|o| o.trace_context.as_ref()),
        out,
    );
    let Some(other) = other else {
        return;
    };
    bytes(UUID, other.uuid.as_bytes(), out);
    optional(IP, other.ip.as_ref(), out);
    optional(ETHERNET, other.ethernet.as_ref(), out);
    optional(L4, other.l4.as_ref(), out);
    optional(TUNNEL, other.tunnel.as_ref(), out);
    optional(FILE, other.file.as_ref(), out);
    optional(IP_TRACE_ID, other.ip_trace_id.as_ref(), out);
    varint_field(SOCKET_COOKIE, other.socket_cookie, out);
    varint_field(CGROUP_ID, other.cgroup_id, out);
    optional(EXTENSIONS, other.extensions.as_ref(), out);
    optional(AGGREGATE, other.aggregate.as_ref(), out);
}

/// An embedded message field when present (written even when empty, as prost does).
#[inline]
fn optional<M: prost::Message>(tag: u32, value: Option<&M>, out: &mut Vec<u8>) {
    if let Some(value) = value {
        message::encode(tag, value, out);
    }
}

/// A record's fields as they are written: a stack buffer with room for the longest
/// ([`RECORD_FIELDS_MAX`]; the rare parts and the L7 record, whose lengths have no
/// bound, are written to a vector).
pub(super) type RecordBuf = StackBuf<RECORD_FIELDS_MAX>;

/// The `Flow` fields the record `r` holds, as [`record_fields`] writes them.
pub(super) fn record_buf(r: &Record) -> RecordBuf {
    let mut fields = RecordBuf::default();
    write_record(r, &mut fields);
    fields
}

/// A string or bytes field, left out when empty.
#[inline(always)]
fn bytes(tag: u32, value: &[u8], out: &mut impl Sink) {
    if !value.is_empty() {
        bytes_always(tag, value, out);
    }
}

#[inline(always)]
fn bytes_always(tag: u32, value: &[u8], out: &mut impl Sink) {
    length_delimited(tag, value.len(), out);
    out.put_slice(value);
}

/// An embedded message whose fields `body` writes, its length written before them
/// in one byte: every message of a record's fields is shorter than 128 bytes (an IP
/// message, the longest, at most 98). A longer one, were there any, would still be
/// written exactly.
#[inline(always)]
fn short_message<S: Sink>(tag: u32, out: &mut S, body: impl FnOnce(&mut S)) {
    key(tag, WireType::LengthDelimited, out);
    out.put(0);
    let at = out.written();
    body(out);
    set_len(out, at);
}

/// Writes the length of what was written to `out` after `at` into the one byte
/// before it, making room when it takes more.
#[inline(always)]
pub(super) fn set_len(out: &mut impl Sink, at: usize) {
    let len = out.written() - at;
    if len < 0x80 {
        out.set(at - 1, len as u8);
    } else {
        set_long_len(out, at, len);
    }
}

/// [`set_len`] for a length of two bytes or more.
#[cold]
fn set_long_len(out: &mut impl Sink, at: usize, len: usize) {
    let mut head = StackBuf::<10>::default();
    put_varint(len as u64, &mut head);
    let head = head.as_bytes();
    out.open(at, head.len() - 1);
    for (k, byte) in head.iter().enumerate() {
        out.set(at - 1 + k, *byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::WORDS;

    /// A message of 128 bytes or more (none of the record's is) still gets its whole
    /// length: it decodes as prost writes it.
    #[test]
    fn a_long_message_gets_its_whole_length() {
        for len in [0, 1, 126, 127, 128, 300, 20_000] {
            let text = "x".repeat(len);
            let mut out = Vec::new();
            short_message(1, &mut out, |out| bytes(1, text.as_bytes(), out));
            let mut expected = Vec::new();
            message::encode(
                1,
                &proto::flow::TraceParent {
                    trace_id: text.clone(),
                },
                &mut expected,
            );
            assert_eq!(out, expected, "{len}");
            if len + 4 <= RECORD_FIELDS_MAX {
                let mut buf = RecordBuf::default();
                short_message(1, &mut buf, |out| bytes(1, text.as_bytes(), out));
                assert_eq!(buf.as_bytes(), expected, "{len}");
            }
        }
    }

    /// A record with every bit set writes every field it can hold at its longest
    /// (IPv6 pairs at each address kind, the longest varints, a TCP flags message):
    /// all within the stack buffer, which would panic past it.
    #[test]
    fn the_longest_record_fits_the_buffer() {
        let mut longest = 0;
        for kinds in [0u64, 0b0101, 0b1010, 0b1111] {
            let mut r: Record = [u64::MAX; WORDS];
            // The two address kinds (bits 50-53 of the L4 word).
            r[W_L4] = r[W_L4] & !(0b1111 << 50) | kinds << 50;
            for l4 in [L4_TCP, L4_UDP, L4_SCTP] {
                r[W_L4] = r[W_L4] & !0b1111 | l4;
                let mut out = Vec::new();
                record_fields(&r, &mut out);
                longest = longest.max(out.len());
            }
        }
        assert!(longest > 200, "{longest}");
        assert!(longest <= RECORD_FIELDS_MAX, "{longest}");
    }
}
