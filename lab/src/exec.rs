//! `hubble-lab exec POD -- CMD...`: `kubectl exec` for the lab. The command runs in
//! the pod's network namespace through `ip netns exec`, which also gives it the pod's
//! `resolv.conf` (see [`crate::pod_dns`]); standard streams are the caller's and the
//! exit code is the command's, since this process becomes `ip netns exec`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::error::{LabError, Result};
use crate::paths::RunLayout;
use crate::state::StateFile;
use crate::topology::{PodPlan, Topology};
use crate::up::ensure_root;

/// Finds a pod by `name` or `namespace/name`, or says which pods there are.
pub fn find_pod<'a>(topology: &'a Topology, wanted: &str) -> Result<&'a PodPlan> {
    let (namespace, name) = match wanted.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, wanted),
    };
    topology
        .pods
        .iter()
        .find(|pod| pod.name == name && namespace.is_none_or(|ns| ns == pod.namespace))
        .ok_or_else(|| LabError::NoSuchPod {
            name: wanted.to_string(),
            pods: topology
                .pods
                .iter()
                .map(|pod| format!("{}/{}", pod.namespace, pod.name))
                .collect(),
        })
}

/// Replaces this process with `ip netns exec <pod netns> COMMAND...`. Returns only on
/// error.
pub fn exec(run_dir: &Path, pod: &str, command: &[String]) -> Result<()> {
    ensure_root("running a command in a pod")?;
    let state_path = RunLayout::new(run_dir).state_file();
    let state = StateFile::load(&state_path)?.ok_or(LabError::NotUp(state_path))?;
    let pod = find_pod(&state.state.topology, pod)?;
    let Some((program, _)) = command.split_first() else {
        return Err(LabError::InvalidConfig {
            what: "command",
            value: String::new(),
            reason: "is empty: give it after `--`, e.g. `hubble-lab exec xwing -- curl ...`"
                .to_string(),
        });
    };
    if crate::cgroup::enabled(&RunLayout::new(run_dir), &state) {
        // Socket load balancing applies to the pod's processes.
        crate::cgroup::join(&crate::cgroup::pod_cgroup(
            &RunLayout::new(run_dir),
            &state.state.topology,
            pod,
        ))?;
    }
    let mut ip = Command::new("ip");
    ip.args(["netns", "exec", &pod.netns]).args(command);
    let source = ip.exec();
    Err(LabError::Spawn {
        command: format!("ip netns exec {} {program} ...", pod.netns),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologyConfig;

    #[test]
    fn pods_are_found_by_name_or_namespace_and_name() {
        let topology = Topology::plan(&TopologyConfig {
            nodes: 1,
            prefix: "hl-".to_string(),
            node_subnet: "10.100.0.0/24".parse().expect("subnet"),
        })
        .expect("plan");
        assert_eq!(
            find_pod(&topology, "xwing").expect("xwing").netns,
            "hl-xwing"
        );
        assert_eq!(
            find_pod(&topology, "kube-system/coredns")
                .expect("coredns")
                .netns,
            "hl-coredns"
        );
        let error = find_pod(&topology, "default/coredns").expect_err("wrong namespace");
        let message = error.to_string();
        assert!(message.contains("\"default/coredns\""), "{message}");
        assert!(
            message.contains("default/xwing") && message.contains("kube-system/coredns"),
            "{message}"
        );
    }
}
