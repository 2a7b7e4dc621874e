//! Running the real `hubble-agent --replay` from a test, without root: its sockets and
//! endpoints directory in a temporary directory, the TCP Hubble API off, metrics on a
//! local port, its log in a file; killed (by PID) and reaped when the handle drops.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The agent under test, killed (by PID) and reaped when dropped, whatever happens.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Starts `hubble-agent --replay <capture>` with its files in `dir` (`agent.log`,
    /// `hubble.sock`, `agent.sock`, `endpoints/`), metrics on `127.0.0.1:<metrics>`, no
    /// TCP Hubble API, and `extra` arguments after these.
    pub fn replay<I, S>(dir: &Path, capture: &Path, metrics: u16, node: &str, extra: I) -> Agent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = dir.join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hubble-agent"))
            .arg("--replay")
            .arg(capture)
            .args(["--metrics-address", &format!("127.0.0.1:{metrics}")])
            .args(["--listen-address", ""])
            .arg("--unix-socket")
            .arg(dir.join("hubble.sock"))
            .arg("--admin-socket")
            .arg(dir.join("agent.sock"))
            .arg("--endpoints-dir")
            .arg(dir.join("endpoints"))
            .args(["--node-name", node])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"))
            .spawn()
            .expect("start hubble-agent");
        Agent { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the agent's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("hubble-agent exited with {status}:\n{}", self.log());
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}
