//! Timestamps as nanoseconds since the epoch, which the merge orders by.

use std::time::SystemTime;

use pbjson_types::Timestamp;
use tokio::time::Instant;

pub(super) fn timestamp_nanos(timestamp: &Timestamp) -> i128 {
    i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos)
}

pub(super) fn timestamp_from_nanos(nanos: i128) -> Timestamp {
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

pub(super) fn now_timestamp() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    timestamp_from_nanos(since_epoch.as_nanos() as i128)
}

/// Sleeps until `deadline`, or for ever without one.
pub(super) async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}
