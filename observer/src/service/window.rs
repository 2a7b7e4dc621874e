//! The part of a request every Get*Events method shares: how many events, from which
//! end, following or not, and the time range.

use pbjson_types::Timestamp;

use crate::error::ObserverError;

/// Seconds of 0001-01-01T00:00:00Z and of 10000-01-01T00:00:00Z, the range protobuf
/// timestamps must stay within.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_800;

/// What a request selects.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Events wanted (0: no limit).
    pub number: u64,
    /// Count from the oldest end instead of the newest.
    pub first: bool,
    /// Keep streaming new events.
    pub follow: bool,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events at or before this time; the stream ends at the first later one.
    pub until: Option<Timestamp>,
}

fn check(field: &'static str, t: Option<Timestamp>) -> Result<Option<Timestamp>, ObserverError> {
    let Some(t) = t else { return Ok(None) };
    let reason = if !(0..1_000_000_000).contains(&t.nanos) {
        Some("nanos must be in 0..1e9")
    } else if !(MIN_SECONDS..MAX_SECONDS).contains(&t.seconds) {
        Some("seconds must be within years 1 to 9999")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ObserverError::InvalidTimestamp {
            field,
            seconds: t.seconds,
            nanos: t.nanos,
            reason,
        }),
        None => Ok(Some(t)),
    }
}

/// Orders timestamps.
#[inline]
pub fn key(t: &Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

impl Window {
    /// Validates a request's window.
    pub fn new(
        number: u64,
        first: bool,
        follow: bool,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Self, ObserverError> {
        if first && follow {
            return Err(ObserverError::FirstWithFollow);
        }
        Ok(Self {
            number,
            first,
            follow,
            since: check("since", since)?,
            until: check("until", until)?,
        })
    }

    /// Whether an event at `time` is before `since` (and so skipped).
    pub fn before_since(&self, time: Option<&Timestamp>) -> bool {
        match (&self.since, time) {
            (Some(since), Some(t)) => key(t) < key(since),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether an event at `time` is after `until` (and so ends the stream).
    pub fn after_until(&self, time: Option<&Timestamp>) -> bool {
        match (&self.until, time) {
            (Some(until), Some(t)) => key(t) > key(until),
            _ => false,
        }
    }

    /// Whether the stream has sent all it may (`count` events so far).
    pub fn done(&self, count: u64) -> bool {
        !self.follow && self.number > 0 && count >= self.number
    }
}
