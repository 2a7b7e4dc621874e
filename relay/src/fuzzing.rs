//! Entry point of the `node_response` fuzz target in `fuzz/` (cargo-fuzz) and of its
//! corpus replay test (`tests/tests/fuzz_replay.rs`): both call it, so what runs for
//! minutes by hand and what CI replays is the same code.

use bytes::Bytes;
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::GetFlowsResponse;

use crate::raw::RawResponse;

/// A GetFlowsResponse as a node sent it: read as the relay reads it (time, node name,
/// kind), given a node name when it has none, and decoded whole when a client needs
/// it. Whatever the bytes, the relay reads them without panicking; when they decode,
/// the time the relay merges by is the time a client decodes, and a node name it adds
/// is the one a client decodes.
pub fn node_response(data: &[u8]) {
    let Ok(mut response) = RawResponse::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    if let Ok(decoded) = response.decode() {
        assert_eq!(
            response.time,
            decoded_time(&decoded),
            "merge time of {decoded:?}"
        );
    }
    let had_name = response.has_node_name;
    response.set_missing_node_name("fuzz-node");
    if let (false, Ok(decoded)) = (had_name, response.decode()) {
        assert_eq!(decoded.node_name, "fuzz-node", "the added node name wins");
    }
}

/// The time a client sees: the response's, else its flow's, in nanoseconds.
fn decoded_time(response: &GetFlowsResponse) -> Option<i128> {
    let flow_time = match &response.response_types {
        Some(ResponseTypes::Flow(flow)) => flow.time.as_ref(),
        _ => None,
    };
    response
        .time
        .as_ref()
        .or(flow_time)
        .map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
}
