//! `lab`: the Star Wars demo topology on one machine, in network namespaces.
//!
//! [`up::up`] creates a bridge, one namespace per node and per pod, veth pairs, routes,
//! endpoint files for the agent, the pods' workloads (the deathstar HTTP service and a
//! DNS responder), and optionally etcd (the cluster store), the agents and the relay;
//! [`cluster`] adds nodes and stops or starts agents and etcd; [`traffic::traffic`] sends
//! the demo's requests from inside the pods; [`down::down`] removes exactly what the
//! state file lists. See ARCHITECTURE.md ("Lab topology", "Endpoint files").

pub mod agent_admin;
pub mod cgroup;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod deathstar;
pub mod dns;
pub mod dns_server;
pub mod down;
pub mod error;
pub mod etcd;
pub mod exec;
pub mod files;
pub mod http;
pub mod internet;
pub mod network;
pub mod paths;
pub mod pod_dns;
pub mod process;
pub mod request;
pub mod services;
pub mod state;
pub mod status;
pub mod tls;
pub mod topology;
pub mod traffic;
pub mod up;

pub use error::{LabError, Result};
