//! tc-level load balancing through a lab (root): a process in the tiefighter pod's
//! network namespace but outside its cgroup (plain `ip netns exec`, so the socket
//! programs never see its sockets) calls the deathstar VIP. The tc programs translate
//! it: the answer arrives, both backends serve, the client sees the VIP, a backend
//! removed from the service gets no new connections, and Hubble shows what Cilium's
//! per-packet load balancer leads it to show (from-endpoint towards the VIP with the
//! service, to-endpoint at the backend). A call from inside the cgroup is translated
//! by the socket programs only; a DNS query to the kube-dns VIP (UDP) is answered.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use tests::{Lab, COMMAND_TIMEOUT};

const VIP: &str = "10.96.60.53";
const DEATHSTAR_1: &str = "10.200.1.10";
const DEATHSTAR_2: &str = "10.200.1.11";
const TIEFIGHTER: &str = "10.200.1.12";

/// `curl` from the tiefighter pod's network namespace, outside its cgroup:
/// `<body> <remote_ip>`, or what little curl printed.
fn curl_outside(lab: &Lab, url: &str) -> Result<String> {
    let netns = format!("{}tiefighter", lab.prefix);
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &netns, "curl", "-s", "-m", "3"])
        .args(["-w", " %{remote_ip}", "-XPOST", url]);
    let out = tests::run_with_timeout(&mut cmd, COMMAND_TIMEOUT)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// tiefighter's L3/L4 trace flows so far, oldest first.
fn traces(lab: &Lab) -> Result<Vec<Value>> {
    Ok(lab
        .observe_json(&["--last", "5000", "--type", "trace", "--ip", TIEFIGHTER])?
        .into_iter()
        .map(|v| v["flow"].clone())
        .collect())
}

fn is_syn(f: &Value) -> bool {
    f["l4"]["TCP"]["flags"]["SYN"] == true && f["l4"]["TCP"]["flags"]["ACK"] != true
}

/// tiefighter's SYNs towards the VIP, traced before the translation.
fn syns_to_vip(flows: &[Value]) -> Vec<&Value> {
    flows
        .iter()
        .filter(|f| {
            is_syn(f)
                && f["trace_observation_point"] == "FROM_ENDPOINT"
                && f["IP"]["source"] == TIEFIGHTER
                && f["IP"]["destination"] == VIP
        })
        .collect()
}

/// Backends that received a SYN from tiefighter (to-endpoint), with how many.
fn syns_at_backends(flows: &[Value]) -> Vec<String> {
    flows
        .iter()
        .filter(|f| {
            is_syn(f)
                && f["trace_observation_point"] == "TO_ENDPOINT"
                && f["IP"]["source"] == TIEFIGHTER
        })
        .filter_map(|f| f["IP"]["destination"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_tc_programs_balance_processes_outside_the_pod_cgroups() -> Result<()> {
    if !tests::require_root("the_tc_programs_balance_processes_outside_the_pod_cgroups") {
        return Ok(());
    }
    let lab = Lab::up("stc", "10.135.0.0/24")?;
    let url = format!("http://{VIP}/v1/request-landing");
    let landed = format!("Ship landed {VIP}");
    // The agent registers the endpoints asynchronously after `up`.
    tests::eventually(Duration::from_secs(30), || {
        Ok((curl_outside(&lab, &url)? == landed).then_some(()))
    })?;
    let before = traces(&lab)?;
    let (vip_syns_before, backend_syns_before) =
        (syns_to_vip(&before).len(), syns_at_backends(&before).len());

    // 20 connections: every answer arrives and comes from the VIP as curl sees it.
    for _ in 0..20 {
        let out = curl_outside(&lab, &url)?;
        ensure!(out == landed, "tiefighter (outside its cgroup) got {out:?}");
    }
    let flows = tests::eventually(Duration::from_secs(10), || {
        let flows = traces(&lab)?;
        Ok((syns_at_backends(&flows).len() >= backend_syns_before + 20).then_some(flows))
    })?;
    let vip_syns = syns_to_vip(&flows);
    ensure!(
        vip_syns.len() >= vip_syns_before + 20,
        "{} SYNs towards the VIP",
        vip_syns.len()
    );
    for f in &vip_syns {
        // Before the translation: the VIP, named by its service, at tiefighter.
        ensure!(
            f["destination_service"]["name"] == "deathstar"
                && f["destination_service"]["namespace"] == "default",
            "{f}"
        );
        ensure!(f["source"]["pod_name"] == "tiefighter", "{f}");
        ensure!(f["destination"]["labels"][0] == "reserved:world", "{f}");
        ensure!(f["verdict"] == "FORWARDED", "{f}");
    }
    let chosen: BTreeSet<String> = syns_at_backends(&flows)[backend_syns_before..]
        .iter()
        .cloned()
        .collect();
    ensure!(
        chosen == BTreeSet::from([DEATHSTAR_1.to_string(), DEATHSTAR_2.to_string()]),
        "backends chosen over 20 connections: {chosen:?}"
    );
    // No socket translation happened for these connections.
    let sock = lab.observe_json(&["--last", "5000", "--type", "trace-sock"])?;
    ensure!(
        !sock
            .iter()
            .any(|v| v["flow"]["source"]["pod_name"] == "tiefighter"
                || v["flow"]["destination"]["pod_name"] == "tiefighter"),
        "trace-sock events for tiefighter: {sock:#?}"
    );
    // The compact output, as Hubble prints Cilium's per-packet translation.
    let text = lab.observe(&[
        "--last",
        "5000",
        "--type",
        "trace",
        "--from-pod",
        "default/tiefighter",
        "--to-service",
        "default/deathstar",
    ])?;
    // Cilium traces it before its conntrack lookup (reason unknown), so Hubble
    // cannot tell a reply and prints `<>`.
    ensure!(
        text.lines().any(|l| l.contains("default/tiefighter:")
            && l.ends_with(
                " <> default/deathstar:80 (world) from-endpoint FORWARDED (TCP Flags: SYN)"
            )),
        "no from-endpoint line towards the service in:\n{text}"
    );

    // A call from inside the cgroup goes through the socket programs only: no
    // from-endpoint towards the VIP, since the socket already talks to a backend.
    let mut exec = lab.cmd();
    exec.args(["exec", "tiefighter", "--", "curl", "-s", "-m", "3"])
        .args(["-w", " %{remote_ip}", "-XPOST", &url]);
    let out = tests::run_ok(&mut exec, COMMAND_TIMEOUT)?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>().join(" ") == landed,
        "{out}"
    );
    let vip_syns_now = syns_to_vip(&traces(&lab)?).len();
    ensure!(
        vip_syns_now == vip_syns.len(),
        "{} SYNs towards the VIP after a socket-translated call, {} before",
        vip_syns_now,
        vip_syns.len()
    );

    // UDP: a DNS query to the kube-dns VIP from outside xwing's cgroup is answered.
    let netns = format!("{}xwing", lab.prefix);
    let answer = tests::run_ok(
        std::process::Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(tests::bin("hubble-lab")?)
            .args(["request", "dns", "--server", "10.96.0.10:53"])
            .args(["--name", "deathstar.default.svc.cluster.local"])
            .args(["--timeout-ms", "2000"]),
        COMMAND_TIMEOUT,
    )?;
    ensure!(
        answer.contains("\"rcode\":0"),
        "DNS through the VIP: {answer}"
    );
    let dns = lab.observe_json(&[
        "--last",
        "5000",
        "--type",
        "trace",
        "--from-pod",
        "default/xwing",
        "--to-service",
        "kube-system/kube-dns",
    ])?;
    ensure!(
        dns.iter()
            .any(|v| v["flow"]["trace_observation_point"] == "FROM_ENDPOINT"
                && v["flow"]["IP"]["destination"] == "10.96.0.10"
                && v["flow"]["l4"]["UDP"]["destination_port"] == 53),
        "no from-endpoint towards the kube-dns VIP: {dns:#?}"
    );

    // deathstar-2 removed from the service: new connections all go to deathstar-1.
    lab.agent(&[
        "service",
        "update",
        "--frontend",
        &format!("{VIP}:80"),
        "--backends",
        &format!("{DEATHSTAR_1}:80"),
    ])?;
    let listed = lab.agent(&["service", "list"])?;
    ensure!(!listed.contains(&format!("{DEATHSTAR_2}:80")), "{listed}");
    // Endpoints read `regenerating` until the datapath holds the change.
    tests::eventually(Duration::from_secs(10), || {
        Ok((!lab.agent(&["endpoint", "list"])?.contains("regenerating")).then_some(()))
    })?;
    let before = syns_at_backends(&traces(&lab)?).len();
    for _ in 0..10 {
        let out = curl_outside(&lab, &url)?;
        ensure!(out == landed, "after deathstar-2 left: {out:?}");
    }
    let flows = tests::eventually(Duration::from_secs(10), || {
        let flows = traces(&lab)?;
        Ok((syns_at_backends(&flows).len() >= before + 10).then_some(flows))
    })?;
    let chosen: BTreeSet<String> = syns_at_backends(&flows)[before..].iter().cloned().collect();
    ensure!(
        chosen == BTreeSet::from([DEATHSTAR_1.to_string()]),
        "after deathstar-2 left the service: {chosen:?}"
    );
    Ok(())
}
