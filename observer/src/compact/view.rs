//! Filtering stored flows in place: [`StoredFlow`] reads the fields a filter asks
//! for straight from the record, the interned tables and the extra, without building
//! a `Flow`.

use std::cell::{Cell, OnceCell};
use std::sync::Arc;

use proto::filter::{parts, FlowIp, FlowView, Interned, L4Protocol, TcpFlagBits};
use proto::flow::{self, Flow};

use super::rare::{PackedParts, Rare, RareView};
use crate::ring::Ring;
use crate::store::FlowSlot;

use proto::get_flows::{EncodedField, EncodedResponse};

use super::{
    bits, kind, packed_trace, shared_fields, text, time, to_flow, wire, Extra, Head, Record, Rest,
    Tables, F_EVENT_TYPE, F_EXTRA, F_IP, HEAD, KIND_COMPACT, KIND_FULL, L4_EXTRA, L4_ICMPV4,
    L4_ICMPV6, L4_NONE, L4_SCTP, L4_TCP, L4_UDP, UUID_PACKED, UUID_SHIFT, WORDS, W_CTX, W_DST_IP,
    W_ENUMS, W_EP, W_FLAGS, W_L4, W_SRC_IP, W_UUID,
};

/// A stored flow as a reader copied it out of the ring.
pub struct StoredFlow<'a> {
    tables: &'a Tables,
    /// The record's first words, copied when the view is made.
    head: Head,
    /// The record's other words, loaded from `slot` the first time something asks
    /// for one of them (a scan whose filter reads only the head never loads them).
    rest: OnceCell<Rest>,
    /// The extra, loaded from `slot` the first time something asks for it.
    extra: OnceCell<Option<Arc<Extra>>>,
    slot: Option<(&'a Ring<FlowSlot>, u64)>,
    /// The slot was overwritten before its rest or extra was read.
    torn: Cell<bool>,
    uuid: OnceCell<[u8; 36]>,
    trace_id: OnceCell<[u8; 32]>,
    /// The packed parts (names, L7 record), decoded the first time a filter asks for
    /// them (boxed: scans make a view per flow, and few flows are asked for theirs).
    packed: LazyParts,
}

/// [`StoredFlow::packed`]'s cell. Dropping one that was never filled is a test in
/// place: the compiler's own drop of a cell of `PackedParts` was a call for every
/// flow a scan read, a sixth of the time of a scan without a filter.
#[derive(Default)]
struct LazyParts(OnceCell<Option<Box<PackedParts>>>);

impl Drop for LazyParts {
    #[inline]
    fn drop(&mut self) {
        if let Some(Some(parts)) = self.0.take() {
            drop_parts(parts);
        }
    }
}

#[cold]
#[inline(never)]
fn drop_parts(parts: Box<PackedParts>) {
    drop(parts);
}

thread_local! {
    /// The rare parts' fields of the response being written (one buffer per thread:
    /// a response writes them here first, as their length comes before them; the
    /// record's own fields go to a stack buffer).
    static RARE_FIELDS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest buffer [`RARE_FIELDS`] keeps between responses (a flow with a larger
/// L7 record gets one of its own).
const RARE_FIELDS_KEPT: usize = 64 * 1024;

static EMPTY: Flow = Flow {
    time: None,
    uuid: String::new(),
    emitter: None,
    verdict: 0,
    drop_reason: 0,
    auth_type: 0,
    ethernet: None,
    ip: None,
    l4: None,
    tunnel: None,
    source: None,
    destination: None,
    r#type: 0,
    node_name: String::new(),
    node_labels: Vec::new(),
    source_names: Vec::new(),
    destination_names: Vec::new(),
    l7: None,
    reply: false,
    event_type: None,
    source_service: None,
    destination_service: None,
    traffic_direction: 0,
    policy_match_type: 0,
    trace_observation_point: 0,
    trace_reason: 0,
    file: None,
    ip_trace_id: None,
    drop_reason_desc: 0,
    is_reply: None,
    debug_capture_point: 0,
    interface: None,
    proxy_port: 0,
    trace_context: None,
    sock_xlate_point: 0,
    socket_cookie: 0,
    cgroup_id: 0,
    summary: String::new(),
    extensions: None,
    egress_allowed_by: Vec::new(),
    ingress_allowed_by: Vec::new(),
    egress_denied_by: Vec::new(),
    ingress_denied_by: Vec::new(),
    policy_log: Vec::new(),
    aggregate: None,
};

impl<'a> StoredFlow<'a> {
    /// Wraps a copied record. Returns `None` for a record that is not a flow.
    #[inline]
    pub fn new(tables: &'a Tables, record: Record, extra: Option<Arc<Extra>>) -> Option<Self> {
        let mut head = [0; HEAD];
        let mut rest = [0; WORDS - HEAD];
        head.copy_from_slice(&record[..HEAD]);
        rest.copy_from_slice(&record[HEAD..]);
        Self::from_parts(tables, head, OnceCell::from(rest), OnceCell::from(extra))
    }

    #[inline]
    fn from_parts(
        tables: &'a Tables,
        head: Head,
        rest: OnceCell<Rest>,
        extra: OnceCell<Option<Arc<Extra>>>,
    ) -> Option<Self> {
        match kind(&head) {
            KIND_COMPACT | KIND_FULL => Some(Self {
                tables,
                head,
                rest,
                extra,
                slot: None,
                torn: Cell::new(false),
                uuid: OnceCell::new(),
                trace_id: OnceCell::new(),
                packed: LazyParts::default(),
            }),
            _ => None,
        }
    }

    /// Wraps the head of a record read from position `pos` of `ring`; the rest of the
    /// record and the extra are read from the slot only when asked for. Check
    /// [`StoredFlow::torn`] after using the flow.
    #[inline]
    pub fn in_ring(
        tables: &'a Tables,
        head: Head,
        ring: &'a Ring<FlowSlot>,
        pos: u64,
    ) -> Option<Self> {
        let extra = if head[W_FLAGS] & F_EXTRA != 0 {
            OnceCell::new()
        } else {
            OnceCell::from(None)
        };
        let mut flow = Self::from_parts(tables, head, OnceCell::new(), extra)?;
        flow.slot = Some((ring, pos));
        Some(flow)
    }

    /// The record's words after its head, loaded from the slot the first time.
    #[inline]
    fn rest(&self) -> &Rest {
        self.rest.get_or_init(|| {
            let Some((ring, pos)) = self.slot else {
                return [0; WORDS - HEAD];
            };
            ring.load_checked(pos, FlowSlot::rest).unwrap_or_else(|| {
                self.torn.set(true);
                [0; WORDS - HEAD]
            })
        })
    }

    /// Word `i` of the record.
    #[inline]
    fn w(&self, i: usize) -> u64 {
        if i < HEAD {
            self.head[i]
        } else {
            self.rest()[i - HEAD]
        }
    }

    /// The ring slot was overwritten before the flow's rest or extra was read from it:
    /// what was read of the flow is not whole, and the flow counts as overwritten.
    pub fn torn(&self) -> bool {
        self.torn.get()
    }

    #[inline]
    fn extra(&self) -> Option<&Extra> {
        self.extra
            .get_or_init(|| {
                let (ring, pos) = self.slot?;
                let loaded = ring.load_checked(pos, FlowSlot::extra);
                if loaded.is_none() {
                    self.torn.set(true);
                }
                loaded.flatten()
            })
            .as_deref()
    }

    /// The record's head (kind, time, endpoints, context, enums, flags).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The whole record (its rest loaded from the slot if not yet).
    pub fn record(&self) -> Record {
        let mut record = [0; WORDS];
        record[..HEAD].copy_from_slice(&self.head);
        record[HEAD..].copy_from_slice(self.rest());
        record
    }

    /// The flow's GetFlows response, written from the record, its extra and the
    /// tables' encoded endpoints and context, without building a `Flow` or encoding
    /// those shared parts again. `None` for a flow stored whole (it goes the way of
    /// [`StoredFlow::to_flow`]). Decodes as the response made from `to_flow` does.
    pub fn encode_response(&self) -> Option<EncodedResponse> {
        let record = self.record();
        let (source, destination, context) = shared_fields(self.tables, &record)?;
        let rare = match self.extra() {
            None => None,
            Some(Extra::Rare(rare)) => Some(rare),
            Some(_) => return None,
        };
        let own = wire::record_buf(&record);
        let respond = |rare: &[u8]| {
            let mut fields = [EncodedField::Fields(own.as_bytes()); 5];
            let mut n = 1;
            if !rare.is_empty() {
                fields[n] = EncodedField::Fields(rare);
                n += 1;
            }
            for (tag, endpoint) in [(8, source), (9, destination)] {
                if let Some(bytes) = endpoint {
                    fields[n] = EncodedField::Message(tag, bytes);
                    n += 1;
                }
            }
            if !context.is_empty() {
                fields[n] = EncodedField::Fields(context);
                n += 1;
            }
            let node_name = FlowView::node_name(self);
            EncodedResponse::from_fields(&fields[..n], node_name, time(&record).as_ref())
        };
        let Some(rare) = rare else {
            return Some(respond(&[]));
        };
        RARE_FIELDS.with_borrow_mut(|buf| {
            buf.clear();
            wire::rare_fields(self.tables, rare, buf);
            let response = respond(buf);
            if buf.capacity() > RARE_FIELDS_KEPT {
                *buf = Vec::new();
            }
            Some(response)
        })
    }

    /// Rebuilds the whole flow.
    pub fn to_flow(&self) -> Flow {
        to_flow(self.tables, &self.record(), self.extra()).unwrap_or_default()
    }

    /// The flow stored whole, when the record could not hold it.
    #[inline]
    fn full(&self) -> Option<&Flow> {
        // Only a whole-flow record has one: a compact record's extra is not read for it.
        if kind(&self.head) != KIND_FULL {
            return None;
        }
        match self.extra() {
            Some(Extra::Full(f)) => Some(f),
            _ => None,
        }
    }

    /// The rare parts (none if there are none).
    #[inline]
    fn rare(&self) -> RareView<'_> {
        match self.extra() {
            Some(Extra::Rare(rare)) => RareView::Parts(rare),
            Some(Extra::Full(f)) => RareView::Whole(f),
            _ => RareView::None,
        }
    }

    /// The interned context (an empty one if there is none).
    #[inline]
    fn ctx(&self) -> &'a Flow {
        self.tables
            .contexts
            .get(self.w(W_CTX) as u32)
            .unwrap_or(&EMPTY)
    }

    /// The DNS names of the source and the destination.
    fn names(&self) -> (&[String], &[String]) {
        match self.rare() {
            RareView::Parts(rare) => self
                .packed(rare)
                .map_or((&[], &[]), |p| (&p.source_names, &p.destination_names)),
            RareView::Whole(f) => (&f.source_names, &f.destination_names),
            RareView::None => (&[], &[]),
        }
    }

    /// The packed parts of a compact flow, decoded once.
    fn packed(&self, rare: &Rare) -> Option<&PackedParts> {
        self.packed
            .0
            .get_or_init(|| rare.unpack(self.tables).map(Box::new))
            .as_deref()
    }

    /// The L7 record: a compact flow's decoded once, a whole flow's as it is.
    fn l7(&self) -> Option<&flow::Layer7> {
        match self.rare() {
            RareView::Parts(rare) => self.packed(rare).and_then(|p| p.l7.as_ref()),
            RareView::Whole(f) => f.l7.as_ref(),
            RareView::None => None,
        }
    }

    #[inline]
    fn l4_kind(&self) -> u64 {
        bits(self.w(W_L4), 0, 4)
    }
}

impl FlowView for StoredFlow<'_> {
    fn uuid(&self) -> &str {
        if let Some(f) = self.full() {
            return &f.uuid;
        }
        if bits(self.w(W_FLAGS), UUID_SHIFT, 2) != UUID_PACKED {
            return self.rare().uuid();
        }
        let bytes = self
            .uuid
            .get_or_init(|| text::uuid_bytes(self.w(W_UUID), self.w(W_UUID + 1)));
        std::str::from_utf8(bytes).unwrap_or("")
    }

    fn source_ip(&self) -> Option<FlowIp<'_>> {
        if self.w(W_FLAGS) & F_IP == 0 || self.full().is_some() {
            return self.rare().source_ip();
        }
        let w = self.w(W_L4);
        text::unpack_ip(bits(w, 50, 2), self.w(W_SRC_IP), self.w(W_SRC_IP + 1)).map(FlowIp::Addr)
    }

    fn source_ip_xlated(&self) -> Option<FlowIp<'_>> {
        self.rare().source_ip_xlated()
    }

    fn destination_ip(&self) -> Option<FlowIp<'_>> {
        if self.w(W_FLAGS) & F_IP == 0 || self.full().is_some() {
            return self.rare().destination_ip();
        }
        let w = self.w(W_L4);
        text::unpack_ip(bits(w, 52, 2), self.w(W_DST_IP), self.w(W_DST_IP + 1)).map(FlowIp::Addr)
    }

    fn ip_version(&self) -> i32 {
        if self.w(W_FLAGS) & F_IP == 0 || self.full().is_some() {
            return self.rare().ip_version();
        }
        bits(self.w(W_L4), 48, 2) as i32
    }

    fn encrypted(&self) -> bool {
        if self.w(W_FLAGS) & F_IP == 0 || self.full().is_some() {
            return self.rare().encrypted();
        }
        bits(self.w(W_L4), 54, 1) == 1
    }

    fn source(&self) -> Option<&flow::Endpoint> {
        match self.full() {
            Some(f) => f.source.as_ref(),
            None => self.tables.endpoints.get(self.w(W_EP) as u32),
        }
    }

    fn destination(&self) -> Option<&flow::Endpoint> {
        match self.full() {
            Some(f) => f.destination.as_ref(),
            None => self.tables.endpoints.get((self.w(W_EP) >> 32) as u32),
        }
    }

    fn source_names(&self) -> &[String] {
        self.names().0
    }

    fn destination_names(&self) -> &[String] {
        self.names().1
    }

    fn source_service(&self) -> Option<&flow::Service> {
        match self.full() {
            Some(f) => f.source_service.as_ref(),
            None => self.ctx().source_service.as_ref(),
        }
    }

    fn destination_service(&self) -> Option<&flow::Service> {
        match self.full() {
            Some(f) => f.destination_service.as_ref(),
            None => self.ctx().destination_service.as_ref(),
        }
    }

    fn verdict(&self) -> i32 {
        match self.full() {
            Some(f) => f.verdict,
            None => bits(self.w(W_ENUMS), 0, 8) as i32,
        }
    }

    fn drop_reason_desc(&self) -> i32 {
        match self.full() {
            Some(f) => f.drop_reason_desc,
            None => bits(self.w(W_ENUMS), 8, 8) as i32,
        }
    }

    fn event_type(&self) -> Option<(i32, i32)> {
        if let Some(f) = self.full() {
            return f.event_type();
        }
        let e = self.w(W_ENUMS);
        (self.w(W_FLAGS) & F_EVENT_TYPE != 0)
            .then(|| (bits(e, 16, 8) as i32, bits(e, 24, 8) as i32))
    }

    fn l4_protocol(&self) -> Option<L4Protocol> {
        if self.full().is_some() {
            return self.rare().l4_protocol();
        }
        match self.l4_kind() {
            L4_TCP => Some(L4Protocol::Tcp),
            L4_UDP => Some(L4Protocol::Udp),
            L4_SCTP => Some(L4Protocol::Sctp),
            L4_ICMPV4 => Some(L4Protocol::Icmpv4),
            L4_ICMPV6 => Some(L4Protocol::Icmpv6),
            L4_EXTRA => self.rare().l4_protocol(),
            _ => None,
        }
    }

    fn ports(&self) -> Option<(u16, u16)> {
        if self.full().is_some() {
            return self.rare().ports();
        }
        let w = self.w(W_L4);
        match self.l4_kind() {
            L4_TCP | L4_UDP | L4_SCTP => Some((bits(w, 16, 16) as u16, bits(w, 32, 16) as u16)),
            L4_EXTRA => self.rare().ports(),
            _ => None,
        }
    }

    fn tcp_flags(&self) -> Option<TcpFlagBits> {
        if self.full().is_some() {
            return self.rare().tcp_flags();
        }
        let w = self.w(W_L4);
        match self.l4_kind() {
            L4_TCP => (bits(w, 4, 1) == 1).then(|| bits(w, 5, 9) as u16),
            L4_EXTRA => self.rare().tcp_flags(),
            L4_NONE => None,
            _ => None,
        }
    }

    fn http(&self) -> Option<&flow::Http> {
        parts::http(self.l7())
    }

    fn dns(&self) -> Option<&flow::Dns> {
        parts::dns(self.l7())
    }

    fn is_kafka(&self) -> bool {
        parts::is_kafka(self.l7())
    }

    fn traffic_direction(&self) -> i32 {
        match self.full() {
            Some(f) => f.traffic_direction,
            None => bits(self.w(W_ENUMS), 48, 2) as i32,
        }
    }

    fn is_reply(&self) -> Option<bool> {
        if let Some(f) = self.full() {
            return f.is_reply();
        }
        match bits(self.w(W_ENUMS), 50, 2) {
            0 => None,
            v => Some(v == 2),
        }
    }

    fn node_name(&self) -> &str {
        match self.full() {
            Some(f) => &f.node_name,
            None => &self.ctx().node_name,
        }
    }

    fn node_labels(&self) -> &[String] {
        match self.full() {
            Some(f) => &f.node_labels,
            None => &self.ctx().node_labels,
        }
    }

    fn trace_id(&self) -> &str {
        let Some((hi, lo)) = packed_trace(&self.record()) else {
            return self.rare().trace_id();
        };
        let bytes = self.trace_id.get_or_init(|| text::trace_id_bytes(hi, lo));
        std::str::from_utf8(bytes).unwrap_or("")
    }

    fn ip_trace_id(&self) -> u64 {
        self.rare().ip_trace_id()
    }

    fn interface(&self) -> Option<&flow::NetworkInterface> {
        match self.full() {
            Some(f) => f.interface.as_ref(),
            None => self.ctx().interface.as_ref(),
        }
    }

    fn interned(&self) -> Option<Interned> {
        (kind(&self.head) == KIND_COMPACT).then(|| Interned {
            store: self.tables.id,
            source: self.w(W_EP) as u32,
            destination: (self.w(W_EP) >> 32) as u32,
            context: self.w(W_CTX) as u32,
        })
    }

    fn whole(&self) -> std::borrow::Cow<'_, Flow> {
        match self.full() {
            Some(f) => std::borrow::Cow::Borrowed(f),
            None => std::borrow::Cow::Owned(self.to_flow()),
        }
    }
}
