//! README command 1 as a test: `scripts/demo.sh` end to end, with the binaries of this
//! build (no nested build), nothing on PATH but the system's, and a lab of its own
//! (run dir, prefix, node subnet, relay port). Checks what a user sees: both ships land,
//! then rule1 stops the xwing (`Policy denied DROPPED`) with `policy-verdict` lines,
//! then rule1's L7 part answers the exhaust port `Access denied` (`http-request
//! DROPPED`, `monitor -v --type l7`).
//! Needs root; prints a SKIP line otherwise.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tests::{bin_dir, require_root, run_with_timeout, Lab};

/// PATH of a fresh root shell on Debian.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The text from the first `from` up to the next `to` after it.
fn section<'a>(output: &'a str, from: &str, to: &str) -> Result<&'a str> {
    let start = output
        .find(from)
        .with_context(|| format!("no {from:?} in the demo's output:\n{output}"))?;
    let rest = &output[start..];
    let end = rest[from.len()..]
        .find(to)
        .map_or(rest.len(), |end| end + from.len());
    Ok(&rest[..end])
}

#[test]
fn the_demo_script_runs_to_the_end() -> Result<()> {
    if !require_root("the_demo_script_runs_to_the_end") {
        return Ok(());
    }
    // Removed on drop (hubble-lab down), also when an assertion fails.
    let lab = Lab::reserve("dm", "10.106.0.0/24")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    let mut demo = Command::new("bash");
    demo.arg(&script)
        .env("PATH", SYSTEM_PATH)
        .env("HUBBLE_DEMO_BIN_DIR", bin_dir())
        .envs(lab.env());
    let out = run_with_timeout(&mut demo, Duration::from_secs(300))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "scripts/demo.sh failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }

    let before = section(&stdout, "== Without policy", "== Importing rule1")?;
    assert_eq!(
        before.matches("\nShip landed\n").count(),
        2,
        "both ships land before the policy:\n{stdout}"
    );
    assert!(
        before.contains("default/xwing:") && before.contains("FORWARDED (TCP Flags: SYN)"),
        "{before}"
    );

    let after = section(&stdout, "== Importing rule1", "== rule1 with its L7 part")?;
    let ships = section(after, "$ hubble-lab exec tiefighter", "$ hubble observe")?;
    assert_eq!(ships.matches("\nShip landed\n").count(), 1, "{ships}");
    assert!(
        ships.contains("command terminated with exit code 28"),
        "the xwing's curl times out:\n{ships}"
    );
    let dropped = section(after, "$ hubble observe", "$ hubble observe --server")?;
    assert!(
        dropped.contains("--from-pod default/xwing --verdict DROPPED"),
        "{dropped}"
    );
    assert!(
        dropped.lines().any(|l| l.contains("default/xwing:")
            && l.contains("Policy denied DROPPED (TCP Flags: SYN)")),
        "{dropped}"
    );
    assert!(
        after.contains("policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)"),
        "tiefighter's verdict:\n{after}"
    );
    assert!(
        after.lines().any(|l| l.contains("default/xwing:")
            && l.contains("policy-verdict:none INGRESS DENIED (TCP Flags: SYN)")),
        "xwing's verdict:\n{after}"
    );
    assert!(after.contains("Connected Nodes: 1/1"), "{after}");

    // The seed's L7 step: the landing passes the proxy, the exhaust port is refused.
    let l7 = section(&stdout, "== rule1 with its L7 part", "Where to look")?;
    assert!(l7.contains("\nShip landed\n"), "{l7}");
    assert!(l7.contains("\nAccess denied\r\n"), "{l7}");
    assert!(
        l7.lines().any(|l| l.contains("default/tiefighter:")
            && l.contains("http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)")),
        "{l7}"
    );
    assert!(
        l7.lines().any(|l| l.starts_with("<- Request http from ")
            && l.contains("verdict Denied PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port => 0")),
        "{l7}"
    );
    assert!(
        l7.lines().any(|l| l.starts_with("<- Response http to ")
            && l.contains("verdict Forwarded PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port => 403")),
        "{l7}"
    );

    // The agent exported the same flows to its rotated file.
    let export = std::fs::read_to_string(lab.run_dir.join("node1/events.log"))
        .context("reading the node's flow export")?;
    assert!(
        export.contains("\"POLICY_DENIED\""),
        "no drop in the export"
    );
    Ok(())
}
