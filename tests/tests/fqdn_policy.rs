//! toFQDNs on the lab: `examples/policies/fqdn-github.yaml` lets the xwing reach only
//! api.github.com on 443 (the lab's internet namespace, outside the cluster) and sends
//! every lookup through the agent's DNS proxy. The first connection right after the
//! lookup is allowed (the answer's addresses are programmed before the pod has it),
//! cilium.io is dropped by policy, `--to-fqdn` finds the connection, the DNS flows
//! show A and AAAA answers, NXDOMAIN, a CNAME and an answer truncated over UDP then
//! asked again over TCP, a name a DNS rule does not allow is
//! answered REFUSED with a `dns-request DROPPED` flow, and after the agent is killed
//! and started again the names are still on flows and api.github.com still reachable.
//! Needs root; prints a SKIP line otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use tests::{bin, eventually, require_root, run_with_timeout, Lab};

const GITHUB_V4: &str = "203.0.113.10";
const GITHUB_V6: &str = "2001:db8:113::10";
const CILIUM_V4: &str = "203.0.113.20";

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/policies/{name}"))
}

/// Runs `args` in `pod` through `hubble-lab exec`: (stdout, exit code).
fn exec(lab: &Lab, pod: &str, args: &[&str]) -> Result<(String, i32)> {
    let mut cmd = lab.cmd();
    cmd.args(["exec", pod, "--"]).args(args);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30))?;
    Ok((
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code().unwrap_or(-1),
    ))
}

/// `curl` of `http://<host>:443/` from `pod` (the internet answers plain HTTP there).
fn curl(lab: &Lab, pod: &str, host: &str, extra: &[&str]) -> Result<(String, i32)> {
    let url = if host.contains(':') {
        format!("http://[{host}]:443/")
    } else {
        format!("http://{host}:443/")
    };
    let mut args = vec!["curl", "-s", "--max-time", "4"];
    args.extend_from_slice(extra);
    args.push(&url);
    exec(lab, pod, &args)
}

fn dns_flows(lab: &Lab) -> Result<String> {
    lab.observe(&["--type", "l7", "--protocol", "dns", "--last", "1000"])
}

/// Waits until `hubble observe` (with `args`) prints a line containing every one of
/// `wanted`; returns the output.
fn observe_until(lab: &Lab, args: &[&str], wanted: &[&str]) -> Result<String> {
    eventually(Duration::from_secs(15), || {
        let out = lab.observe(args)?;
        let found = out.lines().any(|l| wanted.iter().all(|w| l.contains(w)));
        Ok(found.then_some(out))
    })
}

#[test]
fn to_fqdns_allows_api_github_com_only() -> Result<()> {
    if !require_root("to_fqdns_allows_api_github_com_only") {
        return Ok(());
    }
    let lab = Lab::up("fq", "10.143.0.0/24")?;
    lab.wait_until_programmed()?;

    // Without a policy the internet is reachable, as the world identity.
    let (out, code) = curl(&lab, "tiefighter", CILIUM_V4, &[])?;
    assert_eq!((out.as_str(), code), ("cilium.io\n", 0));
    observe_until(
        &lab,
        &[
            "--from-pod",
            "default/tiefighter",
            "--to-ip",
            CILIUM_V4,
            "--last",
            "50",
        ],
        &["(world)", "FORWARDED"],
    )?;

    let out = lab.agent(&[
        "policy",
        "import",
        policy("fqdn-github.yaml").to_str().unwrap_or_default(),
    ])?;
    assert!(out.contains("Revision: 2"), "{out}");
    assert!(!out.contains("not enforced"), "{out}");
    let got = lab.agent(&["policy", "get"])?;
    assert!(
        got.contains("toFQDNs") && got.contains("api.github.com"),
        "{got}"
    );
    eventually(Duration::from_secs(20), || {
        let list = lab.agent(&["endpoint", "list"])?;
        Ok((list.contains(":egress:UDP:53 =>") && !list.contains("regenerating")).then_some(()))
    })?;

    // The first connection after the lookup (curl resolves, then connects at once).
    let (out, code) = curl(&lab, "xwing", "api.github.com", &[])?;
    assert_eq!(
        (out.as_str(), code),
        ("api.github.com\n", 0),
        "the first connection right after the lookup"
    );
    // Not one packet to api.github.com was dropped: the first SYN was already
    // allowed (a retransmitted SYN would have let curl succeed all the same).
    let dropped = lab.observe(&[
        "--to-ip",
        GITHUB_V4,
        "--to-ip",
        GITHUB_V6,
        "--verdict",
        "DROPPED",
        "--last",
        "100",
    ])?;
    assert!(dropped.trim().is_empty(), "{dropped}");
    let allowed = lab.observe(&["--to-ip", GITHUB_V4, "--to-ip", GITHUB_V6, "--last", "100"])?;
    assert!(
        allowed
            .lines()
            .any(|l| l.contains("EGRESS ALLOWED") && l.contains("SYN")),
        "{allowed}"
    );
    // Over IPv6 too (the AAAA answer's address).
    let (out, code) = curl(&lab, "xwing", "api.github.com", &["-6"])?;
    assert_eq!((out.as_str(), code), ("api.github.com\n", 0), "over IPv6");

    // cilium.io resolves (every name may be looked up) but is dropped by policy.
    let (out, code) = curl(&lab, "xwing", "cilium.io", &["-4"])?;
    assert!(code != 0 && out.is_empty(), "{code} {out}");
    observe_until(
        &lab,
        &[
            "--from-pod",
            "default/xwing",
            "--verdict",
            "DROPPED",
            "--last",
            "100",
        ],
        &[&format!("{CILIUM_V4}:443"), "Policy denied DROPPED"],
    )?;

    // `--to-fqdn` finds the connection's flows, which carry the name.
    let flows = lab.observe_json(&["--to-fqdn", "api.github.com", "--last", "200"])?;
    let to_443: Vec<&Value> = flows
        .iter()
        .filter(|v| v["flow"]["l4"]["TCP"]["destination_port"] == 443)
        .collect();
    ensure!(
        !to_443.is_empty(),
        "no flow to api.github.com:443: {flows:?}"
    );
    for flow in &to_443 {
        assert_eq!(
            flow["flow"]["destination_names"][0], "api.github.com",
            "{flow}"
        );
        let verdict = flow["flow"]["verdict"].as_str().unwrap_or_default();
        assert_ne!(verdict, "DROPPED", "{flow}");
    }
    let destinations: Vec<&str> = to_443
        .iter()
        .filter_map(|v| v["flow"]["IP"]["destination"].as_str())
        .collect();
    assert!(destinations.contains(&GITHUB_V4), "{destinations:?}");
    assert!(destinations.contains(&GITHUB_V6), "{destinations:?}");
    // The address has a CIDR identity of the world, not a cluster one.
    let labels = to_443[0]["flow"]["destination"]["labels"].to_string();
    assert!(
        labels.contains("cidr:") && labels.contains("reserved:world"),
        "{labels}"
    );

    // The DNS flows: A and AAAA answers, NXDOMAIN (a name nobody serves) and a CNAME.
    let (_, code) = exec(&lab, "xwing", &["getent", "ahostsv4", "nowhere.example."])?;
    assert_ne!(code, 0);
    let (out, code) = exec(&lab, "xwing", &["getent", "ahostsv4", "www.cilium.io."])?;
    assert!(code == 0 && out.contains(CILIUM_V4), "{code} {out}");
    let dns = observe_until(
        &lab,
        &["--type", "l7", "--protocol", "dns", "--last", "1000"],
        &["CNAMEs: \"cilium.io.\"", "(Proxy www.cilium.io. A)"],
    )?;
    for wanted in [
        "dns-request proxy FORWARDED (DNS Query api.github.com. A)",
        &format!("dns-response proxy FORWARDED (DNS Answer \"{GITHUB_V4}\" TTL: 30 (Proxy api.github.com. A))"),
        &format!("dns-response proxy FORWARDED (DNS Answer \"{GITHUB_V6}\" TTL: 30 (Proxy api.github.com. AAAA))"),
        &format!("(DNS Answer \"{CILIUM_V4}\" CNAMEs: \"cilium.io.\" TTL: 30 (Proxy www.cilium.io. A))"),
    ] {
        assert!(dns.contains(wanted), "missing {wanted:?} in\n{dns}");
    }
    assert!(
        dns.lines().any(|l| l
            .contains("dns-response proxy FORWARDED (DNS Answer RCode: Non-Existent Domain TTL: ")
            && l.contains("(Proxy nowhere.example. A))")),
        "no NXDOMAIN answer in\n{dns}"
    );

    // A lookup over TCP (the resolver's `use-vc`) shows as TCP, one over UDP as UDP.
    let (out, code) = exec(
        &lab,
        "xwing",
        &[
            "env",
            "RES_OPTIONS=use-vc",
            "getent",
            "ahostsv4",
            "api.github.com.",
        ],
    )?;
    assert!(code == 0 && out.contains(GITHUB_V4), "{code} {out}");
    let transports = eventually(Duration::from_secs(15), || {
        let flows = lab.observe_json(&[
            "--type",
            "l7",
            "--protocol",
            "dns",
            "--from-pod",
            "default/xwing",
            "--last",
            "200",
        ])?;
        let requests: Vec<&Value> = flows
            .iter()
            .filter(|v| v["flow"]["l7"]["dns"]["query"] == "api.github.com.")
            .filter(|v| v["flow"]["l7"]["type"] == "REQUEST")
            .collect();
        let tcp = requests
            .iter()
            .any(|v| v["flow"]["l4"]["TCP"]["destination_port"] == 53);
        let udp = requests
            .iter()
            .any(|v| v["flow"]["l4"]["UDP"]["destination_port"] == 53);
        Ok((tcp && udp).then_some(()))
    });
    ensure!(
        transports.is_ok(),
        "no DNS request flow over TCP and over UDP"
    );

    // A name with too many addresses for one UDP answer: the server answers over UDP
    // truncated (TC, no records), the resolver asks again over TCP and gets them all;
    // both answers pass the proxy and show as flows.
    let (out, code) = exec(
        &lab,
        "xwing",
        &["getent", "ahostsv4", "releases.cilium.io."],
    )?;
    let pool: std::collections::BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(code == 0 && pool.len() == 40, "{code} {out}");
    let answers = eventually(Duration::from_secs(15), || {
        let flows = lab.observe_json(&[
            "--type",
            "l7",
            "--protocol",
            "dns",
            "--to-pod",
            "default/xwing",
            "--last",
            "200",
        ])?;
        let responses: Vec<(bool, usize)> = flows
            .iter()
            .filter(|v| v["flow"]["l7"]["dns"]["query"] == "releases.cilium.io.")
            .filter(|v| v["flow"]["l7"]["type"] == "RESPONSE")
            .map(|v| {
                let tcp = v["flow"]["l4"]["TCP"]["source_port"] == 53;
                let ips = v["flow"]["l7"]["dns"]["ips"].as_array().map_or(0, Vec::len);
                (tcp, ips)
            })
            .collect();
        Ok(
            (responses.contains(&(false, 0)) && responses.contains(&(true, 40)))
                .then_some(responses),
        )
    });
    ensure!(
        answers.is_ok(),
        "no truncated UDP answer and whole TCP answer for releases.cilium.io"
    );
    let cache = lab.agent(&["fqdn", "cache", "list"])?;
    assert!(
        cache.contains("releases.cilium.io.") && cache.contains("203.0.113.139"),
        "{cache}"
    );

    // A name a DNS rule does not allow: dns-visibility.yaml lets the tiefighter ask
    // only for cluster names.
    let out = lab.agent(&[
        "policy",
        "import",
        policy("dns-visibility.yaml").to_str().unwrap_or_default(),
    ])?;
    assert!(out.contains("Revision: 3"), "{out}");
    let lab_bin = bin("hubble-lab")?;
    let refused = eventually(Duration::from_secs(20), || {
        let (out, _) = exec(
            &lab,
            "tiefighter",
            &[
                lab_bin.to_str().unwrap_or_default(),
                "request",
                "dns",
                "--server",
                "10.96.0.10:53",
                "--name",
                "api.github.com.",
            ],
        )?;
        Ok(out.contains("\"rcode\":5").then_some(out))
    })?;
    assert!(refused.contains("\"addresses\":[]"), "{refused}");
    observe_until(
        &lab,
        &[
            "--type",
            "l7",
            "--protocol",
            "dns",
            "--verdict",
            "DROPPED",
            "--last",
            "100",
        ],
        &[
            "default/tiefighter",
            "dns-request proxy DROPPED (DNS Query api.github.com. A)",
        ],
    )?;

    // Restart: a fresh lookup (saved with the state within a second), then the agent
    // is killed. Meanwhile the pinned datapath keeps allowing the address; the
    // restarted agent restores the names and programs the same identities.
    let (out, code) = exec(&lab, "xwing", &["getent", "ahostsv4", "api.github.com."])?;
    assert!(code == 0 && out.contains(GITHUB_V4), "{code} {out}");
    std::thread::sleep(Duration::from_millis(2500));
    let before = lab.agent(&["fqdn", "cache", "list"])?;
    assert!(before.contains("api.github.com."), "{before}");
    let mut stop = lab.cmd();
    stop.args(["stop", "agent", "--node", "1", "--kill"]);
    let out = run_with_timeout(&mut stop, Duration::from_secs(30))?;
    ensure!(out.status.success(), "stopping the agent: {out:?}");
    let (out, code) = curl(&lab, "xwing", GITHUB_V4, &[])?;
    assert_eq!(
        (out.as_str(), code),
        ("api.github.com\n", 0),
        "allowed while the agent is down"
    );
    let mut start = lab.cmd();
    start.args(["start", "agent", "--node", "1"]);
    let out = run_with_timeout(&mut start, Duration::from_secs(60))?;
    ensure!(out.status.success(), "starting the agent: {out:?}");
    let after = lab.agent(&["fqdn", "cache", "list"])?;
    assert!(after.contains("api.github.com."), "{after}");
    // By address, without a new lookup: still allowed, still named.
    let (out, code) = curl(&lab, "xwing", GITHUB_V4, &[])?;
    assert_eq!(
        (out.as_str(), code),
        ("api.github.com\n", 0),
        "after the restart"
    );
    let named = eventually(Duration::from_secs(15), || {
        let flows = lab.observe_json(&["--to-fqdn", "api.github.com", "--last", "50"])?;
        Ok(flows
            .into_iter()
            .find(|v| {
                v["flow"]["destination_names"][0] == "api.github.com"
                    && v["flow"]["l4"]["TCP"]["destination_port"] == 443
            })
            .map(|_| ()))
    });
    ensure!(named.is_ok(), "no named flow after the restart");
    // And by name, through the restarted DNS proxy; cilium.io stays dropped.
    let (out, code) = curl(&lab, "xwing", "api.github.com", &[])?;
    assert_eq!(
        (out.as_str(), code),
        ("api.github.com\n", 0),
        "by name after the restart"
    );
    let (out, code) = curl(&lab, "xwing", "cilium.io", &["-4"])?;
    assert!(code != 0 && out.is_empty(), "{code} {out}");
    let dns = dns_flows(&lab)?;
    assert!(dns.contains("(Proxy api.github.com. A)"), "{dns}");
    Ok(())
}
