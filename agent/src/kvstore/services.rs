//! Services in etcd, as Cilium's ClusterMesh keeps them: one `ClusterService` JSON per
//! service at `cilium/state/services/v1/<cluster>/<namespace>/<name>`. Every agent
//! watches its cluster's prefix; each service becomes a declared service of the
//! state (source etcd), so every node serves every service.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::keys::decode_json;
use crate::services::{
    Protocol, ServiceBackendSpec, ServiceKind, ServiceName, ServicePortSpec, ServiceSpec,
};
use peer_service::sources::etcd::WatchHandler;

/// Prefix of the services of `cluster`.
pub fn services_prefix(cluster: &str) -> String {
    format!("{}{cluster}/", super::keys::SERVICES_PREFIX)
}

/// The key of one service.
pub fn service_key(cluster: &str, name: &ServiceName) -> String {
    format!(
        "{}{}/{}",
        services_prefix(cluster),
        name.namespace,
        name.name
    )
}

/// A port of a frontend or backend: protocol and number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L4Addr {
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// The port.
    pub port: u16,
}

/// Cilium's `ClusterService`: frontends and backends as address -> port name -> port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterService {
    /// The cluster's name.
    pub cluster: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Cluster IPs with their ports by port name.
    #[serde(default)]
    pub frontends: BTreeMap<String, BTreeMap<String, L4Addr>>,
    /// Backend addresses with their ports by port name.
    #[serde(default)]
    pub backends: BTreeMap<String, BTreeMap<String, L4Addr>>,
    /// Service labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The pod selector.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Whether the service is shared across clusters.
    #[serde(default)]
    pub shared: bool,
    /// Whether external endpoints are included.
    #[serde(default)]
    pub include_external: bool,
    /// The cluster's numeric ID.
    #[serde(default, rename = "clusterID")]
    pub cluster_id: u32,
}

impl ClusterService {
    /// The ClusterService of a declared service (its explicit backends as backends).
    pub fn from_spec(cluster: &str, spec: &ServiceSpec) -> ClusterService {
        let ports = |port_of: &dyn Fn(&ServicePortSpec) -> u16| {
            spec.ports
                .iter()
                .map(|p| {
                    let name = if p.name.is_empty() {
                        String::new()
                    } else {
                        p.name.clone()
                    };
                    (
                        name,
                        L4Addr {
                            protocol: p.protocol.to_string(),
                            port: port_of(p),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        ClusterService {
            cluster: cluster.to_string(),
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            frontends: spec
                .addresses()
                .iter()
                .map(|ip| (ip.to_string(), ports(&|p| p.port)))
                .collect(),
            backends: spec
                .backends
                .iter()
                .map(|b| (b.parts().0.to_string(), ports(&|p| p.backend_port())))
                .collect(),
            selector: spec.selector.clone(),
            ..Default::default()
        }
    }

    /// The declared service: every frontend address with the union of their ports
    /// (the backends' port of the same name as target port), the selector and the
    /// backend addresses. Errors name the bad value.
    pub fn to_spec(&self) -> Result<ServiceSpec, String> {
        let mut ports: BTreeMap<String, ServicePortSpec> = BTreeMap::new();
        let mut cluster_ips = Vec::new();
        for (address, named) in &self.frontends {
            let ip: IpAddr = address
                .parse()
                .map_err(|_| format!("frontends: {address:?} is not an IP address"))?;
            cluster_ips.push(ip);
            for (name, l4) in named {
                let protocol: Protocol = l4.protocol.parse()?;
                ports.insert(
                    name.clone(),
                    ServicePortSpec {
                        name: name.clone(),
                        port: l4.port,
                        target_port: None,
                        protocol,
                        node_port: None,
                    },
                );
            }
        }
        let mut backends = Vec::new();
        for (address, named) in &self.backends {
            let ip: IpAddr = address
                .parse()
                .map_err(|_| format!("backends: {address:?} is not an IP address"))?;
            backends.push(ServiceBackendSpec::Address(ip));
            for (name, l4) in named {
                if let Some(port) = ports.get_mut(name) {
                    port.target_port = Some(l4.port);
                }
            }
        }
        let spec = ServiceSpec {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            kind: ServiceKind::ClusterIP,
            cluster_ip: None,
            cluster_ips,
            ports: ports.into_values().collect(),
            selector: self.selector.clone(),
            backends,
            session_affinity: None,
            session_affinity_config: None,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// The services of the cluster as etcd holds them. Cloning gives another handle.
#[derive(Debug, Clone, Default)]
pub struct ClusterServices(Arc<RwLock<BTreeMap<String, ServiceSpec>>>);

impl ClusterServices {
    /// Every service, by key.
    pub fn all(&self) -> Vec<ServiceSpec> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Keeps [`ClusterServices`] equal to the services prefix.
pub(super) struct ServicesHandler {
    services: ClusterServices,
    changes: Arc<watch::Sender<u64>>,
}

impl ServicesHandler {
    pub fn new(services: ClusterServices, changes: Arc<watch::Sender<u64>>) -> Self {
        ServicesHandler { services, changes }
    }

    fn parse(key: &str, value: &[u8]) -> Option<ServiceSpec> {
        let service: ClusterService = match decode_json(key, value) {
            Ok(service) => service,
            Err(e) => {
                tracing::warn!("ignoring service: {e}");
                return None;
            }
        };
        match service.to_spec() {
            Ok(spec) => Some(spec),
            Err(e) => {
                tracing::warn!("ignoring service at {key}: {e}");
                None
            }
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

impl WatchHandler for ServicesHandler {
    fn snapshot(&self, entries: Vec<(String, Vec<u8>)>) {
        let table: BTreeMap<String, ServiceSpec> = entries
            .iter()
            .filter_map(|(key, value)| Some((key.clone(), Self::parse(key, value)?)))
            .collect();
        let mut services = self.services.0.write().unwrap_or_else(|e| e.into_inner());
        if *services != table {
            *services = table;
            drop(services);
            self.changed();
        }
    }

    fn put(&self, key: &str, value: &[u8]) {
        // A bad value keeps what the key held before.
        let Some(spec) = Self::parse(key, value) else {
            return;
        };
        let mut services = self.services.0.write().unwrap_or_else(|e| e.into_inner());
        if services.insert(key.to_string(), spec.clone()) != Some(spec) {
            drop(services);
            self.changed();
        }
    }

    fn delete(&self, key: &str) {
        let removed = self
            .services
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .is_some();
        if removed {
            self.changed();
        }
    }
}
