//! Loads the embedded tc programs with aya, attaches them to endpoint veths
//! and owns their maps.
//!
//! All calls act on the network namespace of the calling thread: interface
//! names resolve there and TCX links / clsact filters are created there.
//! Attachments are detached when the [`Datapath`] is dropped.

// Unsafe code is needed in two places only: aya requires `unsafe impl Pod`
// for the `#[repr(C)]` key and value types it copies to and from the kernel,
// and tokio requires `unsafe` to watch the ring buffer's descriptor.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashSet};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::tc::{self, SchedClassifierLink, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier};
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfError, Pod};
use ipnet::IpNet;

use crate::abi::{
    DatapathConfigValue, EndpointEntry, IpcacheEntry, IpcacheKey, PolicyKey, PolicyValue,
};
use crate::constants::monitor_aggregation;

mod reader;

pub use reader::{EventReader, ReaderStats, EVENT_CHANNEL_CAPACITY};

/// The compiled programs, aligned for the ELF parser.
static DATAPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath.o"));

const FROM_CONTAINER: &str = "from_container";
const TO_CONTAINER: &str = "to_container";

/// Default ring backlog at which the programs wake the reader: about 390
/// trace records, so a busy node pays one wake-up per few hundred events
/// while the reader's poll interval bounds the latency of sparse ones.
pub const DEFAULT_WAKEUP_BYTES: u32 = 64 * 1024;

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
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            monitor_aggregation: monitor_aggregation::NONE,
            events_enabled: true,
            wakeup_bytes: DEFAULT_WAKEUP_BYTES,
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
    // Dropping a link detaches it (TCX link fd closed or clsact filter
    // removed).
    _links: [SchedClassifierLink; 2],
}

/// The loaded datapath: programs, maps and attachments.
pub struct Datapath {
    // Field order matters for drop: links first, then the programs.
    attachments: BTreeMap<String, Attachment>,
    ebpf: Ebpf,
    endpoints: HashMap<MapData, u32, EndpointEntry>,
    ipcache: LpmTrie<MapData, IpcacheKeyData, IpcacheEntry>,
    policy: HashMap<MapData, PolicyKey, PolicyValue>,
    config: Array<MapData, DatapathConfigValue>,
    lost: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
}

impl Datapath {
    /// Loads the embedded object into the kernel and writes `config`.
    pub fn load(config: DatapathConfig) -> Result<Self, LoaderError> {
        let mut ebpf = Ebpf::load(DATAPATH_OBJECT).map_err(|e| LoaderError::Load(Box::new(e)))?;
        for name in [FROM_CONTAINER, TO_CONTAINER] {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|e| LoaderError::Program {
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
        let mut datapath = Self {
            attachments: BTreeMap::new(),
            ebpf,
            endpoints,
            ipcache,
            policy,
            config: config_map,
            lost,
            events: Some(events),
        };
        datapath.set_config(config)?;
        Ok(datapath)
    }

    /// Rewrites the CONFIG map; takes effect for the next packet.
    pub fn set_config(&mut self, config: DatapathConfig) -> Result<(), LoaderError> {
        let value = DatapathConfigValue {
            monitor_aggregation: config.monitor_aggregation,
            events_enabled: u32::from(config.events_enabled),
            wakeup_bytes: config.wakeup_bytes,
            pad0: 0,
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
        let ingress = self.attach_one(FROM_CONTAINER, ifname, TcAttachType::Ingress)?;
        let egress = self.attach_one(TO_CONTAINER, ifname, TcAttachType::Egress)?;
        self.attachments.insert(
            ifname.to_string(),
            Attachment {
                ifindex,
                _links: [ingress, egress],
            },
        );
        Ok(ifindex)
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

    /// Detaches both programs from `ifname`; unknown names are a no-op.
    pub fn detach(&mut self, ifname: &str) -> Result<(), LoaderError> {
        self.attachments.remove(ifname);
        Ok(())
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

    /// Makes the policy map equal to `entries`: inserts and updates first,
    /// then deletes keys no longer wanted, so a connection allowed before
    /// and after the change is never denied in between.
    pub fn sync_policy(&mut self, entries: &[(PolicyKey, PolicyValue)]) -> Result<(), LoaderError> {
        for (key, value) in entries {
            self.policy
                .insert(key, value, 0)
                .map_err(map_err("POLICY"))?;
        }
        let wanted: HashSet<PolicyKey> = entries.iter().map(|(key, _)| *key).collect();
        let stale = self
            .policy
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| !wanted.contains(key))
            .collect::<Vec<_>>();
        for key in stale {
            ignore_missing(self.policy.remove(&key)).map_err(map_err("POLICY"))?;
        }
        Ok(())
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

    fn run_stats(&self, name: &'static str) -> Result<ProgramRunStats, LoaderError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(LoaderError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|e| LoaderError::Program {
                program: name,
                source: Box::new(e),
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
