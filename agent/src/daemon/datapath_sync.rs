//! Keeps the datapath's maps equal to what the control plane says: endpoints (with
//! their enforcement flags), the ipcache (pod, node and CIDR addresses -> identity),
//! the policy map and the service load-balancing maps (from
//! [`AgentState::lb_services`]). Also reports kernel-side record loss to the observer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ebpf_events::abi::lb::backend_state;
use ebpf_events::abi::{Direction, EndpointEntry, IpcacheEntry, PolicyKey, PolicyValue};
use ebpf_events::constants::identity::HOST;
use ebpf_events::loader::{Datapath, DatapathConfig, EventReader, LbBackendSpec, LbFrontend};
use ipnet::IpNet;
use observer::IngestHandle;
use proto::flow::{LostEvent, LostEventSource};

use super::enrich::Links;
use super::hooks::FlowHooks;
use crate::kvstore::RemoteEndpoints;
use crate::policy::{Direction as PolicyDirection, PolicyEntry};
use crate::services::{BackendState, LbService, ServiceKind};
use crate::state::AgentState;

/// How often kernel-side loss is checked and reported.
const LOST_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Socket-level load balancing: where the socket programs attach and how they choose.
#[derive(Clone, Debug)]
pub struct SocketLb {
    /// The cgroup v2 directory (Cilium's `--cgroup-root`).
    pub cgroup_root: std::path::PathBuf,
    /// 0: random backends; else chosen by hash(seed, socket cookie), for tests.
    pub seed: u32,
}

/// The frontends the datapath balances, from the control plane's entries. NodePort
/// frontends on every node address (`0.0.0.0`) are left out: the socket programs
/// look up exact addresses only.
pub fn lb_frontends(services: &[LbService]) -> Vec<LbFrontend> {
    services
        .iter()
        .filter(|s| !(s.kind == ServiceKind::NodePort && s.frontend.address.is_unspecified()))
        .map(|s| LbFrontend {
            service_id: s.id,
            address: s.frontend.address,
            port: s.frontend.port,
            protocol: s.frontend.protocol.number(),
            nodeport: s.kind == ServiceKind::NodePort,
            backends: s
                .backends
                .iter()
                .map(|b| LbBackendSpec {
                    address: b.address,
                    port: b.port,
                    state: match b.state {
                        BackendState::Active => backend_state::ACTIVE,
                        BackendState::Terminating => backend_state::TERMINATING,
                        BackendState::Quarantined => backend_state::QUARANTINED,
                        BackendState::Maintenance => backend_state::MAINTENANCE,
                    },
                })
                .collect(),
        })
        .collect()
}

/// The datapath and what this agent last wrote into it.
pub struct DatapathSync {
    datapath: Datapath,
    host_addresses: Vec<IpAddr>,
    /// Interface name -> ifindex of every attached endpoint veth.
    attached: BTreeMap<String, u32>,
    ipcache: BTreeMap<IpNet, IpcacheEntry>,
    kernel_lost: u64,
    /// Pods of the other nodes of a cluster.
    remote: Option<RemoteEndpoints>,
    /// Endpoint map keys left by a previous agent, checked at the first sync.
    inherited_endpoints: BTreeSet<u32>,
    /// Uplink devices with `from_netdev` attached (`--devices`).
    devices: BTreeSet<String>,
    /// The HTTP proxies the L7 redirects lead to.
    l7: Option<Arc<super::l7proxy::L7Proxies>>,
}

impl DatapathSync {
    /// Loads the programs and maps; with `pin_dir`, pinned there (re-using the maps a
    /// previous agent left, with what they hold, so enforcement never stops). With
    /// `socket_lb`, the socket programs are attached to that cgroup (`--cgroup-root`).
    pub fn load(
        monitor_aggregation: u32,
        host_addresses: Vec<IpAddr>,
        pin_dir: Option<&Path>,
        socket_lb: Option<&SocketLb>,
    ) -> Result<Self> {
        let config = DatapathConfig {
            monitor_aggregation,
            lb_seed: socket_lb.map_or(0, |lb| lb.seed),
            ..Default::default()
        };
        let mut datapath = match pin_dir {
            Some(dir) => Datapath::load_pinned(config, dir)?,
            None => Datapath::load(config)?,
        };
        if let Some(lb) = socket_lb {
            datapath
                .attach_cgroup(&lb.cgroup_root)
                .with_context(|| format!("--cgroup-root {}", lb.cgroup_root.display()))?;
            tracing::info!(cgroup = %lb.cgroup_root.display(), "socket load balancing attached");
        }
        // Start from what the maps hold (a previous agent's contents), so that every
        // sync writes only differences and removes what is no longer wanted.
        let ipcache = datapath.ipcache_entries()?.into_iter().collect();
        let inherited_endpoints = datapath.endpoint_ifindexes()?.into_iter().collect();
        let pins = datapath.pin_state();
        if let Some(dir) = datapath.pin_dir() {
            tracing::info!(
                dir = %dir.display(),
                reused_maps = pins.reused_maps,
                mounted_bpffs = pins.mounted_bpffs,
                "datapath pinned"
            );
        }
        Ok(Self {
            datapath,
            host_addresses,
            attached: BTreeMap::new(),
            ipcache,
            kernel_lost: 0,
            remote: None,
            inherited_endpoints,
            devices: BTreeSet::new(),
            l7: None,
        })
    }

    /// Also puts the pods of other nodes into the ipcache (cluster mode).
    pub fn with_remote_endpoints(mut self, remote: Option<RemoteEndpoints>) -> Self {
        self.remote = remote;
        self
    }

    /// Attaches the uplink program to each device (`--devices`) and installs the
    /// routing of the L7 redirect ([`ebpf_events::loader::proxy::install_routes`]).
    pub fn with_devices(mut self, devices: &[String]) -> Result<Self> {
        ebpf_events::loader::proxy::install_routes()?;
        for device in devices {
            self.datapath
                .attach_device(device)
                .with_context(|| format!("--devices {device}"))?;
            self.devices.insert(device.clone());
        }
        if !devices.is_empty() {
            tracing::info!(devices = ?devices, "uplink redirect attached");
        }
        Ok(self)
    }

    /// Runs the L7 proxies of the redirects this datapath programs.
    pub fn with_l7_proxies(mut self, proxies: Arc<super::l7proxy::L7Proxies>) -> Self {
        self.l7 = Some(proxies);
        self
    }

    /// Takes the ring buffer reader out (once).
    pub fn with_reader(mut self) -> Result<(Self, EventReader)> {
        let reader = self
            .datapath
            .take_event_reader()
            .context("opening the datapath's ring buffer")?;
        Ok((self, reader))
    }

    /// Brings every map in line with `state`. An endpoint whose interface cannot be
    /// attached is logged and skipped; the others still get their policy.
    pub fn sync(&mut self, state: &AgentState, links: &Links) -> Result<()> {
        let compiled = state.compile().context("compiling policy")?;
        // Listeners first: no policy entry ever names a port nobody listens on.
        let closing = match &self.l7 {
            Some(proxies) => proxies.update(&compiled)?,
            None => Vec::new(),
        };
        let endpoints = state.endpoints_with_enforcement();

        let mut wanted_links = BTreeMap::new();
        let mut ipcache = BTreeMap::new();
        for ip in &self.host_addresses {
            ipcache.insert(IpNet::from(*ip), IpcacheEntry::remote(HOST));
        }
        for (prefix, identity) in &compiled.cidr_identities {
            ipcache.insert(*prefix, IpcacheEntry::remote(identity.0));
        }
        // Pods of other nodes first, so that a local endpoint always wins.
        for pod in self.remote.iter().flat_map(RemoteEndpoints::all) {
            let mut entry = IpcacheEntry::remote(pod.identity.0);
            if let IpAddr::V4(node) = pod.node_ip {
                entry = entry.with_tunnel_ip(node);
            }
            ipcache.insert(IpNet::from(pod.ip), entry);
        }
        for (endpoint, enforcement) in &endpoints {
            let spec = &endpoint.spec;
            let identity = endpoint.identity.0;
            let local = IpcacheEntry::local_endpoint(identity, endpoint.id);
            ipcache.insert(IpNet::from(IpAddr::V4(spec.ipv4)), local);
            let mut entry = EndpointEntry::new(endpoint.id, identity)
                .with_ipv4(spec.ipv4)
                .with_enforcement(enforcement.ingress, enforcement.egress);
            if let Some(v6) = spec.ipv6 {
                ipcache.insert(IpNet::from(IpAddr::V6(v6)), local);
                entry = entry.with_ipv6(v6);
            }
            match self.datapath.attach(&spec.interface) {
                Ok(ifindex) => {
                    self.datapath.upsert_endpoint(ifindex, entry)?;
                    wanted_links.insert(spec.interface.clone(), ifindex);
                }
                Err(e) => tracing::warn!(
                    endpoint = %format!("{}/{}", spec.namespace, spec.name),
                    "cannot attach to {}: {e}",
                    spec.interface
                ),
            }
        }
        // Endpoints a previous agent programmed that are gone now.
        for &ifindex in &self.inherited_endpoints {
            if !wanted_links.values().any(|i| *i == ifindex) {
                self.datapath
                    .remove_endpoint(ifindex)
                    .with_context(|| format!("removing the endpoint of ifindex {ifindex}"))?;
            }
        }
        self.inherited_endpoints.clear();
        let interfaces: BTreeSet<&str> = endpoints
            .iter()
            .map(|(endpoint, _)| endpoint.spec.interface.as_str())
            .collect();
        for name in self
            .datapath
            .retain_link_pins(|name| interfaces.contains(name) || self.devices.contains(name))
        {
            tracing::info!("removed the pinned programs of {name} (no endpoint uses it)");
        }
        // Endpoints that went away: forget their entry and detach.
        for (name, &ifindex) in &self.attached {
            if wanted_links.get(name) != Some(&ifindex) {
                self.datapath
                    .remove_endpoint(ifindex)
                    .with_context(|| format!("removing the endpoint of {name}"))?;
            }
            if !wanted_links.contains_key(name) {
                if let Err(e) = self.datapath.detach(name) {
                    tracing::debug!("detaching {name}: {e}");
                }
            }
        }
        self.attached = wanted_links;
        links.replace(self.attached.iter().map(|(n, i)| (*i, n.clone())).collect());

        for (prefix, entry) in &ipcache {
            if self.ipcache.get(prefix) != Some(entry) {
                self.datapath.upsert_ipcache(*prefix, *entry)?;
            }
        }
        let stale: BTreeSet<IpNet> = self
            .ipcache
            .keys()
            .filter(|p| !ipcache.contains_key(p))
            .copied()
            .collect();
        for prefix in stale {
            self.datapath.remove_ipcache(prefix)?;
        }
        self.ipcache = ipcache;

        let entries: Vec<(PolicyKey, PolicyValue)> = compiled
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let direction = match e.direction {
                    PolicyDirection::Ingress => Direction::Ingress,
                    PolicyDirection::Egress => Direction::Egress,
                };
                let key = PolicyKey::new(
                    e.local_identity,
                    e.remote_identity,
                    e.dport,
                    e.protocol,
                    direction,
                );
                let cookie = i as u32 + 1;
                let value = if e.deny {
                    PolicyValue::deny(cookie)
                } else {
                    match redirect_port(&compiled, e) {
                        Redirect::None => PolicyValue::allow(cookie),
                        Redirect::Port(port) => PolicyValue::redirect(cookie, port),
                        // No proxy port: denied rather than allowed without its rules.
                        Redirect::Unassigned => return None,
                    }
                };
                Some((key, value))
            })
            .collect();
        let (written, deleted) = self.datapath.sync_policy(&entries)?;
        if let Some(proxies) = &self.l7 {
            proxies.close(&closing);
        }
        let frontends = lb_frontends(&state.lb_services());
        let (lb_written, lb_deleted) = self.datapath.sync_services(&frontends)?;
        tracing::info!(
            frontends = frontends.len(),
            lb_written,
            lb_deleted,
            "services in sync"
        );
        tracing::info!(
            endpoints = self.attached.len(),
            ipcache = self.ipcache.len(),
            policy_entries = entries.len(),
            policy_written = written,
            policy_deleted = deleted,
            revision = state.policy_revision(),
            "datapath in sync"
        );
        Ok(())
    }

    /// Records lost in the kernel since the last call.
    fn new_kernel_loss(&mut self) -> u64 {
        match self.datapath.kernel_lost() {
            Ok(total) => {
                let new = total.saturating_sub(self.kernel_lost);
                self.kernel_lost = total;
                new
            }
            Err(e) => {
                tracing::warn!("reading the kernel loss counter: {e}");
                0
            }
        }
    }
}

/// Syncs on every state change and reports kernel loss, until `shutdown`.
///
/// The first sync waits for `ready` (in a cluster: etcd's identities and pods listed
/// once, bounded), while the maps keep what they hold.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut sync: DatapathSync,
    state: Arc<AgentState>,
    links: Links,
    ingest: IngestHandle,
    hooks: FlowHooks,
    ready: impl std::future::Future<Output = ()>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut changes = state.subscribe_changes();
    let mut tick = tokio::time::interval(LOST_CHECK_INTERVAL);
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return,
        _ = ready => {}
    }
    let generation = *changes.borrow_and_update();
    match sync.sync(&state, &links) {
        Ok(()) => state.mark_realized(generation),
        Err(e) => tracing::error!("datapath sync failed: {e:#}"),
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                // Changes made while syncing bump the generation again: another round.
                let generation = *changes.borrow_and_update();
                match sync.sync(&state, &links) {
                    Ok(()) => state.mark_realized(generation),
                    Err(e) => tracing::error!("datapath sync failed: {e:#}"),
                }
            }
            _ = tick.tick() => {
                let lost = sync.new_kernel_loss();
                if lost > 0 {
                    hooks.on_lost(LostEventSource::PerfEventRingBuffer, lost);
                    ingest.push_lost_event(LostEvent {
                        source: LostEventSource::PerfEventRingBuffer as i32,
                        num_events_lost: lost,
                        ..Default::default()
                    });
                }
            }
        }
    }
}

/// Whether an allow entry goes through the L7 proxy.
enum Redirect {
    None,
    Port(u16),
    Unassigned,
}

fn redirect_port(compiled: &crate::policy::CompiledPolicy, e: &PolicyEntry) -> Redirect {
    let key = crate::policy::RedirectKey {
        local_identity: e.local_identity,
        dport: e.dport,
        protocol: e.protocol,
        direction: e.direction,
    };
    let redirected = compiled
        .redirects
        .get(&key)
        .is_some_and(|peers| peers.contains_key(&e.remote_identity))
        || compiled
            .dns_redirects
            .get(&key)
            .is_some_and(|peers| peers.contains_key(&e.remote_identity));
    if !redirected {
        return Redirect::None;
    }
    match compiled.proxy_ports.get(&key) {
        Some(port) => Redirect::Port(*port),
        None => Redirect::Unassigned,
    }
}
