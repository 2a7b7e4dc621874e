//! Conversion of record timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC)
//! to wall-clock time.
//!
//! The offset between CLOCK_REALTIME and CLOCK_MONOTONIC is measured once;
//! a later step of the wall clock (NTP, `date -s`) is not followed until
//! [`KtimeClock::measure`] is called again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::time::{clock_gettime, ClockId};

/// How many samples [`KtimeClock::measure`] takes; the one with the
/// narrowest monotonic window wins.
const SAMPLES: usize = 5;

/// Reading a clock failed.
#[derive(Debug, thiserror::Error)]
#[error("clock_gettime({clock}) failed: {source}")]
pub struct ClockError {
    clock: &'static str,
    #[source]
    source: nix::Error,
}

/// Maps monotonic kernel timestamps to Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KtimeClock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
    offset_ns: i128,
}

impl KtimeClock {
    /// Measures the current offset between the two clocks.
    pub fn measure() -> Result<Self, ClockError> {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..SAMPLES {
            let before = read(ClockId::CLOCK_MONOTONIC, "CLOCK_MONOTONIC")?;
            let real = read(ClockId::CLOCK_REALTIME, "CLOCK_REALTIME")?;
            let after = read(ClockId::CLOCK_MONOTONIC, "CLOCK_MONOTONIC")?;
            let window = after - before;
            let offset = real - (before + window / 2);
            if best.is_none_or(|(best_window, _)| window < best_window) {
                best = Some((window, offset));
            }
        }
        let offset_ns = best.map_or(0, |(_, offset)| offset);
        Ok(Self { offset_ns })
    }

    /// A clock with a known offset (realtime minus monotonic, ns).
    pub fn with_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Converts a `bpf_ktime_get_ns` value to nanoseconds since the Unix
    /// epoch (0 for instants before it).
    pub fn to_unix_ns(&self, ktime_ns: u64) -> u64 {
        let unix = i128::from(ktime_ns) + self.offset_ns;
        u64::try_from(unix.max(0)).unwrap_or(u64::MAX)
    }

    /// Converts a `bpf_ktime_get_ns` value to a [`SystemTime`].
    pub fn to_system_time(&self, ktime_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.to_unix_ns(ktime_ns))
    }
}

fn read(clock: ClockId, name: &'static str) -> Result<i128, ClockError> {
    let spec = clock_gettime(clock).map_err(|source| ClockError {
        clock: name,
        source,
    })?;
    Ok(i128::from(spec.tv_sec()) * 1_000_000_000 + i128::from(spec.tv_nsec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_in_monotonic_terms_maps_to_now() {
        let clock = KtimeClock::measure().expect("clocks readable");
        let mono = read(ClockId::CLOCK_MONOTONIC, "CLOCK_MONOTONIC").expect("monotonic");
        let unix = clock.to_unix_ns(u64::try_from(mono).expect("positive"));
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after epoch");
        let diff = (i128::from(unix) - wall.as_nanos() as i128).abs();
        assert!(diff < 50_000_000, "converted time off by {diff} ns");
    }

    #[test]
    fn offsets_apply_and_saturate() {
        let clock = KtimeClock::with_offset_ns(1_000);
        assert_eq!(clock.to_unix_ns(5), 1_005);
        let negative = KtimeClock::with_offset_ns(-10);
        assert_eq!(negative.to_unix_ns(5), 0);
    }
}
