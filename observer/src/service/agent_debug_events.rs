//! GetAgentEvents and GetDebugEvents: the same number/first/follow/since/until rules as
//! GetFlows, over the small event rings, without filters. Overwritten entries are
//! skipped silently: these responses have no lost-events notice.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Status;

use super::flows::STREAM_BUFFER;
use super::start::{start_position, Back};
use super::window::Window;
use crate::event_rings::{EventRing, Timed};
use crate::ring::Next;

/// Streams events of `ring` selected by `window`, each turned into a response by
/// `respond`.
pub fn stream<T, R>(
    ring: Arc<EventRing<T>>,
    window: Window,
    respond: impl Fn(&Timed<T>) -> R + Send + 'static,
) -> mpsc::Receiver<Result<R, Status>>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        // The event rings are small (thousands of entries): walked inline.
        let start = start_position(&ring, &window, |raw| match raw {
            Some(event) => Back::Event(Some(event.time)),
            None => Back::Skip,
        });
        let mut reader = ring.reader(start);
        let mut count = 0u64;
        loop {
            if window.done(count) {
                return;
            }
            let next = match reader.next_now() {
                Next::End if window.follow => tokio::select! {
                    next = reader.next_follow() => next,
                    () = tx.closed() => return,
                },
                other => other,
            };
            let event = match next {
                Next::End => return,
                Next::Lost(_) | Next::Value(None) => continue,
                Next::Value(Some(event)) => event,
            };
            if window.after_until(Some(&event.time)) {
                return;
            }
            if window.before_since(Some(&event.time)) {
                continue;
            }
            count += 1;
            if tx.send(Ok(respond(&event))).await.is_err() {
                return;
            }
        }
    });
    rx
}
