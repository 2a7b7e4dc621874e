//! The flow ring: a [`Ring`] of compact records plus the interning tables they refer
//! to. [`FlowStoreWriter`] is the single writer; [`FlowStore`] is the shared read side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proto::flow::{Endpoint, Flow, LostEvent};

use crate::arc_cell::ArcCell;
use crate::compact::{self, Encoded, Encoder, Extra, Head, Rest, StoredFlow, Tables, HEAD, WORDS};
use crate::ring::{CapacityError, Ring, RingReader, RingWriter, SlotData};

/// A ring slot: the record as atomics and the optional extra in one word
/// ([`ArcCell`]): 128 bytes with the ring's stamp. The words first, right after the
/// stamp (a reader copies the stamp and the record's head).
#[repr(C)]
pub struct FlowSlot {
    words: [AtomicU64; WORDS],
    extra: ArcCell<Extra>,
}

impl Default for FlowSlot {
    fn default() -> Self {
        Self {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
            extra: ArcCell::default(),
        }
    }
}

/// What a reader copies out of a slot: the record's head and its position. The rest
/// of the record and the extra, when the record has one, are read only when something
/// asks for them ([`StoredFlow`] loads them through [`Ring::load_checked`]), so a scan
/// whose filter reads only the head never touches them.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent {
    pub head: Head,
    pub pos: u64,
}

impl SlotData for FlowSlot {
    type Value = Encoded;
    type Raw = RawEvent;

    fn store(&self, value: Encoded) {
        let had_extra =
            self.words[compact::W_FLAGS].load(Ordering::Relaxed) & compact::F_EXTRA != 0;
        for (word, v) in self.words.iter().zip(value.record) {
            word.store(v, Ordering::Relaxed);
        }
        if had_extra || value.extra.is_some() {
            drop(self.extra.replace(value.extra));
        }
    }

    #[inline]
    fn load(&self, pos: u64) -> RawEvent {
        RawEvent {
            head: std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed)),
            pos,
        }
    }
}

impl FlowSlot {
    /// The record's words after its head (validate with [`Ring::load_checked`]).
    #[inline]
    pub(crate) fn rest(&self) -> Rest {
        std::array::from_fn(|i| self.words[HEAD + i].load(Ordering::Relaxed))
    }

    /// The slot's extra (validate with [`Ring::load_checked`]).
    pub(crate) fn extra(&self) -> Option<Arc<Extra>> {
        self.extra.get()
    }
}

/// The shared read side of the flow ring.
#[derive(Clone)]
pub struct FlowStore {
    ring: Arc<Ring<FlowSlot>>,
    tables: Arc<Tables>,
}

/// The single writer of the flow ring.
pub struct FlowStoreWriter {
    writer: RingWriter<FlowSlot>,
    encoder: Encoder,
}

/// An event read from the flow ring.
pub enum StoredEvent<'a> {
    /// A flow, filterable in place.
    Flow(StoredFlow<'a>),
    /// A lost-events notice and when it was written.
    Lost {
        time: Option<pbjson_types::Timestamp>,
        event: LostEvent,
    },
    /// A lost-events notice whose slot the writer lapped before its counts were read:
    /// the reader counts it as an overwritten entry.
    Overwritten,
}

impl FlowStore {
    /// Creates a flow ring of `capacity` (2^n - 1) entries and its writer.
    pub fn new(capacity: u64) -> Result<(FlowStoreWriter, FlowStore), CapacityError> {
        let (writer, ring) = Ring::with_capacity(capacity)?;
        let tables = Arc::new(Tables::default());
        let encoder = Encoder::new(Arc::clone(&tables));
        Ok((
            FlowStoreWriter { writer, encoder },
            FlowStore { ring, tables },
        ))
    }

    /// The ring.
    pub fn ring(&self) -> &Arc<Ring<FlowSlot>> {
        &self.ring
    }

    /// The interning tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// A forward reader from `pos`.
    pub fn reader(&self, pos: u64) -> RingReader<FlowSlot> {
        self.ring.reader(pos)
    }

    /// Interprets a copied slot.
    #[inline]
    pub fn event(&self, raw: RawEvent) -> StoredEvent<'_> {
        let RawEvent { head, pos } = raw;
        if compact::kind(&head) == compact::KIND_LOST {
            let Some(extra) = self.ring.load_checked(pos, FlowSlot::extra) else {
                return StoredEvent::Overwritten;
            };
            let event = match extra.as_deref() {
                Some(Extra::Lost(lost)) => **lost,
                _ => LostEvent::default(),
            };
            return StoredEvent::Lost {
                time: compact::time(&head),
                event,
            };
        }
        match StoredFlow::in_ring(&self.tables, head, &self.ring, pos) {
            Some(flow) => StoredEvent::Flow(flow),
            None => StoredEvent::Lost {
                time: compact::time(&head),
                event: LostEvent::default(),
            },
        }
    }
}

impl FlowStoreWriter {
    /// Stores a flow. `on_new_endpoint` sees endpoints the first time they are stored.
    pub fn push_flow(&mut self, flow: Flow, on_new_endpoint: &mut dyn FnMut(&Endpoint)) {
        let encoded = self.encoder.encode(flow, on_new_endpoint);
        self.writer.push(encoded);
    }

    /// Stores a flow the caller keeps (only its rare parts are copied).
    pub fn push_flow_ref(&mut self, flow: &Flow, on_new_endpoint: &mut dyn FnMut(&Endpoint)) {
        let encoded = self.encoder.encode_ref(flow, on_new_endpoint);
        self.writer.push(encoded);
    }

    /// Stores a lost-events notice observed at `time`.
    pub fn push_lost(&mut self, lost: LostEvent, time: pbjson_types::Timestamp) {
        let encoded = self.encoder.encode_lost(lost, time);
        self.writer.push(encoded);
    }

    /// Flows that were stored whole because the compact record could not hold them.
    pub fn full_fallbacks(&self) -> u64 {
        self.encoder.full_fallbacks()
    }

    /// The ring being written.
    pub fn ring(&self) -> &Arc<Ring<FlowSlot>> {
        self.writer.ring()
    }
}

#[cfg(test)]
mod tests {
    use proto::flow::{self, Flow};

    use super::*;

    fn traced(n: u64) -> Flow {
        Flow {
            uuid: format!("flow-{n}"),
            trace_context: Some(flow::TraceContext {
                parent: Some(flow::TraceParent {
                    trace_id: format!("{n:032x}"),
                }),
            }),
            ..Flow::default()
        }
    }

    fn trace_id(flow: Flow) -> Option<String> {
        flow.trace_context
            .and_then(|t| t.parent)
            .map(|p| p.trace_id)
    }

    fn read(store: &FlowStore, pos: u64) -> RawEvent {
        match store.ring().read(pos) {
            crate::ring::Read::Value(raw) => raw,
            other => panic!("position {pos}: {other:?}"),
        }
    }

    #[test]
    fn a_flows_extra_is_read_when_asked_for_and_a_lapped_slot_is_torn() {
        let (mut writer, store) = FlowStore::new(3).unwrap();
        for n in 0..3 {
            writer.push_flow(traced(n), &mut |_| {});
        }
        let raw = read(&store, 1);
        let StoredEvent::Flow(flow) = store.event(raw) else {
            panic!("a flow");
        };
        let whole = flow.to_flow();
        assert!(!flow.torn());
        assert_eq!(whole.uuid, "flow-1");
        assert_eq!(trace_id(whole), Some(format!("{:032x}", 1)));

        // Read the record, then let the writer lap the slot before the extra is read.
        let raw = read(&store, 2);
        for n in 3..7 {
            writer.push_flow(traced(n), &mut |_| {});
        }
        let StoredEvent::Flow(flow) = store.event(raw) else {
            panic!("a flow");
        };
        let whole = flow.to_flow();
        assert!(flow.torn(), "the slot now holds flow 6's extra");
        assert_ne!(trace_id(whole), Some(format!("{:032x}", 6)));
    }

    #[test]
    fn the_rest_of_a_record_is_read_when_asked_for_and_a_lapped_slot_is_torn() {
        use proto::filter::FlowView;
        // UUIDs of this form are packed in the record's rest, not in an extra.
        let uuid = |n: u64| format!("4a7b0c7e-2f0e-4b43-9a43-{n:012x}");
        let packed = |n: u64| Flow {
            uuid: uuid(n),
            ..Flow::default()
        };
        let (mut writer, store) = FlowStore::new(3).unwrap();
        for n in 0..3 {
            writer.push_flow(packed(n), &mut |_| {});
        }
        let StoredEvent::Flow(flow) = store.event(read(&store, 1)) else {
            panic!("a flow");
        };
        assert_eq!(flow.uuid(), uuid(1));
        assert!(!flow.torn());

        // The head is read; the writer laps the slot before the UUID is.
        let raw = read(&store, 2);
        for n in 3..7 {
            writer.push_flow(packed(n), &mut |_| {});
        }
        let StoredEvent::Flow(flow) = store.event(raw) else {
            panic!("a flow");
        };
        assert_ne!(flow.uuid(), uuid(6));
        assert!(flow.torn(), "the slot now holds flow 6's record");
    }

    #[test]
    fn a_lost_notice_lapped_before_its_counts_are_read_is_overwritten() {
        let (mut writer, store) = FlowStore::new(3).unwrap();
        let lost = LostEvent {
            num_events_lost: 5,
            ..LostEvent::default()
        };
        writer.push_lost(lost, pbjson_types::Timestamp::default());
        let raw = read(&store, 0);
        match store.event(raw) {
            StoredEvent::Lost { event, .. } => assert_eq!(event.num_events_lost, 5),
            _ => panic!("a lost notice"),
        }
        for n in 1..5 {
            writer.push_flow(traced(n), &mut |_| {});
        }
        assert!(matches!(store.event(raw), StoredEvent::Overwritten));
    }
}
