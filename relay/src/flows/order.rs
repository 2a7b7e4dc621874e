//! The sort buffer of one request, and which nodes could still send something older
//! than what it holds.

use std::collections::HashMap;

use super::Held;
use crate::merge::SortBuffer;
use crate::raw::RelayResponse;

/// The sort buffer, and which nodes could still send something older than what it holds.
///
/// A response leaves in time order as soon as every node whose stream is open has a
/// response in the buffer: each node's stream is in time order, so nothing older can
/// come. With follow it also leaves when the buffer overflows or its wait exceeds the drain timeout
/// (a quiet or slow node), as upstream's sort buffer does.
pub(super) struct Merge {
    buffer: SortBuffer<Held>,
    /// Responses in the buffer per node whose stream is open.
    in_buffer: HashMap<usize, usize>,
    /// Open nodes without a response in the buffer.
    waiting_on: usize,
}

/// Node index of responses the relay makes itself.
pub(super) const RELAY_EVENT: usize = usize::MAX;

impl Merge {
    pub(super) fn new(buffer: SortBuffer<Held>) -> Self {
        Self {
            buffer,
            in_buffer: HashMap::new(),
            waiting_on: 0,
        }
    }

    pub(super) fn open(&mut self, node: usize) {
        if self.in_buffer.insert(node, 0).is_none() {
            self.waiting_on += 1;
        }
    }

    pub(super) fn close(&mut self, node: usize) {
        if self.in_buffer.remove(&node) == Some(0) {
            self.waiting_on -= 1;
        }
    }

    pub(super) fn added(&mut self, node: usize) {
        if let Some(n) = self.in_buffer.get_mut(&node) {
            if *n == 0 {
                self.waiting_on -= 1;
            }
            *n += 1;
        }
    }

    pub(super) fn removed(&mut self, node: usize) {
        if let Some(n) = self.in_buffer.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.waiting_on += 1;
            }
        }
    }

    pub(super) fn push(&mut self, time: i128, held: Held, ready: &mut Vec<RelayResponse>) {
        let node = held.node;
        match self.buffer.push(time, held, std::time::Instant::now()) {
            None => self.added(node),
            // The new response itself (too late to be ordered) or the oldest (overflow).
            Some(out) => {
                if out.node != node {
                    self.added(node);
                    self.removed(out.node);
                }
                ready.push(out.response);
            }
        }
    }

    /// Moves out every response that nothing older can follow.
    pub(super) fn release_ordered(&mut self, ready: &mut Vec<RelayResponse>) {
        while self.waiting_on == 0 {
            let Some(held) = self.buffer.pop_oldest() else {
                return;
            };
            self.removed(held.node);
            ready.push(held.response);
        }
    }

    pub(super) fn next_deadline(&mut self) -> Option<std::time::Instant> {
        self.buffer.next_deadline()
    }

    pub(super) fn drain_expired(
        &mut self,
        now: std::time::Instant,
        ready: &mut Vec<RelayResponse>,
    ) {
        let mut out = Vec::new();
        self.buffer.drain_expired(now, &mut out);
        self.take(out, ready);
    }

    pub(super) fn drain_all(&mut self, ready: &mut Vec<RelayResponse>) {
        let mut out = Vec::new();
        self.buffer.drain_all(&mut out);
        self.take(out, ready);
    }

    pub(super) fn take(&mut self, out: Vec<Held>, ready: &mut Vec<RelayResponse>) {
        for held in out {
            self.removed(held.node);
            ready.push(held.response);
        }
    }
}

/// Opens the nodes that started streaming in the merge; returns their names.
pub(super) fn open_all(merge: &mut Merge, started: Vec<(usize, String)>) -> Vec<String> {
    started
        .into_iter()
        .map(|(index, name)| {
            merge.open(index);
            name
        })
        .collect()
}
