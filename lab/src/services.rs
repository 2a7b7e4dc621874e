//! The lab's Kubernetes services: `default/deathstar` (ClusterIP 10.96.60.53:80/TCP,
//! both deathstars) and `kube-system/kube-dns` (10.96.0.10:53, UDP and TCP, the coredns
//! pod). One source of truth per mode: with etcd they are `ClusterService` keys
//! (`cilium/state/services/v1/<cluster>/<namespace>/<name>`, written with `etcdctl`),
//! which every agent watches; without it, service files (ARCHITECTURE.md, "Service
//! files") in every node's services directory.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::error::Result;
use crate::paths::RunLayout;
use crate::state::{write_atomically, StateFile};
use crate::topology::{Topology, Workload};
use crate::up::{record_dir, record_file, DEATHSTAR_PORT, DNS_PORT};

/// The deathstar service's cluster IP (the seeds').
pub const DEATHSTAR_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 60, 53);

/// The kube-dns service's cluster IP (Kubernetes' usual `.10` of the service CIDR).
pub const KUBE_DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// One service of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabService {
    pub namespace: &'static str,
    pub name: &'static str,
    pub cluster_ip: Ipv4Addr,
    /// `(name, port, protocol)`.
    pub ports: &'static [(&'static str, u16, &'static str)],
    pub selector: &'static [(&'static str, &'static str)],
    /// Pods whose labels the selector matches.
    pub workload: Workload,
}

/// The lab's services.
pub const SERVICES: &[LabService] = &[
    LabService {
        namespace: "default",
        name: "deathstar",
        cluster_ip: DEATHSTAR_VIP,
        ports: &[("http", DEATHSTAR_PORT, "TCP")],
        selector: &[("org", "empire"), ("class", "deathstar")],
        workload: Workload::Deathstar,
    },
    LabService {
        namespace: "kube-system",
        name: "kube-dns",
        cluster_ip: KUBE_DNS_VIP,
        ports: &[("dns", DNS_PORT, "UDP"), ("dns-tcp", DNS_PORT, "TCP")],
        selector: &[("k8s-app", "kube-dns")],
        workload: Workload::Dns,
    },
];

/// The service file of `service`. With `explicit_backends` (agents without a cluster
/// store, which know only their own node's pods) the selected pods are also listed
/// by address with their node, so every node balances over every backend.
pub fn service_yaml(service: &LabService, topology: &Topology, explicit_backends: bool) -> String {
    let mut text = format!(
        "# Written by hubble-lab.\nname: {}\nnamespace: {}\ntype: ClusterIP\nclusterIP: {}\nports:\n",
        service.name, service.namespace, service.cluster_ip
    );
    for (name, port, protocol) in service.ports {
        let _ = writeln!(
            text,
            "- name: {name}\n  port: {port}\n  targetPort: {port}\n  protocol: {protocol}"
        );
    }
    text.push_str("selector:\n");
    for (key, value) in service.selector {
        let _ = writeln!(text, "  {key}: {value}");
    }
    if explicit_backends {
        text.push_str("backends:\n");
        for pod in backends(service, topology) {
            let _ = writeln!(text, "- address: {}\n  node: node{}", pod.0, pod.1);
        }
    }
    text
}

/// The pods a service selects: address and node index.
pub fn backends(service: &LabService, topology: &Topology) -> Vec<(IpAddr, u8)> {
    topology
        .pods
        .iter()
        .filter(|pod| pod.namespace == service.namespace && pod.workload == service.workload)
        .map(|pod| (IpAddr::V4(pod.ipv4), pod.node))
        .collect()
}

/// Writes the lab's service files into node `index`'s services directory (recorded
/// in the state file, so `down` removes them).
pub fn write_service_files(
    layout: &RunLayout,
    topology: &Topology,
    index: u8,
    explicit_backends: bool,
    state: &mut StateFile,
) -> Result<()> {
    record_dir(state, &layout.services_dir(index))?;
    for service in SERVICES {
        let path = layout.service_file(index, service.namespace, service.name);
        record_file(state, &path)?;
        write_atomically(
            &path,
            service_yaml(service, topology, explicit_backends).as_bytes(),
        )?;
    }
    Ok(())
}

/// Cilium's `ClusterService` JSON of `service` in `cluster`: the cluster IP and the
/// selected pods with their ports by name, and the selector.
pub fn cluster_service_json(service: &LabService, topology: &Topology, cluster: &str) -> String {
    let ports = |_: ()| {
        service
            .ports
            .iter()
            .map(|(name, port, protocol)| {
                (
                    name.to_string(),
                    serde_json::json!({"protocol": protocol, "port": port}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
    };
    let backends: serde_json::Map<_, _> = backends(service, topology)
        .into_iter()
        .map(|(ip, _)| (ip.to_string(), serde_json::Value::Object(ports(()))))
        .collect();
    let selector: serde_json::Map<_, _> = service
        .selector
        .iter()
        .map(|(key, value)| (key.to_string(), serde_json::json!(value)))
        .collect();
    serde_json::json!({
        "cluster": cluster,
        "namespace": service.namespace,
        "name": service.name,
        "frontends": {service.cluster_ip.to_string(): ports(())},
        "backends": backends,
        "labels": {},
        "selector": selector,
        "shared": false,
        "includeExternal": false,
    })
    .to_string()
}

/// The etcd key of `service` in `cluster`.
pub fn etcd_key(service: &LabService, cluster: &str) -> String {
    format!(
        "cilium/state/services/v1/{cluster}/{}/{}",
        service.namespace, service.name
    )
}

/// Puts the lab's services into etcd at `endpoint` with `etcdctl` (Debian's
/// etcd-client); they go away with etcd's data when the lab is removed.
pub fn put_in_etcd(endpoint: &str, topology: &Topology, cluster: &str) -> Result<()> {
    for service in SERVICES {
        let key = etcd_key(service, cluster);
        let value = cluster_service_json(service, topology, cluster);
        crate::command::run("etcdctl", &["--endpoints", endpoint, "put", &key, &value])?;
    }
    Ok(())
}

/// The DNS name of a service: `<name>.<namespace>.svc.cluster.local`.
pub fn dns_name(service: &LabService) -> String {
    format!(
        "{}.{}.svc.{}",
        service.name,
        service.namespace,
        crate::pod_dns::CLUSTER_DOMAIN
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologyConfig;

    #[test]
    fn files_name_every_backend_without_a_cluster_store() {
        let topology = Topology::plan(&TopologyConfig {
            nodes: 2,
            prefix: "hl-".to_string(),
            node_subnet: "10.100.0.0/24".parse().expect("subnet"),
        })
        .expect("plan");
        let deathstar = &SERVICES[0];
        let with = service_yaml(deathstar, &topology, true);
        let addresses: Vec<String> = backends(deathstar, &topology)
            .iter()
            .map(|(ip, node)| format!("- address: {ip}\n  node: node{node}"))
            .collect();
        assert_eq!(addresses.len(), 2);
        for address in &addresses {
            assert!(with.contains(address.as_str()), "{with}");
        }
        assert!(with.contains("clusterIP: 10.96.60.53\n"), "{with}");
        assert!(with.contains("  class: deathstar\n"), "{with}");
        let without = service_yaml(deathstar, &topology, false);
        assert!(!without.contains("backends:"), "{without}");
        let dns = service_yaml(&SERVICES[1], &topology, false);
        assert!(
            dns.contains("protocol: UDP") && dns.contains("protocol: TCP"),
            "{dns}"
        );
        assert_eq!(
            dns_name(&SERVICES[0]),
            "deathstar.default.svc.cluster.local"
        );
    }
}
