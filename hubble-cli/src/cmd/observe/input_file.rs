//! `--input-file`: flows read as `jsonpb` lines from a file or standard input, filtered
//! locally with the request's filters, time range and `--first`/`--last`, in the order
//! they are read.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::mpsc;

use proto::filter::FilterSet;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetFlowsResponse};

use crate::printer::Printer;

/// The largest `--last` upstream accepts with `--input-file` (the flows are kept in
/// memory until the input ends).
pub const MAX_LAST_FLOWS: u64 = 1_000_000;

/// What to keep of the matching flows.
enum Keep {
    /// Every matching flow, printed as it is read.
    All,
    /// The first N matching flows.
    First(u64),
    /// The last N matching flows, printed at the end.
    Last(VecDeque<GetFlowsResponse>, usize),
}

/// Selects the flows of `req` from JSON lines.
pub struct InputFilter {
    filters: FilterSet,
    has_allowlist: bool,
    since: Option<(i64, i32)>,
    until: Option<(i64, i32)>,
    keep: Keep,
    returned: u64,
}

impl InputFilter {
    pub fn new(req: &GetFlowsRequest) -> anyhow::Result<Self> {
        let filters = FilterSet::compile(&req.whitelist, &req.blacklist)?;
        let n = req.number;
        let keep = if !req.first && n != 0 && n != u64::MAX {
            if n > MAX_LAST_FLOWS {
                anyhow::bail!("--last must be <= 1_000_000, got {n}");
            }
            Keep::Last(VecDeque::with_capacity(n as usize), n as usize)
        } else if req.first && n != 0 && n != u64::MAX {
            Keep::First(n)
        } else {
            Keep::All
        };
        Ok(Self {
            filters,
            has_allowlist: !req.whitelist.is_empty(),
            since: req.since.as_ref().map(|t| (t.seconds, t.nanos)),
            until: req.until.as_ref().map(|t| (t.seconds, t.nanos)),
            keep,
            returned: 0,
        })
    }

    /// Whether `res` passes the time range and the filters.
    pub fn accepts(&self, res: &GetFlowsResponse) -> bool {
        let time = res.time.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos));
        if self.since.is_some_and(|since| since > time) {
            return false;
        }
        if self.until.is_some_and(|until| until < time) {
            return false;
        }
        match res.response_types.as_ref() {
            Some(ResponseTypes::Flow(f)) => self.filters.matches(f),
            _ => !self.has_allowlist,
        }
    }

    /// Whether no more flows will be printed.
    pub fn done(&self) -> bool {
        matches!(self.keep, Keep::First(n) if self.returned >= n)
    }

    /// Offers an accepted response; true when it is to be printed now, else it was
    /// taken to be kept for the end.
    pub fn offer(&mut self, res: &mut GetFlowsResponse) -> bool {
        match &mut self.keep {
            Keep::All => true,
            Keep::First(_) => {
                self.returned += 1;
                true
            }
            Keep::Last(buffer, cap) => {
                if buffer.len() == *cap {
                    buffer.pop_front();
                }
                buffer.push_back(std::mem::take(res));
                false
            }
        }
    }

    /// The responses kept for the end (`--last`).
    pub fn finish(self) -> VecDeque<GetFlowsResponse> {
        match self.keep {
            Keep::Last(buffer, _) => buffer,
            _ => VecDeque::new(),
        }
    }
}

/// Bytes read at once and cut into lines parsed together, on the parsing thread or on
/// the reading one (a batch holds the whole lines of one read; a line longer than
/// this makes its batch as long as the line).
pub const BATCH_BYTES: usize = 512 * 1024;
/// Batches queued for the parsing thread, and parsed batches it has not handed back
/// (each channel's bound; when the first is full this thread parses the batch itself,
/// nothing is dropped).
pub const IN_FLIGHT_BATCHES: usize = 2;
/// Batches read and not yet printed; at the limit this thread waits for the parsing
/// thread before reading more.
pub const MAX_PENDING_BATCHES: usize = 8;
/// Printed batches handed back to the parsing thread, which frees what it allocated
/// (a free on the allocating thread is the allocator's fast path); beyond it this
/// thread frees them itself.
pub const SPENT_BATCHES: usize = 4;

/// One line as a response, or the warning printed for it.
type ParsedLine = Result<GetFlowsResponse, String>;

/// Lines of the input, one after the other in one buffer.
#[derive(Default)]
struct Batch {
    /// The buffer, all of it initialised (the lines are in its first part): buffers
    /// are handed back to the reader and filled again without being cleared.
    bytes: Vec<u8>,
    /// Where each line starts and ends in `bytes` (without its line break).
    ends: Vec<(usize, usize)>,
}

/// The input, read in blocks of `batch_bytes` straight into the batches' buffers and
/// cut into lines; the part of a line a block ends in is carried into the next batch.
struct Lines<R> {
    input: R,
    batch_bytes: usize,
    carry: Vec<u8>,
    ended: bool,
}

impl<R: Read> Lines<R> {
    fn new(input: R, batch_bytes: usize) -> Self {
        Self {
            input,
            batch_bytes: batch_bytes.max(1),
            carry: Vec::new(),
            ended: false,
        }
    }

    /// The next batch of whole lines, in `bytes` (a buffer handed back, or a new one
    /// when empty); an empty batch means the input ended.
    fn batch(&mut self, mut bytes: Vec<u8>) -> std::io::Result<Batch> {
        let mut filled = self.carry.len();
        if bytes.len() < filled {
            bytes.resize(filled, 0);
        }
        bytes[..filled].copy_from_slice(&self.carry);
        let mut ends = Vec::new();
        let mut start = 0;
        while !self.ended {
            if bytes.len() < filled + self.batch_bytes {
                bytes.resize(filled + self.batch_bytes, 0);
            }
            let n = loop {
                match self.input.read(&mut bytes[filled..filled + self.batch_bytes]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            self.ended = n == 0;
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

impl Batch {
    /// Parses the lines; returns them and the buffer, to be filled again.
    fn parse(self, scratch: &mut proto::json::ReadScratch) -> (Vec<ParsedLine>, Vec<u8>) {
        let Batch { mut bytes, ends } = self;
        let lines = ends
            .iter()
            .map(|&(start, end)| parse_line(&mut bytes[start..end], scratch))
            .collect();
        (lines, bytes)
    }
}

/// One line as a response, or the warning upstream prints for it.
fn parse_line(text: &mut [u8], scratch: &mut proto::json::ReadScratch) -> ParsedLine {
    proto::json::from_mut_slice::<GetFlowsResponse>(text, scratch).map_err(|e| {
        format!(
            "level=WARN msg=\"Failed to unmarshal json to flow\" error={} line={}\n",
            crate::quote::go_quote(&e.to_string()),
            crate::quote::go_quote(&String::from_utf8_lossy(text))
        )
    })
}

/// Reads `input` to the end (or until `--first` is satisfied) and prints the selected
/// flows. Lines that are not valid responses are reported on `warnings` and skipped.
///
/// Two cores share the parsing: each batch read goes to a parsing thread when its
/// queue has room, else this thread parses it; this thread filters and prints
/// everything in the input's order, and hands the parsing thread's batches back to it
/// to be freed.
pub fn process<R: Read, W: Write, E: Write, L: Write>(
    req: &GetFlowsRequest,
    input: R,
    printer: &mut Printer<W, E>,
    warnings: &mut L,
) -> anyhow::Result<()> {
    process_in_batches(req, input, printer, warnings, BATCH_BYTES)
}

/// [`process`], reading `batch_bytes` at a time.
fn process_in_batches<R: Read, W: Write, E: Write, L: Write>(
    req: &GetFlowsRequest,
    input: R,
    printer: &mut Printer<W, E>,
    warnings: &mut L,
    batch_bytes: usize,
) -> anyhow::Result<()> {
    let mut filter = InputFilter::new(req)?;
    let mut input = Lines::new(input, batch_bytes);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (to_parser, batches) = mpsc::sync_channel::<Batch>(IN_FLIGHT_BATCHES);
        let (parsed_tx, parsed) = mpsc::sync_channel(IN_FLIGHT_BATCHES);
        let (spent_tx, spent) = mpsc::sync_channel::<Vec<ParsedLine>>(SPENT_BATCHES);
        // Read buffers the parsing thread is done with, to be filled again.
        let (buffers_tx, buffers) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT_BATCHES);
        scope.spawn(move || {
            let mut scratch = proto::json::ReadScratch::default();
            for batch in batches {
                while let Ok(lines) = spent.try_recv() {
                    drop(lines);
                }
                let (lines, buffer) = batch.parse(&mut scratch);
                let _ = buffers_tx.try_send(buffer);
                if parsed_tx.send(lines).is_err() {
                    break;
                }
            }
        });
        let mut scratch = proto::json::ReadScratch::default();
        // A read buffer this thread is done with.
        let mut own_buffer = Vec::new();
        let stopped = || anyhow::anyhow!("the parsing thread stopped");
        // Batches read and not yet printed, in order: `None` is parsed by the thread.
        let mut pending: VecDeque<Option<Vec<ParsedLine>>> = VecDeque::new();
        let mut ended = false;
        while !filter.done() {
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
                            let (lines, buffer) = batch.parse(&mut scratch);
                            own_buffer = buffer;
                            pending.push_back(Some(lines));
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
                    }
                }
            }
            // The batch to print, and whether the parsing thread made it.
            let (lines, theirs) = match pending.front_mut() {
                None => break,
                Some(Some(_)) => (pending.pop_front().flatten(), false),
                Some(None) => {
                    let must_wait = ended || pending.len() >= MAX_PENDING_BATCHES;
                    let ready = if must_wait {
                        Some(parsed.recv().map_err(|_| stopped())?)
                    } else {
                        match parsed.try_recv() {
                            Ok(lines) => Some(lines),
                            Err(mpsc::TryRecvError::Empty) => None,
                            Err(mpsc::TryRecvError::Disconnected) => return Err(stopped()),
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
            for line in &mut lines {
                if filter.done() {
                    break;
                }
                take(line, &mut filter, printer, warnings)?;
            }
            if theirs {
                // A full queue (or a stopped thread) leaves them to be freed here.
                let _ = spent_tx.try_send(lines);
            }
        }
        drop(to_parser);
        Ok(())
    })?;
    for res in filter.finish() {
        printer.write_get_flows_response(&res)?;
    }
    printer.close()?;
    Ok(())
}

/// Warns about a bad line, or filters and prints (or keeps) a response.
fn take<W: Write, E: Write, L: Write>(
    line: &mut ParsedLine,
    filter: &mut InputFilter,
    printer: &mut Printer<W, E>,
    warnings: &mut L,
) -> anyhow::Result<()> {
    let res = match line {
        Ok(res) => res,
        Err(warning) => {
            let _ = warnings.write_all(warning.as_bytes());
            return Ok(());
        }
    };
    if filter.accepts(res) && filter.offer(res) {
        printer.write_get_flows_response(res)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::{Output, PrinterOptions};

    /// Lines spanning several batches: response `k` is named `nK`, every 97th line is
    /// not JSON.
    fn lines(count: usize) -> String {
        let mut text = String::new();
        for k in 0..count {
            if k % 97 == 5 {
                text.push_str(&format!("not json {k}\n"));
            } else {
                text.push_str(&format!("{{\"flow\":{{}},\"node_name\":\"n{k}\"}}\r\n"));
            }
        }
        text
    }

    /// Lines per batch in these tests' inputs (their lines are 34-40 bytes long).
    const LINES: usize = 50;
    const BATCH: usize = 40 * LINES;

    /// The node names printed and the warnings' lines, in order, reading the input
    /// `batch_bytes` at a time, in reads of at most `read_size` bytes.
    fn run_with(
        req: &GetFlowsRequest,
        input: &str,
        batch_bytes: usize,
        read_size: u64,
    ) -> (Vec<usize>, Vec<usize>) {
        let opts = PrinterOptions {
            output: Output::JsonPb,
            ..PrinterOptions::default()
        };
        let mut printer = Printer::new(opts, Vec::new(), None::<Vec<u8>>);
        let mut warnings = Vec::new();
        let input = Trickle(input.as_bytes(), read_size);
        process_in_batches(req, input, &mut printer, &mut warnings, batch_bytes).expect("process");
        let number = |line: &str, prefix: &str| -> usize {
            let start = line.find(prefix).expect("prefix") + prefix.len();
            let digits: String = line[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().expect("number")
        };
        let out = String::from_utf8(printer.out_mut().clone()).expect("utf-8");
        let printed = out
            .lines()
            .map(|l| number(l, "\"node_name\":\"n"))
            .collect();
        let warned = String::from_utf8(warnings).expect("utf-8");
        let warned = warned
            .lines()
            .map(|l| number(l, "line=\"not json "))
            .collect();
        (printed, warned)
    }

    fn run(req: &GetFlowsRequest, input: &str) -> (Vec<usize>, Vec<usize>) {
        run_with(req, input, BATCH, u64::MAX)
    }

    /// A reader that hands out at most `.1` bytes per read.
    struct Trickle<'a>(&'a [u8], u64);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1 as usize).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn batches_keep_the_input_order_and_warn_in_order() {
        let count = LINES * 5 + 17;
        let input = lines(count);
        let good: Vec<usize> = (0..count).filter(|k| k % 97 != 5).collect();
        let bad: Vec<usize> = (0..count).filter(|k| k % 97 == 5).collect();
        let all = GetFlowsRequest::default();
        assert_eq!(run(&all, &input), (good.clone(), bad.clone()));
        // Batches of one line, lines cut by reads anywhere, one batch for everything.
        for (batch, read) in [
            (1, u64::MAX),
            (7, 5),
            (BATCH, 1),
            (BATCH, 333),
            (1 << 20, 1 << 20),
        ] {
            assert_eq!(
                run_with(&all, &input, batch, read),
                (good.clone(), bad.clone()),
                "batch {batch}, reads of {read}"
            );
        }

        let first = GetFlowsRequest {
            first: true,
            number: (LINES + 3) as u64,
            ..GetFlowsRequest::default()
        };
        let (printed, _) = run(&first, &input);
        assert_eq!(printed, good[..LINES + 3].to_vec());

        let last = GetFlowsRequest {
            number: (LINES * 2 + 1) as u64,
            ..GetFlowsRequest::default()
        };
        let (printed, warned) = run(&last, &input);
        assert_eq!(printed, good[good.len() - (LINES * 2 + 1)..].to_vec());
        assert_eq!(warned, bad);

        for count in [0, 1, LINES - 1, LINES, LINES + 1, LINES * 2] {
            let input = lines(count);
            let good: Vec<usize> = (0..count).filter(|k| k % 97 != 5).collect();
            assert_eq!(run(&all, &input).0, good, "{count} lines");
            // Without the last line break.
            let trimmed = input.trim_end_matches(['\r', '\n']);
            assert_eq!(run(&all, trimmed).0, good, "{count} lines, no last break");
        }
    }
}
