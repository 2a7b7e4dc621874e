//! `agent`: the control plane of a hubble-rs node (see ARCHITECTURE.md).
//!
//! Endpoints come from YAML files in a watched directory ([`endpoints`]),
//! get security identities from their labels ([`identity`], [`labels`]),
//! and CiliumNetworkPolicy documents ([`policy`]) are compiled into policy map
//! entries for the datapath. The [`admin`] module serves and prints the
//! `hubble-agent endpoint|policy|identity` commands over a Unix socket.
//! [`fuzzing`] holds the fuzz targets' entry points (policy documents, endpoint
//! files, kvstore values).

pub mod admin;
pub mod cli;
pub mod daemon;
pub mod dirwatch;
pub mod endpoints;
pub mod fqdn;
pub mod fuzzing;
pub mod identity;
pub mod kvstore;
pub mod labels;
pub mod memory;
pub mod monitor;
pub mod policy;
pub mod services;
pub mod state;
pub mod tls;
