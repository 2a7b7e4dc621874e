//! Socket load balancing through a lab (root): services set through the agent's admin
//! API, requests from the pods (in their node's cgroup) to the VIPs, and Hubble's
//! translation events read back with `hubble observe`. The seeds' whole sequence with
//! the lab's own services is tested elsewhere; this test covers the datapath's side:
//! events in order with the right addresses, both backends chosen, replies from the
//! VIP, a terminating backend left out, UDP, IPv6 and policy after translation.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tests::run_ok;
use tests::{Lab, COMMAND_TIMEOUT};

const VIP: &str = "10.96.60.53";
const VIP6: &str = "fd00:96::53";
const DNS_VIP: &str = "10.96.0.10";
const DEATHSTAR_1: &str = "10.200.1.10";
const DEATHSTAR_2: &str = "10.200.1.11";

/// `curl` from `pod` to `url`: `<body> <remote_ip>` or an error code.
fn curl(lab: &Lab, pod: &str, url: &str) -> Result<String> {
    let mut cmd = lab.cmd();
    cmd.args(["exec", pod, "--", "curl", "-s", "-g", "-m", "3"])
        .args(["-w", " %{remote_ip}", "-XPOST", url]);
    let out = tests::run_with_timeout(&mut cmd, COMMAND_TIMEOUT)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The trace-sock flows of `pod` so far, oldest first.
fn sock_flows(lab: &Lab, pod: &str) -> Result<Vec<Value>> {
    let flows = lab.observe_json(&["--last", "2000", "--type", "trace-sock"])?;
    Ok(flows
        .into_iter()
        .map(|v| v["flow"].clone())
        .filter(|f| f["source"]["pod_name"] == pod || f["destination"]["pod_name"] == pod)
        .collect())
}

fn point(f: &Value) -> &str {
    f["sock_xlate_point"].as_str().unwrap_or("")
}

#[test]
fn services_are_balanced_in_the_sockets_of_the_pods() -> Result<()> {
    if !tests::require_root("services_are_balanced_in_the_sockets_of_the_pods") {
        return Ok(());
    }
    let lab = Lab::up("sdp", "10.133.0.0/24")?;
    // The lab serves default/deathstar (VIP:80) and kube-system/kube-dns (DNS_VIP:53)
    // itself; an IPv6 frontend comes through the admin API.
    let listed = lab.agent(&["service", "list"])?;
    ensure!(listed.contains(&format!("{VIP}:80/TCP")), "{listed}");
    ensure!(listed.contains(&format!("{DNS_VIP}:53/UDP")), "{listed}");
    lab.agent(&[
        "service",
        "update",
        "--frontend",
        &format!("[{VIP6}]:80"),
        "--backends",
        "[fd00:200:1::10]:80,[fd00:200:1::11]:80",
    ])?;
    let url = format!("http://{VIP}/v1/request-landing");
    // The agent programs the maps asynchronously after the admin command.
    tests::eventually(std::time::Duration::from_secs(10), || {
        Ok(curl(&lab, "tiefighter", &url)?
            .starts_with("Ship landed")
            .then_some(()))
    })?;

    // 20 connections: every reply comes from the VIP as the client sees it.
    for _ in 0..20 {
        let out = curl(&lab, "tiefighter", &url)?;
        ensure!(
            out == format!("Ship landed {VIP}"),
            "tiefighter got {out:?}"
        );
    }
    let flows = sock_flows(&lab, "tiefighter")?;
    let fwd: Vec<&Value> = flows
        .iter()
        .filter(|f| point(f).ends_with("DIRECTION_FWD") && f["IP"]["destination"] != VIP6)
        .collect();
    ensure!(fwd.len() >= 42, "{} forward events: {fwd:#?}", fwd.len());
    let mut backends = BTreeSet::new();
    for pair in fwd.chunks(2) {
        let (pre, post) = (pair[0], pair[1]);
        ensure!(point(pre) == "SOCK_XLATE_POINT_PRE_DIRECTION_FWD", "{pre}");
        ensure!(pre["verdict"] == "TRACED", "{pre}");
        ensure!(pre["IP"]["destination"] == VIP, "{pre}");
        ensure!(pre["l4"]["TCP"]["destination_port"] == 80, "{pre}");
        ensure!(pre["destination"]["labels"][0] == "reserved:world", "{pre}");
        ensure!(pre["source"]["pod_name"] == "tiefighter", "{pre}");
        ensure!(
            point(post) == "SOCK_XLATE_POINT_POST_DIRECTION_FWD",
            "{post}"
        );
        ensure!(post["verdict"] == "TRANSLATED", "{post}");
        ensure!(
            post["socket_cookie"] == pre["socket_cookie"],
            "{pre} {post}"
        );
        ensure!(post["cgroup_id"] == pre["cgroup_id"], "{pre} {post}");
        let backend = post["IP"]["destination"].as_str().unwrap_or_default();
        ensure!([DEATHSTAR_1, DEATHSTAR_2].contains(&backend), "{post}");
        ensure!(
            post["destination"]["pod_name"]
                .as_str()
                .is_some_and(|p| p.starts_with("deathstar-")),
            "{post}"
        );
        backends.insert(backend.to_string());
    }
    ensure!(backends.len() == 2, "only {backends:?} chosen");
    // curl's getpeername went through the reverse translation.
    ensure!(
        flows
            .iter()
            .any(|f| point(f) == "SOCK_XLATE_POINT_POST_DIRECTION_REV"
                && f["IP"]["source"] == VIP
                && f["destination"]["pod_name"] == "tiefighter"),
        "no post-xlate-rev from the VIP"
    );
    // The text output: the flow names the VIP's service (upstream's sock parser looks
    // the destination up as a frontend), so hubble prints `default/deathstar:80`
    // where the seed, whose Cilium found no service there, printed the VIP.
    let text = lab.observe(&[
        "--last",
        "2000",
        "--type",
        "trace-sock",
        "--from-pod",
        "default/tiefighter",
    ])?;
    ensure!(
        text.lines().any(|l| l.contains("default/tiefighter (ID:")
            && l.contains("<> default/deathstar:80 (world) ")
            && l.ends_with("pre-xlate-fwd TRACED (TCP)")),
        "no pre-xlate-fwd line in:\n{text}"
    );
    ensure!(
        text.lines().any(|l| l.contains("<> default/deathstar-")
            && l.contains(":80 (ID:")
            && l.ends_with("post-xlate-fwd TRANSLATED (TCP)")),
        "no post-xlate-fwd line in:\n{text}"
    );

    // deathstar-2 terminating: new connections all go to deathstar-1.
    lab.agent(&[
        "service",
        "update",
        "--backends",
        &format!("{DEATHSTAR_2}:80"),
        "--states",
        "terminating",
    ])?;
    let listed = lab.agent(&["service", "list"])?;
    ensure!(listed.contains("(terminating)"), "{listed}");
    let before = sock_flows(&lab, "tiefighter")?.len();
    for _ in 0..10 {
        let out = curl(&lab, "tiefighter", &url)?;
        ensure!(
            out == format!("Ship landed {VIP}"),
            "tiefighter got {out:?}"
        );
    }
    let after = sock_flows(&lab, "tiefighter")?;
    let chosen: BTreeSet<String> = after[before.min(after.len())..]
        .iter()
        .filter(|f| point(f) == "SOCK_XLATE_POINT_POST_DIRECTION_FWD")
        .filter_map(|f| f["IP"]["destination"].as_str().map(String::from))
        .collect();
    ensure!(
        chosen == BTreeSet::from([DEATHSTAR_1.to_string()]),
        "after deathstar-2 turned terminating: {chosen:?}"
    );

    // UDP: a DNS query to the kube-dns VIP is answered, through the translation.
    let answer = run_ok(
        lab.cmd().args([
            "exec",
            "xwing",
            "--",
            &tests::bin("hubble-lab")?.display().to_string(),
            "request",
            "dns",
            "--server",
            &format!("{DNS_VIP}:53"),
            "--name",
            "deathstar.default.svc.cluster.local",
            "--timeout-ms",
            "2000",
        ]),
        COMMAND_TIMEOUT,
    )?;
    ensure!(
        answer.contains("\"rcode\":0"),
        "DNS through the VIP: {answer}"
    );
    let udp = sock_flows(&lab, "xwing")?;
    let seen: BTreeSet<(String, String, String)> = udp
        .iter()
        .filter(|f| f["l4"]["UDP"].is_object())
        .map(|f| {
            (
                point(f).to_string(),
                f["IP"]["source"].as_str().unwrap_or_default().to_string(),
                f["IP"]["destination"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let xwing = "10.200.1.13".to_string();
    for wanted in [
        (
            "SOCK_XLATE_POINT_PRE_DIRECTION_FWD",
            xwing.clone(),
            DNS_VIP.to_string(),
        ),
        (
            "SOCK_XLATE_POINT_POST_DIRECTION_FWD",
            xwing.clone(),
            "10.200.1.14".to_string(),
        ),
    ] {
        let wanted = (wanted.0.to_string(), wanted.1, wanted.2);
        ensure!(seen.contains(&wanted), "{wanted:?} not in {seen:#?}");
    }

    // IPv6 frontend.
    let out = curl(
        &lab,
        "tiefighter",
        &format!("http://[{VIP6}]/v1/request-landing"),
    )?;
    ensure!(out == format!("Ship landed {VIP6}"), "over IPv6: {out:?}");

    // Policy applies after translation: rule1 still keeps xwing out through the VIP.
    let rule1 =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/rule1.yaml");
    lab.agent(&["policy", "import", &rule1.display().to_string()])
        .context("importing rule1")?;
    tests::eventually(std::time::Duration::from_secs(10), || {
        // A dropped SYN: curl times out with nothing to print.
        Ok(curl(&lab, "xwing", &url)?.is_empty().then_some(()))
    })
    .context("xwing still lands through the VIP after rule1")?;
    let out = curl(&lab, "tiefighter", &url)?;
    ensure!(
        out == format!("Ship landed {VIP}"),
        "tiefighter after rule1: {out:?}"
    );
    let drops = lab.observe_json(&[
        "--last",
        "200",
        "--from-pod",
        "default/xwing",
        "--verdict",
        "DROPPED",
    ])?;
    ensure!(
        drops.iter().any(|v| {
            let f = &v["flow"];
            f["drop_reason_desc"] == "POLICY_DENIED"
                && [DEATHSTAR_1, DEATHSTAR_2]
                    .iter()
                    .any(|d| f["IP"]["destination"] == *d)
        }),
        "no policy drop towards a backend: {drops:#?}"
    );
    Ok(())
}
