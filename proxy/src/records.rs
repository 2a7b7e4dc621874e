//! The bounded queue of access records from the proxies to the agent.
//!
//! Invariant: a proxy never waits for the record's reader. A full queue drops
//! the record and counts it; the agent reports the count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proto::accesslog::LogRecord;
use tokio::sync::mpsc;

/// Records queued between the proxies and the agent's parser. At a few
/// hundred bytes each this bounds the queue to about a megabyte, and absorbs a
/// burst of thousands of requests while the reader catches up.
pub const RECORD_QUEUE_CAPACITY: usize = 4096;

/// The proxies' end of the record queue: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct RecordSink {
    sender: mpsc::Sender<LogRecord>,
    dropped: Arc<AtomicU64>,
}

impl RecordSink {
    /// A queue of `capacity` records (at least one) and its reader.
    pub fn channel(capacity: usize) -> (RecordSink, mpsc::Receiver<LogRecord>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let sink = RecordSink {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (sink, receiver)
    }

    /// Queues a record; when the queue is full or its reader gone, the record
    /// is dropped and counted.
    pub fn send(&self, record: LogRecord) {
        if self.sender.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped so far because the queue was full (or closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::SystemTime;

    use proto::accesslog::{HttpLog, L7Log, RecordEndpoint, RecordKind, RecordVerdict};

    use super::*;

    fn record() -> LogRecord {
        let endpoint = RecordEndpoint {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 80,
            identity: 0,
        };
        LogRecord {
            time: SystemTime::now(),
            kind: RecordKind::Request,
            verdict: RecordVerdict::Forwarded,
            ingress: true,
            proxy_port: 10000,
            source: endpoint,
            destination: endpoint,
            latency: None,
            l7: L7Log::Http(HttpLog::default()),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sink, mut receiver) = RecordSink::channel(2);
        for _ in 0..5 {
            sink.send(record());
        }
        assert_eq!(sink.dropped(), 3);
        assert!(receiver.try_recv().is_ok());
        assert!(receiver.try_recv().is_ok());
        assert!(receiver.try_recv().is_err());
        drop(receiver);
        sink.clone().send(record());
        assert_eq!(sink.dropped(), 4);
    }
}
