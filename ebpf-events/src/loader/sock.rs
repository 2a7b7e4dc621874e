//! The socket-level load balancer: cgroup programs attached to a cgroup v2
//! directory (`--cgroup-root`) and the service maps they read.
//!
//! Links are pinned as `<pin dir>/cgroup/<program>` when the datapath is pinned, so
//! translation goes on while no agent runs; a new agent attaches its programs next to
//! the old ones (multi-attach: the second connect4 sees a backend, not a VIP, and
//! leaves it) and then replaces the pins, which detaches the old links.

use std::collections::{BTreeMap, HashMap as StdHashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::links::{CgroupAttachMode, FdLink, PinnedLink};
use aya::programs::CgroupSockAddr;

use super::{ignore_missing, map_err, pins, Datapath, LoaderError};
use crate::abi::lb::{backend_state, LB_SERVICE_F_NODEPORT};
use crate::abi::{CtKey, LbBackend, LbNatEntry, LbServiceKey, LbServiceValue};

/// The socket programs, by their function names in `bpf/sock.c`.
pub(crate) const SOCK_PROGRAMS: [&str; 8] = [
    "sock4_connect",
    "sock4_sendmsg",
    "sock4_recvmsg",
    "sock4_getpeername",
    "sock6_connect",
    "sock6_sendmsg",
    "sock6_recvmsg",
    "sock6_getpeername",
];

/// One frontend of a service as the datapath balances it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbFrontend {
    /// The service's numeric id (Cilium's service ID, also the rev-NAT index).
    pub service_id: u16,
    /// Frontend address (the ClusterIP).
    pub address: IpAddr,
    /// Frontend port.
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// A NodePort frontend (flag only; no wildcard lookup yet).
    pub nodeport: bool,
    /// Backends in a stable order; only [`backend_state::ACTIVE`] ones get new
    /// connections. A backend whose family differs from the frontend's is ignored.
    pub backends: Vec<LbBackendSpec>,
}

/// A backend of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbBackendSpec {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
    /// See [`backend_state`].
    pub state: u8,
}

/// Links of the socket programs on one cgroup.
pub(crate) enum CgroupLinks {
    // Dropping a link detaches it; held only for that.
    Owned(#[allow(dead_code)] Vec<FdLink>),
    // The pins keep the programs attached.
    Pinned(#[allow(dead_code)] Vec<PinnedLink>),
}

impl Datapath {
    /// Attaches the socket programs to the cgroup v2 directory `cgroup`: sockets of
    /// processes in it (and in its descendants) are load-balanced. With a pinned
    /// datapath the links are pinned too.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<(), LoaderError> {
        let dir = std::fs::File::open(cgroup).map_err(|e| LoaderError::PinDir {
            path: cgroup.to_path_buf(),
            reason: format!("cannot open the cgroup directory: {e}"),
        })?;
        let pin_dir = self.pin_dir.clone();
        if let Some(pin_dir) = &pin_dir {
            let links = pins::cgroup_links_dir(pin_dir);
            std::fs::create_dir_all(&links).map_err(|e| LoaderError::PinDir {
                path: links.clone(),
                reason: e.to_string(),
            })?;
        }
        let mut owned = Vec::new();
        let mut pinned = Vec::new();
        for name in SOCK_PROGRAMS {
            let attach_err = |source| LoaderError::Attach {
                program: name,
                interface: cgroup.display().to_string(),
                source: Box::new(source),
            };
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or(LoaderError::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(attach_err)?;
            // Through BPF links (Linux 5.7+) cgroup programs always stack
            // (the kernel refuses flags there), so `Single` still lets the next
            // agent's programs attach next to these.
            let id = prog
                .attach(dir.as_fd(), CgroupAttachMode::Single)
                .map_err(attach_err)?;
            let link = FdLink::try_from(prog.take_link(id).map_err(attach_err)?).map_err(|e| {
                LoaderError::Pin {
                    path: cgroup.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
            match &pin_dir {
                Some(pin_dir) => {
                    pinned.push(pin_link(link, &pins::cgroup_link_pin(pin_dir, name))?)
                }
                None => owned.push(link),
            }
        }
        self.cgroup_links = Some(if pin_dir.is_some() {
            CgroupLinks::Pinned(pinned)
        } else {
            CgroupLinks::Owned(owned)
        });
        Ok(())
    }

    /// Makes the service maps equal to `frontends`, writing only differences: new
    /// and changed backends, backend slots and then service entries first, deletes
    /// last (services, slots, then backends), so a connection never finds a slot
    /// without its backend. Returns (written, deleted).
    pub fn sync_services(
        &mut self,
        frontends: &[LbFrontend],
    ) -> Result<(usize, usize), LoaderError> {
        // Backends: ids stay with their (address, port) while they exist.
        let mut wanted_backends: BTreeMap<u32, LbBackend> = BTreeMap::new();
        let mut wanted_slots: Vec<(LbServiceKey, LbServiceValue)> = Vec::new();
        let mut wanted_services: Vec<(LbServiceKey, LbServiceValue)> = Vec::new();
        let current_backends: StdHashMap<u32, LbBackend> = self
            .lb_backends
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("LB_BACKENDS"))?;
        let mut ids: StdHashMap<(IpAddr, u16), u32> = current_backends
            .iter()
            .map(|(id, b)| ((b.address(), b.port()), *id))
            .collect();
        let mut next_id = ids.values().copied().max().unwrap_or(0);
        for frontend in frontends {
            let mut slot = 0u16;
            for backend in &frontend.backends {
                if backend.address.is_ipv4() != frontend.address.is_ipv4() {
                    continue;
                }
                let id = *ids
                    .entry((backend.address, backend.port))
                    .or_insert_with(|| {
                        next_id += 1;
                        next_id
                    });
                // A backend listed by two frontends with different states keeps
                // the first (states come from one service model per address).
                wanted_backends.entry(id).or_insert_with(|| {
                    LbBackend::new(backend.address, backend.port, backend.state)
                });
                if backend.state != backend_state::ACTIVE || slot == u16::MAX {
                    continue;
                }
                slot += 1;
                wanted_slots.push((
                    LbServiceKey::new(frontend.address, frontend.port, frontend.protocol, slot),
                    LbServiceValue {
                        backend_id: id,
                        service_id: frontend.service_id,
                        ..LbServiceValue::default()
                    },
                ));
            }
            wanted_services.push((
                LbServiceKey::new(frontend.address, frontend.port, frontend.protocol, 0),
                LbServiceValue {
                    backend_id: 0,
                    count: slot,
                    service_id: frontend.service_id,
                    flags: if frontend.nodeport {
                        LB_SERVICE_F_NODEPORT
                    } else {
                        0
                    },
                },
            ));
        }
        let current_services: StdHashMap<LbServiceKey, LbServiceValue> = self
            .lb_services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("LB_SERVICES"))?;
        let mut written = 0;
        for (id, backend) in &wanted_backends {
            if current_backends.get(id) != Some(backend) {
                self.lb_backends
                    .insert(id, backend, 0)
                    .map_err(map_err("LB_BACKENDS"))?;
                written += 1;
            }
        }
        for (key, value) in wanted_slots.iter().chain(wanted_services.iter()) {
            if current_services.get(key) != Some(value) {
                self.lb_services
                    .insert(key, value, 0)
                    .map_err(map_err("LB_SERVICES"))?;
                written += 1;
            }
        }
        let wanted_keys: HashSet<&LbServiceKey> = wanted_slots
            .iter()
            .chain(wanted_services.iter())
            .map(|(k, _)| k)
            .collect();
        let mut stale: Vec<&LbServiceKey> = current_services
            .keys()
            .filter(|k| !wanted_keys.contains(k))
            .collect();
        // Service entries (slot 0) go first, so no lookup finds a count whose
        // slots are already gone.
        stale.sort_by_key(|k| k.slot);
        let mut deleted = 0;
        for key in stale {
            ignore_missing(self.lb_services.remove(key)).map_err(map_err("LB_SERVICES"))?;
            deleted += 1;
        }
        for id in current_backends.keys() {
            if !wanted_backends.contains_key(id) {
                ignore_missing(self.lb_backends.remove(id)).map_err(map_err("LB_BACKENDS"))?;
                deleted += 1;
            }
        }
        Ok((written, deleted))
    }

    /// The service map's contents (frontend and slot -> value).
    pub fn lb_service_entries(&self) -> Result<Vec<(LbServiceKey, LbServiceValue)>, LoaderError> {
        self.lb_services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("LB_SERVICES"))
    }

    /// The tc load balancer's connection entries (`LB_NAT_CT`): client tuple towards
    /// the frontend (egress) -> backend, client tuple towards the backend (ingress)
    /// -> frontend.
    pub fn lb_nat_entries(&self) -> Result<Vec<(CtKey, LbNatEntry)>, LoaderError> {
        self.lb_nat_ct
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("LB_NAT_CT"))
    }

    /// The backend map's contents (id -> backend).
    pub fn lb_backend_entries(&self) -> Result<Vec<(u32, LbBackend)>, LoaderError> {
        self.lb_backends
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("LB_BACKENDS"))
    }
}

/// Pins `link` at `path`, replacing what was pinned there (the previous agent's
/// link, which detaches once its pin is gone).
fn pin_link(link: FdLink, path: &PathBuf) -> Result<PinnedLink, LoaderError> {
    let pin_err = |reason: String| LoaderError::Pin {
        path: path.clone(),
        reason,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(pin_err(format!("removing the previous link: {e}"))),
    }
    link.pin(path).map_err(|e| pin_err(e.to_string()))
}
