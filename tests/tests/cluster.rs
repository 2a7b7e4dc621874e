//! A three-node cluster on the real kernel datapath, sharing its state through etcd:
//! flows of every node through the relay, a policy on one node recognising a pod of
//! another, an agent crash and restart under a running follow, a node joining later,
//! rule1's L7 part enforced by the deathstars' nodes for a remote tiefighter, and an
//! etcd restart that keeps every identity. Needs root; prints a SKIP line
//! otherwise. Prints the figures of the closing note (`FIGURE ...` lines).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tests::{bin, eventually, require_root, run_ok, run_with_timeout};

const T: Duration = Duration::from_secs(60);
/// Longer than the agents' lease (10 s), for what waits on a lease to expire.
const LEASE_WAIT: Duration = Duration::from_secs(30);

/// A lab of our own: removed on drop, even when the test fails.
struct Lab {
    run_dir: PathBuf,
    prefix: String,
    relay: String,
}

impl Lab {
    fn up(tag: &str, subnet: &str, nodes: u8) -> Result<Self> {
        let run_dir =
            std::env::temp_dir().join(format!("hubble-rs-e2e-{tag}-{}", std::process::id()));
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let lab = Lab {
            run_dir,
            prefix: format!("e{}{tag}-", std::process::id() % 10000),
            relay: format!("127.0.0.1:{port}"),
        };
        let nodes = nodes.to_string();
        let args = [
            "up",
            "--nodes",
            &nodes,
            "--node-subnet",
            subnet,
            "--relay-address",
            &lab.relay,
        ];
        run_ok(lab.cmd().args(args), Duration::from_secs(120))?;
        Ok(lab)
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(bin("hubble-lab").unwrap_or_default());
        cmd.arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--prefix")
            .arg(&self.prefix);
        cmd
    }

    fn lab(&self, args: &[&str]) -> Result<String> {
        run_ok(self.cmd().args(args), T)
    }

    fn traffic(&self, count: u32) -> Result<String> {
        self.lab(&["traffic", "--count", &count.to_string()])
    }

    fn hubble(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(bin("hubble")?);
        cmd.args(args).args(["--server", &self.relay]);
        run_large(&mut cmd, T)
    }

    fn observe_json(&self, args: &[&str]) -> Result<Vec<Value>> {
        let mut all = vec!["observe", "-o", "json"];
        all.extend_from_slice(args);
        self.hubble(&all)?
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }

    fn agent(&self, node: u8, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(bin("hubble-agent")?);
        cmd.args(args)
            .arg("--admin-socket")
            .arg(self.run_dir.join(format!("node{node}/agent.sock")));
        run_ok(&mut cmd, T)
    }

    /// Writes an endpoint file for a pod without a network namespace: the agent gives
    /// it an identity (and cannot attach to its interface, which is fine here).
    fn add_endpoint(&self, node: u8, name: &str, class: &str, ip: &str) -> Result<()> {
        let path = self
            .run_dir
            .join(format!("node{node}/endpoints/default_{name}.yaml"));
        let yaml = format!(
            "name: {name}\nnamespace: default\nlabels: {{org: alliance, class: {class}}}\n\
             ipv4: {ip}\ninterface: lxcabsent{node}\n"
        );
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))
    }
}

/// Runs `cmd` with its output going to files, so that output larger than a pipe's
/// buffer cannot stall it, and returns its stdout; fails with its stderr.
fn run_large(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let dir = std::env::temp_dir();
    let stdout_path = dir.join(format!("hubble-rs-e2e-out-{}", std::process::id()));
    let stderr_path = dir.join(format!("hubble-rs-e2e-err-{}", std::process::id()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&stdout_path)?;
    let stderr = std::fs::read_to_string(&stderr_path)?;
    let _ = std::fs::remove_file(&stdout_path);
    let _ = std::fs::remove_file(&stderr_path);
    if !status.success() {
        bail!("{cmd:?} failed with {status}: {stderr}{stdout}");
    }
    Ok(stdout)
}

impl Drop for Lab {
    fn drop(&mut self) {
        match run_with_timeout(self.cmd().arg("down"), Duration::from_secs(60)) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("hubble-lab down: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("hubble-lab down: {e}"),
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// `hubble observe -f` through the relay, every line of stdout and stderr kept with
/// the moment it arrived.
struct Follow {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Follow {
    fn start(lab: &Lab) -> Result<Self> {
        // jsonpb with --debug prints node status events (connected, error) on stderr.
        let mut child = Command::new(bin("hubble")?)
            .args([
                "observe", "--server", &lab.relay, "-f", "-o", "jsonpb", "--debug",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Instant::now(), line));
                }
            });
        }
        Ok(Follow { child, lines })
    }

    fn len(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits for a line after the `from`-th matching `wanted`; returns when it arrived.
    fn wait_for(
        &self,
        from: usize,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<(Instant, String)> {
        let deadline = Instant::now() + LEASE_WAIT;
        loop {
            if let Some(found) = self.lines.lock().unwrap_or_else(|e| e.into_inner())[from..]
                .iter()
                .find(|(_, line)| wanted(line))
            {
                return Ok(found.clone());
            }
            if Instant::now() > deadline {
                bail!("the follow showed no {what} within {LEASE_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flow_node(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["flow"]["node_name"].as_str().map(String::from)
}

fn node_event(line: &str, state: &str, node: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let status = &v["node_status"];
    status["state_change"] == state
        && status["node_names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == node))
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn rule1() -> PathBuf {
    policy("rule1.yaml")
}

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/policies/{name}"))
}

/// The identity list's numbers with their labels, as one comparable text.
fn identities(lab: &Lab, node: u8) -> Result<String> {
    lab.agent(node, &["identity", "list"])
}

#[test]
fn three_node_cluster_through_etcd_and_the_relay() -> Result<()> {
    if !require_root("three_node_cluster_through_etcd_and_the_relay") {
        return Ok(());
    }
    if !tests::skip::require_file(
        "three_node_cluster_through_etcd_and_the_relay",
        "/usr/bin/etcd",
        "etcd-server",
    ) {
        return Ok(());
    }
    let lab = Lab::up("cl", "10.103.0.0/24", 3)?;
    eventually(T, || {
        Ok(lab
            .hubble(&["status"])?
            .contains("Connected Nodes: 3/3")
            .then_some(()))
    })?;

    // 0. The relay reaches the agents over mutual TLS: an agent's :4244 answers a client
    //    with the lab's relay certificate and node name, and refuses one in clear text.
    let tls = lab.run_dir.join("tls");
    let file = |name: &str| tls.join(name).display().to_string();
    let node1 = "10.103.0.11:4244";
    let direct = |extra: &[String]| {
        let mut cmd = Command::new(bin("hubble")?);
        cmd.args(["status", "--server", node1, "--request-timeout", "5s"])
            .args(extra);
        run_with_timeout(&mut cmd, T)
    };
    let mutual = direct(&[
        "--tls".to_string(),
        format!("--tls-ca-cert-files={}", file("ca.crt")),
        format!("--tls-client-cert-file={}", file("relay-client.crt")),
        format!("--tls-client-key-file={}", file("relay-client.key")),
        "--tls-server-name=node1.default.hubble-grpc.cilium.io".to_string(),
    ])?;
    let mutual_out = String::from_utf8_lossy(&mutual.stdout);
    assert!(
        mutual.status.success() && mutual_out.contains("Healthcheck"),
        "{mutual_out} {}",
        String::from_utf8_lossy(&mutual.stderr)
    );
    let clear = direct(&[])?;
    assert!(
        !clear.status.success(),
        "clear text was served: {}",
        String::from_utf8_lossy(&clear.stdout)
    );

    // The services live in etcd: every node serves both, with both deathstars (one of
    // them another node's pod) as backends.
    for node in 1..=3 {
        let list = eventually(Duration::from_secs(20), || {
            let list = lab.agent(node, &["service", "list"])?;
            Ok((list.matches(":80/TCP (active)").count() == 2).then_some(list))
        })?;
        assert!(
            list.contains("10.96.60.53:80/TCP   ClusterIP"),
            "node{node}: {list}"
        );
        assert!(list.contains("10.96.0.10:53/UDP"), "node{node}: {list}");
        let json = lab.agent(node, &["service", "list", "-o", "json"])?;
        assert!(json.contains("\"nodeName\": \"node"), "node{node}: {json}");
    }

    // 1. Flows of all three nodes through the relay, in time order, with node names.
    // Round-robin placement: deathstar-1 and xwing on node1, deathstar-2 and coredns on
    // node2, tiefighter on node3; the deathstar service picks a backend per connection,
    // so traffic goes on until xwing (node1) has reached deathstar-2 (node2) through it.
    let flows = eventually(Duration::from_secs(40), || {
        let out = lab.traffic(2)?;
        assert_eq!(out.matches("Ship landed").count(), 4, "{out}");
        let flows = lab.observe_json(&["--last", "1000"])?;
        let nodes: std::collections::BTreeSet<&str> = flows
            .iter()
            .filter_map(|v| v["flow"]["node_name"].as_str())
            .collect();
        let across = flows.iter().any(|v| {
            let f = &v["flow"];
            f["node_name"] == "node2"
                && field(f, "source.pod_name") == "xwing"
                && field(f, "destination.pod_name") == "deathstar-2"
        });
        Ok((nodes.len() == 3 && across).then_some(flows))
    })?;
    // Compared as instants: protojson writes 0, 3, 6 or 9 fractional digits, so the
    // texts of two flows in the same microsecond do not sort as their times do.
    let times: Vec<(chrono::DateTime<chrono::FixedOffset>, &str, &str)> = flows
        .iter()
        .filter_map(|v| {
            let text = v["flow"]["time"].as_str()?;
            let node = v["flow"]["node_name"].as_str().unwrap_or("");
            Some((chrono::DateTime::parse_from_rfc3339(text).ok()?, text, node))
        })
        .collect();
    assert_eq!(times.len(), flows.len(), "every flow has a time");
    if let Some(w) = times.windows(2).find(|w| w[0].0 > w[1].0) {
        panic!(
            "flows out of time order: {} ({}) before {} ({})",
            w[0].1, w[0].2, w[1].1, w[1].2
        );
    }

    // The xwing of node1 seen on node2 is a remote pod: name, namespace and labels, ID 0.
    let xwing_on_node2 = flows
        .iter()
        .map(|v| &v["flow"])
        .find(|f| {
            f["node_name"] == "node2"
                && field(f, "source.pod_name") == "xwing"
                && field(f, "destination.pod_name") == "deathstar-2"
        })
        .context("no xwing -> deathstar-2 flow observed on node2")?;
    assert_eq!(field(xwing_on_node2, "source.namespace"), "default");
    assert!(
        field(xwing_on_node2, "source.ID").as_u64().unwrap_or(0) == 0,
        "{xwing_on_node2}"
    );
    assert!(field(xwing_on_node2, "source.labels")
        .to_string()
        .contains("k8s:org=alliance"));
    let xwing_on_node1 = flows
        .iter()
        .map(|v| &v["flow"])
        .find(|f| f["node_name"] == "node1" && field(f, "source.pod_name") == "xwing")
        .context("no xwing flow observed on node1")?;
    assert!(
        field(xwing_on_node1, "source.ID").as_u64().unwrap_or(0) > 0,
        "local endpoint id"
    );
    assert_eq!(
        field(xwing_on_node1, "source.identity"),
        field(xwing_on_node2, "source.identity")
    );

    // Every node knows the same identities under the same numbers.
    let reference = identities(&lab, 1)?;
    assert!(reference.contains("k8s:class=tiefighter"), "{reference}");
    for node in [2, 3] {
        assert_eq!(identities(&lab, node)?, reference, "node{node} disagrees");
    }

    // 2. rule1 on every node: xwing (node1) is denied by deathstar-2 (node2), while the
    // tiefighter of node3 still lands there.
    for node in 1..=3 {
        let out = lab.agent(
            node,
            &["policy", "import", rule1().to_str().unwrap_or_default()],
        )?;
        assert!(out.contains("Revision: 2"), "{out}");
    }
    // Through the service each ship reaches deathstar-2 sooner or later.
    let drops = eventually(Duration::from_secs(40), || {
        let out = lab.traffic(2)?;
        if out.matches("Ship landed").count() != 2 || out.matches("timed out").count() != 2 {
            return Ok(None);
        }
        let drops = lab.observe_json(&[
            "--from-pod",
            "default/xwing",
            "--to-pod",
            "default/deathstar-2",
            "--type",
            "drop",
            "--last",
            "1",
        ])?;
        let landed = lab.observe_json(&[
            "--from-pod",
            "default/tiefighter",
            "--to-pod",
            "default/deathstar-2",
            "--to-port",
            "80",
            "--verdict",
            "FORWARDED",
            "--node-name",
            "node2",
            "--last",
            "1",
        ])?;
        Ok((!drops.is_empty() && !landed.is_empty()).then_some(drops))
    })?;
    let denied = &drops.first().context("no drop of xwing -> deathstar-2")?["flow"];
    assert_eq!(denied["node_name"], "node2", "{denied}");
    assert_eq!(denied["drop_reason_desc"], "POLICY_DENIED", "{denied}");
    assert_eq!(field(denied, "source.pod_name"), "xwing");
    assert!(
        field(denied, "source.labels")
            .to_string()
            .contains("k8s:class=xwing"),
        "{denied}"
    );
    let landed = lab.observe_json(&[
        "--from-pod",
        "default/tiefighter",
        "--to-pod",
        "default/deathstar-2",
        "--to-port",
        "80",
        "--verdict",
        "FORWARDED",
        "--node-name",
        "node2",
        "--last",
        "1",
    ])?;
    assert!(
        !landed.is_empty(),
        "tiefighter of node3 should pass rule1 on node2"
    );

    // 2b. rule1 with its L7 part on every node: the tiefighter of node3 lands, and its
    // PUT is answered `Access denied` by the proxy on the node of whichever deathstar
    // the service picked; the relay shows the L7 flows of both deathstar nodes, the
    // remote tiefighter enriched by name.
    for node in 1..=3 {
        let out = lab.agent(
            node,
            &[
                "policy",
                "import",
                policy("rule1-l7.yaml").to_str().unwrap_or_default(),
            ],
        )?;
        assert!(out.contains("Revision: 3"), "{out}");
    }
    let url = "deathstar.default.svc.cluster.local/v1/exhaust-port";
    let dropped = eventually(Duration::from_secs(60), || {
        let out = lab.lab(&[
            "exec",
            "tiefighter",
            "--",
            "curl",
            "-s",
            "--max-time",
            "3",
            "-X",
            "PUT",
            url,
        ])?;
        if out != "Access denied\r\n" {
            return Ok(None);
        }
        let flows = lab.observe_json(&[
            "--type",
            "l7",
            "--verdict",
            "DROPPED",
            "--from-pod",
            "default/tiefighter",
            "--last",
            "50",
        ])?;
        let nodes: std::collections::BTreeSet<&str> = flows
            .iter()
            .filter_map(|v| v["flow"]["node_name"].as_str())
            .collect();
        Ok((nodes.contains("node1") && nodes.contains("node2")).then_some(flows))
    })?;
    for v in &dropped {
        let f = &v["flow"];
        assert_eq!(field(f, "l7.http.method"), "PUT", "{f}");
        assert_eq!(
            field(f, "l7.http.url").as_str(),
            Some(format!("http://{url}").as_str()),
            "{f}"
        );
        assert_eq!(field(f, "source.pod_name"), "tiefighter", "{f}");
        assert_eq!(
            field(f, "source.ID").as_u64().unwrap_or(0),
            0,
            "the tiefighter is remote: {f}"
        );
        assert!(
            field(f, "destination.pod_name")
                .as_str()
                .is_some_and(|p| p.starts_with("deathstar-")),
            "{f}"
        );
    }
    let compact = lab.hubble(&[
        "observe",
        "--type",
        "l7",
        "--verdict",
        "DROPPED",
        "--node-name",
        "node2",
        "--last",
        "1",
    ])?;
    assert!(
        compact.contains(&format!("http-request DROPPED (HTTP/1.1 PUT http://{url})")),
        "{compact}"
    );
    let out = lab.lab(&[
        "exec",
        "tiefighter",
        "--",
        "curl",
        "-s",
        "--max-time",
        "3",
        "-X",
        "POST",
        "deathstar.default.svc.cluster.local/v1/request-landing",
    ])?;
    assert_eq!(out, "Ship landed\n");
    for node in 1..=3 {
        let out = lab.agent(
            node,
            &["policy", "import", rule1().to_str().unwrap_or_default()],
        )?;
        assert!(out.contains("Revision: 4"), "{out}");
    }

    // 3. An agent dies during a follow: a node error line, the stream goes on, status
    // says unavailable; restarting it brings its flows back through the same relay.
    let follow = Follow::start(&lab)?;
    follow.wait_for(0, "connected nodes", |l| {
        node_event(l, "NODE_CONNECTED", "node1")
    })?;
    let mark = follow.len();
    let killed = Instant::now();
    lab.lab(&["stop", "agent", "--node", "3", "--kill"])?;
    // Before node3's lease expires, the relay still knows it and reports it unavailable.
    let mut last = String::new();
    let status = eventually(Duration::from_secs(8), || {
        last = lab.hubble(&["status"])?;
        Ok(last.contains("Unavailable Nodes: 1").then(|| last.clone()))
    })
    .with_context(|| format!("{:?} after the kill, status: {last}", killed.elapsed()))?;
    follow.wait_for(mark, "error for node3", |l| {
        node_event(l, "NODE_ERROR", "node3") || node_event(l, "NODE_UNAVAILABLE", "node3")
    })?;
    assert!(status.contains("- node3"), "{status}");
    let mark = follow.len();
    lab.traffic(1)?;
    follow.wait_for(mark, "flows after the crash", |l| {
        flow_node(l).as_deref() == Some("node1")
    })?;
    lab.lab(&["start", "agent", "--node", "3"])?;
    eventually(T, || {
        Ok(lab
            .hubble(&["status"])?
            .contains("Connected Nodes: 3/3")
            .then_some(()))
    })?;
    let mark = follow.len();
    eventually(T, || {
        lab.traffic(1)?;
        let lines = follow.lines.lock().unwrap_or_else(|e| e.into_inner());
        Ok(lines[mark..]
            .iter()
            .any(|(_, l)| flow_node(l).as_deref() == Some("node3"))
            .then_some(()))
    })?;

    // 4. A node added later shows up in the running follow.
    let mark = follow.len();
    let started = Instant::now();
    lab.lab(&["node", "add"])?;
    let agent_ready = Instant::now();
    let (seen, _) = follow.wait_for(mark, "node4 connecting", |l| {
        node_event(l, "NODE_CONNECTED", "node4")
    })?;
    println!(
        "FIGURE new node in a running follow: {} ms after `hubble-lab node add` started, \
         {} ms after its agent served (node add itself: {} ms)",
        seen.duration_since(started).as_millis(),
        seen.saturating_duration_since(agent_ready).as_millis(),
        agent_ready.duration_since(started).as_millis()
    );
    eventually(T, || {
        Ok(lab
            .hubble(&["status"])?
            .contains("Connected Nodes: 4/4")
            .then_some(()))
    })?;
    drop(follow);

    // 5. etcd stops and starts: enforcement goes on meanwhile, no identity changes, and
    // new endpoints on two nodes agree on one new number.
    let before = identities(&lab, 1)?;
    lab.lab(&["stop", "etcd"])?;
    let out = lab.traffic(1)?;
    assert!(
        out.contains("Ship landed") && out.contains("timed out"),
        "{out}"
    );
    lab.add_endpoint(2, "ywing-a", "ywing", "10.200.2.40")?;
    lab.add_endpoint(3, "ywing-b", "ywing", "10.200.3.40")?;
    std::thread::sleep(Duration::from_secs(1));
    lab.lab(&["start", "etcd"])?;
    let after = eventually(LEASE_WAIT, || {
        let list = identities(&lab, 4)?;
        Ok(list.contains("k8s:class=ywing").then_some(list))
    })?;
    for known in before
        .split("\n")
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
    {
        assert!(
            after.contains(known),
            "identity line {known:?} changed after the etcd restart:\n{after}"
        );
    }
    for node in [1, 2, 3] {
        eventually(Duration::from_secs(10), || {
            Ok((identities(&lab, node)? == after).then_some(()))
        })
        .with_context(|| format!("node{node} disagrees with node4 after the restart"))?;
    }
    // Policy still sees the pods of other nodes once etcd is back.
    let out = lab.traffic(2)?;
    assert_eq!(out.matches("Ship landed").count(), 2, "{out}");
    Ok(())
}
