//! What `up` prints once the demo is up: nodes, pods, processes and what to try next.

use crate::up;

pub(super) fn print_summary(state: &crate::state::StateFile) {
    let state = &state.state;
    let topology = &state.topology;
    let layout = crate::paths::RunLayout::new(&state.run_dir);
    println!(
        "hubble-lab: demo is up ({} node(s), {} pods); state in {}",
        topology.nodes.len(),
        topology.pods.len(),
        layout.state_file().display()
    );
    for node in &topology.nodes {
        println!(
            "  {:<8} netns {:<14} {}",
            node.name, node.netns, node.address
        );
    }
    for pod in &topology.pods {
        println!(
            "  {:<24} {:<12} on node{} (netns {})",
            format!("{}/{}", pod.namespace, pod.name),
            pod.ipv4,
            pod.node,
            pod.netns
        );
    }
    if let Some(internet) = &topology.internet {
        for host in crate::internet::INTERNET_HOSTS {
            println!(
                "  {:<24} {:<12} {} (netns {}, outside the cluster, plain HTTP on port {})",
                host.name,
                host.ipv4,
                host.ipv6,
                internet.netns,
                crate::internet::INTERNET_PORT
            );
        }
    }
    for record in &state.processes {
        if record.kind != crate::state::ProcessKind::Workload {
            println!(
                "  {:<24} pid {} log {}",
                record.role,
                record.pid,
                record.log.display()
            );
        }
    }
    if let Some(endpoint) = &state.kvstore_endpoint {
        println!("  cluster store (etcd)     {endpoint}");
    }
    if state.export {
        for node in &topology.nodes {
            println!(
                "  flow export of {:<10} {}",
                node.name,
                layout.export_file(node.index).display()
            );
        }
    }
    println!("next:");
    println!("  hubble-lab traffic");
    println!(
        "  hubble-lab exec xwing -- curl -s -XPOST {}/v1/request-landing",
        crate::topology::DEATHSTAR_SERVICE_NAME
    );
    let has_agents = state
        .processes
        .iter()
        .any(|record| record.kind == crate::state::ProcessKind::Agent);
    if has_agents {
        println!(
            "  hubble observe --server unix://{} --last 20",
            layout.hubble_socket(1).display()
        );
    }
    if state
        .processes
        .iter()
        .any(|record| record.kind == crate::state::ProcessKind::Relay)
    {
        let relay = state
            .relay_address
            .as_deref()
            .unwrap_or(up::DEFAULT_RELAY_ADDRESS);
        println!("  hubble observe --server {relay} -f");
    }
    println!("  hubble-lab status");
    println!("  hubble-lab down");
}
