//! A response stream fed in batches: the producer hands over a `Vec` of responses at a
//! time through a bounded channel, and gRPC takes them one by one from here. One
//! channel hand-off (and at most one wake-up) per batch instead of per response; the
//! encoder then writes a whole batch before it flushes. The agent's GetFlows and the
//! relay's merger both send this way.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tonic::Status;

/// A batch as the producer sends it: responses, or the status that ends the stream.
pub type Batch<T> = Result<Vec<T>, Status>;

/// The responses of the batches received on a channel, in order; a batch that is an
/// error is passed on as that error.
pub struct Batched<T> {
    batches: mpsc::Receiver<Batch<T>>,
    current: std::vec::IntoIter<T>,
}

impl<T> Batched<T> {
    /// The stream of the batches `batches` receives.
    pub fn new(batches: mpsc::Receiver<Batch<T>>) -> Self {
        Self {
            batches,
            current: Vec::new().into_iter(),
        }
    }
}

impl<T> Stream for Batched<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.current.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            match self.batches.poll_recv(cx) {
                Poll::Ready(Some(Ok(batch))) => self.current = batch.into_iter(),
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

// Nothing in it is pinned: the receiver and the iterator move freely.
impl<T> Unpin for Batched<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn responses_come_in_order_and_an_error_batch_passes_as_its_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(vec![1, 2])).await.expect("sent");
        tx.send(Ok(Vec::new())).await.expect("sent");
        tx.send(Ok(vec![3])).await.expect("sent");
        tx.send(Err(Status::internal("node gone")))
            .await
            .expect("sent");
        drop(tx);
        let items: Vec<_> = Batched::new(rx).collect().await;
        let oks: Vec<i32> = items
            .iter()
            .filter_map(|i| i.as_ref().ok().copied())
            .collect();
        assert_eq!(oks, [1, 2, 3]);
        assert_eq!(items.len(), 4);
        let last = items.last().expect("four items");
        assert_eq!(
            last.as_ref().map_err(|s| s.message().to_string()),
            Err("node gone".to_string())
        );
    }
}
