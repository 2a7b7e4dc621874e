//! Key layout and value formats in etcd, following Cilium's kvstore paths.
//!
//! ```text
//! cilium/state/identities/v1/id/<id>              <labels>      persistent
//! cilium/state/identities/v1/labels/<labels>      <id>          persistent
//! cilium/state/identities/v1/value/<labels>/<node> <id>         under the node's lease
//! cilium/state/ip/v1/default/<ip>                 JSON pod      under the node's lease
//! cilium/state/nodes/v1/<cluster>/<node>          JSON node     under the node's lease (*)
//! cilium/state/services/v1/<cluster>/<ns>/<name>   JSON service  persistent (ClusterService)
//! ```
//!
//! `<labels>` is the label set as Cilium writes it in keys: every label as
//! `source:key=value` followed by `;`, in sorted order. The `id/` and `labels/` keys
//! are written together by one compare-and-swap, so a label set has one number and a
//! number one label set. Numbers are never reused during the life of a cluster's etcd
//! data: freeing one would need a cluster-wide check that no node is about to take a
//! new reference, and the range (256..=65535) outlasts any lab. The `value/` keys
//! show which nodes use an identity and vanish with a dead node's lease.
//!
//! (*) The node registrations belong to the peer service's etcd node source:
//! `peer_service::sources::etcd::{NODES_PREFIX, node_key, NodeValue}`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use peer_service::sources::etcd::EtcdError;

use super::KvstoreError;
use crate::identity::Identity;
use crate::labels::{Label, LabelSet};

/// Prefix of the identity number keys.
pub const IDENTITY_ID_PREFIX: &str = "cilium/state/identities/v1/id/";
/// Prefix of the label set keys.
pub const IDENTITY_LABELS_PREFIX: &str = "cilium/state/identities/v1/labels/";
/// Prefix of the per-node reference keys.
pub const IDENTITY_VALUE_PREFIX: &str = "cilium/state/identities/v1/value/";
/// Prefix of the ipcache entries (Cilium's default address space).
pub const IPCACHE_PREFIX: &str = "cilium/state/ip/v1/default/";
/// Prefix of the services (`<cluster>/<namespace>/<name>` below it).
pub const SERVICES_PREFIX: &str = "cilium/state/services/v1/";

/// Encodes a label set for keys: `k8s:class=xwing;k8s:org=alliance;`.
pub fn encode_labels(labels: &LabelSet) -> String {
    labels
        .iter()
        .map(|l| format!("{}:{}={};", l.source, l.key, l.value))
        .collect()
}

/// Decodes [`encode_labels`]' output.
pub fn decode_labels(text: &str) -> Result<LabelSet, String> {
    text.split(';')
        .filter(|part| !part.is_empty())
        .map(|part| Label::parse(part).map_err(|e| e.to_string()))
        .collect()
}

/// The key of identity `id`.
pub fn identity_id_key(id: Identity) -> String {
    format!("{IDENTITY_ID_PREFIX}{}", id.0)
}

/// The key holding the number of a label set.
pub fn identity_labels_key(encoded: &str) -> String {
    format!("{IDENTITY_LABELS_PREFIX}{encoded}")
}

/// The key saying that `node` uses the identity of a label set.
pub fn identity_reference_key(encoded: &str, node: &str) -> String {
    format!("{IDENTITY_VALUE_PREFIX}{encoded}/{node}")
}

/// The ipcache key of an address.
pub fn ipcache_key(ip: IpAddr) -> String {
    format!("{IPCACHE_PREFIX}{ip}")
}

/// Parses an identity number stored as decimal text.
pub fn parse_identity(key: &str, value: &[u8]) -> Result<Identity, KvstoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Identity)
        .ok_or_else(|| {
            KvstoreError::Store(EtcdError::BadValue {
                key: key.to_string(),
                reason: format!(
                    "expected an identity number, got {:?}",
                    String::from_utf8_lossy(value)
                ),
            })
        })
}

/// An ipcache entry as stored: Cilium's `IPIdentityPair` fields, plus the node name
/// and the pod's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcacheValue {
    #[serde(rename = "IP")]
    pub ip: IpAddr,
    #[serde(rename = "Mask", default)]
    pub mask: Option<String>,
    #[serde(rename = "HostIP")]
    pub host_ip: IpAddr,
    #[serde(rename = "ID")]
    pub id: u32,
    #[serde(rename = "Key", default)]
    pub key: u8,
    #[serde(rename = "Metadata", default)]
    pub metadata: String,
    #[serde(rename = "K8sNamespace", default)]
    pub namespace: String,
    #[serde(rename = "K8sPodName", default)]
    pub pod_name: String,
    #[serde(rename = "NodeName", default)]
    pub node_name: String,
    #[serde(rename = "Labels", default)]
    pub labels: Vec<String>,
}

/// Decodes a JSON value stored at `key`.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    key: &str,
    value: &[u8],
) -> Result<T, KvstoreError> {
    serde_json::from_slice(value).map_err(|e| {
        KvstoreError::Store(EtcdError::BadValue {
            key: key.to_string(),
            reason: e.to_string(),
        })
    })
}
