//! The compact form in which the ring stores flows.
//!
//! A stored flow is a fixed [`Record`] of 14 words (112 bytes) plus, for the few flows
//! that need it, a shared [`Extra`]:
//!
//! - the fields every L3/L4 flow has (time, UUID, IPs, MACs, ports, TCP flags, verdict,
//!   drop reason, event type, observation point, direction, reply flags, ...) are
//!   packed into the record's bits;
//! - endpoints and the per-node "context" (node name and labels, emitter, interface,
//!   services, policies, summary) repeat across flows and are interned in [`Tables`];
//!   the record holds their numbers;
//! - rare or large parts (L7, DNS names, tunnel, trace context, ...) go into an
//!   [`Extra::Rare`] ([`Rare`]: only those parts, each as large as what it holds);
//! - a flow with a value the record cannot hold exactly (an unknown enum beyond 255, a
//!   non-canonical IP text, a full table, ...) is kept whole as [`Extra::Full`].
//!
//! Converting back gives a `Flow` equal to the original in every case, deprecated
//! fields included.

#![allow(deprecated)]

mod l7;
mod rare;
mod same;
pub mod table;
pub mod text;
mod view;
mod wire;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use proto::flow::{self, layer4, Endpoint, Flow, LostEvent};

pub use self::rare::{Other, Packed, PackedParts, Rare};
use self::table::{FastHasher, Interner, Ref, Table};
pub use self::view::StoredFlow;

/// Words in a record.
pub const WORDS: usize = 14;

/// The fixed part of a stored event.
pub type Record = [u64; WORDS];

/// The shared, rarely present part of a stored event.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra {
    /// The rare parts of a compact flow.
    Rare(Rare),
    /// A flow that the record cannot hold exactly, whole (boxed: a `Flow` is large,
    /// and every extra is as large as its largest kind).
    Full(Box<Flow>),
    /// A lost-events notice (boxed, as `Full`).
    Lost(Box<LostEvent>),
}

/// A stored event as the writer hands it to the ring.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// The fixed part.
    pub record: Record,
    /// The rare part, if any.
    pub extra: Option<Arc<Extra>>,
}

// === record layout ===
//
// The first `HEAD` words hold what filters and time windows read most (time, L4,
// endpoints, context, enums, flags): a scan copies them out of the slot and loads the
// rest (UUID, addresses, MACs) only for the flows it asks more of.

/// Seconds of the timestamp.
pub(crate) const W_SECS: usize = 0;
/// L4 kind (0..4), TCP flags present (4), flags (5..14), ports or ICMP type/code
/// (16..32, 32..48), IP version (48..50), source/destination IP kinds (50..52,
/// 52..54), encrypted (54).
pub(crate) const W_L4: usize = 1;
/// Source endpoint (0..32) and destination endpoint (32..64) numbers.
pub(crate) const W_EP: usize = 2;
/// Context number (0..32) and timestamp nanoseconds (32..64).
pub(crate) const W_CTX: usize = 3;
/// Verdict (0..8), drop reason (8..16), event type (16..24) and sub type (24..32),
/// observation point (32..40), trace reason (40..48), direction (48..50), is_reply
/// (50..52: none, false, true), deprecated reply (52), flow type (53..55), auth (55..57).
pub(crate) const W_ENUMS: usize = 4;
/// Kind (0..2) and presence flags.
pub(crate) const W_FLAGS: usize = 5;
/// The words a reader copies with the slot's stamp checked (see [`Head`]).
pub const HEAD: usize = 6;
pub(crate) const W_UUID: usize = 6; // and 7
/// Source address (IPv4 in the first word, IPv6 in both); the second word holds the
/// trace id's high half when the address is not IPv6 (`F_TRACE`).
pub(crate) const W_SRC_IP: usize = 8; // and 9
/// Destination address as the source's; the second word the trace id's low half.
pub(crate) const W_DST_IP: usize = 10; // and 11
/// Source MAC (bits 0..48) and proxy port (48..64).
pub(crate) const W_MAC_SRC: usize = 12;
/// Destination MAC (0..48), policy match type (48..56), deprecated drop reason (56..64).
pub(crate) const W_MAC_DST: usize = 13;

/// The first [`HEAD`] words of a record.
pub type Head = [u64; HEAD];
/// The words of a record after its head.
pub type Rest = [u64; WORDS - HEAD];

pub(crate) const KIND_COMPACT: u64 = 0;
pub(crate) const KIND_FULL: u64 = 1;
pub(crate) const KIND_LOST: u64 = 2;
pub(crate) const F_EXTRA: u64 = 1 << 2;
pub(crate) const F_TIME: u64 = 1 << 3;
pub(crate) const F_EVENT_TYPE: u64 = 1 << 4;
pub(crate) const F_IP: u64 = 1 << 5;
pub(crate) const F_ETHERNET: u64 = 1 << 6;
/// UUID kind at bits 7..9: empty, packed, in the extra.
pub(crate) const UUID_SHIFT: u32 = 7;
pub(crate) const UUID_EMPTY: u64 = 0;
pub(crate) const UUID_PACKED: u64 = 1;
pub(crate) const UUID_EXTRA: u64 = 2;
/// The trace id is packed in the low words of the address pairs (`W_SRC_IP + 1`,
/// `W_DST_IP + 1`), which only IPv6 addresses use: most flows of real captures carry
/// a trace context, and this keeps it out of the extra.
pub(crate) const F_TRACE: u64 = 1 << 9;

pub(crate) const L4_NONE: u64 = 0;
pub(crate) const L4_EMPTY: u64 = 1;
pub(crate) const L4_TCP: u64 = 2;
pub(crate) const L4_UDP: u64 = 3;
pub(crate) const L4_ICMPV4: u64 = 4;
pub(crate) const L4_ICMPV6: u64 = 5;
pub(crate) const L4_SCTP: u64 = 6;
pub(crate) const L4_EXTRA: u64 = 7;

#[inline]
pub(crate) fn bits(word: u64, shift: u32, width: u32) -> u64 {
    (word >> shift) & ((1u64 << width) - 1)
}

/// `value` if it fits in `width` bits and is not negative.
fn small(value: i64, width: u32) -> Option<u64> {
    u64::try_from(value).ok().filter(|v| *v < (1u64 << width))
}

/// The record's kind (from its head, or the whole record).
#[inline]
pub fn kind(record: &[u64]) -> u64 {
    record[W_FLAGS] & 3
}

/// The event's timestamp (from its head, or the whole record).
#[inline]
pub fn time(record: &[u64]) -> Option<pbjson_types::Timestamp> {
    (record[W_FLAGS] & F_TIME != 0).then(|| pbjson_types::Timestamp {
        seconds: record[W_SECS] as i64,
        nanos: (record[W_CTX] >> 32) as u32 as i32,
    })
}

fn set_time(record: &mut Record, time: Option<&pbjson_types::Timestamp>) {
    if let Some(t) = time {
        record[W_SECS] = t.seconds as u64;
        record[W_CTX] |= u64::from(t.nanos as u32) << 32;
        record[W_FLAGS] |= F_TIME;
    }
}

// === tables ===

/// Values shared by many flows, readable by every reader without locks.
pub struct Tables {
    /// Names these tables among all of the process's (see [`proto::filter::Interned`]).
    pub id: u64,
    /// Interned endpoints.
    pub endpoints: Table<Endpoint>,
    /// Interned node contexts, each a `Flow` holding only context fields.
    pub contexts: Table<Flow>,
    /// Each interned endpoint's protobuf encoding (an `Endpoint` message's fields).
    pub endpoint_wire: Table<Box<[u8]>>,
    /// Each interned context's protobuf encoding (its fields as `Flow` fields).
    pub context_wire: Table<Box<[u8]>>,
    /// Strings that repeat across L7 records (see `l7`).
    pub l7_strings: Table<Box<str>>,
}

impl Default for Tables {
    fn default() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            endpoints: Table::default(),
            contexts: Table::default(),
            endpoint_wire: Table::default(),
            context_wire: Table::default(),
            l7_strings: Table::default(),
        }
    }
}

/// Moves the context fields of `from` into a new flow (or clones them).
fn context_of(from: &Flow) -> Flow {
    Flow {
        node_name: from.node_name.clone(),
        node_labels: from.node_labels.clone(),
        emitter: from.emitter.clone(),
        interface: from.interface.clone(),
        source_service: from.source_service.clone(),
        destination_service: from.destination_service.clone(),
        summary: from.summary.clone(),
        egress_allowed_by: from.egress_allowed_by.clone(),
        ingress_allowed_by: from.ingress_allowed_by.clone(),
        egress_denied_by: from.egress_denied_by.clone(),
        ingress_denied_by: from.ingress_denied_by.clone(),
        policy_log: from.policy_log.clone(),
        sock_xlate_point: from.sock_xlate_point,
        debug_capture_point: from.debug_capture_point,
        ..Flow::default()
    }
}

/// Copies the context fields of `ctx` into `to`.
fn apply_context(ctx: &Flow, to: &mut Flow) {
    to.node_name.clone_from(&ctx.node_name);
    to.node_labels.clone_from(&ctx.node_labels);
    to.emitter.clone_from(&ctx.emitter);
    to.interface.clone_from(&ctx.interface);
    to.source_service.clone_from(&ctx.source_service);
    to.destination_service.clone_from(&ctx.destination_service);
    to.summary.clone_from(&ctx.summary);
    to.egress_allowed_by.clone_from(&ctx.egress_allowed_by);
    to.ingress_allowed_by.clone_from(&ctx.ingress_allowed_by);
    to.egress_denied_by.clone_from(&ctx.egress_denied_by);
    to.ingress_denied_by.clone_from(&ctx.ingress_denied_by);
    to.policy_log.clone_from(&ctx.policy_log);
    to.sock_xlate_point = ctx.sock_xlate_point;
    to.debug_capture_point = ctx.debug_capture_point;
}

/// Writes the context fields of `flow` as interning key bytes.
fn context_key(flow: &Flow, buf: &mut Vec<u8>) {
    use prost::encoding::{int32, message, string};
    string::encode(11, &flow.node_name, buf);
    string::encode_repeated(37, &flow.node_labels, buf);
    if let Some(e) = &flow.emitter {
        message::encode(41, e, buf);
    }
    if let Some(i) = &flow.interface {
        message::encode(28, i, buf);
    }
    if let Some(s) = &flow.source_service {
        message::encode(20, s, buf);
    }
    if let Some(s) = &flow.destination_service {
        message::encode(21, s, buf);
    }
    string::encode(100_000, &flow.summary, buf);
    message::encode_repeated(21_001, &flow.egress_allowed_by, buf);
    message::encode_repeated(21_002, &flow.ingress_allowed_by, buf);
    message::encode_repeated(21_004, &flow.egress_denied_by, buf);
    message::encode_repeated(21_005, &flow.ingress_denied_by, buf);
    string::encode_repeated(21_006, &flow.policy_log, buf);
    int32::encode(31, &flow.sock_xlate_point, buf);
    int32::encode(27, &flow.debug_capture_point, buf);
}

/// Whether the context fields of `a` and `b` are equal.
fn context_eq(a: &Flow, b: &Flow) -> bool {
    a.sock_xlate_point == b.sock_xlate_point
        && a.debug_capture_point == b.debug_capture_point
        && same::str(&a.summary, &b.summary)
        && same::str(&a.node_name, &b.node_name)
        && same::interface(a.interface.as_ref(), b.interface.as_ref())
        && same::service(a.source_service.as_ref(), b.source_service.as_ref())
        && same::service(
            a.destination_service.as_ref(),
            b.destination_service.as_ref(),
        )
        && same::policies(&a.egress_allowed_by, &b.egress_allowed_by)
        && same::policies(&a.ingress_allowed_by, &b.ingress_allowed_by)
        && same::policies(&a.egress_denied_by, &b.egress_denied_by)
        && same::policies(&a.ingress_denied_by, &b.ingress_denied_by)
        && same::strs(&a.policy_log, &b.policy_log)
        && same::emitter(a.emitter.as_ref(), b.emitter.as_ref())
        && same::strs(&a.node_labels, &b.node_labels)
}

fn context_is_empty(flow: &Flow) -> bool {
    flow.node_name.is_empty()
        && flow.node_labels.is_empty()
        && flow.emitter.is_none()
        && flow.interface.is_none()
        && flow.source_service.is_none()
        && flow.destination_service.is_none()
        && flow.summary.is_empty()
        && flow.egress_allowed_by.is_empty()
        && flow.ingress_allowed_by.is_empty()
        && flow.egress_denied_by.is_empty()
        && flow.ingress_denied_by.is_empty()
        && flow.policy_log.is_empty()
        && flow.sock_xlate_point == 0
        && flow.debug_capture_point == 0
}

// === encoding ===

/// The writer's side of the compact form: packs flows and interns shared values.
pub struct Encoder {
    tables: Arc<Tables>,
    endpoints: Interner,
    contexts: Interner,
    l7_strings: l7::L7Strings,
    scratch: Vec<u8>,
    full_fallbacks: u64,
    /// Recently used endpoints by `(ID, identity)`, checked for equality before use:
    /// most flows skip encoding their endpoints to find them.
    endpoint_cache: HashMap<(u32, u32), Ref, BuildHasherDefault<FastHasher>>,
    /// Recently used contexts by interface index, checked the same way.
    context_cache: HashMap<u32, Ref, BuildHasherDefault<FastHasher>>,
}

/// Entries in each lookup cache before it is cleared (bounds its memory).
const CACHE_LIMIT: usize = 4096;

/// The largest scratch buffer an encoder (and its L7 packer) keeps between flows (a
/// flow with a longer L7 record gets one of its own).
const SCRATCH_KEPT: usize = 64 * 1024;

impl Encoder {
    /// Creates an encoder filling `tables`.
    pub fn new(tables: Arc<Tables>) -> Self {
        Self {
            tables,
            endpoints: Interner::default(),
            contexts: Interner::default(),
            l7_strings: l7::L7Strings::default(),
            scratch: Vec::with_capacity(512),
            full_fallbacks: 0,
            endpoint_cache: HashMap::default(),
            context_cache: HashMap::default(),
        }
    }

    /// The tables this encoder fills.
    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    /// Flows stored whole because the record could not hold them exactly.
    pub fn full_fallbacks(&self) -> u64 {
        self.full_fallbacks
    }

    /// Number of distinct endpoints interned so far.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Encodes a lost-events notice observed at `time`.
    pub fn encode_lost(&self, lost: LostEvent, time: pbjson_types::Timestamp) -> Encoded {
        let mut record = [0; WORDS];
        record[W_FLAGS] = KIND_LOST | F_EXTRA;
        set_time(&mut record, Some(&time));
        Encoded {
            record,
            extra: Some(Arc::new(Extra::Lost(Box::new(lost)))),
        }
    }

    /// Encodes a flow. `on_new_endpoint` sees each endpoint the first time it is
    /// interned (the observer tracks namespaces with it).
    pub fn encode(
        &mut self,
        mut flow: Flow,
        on_new_endpoint: &mut dyn FnMut(&Endpoint),
    ) -> Encoded {
        let Some(mut record) = self.pack(&flow, on_new_endpoint) else {
            return self.full(flow);
        };
        let extra = has_rare(&flow, &record).then(|| {
            record[W_FLAGS] |= F_EXTRA;
            let packed = self.packed_parts(&flow);
            let mut rare = Rare::take(&mut flow, &record);
            rare.packed = packed;
            Arc::new(Extra::Rare(rare))
        });
        Encoded { record, extra }
    }

    /// Encodes a flow the caller keeps; only its rare parts are copied.
    pub fn encode_ref(
        &mut self,
        flow: &Flow,
        on_new_endpoint: &mut dyn FnMut(&Endpoint),
    ) -> Encoded {
        let Some(mut record) = self.pack(flow, on_new_endpoint) else {
            return self.full(flow.clone());
        };
        let extra = has_rare(flow, &record).then(|| {
            record[W_FLAGS] |= F_EXTRA;
            let mut rare = Rare::copy(flow, &record);
            rare.packed = self.packed_parts(flow);
            rare
        });
        Encoded {
            record,
            extra: extra.map(|rare| Arc::new(Extra::Rare(rare))),
        }
    }

    /// The flow's names and L7 record as a compact flow keeps them: encoded, their
    /// strings that repeat across flows replaced by their numbers in the tables (see
    /// `l7`). `None` when it has neither.
    fn packed_parts(&mut self, flow: &Flow) -> Option<Packed> {
        self.scratch.clear();
        if !rare::encode_packed(flow, &mut self.scratch) {
            return None;
        }
        let packed = self.l7_strings.pack(&self.tables.l7_strings, &self.scratch);
        if self.scratch.capacity() > SCRATCH_KEPT {
            self.scratch = Vec::new();
        }
        Some(packed)
    }

    /// Packs the record and interns shared values; `None` if the flow must be stored
    /// whole.
    fn pack(&mut self, flow: &Flow, on_new_endpoint: &mut dyn FnMut(&Endpoint)) -> Option<Record> {
        let mut record = pack_fixed(flow)?;
        let src = self.intern_endpoint(flow.source.as_ref(), on_new_endpoint)?;
        let dst = self.intern_endpoint(flow.destination.as_ref(), on_new_endpoint)?;
        let ctx = self.intern_context(flow)?;
        record[W_EP] = u64::from(src) | u64::from(dst) << 32;
        record[W_CTX] |= u64::from(ctx);
        Some(record)
    }

    fn full(&mut self, flow: Flow) -> Encoded {
        self.full_fallbacks += 1;
        let mut record = [0; WORDS];
        record[W_FLAGS] = KIND_FULL | F_EXTRA;
        set_time(&mut record, flow.time.as_ref());
        Encoded {
            record,
            extra: Some(Arc::new(Extra::Full(Box::new(flow)))),
        }
    }

    fn intern_endpoint(
        &mut self,
        endpoint: Option<&Endpoint>,
        on_new: &mut dyn FnMut(&Endpoint),
    ) -> Option<Ref> {
        let Some(endpoint) = endpoint else {
            return Some(0);
        };
        let cache_key = (endpoint.id, endpoint.identity);
        if let Some(&r) = self.endpoint_cache.get(&cache_key) {
            if self
                .tables
                .endpoints
                .get(r)
                .is_some_and(|interned| same::endpoint(interned, endpoint))
            {
                return Some(r);
            }
        }
        self.scratch.clear();
        prost::Message::encode_raw(endpoint, &mut self.scratch);
        let mut added = false;
        let r = self.endpoints.intern_encoded(
            &self.tables.endpoints,
            &self.tables.endpoint_wire,
            &self.scratch,
            || {
                added = true;
                endpoint.clone()
            },
        )?;
        if added {
            on_new(endpoint);
        }
        if self.endpoint_cache.len() >= CACHE_LIMIT {
            self.endpoint_cache.clear();
        }
        self.endpoint_cache.insert(cache_key, r);
        Some(r)
    }

    fn intern_context(&mut self, flow: &Flow) -> Option<Ref> {
        if context_is_empty(flow) {
            return Some(0);
        }
        let cache_key = flow.interface.as_ref().map_or(u32::MAX, |i| i.index);
        if let Some(&r) = self.context_cache.get(&cache_key) {
            if self
                .tables
                .contexts
                .get(r)
                .is_some_and(|c| context_eq(c, flow))
            {
                return Some(r);
            }
        }
        self.scratch.clear();
        context_key(flow, &mut self.scratch);
        let r = self.contexts.intern_encoded(
            &self.tables.contexts,
            &self.tables.context_wire,
            &self.scratch,
            || context_of(flow),
        )?;
        if self.context_cache.len() >= CACHE_LIMIT {
            self.context_cache.clear();
        }
        self.context_cache.insert(cache_key, r);
        Some(r)
    }
}

/// Packs the fixed fields, or `None` if one does not fit exactly.
fn pack_fixed(flow: &Flow) -> Option<Record> {
    let mut r = [0u64; WORDS];
    set_time(&mut r, flow.time.as_ref());

    let uuid_kind = if flow.uuid.is_empty() {
        UUID_EMPTY
    } else if let Some((hi, lo)) = text::pack_uuid(&flow.uuid) {
        r[W_UUID] = hi;
        r[W_UUID + 1] = lo;
        UUID_PACKED
    } else {
        UUID_EXTRA
    };
    r[W_FLAGS] |= uuid_kind << UUID_SHIFT;

    if let Some(ip) = &flow.ip {
        let packed = (ip.source_xlated.is_empty())
            .then(|| Some((text::pack_ip(&ip.source)?, text::pack_ip(&ip.destination)?)))
            .flatten();
        let version = small(i64::from(ip.ip_version), 2);
        if let (Some(((sk, sh, sl), (dk, dh, dl))), Some(version)) = (packed, version) {
            r[W_SRC_IP] = sh;
            r[W_SRC_IP + 1] = sl;
            r[W_DST_IP] = dh;
            r[W_DST_IP + 1] = dl;
            r[W_L4] |= version << 48 | sk << 50 | dk << 52 | u64::from(ip.encrypted) << 54;
            r[W_FLAGS] |= F_IP;
        }
    }

    pack_trace(&mut r, flow.trace_context.as_ref());

    if let Some(eth) = &flow.ethernet {
        if let (Some(s), Some(d)) = (
            text::pack_mac(&eth.source),
            text::pack_mac(&eth.destination),
        ) {
            r[W_MAC_SRC] = s;
            r[W_MAC_DST] = d;
            r[W_FLAGS] |= F_ETHERNET;
        }
    }
    r[W_MAC_SRC] |= small(i64::from(flow.proxy_port), 16)? << 48;
    r[W_MAC_DST] |= small(i64::from(flow.policy_match_type), 8)? << 48
        | small(i64::from(flow.drop_reason), 8)? << 56;

    r[W_L4] |= pack_l4(flow.l4.as_ref());

    let mut enums = small(flow.verdict.into(), 8)?
        | small(flow.drop_reason_desc.into(), 8)? << 8
        | small(flow.trace_observation_point.into(), 8)? << 32
        | small(flow.trace_reason.into(), 8)? << 40
        | small(flow.traffic_direction.into(), 2)? << 48
        | flow.is_reply.as_ref().map_or(0, |v| 1 + u64::from(v.value)) << 50
        | u64::from(flow.reply) << 52
        | small(flow.r#type.into(), 2)? << 53
        | small(flow.auth_type.into(), 2)? << 55;
    if let Some(et) = &flow.event_type {
        enums |= small(et.r#type.into(), 8)? << 16 | small(et.sub_type.into(), 8)? << 24;
        r[W_FLAGS] |= F_EVENT_TYPE;
    }
    r[W_ENUMS] = enums;
    r[W_FLAGS] |= KIND_COMPACT;
    Some(r)
}

/// Packs a trace context holding just a trace id of the W3C form into the address
/// words no IPv4 address uses (see [`F_TRACE`]); any other is left to the extra.
fn pack_trace(r: &mut Record, trace: Option<&flow::TraceContext>) {
    let v6 = |shift| bits(r[W_L4], shift, 2) == text::IP_V6;
    if r[W_FLAGS] & F_IP != 0 && (v6(50) || v6(52)) {
        return;
    }
    let packed = trace
        .and_then(|t| t.parent.as_ref())
        .and_then(|p| text::pack_trace_id(&p.trace_id));
    if let Some((hi, lo)) = packed {
        r[W_SRC_IP + 1] = hi;
        r[W_DST_IP + 1] = lo;
        r[W_FLAGS] |= F_TRACE;
    }
}

/// The trace context packed by [`pack_trace`], if any.
pub(crate) fn packed_trace(r: &Record) -> Option<(u64, u64)> {
    (r[W_FLAGS] & F_TRACE != 0).then(|| (r[W_SRC_IP + 1], r[W_DST_IP + 1]))
}

/// Packs the L4 part into its bits of `W_L4`.
fn pack_l4(l4: Option<&flow::Layer4>) -> u64 {
    let Some(l4) = l4 else { return L4_NONE };
    let pair = |kind: u64, a: u32, b: u32| match (small(a.into(), 16), small(b.into(), 16)) {
        (Some(a), Some(b)) => kind | a << 16 | b << 32,
        _ => L4_EXTRA,
    };
    match &l4.protocol {
        None => L4_EMPTY,
        Some(layer4::Protocol::Tcp(tcp)) => {
            let packed = pair(L4_TCP, tcp.source_port, tcp.destination_port);
            match (&tcp.flags, packed) {
                (_, L4_EXTRA) => L4_EXTRA,
                (None, p) => p,
                (Some(f), p) => p | 1 << 4 | u64::from(proto_flag_bits(f)) << 5,
            }
        }
        Some(layer4::Protocol::Udp(udp)) => pair(L4_UDP, udp.source_port, udp.destination_port),
        Some(layer4::Protocol::Sctp(s)) => pair(L4_SCTP, s.source_port, s.destination_port),
        Some(layer4::Protocol::IcmPv4(i)) => pair(L4_ICMPV4, i.r#type, i.code),
        Some(layer4::Protocol::IcmPv6(i)) => pair(L4_ICMPV6, i.r#type, i.code),
        Some(layer4::Protocol::Vrrp(_) | layer4::Protocol::Igmp(_)) => L4_EXTRA,
    }
}

pub(crate) fn proto_flag_bits(f: &flow::TcpFlags) -> u16 {
    [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, set)| acc | u16::from(*set) << i)
}

/// Whether `flow` has anything the record and tables do not hold.
fn has_rare(flow: &Flow, r: &Record) -> bool {
    let flags = r[W_FLAGS];
    flow.l7.is_some()
        || !flow.source_names.is_empty()
        || !flow.destination_names.is_empty()
        || flow.tunnel.is_some()
        || (flow.trace_context.is_some() && flags & F_TRACE == 0)
        || flow.file.is_some()
        || flow.ip_trace_id.is_some()
        || flow.socket_cookie != 0
        || flow.cgroup_id != 0
        || flow.extensions.is_some()
        || flow.aggregate.is_some()
        || bits(flags, UUID_SHIFT, 2) == UUID_EXTRA
        || (flags & F_IP == 0 && flow.ip.is_some())
        || (flags & F_ETHERNET == 0 && flow.ethernet.is_some())
        || bits(r[W_L4], 0, 4) == L4_EXTRA
}

// === decoding ===

/// Rebuilds the flow of a stored record, or `None` for a lost-events notice.
pub fn to_flow(tables: &Tables, r: &Record, extra: Option<&Extra>) -> Option<Flow> {
    if kind(r) == KIND_FULL {
        return match extra {
            Some(Extra::Full(full)) => Some(Flow::clone(full)),
            _ => None,
        };
    }
    let mut flow = own_parts(tables, r, extra)?;
    let ep = r[W_EP];
    flow.source = tables.endpoints.get(ep as u32).cloned();
    flow.destination = tables.endpoints.get((ep >> 32) as u32).cloned();
    if let Some(ctx) = tables.contexts.get(r[W_CTX] as u32) {
        apply_context(ctx, &mut flow);
    }
    Some(flow)
}

/// The protobuf fields of a compact flow's shared parts as they are kept encoded in
/// `tables`: its source (field 8) and destination (9) endpoints, and its context's
/// fields. Together with the fields of [`own_parts`] they are the whole flow's fields
/// (in another order than prost writes them, which protobuf readers accept). `None`
/// for a flow stored whole, or if a part is missing from the tables.
pub fn shared_fields<'t>(
    tables: &'t Tables,
    r: &Record,
) -> Option<(SharedEndpoint<'t>, SharedEndpoint<'t>, &'t [u8])> {
    if kind(r) != KIND_COMPACT {
        return None;
    }
    let endpoint = |r: u64| -> Option<SharedEndpoint<'t>> {
        match r as u32 {
            0 => Some(None),
            r => tables.endpoint_wire.get(r).map(|b| Some(&**b)),
        }
    };
    let ep = r[W_EP];
    let ctx = match r[W_CTX] as u32 {
        0 => &[][..],
        c => tables.context_wire.get(c)?,
    };
    Some((endpoint(ep & 0xffff_ffff)?, endpoint(ep >> 32)?, ctx))
}

/// An endpoint's encoded fields, or `None` for a flow without that endpoint.
pub type SharedEndpoint<'t> = Option<&'t [u8]>;

/// A compact flow without its shared parts (endpoints and context): the fields the
/// record and its extra hold, read back from what [`wire`] writes of them for GetFlows
/// (one reading of the record's bits for both). `None` for a record that is not a
/// compact flow.
fn own_parts(tables: &Tables, r: &Record, extra: Option<&Extra>) -> Option<Flow> {
    let rare = match (kind(r), extra) {
        (KIND_COMPACT, Some(Extra::Rare(rare))) => Some(rare),
        (KIND_COMPACT, None) => None,
        _ => return None,
    };
    let mut bytes = Vec::new();
    wire::record_fields(r, &mut bytes);
    if let Some(rare) = rare {
        wire::rare_fields(tables, rare, &mut bytes);
    }
    // Bytes written by this crate's writer decode (tested on every sample flow
    // against the flow it stored).
    <Flow as prost::Message>::decode(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests;
