//! Entry point of the `nodes_file` fuzz target in `fuzz/` (cargo-fuzz) and of its
//! corpus replay test (`tests/tests/fuzz_replay.rs`): both call it, so what runs for
//! minutes by hand and what CI replays is the same code.

use std::path::Path;

use proto::peer::ChangeNotificationType;

use crate::hub::NodeHub;
use crate::sources::file::parse_nodes;

/// The text of a nodes file (`--peers-file`), parsed as the watcher parses it; an
/// accepted list goes into a node registry and is announced to peers as the Peer
/// service announces it.
pub fn nodes_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(nodes) = parse_nodes(Path::new("fuzz/nodes.yaml"), text) else {
        return;
    };
    for node in &nodes {
        let _ = node.to_notification(ChangeNotificationType::PeerAdded, true);
    }
    let hub = NodeHub::new();
    hub.replace_all(nodes.clone());
    assert_eq!(hub.nodes().len(), nodes.len(), "every listed node is known");
}
