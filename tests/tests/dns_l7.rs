//! DNS visibility on the lab: `examples/policies/dns-visibility.yaml` sends every
//! lookup of the xwing and the tiefighter through the agent's DNS proxy. Names in
//! the cluster still resolve over UDP and TCP (and the ships still reach the
//! deathstar by name), each lookup shows as a `dns-request` / `dns-response` L7
//! flow, the answer lands in the FQDN cache, the dns metrics count it, and a name
//! the policy does not allow is answered REFUSED with a `dns-request DROPPED` flow.
//! Needs root; prints a SKIP line otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use tests::{eventually, require_root, run_with_timeout, Lab};

const DEATHSTAR: &str = "deathstar.default.svc.cluster.local";

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/policies/{name}"))
}

/// `getent ahostsv4 name` (A queries through the pod's resolv.conf) in `pod`, over
/// TCP when `tcp` (the resolver's `use-vc` option): (stdout, exit code).
fn lookup(lab: &Lab, pod: &str, name: &str, tcp: bool) -> Result<(String, i32)> {
    let options = format!("RES_OPTIONS={}", if tcp { "use-vc" } else { "" });
    let mut cmd = lab.cmd();
    cmd.args([
        "exec", pod, "--", "env", &options, "getent", "ahostsv4", name,
    ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30))?;
    Ok((
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code().unwrap_or(-1),
    ))
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

#[test]
fn dns_lookups_through_the_dns_proxy() -> Result<()> {
    if !require_root("dns_lookups_through_the_dns_proxy") {
        return Ok(());
    }
    let lab = Lab::up("dn", "10.137.0.0/24")?;
    lab.wait_until_programmed()?;

    let out = lab.agent(&[
        "policy",
        "import",
        policy("dns-visibility.yaml").to_str().unwrap_or_default(),
    ])?;
    assert!(out.contains("Revision: 2"), "{out}");
    assert!(!out.contains("not enforced"), "{out}");
    let list = eventually(Duration::from_secs(20), || {
        let list = lab.agent(&["endpoint", "list"])?;
        Ok((list.contains(":egress:UDP:53 =>") && !list.contains("regenerating")).then_some(list))
    })?;
    assert!(list.contains(":egress:TCP:53 =>"), "{list}");

    // The lookup still resolves, now through the proxy.
    let (out, _) = eventually(Duration::from_secs(20), || {
        let (out, code) = lookup(&lab, "xwing", DEATHSTAR, false)?;
        Ok((code == 0 && out.contains("10.96.60.53")).then_some((out, code)))
    })?;
    assert!(out.contains(DEATHSTAR), "{out}");
    let l7 = eventually(Duration::from_secs(10), || {
        let out = lab.observe(&[
            "--type",
            "l7",
            "--protocol",
            "dns",
            "--pod",
            "default/xwing",
            "--last",
            "50",
        ])?;
        Ok(out.contains("dns-response proxy FORWARDED").then_some(out))
    })?;
    assert!(
        l7.contains(&format!(
            "dns-request proxy FORWARDED (DNS Query {DEATHSTAR}. A)"
        )),
        "{l7}"
    );
    assert!(
        l7.contains("dns-response proxy FORWARDED (DNS Answer \"10.96.60.53\" TTL: ")
            && l7.contains(&format!("(Proxy {DEATHSTAR}. A))")),
        "{l7}"
    );
    // Over TCP the same: one more answer through the proxy.
    let answers = |out: &str| {
        out.lines()
            .filter(|l| l.contains("dns-response proxy FORWARDED (DNS Answer \"10.96.60.53\""))
            .count()
    };
    let before = answers(&lab.observe(&["--type", "l7", "--protocol", "dns", "--last", "1000"])?);
    let (out, code) = lookup(&lab, "tiefighter", DEATHSTAR, true)?;
    assert!(code == 0 && out.contains("10.96.60.53"), "{code} {out}");
    eventually(Duration::from_secs(10), || {
        let out = lab.observe(&["--type", "l7", "--protocol", "dns", "--last", "1000"])?;
        Ok((answers(&out) > before).then_some(()))
    })?;
    let cache = lab.agent(&["fqdn", "cache", "list"])?;
    assert!(cache.contains(&format!("{DEATHSTAR}.")), "{cache}");
    assert!(cache.contains("10.96.60.53"), "{cache}");

    // The ship still reaches the deathstar by name.
    let mut curl = lab.cmd();
    curl.args([
        "exec",
        "tiefighter",
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        "-X",
        "POST",
        &format!("{DEATHSTAR}/v1/request-landing"),
    ]);
    let out = run_with_timeout(&mut curl, Duration::from_secs(30))?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Ship landed\n");

    // A name outside the policy: REFUSED by the proxy, recorded as DROPPED.
    let (out, code) = lookup(&lab, "xwing", "empire.example.", false)?;
    assert!(code != 0 && out.is_empty(), "{code} {out}");
    let dropped = eventually(Duration::from_secs(10), || {
        let out = lab.observe(&[
            "--type",
            "l7",
            "--protocol",
            "dns",
            "--verdict",
            "DROPPED",
            "--last",
            "20",
        ])?;
        Ok(out.contains("dns-request proxy DROPPED").then_some(out))
    })?;
    assert!(
        dropped.contains("dns-request proxy DROPPED (DNS Query empire.example. A)"),
        "{dropped}"
    );

    // The upstream CLI prints the same DNS lines through the relay, in every format.
    for output in ["compact", "dict", "json", "table"] {
        let args = [
            "--type",
            "l7",
            "--protocol",
            "dns",
            "--last",
            "30",
            "-o",
            output,
        ];
        match lab.compare_with_upstream(&args)? {
            Some(out) => assert!(out.contains("empire.example."), "{out}"),
            None => {
                println!("upstream comparison not run: HUBBLE_UPSTREAM is not set");
                break;
            }
        }
    }

    // The dns metrics (enabled by the agent's default metrics) count the lookups.
    let scrape = http_get("10.137.0.11:9965", "/metrics")?;
    ensure!(
        scrape
            .lines()
            .any(|l| l.starts_with("hubble_dns_queries_total{") && l.contains("qtypes=\"A\"")),
        "no A queries in hubble_dns_queries_total:\n{scrape}"
    );
    Ok(())
}
