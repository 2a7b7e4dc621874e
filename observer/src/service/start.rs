//! Where a request's reader starts in a ring, with upstream's rules: `first` starts
//! at the oldest entry; `follow` with neither `number` nor `since` starts at the
//! writer (new events only); otherwise the ring is walked back from the newest entry,
//! counting the events the request's filters accept, until `number` of them are found
//! or one is older than `since` (`since` wins over `number`). Without either, the
//! whole ring is read.

use pbjson_types::Timestamp;

use super::window::Window;
use crate::ring::{Read, Ring, SlotData};

/// How the backward walk treats one entry.
pub enum Back {
    /// Not an event of the request (filtered out, or a lost-events notice).
    Skip,
    /// An event of the request, with its time.
    Event(Option<Timestamp>),
}

/// Finds the start position for `window` in `ring`. A walk over a whole ring: GetFlows
/// runs it on the scan pool.
pub fn start_position<D: SlotData>(
    ring: &Ring<D>,
    window: &Window,
    mut classify: impl FnMut(D::Raw) -> Back,
) -> u64 {
    if window.first && window.since.is_none() {
        return ring.oldest();
    }
    let newest = ring.written();
    if window.follow && window.number == 0 && window.since.is_none() {
        return newest;
    }
    // `start` is the oldest counted event; `scanned` the oldest entry looked at.
    let mut start = newest;
    let mut scanned = newest;
    let mut count = 0u64;
    loop {
        let Some(pos) = scanned.checked_sub(1) else {
            return scanned;
        };
        let raw = match ring.read(pos) {
            Read::Value(raw) => raw,
            Read::Ahead | Read::Overwritten { .. } => return scanned,
        };
        scanned = pos;
        let Back::Event(time) = classify(raw) else {
            continue;
        };
        if window.since.is_some() {
            if window.before_since(time.as_ref()) {
                return start;
            }
        } else if window.number > 0 && count == window.number {
            return start;
        }
        count += 1;
        start = pos;
    }
}
