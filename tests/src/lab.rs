//! A one-node Star Wars lab of a test's own, made with the real `hubble-lab` and removed
//! on drop, even when the test fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{bin, run_ok, run_with_timeout};

/// Deadline of each command a test runs against the lab.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A lab in its own run directory, with its own name prefix, node subnet and relay port,
/// so that it never meets a user's lab or another test's.
pub struct Lab {
    /// Where the lab keeps its state, sockets and logs.
    pub run_dir: PathBuf,
    /// Prefix of every namespace and link it creates.
    pub prefix: String,
    /// The relay's address.
    pub relay: String,
    /// The /24 of its nodes.
    pub subnet: String,
}

impl Lab {
    /// Picks the run directory, prefix and relay port of a lab on `subnet` (a /24
    /// nobody else uses) without creating it; `tag` names the test. Dropping it runs
    /// `hubble-lab down`, so whatever creates the lab afterwards is cleaned up.
    pub fn reserve(tag: &str, subnet: &str) -> Result<Self> {
        let run_dir =
            std::env::temp_dir().join(format!("hubble-rs-e2e-{tag}-{}", std::process::id()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Lab {
            run_dir,
            prefix: format!("e{}{tag}-", std::process::id() % 10000),
            relay: format!("127.0.0.1:{port}"),
            subnet: subnet.to_string(),
        })
    }

    /// The environment variables that point `hubble-lab` (and scripts/demo.sh) at this lab.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HUBBLE_LAB_RUN_DIR", self.run_dir.display().to_string()),
            ("HUBBLE_LAB_PREFIX", self.prefix.clone()),
            ("HUBBLE_LAB_NODE_SUBNET", self.subnet.clone()),
            ("HUBBLE_LAB_RELAY_ADDRESS", self.relay.clone()),
        ]
    }

    /// Brings up one node on `subnet` (a /24 nobody else uses); `tag` names the test.
    pub fn up(tag: &str, subnet: &str) -> Result<Self> {
        let lab = Self::reserve(tag, subnet)?;
        run_ok(
            lab.cmd().args([
                "up",
                "--nodes",
                "1",
                "--node-subnet",
                subnet,
                "--relay-address",
                &lab.relay,
            ]),
            Duration::from_secs(90),
        )?;
        Ok(lab)
    }

    /// `hubble-lab` pointed at this lab.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(bin("hubble-lab").unwrap_or_default());
        cmd.arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--prefix")
            .arg(&self.prefix);
        cmd
    }

    /// The node's Hubble API, as `--server` takes it.
    pub fn socket(&self) -> String {
        format!(
            "unix://{}",
            self.run_dir.join("node1/hubble.sock").display()
        )
    }

    /// The node agent's admin socket.
    pub fn admin(&self) -> PathBuf {
        self.run_dir.join("node1/agent.sock")
    }

    /// Sends the demo's requests once; returns what `hubble-lab traffic` printed.
    pub fn traffic(&self) -> Result<String> {
        run_ok(self.cmd().arg("traffic"), COMMAND_TIMEOUT)
    }

    /// `hubble observe` on the node with `args`.
    pub fn observe(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(bin("hubble")?);
        cmd.args(["observe", "--server", &self.socket()]).args(args);
        run_ok(&mut cmd, COMMAND_TIMEOUT)
    }

    /// `hubble observe ARGS` through the relay with our CLI and with the upstream CLI
    /// named by `HUBBLE_UPSTREAM` (built by hand, never part of the repository): an
    /// error unless both print the same bytes. `Ok(None)` when the variable is unset.
    pub fn compare_with_upstream(&self, args: &[&str]) -> Result<Option<String>> {
        let Some(upstream) = std::env::var_os("HUBBLE_UPSTREAM") else {
            return Ok(None);
        };
        let run = |program: &std::ffi::OsStr| {
            let mut cmd = Command::new(program);
            cmd.args(["observe", "--server", &self.relay]).args(args);
            run_ok(&mut cmd, COMMAND_TIMEOUT)
        };
        let ours = run(bin("hubble")?.as_os_str())?;
        let theirs = run(&upstream)?;
        anyhow::ensure!(
            ours == theirs,
            "hubble observe {args:?} differs from upstream's:\n--- ours\n{ours}\n--- upstream\n{theirs}"
        );
        Ok(Some(ours))
    }

    /// `hubble observe -o json` on the node, one value per line.
    pub fn observe_json(&self, args: &[&str]) -> Result<Vec<Value>> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        self.observe(&all)?
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }

    /// Repeats the demo traffic until both ships land and xwing's landing is seen at both
    /// of its endpoints with a cluster identity: the agent programs its endpoints
    /// asynchronously after `up`, and flows seen before carry the datapath's `world`
    /// identity (the datapath's view wins, as upstream). Returns xwing's last flows to
    /// port 80.
    pub fn wait_until_programmed(&self) -> Result<Vec<Value>> {
        crate::eventually(Duration::from_secs(30), || {
            let out = self.traffic()?;
            if out.matches("Ship landed").count() != 2 {
                return Ok(None);
            }
            // L3/L4 trace events only: a service's socket translations (SOCK) are
            // neither at an endpoint nor FORWARDED.
            let flows = self.observe_json(&[
                "--type",
                "trace",
                "--from-pod",
                "default/xwing",
                "--to-port",
                "80",
                "--last",
                "20",
            ])?;
            let points: Vec<&str> = flows
                .iter()
                .filter_map(|v| v["flow"]["trace_observation_point"].as_str())
                .collect();
            let seen_at_both = points.contains(&"TO_ENDPOINT") && points.contains(&"FROM_ENDPOINT");
            let newest_known = flows.last().is_some_and(|v| {
                v["flow"]["source"]["identity"]
                    .as_u64()
                    .is_some_and(|id| id >= 256)
            });
            Ok((seen_at_both && newest_known).then_some(flows))
        })
    }

    /// `hubble-agent` with `args` on the node's admin socket.
    pub fn agent(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(bin("hubble-agent")?);
        cmd.args(args).arg("--admin-socket").arg(self.admin());
        run_ok(&mut cmd, COMMAND_TIMEOUT)
    }
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
