//! The parser's getters, answered from the control plane's state.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use observer::parser::{
    CgroupGetter, DnsGetter, EndpointGetter, Getters, IdentityGetter, LinkGetter, ServiceGetter,
};
use proto::flow;

use crate::identity::Identity;
use crate::kvstore::RemoteEndpoints;
use crate::state::AgentState;

/// Interface names of the attached endpoint veths, by ifindex.
#[derive(Clone, Default)]
pub struct Links(Arc<RwLock<HashMap<u32, String>>>);

impl Links {
    pub fn replace(&self, names: HashMap<u32, String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = names;
    }
}

impl LinkGetter for Links {
    fn link_name(&self, ifindex: u32) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ifindex)
            .cloned()
    }
}

/// Endpoint and identity lookups over [`AgentState`].
#[derive(Clone)]
pub struct StateGetters {
    state: Arc<AgentState>,
    links: Links,
    remote: Option<RemoteEndpoints>,
    /// `--cgroup-root`: pods' processes sit in `<root>/<namespace>_<pod>`.
    cgroup_root: Option<std::path::PathBuf>,
    /// cgroup id -> (namespace, pod), filled on misses.
    cgroups: Arc<RwLock<HashMap<u64, (String, String)>>>,
    /// Local pods' flow endpoints by address, as built at one state generation.
    endpoints: Arc<RwLock<EndpointCache>>,
}

/// Flow endpoints of local pods, built once per state generation: every change of the
/// endpoints bumps the generation after the table changed, so an entry tagged with the
/// current generation is what the table holds. Holds at most one entry per local pod
/// address (misses are not cached), so it is bounded as the endpoint table is.
#[derive(Default)]
struct EndpointCache {
    generation: u64,
    by_ip: HashMap<IpAddr, flow::Endpoint>,
}

impl StateGetters {
    pub fn new(state: Arc<AgentState>, links: Links) -> Self {
        Self {
            state,
            links,
            remote: None,
            cgroup_root: None,
            cgroups: Arc::default(),
            endpoints: Arc::default(),
        }
    }

    /// The flow endpoint of the local pod at `ip`, from the cache when it is current.
    fn local_endpoint(&self, ip: IpAddr) -> Option<flow::Endpoint> {
        // Read before the table: a change after this read is seen at the next call.
        let generation = self.state.generation();
        {
            let cache = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
            if cache.generation == generation {
                if let Some(endpoint) = cache.by_ip.get(&ip) {
                    return Some(endpoint.clone());
                }
            }
        }
        let endpoint = self.state.endpoint_by_ip(ip)?;
        let endpoint = flow::Endpoint {
            id: u32::from(endpoint.id),
            identity: endpoint.identity.0,
            cluster_name: self.state.cluster().to_string(),
            namespace: endpoint.spec.namespace.clone(),
            labels: endpoint.labels.to_strings(),
            pod_name: endpoint.spec.name.clone(),
            workloads: endpoint
                .spec
                .workloads
                .iter()
                .map(|w| flow::Workload {
                    name: w.name.clone(),
                    kind: w.kind.clone(),
                })
                .collect(),
        };
        let mut cache = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if cache.generation != generation {
            cache.by_ip.clear();
            cache.generation = generation;
        }
        cache.by_ip.insert(ip, endpoint.clone());
        Some(endpoint)
    }

    /// Finds sockets' pods by cgroup under `root` (see [`CgroupGetter`]).
    pub fn with_cgroup_root(mut self, root: Option<std::path::PathBuf>) -> Self {
        self.cgroup_root = root;
        self
    }

    /// Also answers for the pods of other nodes (cluster mode), with endpoint id 0 as
    /// Hubble shows remote endpoints.
    pub fn with_remote_endpoints(mut self, remote: Option<RemoteEndpoints>) -> Self {
        self.remote = remote;
        self
    }

    fn remote_endpoint(&self, ip: IpAddr) -> Option<flow::Endpoint> {
        let pod = self.remote.as_ref()?.by_ip(ip)?;
        Some(flow::Endpoint {
            id: 0,
            identity: pod.identity.0,
            cluster_name: self.state.cluster().to_string(),
            namespace: pod.namespace,
            labels: pod.labels,
            pod_name: pod.pod_name,
            workloads: Vec::new(),
        })
    }

    pub fn into_parser_getters(self) -> Getters {
        let this = Arc::new(self);
        Getters {
            endpoints: Some(this.clone()),
            identities: Some(this.clone()),
            links: Some(Arc::new(this.links.clone())),
            cgroups: this
                .cgroup_root
                .is_some()
                .then(|| this.clone() as Arc<dyn CgroupGetter>),
            services: Some(this.clone()),
            dns: Some(this.clone()),
        }
    }
}

impl DnsGetter for StateGetters {
    fn names_of(&self, endpoint_id: u32, ip: IpAddr) -> Vec<String> {
        match u16::try_from(endpoint_id) {
            Ok(id) => self.state.fqdn_names_of(id, ip),
            Err(_) => Vec::new(),
        }
    }
}

impl EndpointGetter for StateGetters {
    fn endpoint_by_ip(&self, ip: IpAddr) -> Option<flow::Endpoint> {
        self.local_endpoint(ip).or_else(|| self.remote_endpoint(ip))
    }
}

impl IdentityGetter for StateGetters {
    fn identity_labels(&self, identity: u32) -> Option<Vec<String>> {
        self.state
            .identity_labels(Identity(identity))
            .map(|labels| labels.to_strings())
    }
}

impl CgroupGetter for StateGetters {
    /// A pod's cgroup is `<cgroup root>/<namespace>_<pod>` (the lab puts every process
    /// it runs in a pod there); its id is the directory's inode number, as cgroup v2
    /// numbers them.
    fn endpoint_ip_by_cgroup(&self, cgroup_id: u64, ipv6: bool) -> Option<IpAddr> {
        let root = self.cgroup_root.as_ref()?;
        let pick = |namespace: &str, name: &str| {
            let endpoint = self
                .state
                .endpoints()
                .into_iter()
                .find(|e| e.spec.namespace == namespace && e.spec.name == name)?;
            if ipv6 {
                endpoint.spec.ipv6.map(IpAddr::V6)
            } else {
                Some(IpAddr::V4(endpoint.spec.ipv4))
            }
        };
        let known = self
            .cgroups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cgroup_id)
            .cloned();
        if let Some((namespace, name)) = known {
            return pick(&namespace, &name);
        }
        use std::os::unix::fs::MetadataExt;
        let mut found = None;
        let mut cache = self.cgroups.write().unwrap_or_else(|e| e.into_inner());
        for endpoint in self.state.endpoints() {
            let spec = &endpoint.spec;
            let dir = root.join(format!("{}_{}", spec.namespace, spec.name));
            if let Ok(meta) = std::fs::metadata(&dir) {
                let key = (spec.namespace.clone(), spec.name.clone());
                if meta.ino() == cgroup_id {
                    found = Some(key.clone());
                }
                cache.insert(meta.ino(), key);
            }
        }
        drop(cache);
        let (namespace, name) = found?;
        pick(&namespace, &name)
    }
}
impl ServiceGetter for StateGetters {
    fn service_by_frontend(&self, ip: IpAddr, port: u16, protocol: u8) -> Option<flow::Service> {
        let protocol = crate::services::Protocol::from_number(protocol)?;
        let service = self.state.service_by_frontend(ip, port, protocol)?;
        flow_service(&service.name)
    }

    fn service_by_backend(&self, ip: IpAddr, port: u16) -> Option<flow::Service> {
        let service = self.state.service_by_backend(ip, port)?;
        flow_service(&service.name)
    }
}

/// A service as flows name it; an unnamed one (set through the API) names nothing.
fn flow_service(name: &crate::services::ServiceName) -> Option<flow::Service> {
    (!name.is_empty()).then(|| flow::Service {
        name: name.name.clone(),
        namespace: name.namespace.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::{EndpointEvent, EndpointSpec, WatchedEndpoint};
    use crate::identity::LocalIdentityAllocator;

    fn xwing(class: &str) -> WatchedEndpoint {
        WatchedEndpoint {
            id: 7,
            path: "/eps/default_xwing.yaml".into(),
            spec: EndpointSpec {
                name: "xwing".to_string(),
                namespace: "default".to_string(),
                labels: [("class".to_string(), class.to_string())].into(),
                ipv4: "10.200.1.12".parse().expect("address"),
                ipv6: None,
                interface: "lxc7".to_string(),
                workloads: Vec::new(),
            },
        }
    }

    #[tokio::test]
    async fn cached_endpoints_follow_every_change_of_the_pod() {
        let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
        let getters = StateGetters::new(state.clone(), Links::default());
        let ip: IpAddr = "10.200.1.12".parse().expect("address");
        assert_eq!(getters.endpoint_by_ip(ip), None);

        state
            .apply_endpoint_event(EndpointEvent::Added(xwing("xwing")))
            .await
            .expect("added");
        let first = getters.endpoint_by_ip(ip).expect("the pod");
        assert!(
            first.labels.contains(&"k8s:class=xwing".to_string()),
            "{first:?}"
        );
        // Asked again at the same generation: the same endpoint, from the cache.
        assert_eq!(getters.endpoint_by_ip(ip), Some(first.clone()));

        state
            .apply_endpoint_event(EndpointEvent::Updated {
                previous: xwing("xwing"),
                current: xwing("rebel"),
            })
            .await
            .expect("updated");
        let second = getters.endpoint_by_ip(ip).expect("the pod");
        assert!(
            second.labels.contains(&"k8s:class=rebel".to_string()),
            "{second:?}"
        );
        assert_ne!(second.identity, first.identity);

        state
            .apply_endpoint_event(EndpointEvent::Removed(xwing("rebel")))
            .await
            .expect("removed");
        assert_eq!(getters.endpoint_by_ip(ip), None);
    }
}
