//! `--input-file`: flows read as `jsonpb` lines from a file or standard input, filtered
//! locally with the request's filters, time range and `--first`/`--last`, in the order
//! they are read.

use std::collections::VecDeque;
use std::io::{BufRead, Write};

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

/// Reads `input` to the end (or until `--first` is satisfied) and prints the selected
/// flows. Lines that are not valid responses are reported on `warnings` and skipped.
pub fn process<R: BufRead, W: Write, E: Write, L: Write>(
    req: &GetFlowsRequest,
    mut input: R,
    printer: &mut Printer<W, E>,
    warnings: &mut L,
) -> anyhow::Result<()> {
    let mut filter = InputFilter::new(req)?;
    let mut line = Vec::with_capacity(4096);
    while !filter.done() {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        // Valid UTF-8 is checked once for the line, not string by string; a line that
        // is not UTF-8 goes through the byte parser, which names where it fails.
        let parsed = match std::str::from_utf8(text) {
            Ok(text) => serde_json::from_str::<GetFlowsResponse>(text),
            Err(_) => serde_json::from_slice::<GetFlowsResponse>(text),
        };
        let res = match parsed {
            Ok(res) => res,
            Err(e) => {
                let _ = writeln!(
                    warnings,
                    "level=WARN msg=\"Failed to unmarshal json to flow\" error={} line={}",
                    crate::quote::go_quote(&e.to_string()),
                    crate::quote::go_quote(&String::from_utf8_lossy(text))
                );
                continue;
            }
        };
        if !filter.accepts(&res) {
            continue;
        }
        if let Some(res) = filter.offer(res) {
            printer.write_get_flows_response(&res)?;
        }
    }
    for res in filter.finish() {
        printer.write_get_flows_response(&res)?;
    }
    printer.close()?;
    Ok(())
}
