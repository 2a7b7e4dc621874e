//! Printer tests: upstream's own printer test expectations, lines of real `hubble
//! observe` output from the seeds, and goldens for every format.

use proto::flow::Flow;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

use super::*;

mod fixtures;
mod golden;
mod l7_records;
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

#[test]
fn compact_prints_the_names_the_endpoint_looked_up() {
    let mut flow = fixtures::trace_to_endpoint();
    flow.source = fixtures::ep("default", "xwing", 6305);
    flow.ip = Some(proto::flow::Ip {
        source: "10.200.1.12".into(),
        destination: "192.0.2.10".into(),
        ..Default::default()
    });
    if let Some(proto::flow::layer4::Protocol::Tcp(tcp)) =
        flow.l4.as_mut().and_then(|l4| l4.protocol.as_mut())
    {
        tcp.source_port = 50502;
        tcp.destination_port = 443;
    }
    flow.destination = Some(proto::flow::Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    });
    flow.destination_names = vec!["api.github.com".into()];
    let (out, _) = render(opts(Output::Compact), &[wrap(flow)]);
    assert!(
        out.contains("default/xwing:50502 (ID:6305) -> api.github.com:443 (world) "),
        "{out}"
    );
}
