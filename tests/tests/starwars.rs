//! The Star Wars story of the seeds, on the real kernel datapath: pods in network
//! namespaces, `hubble-agent` with its eBPF programs, `rule1`, and what `hubble observe`
//! shows. Needs root; prints a SKIP line otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tests::{eventually, require_root, Lab};

fn rule1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/rule1.yaml")
}

/// A plain HTTP/1.0 GET, enough for a metrics scrape.
fn http_get(address: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = address.parse()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[test]
fn star_wars_story_on_the_kernel_datapath() -> Result<()> {
    if !require_root("star_wars_story_on_the_kernel_datapath") {
        return Ok(());
    }
    let lab = Lab::up("sw", "10.101.0.0/24")?;

    // 1. No policy: both ships land, flows are FORWARDED with trace points. The agent
    // programs its endpoints asynchronously after `up` (identities come from etcd), so
    // traffic is repeated until it is seen at both endpoints.
    let xwing = lab.wait_until_programmed()?;
    for v in &xwing {
        let f = &v["flow"];
        assert_eq!(f["verdict"], "FORWARDED", "{f}");
        assert_eq!(
            field(f, "destination.pod_name")
                .as_str()
                .map(|p| p.starts_with("deathstar")),
            Some(true)
        );
    }
    let points: Vec<&str> = xwing
        .iter()
        .filter_map(|v| v["flow"]["trace_observation_point"].as_str())
        .collect();
    assert!(
        points.contains(&"TO_ENDPOINT") && points.contains(&"FROM_ENDPOINT"),
        "{points:?}"
    );

    // -o json carries what upstream puts there.
    let f = &xwing[xwing.len() - 1]["flow"];
    for key in [
        "time",
        "uuid",
        "IP",
        "l4",
        "source",
        "destination",
        "Type",
        "node_name",
        "event_type",
        "traffic_direction",
        "trace_observation_point",
        "is_reply",
        "Summary",
        "interface",
    ] {
        assert!(!f[key].is_null(), "missing {key} in {f}");
    }
    assert_eq!(field(f, "source.pod_name"), "xwing");
    assert_eq!(field(f, "source.namespace"), "default");
    assert!(field(f, "source.identity")
        .as_u64()
        .is_some_and(|id| id >= 256));
    assert!(field(f, "source.labels")
        .to_string()
        .contains("k8s:org=alliance"));

    // 2. rule1: xwing's SYNs are dropped by policy, tiefighter still lands.
    let out = lab.agent(&["policy", "import", rule1().to_str().unwrap_or_default()])?;
    assert!(out.contains("Revision: 2"), "{out}");
    let list = lab.agent(&["endpoint", "list"])?;
    assert!(list.contains("Enabled"), "{list}");
    let out = eventually(Duration::from_secs(10), || {
        let out = lab.traffic()?;
        Ok((out.contains("Ship landed") && out.contains("timed out")).then_some(out))
    })?;
    assert_eq!(out.matches("Ship landed").count(), 1, "{out}");

    let dropped = lab.observe(&[
        "--from-pod",
        "default/xwing",
        "--verdict",
        "DROPPED",
        "--type",
        "drop",
        "--last",
        "5",
    ])?;
    assert!(
        dropped.contains("Policy denied DROPPED (TCP Flags: SYN)"),
        "{dropped}"
    );
    assert!(
        dropped.contains("default/xwing:") && dropped.contains("<> default/deathstar"),
        "{dropped}"
    );
    let drops = lab.observe_json(&[
        "--from-pod",
        "default/xwing",
        "--verdict",
        "DROPPED",
        "--type",
        "drop",
        "--last",
        "1",
    ])?;
    assert_eq!(drops[0]["flow"]["drop_reason_desc"], "POLICY_DENIED");
    assert_eq!(drops[0]["flow"]["traffic_direction"], "INGRESS");

    let tiefighter = lab.observe_json(&[
        "--from-pod",
        "default/tiefighter",
        "--to-port",
        "80",
        "--verdict",
        "FORWARDED",
        "--last",
        "5",
    ])?;
    assert!(!tiefighter.is_empty());

    // Policy verdicts: L3-L4 allowed for tiefighter, denied for xwing.
    let verdicts = lab.observe_json(&[
        "--type",
        "policy-verdict",
        "--protocol",
        "tcp",
        "--last",
        "50",
    ])?;
    let allowed = verdicts
        .iter()
        .find(|v| field(&v["flow"], "source.pod_name") == "tiefighter");
    let allowed = allowed.context("no policy verdict for tiefighter")?;
    assert_eq!(allowed["flow"]["policy_match_type"], 2, "{allowed}");
    assert_eq!(allowed["flow"]["verdict"], "FORWARDED");
    let denied = verdicts
        .iter()
        .find(|v| field(&v["flow"], "source.pod_name") == "xwing");
    assert_eq!(
        denied.context("no policy verdict for xwing")?["flow"]["verdict"],
        "DROPPED"
    );

    let compact = lab.observe(&[
        "--type",
        "policy-verdict",
        "--protocol",
        "tcp",
        "--last",
        "50",
    ])?;
    assert!(
        compact.contains("policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)"),
        "{compact}"
    );
    assert!(
        compact.contains("policy-verdict:none INGRESS DENIED (TCP Flags: SYN)"),
        "{compact}"
    );

    // The node's metrics count the drops by reason and the verdicts by match.
    let scrape = http_get("10.101.0.11:9965", "/metrics")?;
    assert!(
        scrape.contains(r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"}"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(
            r#"hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l3-l4"}"#
        ),
        "{scrape}"
    );

    // Replies of allowed connections pass through conntrack.
    let replies = lab.observe_json(&[
        "--to-pod",
        "default/tiefighter",
        "--from-port",
        "80",
        "--last",
        "20",
    ])?;
    assert!(replies
        .iter()
        .any(|v| v["flow"]["is_reply"] == true && v["flow"]["verdict"] == "FORWARDED"));

    // 3. Deleting the policy restores access.
    lab.agent(&["policy", "delete", "--all"])?;
    eventually(Duration::from_secs(10), || {
        let out = lab.traffic()?;
        Ok((out.matches("Ship landed").count() == 2).then_some(()))
    })?;

    // 4. ICMP and UDP flows appear.
    let icmp = lab.observe(&["--protocol", "icmp", "--last", "5"])?;
    assert!(icmp.contains("ICMPv4 EchoRequest"), "{icmp}");
    let udp = lab.observe(&["--protocol", "udp", "--to-port", "53", "--last", "5"])?;
    assert!(udp.contains("kube-system/coredns:53"), "{udp}");
    Ok(())
}
