//! The fuzz targets of `fuzz/`, replayed in CI on their checked-in seeds plus a fixed
//! number of mutated and random inputs (see `tests::fuzz`). Each test names the target
//! it replays; `cargo fuzz run <target>` runs the same function for as long as wanted.

use tests::fuzz::{replay, ReplayReport};

fn check(target: &str, entry: fn(&[u8])) {
    let ReplayReport {
        seeds,
        inputs,
        slowest,
    } = replay(target, entry);
    println!("{target}: {inputs} inputs ({seeds} seeds), slowest {slowest:?}");
}

#[test]
fn datapath_record() {
    check("datapath_record", observer::fuzzing::datapath_record);
}

#[test]
fn flows_request() {
    check("flows_request", observer::fuzzing::flows_request);
}

#[test]
fn replay_line() {
    check("replay_line", observer::fuzzing::replay_line);
}

#[test]
fn node_response() {
    check("node_response", relay::fuzzing::node_response);
}

#[test]
fn policy_document() {
    check("policy_document", agent::fuzzing::policy_document);
}

#[test]
fn endpoint_file() {
    check("endpoint_file", agent::fuzzing::endpoint_file);
}

#[test]
fn kvstore_value() {
    check("kvstore_value", agent::fuzzing::kvstore_value);
}

#[test]
fn nodes_file() {
    check("nodes_file", peer_service::fuzzing::nodes_file);
}

#[test]
fn input_file() {
    check("input_file", hubble_cli::fuzzing::input_file);
}

#[test]
fn dns_message() {
    check("dns_message", proxy::fuzzing::dns_message);
}
