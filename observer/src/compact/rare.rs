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

/// What of a flow the record did not pack, as its `Flow` fields have it: the part
/// real captures have often (an L7 record) at hand, names and the seldom-present rest
/// behind one pointer each. 32 bytes, so an extra in its `Arc` is 56 (a trace context
/// the record could not pack, mostly IPv6 flows', is with the rest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rare {
    /// The L7 record's protobuf encoding (a `Layer7` message's fields), its strings
    /// that repeat across flows replaced by their numbers (see `l7`).
    pub l7: Option<Box<[u8]>>,
    pub names: Option<Box<Names>>,
    pub other: Option<Box<Other>>,
}

/// The protobuf encoding of an L7 record (the encoder then replaces its repeating
/// strings by their numbers, see `l7`).
fn encode_l7(l7: &flow::Layer7) -> Box<[u8]> {
    prost::Message::encode_to_vec(l7).into_boxed_slice()
}

/// DNS names of a flow's ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    pub source_names: Vec<String>,
    pub destination_names: Vec<String>,
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
    /// Moves out of `flow` everything record `r` and the tables do not hold.
    pub fn take(flow: &mut Flow, r: &Record) -> Self {
        let unpacked = Unpacked::of(r);
        let names = Names {
            source_names: std::mem::take(&mut flow.source_names),
            destination_names: std::mem::take(&mut flow.destination_names),
        };
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
            l7: flow.l7.take().as_ref().map(encode_l7),
            names: (names != Names::default()).then(|| Box::new(names)),
            other: (other != Other::default()).then(|| Box::new(other)),
        }
    }

    /// Copies out of `flow` everything record `r` and the tables do not hold.
    pub fn copy(flow: &Flow, r: &Record) -> Self {
        let unpacked = Unpacked::of(r);
        let mut parts = Flow {
            trace_context: if unpacked.trace {
                flow.trace_context.clone()
            } else {
                None
            },
            source_names: flow.source_names.clone(),
            destination_names: flow.destination_names.clone(),
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
        let mut rare = Rare::take(&mut parts, r);
        rare.l7 = flow.l7.as_ref().map(encode_l7);
        rare
    }

    /// The L7 record, decoded (its interned strings from `tables`).
    pub fn l7(&self, tables: &super::Tables) -> Option<flow::Layer7> {
        // The bytes are this crate's stored form of a `Layer7`: they decode.
        self.l7
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
    pub(super) fn source_names(self) -> &'a [String] {
        match self {
            RareView::Parts(r) => r.names.as_deref().map_or(&[], |n| &n.source_names),
            RareView::Whole(f) => &f.source_names,
            RareView::None => &[],
        }
    }
    pub(super) fn destination_names(self) -> &'a [String] {
        match self {
            RareView::Parts(r) => r.names.as_deref().map_or(&[], |n| &n.destination_names),
            RareView::Whole(f) => &f.destination_names,
            RareView::None => &[],
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
