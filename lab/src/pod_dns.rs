//! Pod DNS, as kubelet sets it up: every pod's `resolv.conf` names the `kube-dns`
//! service's cluster IP, with the cluster's search domains and `ndots:5`, and the DNS
//! pod behind it answers each service's name with its cluster IP and one name per pod.
//!
//! `ip netns exec <ns>` bind-mounts `/etc/netns/<ns>/resolv.conf` over
//! `/etc/resolv.conf` in a private mount namespace, so anything run through it (the
//! pods' workloads, `hubble-lab exec`, `hubble-lab traffic`) resolves through the lab.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::topology::{PodPlan, Topology, Workload};

/// Where `ip netns exec` looks for a namespace's own `/etc` files.
pub const NETNS_ETC_DIR: &str = "/etc/netns";

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Directory of the per-namespace files of network namespace `netns`.
pub fn netns_etc_dir(netns: &str) -> PathBuf {
    PathBuf::from(NETNS_ETC_DIR).join(netns)
}

/// The `resolv.conf` of a pod in Kubernetes namespace `namespace` whose cluster DNS
/// server is `nameserver`, as kubelet writes it (ClusterFirst policy).
pub fn resolv_conf(nameserver: IpAddr, namespace: &str) -> String {
    format!(
        "# Written by hubble-lab: the lab's DNS pod, as kubelet's ClusterFirst policy.\n\
         nameserver {nameserver}\n\
         search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n\
         options ndots:5\n"
    )
}

/// The DNS pod of the topology, if it has one.
pub fn dns_pod(topology: &Topology) -> Option<&PodPlan> {
    topology
        .pods
        .iter()
        .find(|pod| pod.workload == Workload::Dns)
}

/// The name of a pod in the cluster's DNS: `<pod>.<namespace>.svc.cluster.local`, so
/// that a pod of the same namespace finds it by its bare name through the search list.
pub fn pod_name(pod: &PodPlan) -> String {
    format!("{}.{}.svc.{CLUSTER_DOMAIN}", pod.name, pod.namespace)
}

/// Every name the DNS pod answers, with its addresses: each service (`deathstar`,
/// `kube-dns`) with its cluster IP, as CoreDNS answers a ClusterIP service, and each
/// pod's name, and the internet's hosts ([`crate::internet`]). Without a load balancer (`load_balanced` false: a lab without agents)
/// a cluster IP would lead nowhere, so a service's name answers its pods' addresses,
/// as CoreDNS answers a headless service.
pub fn records(topology: &Topology, load_balanced: bool) -> Vec<(String, IpAddr)> {
    let mut records = Vec::new();
    for service in crate::services::SERVICES {
        let name = crate::services::dns_name(service);
        if load_balanced {
            records.push((name, IpAddr::V4(service.cluster_ip)));
            continue;
        }
        for pod in topology
            .pods
            .iter()
            .filter(|p| p.workload == service.workload)
        {
            records.push((name.clone(), IpAddr::V4(pod.ipv4)));
        }
    }
    for pod in &topology.pods {
        records.push((pod_name(pod), IpAddr::V4(pod.ipv4)));
        records.push((pod_name(pod), IpAddr::V6(pod.ipv6)));
    }
    // The internet's hosts, as CoreDNS forwards outside names to an upstream server.
    if topology.internet.is_some() {
        records.extend(crate::internet::dns_records());
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologyConfig;
    use crate::topology::DEATHSTAR_SERVICE_NAME;

    fn topology() -> Topology {
        Topology::plan(&TopologyConfig {
            nodes: 2,
            prefix: "hl-".to_string(),
            node_subnet: "10.100.0.0/24".parse().expect("subnet"),
        })
        .expect("plan")
    }

    #[test]
    fn resolv_conf_is_kubelets() {
        let text = resolv_conf("10.200.1.14".parse().expect("ip"), "default");
        assert!(text.contains("\nnameserver 10.200.1.14\n"), "{text}");
        assert!(
            text.contains("\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"),
            "{text}"
        );
        assert!(text.ends_with("options ndots:5\n"), "{text}");
    }

    #[test]
    fn deathstar_name_is_the_cluster_ip_and_each_pod_has_a_name() {
        let topology = topology();
        let records = records(&topology, true);
        let deathstar: Vec<String> = records
            .iter()
            .filter(|(name, _)| name == DEATHSTAR_SERVICE_NAME)
            .map(|(_, address)| address.to_string())
            .collect();
        assert_eq!(deathstar, ["10.96.60.53"]);
        assert!(records.iter().any(|(name, address)| name
            == "kube-dns.kube-system.svc.cluster.local"
            && address.to_string() == "10.96.0.10"));
        let xwing = topology.pod("xwing").expect("xwing");
        assert!(records
            .iter()
            .any(|(name, address)| name == "xwing.default.svc.cluster.local"
                && *address == IpAddr::V4(xwing.ipv4)));
        assert!(records
            .iter()
            .any(|(name, _)| name == "coredns.kube-system.svc.cluster.local"));
        assert_eq!(
            dns_pod(&topology).map(|pod| pod.name.as_str()),
            Some("coredns")
        );
    }

    #[test]
    fn without_load_balancing_a_service_name_answers_its_pods() {
        let topology = topology();
        let records = records(&topology, false);
        let deathstar: Vec<String> = records
            .iter()
            .filter(|(name, _)| name == DEATHSTAR_SERVICE_NAME)
            .map(|(_, address)| address.to_string())
            .collect();
        let pods: Vec<String> = ["deathstar-1", "deathstar-2"]
            .iter()
            .map(|name| topology.pod(name).expect("pod").ipv4.to_string())
            .collect();
        assert_eq!(deathstar, pods);
        let coredns = dns_pod(&topology).expect("coredns");
        assert!(records.iter().any(|(name, address)| name
            == "kube-dns.kube-system.svc.cluster.local"
            && *address == IpAddr::V4(coredns.ipv4)));
    }
}
