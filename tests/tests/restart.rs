//! A node's agent crashes and comes back: its pinned datapath keeps enforcing `rule1`
//! while it is down, and it restarts with the same policy revision, endpoints and
//! identity numbers. A corrupt state file stops the restart, naming the file, while the
//! datapath still enforces. `hubble-agent cleanup` then removes the pins (the programs
//! detach) and, unless told to keep it, the state. Needs root; prints a SKIP line
//! otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tests::{bin, eventually, require_root, run_with_timeout, Lab, COMMAND_TIMEOUT};

fn rule1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/rule1.yaml")
}

/// What `hubble-lab traffic` printed for each ship's landing request.
struct Landing {
    tiefighter: String,
    xwing: String,
}

fn landing(lab: &Lab) -> Result<Landing> {
    let out = lab.traffic()?;
    let line = |ship: &str| {
        out.lines()
            .find(|l| l.starts_with(ship) && l.contains("request-landing"))
            .map(str::to_string)
            .with_context(|| format!("no landing line for {ship} in:\n{out}"))
    };
    Ok(Landing {
        tiefighter: line("tiefighter")?,
        xwing: line("xwing")?,
    })
}

/// rule1 in force: tiefighter lands, xwing's SYN is dropped (its request times out).
fn assert_enforced(lab: &Lab, when: &str) -> Result<()> {
    let seen = landing(lab)?;
    ensure!(
        seen.tiefighter.contains("Ship landed"),
        "{when}: tiefighter should land: {}",
        seen.tiefighter
    );
    ensure!(
        seen.xwing.contains("timed out"),
        "{when}: xwing should be denied by rule1: {}",
        seen.xwing
    );
    Ok(())
}

/// `hubble-lab stop|start agent --node 1 [--kill]`; returns the command's output.
fn lab_agent(lab: &Lab, args: &[&str]) -> Result<std::process::Output> {
    let mut cmd = lab.cmd();
    cmd.args(args).args(["agent", "--node", "1"]);
    run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
}

/// Waits until `endpoint list` prints exactly `expected` (the same ids, identities and
/// enforcement, and `ready` once the restarted agent has synced its datapath).
fn same_endpoints(lab: &Lab, expected: &str) -> Result<()> {
    let mut last = String::new();
    eventually(Duration::from_secs(30), || {
        last = lab.agent(&["endpoint", "list"])?;
        Ok((last == expected).then_some(()))
    })
    .with_context(|| format!("endpoints before:\n{expected}\nafter:\n{last}"))
}

fn agent_is_down(lab: &Lab) -> bool {
    std::os::unix::net::UnixStream::connect(lab.admin()).is_err()
}

#[test]
fn a_killed_agent_keeps_enforcing_and_restarts_with_its_state() -> Result<()> {
    if !require_root("a_killed_agent_keeps_enforcing_and_restarts_with_its_state") {
        return Ok(());
    }
    let lab = Lab::up("rs", "10.111.0.0/24")?;
    lab.wait_until_programmed()?;

    let out = lab.agent(&["policy", "import", rule1().to_str().unwrap_or_default()])?;
    assert!(out.contains("Revision: 2"), "{out}");
    eventually(Duration::from_secs(10), || {
        Ok(assert_enforced(&lab, "after the import").ok())
    })?;
    let endpoints = lab.agent(&["endpoint", "list"])?;
    let identities = lab.agent(&["identity", "list"])?;
    assert!(endpoints.contains("Enabled"), "{endpoints}");

    // 1. SIGKILL: no chance to clean up. The datapath stays in force while no agent runs.
    let out = lab_agent(&lab, &["stop", "--kill"])?;
    assert!(out.status.success(), "{out:?}");
    eventually(Duration::from_secs(5), || {
        Ok(agent_is_down(&lab).then_some(()))
    })
    .context("the killed agent still answers")?;
    assert_enforced(&lab, "while the agent is down")?;
    assert_enforced(&lab, "while the agent is down, again")?;
    assert!(agent_is_down(&lab), "the agent came back on its own");

    // 2. Back with the same policy, endpoints and identity numbers, still enforcing.
    let out = lab_agent(&lab, &["start"])?;
    assert!(out.status.success(), "{out:?}");
    let policy = lab.agent(&["policy", "get"])?;
    assert!(policy.contains("Revision: 2"), "{policy}");
    assert!(policy.contains("\"fromEndpoints\""), "{policy}");
    same_endpoints(&lab, &endpoints)?;
    assert_eq!(lab.agent(&["identity", "list"])?, identities);
    assert_enforced(&lab, "after the restart")?;

    // 3. A corrupt state file: the agent names it and refuses to start; the pinned
    // datapath still enforces rule1 meanwhile. Repaired, the agent starts as before.
    let out = lab_agent(&lab, &["stop"])?;
    assert!(out.status.success(), "{out:?}");
    let state_file = lab.run_dir.join("node1/state/state.json");
    let saved = std::fs::read(&state_file).context("reading the state file")?;
    std::fs::write(&state_file, &saved[..saved.len() / 2])?;
    let log = lab.run_dir.join("node1/agent.log");
    let log_before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let out = lab_agent(&lab, &["start"])?;
    assert!(
        !out.status.success(),
        "the agent started on a corrupt state file: {out:?}"
    );
    let written = std::fs::read_to_string(&log)?;
    let written = written.get(log_before..).unwrap_or_default();
    let expected = format!("state file {} is corrupt: ", state_file.display());
    assert!(written.contains(&expected), "{written}");
    assert!(written.contains("--discard-corrupt-state"), "{written}");
    assert!(agent_is_down(&lab));
    assert_enforced(&lab, "while the agent refuses a corrupt state file")?;

    std::fs::write(&state_file, &saved)?;
    let out = lab_agent(&lab, &["start"])?;
    assert!(out.status.success(), "{out:?}");
    let policy = lab.agent(&["policy", "get"])?;
    assert!(policy.contains("Revision: 2"), "{policy}");
    same_endpoints(&lab, &endpoints)?;
    assert_enforced(&lab, "after the repaired restart")?;

    // 4. `hubble-agent cleanup` with the agent stopped: the pins go, so the tc and socket
    // programs detach (xwing reaches a deathstar pod again, and nothing translates the
    // service's cluster IP any more); `--keep-state` keeps the state file, a second
    // run without it removes it.
    let out = lab_agent(&lab, &["stop"])?;
    assert!(out.status.success(), "{out:?}");
    let pins = lab.run_dir.join("bpffs/node1");
    let state_dir = lab.run_dir.join("node1/state");
    assert!(
        pins.join("links").exists(),
        "no pinned links in {}",
        pins.display()
    );
    let cleanup = |extra: &[&str]| -> Result<std::process::Output> {
        let mut cmd = std::process::Command::new(bin("hubble-agent")?);
        cmd.args(["cleanup", "--node-name", "node1", "--bpf-pin-dir"])
            .arg(&pins)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(extra);
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
    };
    let out = cleanup(&["--keep-state"])?;
    assert!(out.status.success(), "{out:?}");
    assert!(!pins.exists(), "{} is still there", pins.display());
    assert!(
        state_file.exists(),
        "--keep-state removed {}",
        state_file.display()
    );
    let deathstar = deathstar_1_address(&lab)?;
    let curl = |url: &str| -> Result<std::process::Output> {
        let mut cmd = lab.cmd();
        cmd.args([
            "exec",
            "xwing",
            "--",
            "curl",
            "-s",
            "--max-time",
            "3",
            "-XPOST",
            url,
        ]);
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
    };
    let mut last = String::new();
    eventually(Duration::from_secs(10), || {
        let out = curl(&format!("http://{deathstar}/v1/request-landing"))?;
        last = format!("{out:?}");
        Ok(String::from_utf8_lossy(&out.stdout)
            .contains("Ship landed")
            .then_some(()))
    })
    .with_context(|| format!("xwing should land once the programs are gone: {last}"))?;
    // The socket programs' links are released when their pins' inodes go, which the
    // kernel may finish a moment after the tc links: wait for the cluster IP to stop
    // answering rather than probe it once.
    let mut last = String::new();
    eventually(Duration::from_secs(10), || {
        let out = curl("http://10.96.60.53/v1/request-landing")?;
        last = format!("{out:?}");
        Ok((!out.status.success()).then_some(()))
    })
    .with_context(|| format!("the cluster IP still answers after cleanup: {last}"))?;
    let out = cleanup(&[])?;
    assert!(out.status.success(), "{out:?}");
    assert!(
        !state_file.exists(),
        "{} is still there",
        state_file.display()
    );
    Ok(())
}

/// deathstar-1's pod address, from its endpoint file.
fn deathstar_1_address(lab: &Lab) -> Result<String> {
    let path = lab.run_dir.join("node1/endpoints/default_deathstar-1.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("ipv4: "))
        .map(str::to_string)
        .with_context(|| format!("no ipv4 in {}:\n{text}", path.display()))
}
