//! JSON lines (`hubble observe -o jsonpb` output, a capture) read in blocks and parsed
//! on two threads, handed over in the input's order: `hubble observe --input-file` and
//! the agent's `--replay` both read this way.
//!
//! The input is read [`BATCH_BYTES`] at a time straight into a batch's buffer and cut
//! into lines with `memchr`; the part of a line a read ends in is carried into the next
//! batch. Each batch goes to a parsing thread when its queue has room, else the
//! calling thread parses it; the caller sees every batch in order. Batches the parsing
//! thread made go back to it once the caller is done with them, to be freed there (a
//! free on the allocating thread is the allocator's fast path; from another thread it
//! cost a third of the CPU), and read buffers go back to the reader to be filled again
//! without being cleared.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc;

use super::ReadScratch;

/// Bytes read at once and cut into lines parsed together (a batch holds the whole
/// lines of one read; a line longer than this makes its batch as long as the line).
pub const BATCH_BYTES: usize = 512 * 1024;
/// Batches queued for the parsing thread, and parsed batches it has not handed over
/// (each channel's bound; when the first is full the calling thread parses the batch
/// itself: nothing is dropped).
pub const IN_FLIGHT_BATCHES: usize = 2;
/// Batches read and not yet handed over; at the limit the reader waits for the
/// parsing thread before reading more.
pub const MAX_PENDING_BATCHES: usize = 8;
/// Handed-over batches going back to the parsing thread to be freed; beyond it the
/// calling thread frees them.
pub const SPENT_BATCHES: usize = 4;
/// A read shorter than this (a pipe's whole buffer) means the input has no more for
/// now (a live `hubble observe -o jsonpb -f` piped in): what was read is handed over
/// before reading again, instead of waiting behind the next read.
pub const CAUGHT_UP_BELOW: usize = 64 * 1024;

/// Lines of the input, one after the other in one buffer.
struct Batch {
    /// The buffer, all of it initialised (the lines are in its first part).
    bytes: Vec<u8>,
    /// Where each line starts and ends in `bytes` (without its line break).
    ends: Vec<(usize, usize)>,
}

impl Batch {
    /// Parses the lines; returns them and the buffer, to be filled again.
    fn parse<T>(
        self,
        parse: &impl Fn(&mut [u8], &mut ReadScratch) -> T,
        scratch: &mut ReadScratch,
    ) -> (Vec<T>, Vec<u8>) {
        let Batch { mut bytes, ends } = self;
        let lines = ends
            .iter()
            .map(|&(start, end)| parse(&mut bytes[start..end], scratch))
            .collect();
        (lines, bytes)
    }
}

/// The input, read in blocks straight into the batches' buffers and cut into lines.
struct Lines<R> {
    input: R,
    batch_bytes: usize,
    carry: Vec<u8>,
    ended: bool,
    /// The last read returned less than [`CAUGHT_UP_BELOW`]: the input (a pipe, a
    /// terminal) has no more for now, so what was read is handed over before reading
    /// again.
    caught_up: bool,
}

impl<R: Read> Lines<R> {
    /// The next batch of whole lines, in `bytes` (a buffer handed back, or a new one
    /// when empty); an empty batch means the input ended. One read per batch unless
    /// it holds no whole line yet, so lines piped in slowly are handed over as they
    /// come.
    fn batch(&mut self, mut bytes: Vec<u8>) -> std::io::Result<Batch> {
        let mut filled = self.carry.len();
        if bytes.len() < filled + self.batch_bytes {
            // A new buffer comes zeroed from the allocator (no pass over it here).
            bytes = vec![0; filled + self.batch_bytes];
        }
        bytes[..filled].copy_from_slice(&self.carry);
        let mut ends = Vec::new();
        let mut start = 0;
        while !self.ended {
            if bytes.len() < filled + self.batch_bytes {
                bytes.resize(filled + self.batch_bytes, 0);
            }
            let n = loop {
                match self
                    .input
                    .read(&mut bytes[filled..filled + self.batch_bytes])
                {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            self.ended = n == 0;
            self.caught_up = n < self.batch_bytes.min(CAUGHT_UP_BELOW);
            for newline in memchr::memchr_iter(b'\n', &bytes[filled..filled + n]) {
                let end = filled + newline;
                let line_end = if end > start && bytes[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                ends.push((start, line_end));
                start = end + 1;
            }
            filled += n;
            if !ends.is_empty() {
                break;
            }
        }
        if self.ended && start < filled {
            // The last line, without a line break.
            ends.push((start, filled));
            start = filled;
        }
        self.carry.clear();
        self.carry.extend_from_slice(&bytes[start..filled]);
        Ok(Batch { bytes, ends })
    }
}

/// Reads `input` to its end, parsing each line with `parse` (on this thread and on a
/// parsing thread), and hands the parsed lines to `each` a batch at a time, in the
/// input's order; `each` may take what it keeps out of the batch. Stops early when
/// `each` returns `Ok(false)` or an error, which is returned.
pub fn parse_in_order<R, T, E>(
    input: R,
    parse: impl Fn(&mut [u8], &mut ReadScratch) -> T + Sync,
    each: impl FnMut(&mut Vec<T>) -> Result<bool, E>,
) -> Result<(), E>
where
    R: Read,
    T: Send,
    E: From<std::io::Error>,
{
    parse_in_batches(input, BATCH_BYTES, parse, each)
}

/// [`parse_in_order`], reading `batch_bytes` at a time.
pub fn parse_in_batches<R, T, E>(
    input: R,
    batch_bytes: usize,
    parse: impl Fn(&mut [u8], &mut ReadScratch) -> T + Sync,
    mut each: impl FnMut(&mut Vec<T>) -> Result<bool, E>,
) -> Result<(), E>
where
    R: Read,
    T: Send,
    E: From<std::io::Error>,
{
    let mut input = Lines {
        input,
        batch_bytes: batch_bytes.max(1),
        carry: Vec::new(),
        ended: false,
        caught_up: false,
    };
    let parse = &parse;
    let stopped = || std::io::Error::other("the parsing thread stopped");
    std::thread::scope(|scope| -> Result<(), E> {
        let (to_parser, batches) = mpsc::sync_channel::<Batch>(IN_FLIGHT_BATCHES);
        let (parsed_tx, parsed) = mpsc::sync_channel::<Vec<T>>(IN_FLIGHT_BATCHES);
        let (spent_tx, spent) = mpsc::sync_channel::<Vec<T>>(SPENT_BATCHES);
        let (buffers_tx, buffers) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT_BATCHES);
        scope.spawn(move || {
            let mut scratch = ReadScratch::default();
            for batch in batches {
                while let Ok(lines) = spent.try_recv() {
                    drop(lines);
                }
                let (lines, buffer) = batch.parse(parse, &mut scratch);
                let _ = buffers_tx.try_send(buffer);
                if parsed_tx.send(lines).is_err() {
                    break;
                }
            }
        });
        let mut scratch = ReadScratch::default();
        // A read buffer this thread is done with.
        let mut own_buffer = Vec::new();
        // Batches read and not yet handed over, in order: `None` is the thread's.
        let mut pending: VecDeque<Option<Vec<T>>> = VecDeque::new();
        let mut ended = false;
        loop {
            if !ended && pending.len() < MAX_PENDING_BATCHES {
                let buffer = match buffers.try_recv() {
                    Ok(buffer) => buffer,
                    Err(_) => std::mem::take(&mut own_buffer),
                };
                let batch = input.batch(buffer)?;
                ended = batch.ends.is_empty();
                if !ended {
                    match to_parser.try_send(batch) {
                        Ok(()) => pending.push_back(None),
                        Err(mpsc::TrySendError::Full(batch)) => {
                            let (lines, buffer) = batch.parse(parse, &mut scratch);
                            own_buffer = buffer;
                            pending.push_back(Some(lines));
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped().into()),
                    }
                }
            }
            // The batch to hand over, and whether the parsing thread made it.
            let (lines, theirs) = match pending.front_mut() {
                None => break,
                Some(Some(_)) => (pending.pop_front().flatten(), false),
                Some(None) => {
                    let must_wait =
                        ended || input.caught_up || pending.len() >= MAX_PENDING_BATCHES;
                    let ready = if must_wait {
                        Some(parsed.recv().map_err(|_| stopped())?)
                    } else {
                        match parsed.try_recv() {
                            Ok(lines) => Some(lines),
                            Err(mpsc::TryRecvError::Empty) => None,
                            Err(mpsc::TryRecvError::Disconnected) => return Err(stopped().into()),
                        }
                    };
                    if ready.is_some() {
                        pending.pop_front();
                    }
                    (ready, true)
                }
            };
            let Some(mut lines) = lines else {
                continue;
            };
            let go_on = each(&mut lines)?;
            if theirs {
                // A full queue (or a stopped thread) leaves them to be freed here.
                let _ = spent_tx.try_send(lines);
            }
            if !go_on {
                break;
            }
        }
        drop(to_parser);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `.1` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The lines of `input` as this module hands them over, read `batch` bytes at a
    /// time in reads of at most `read` bytes, stopping after `stop_after` lines.
    fn lines(input: &str, batch: usize, read: usize, stop_after: usize) -> Vec<String> {
        let mut out = Vec::new();
        parse_in_batches(
            Trickle(input.as_bytes(), read),
            batch,
            |line, _| String::from_utf8_lossy(line).into_owned(),
            |batch: &mut Vec<String>| -> std::io::Result<bool> {
                for line in batch.drain(..) {
                    if out.len() == stop_after {
                        return Ok(false);
                    }
                    out.push(line);
                }
                Ok(true)
            },
        )
        .expect("read");
        out
    }

    #[test]
    fn lines_come_whole_and_in_order_however_the_input_is_cut() {
        let want: Vec<String> = (0..2000)
            .map(|k| "x".repeat(k % 37) + &k.to_string())
            .collect();
        let mut input = String::new();
        for (k, line) in want.iter().enumerate() {
            input.push_str(line);
            input.push_str(if k % 3 == 0 { "\r\n" } else { "\n" });
        }
        for (batch, read) in [
            (1, usize::MAX),
            (7, 5),
            (100, 1),
            (4096, 333),
            (BATCH_BYTES, usize::MAX),
        ] {
            assert_eq!(
                lines(&input, batch, read, usize::MAX),
                want,
                "batch {batch}, reads of {read}"
            );
        }
        // Without the last line break; empty lines are lines.
        let trimmed = input.trim_end_matches(['\r', '\n']);
        assert_eq!(lines(trimmed, 100, 7, usize::MAX), want);
        assert_eq!(lines("a\n\n\r\nb", 3, 2, usize::MAX), ["a", "", "", "b"]);
        assert!(lines("", 3, 2, usize::MAX).is_empty());
        // Stopping early.
        assert_eq!(lines(&input, 100, 50, 17), want[..17].to_vec());
    }

    #[test]
    fn lines_piped_in_slowly_are_handed_over_before_the_next_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        /// One line per read; records how many lines had been handed over by then.
        struct Slow {
            left: usize,
            seen: Arc<AtomicUsize>,
            seen_at_reads: Vec<usize>,
        }
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.seen_at_reads.push(self.seen.load(Ordering::SeqCst));
                if self.left == 0 {
                    return Ok(0);
                }
                self.left -= 1;
                buf[..2].copy_from_slice(b"x\n");
                Ok(2)
            }
        }
        let seen = Arc::new(AtomicUsize::new(0));
        let mut input = Slow {
            left: 20,
            seen: Arc::clone(&seen),
            seen_at_reads: Vec::new(),
        };
        parse_in_batches(
            &mut input,
            BATCH_BYTES,
            |line, _| line.to_vec(),
            |batch: &mut Vec<Vec<u8>>| -> std::io::Result<bool> {
                seen.fetch_add(batch.len(), Ordering::SeqCst);
                Ok(true)
            },
        )
        .expect("read");
        assert_eq!(seen.load(Ordering::SeqCst), 20);
        // Read k (from 0) comes after the k lines read before it were handed over.
        let want: Vec<usize> = (0..=20).collect();
        assert_eq!(input.seen_at_reads, want);
    }

    #[test]
    fn an_error_of_the_caller_or_the_input_ends_the_read() {
        let failed = parse_in_batches(
            "a\nb\nc\n".as_bytes(),
            2,
            |line, _| line.to_vec(),
            |_: &mut Vec<Vec<u8>>| -> std::io::Result<bool> {
                Err(std::io::Error::other("printer gone"))
            },
        );
        assert_eq!(failed.expect_err("fails").to_string(), "printer gone");

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let failed = parse_in_batches(
            Broken,
            2,
            |line, _| line.to_vec(),
            |_: &mut Vec<Vec<u8>>| -> std::io::Result<bool> { Ok(true) },
        );
        assert_eq!(failed.expect_err("fails").to_string(), "disk gone");
    }
}
