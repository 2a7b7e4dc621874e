//! Printer tests: upstream's own printer test expectations, lines of real `hubble
//! observe` output from the seeds, and goldens for every format.

use proto::flow::Flow;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

use super::*;

mod fixtures;
mod golden;
mod upstream;

/// Prints `responses` and returns (stdout, stderr).
pub fn render(opts: PrinterOptions, responses: &[GetFlowsResponse]) -> (String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    {
        let mut p = Printer::new(opts, &mut out, Some(&mut err));
        for r in responses {
            p.write_get_flows_response(r).expect("write");
        }
        p.close().expect("close");
    }
    (
        String::from_utf8(out).expect("utf8"),
        String::from_utf8(err).expect("utf8"),
    )
}

pub fn opts(output: Output) -> PrinterOptions {
    PrinterOptions {
        output,
        ip_translation: true,
        ..PrinterOptions::default()
    }
}

pub fn wrap(f: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: f.node_name.clone(),
        time: f.time,
        response_types: Some(ResponseTypes::Flow(f)),
    }
}
