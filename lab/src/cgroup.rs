//! Per-node cgroups for socket load balancing.
//!
//! Each agent attaches its socket programs to its node's cgroup (`--cgroup-root`), so
//! only processes placed there get service translation and concurrent labs never
//! translate each other's traffic. `up` mounts the cgroup v2 hierarchy at
//! `<run>/cgroup2` (visible inside `ip netns exec`, which hides `/sys`), creates
//! `<run>/cgroup2/<prefix>node<N>` per node and `<namespace>_<pod>` below it per pod
//! (how the agent finds a socket's pod from its cgroup id), and every process the lab
//! runs in a pod (workloads, `exec`, `traffic`) joins its pod's cgroup before it
//! starts. `down` removes the (then empty) cgroups before unmounting.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};
use crate::paths::RunLayout;
use crate::state::StateFile;
use crate::topology::{PodPlan, Topology};

/// The lab's mount of the cgroup v2 hierarchy.
pub fn mount_dir(layout: &RunLayout) -> PathBuf {
    layout.root().join("cgroup2")
}

/// Node `index`'s cgroup: the agent's `--cgroup-root`.
pub fn node_cgroup(layout: &RunLayout, topology: &Topology, index: u8) -> PathBuf {
    mount_dir(layout).join(format!("{}node{index}", topology.prefix))
}

/// The cgroup of `pod`'s processes.
pub fn pod_cgroup(layout: &RunLayout, topology: &Topology, pod: &PodPlan) -> PathBuf {
    node_cgroup(layout, topology, pod.node).join(format!("{}_{}", pod.namespace, pod.name))
}

/// Mounts cgroup2 at [`mount_dir`] and creates every node's and pod's cgroup, each
/// recorded before it is made.
pub fn create(layout: &RunLayout, topology: &Topology, state: &mut StateFile) -> Result<()> {
    let dir = mount_dir(layout);
    crate::up::record_dir(state, &dir)?;
    state.record(|state| state.mounts.push(dir.clone()))?;
    nix::mount::mount(
        Some("cgroup2"),
        &dir,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| {
        LabError::io(
            "mounting the cgroup v2 hierarchy on",
            &dir,
            std::io::Error::from(errno),
        )
    })?;
    for node in &topology.nodes {
        ensure(state, &node_cgroup(layout, topology, node.index))?;
    }
    for pod in &topology.pods {
        ensure(state, &pod_cgroup(layout, topology, pod))?;
    }
    Ok(())
}

/// Creates cgroup `dir` (recorded first) unless it exists; an existing one that the lab
/// did not make is refused (another lab or leftover with the same prefix).
pub fn ensure(state: &mut StateFile, dir: &Path) -> Result<()> {
    if state.state.cgroups.iter().any(|c| c == dir) && dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(LabError::NameTaken {
            kind: "cgroup",
            name: dir.display().to_string(),
        });
    }
    let owned = dir.to_path_buf();
    state.record(|state| state.cgroups.push(owned))?;
    std::fs::create_dir(dir).map_err(|error| LabError::io("creating cgroup", dir, error))
}

/// Whether the lab mounted the cgroup hierarchy (labs made before it did not).
pub fn enabled(layout: &RunLayout, state: &StateFile) -> bool {
    state.state.mounts.contains(&mount_dir(layout))
}

/// `argv` prefixed so that the process first joins `cgroup` and then becomes `argv`
/// (same PID): `sh -c 'echo 0 > "$0" && exec "$@"' <cgroup.procs> argv...`.
pub fn wrap(cgroup: &Path, argv: Vec<String>) -> Vec<String> {
    let mut wrapped = vec![
        "sh".to_string(),
        "-c".to_string(),
        "echo 0 > \"$0\" && exec \"$@\"".to_string(),
        cgroup.join("cgroup.procs").display().to_string(),
    ];
    wrapped.extend(argv);
    wrapped
}

/// Moves the calling process into `cgroup` (before it `exec`s a pod's command).
pub fn join(cgroup: &Path) -> Result<()> {
    let procs = cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|error| LabError::io("joining cgroup", &procs, error))
}

/// Removes the lab's cgroups, children first; a cgroup with processes left is
/// reported (and keeps its parent).
pub fn remove_all(cgroups: &[PathBuf], failures: &mut Vec<String>, out: &mut dyn Write) {
    for dir in cgroups.iter().rev() {
        match std::fs::remove_dir(dir) {
            Ok(()) => {
                let _ = writeln!(out, "  removed cgroup {}", dir.display());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => failures.push(format!("removing cgroup {}: {error}", dir.display())),
        }
    }
}
