//! Loads the embedded tc programs with aya, attaches them to endpoint veths
//! and owns their maps.
//!
//! All calls act on the network namespace of the calling thread: interface
//! names resolve there and TCX links / clsact filters are created there.
//!
//! Loaded with [`Datapath::load`], attachments are detached when the [`Datapath`] is
//! dropped. Loaded with [`Datapath::load_pinned`], the maps and the TCX links are
//! pinned (see [`pins`]): the programs keep enforcing after the process exits, and
//! the next load re-uses the maps with their contents and replaces each link's
//! program without a moment where the interface has none.

// Unsafe code is needed in two places only: aya requires `unsafe impl Pod`
// for the `#[repr(C)]` key and value types it copies to and from the kernel,
// and tokio requires `unsafe` to watch the ring buffer's descriptor.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashMap as StdHashMap};
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{self, SchedClassifierLink, TcAttachOptions, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier};
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfError, EbpfLoader, Pod};
use ipnet::IpNet;

use crate::abi::{
    CtKey, DatapathConfigValue, EndpointEntry, IpcacheEntry, IpcacheKey, LbBackend, LbNatEntry,
    LbServiceKey, LbServiceValue, PolicyKey, PolicyValue,
};
use crate::constants::monitor_aggregation;

pub mod pins;
pub mod proxy;
mod reader;
mod sock;

pub use pins::{remove_pins, PinState, DEFAULT_BPFFS};
pub use reader::{EventReader, ReaderStats, EVENT_CHANNEL_CAPACITY};
pub use sock::{LbBackendSpec, LbFrontend};

/// The compiled programs, aligned for the ELF parser.
static DATAPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath.o"));

const FROM_CONTAINER: &str = "from_container";
const TO_CONTAINER: &str = "to_container";
const FROM_NETDEV: &str = "from_netdev";

/// Default ring backlog at which the programs wake the reader: about 1,500
/// trace records (a sixteenth of the ring), so a busy node pays one wake-up
/// (an interrupt) per thousand-odd events while the reader's poll interval
/// bounds the latency of sparse ones.
pub const DEFAULT_WAKEUP_BYTES: u32 = 256 * 1024;

// SAFETY: plain `#[repr(C)]` structs of integers and byte arrays with
// explicit padding fields; every bit pattern is valid.
unsafe impl Pod for EndpointEntry {}
// SAFETY: as above.
unsafe impl Pod for IpcacheEntry {}
// SAFETY: as above.
unsafe impl Pod for PolicyKey {}
// SAFETY: as above.
unsafe impl Pod for PolicyValue {}
// SAFETY: as above.
unsafe impl Pod for DatapathConfigValue {}
// SAFETY: as above.
unsafe impl Pod for IpcacheKeyData {}
// SAFETY: as above.
unsafe impl Pod for LbServiceKey {}
// SAFETY: as above.
unsafe impl Pod for LbServiceValue {}
// SAFETY: as above.
unsafe impl Pod for LbBackend {}
// SAFETY: as above.
unsafe impl Pod for CtKey {}
// SAFETY: as above.
unsafe impl Pod for LbNatEntry {}

/// The part of [`IpcacheKey`] after the LPM prefix length, which aya's
/// [`Key`] carries separately.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct IpcacheKeyData {
    pad0: u16,
    pad1: u8,
    family: u8,
    addr: [u8; 16],
}

/// Runtime switches written to the CONFIG map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// [`monitor_aggregation::NONE`] or [`monitor_aggregation::MEDIUM`].
    pub monitor_aggregation: u32,
    /// When false the programs still enforce policy but write no records.
    pub events_enabled: bool,
    /// Ring backlog in bytes at which the programs wake the reader; 0 wakes
    /// it for every record.
    pub wakeup_bytes: u32,
    /// 0: the socket load balancer picks backends at random (TCP) or per socket
    /// (UDP); otherwise by [`crate::abi::lb::seeded_slot`]`(seed, socket cookie)`,
    /// which tests can predict.
    pub lb_seed: u32,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            monitor_aggregation: monitor_aggregation::NONE,
            events_enabled: true,
            wakeup_bytes: DEFAULT_WAKEUP_BYTES,
            lb_seed: 0,
        }
    }
}

/// Errors of the loader, each naming the object it failed on.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The object could not be loaded (verifier, BTF, permissions).
    #[error("loading the datapath programs failed: {0}")]
    Load(#[source] Box<EbpfError>),
    /// The object lacks a program or map this loader expects.
    #[error("the datapath object has no {kind} named {name}")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A program could not be loaded or inspected.
    #[error("program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching to an interface failed.
    #[error("attaching {program} to interface {interface:?} failed: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Interface name.
        interface: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// The interface does not exist in this network namespace.
    #[error("interface {interface:?} not found in this network namespace: {source}")]
    Interface {
        /// Interface name.
        interface: String,
        /// The lookup error.
        #[source]
        source: nix::Error,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },
    /// The event reader was already taken.
    #[error("the event reader was already taken")]
    ReaderTaken,
    /// Registering the ring buffer with the async runtime failed.
    #[error("watching the event ring buffer failed (call from a tokio runtime): {0}")]
    Reactor(#[source] std::io::Error),
    /// `BPF_ENABLE_STATS` failed.
    #[error("enabling BPF run-time statistics failed: {0}")]
    Stats(#[source] std::io::Error),
    /// The pin directory cannot be used.
    #[error("BPF pin directory {path}: {reason}")]
    PinDir {
        /// The directory (or the file in it).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pinned map cannot be re-used by this build.
    #[error(
        "pinned map {path} does not fit this datapath: {reason}; remove the old \
         datapath with `hubble-agent cleanup` (policy is not enforced until the agent \
         is up again)"
    )]
    PinnedMap {
        /// The pin.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Pinning or unpinning a link failed.
    #[error("pinning {path}: {reason}")]
    Pin {
        /// The pin.
        path: PathBuf,
        /// The error.
        reason: String,
    },
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> LoaderError {
    move |source| LoaderError::Map {
        map,
        source: Box::new(source),
    }
}

/// Run counters of one program (from `bpf_prog_info`; they only move while
/// statistics are enabled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramRunStats {
    /// Number of runs.
    pub run_cnt: u64,
    /// Total time spent in the program.
    pub run_time_ns: u64,
}

/// Run counters of both programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// `from_container` (packets leaving endpoints).
    pub from_container: ProgramRunStats,
    /// `to_container` (packets entering endpoints).
    pub to_container: ProgramRunStats,
}

/// Keeps kernel run-time statistics on while alive (`BPF_ENABLE_STATS`).
#[derive(Debug)]
pub struct StatsGuard {
    _fd: std::os::fd::OwnedFd,
}

struct Attachment {
    ifindex: u32,
    _links: AttachmentLinks,
}

enum AttachmentLinks {
    // Dropping a link detaches it (TCX link fd closed or clsact filter removed);
    // the links are held only for that.
    Owned(#[allow(dead_code)] Vec<SchedClassifierLink>),
    // Dropping closes the descriptors only: the pins keep the programs attached
    // until they are removed.
    Pinned(Vec<PinnedLink>),
}

/// The loaded datapath: programs, maps and attachments.
pub struct Datapath {
    // Field order matters for drop: links first, then the programs.
    attachments: BTreeMap<String, Attachment>,
    cgroup_links: Option<sock::CgroupLinks>,
    ebpf: Ebpf,
    lb_services: HashMap<MapData, LbServiceKey, LbServiceValue>,
    lb_backends: HashMap<MapData, u32, LbBackend>,
    lb_nat_ct: HashMap<MapData, CtKey, LbNatEntry>,
    endpoints: HashMap<MapData, u32, EndpointEntry>,
    ipcache: LpmTrie<MapData, IpcacheKeyData, IpcacheEntry>,
    policy: HashMap<MapData, PolicyKey, PolicyValue>,
    config: Array<MapData, DatapathConfigValue>,
    lost: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    /// Where maps and links are pinned, when they are.
    pin_dir: Option<PathBuf>,
    pin_state: PinState,
}

impl Datapath {
    /// Loads the embedded object into the kernel and writes `config`. Nothing is
    /// pinned: everything goes away with the [`Datapath`].
    pub fn load(config: DatapathConfig) -> Result<Self, LoaderError> {
        let ebpf = Ebpf::load(DATAPATH_OBJECT).map_err(|e| LoaderError::Load(Box::new(e)))?;
        Self::from_ebpf(ebpf, config, None, PinState::default())
    }

    /// Loads the embedded object with every map pinned in `pin_dir` (on a BPF file
    /// system; one is mounted on [`DEFAULT_BPFFS`] when `pin_dir` is below it and
    /// none is). Maps already pinned there are re-used with their contents after a
    /// check that they fit this build; TCX links made by [`Datapath::attach`] are
    /// pinned there too, so the datapath keeps enforcing after the process exits.
    pub fn load_pinned(config: DatapathConfig, pin_dir: &Path) -> Result<Self, LoaderError> {
        let mounted_bpffs = pins::prepare(pin_dir)?;
        let mut pin_state = pins::check_pinned_maps(pin_dir)?;
        pin_state.mounted_bpffs = mounted_bpffs;
        let paths: Vec<(&'static str, PathBuf)> = pins::MAP_NAMES
            .iter()
            .map(|name| (*name, pin_dir.join(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader
            .load(DATAPATH_OBJECT)
            .map_err(|e| LoaderError::Load(Box::new(e)))?;
        Self::from_ebpf(ebpf, config, Some(pin_dir.to_path_buf()), pin_state)
    }

    fn from_ebpf(
        mut ebpf: Ebpf,
        config: DatapathConfig,
        pin_dir: Option<PathBuf>,
        pin_state: PinState,
    ) -> Result<Self, LoaderError> {
        for name in [FROM_CONTAINER, TO_CONTAINER, FROM_NETDEV] {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|e| LoaderError::Program {
                    program: name,
                    source: Box::new(e),
                })?;
        }
        for name in sock::SOCK_PROGRAMS {
            let program: &mut aya::programs::CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(LoaderError::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(|e| LoaderError::Program {
                    program: name,
                    source: Box::new(e),
                })?;
            program.load().map_err(|e| LoaderError::Program {
                program: name,
                source: Box::new(e),
            })?;
        }
        let mut take = |name: &'static str| {
            ebpf.take_map(name)
                .ok_or(LoaderError::Missing { kind: "map", name })
        };
        let endpoints = HashMap::try_from(take("ENDPOINTS")?).map_err(map_err("ENDPOINTS"))?;
        let ipcache = LpmTrie::try_from(take("IPCACHE")?).map_err(map_err("IPCACHE"))?;
        let policy = HashMap::try_from(take("POLICY")?).map_err(map_err("POLICY"))?;
        let config_map = Array::try_from(take("CONFIG")?).map_err(map_err("CONFIG"))?;
        let lost = PerCpuArray::try_from(take("LOST")?).map_err(map_err("LOST"))?;
        let events = RingBuf::try_from(take("EVENTS")?).map_err(map_err("EVENTS"))?;
        let lb_services =
            HashMap::try_from(take("LB_SERVICES")?).map_err(map_err("LB_SERVICES"))?;
        let lb_backends =
            HashMap::try_from(take("LB_BACKENDS")?).map_err(map_err("LB_BACKENDS"))?;
        let lb_nat_ct = HashMap::try_from(take("LB_NAT_CT")?).map_err(map_err("LB_NAT_CT"))?;
        let mut datapath = Self {
            attachments: BTreeMap::new(),
            cgroup_links: None,
            ebpf,
            lb_services,
            lb_backends,
            lb_nat_ct,
            endpoints,
            ipcache,
            policy,
            config: config_map,
            lost,
            events: Some(events),
            pin_dir,
            pin_state,
        };
        datapath.set_config(config)?;
        Ok(datapath)
    }

    /// What [`Datapath::load_pinned`] found (all zero for [`Datapath::load`]).
    pub fn pin_state(&self) -> PinState {
        self.pin_state
    }

    /// The pin directory, when the datapath is pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// Rewrites the CONFIG map; takes effect for the next packet.
    pub fn set_config(&mut self, config: DatapathConfig) -> Result<(), LoaderError> {
        let value = DatapathConfigValue {
            monitor_aggregation: config.monitor_aggregation,
            events_enabled: u32::from(config.events_enabled),
            wakeup_bytes: config.wakeup_bytes,
            lb_seed: config.lb_seed,
        };
        self.config.set(0, value, 0).map_err(map_err("CONFIG"))
    }

    /// Attaches `from_container` to the ingress and `to_container` to the
    /// egress hook of `ifname` (TCX on Linux 6.6+, clsact before) and returns
    /// its ifindex. Attaching an interface twice is a no-op; an interface
    /// re-created under the same name is attached afresh.
    pub fn attach(&mut self, ifname: &str) -> Result<u32, LoaderError> {
        let ifindex = ifindex_of(ifname)?;
        if let Some(existing) = self.attachments.get(ifname) {
            if existing.ifindex == ifindex {
                return Ok(ifindex);
            }
            self.attachments.remove(ifname);
        }
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        if !tcx {
            // An existing clsact qdisc is fine; a real failure shows up
            // when attaching below.
            let _ = tc::qdisc_add_clsact(ifname);
        }
        let links = match (&self.pin_dir, tcx) {
            (Some(dir), true) => {
                let dir = dir.clone();
                AttachmentLinks::Pinned(vec![
                    self.attach_pinned(FROM_CONTAINER, ifname, TcAttachType::Ingress, &dir)?,
                    self.attach_pinned(TO_CONTAINER, ifname, TcAttachType::Egress, &dir)?,
                ])
            }
            _ => AttachmentLinks::Owned(vec![
                self.attach_one(FROM_CONTAINER, ifname, TcAttachType::Ingress)?,
                self.attach_one(TO_CONTAINER, ifname, TcAttachType::Egress)?,
            ]),
        };
        self.attachments.insert(
            ifname.to_string(),
            Attachment {
                ifindex,
                _links: links,
            },
        );
        Ok(ifindex)
    }

    /// Attaches `from_netdev` to the ingress hook of the node's uplink device
    /// `ifname` (Cilium's `--devices`): connections from other nodes to local
    /// endpoints whose ingress policy redirects them to the L7 proxy are handed
    /// to it there (socket assignment only works at a tc ingress hook); all
    /// other traffic passes untouched. Pinned like an endpoint's links
    /// (`links/<ifname>-ingress`). Attaching twice is a no-op.
    pub fn attach_device(&mut self, ifname: &str) -> Result<u32, LoaderError> {
        let ifindex = ifindex_of(ifname)?;
        if let Some(existing) = self.attachments.get(ifname) {
            if existing.ifindex == ifindex {
                return Ok(ifindex);
            }
            self.attachments.remove(ifname);
        }
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        if !tcx {
            let _ = tc::qdisc_add_clsact(ifname);
        }
        let links = match (&self.pin_dir, tcx) {
            (Some(dir), true) => {
                let dir = dir.clone();
                AttachmentLinks::Pinned(vec![self.attach_pinned(
                    FROM_NETDEV,
                    ifname,
                    TcAttachType::Ingress,
                    &dir,
                )?])
            }
            _ => AttachmentLinks::Owned(vec![self.attach_one(
                FROM_NETDEV,
                ifname,
                TcAttachType::Ingress,
            )?]),
        };
        self.attachments.insert(
            ifname.to_string(),
            Attachment {
                ifindex,
                _links: links,
            },
        );
        Ok(ifindex)
    }

    /// Attaches `program` in front of whatever runs on the hook (a previous agent's
    /// program, which reads the same maps), then replaces the previous pin with the
    /// new link: the old link detaches only once the new one is in place.
    fn attach_pinned(
        &mut self,
        program: &'static str,
        ifname: &str,
        hook: TcAttachType,
        dir: &Path,
    ) -> Result<PinnedLink, LoaderError> {
        let attach_err = |source| LoaderError::Attach {
            program,
            interface: ifname.to_string(),
            source: Box::new(source),
        };
        let prog = program_mut(&mut self.ebpf, program)?;
        let link_id = prog
            .attach_with_options(ifname, hook, TcAttachOptions::TcxOrder(LinkOrder::first()))
            .map_err(attach_err)?;
        let link = prog.take_link(link_id).map_err(attach_err)?;
        let path = pins::link_pin(dir, ifname, hook_name(hook));
        let pin_err = |reason: String| LoaderError::Pin {
            path: path.clone(),
            reason,
        };
        let link = FdLink::try_from(link).map_err(|e| pin_err(e.to_string()))?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(pin_err(format!("removing the previous link: {e}"))),
        }
        link.pin(&path).map_err(|e| pin_err(e.to_string()))
    }

    fn attach_one(
        &mut self,
        program: &'static str,
        ifname: &str,
        hook: TcAttachType,
    ) -> Result<SchedClassifierLink, LoaderError> {
        let attach_err = |source| LoaderError::Attach {
            program,
            interface: ifname.to_string(),
            source: Box::new(source),
        };
        let prog = program_mut(&mut self.ebpf, program)?;
        let link_id = prog.attach(ifname, hook).map_err(attach_err)?;
        prog.take_link(link_id).map_err(attach_err)
    }

    /// Detaches both programs from `ifname` (removing their pins); unknown names are
    /// a no-op.
    pub fn detach(&mut self, ifname: &str) -> Result<(), LoaderError> {
        if let Some(attachment) = self.attachments.remove(ifname) {
            if let AttachmentLinks::Pinned(links) = attachment._links {
                for link in links {
                    let _ = link.unpin();
                }
            }
        }
        if let Some(dir) = &self.pin_dir {
            for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
                let _ = std::fs::remove_file(pins::link_pin(dir, ifname, hook_name(hook)));
            }
        }
        Ok(())
    }

    /// Removes the link pins of interfaces for which `keep` is false (endpoints that
    /// went away while no agent ran); returns their names.
    pub fn retain_link_pins(&mut self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let Some(dir) = &self.pin_dir else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for (ifname, path) in pins::pinned_interfaces(dir) {
            if !keep(&ifname) && std::fs::remove_file(&path).is_ok() {
                removed.push(ifname);
            }
        }
        removed.dedup();
        removed
    }

    /// Names and ifindexes of the attached interfaces.
    pub fn attached(&self) -> Vec<(String, u32)> {
        self.attachments
            .iter()
            .map(|(name, a)| (name.clone(), a.ifindex))
            .collect()
    }

    /// Registers (or updates) the endpoint behind host veth `ifindex`.
    pub fn upsert_endpoint(&mut self, ifindex: u32, ep: EndpointEntry) -> Result<(), LoaderError> {
        self.endpoints
            .insert(ifindex, ep, 0)
            .map_err(map_err("ENDPOINTS"))
    }

    /// Forgets the endpoint behind `ifindex`; its traffic then passes
    /// untouched. Removing an unknown endpoint is a no-op.
    pub fn remove_endpoint(&mut self, ifindex: u32) -> Result<(), LoaderError> {
        ignore_missing(self.endpoints.remove(&ifindex)).map_err(map_err("ENDPOINTS"))
    }

    /// Maps `prefix` to `entry` in the ipcache.
    pub fn upsert_ipcache(
        &mut self,
        prefix: IpNet,
        entry: IpcacheEntry,
    ) -> Result<(), LoaderError> {
        self.ipcache
            .insert(&ipcache_key(prefix), entry, 0)
            .map_err(map_err("IPCACHE"))
    }

    /// Removes `prefix` from the ipcache; unknown prefixes are a no-op.
    pub fn remove_ipcache(&mut self, prefix: IpNet) -> Result<(), LoaderError> {
        ignore_missing(self.ipcache.remove(&ipcache_key(prefix))).map_err(map_err("IPCACHE"))
    }

    /// Makes the policy map equal to `entries` by writing only the differences:
    /// new and changed entries first, then deletes of keys no longer wanted, so a
    /// connection allowed before and after the change is never denied in between
    /// and entries that stay are never touched. Returns (written, deleted).
    pub fn sync_policy(
        &mut self,
        entries: &[(PolicyKey, PolicyValue)],
    ) -> Result<(usize, usize), LoaderError> {
        let mut current: StdHashMap<PolicyKey, PolicyValue> =
            self.policy_entries()?.into_iter().collect();
        let mut written = 0;
        for (key, value) in entries {
            if current.remove(key).as_ref() == Some(value) {
                continue;
            }
            self.policy
                .insert(key, value, 0)
                .map_err(map_err("POLICY"))?;
            written += 1;
        }
        // What is left in `current` is no longer wanted (keys listed twice in
        // `entries` were removed from it at the first).
        let wanted: std::collections::HashSet<&PolicyKey> =
            entries.iter().map(|(k, _)| k).collect();
        let stale: Vec<PolicyKey> = current
            .into_keys()
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in &stale {
            ignore_missing(self.policy.remove(key)).map_err(map_err("POLICY"))?;
        }
        Ok((written, stale.len()))
    }

    /// The ipcache's contents (prefix -> entry), e.g. as left by a previous agent.
    pub fn ipcache_entries(&self) -> Result<Vec<(IpNet, IpcacheEntry)>, LoaderError> {
        let mut entries = Vec::new();
        for item in self.ipcache.iter() {
            let (key, value) = item.map_err(map_err("IPCACHE"))?;
            if let Some(prefix) = ipcache_prefix(&key) {
                entries.push((prefix, value));
            }
        }
        Ok(entries)
    }

    /// The ifindexes in the endpoints map, e.g. as left by a previous agent.
    pub fn endpoint_ifindexes(&self) -> Result<Vec<u32>, LoaderError> {
        self.endpoints
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("ENDPOINTS"))
    }

    /// The current policy map contents.
    pub fn policy_entries(&self) -> Result<Vec<(PolicyKey, PolicyValue)>, LoaderError> {
        self.policy
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("POLICY"))
    }

    /// Takes the ring buffer reader; call from within a tokio runtime.
    pub fn take_event_reader(&mut self) -> Result<EventReader, LoaderError> {
        let ring = self.events.take().ok_or(LoaderError::ReaderTaken)?;
        EventReader::new(ring).map_err(LoaderError::Reactor)
    }

    /// Records the programs could not write because the ring was full,
    /// summed over CPUs.
    pub fn kernel_lost(&self) -> Result<u64, LoaderError> {
        let per_cpu = self.lost.get(&0, 0).map_err(map_err("LOST"))?;
        Ok(per_cpu.iter().sum())
    }

    /// Run counters of both programs.
    pub fn program_stats(&self) -> Result<ProgramStats, LoaderError> {
        Ok(ProgramStats {
            from_container: self.run_stats(FROM_CONTAINER)?,
            to_container: self.run_stats(TO_CONTAINER)?,
        })
    }

    /// Run counters of one program by name (`from_container`, `sock4_connect`, ...).
    pub fn run_stats(&self, name: &'static str) -> Result<ProgramRunStats, LoaderError> {
        let program = self.ebpf.program(name).ok_or(LoaderError::Missing {
            kind: "program",
            name,
        })?;
        let info = program.info().map_err(|e| LoaderError::Program {
            program: name,
            source: Box::new(e),
        })?;
        Ok(ProgramRunStats {
            run_cnt: info.run_count(),
            run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// Turns kernel run-time statistics on until the guard is dropped
    /// (the same counters as `sysctl kernel.bpf_stats_enabled=1`).
    pub fn enable_stats() -> Result<StatsGuard, LoaderError> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(|fd| StatsGuard { _fd: fd })
            .map_err(|e| LoaderError::Stats(e.io_error))
    }
}

fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, LoaderError> {
    ebpf.program_mut(name)
        .ok_or(LoaderError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| LoaderError::Program {
            program: name,
            source: Box::new(e),
        })
}

fn ifindex_of(ifname: &str) -> Result<u32, LoaderError> {
    nix::net::if_::if_nametoindex(ifname).map_err(|source| LoaderError::Interface {
        interface: ifname.to_string(),
        source,
    })
}

fn hook_name(hook: TcAttachType) -> &'static str {
    match hook {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

/// The prefix of an ipcache key, the inverse of [`ipcache_key`].
fn ipcache_prefix(key: &Key<IpcacheKeyData>) -> Option<IpNet> {
    let data = key.data();
    let len = u8::try_from(
        key.prefix_len()
            .checked_sub(crate::abi::IPCACHE_PREFIX_OFFSET_BITS)?,
    )
    .ok()?;
    let addr = match data.family {
        crate::abi::FAMILY_IPV4 => {
            let [a, b, c, d, ..] = data.addr;
            std::net::IpAddr::from([a, b, c, d])
        }
        crate::abi::FAMILY_IPV6 => std::net::IpAddr::from(data.addr),
        _ => return None,
    };
    IpNet::new(addr, len).ok()
}

fn ipcache_key(prefix: IpNet) -> Key<IpcacheKeyData> {
    let prefix = prefix.trunc();
    // IpcacheKey::new only fails for prefix lengths beyond the address,
    // which IpNet rules out; the fallback keeps this path panic-free.
    let key = IpcacheKey::new(prefix.addr(), prefix.prefix_len()).unwrap_or_default();
    Key::new(
        key.prefixlen,
        IpcacheKeyData {
            pad0: 0,
            pad1: 0,
            family: key.family,
            addr: key.addr,
        },
    )
}

fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(nix::libc::ENOENT) => {
            Ok(())
        }
        other => other,
    }
}

// The agent moves the datapath and its reader between tasks and threads.
const _: () = {
    fn assert_send<T: Send>() {}
    fn check() {
        assert_send::<Datapath>();
        assert_send::<EventReader>();
    }
    let _ = check;
};
