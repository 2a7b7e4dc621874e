//! `--input-file`: flows read as `jsonpb` lines from a file or standard input, filtered
//! locally with the request's filters, time range and `--first`/`--last`, in the order
//! they are read.

use std::collections::VecDeque;
use std::io::{Read, Write};

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

/// One line as a response, or the warning printed for it.
type ParsedLine = Result<GetFlowsResponse, String>;

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
/// Two cores share the parsing (`proto::json::lines`); this thread filters and prints
/// everything in the input's order.
pub fn process<R: Read, W: Write, E: Write, L: Write>(
    req: &GetFlowsRequest,
    input: R,
    printer: &mut Printer<W, E>,
    warnings: &mut L,
) -> anyhow::Result<()> {
    process_in_batches(
        req,
        input,
        printer,
        warnings,
        proto::json::lines::BATCH_BYTES,
    )
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
    // Labels neither printed nor filtered on are checked but not kept.
    let skip_labels = !printer.prints_labels() && !filter.filters.reads_labels();
    proto::json::lines::parse_in_batches(
        input,
        batch_bytes,
        |text: &mut [u8], scratch: &mut proto::json::ReadScratch| {
            scratch.skip_labels(skip_labels);
            parse_line(text, scratch)
        },
        |lines: &mut Vec<ParsedLine>| -> anyhow::Result<bool> {
            for line in lines.iter_mut() {
                if filter.done() {
                    break;
                }
                take(line, &mut filter, printer, warnings)?;
            }
            // A batch is all that was read at once: piped in live, its flows show now.
            printer.flush()?;
            Ok(!filter.done())
        },
    )?;
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
    /// `batch_bytes` at a time (how lines are cut is `proto::json::lines`' test).
    fn run_with(
        req: &GetFlowsRequest,
        input: &str,
        batch_bytes: usize,
    ) -> (Vec<usize>, Vec<usize>) {
        let opts = PrinterOptions {
            output: Output::JsonPb,
            ..PrinterOptions::default()
        };
        let mut printer = Printer::new(opts, Vec::new(), None::<Vec<u8>>);
        let mut warnings = Vec::new();
        process_in_batches(
            req,
            input.as_bytes(),
            &mut printer,
            &mut warnings,
            batch_bytes,
        )
        .expect("process");
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
        run_with(req, input, BATCH)
    }

    #[test]
    fn batches_keep_the_input_order_and_warn_in_order() {
        let count = LINES * 5 + 17;
        let input = lines(count);
        let good: Vec<usize> = (0..count).filter(|k| k % 97 != 5).collect();
        let bad: Vec<usize> = (0..count).filter(|k| k % 97 == 5).collect();
        let all = GetFlowsRequest::default();
        assert_eq!(run(&all, &input), (good.clone(), bad.clone()));
        // Batches of one line, of a few, one batch for everything.
        for batch in [1, 7, 333, 1 << 20] {
            assert_eq!(
                run_with(&all, &input, batch),
                (good.clone(), bad.clone()),
                "batch {batch}"
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

    /// Labels are read only when something needs them: printed (JSON) or filtered on
    /// (a label selector or a CEL expression). Either way the printed flows are the
    /// same as upstream prints them.
    #[test]
    fn labels_are_kept_when_printed_or_filtered_on() {
        let input = concat!(
            r#"{"flow":{"source":{"pod_name":"xwing","labels":["k8s:org=alliance"]},"node_labels":["zone=a"],"node_name":"n1"}}"#,
            "\n",
            r#"{"flow":{"source":{"pod_name":"tiefighter","labels":["k8s:org=empire"]},"node_labels":["zone=b"],"node_name":"n2"}}"#,
            "\n",
        );
        let print = |output: Output, filter: proto::flow::FlowFilter| -> String {
            let req = GetFlowsRequest {
                whitelist: vec![filter],
                ..GetFlowsRequest::default()
            };
            let opts = PrinterOptions {
                output,
                node_name: true,
                ..PrinterOptions::default()
            };
            let mut printer = Printer::new(opts, Vec::new(), None::<Vec<u8>>);
            process(&req, input.as_bytes(), &mut printer, &mut Vec::new()).expect("process");
            String::from_utf8(printer.out_mut().clone()).expect("utf-8")
        };
        let filters = [
            (
                "source label",
                proto::flow::FlowFilter {
                    source_label: vec!["k8s:org=empire".into()],
                    ..Default::default()
                },
                "[n2]",
                "[n1]",
            ),
            (
                "node label",
                proto::flow::FlowFilter {
                    node_labels: vec!["zone=a".into()],
                    ..Default::default()
                },
                "[n1]",
                "[n2]",
            ),
            (
                "CEL",
                proto::flow::FlowFilter {
                    experimental: Some(proto::flow::flow_filter::Experimental {
                        cel_expression: vec!["'k8s:org=alliance' in _flow.source.labels".into()],
                    }),
                    ..Default::default()
                },
                "[n1]",
                "[n2]",
            ),
        ];
        for (what, filter, kept, dropped) in filters {
            let out = print(Output::Compact, filter);
            assert!(
                out.contains(kept) && !out.contains(dropped),
                "{what} filter: {out}"
            );
        }
        let json = print(Output::JsonPb, proto::flow::FlowFilter::default());
        assert!(
            json.contains(r#""labels":["k8s:org=alliance"]"#)
                && json.contains(r#""node_labels":["zone=b"]"#),
            "{json}"
        );
        // Unfiltered compact output reads no labels and prints both flows.
        let all = print(Output::Compact, proto::flow::FlowFilter::default());
        assert!(all.contains("[n1]") && all.contains("[n2]"), "{all}");
    }
}
