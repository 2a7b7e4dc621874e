//! The datapath's pins on a BPF file system, so that it outlives the agent.
//!
//! Layout of a node's pin directory (e.g. `/sys/fs/bpf/hubble-rs/<node>`):
//!
//! ```text
//! <dir>/IPCACHE, ENDPOINTS, POLICY, CT, EVENTS, LOST, CONFIG   the maps
//! <dir>/links/<ifname>-ingress, <ifname>-egress               TCX links per endpoint veth
//! <dir>/LB_SERVICES, LB_BACKENDS, LB_REVNAT_SK, LB_NAT_CT,     service load balancing
//! <dir>/LB_TC_SCRATCH
//! <dir>/cgroup/<program>                                       socket programs' cgroup links
//! ```
//!
//! A pinned map is re-used by the next agent with its contents, so the policy map is
//! never empty across a restart; a pinned TCX link keeps its program attached after
//! the agent exits (normally or not). A pinned map whose definition differs from this
//! build's (type, key or value size, capacity) is refused by name: re-using it would
//! be wrong and replacing it would drop the policy it holds.

use std::path::{Path, PathBuf};

use super::{LoaderError, DATAPATH_OBJECT};

/// Every map of the datapath object, all pinned.
pub(crate) const MAP_NAMES: [&str; 12] = [
    "IPCACHE",
    "ENDPOINTS",
    "POLICY",
    "CT",
    "EVENTS",
    "LOST",
    "CONFIG",
    "LB_SERVICES",
    "LB_BACKENDS",
    "LB_REVNAT_SK",
    "LB_NAT_CT",
    "LB_TC_SCRATCH",
];

/// Sub-directory of the socket programs' cgroup links.
const CGROUP_LINKS_DIR: &str = "cgroup";

/// Where the cgroup links are pinned.
pub(crate) fn cgroup_links_dir(dir: &Path) -> PathBuf {
    dir.join(CGROUP_LINKS_DIR)
}

/// The pin path of socket program `program`'s cgroup link.
pub(crate) fn cgroup_link_pin(dir: &Path, program: &str) -> PathBuf {
    cgroup_links_dir(dir).join(program)
}

/// Sub-directory of the links.
const LINKS_DIR: &str = "links";

/// Where BPF file systems are usually mounted; the loader mounts one there when it is
/// missing.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// What the loader found in a pin directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinState {
    /// Number of maps that were already pinned (re-used with their contents).
    pub reused_maps: usize,
    /// Whether the loader mounted a BPF file system on [`DEFAULT_BPFFS`].
    pub mounted_bpffs: bool,
}

/// The pin path of a link of `ifname` on `hook` ("ingress" or "egress").
pub(crate) fn link_pin(dir: &Path, ifname: &str, hook: &str) -> PathBuf {
    dir.join(LINKS_DIR).join(format!("{ifname}-{hook}"))
}

/// Makes sure `dir` can hold pins: it must be on a BPF file system (one is mounted at
/// [`DEFAULT_BPFFS`] when `dir` is below it and nothing is mounted there), then
/// creates it and its links directory. Returns whether it mounted one.
pub(crate) fn prepare(dir: &Path) -> Result<bool, LoaderError> {
    let pin_err = |path: &Path, reason: String| LoaderError::PinDir {
        path: path.to_path_buf(),
        reason,
    };
    let mut mounted = false;
    if !on_bpffs(dir) {
        let default = Path::new(DEFAULT_BPFFS);
        if dir.starts_with(default) && default.is_dir() && !is_bpffs(default) {
            nix::mount::mount(
                Some("bpf"),
                default,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| pin_err(default, format!("mounting a BPF file system failed: {e}")))?;
            mounted = true;
        } else {
            return Err(pin_err(
                dir,
                "not on a BPF file system (mount one with `mount -t bpf bpf <dir>`)".into(),
            ));
        }
    }
    let links = dir.join(LINKS_DIR);
    std::fs::create_dir_all(&links).map_err(|e| pin_err(&links, e.to_string()))?;
    Ok(mounted)
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Whether `dir`, or its nearest existing ancestor, is on a BPF file system.
fn on_bpffs(dir: &Path) -> bool {
    dir.ancestors().find(|p| p.exists()).is_some_and(is_bpffs)
}

/// Checks every map already pinned in `dir` against this build's definition and
/// returns how many there are.
pub(crate) fn check_pinned_maps(dir: &Path) -> Result<PinState, LoaderError> {
    let object = aya_obj::Object::parse(DATAPATH_OBJECT).map_err(|e| LoaderError::PinDir {
        path: dir.to_path_buf(),
        reason: format!("reading the map definitions of the datapath object: {e}"),
    })?;
    let mut state = PinState::default();
    for name in MAP_NAMES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let mismatch = |reason: String| LoaderError::PinnedMap {
            path: path.clone(),
            reason,
        };
        let wanted = object
            .maps
            .get(name)
            .ok_or(LoaderError::Missing { kind: "map", name })?;
        let info = aya::maps::MapInfo::from_pin(&path)
            .map_err(|e| mismatch(format!("cannot open it: {e}")))?;
        let pairs = [
            ("type", info_type(&info), wanted.map_type()),
            ("key size", info.key_size(), wanted.key_size()),
            ("value size", info.value_size(), wanted.value_size()),
            ("capacity", info.max_entries(), wanted.max_entries()),
        ];
        for (what, pinned, expected) in pairs {
            if pinned != expected {
                return Err(mismatch(format!(
                    "its {what} is {pinned}, this build's is {expected}"
                )));
            }
        }
        state.reused_maps += 1;
    }
    Ok(state)
}

fn info_type(info: &aya::maps::MapInfo) -> u32 {
    info.map_type().map_or(u32::MAX, |t| t as u32)
}

/// The interfaces that have link pins in `dir`.
pub(crate) fn pinned_interfaces(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir.join(LINKS_DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (ifname, _hook) = name.rsplit_once('-')?;
            Some((ifname.to_string(), e.path()))
        })
        .collect()
}

/// Removes every pin the datapath made in `dir` (links first, which detaches the
/// programs, then the maps) and the directory itself; returns what was removed.
/// Files the datapath does not make are left alone (and keep the directory).
pub fn remove_pins(dir: &Path) -> Result<Vec<PathBuf>, LoaderError> {
    let io = |path: &Path, e: std::io::Error| LoaderError::PinDir {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut removed = Vec::new();
    for (_, path) in pinned_interfaces(dir) {
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        removed.push(path);
    }
    for program in super::sock::SOCK_PROGRAMS {
        let path = cgroup_link_pin(dir, program);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    for name in MAP_NAMES {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    for path in [
        dir.join(LINKS_DIR),
        cgroup_links_dir(dir),
        dir.to_path_buf(),
    ] {
        match std::fs::remove_dir(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    Ok(removed)
}
