//! The lab's certificates: `up` has `hubble-agent certs` write a CA, each node's
//! server certificate (`<node>.<cluster>.hubble-grpc.cilium.io`), the relay's client
//! certificate (for mutual TLS towards agents) and the relay's and `hubble`'s
//! certificates into `<run>/tls/`. Agents serve `:4244` with mutual TLS; the relay
//! connects to them with its client certificate and checks each node's server name.
//! A node added later gets its certificate from the same CA.

use std::path::{Path, PathBuf};

use crate::command;
use crate::error::Result;
use crate::paths::RunLayout;
use crate::state::StateFile;
use crate::topology::Topology;

/// The files an agent serves with.
pub struct NodeTls {
    /// Its server certificate.
    pub cert: PathBuf,
    /// The certificate's key.
    pub key: PathBuf,
    /// The CA that signs client certificates (the relay's).
    pub ca: PathBuf,
}

/// Generates the lab's CA and certificates (replacing those of an older lab in the same
/// run dir), recording the directory for `down`.
pub fn generate(
    layout: &RunLayout,
    cluster_name: &str,
    topology: &Topology,
    agent_bin: &Path,
    state: &mut StateFile,
) -> Result<()> {
    let dir = layout.tls_dir();
    state.record(|state| {
        if !state.trees.contains(&dir) {
            state.trees.push(dir.clone())
        }
    })?;
    let dir_arg = dir.display().to_string();
    let mut args = vec![
        "certs",
        "--dir",
        &dir_arg,
        "--cluster-name",
        cluster_name,
        "--overwrite",
    ];
    for node in &topology.nodes {
        args.extend(["--node", node.name.as_str()]);
    }
    command::run(&agent_bin.display().to_string(), &args).map(drop)
}

/// The certificate files of node `node`, issuing its certificate from the lab's CA when
/// it has none yet (a node added after `up`).
pub fn node_files(
    layout: &RunLayout,
    cluster_name: &str,
    node: &str,
    agent_bin: &Path,
) -> Result<NodeTls> {
    let dir = layout.tls_dir();
    // `peer_service::tls_server_name`: the name relays check, and the file stem.
    let stem = format!("{node}.{cluster_name}.hubble-grpc.cilium.io");
    let cert = dir.join(format!("{stem}.crt"));
    if !cert.exists() {
        let dir_arg = dir.display().to_string();
        command::run(
            &agent_bin.display().to_string(),
            &[
                "certs",
                "--dir",
                &dir_arg,
                "--cluster-name",
                cluster_name,
                "--node",
                node,
                "--existing-ca",
            ],
        )?;
    }
    Ok(NodeTls {
        cert,
        key: dir.join(format!("{stem}.key")),
        ca: dir.join("ca.crt"),
    })
}
