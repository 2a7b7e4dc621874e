//! Draining the EVENTS ring buffer from async code.
//!
//! The programs wake the reader only when the ring's backlog reaches
//! `wakeup_bytes`, so the reader also polls on a short interval: a busy node
//! pays one wake-up per batch, a quiet one sees its events within
//! [`EventReader::poll_interval`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

/// Capacity of the channel [`EventReader::forward`] is meant to feed: about
/// 0.1 s of a 64-byte UDP flood at line rate on a small node. When it is full
/// the reader discards (and counts) records instead of waiting, because a
/// waiting reader lets the kernel ring overflow, which loses more.
pub const EVENT_CHANNEL_CAPACITY: usize = 16 * 1024;

/// Default longest wait before looking at the ring without a wake-up.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Most records handed out per [`EventReader::read_batch`] call, so one
/// busy ring cannot starve other tasks.
pub const MAX_BATCH: usize = 4096;

/// Counters of the reader, shareable with metrics code.
#[derive(Debug, Default)]
pub struct ReaderStats {
    records_read: AtomicU64,
    records_discarded: AtomicU64,
    wakeups: AtomicU64,
}

impl ReaderStats {
    /// Records taken from the ring.
    pub fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }

    /// Records dropped because the consumer channel was full.
    pub fn records_discarded(&self) -> u64 {
        self.records_discarded.load(Ordering::Relaxed)
    }

    /// Times the kernel woke the reader.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }
}

/// Reader of the EVENTS ring buffer.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    stats: Arc<ReaderStats>,
    poll_interval: Duration,
}

impl EventReader {
    pub(super) fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the ring buffer map owns its descriptor and keeps it open
        // until it is dropped, which only happens together with the AsyncFd
        // that wraps it; nothing else closes or replaces that descriptor.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE)? };
        Ok(Self {
            ring,
            stats: Arc::new(ReaderStats::default()),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// Sets the longest wait before polling the ring without a wake-up.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The current poll interval.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Shared counters of this reader.
    pub fn stats(&self) -> Arc<ReaderStats> {
        Arc::clone(&self.stats)
    }

    /// Hands up to `max` records already in the ring to `on_record`, in
    /// place, without waiting. Returns how many were handed out.
    pub fn drain(&mut self, max: usize, mut on_record: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut count = 0;
        while count < max {
            let Some(item) = ring.next() else { break };
            on_record(&item);
            count += 1;
        }
        self.stats
            .records_read
            .fetch_add(count as u64, Ordering::Relaxed);
        count
    }

    /// Waits until the ring holds records, then hands up to [`MAX_BATCH`] of
    /// them to `on_record` in place. Returns how many were handed out
    /// (never 0).
    pub async fn read_batch(&mut self, mut on_record: impl FnMut(&[u8])) -> io::Result<usize> {
        loop {
            let count = self.drain(MAX_BATCH, &mut on_record);
            if count > 0 {
                return Ok(count);
            }
            self.wait().await?;
        }
    }

    /// Waits for a wake-up from the kernel or the poll interval, whichever
    /// comes first.
    async fn wait(&mut self) -> io::Result<()> {
        self.wait_for_wakeup(self.poll_interval).await.map(drop)
    }

    /// Waits up to `timeout` for the kernel to wake the reader, reading nothing;
    /// true when it did. The programs wake it when the ring's backlog reaches
    /// the configured size, not for each record after that.
    pub async fn wait_for_wakeup(&mut self, timeout: Duration) -> io::Result<bool> {
        match tokio::time::timeout(timeout, self.ring.readable_mut()).await {
            Ok(guard) => {
                guard?.clear_ready();
                self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Copies every record into `sender` until the receiver is dropped. The
    /// reader never waits on the channel: when it is full the record is
    /// discarded and counted in [`ReaderStats::records_discarded`].
    pub async fn forward(mut self, sender: mpsc::Sender<Vec<u8>>) -> io::Result<()> {
        let stats = self.stats();
        while !sender.is_closed() {
            let count = self.drain(MAX_BATCH, |record| {
                if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(record.to_vec()) {
                    stats.records_discarded.fetch_add(1, Ordering::Relaxed);
                }
            });
            if count == 0 {
                self.wait().await?;
            }
        }
        Ok(())
    }
}
