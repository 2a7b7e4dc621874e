//! The scan pool: ring scans (reading entries, matching filters, rebuilding the
//! matching flows) and filter compilation run here, off the async workers, at most
//! [`MAX_CONCURRENT_SCANS`] at once over all requests. A request at the budget's
//! limits, or `--last` over a full ring, then costs a pool slot, never a worker that
//! ServerStatus or another stream is waiting for.

use tokio::sync::Semaphore;

use crate::error::ObserverError;

/// Scan jobs running at once, over all requests. The work is CPU-bound: more jobs than
/// the small machines this targets have cores would only slow each one down, and the
/// async workers must keep a core's share for status and the transport. Two let a
/// second request progress next to a heavy one; further jobs wait their turn.
pub const MAX_CONCURRENT_SCANS: usize = 2;

/// Ring entries one scan job reads before it hands its results back and waits for a
/// slot again, so that a long scan takes turns with other requests. At about a
/// microsecond an entry, a job lasts some milliseconds.
pub const SCAN_JOB_ENTRIES: u64 = 16_384;

/// Most entries a stream reads inline, on its async task, when it is this close to the
/// writer (a follower at the tail): a few microseconds, cheaper than a hop to the pool.
pub const INLINE_SCAN_ENTRIES: u64 = 32;

static SCANS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_SCANS);

/// Runs `job` on the scan pool once a slot is free; the slot is held until the job
/// returns, even if the caller stops waiting.
pub async fn run<T, F>(job: F) -> Result<T, ObserverError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let permit = SCANS
        .acquire()
        .await
        .map_err(|_| ObserverError::ShuttingDown)?;
    tokio::task::spawn_blocking(move || {
        let _slot = permit;
        job()
    })
    .await
    .map_err(|e| ObserverError::ScanTask(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_the_limit_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..8).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            }))
        });
        for job in jobs.collect::<Vec<_>>() {
            job.await.expect("joined").expect("ran");
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=MAX_CONCURRENT_SCANS).contains(&most), "{most}");
    }
}
