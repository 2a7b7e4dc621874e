//! The rare parts of a compact flow: what its record and the interned tables do not
//! hold (L7, names, tunnel, trace context, ... and any UUID, IP, Ethernet or L4 part the
//! record could not pack), each only as large as what it holds.
//!
//! A `Flow` is 1,400 bytes however empty; flows of real captures often have some rare
//! part (an L7 record, DNS names), so this type, not a `Flow`, is what the ring keeps
//! for them: 32 bytes, with what is there behind a pointer or two. The L7 record is
//! kept as its protobuf encoding: a fifth to a half of its decoded size (strings,
//! header lists and the message's own 170 bytes).

use proto::filter::{parts, FlowIp, L4Protocol, TcpFlagBits};
use proto::flow::{self, Flow};

use super::{
    bits, Record, F_ETHERNET, F_IP, F_TRACE, L4_EXTRA, UUID_EXTRA, UUID_SHIFT, W_FLAGS, W_L4,
};

/// What of a flow the record did not pack, as its `Flow` fields have it: the parts
/// real captures have often (an L7 record, DNS names) packed in place, the
/// seldom-present rest behind one pointer. 64 bytes, so an extra in its `Arc` is 80, an
/// allocator size class (a trace context the record could not pack, mostly IPv6
/// flows', is with the rest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rare {
    /// The flow's names and L7 record as protobuf `Flow` fields (13, 14 and 15), their
    /// strings that repeat across flows replaced by their numbers (see `l7`).
    pub packed: Option<Packed>,
    pub other: Option<Box<Other>>,
}

/// Bytes of the packed parts kept in the extra itself. A corpus flow's packs to 8-56
/// bytes (its repeating strings numbers): in place, the extra is one allocation, and
/// a response reads it without a second pointer (a cache miss per such flow in a scan
/// of a large ring). 54 makes [`Packed`] 56 bytes and the extra in its `Arc` 80.
pub const PACKED_INLINE: usize = 54;

/// The packed parts' bytes: in place when at most [`PACKED_INLINE`] long, else on the
/// heap.
#[derive(Clone, PartialEq, Eq)]
pub enum Packed {
    Inline { len: u8, bytes: [u8; PACKED_INLINE] },
    Heap(Box<[u8]>),
}

impl Packed {
    /// `bytes`, in place if they fit.
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= PACKED_INLINE {
            let mut inline = [0; PACKED_INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Self::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Self::Heap(bytes.into())
        }
    }
}

impl std::ops::Deref for Packed {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Packed").field(&&**self).finish()
    }
}

/// The parts [`Rare::packed`] holds, decoded: the `Flow` fields of the same numbers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PackedParts {
    #[prost(string, repeated, tag = "13")]
    pub source_names: Vec<String>,
    #[prost(string, repeated, tag = "14")]
    pub destination_names: Vec<String>,
    #[prost(message, optional, tag = "15")]
    pub l7: Option<flow::Layer7>,
}

/// Writes the protobuf encoding of a flow's names and L7 record, as the `Flow` fields
/// they are, to `out` (the encoder then replaces their repeating strings by their
/// numbers, see `l7`); false when the flow has none.
pub(super) fn encode_packed(flow: &Flow, out: &mut Vec<u8>) -> bool {
    use prost::encoding::{message, string};
    if flow.source_names.is_empty() && flow.destination_names.is_empty() && flow.l7.is_none() {
        return false;
    }
    string::encode_repeated(13, &flow.source_names, out);
    string::encode_repeated(14, &flow.destination_names, out);
    if let Some(l7) = &flow.l7 {
        message::encode(15, l7, out);
    }
    true
}

/// The seldom-present rare parts, and any trace context, UUID, IP, Ethernet or L4 part
/// the record could not pack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Other {
    pub trace_context: Option<flow::TraceContext>,
    pub uuid: String,
    pub ip: Option<flow::Ip>,
    pub ethernet: Option<flow::Ethernet>,
    pub l4: Option<flow::Layer4>,
    pub tunnel: Option<flow::Tunnel>,
    pub file: Option<flow::FileInfo>,
    pub ip_trace_id: Option<flow::IpTraceId>,
    pub socket_cookie: u64,
    pub cgroup_id: u64,
    pub extensions: Option<pbjson_types::Any>,
    pub aggregate: Option<flow::Aggregate>,
}

/// Which of the parts the record may pack did not fit in `r`.
struct Unpacked {
    uuid: bool,
    ip: bool,
    ethernet: bool,
    l4: bool,
    trace: bool,
}

impl Unpacked {
    fn of(r: &Record) -> Self {
        let flags = r[W_FLAGS];
        Unpacked {
            uuid: bits(flags, UUID_SHIFT, 2) == UUID_EXTRA,
            ip: flags & F_IP == 0,
            ethernet: flags & F_ETHERNET == 0,
            l4: bits(r[W_L4], 0, 4) == L4_EXTRA,
            trace: flags & F_TRACE == 0,
        }
    }
}

impl Rare {
    /// Moves out of `flow` everything record `r` and the tables do not hold, but for
    /// the packed parts (the encoder packs them, see [`encode_packed`]).
    pub fn take(flow: &mut Flow, r: &Record) -> Self {
        let unpacked = Unpacked::of(r);
        let other = Other {
            trace_context: if unpacked.trace {
                flow.trace_context.take()
            } else {
                None
            },
            uuid: if unpacked.uuid {
                std::mem::take(&mut flow.uuid)
            } else {
                String::new()
            },
            ip: if unpacked.ip { flow.ip.take() } else { None },
            ethernet: if unpacked.ethernet {
                flow.ethernet.take()
            } else {
                None
            },
            l4: if unpacked.l4 { flow.l4.take() } else { None },
            tunnel: flow.tunnel.take(),
            file: flow.file.take(),
            ip_trace_id: flow.ip_trace_id.take(),
            socket_cookie: flow.socket_cookie,
            cgroup_id: flow.cgroup_id,
            extensions: flow.extensions.take(),
            aggregate: flow.aggregate.take(),
        };
        Rare {
            packed: None,
            other: (other != Other::default()).then(|| Box::new(other)),
        }
    }

    /// Copies out of `flow` everything record `r` and the tables do not hold, but for
    /// the packed parts.
    pub fn copy(flow: &Flow, r: &Record) -> Self {
        let unpacked = Unpacked::of(r);
        let mut parts = Flow {
            trace_context: if unpacked.trace {
                flow.trace_context.clone()
            } else {
                None
            },
            uuid: if unpacked.uuid {
                flow.uuid.clone()
            } else {
                String::new()
            },
            ip: if unpacked.ip { flow.ip.clone() } else { None },
            ethernet: if unpacked.ethernet {
                flow.ethernet.clone()
            } else {
                None
            },
            l4: if unpacked.l4 { flow.l4.clone() } else { None },
            tunnel: flow.tunnel.clone(),
            file: flow.file.clone(),
            ip_trace_id: flow.ip_trace_id,
            socket_cookie: flow.socket_cookie,
            cgroup_id: flow.cgroup_id,
            extensions: flow.extensions.clone(),
            aggregate: flow.aggregate,
            ..Flow::default()
        };
        Rare::take(&mut parts, r)
    }

    /// The packed parts, decoded (their interned strings from `tables`).
    pub fn unpack(&self, tables: &super::Tables) -> Option<PackedParts> {
        // The bytes are this crate's stored form of these fields: they decode.
        self.packed
            .as_deref()
            .and_then(|bytes| super::l7::decode(tables, bytes))
    }
}

/// The rare parts a stored flow's view reads: a compact flow's [`Rare`], or a flow
/// stored whole.
#[derive(Clone, Copy)]
pub(super) enum RareView<'a> {
    Parts(&'a Rare),
    Whole(&'a Flow),
    None,
}

impl<'a> RareView<'a> {
    pub(super) fn uuid(self) -> &'a str {
        match self {
            RareView::Parts(r) => r.other.as_deref().map_or("", |o| &o.uuid),
            RareView::Whole(f) => &f.uuid,
            RareView::None => "",
        }
    }
    fn ip(self) -> Option<&'a flow::Ip> {
        match self {
            RareView::Parts(r) => r.other.as_deref().and_then(|o| o.ip.as_ref()),
            RareView::Whole(f) => f.ip.as_ref(),
            RareView::None => None,
        }
    }
    fn l4(self) -> Option<&'a flow::Layer4> {
        match self {
            RareView::Parts(r) => r.other.as_deref().and_then(|o| o.l4.as_ref()),
            RareView::Whole(f) => f.l4.as_ref(),
            RareView::None => None,
        }
    }
    pub(super) fn source_ip(self) -> Option<FlowIp<'a>> {
        parts::source_ip(self.ip())
    }
    pub(super) fn source_ip_xlated(self) -> Option<FlowIp<'a>> {
        parts::source_ip_xlated(self.ip())
    }
    pub(super) fn destination_ip(self) -> Option<FlowIp<'a>> {
        parts::destination_ip(self.ip())
    }
    pub(super) fn ip_version(self) -> i32 {
        parts::ip_version(self.ip())
    }
    pub(super) fn encrypted(self) -> bool {
        parts::encrypted(self.ip())
    }
    pub(super) fn l4_protocol(self) -> Option<L4Protocol> {
        parts::l4_protocol(self.l4())
    }
    pub(super) fn ports(self) -> Option<(u16, u16)> {
        parts::ports(self.l4())
    }
    pub(super) fn tcp_flags(self) -> Option<TcpFlagBits> {
        parts::tcp_flags(self.l4())
    }
    pub(super) fn trace_id(self) -> &'a str {
        parts::trace_id(match self {
            RareView::Parts(r) => r.other.as_deref().and_then(|o| o.trace_context.as_ref()),
            RareView::Whole(f) => f.trace_context.as_ref(),
            RareView::None => None,
        })
    }
    pub(super) fn ip_trace_id(self) -> u64 {
        parts::ip_trace_id(match self {
            RareView::Parts(r) => r.other.as_deref().and_then(|o| o.ip_trace_id.as_ref()),
            RareView::Whole(f) => f.ip_trace_id.as_ref(),
            RareView::None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_bytes_stay_in_place_up_to_the_limit_and_go_to_the_heap_beyond() {
        for len in [
            0,
            1,
            PACKED_INLINE - 1,
            PACKED_INLINE,
            PACKED_INLINE + 1,
            4096,
        ] {
            let bytes: Vec<u8> = (0..len).map(|k| k as u8).collect();
            let stored = Packed::new(&bytes);
            assert_eq!(&*stored, &bytes[..], "{len}");
            assert_eq!(
                matches!(stored, Packed::Inline { .. }),
                len <= PACKED_INLINE,
                "{len}"
            );
        }
    }
}
