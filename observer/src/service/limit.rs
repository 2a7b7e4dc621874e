//! How many event streams (GetFlows, GetAgentEvents, GetDebugEvents) one server
//! serves at once, over all its connections. The HTTP/2 setting bounds streams per
//! connection only; a client opening many connections would otherwise grow the server
//! without bound. The agent's observer and the relay both use [`StreamLimit`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// Event streams one server serves at once. A follow stream costs about 25 KiB while
/// its client keeps up (its task, channel and HTTP/2 state), up to about 210 KiB when
/// its queue of `STREAM_BUFFER` responses is full (measured with `cargo run -p
/// observer --example stream_memory -- --streams 1000 --attempts 3500`: +25 MiB for
/// 1,000 streams, +56 MiB at this limit). 1,000 followers fit with room to spare; at
/// the limit, the worst case (every queue full) is about 430 MiB, and beyond it each
/// new stream is refused rather than letting clients grow the agent without bound.
pub const MAX_CONCURRENT_FLOW_STREAMS: usize = 2048;

/// A bound on concurrent streams, shared by every connection of one server.
#[derive(Debug, Clone)]
pub struct StreamLimit {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Default for StreamLimit {
    fn default() -> Self {
        Self::new(MAX_CONCURRENT_FLOW_STREAMS)
    }
}

impl StreamLimit {
    /// A bound of `limit` streams.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot for one more stream, or `ResourceExhausted` naming the limit. The slot is
    /// freed when the stream it is attached to ([`Limited`]) is dropped.
    // Status is the error type of the gRPC methods this serves.
    #[allow(clippy::result_large_err)]
    pub fn acquire(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "too many concurrent flow streams: limit MAX_CONCURRENT_FLOW_STREAMS ({}) reached",
                self.limit
            ))
        })
    }

    /// Streams open now.
    pub fn in_use(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// A response stream holding its slot of a [`StreamLimit`] until gRPC drops it.
pub struct Limited<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
}

impl<S> Limited<S> {
    /// `inner`, holding `slot`.
    pub fn new(inner: S, slot: OwnedSemaphorePermit) -> Self {
        Self { inner, _slot: slot }
    }
}

impl<S: Stream + Unpin> Stream for Limited<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_and_frees_the_slot_with_the_stream() {
        let limit = StreamLimit::new(2);
        let a = limit.acquire().expect("first");
        let _b = limit.acquire().expect("second");
        let refused = limit.acquire().expect_err("third");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "too many concurrent flow streams: limit MAX_CONCURRENT_FLOW_STREAMS (2) reached"
        );
        assert_eq!(limit.in_use(), 2);
        drop(Limited::new(futures::stream::empty::<()>(), a));
        assert_eq!(limit.in_use(), 1);
        assert!(limit.acquire().is_ok());
    }
}
