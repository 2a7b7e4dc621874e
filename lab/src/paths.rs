//! Where the lab keeps its files, all under one run directory.
//!
//! ```text
//! <run>/lab/state.json                      what the lab created (read by `down`)
//! <run>/lab/<pod>.log                       output of a pod's workload
//! <run>/node<N>/endpoints/<ns>_<pod>.yaml   endpoint files watched by the agent
//! <run>/node<N>/hubble.sock                 the agent's Hubble API socket
//! <run>/node<N>/agent.sock                  the agent's admin socket
//! <run>/node<N>/agent.log                   the agent's output
//! <run>/node<N>/events.log                  the agent's flow export (rotated)
//! <run>/nodes.yaml                          static node list for the peer service
//! <run>/relay.log                           the relay's output
//! <run>/etcd/                               etcd's data directory (the cluster store)
//! <run>/etcd.log                            etcd's output
//! ```

use std::path::{Path, PathBuf};

/// Default run directory, shared with the agent's defaults.
pub const DEFAULT_RUN_DIR: &str = "/var/run/hubble-rs";

/// The file layout under a run directory.
#[derive(Debug, Clone)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    /// Creates the layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunLayout { root: root.into() }
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the lab's own files.
    pub fn lab_dir(&self) -> PathBuf {
        self.root.join("lab")
    }

    /// The state file that `down` reads.
    pub fn state_file(&self) -> PathBuf {
        self.lab_dir().join("state.json")
    }

    /// Log file of a pod's workload.
    pub fn workload_log(&self, pod: &str) -> PathBuf {
        self.lab_dir().join(format!("{pod}.log"))
    }

    /// Directory of node `index`.
    pub fn node_dir(&self, index: u8) -> PathBuf {
        self.root.join(format!("node{index}"))
    }

    /// The BPF file system the lab mounts for the agents' pins (visible inside the
    /// node namespaces, unlike `/sys/fs/bpf`, which `ip netns exec` hides).
    pub fn bpffs_dir(&self) -> PathBuf {
        self.root.join("bpffs")
    }

    /// Where the agent of node `index` pins its datapath's maps and links.
    pub fn pin_dir(&self, index: u8) -> PathBuf {
        self.bpffs_dir().join(format!("node{index}"))
    }

    /// Where the agent of node `index` keeps its policy, endpoints and identities.
    pub fn agent_state_dir(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("state")
    }

    /// Endpoints directory the agent of node `index` watches.
    pub fn endpoints_dir(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("endpoints")
    }

    /// Endpoint file of one pod on node `index`.
    pub fn endpoint_file(&self, index: u8, namespace: &str, pod: &str) -> PathBuf {
        self.endpoints_dir(index)
            .join(format!("{namespace}_{pod}.yaml"))
    }

    /// Services directory the agent of node `index` watches.
    pub fn services_dir(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("services")
    }

    /// Service file of one service on node `index`.
    pub fn service_file(&self, index: u8, namespace: &str, name: &str) -> PathBuf {
        self.services_dir(index)
            .join(format!("{namespace}_{name}.yaml"))
    }

    /// Hubble API Unix socket of the agent on node `index`.
    pub fn hubble_socket(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("hubble.sock")
    }

    /// Admin Unix socket of the agent on node `index`.
    pub fn admin_socket(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("agent.sock")
    }

    /// Log file of the agent on node `index`.
    pub fn agent_log(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("agent.log")
    }

    /// Flow export file of the agent on node `index`.
    pub fn export_file(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("events.log")
    }

    /// Static node list read by the agents' peer service.
    pub fn nodes_file(&self) -> PathBuf {
        self.root.join("nodes.yaml")
    }

    /// Certificates of the lab (CA, agents, relay), see `peer_service::certs`.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Log file of the relay.
    pub fn relay_log(&self) -> PathBuf {
        self.root.join("relay.log")
    }

    /// Data directory of the lab's etcd.
    pub fn etcd_dir(&self) -> PathBuf {
        self.root.join("etcd")
    }

    /// Log file of the lab's etcd.
    pub fn etcd_log(&self) -> PathBuf {
        self.root.join("etcd.log")
    }
}
