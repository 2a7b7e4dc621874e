//! End-to-end tests of `hubble-lab`: they create real network namespaces (root only),
//! each under its own run directory, name prefix and node subnet, and always remove
//! them again.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hubble-lab");

/// One isolated lab: its own run directory, name prefix and node subnet. Dropping it
/// runs `hubble-lab down`, so a failing test still cleans up.
struct TestLab {
    run_dir: PathBuf,
    prefix: String,
    subnet: String,
}

impl TestLab {
    /// Returns `None` (after printing a SKIP line; a failure under CI) when not root.
    fn new(tag: char, subnet_offset: u32) -> Option<TestLab> {
        if !tests::skip::require_root(
            &format!("hubble-lab test {tag}"),
            "network namespaces, veths",
        ) {
            return None;
        }
        let pid = std::process::id();
        let run_dir = std::env::temp_dir().join(format!("hubble-lab-test-{pid}-{tag}"));
        let _ = std::fs::remove_dir_all(&run_dir);
        Some(TestLab {
            run_dir,
            prefix: format!("ht{}{tag}-", pid % 100_000),
            subnet: format!("10.100.{}.0/24", 100 + (pid % 40) * 3 + subnet_offset),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("HUBBLE_LAB_RUN_DIR", &self.run_dir)
            .env("HUBBLE_LAB_PREFIX", &self.prefix);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("hubble-lab runs")
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "hubble-lab {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn up(&self, nodes: &str) -> String {
        self.run_ok(&[
            "up",
            "--no-agents",
            "--nodes",
            nodes,
            "--node-subnet",
            &self.subnet,
        ])
    }

    /// Runs `hubble-lab request ...` inside the namespace of `pod`.
    fn request_from(&self, pod: &str, args: &[&str]) -> String {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}{pod}", self.prefix),
                BIN,
                "request",
            ])
            .args(args)
            .output()
            .expect("ip netns exec runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Names of this lab's namespaces and root-namespace links that still exist.
    fn leftovers(&self) -> Vec<String> {
        let namespaces = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip");
        let links = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("ip");
        let mut found = Vec::new();
        for line in String::from_utf8_lossy(&namespaces.stdout).lines() {
            if line.starts_with(&self.prefix) {
                found.push(format!("netns {line}"));
            }
        }
        for line in String::from_utf8_lossy(&links.stdout).lines() {
            let name = line.split(": ").nth(1).unwrap_or_default();
            if name.starts_with(&self.prefix) {
                found.push(format!("link {name}"));
            }
        }
        found
    }

    fn down_and_check(&self) {
        self.run_ok(&["down"]);
        assert_eq!(self.leftovers(), Vec::<String>::new());
        assert!(!self.run_dir.exists(), "{} remains", self.run_dir.display());
        // Idempotent.
        let again = self.run_ok(&["down"]);
        assert!(again.contains("nothing to do"), "{again}");
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn line_with<'a>(output: &'a str, needles: &[&str]) -> &'a str {
    output
        .lines()
        .find(|line| needles.iter().all(|needle| line.contains(needle)))
        .unwrap_or_else(|| panic!("no line with {needles:?} in:\n{output}"))
}

#[test]
fn single_node_demo_answers_like_the_star_wars_demo() {
    let Some(lab) = TestLab::new('a', 0) else {
        return;
    };
    let summary = lab.up("1");
    assert!(summary.contains("demo is up"), "{summary}");

    let refused = lab.run(&["up", "--no-agents", "--node-subnet", &lab.subnet]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("run `hubble-lab down` first"), "{stderr}");

    let endpoint = lab.run_dir.join("node1/endpoints/default_xwing.yaml");
    let yaml = std::fs::read_to_string(&endpoint).expect("endpoint file");
    assert!(
        yaml.contains("org: alliance") && yaml.contains("ipv4: 10.200.1.13"),
        "{yaml}"
    );
    let nodes = std::fs::read_to_string(lab.run_dir.join("nodes.yaml")).expect("nodes file");
    assert!(nodes.contains("name: node1"), "{nodes}");

    let traffic = lab.run_ok(&["traffic"]);
    let landing = line_with(&traffic, &["tiefighter", "POST /v1/request-landing"]);
    assert!(landing.ends_with("Ship landed"), "{landing}");
    // No agent runs, so nothing enforces a policy: the xwing lands too.
    let xwing = line_with(&traffic, &["xwing", "POST /v1/request-landing"]);
    assert!(xwing.ends_with("Ship landed"), "{xwing}");
    let exhaust = line_with(&traffic, &["tiefighter", "PUT /v1/exhaust-port"]);
    assert!(
        exhaust.ends_with("HTTP 500: Panic: deathstar exploded"),
        "{exhaust}"
    );
    // The deathstar name lists both deathstars (no ClusterIP yet).
    let dns = line_with(&traffic, &["DNS A deathstar.default.svc.cluster.local"]);
    assert!(dns.ends_with(" 10.200.1.10, 10.200.1.11"), "{dns}");
    let unknown = line_with(&traffic, &["DNS A tatooine"]);
    assert!(unknown.ends_with("NXDOMAIN"), "{unknown}");
    let ping = line_with(&traffic, &["ICMP echo"]);
    assert!(
        ping.contains("reply") && !ping.contains("no reply"),
        "{ping}"
    );

    // IPv6 between pods of one node.
    let v6 = lab.request_from(
        "tiefighter",
        &[
            "http",
            "--method",
            "POST",
            "--url",
            "http://[fd00:200:1::11]/v1/request-landing",
        ],
    );
    assert!(v6.contains("Ship landed"), "{v6}");
    // Garbage sent to the DNS responder is ignored, and it still answers afterwards.
    let garbage = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}tiefighter", lab.prefix),
            "bash",
            "-c",
        ])
        .arg("echo not-dns > /dev/udp/10.200.1.14/53")
        .status()
        .expect("bash runs");
    assert!(garbage.success());
    let answer = lab.request_from(
        "xwing",
        &[
            "dns",
            "--server",
            "10.200.1.14:53",
            "--name",
            "deathstar.default.svc.cluster.local",
        ],
    );
    assert!(answer.contains("10.200.1.10"), "{answer}");
    let dns_log = std::fs::read_to_string(lab.run_dir.join("lab/coredns.log")).expect("log");
    assert!(dns_log.contains("ignored malformed query"), "{dns_log}");

    // Pod DNS and `exec`: the seeds' command, as written, from inside a pod.
    let resolv_conf = PathBuf::from(format!("/etc/netns/{}xwing/resolv.conf", lab.prefix));
    let text = std::fs::read_to_string(&resolv_conf).expect("pod resolv.conf");
    assert!(text.contains("nameserver 10.200.1.14"), "{text}");
    assert!(
        text.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{text}"
    );
    let landed = lab.run_ok(&[
        "exec",
        "xwing",
        "--",
        "curl",
        "-s",
        "-XPOST",
        "deathstar.default.svc.cluster.local/v1/request-landing",
    ]);
    assert_eq!(landed.trim(), "Ship landed");
    // Short names go through the search list; each pod has a name.
    let short = lab.run_ok(&["exec", "tiefighter", "--", "getent", "hosts", "xwing"]);
    assert!(short.contains("xwing.default.svc.cluster.local"), "{short}");
    let code = lab.run(&["exec", "default/xwing", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code.status.code(), Some(7));
    let missing = lab.run(&["exec", "ywing", "--", "true"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no pod \"ywing\"") && stderr.contains("default/xwing"),
        "{stderr}"
    );

    let status = lab.run_ok(&["status"]);
    assert!(
        status.contains("deathstar-1") && status.contains("alive"),
        "{status}"
    );
    lab.down_and_check();
    assert!(!resolv_conf.exists(), "{} remains", resolv_conf.display());
    assert!(!resolv_conf.parent().is_some_and(std::path::Path::exists));
}

#[test]
fn two_nodes_route_pod_traffic_between_nodes() {
    let Some(lab) = TestLab::new('b', 1) else {
        return;
    };
    lab.up("2");
    let state = std::fs::read_to_string(lab.run_dir.join("lab/state.json")).expect("state");
    let state: serde_json::Value = serde_json::from_str(&state).expect("json");
    let node_of = |pod: &str| {
        state["topology"]["pods"]
            .as_array()
            .and_then(|pods| pods.iter().find(|p| p["name"] == pod))
            .and_then(|p| p["node"].as_u64())
            .unwrap_or_else(|| panic!("pod {pod} in state"))
    };
    assert_eq!(node_of("tiefighter"), 1);
    assert_eq!(node_of("deathstar-1"), 1);
    assert_eq!(node_of("deathstar-2"), 2);
    assert_eq!(node_of("xwing"), 2);

    // tiefighter (node1) -> deathstar-2 (node2), over IPv4 and IPv6.
    let landed = lab.request_from(
        "tiefighter",
        &[
            "http",
            "--method",
            "POST",
            "--url",
            "http://10.200.2.11/v1/request-landing",
        ],
    );
    assert!(landed.contains("Ship landed"), "{landed}");
    let landed6 = lab.request_from(
        "tiefighter",
        &[
            "http",
            "--method",
            "POST",
            "--url",
            "http://[fd00:200:2::11]/v1/request-landing",
        ],
    );
    assert!(landed6.contains("Ship landed"), "{landed6}");
    // xwing (node2) -> coredns (node1).
    let answer = lab.request_from(
        "xwing",
        &[
            "dns",
            "--server",
            "10.200.1.14:53",
            "--name",
            "deathstar.default.svc.cluster.local",
        ],
    );
    assert!(answer.contains("10.200.1.10"), "{answer}");

    // The second round of traffic aims at deathstar-2 on node2.
    let traffic = lab.run_ok(&["traffic", "--count", "2"]);
    let second = line_with(
        &traffic,
        &["tiefighter", "deathstar-2", "POST /v1/request-landing"],
    );
    assert!(second.ends_with("Ship landed"), "{second}");
    lab.down_and_check();
}

#[test]
fn failed_up_is_removed_by_down() {
    let Some(lab) = TestLab::new('c', 2) else {
        return;
    };
    // An "agent" that issues no certificates and exits at once when started: `up` fails
    // after building the network.
    let fake_agent =
        std::env::temp_dir().join(format!("hubble-lab-test-{}-fake-agent", std::process::id()));
    std::fs::write(
        &fake_agent,
        "#!/bin/sh\n[ \"$1\" = certs ] && exit 0\nexit 1\n",
    )
    .expect("write the fake agent");
    std::fs::set_permissions(
        &fake_agent,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make the fake agent executable");
    let output = lab.run(&[
        "up",
        "--agent-bin",
        &fake_agent.display().to_string(),
        "--node-subnet",
        &lab.subnet,
    ]);
    let _ = std::fs::remove_file(&fake_agent);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("agent node1 exited before it was ready"),
        "{stderr}"
    );
    assert!(stderr.contains("agent.log"), "{stderr}");
    assert!(stderr.contains("hubble-lab down"), "{stderr}");
    assert!(!lab.leftovers().is_empty(), "up had created something");
    let status = lab.run_ok(&["status"]);
    assert!(
        status.contains("INCOMPLETE") && status.contains("DEAD"),
        "{status}"
    );
    lab.down_and_check();
}

#[test]
fn missing_explicit_agent_binary_creates_nothing() {
    let Some(lab) = TestLab::new('d', 0) else {
        return;
    };
    let output = lab.run(&["up", "--agent-bin", "/nonexistent/hubble-agent"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/hubble-agent"), "{stderr}");
    assert!(lab.leftovers().is_empty());
    assert!(!lab.run_dir.join("lab/state.json").exists());
}

#[test]
fn non_root_gets_a_clear_message() {
    let Some(lab) = TestLab::new('e', 0) else {
        return;
    };
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !has_setpriv {
        tests::skip(
            "non_root_gets_a_clear_message",
            "setpriv not found (apt-get install util-linux): it runs hubble-lab as another user",
        );
        return;
    }
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "up",
        ])
        .env("HUBBLE_LAB_RUN_DIR", &lab.run_dir)
        .env("HUBBLE_LAB_PREFIX", &lab.prefix)
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("Permission denied") && !stderr.contains("hubble-lab") {
        tests::skip(
            "non_root_gets_a_clear_message",
            &format!("the test binary is not executable by uid 65534: {stderr}"),
        );
        return;
    }
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "hubble-lab: creating the demo needs root (network namespaces, veths); run it as root"
    );
}
