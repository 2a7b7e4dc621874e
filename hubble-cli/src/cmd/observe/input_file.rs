//! `--input-file`: flows read as `jsonpb` lines from a file or standard input, filtered
//! locally with the request's filters, time range and `--first`/`--last`, in the order
//! they are read.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
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

    /// Offers an accepted response; returns it when it is to be printed now.
    pub fn offer(&mut self, res: GetFlowsResponse) -> Option<GetFlowsResponse> {
        match &mut self.keep {
            Keep::All => Some(res),
            Keep::First(_) => {
                self.returned += 1;
                Some(res)
            }
            Keep::Last(buffer, cap) => {
                if buffer.len() == *cap {
                    buffer.pop_front();
                }
                buffer.push_back(res);
                None
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

/// Lines read and parsed together, on the parsing thread or on the reading one.
pub const BATCH_LINES: usize = 512;
/// Batches queued for the parsing thread, and parsed batches it has not handed back
/// (each channel's bound; when the first is full this thread parses the batch itself,
/// nothing is dropped).
pub const IN_FLIGHT_BATCHES: usize = 2;
/// Batches read and not yet printed; at the limit this thread waits for the parsing
/// thread before reading more.
pub const MAX_PENDING_BATCHES: usize = 8;

/// One line as a response, or the warning printed for it.
type ParsedLine = Result<GetFlowsResponse, String>;

/// Lines of the input, one after the other in one buffer.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes` (without its line break).
    ends: Vec<(usize, usize)>,
}

impl Batch {
    /// Reads up to `BATCH_LINES` lines; an empty batch means the input ended.
    fn read<R: BufRead>(input: &mut R) -> std::io::Result<Self> {
        let mut batch = Batch {
            bytes: Vec::with_capacity(BATCH_LINES * 2048),
            ends: Vec::with_capacity(BATCH_LINES),
        };
        while batch.ends.len() < BATCH_LINES {
            let start = batch.bytes.len();
            if input.read_until(b'\n', &mut batch.bytes)? == 0 {
                break;
            }
            let line = &batch.bytes[start..];
            let mut len = line.len();
            if line.ends_with(b"\n") {
                len -= 1;
                if line[..len].ends_with(b"\r") {
                    len -= 1;
                }
            }
            batch.ends.push((start, start + len));
        }
        Ok(batch)
    }

    fn parse(&self) -> Vec<ParsedLine> {
        let mut scratch = proto::json::ReadScratch::default();
        self.ends
            .iter()
            .map(|&(start, end)| parse_line(&self.bytes[start..end], &mut scratch))
            .collect()
    }
}

/// One line as a response, or the warning upstream prints for it.
fn parse_line(text: &[u8], scratch: &mut proto::json::ReadScratch) -> ParsedLine {
    proto::json::from_slice::<GetFlowsResponse>(text, scratch).map_err(|e| {
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
/// everything in the input's order.
pub fn process<R: BufRead, W: Write, E: Write, L: Write>(
    req: &GetFlowsRequest,
    mut input: R,
    printer: &mut Printer<W, E>,
    warnings: &mut L,
) -> anyhow::Result<()> {
    let mut filter = InputFilter::new(req)?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (to_parser, batches) = mpsc::sync_channel::<Batch>(IN_FLIGHT_BATCHES);
        let (parsed_tx, parsed) = mpsc::sync_channel(IN_FLIGHT_BATCHES);
        scope.spawn(move || {
            for batch in batches {
                if parsed_tx.send(batch.parse()).is_err() {
                    break;
                }
            }
        });
        let stopped = || anyhow::anyhow!("the parsing thread stopped");
        // Batches read and not yet printed, in order: `None` is parsed by the thread.
        let mut pending: VecDeque<Option<Vec<ParsedLine>>> = VecDeque::new();
        let mut ended = false;
        while !filter.done() {
            if !ended && pending.len() < MAX_PENDING_BATCHES {
                let batch = Batch::read(&mut input)?;
                ended = batch.ends.len() < BATCH_LINES;
                if !batch.ends.is_empty() {
                    match to_parser.try_send(batch) {
                        Ok(()) => pending.push_back(None),
                        Err(mpsc::TrySendError::Full(batch)) => {
                            pending.push_back(Some(batch.parse()))
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
                    }
                }
            }
            let lines = match pending.front_mut() {
                None => break,
                Some(Some(_)) => pending.pop_front().flatten(),
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
                    ready
                }
            };
            for line in lines.into_iter().flatten() {
                if filter.done() {
                    break;
                }
                take(line, &mut filter, printer, warnings)?;
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
    line: ParsedLine,
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
    if filter.accepts(&res) {
        if let Some(res) = filter.offer(res) {
            printer.write_get_flows_response(&res)?;
        }
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

    /// The node names printed and the warnings' lines, in order.
    fn run(req: &GetFlowsRequest, input: &str) -> (Vec<usize>, Vec<usize>) {
        let opts = PrinterOptions {
            output: Output::JsonPb,
            ..PrinterOptions::default()
        };
        let mut printer = Printer::new(opts, Vec::new(), None::<Vec<u8>>);
        let mut warnings = Vec::new();
        process(req, input.as_bytes(), &mut printer, &mut warnings).expect("process");
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

    #[test]
    fn batches_keep_the_input_order_and_warn_in_order() {
        let count = BATCH_LINES * 5 + 17;
        let input = lines(count);
        let good: Vec<usize> = (0..count).filter(|k| k % 97 != 5).collect();
        let bad: Vec<usize> = (0..count).filter(|k| k % 97 == 5).collect();
        let all = GetFlowsRequest::default();
        assert_eq!(run(&all, &input), (good.clone(), bad.clone()));

        let first = GetFlowsRequest {
            first: true,
            number: (BATCH_LINES + 3) as u64,
            ..GetFlowsRequest::default()
        };
        let (printed, _) = run(&first, &input);
        assert_eq!(printed, good[..BATCH_LINES + 3].to_vec());

        let last = GetFlowsRequest {
            number: (BATCH_LINES * 2 + 1) as u64,
            ..GetFlowsRequest::default()
        };
        let (printed, warned) = run(&last, &input);
        assert_eq!(printed, good[good.len() - (BATCH_LINES * 2 + 1)..].to_vec());
        assert_eq!(warned, bad);

        for count in [
            0,
            1,
            BATCH_LINES - 1,
            BATCH_LINES,
            BATCH_LINES + 1,
            BATCH_LINES * 2,
        ] {
            let input = lines(count);
            let good: Vec<usize> = (0..count).filter(|k| k % 97 != 5).collect();
            assert_eq!(run(&all, &input).0, good, "{count} lines");
        }
    }
}
