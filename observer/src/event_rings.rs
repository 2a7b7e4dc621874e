//! Small rings for agent events and debug events. They are few and small, so each
//! entry is kept whole behind an `Arc`.

use std::sync::Arc;

use crate::ingest::now_timestamp;
use crate::ring::{ArcSlot, Ring, RingWriter};

/// Agent events kept for GetAgentEvents (endpoint and policy changes are rare; a few
/// hundred cover hours of a small cluster's churn).
pub const AGENT_EVENTS_CAPACITY: u64 = 1023;

/// Debug events kept for GetDebugEvents (only produced when datapath debugging is on).
pub const DEBUG_EVENTS_CAPACITY: u64 = 4095;

/// An event with the time it was received.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<T> {
    /// When the observer received the event.
    pub time: pbjson_types::Timestamp,
    /// The event.
    pub event: T,
}

impl<T> Timed<T> {
    /// Stamps `event` with the current time.
    pub fn now(event: T) -> Self {
        Self {
            time: now_timestamp(),
            event,
        }
    }
}

/// The read side of an event ring.
pub type EventRing<T> = Ring<ArcSlot<Timed<T>>>;

/// The writer of an event ring.
pub struct EventWriter<T: Send + Sync + 'static> {
    writer: RingWriter<ArcSlot<Timed<T>>>,
}

impl<T: Send + Sync + 'static> EventWriter<T> {
    /// Creates an event ring of `capacity` entries (2^n - 1) and its writer.
    pub fn new(capacity: u64) -> Result<(Self, Arc<EventRing<T>>), crate::ring::CapacityError> {
        let (writer, ring) = Ring::with_capacity(capacity)?;
        Ok((Self { writer }, ring))
    }

    /// Appends an event.
    pub fn push(&mut self, event: Timed<T>) {
        self.writer.push(Arc::new(event));
    }
}
