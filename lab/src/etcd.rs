//! The lab's etcd: the cluster store the agents share (Debian's `etcd-server`).
//!
//! It runs in the root namespace and listens only on the bridge address (`.1` of the
//! node subnet, e.g. `10.100.0.1:2379`), which every node namespace reaches over the
//! bridge and which never collides with an etcd the host may run on loopback. Its data
//! directory lives in the run directory, so identities survive an etcd restart;
//! `down` removes it.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::paths::RunLayout;
use crate::process::{self, Launch};
use crate::state::{ProcessKind, ProcessRecord};
use crate::topology::Topology;

/// Where Debian installs etcd.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";
/// etcd's client port.
pub const CLIENT_PORT: u16 = 2379;
/// etcd's peer port (a one-member cluster still binds it).
pub const PEER_PORT: u16 = 2380;
/// How long to wait for etcd to accept clients.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Role of the etcd process in the state file.
pub const ROLE: &str = "etcd";
/// Member name of the one-member cluster.
const MEMBER_NAME: &str = "hubble-lab";

/// The client address, on the bridge.
pub fn client_address(topology: &Topology) -> SocketAddr {
    SocketAddr::new(topology.bridge_address.addr().into(), CLIENT_PORT)
}

/// The client URL given to the agents (`--kvstore-endpoints`).
pub fn client_url(topology: &Topology) -> String {
    format!("http://{}", client_address(topology))
}

/// The etcd to start: an explicit path must exist; the default may be missing (the
/// lab then runs without a cluster store).
pub fn pick_binary(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_ETCD_BIN)).filter(|path| path.is_file()),
    }
}

/// The command line arguments of the lab's etcd.
pub fn arguments(topology: &Topology, layout: &RunLayout) -> Vec<String> {
    let host = topology.bridge_address.addr();
    let client = client_url(topology);
    let peer = format!("http://{host}:{PEER_PORT}");
    vec![
        format!("--name={MEMBER_NAME}"),
        format!("--data-dir={}", layout.etcd_dir().display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={MEMBER_NAME}={peer}"),
    ]
}

/// Starts etcd in the root namespace (the caller records it, then waits with
/// [`wait_ready`]).
pub fn spawn(etcd_bin: &Path, topology: &Topology, layout: &RunLayout) -> Result<ProcessRecord> {
    let log = layout.etcd_log();
    process::spawn_detached(Launch {
        cgroup: None,
        role: ROLE.to_string(),
        kind: ProcessKind::Etcd,
        netns: None,
        program: etcd_bin,
        args: arguments(topology, layout),
        log: &log,
    })
}

/// Waits until the etcd of `record` accepts TCP connections on its client address.
pub fn wait_ready(record: &ProcessRecord, topology: &Topology) -> Result<()> {
    let address = client_address(topology);
    process::wait_ready(record, READY_TIMEOUT, &format!("etcd on {address}"), || {
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologyConfig;

    #[test]
    fn etcd_listens_on_the_bridge_address_with_its_data_in_the_run_dir() {
        let topology = Topology::plan(&TopologyConfig {
            nodes: 2,
            prefix: "hl-".to_string(),
            node_subnet: "10.101.0.0/24".parse().expect("subnet"),
        })
        .expect("plan");
        assert_eq!(client_url(&topology), "http://10.101.0.1:2379");
        let args = arguments(&topology, &RunLayout::new("/tmp/lab"));
        assert!(
            args.contains(&"--data-dir=/tmp/lab/etcd".to_string()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--listen-client-urls=http://10.101.0.1:2379".to_string()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--listen-peer-urls=http://10.101.0.1:2380".to_string()),
            "{args:?}"
        );
        assert!(args.iter().all(|a| !a.contains("127.0.0.1")), "{args:?}");
    }
}
