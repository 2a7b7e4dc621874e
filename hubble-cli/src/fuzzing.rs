//! Entry point of the `input_file` fuzz target in `fuzz/` (cargo-fuzz) and of its corpus
//! replay test (`tests/tests/fuzz_replay.rs`): both call it, so what runs for minutes by
//! hand and what CI replays is the same code.

use proto::flow::FlowFilter;
use proto::observer::GetFlowsRequest;

use crate::cmd::observe::input_file::process;
use crate::printer::{Output, Printer, PrinterOptions};

/// The contents of a `hubble observe --input-file` file (JSON lines, any bytes), read
/// with a filter and printed in every output format.
pub fn input_file(data: &[u8]) {
    let request = GetFlowsRequest {
        whitelist: vec![
            FlowFilter {
                source_label: vec!["k8s:org=empire".into()],
                ..Default::default()
            },
            FlowFilter {
                protocol: vec!["tcp".into(), "http".into()],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let everything = GetFlowsRequest::default();
    for output in [
        Output::Compact,
        Output::Dict,
        Output::Table,
        Output::JsonPb,
        Output::JsonLegacy,
    ] {
        for (request, policy_names) in [(&everything, true), (&request, false)] {
            let options = PrinterOptions {
                output,
                color: output == Output::Dict,
                ip_translation: true,
                node_name: true,
                policy_names,
                debug: true,
                ..PrinterOptions::default()
            };
            let mut printer = Printer::new(options, std::io::sink(), Some(std::io::sink()));
            let _ = process(request, data, &mut printer, &mut std::io::sink());
        }
    }
}
