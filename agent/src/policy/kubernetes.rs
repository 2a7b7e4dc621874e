//! Kubernetes policy objects: CiliumNetworkPolicy and
//! CiliumClusterwideNetworkPolicy, their metadata, and the scope they give
//! their rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::api::Rule;
use super::document::DEFAULT_NAMESPACE;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct KubernetesObject {
    #[allow(dead_code)]
    api_version: ApiVersion,
    pub(super) kind: Kind,
    pub(super) metadata: Metadata,
    #[serde(default)]
    pub(super) spec: Option<Rule>,
    #[serde(default)]
    pub(super) specs: Option<Vec<Rule>>,
    /// Old examples put a description at the top; Kubernetes drops it.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    /// Status written back by a cluster; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
enum ApiVersion {
    #[serde(rename = "cilium.io/v2")]
    V2,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) enum Kind {
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Kubernetes object metadata; fields other than name, namespace and uid
/// are accepted and ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct Metadata {
    pub(super) name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    resource_version: Option<serde_yaml::Value>,
    #[serde(default)]
    generation: Option<serde_yaml::Value>,
    #[serde(default)]
    creation_timestamp: Option<serde_yaml::Value>,
    #[serde(default)]
    self_link: Option<serde_yaml::Value>,
    #[serde(default)]
    managed_fields: Option<serde_yaml::Value>,
    #[serde(default)]
    finalizers: Option<serde_yaml::Value>,
    #[serde(default)]
    owner_references: Option<serde_yaml::Value>,
    #[serde(default)]
    cluster_name: Option<serde_yaml::Value>,
}

/// Where a rule came from, which decides its selector scoping and labels.
pub(super) enum Scope {
    /// A bare rule list: taken as written.
    Bare,
    /// A CiliumNetworkPolicy in a namespace.
    Namespaced {
        name: String,
        namespace: String,
        uid: Option<String>,
    },
    /// A CiliumClusterwideNetworkPolicy.
    Clusterwide { name: String, uid: Option<String> },
}

impl KubernetesObject {
    pub(super) fn scope(&self) -> Scope {
        let name = self.metadata.name.clone();
        let uid = self.metadata.uid.clone();
        match self.kind {
            Kind::CiliumNetworkPolicy => Scope::Namespaced {
                name,
                namespace: self
                    .metadata
                    .namespace
                    .clone()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
                uid,
            },
            Kind::CiliumClusterwideNetworkPolicy => Scope::Clusterwide { name, uid },
        }
    }
}
