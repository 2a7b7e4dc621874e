//! `hubble-lab traffic`: the demo's requests, sent from inside the pods' namespaces.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::command;
use crate::error::{LabError, Result};
use crate::paths::RunLayout;
use crate::request::Outcome;
use crate::services::{DEATHSTAR_VIP, KUBE_DNS_VIP};
use crate::state::StateFile;
use crate::topology::{PodPlan, DEATHSTAR_SERVICE_NAME};
use crate::up::{ensure_root, DEATHSTAR_PORT, DNS_PORT};

/// Connect timeout of the HTTP requests, like `curl --connect-timeout 2`.
pub const CONNECT_TIMEOUT_MS: u64 = 2000;
/// Whole-request timeout of the HTTP requests.
pub const MAX_TIME_MS: u64 = 5000;
/// How long a DNS query waits for its reply.
pub const DNS_TIMEOUT_MS: u64 = 2000;
/// A name the DNS responder does not know.
pub const UNKNOWN_NAME: &str = "tatooine.default.svc.cluster.local";

/// One request and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficLine {
    pub from: String,
    pub to: String,
    pub request: String,
    pub result: String,
}

impl std::fmt::Display for TrafficLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<10} -> {:<28} {:<46} {}",
            self.from, self.to, self.request, self.result
        )
    }
}

/// Sends the demo's requests `count` times, printing one line per request to `out`.
/// HTTP goes to the deathstar service by name and DNS to the kube-dns service's
/// cluster IP, so the agents' load balancing picks a deathstar (or coredns) for each
/// connection; iteration `i` pings deathstar-1 or deathstar-2 in turn (a cluster IP
/// does not answer ping).
pub fn traffic(
    run_dir: &Path,
    self_exe: &Path,
    count: u32,
    out: &mut dyn Write,
) -> Result<Vec<TrafficLine>> {
    ensure_root("sending traffic from the pods")?;
    let state_path = RunLayout::new(run_dir).state_file();
    let state = StateFile::load(&state_path)?.ok_or(LabError::NotUp(state_path))?;
    let topology = &state.state.topology;
    let find = |name: &str| {
        topology.pod(name).ok_or_else(|| LabError::BadState {
            path: RunLayout::new(run_dir).state_file(),
            reason: format!("pod {name} is missing"),
        })
    };
    let (tiefighter, xwing) = (find("tiefighter")?, find("xwing")?);
    let coredns = find("coredns")?;
    // Cluster IPs work only where agents balance them (not with `up --no-agents`).
    let load_balanced = state.state.agent_bin.is_some();
    let deathstars = [find("deathstar-1")?, find("deathstar-2")?];
    let layout = RunLayout::new(run_dir);
    let runner = Runner {
        self_exe: self_exe.to_path_buf(),
        cgroups: topology
            .pods
            .iter()
            .filter(|_| crate::cgroup::enabled(&layout, &state))
            .map(|pod| {
                let cgroup = crate::cgroup::pod_cgroup(&layout, topology, pod);
                (pod.name.clone(), cgroup)
            })
            .collect(),
    };
    let mut lines = Vec::new();
    for iteration in 0..count {
        let deathstar = deathstars[iteration as usize % deathstars.len()];
        // Without agents there is no cluster IP to balance: each round aims at one
        // deathstar pod in turn, by address.
        let http_host = if load_balanced {
            DEATHSTAR_SERVICE_NAME.to_string()
        } else {
            deathstar.ipv4.to_string()
        };
        let url = |path: &str| format!("http://{http_host}{path}");
        let (to_http, to_dns, dns_server) = if load_balanced {
            (
                format!("deathstar ({DEATHSTAR_VIP}:{DEATHSTAR_PORT})"),
                format!("kube-dns ({KUBE_DNS_VIP}:{DNS_PORT})"),
                format!("{KUBE_DNS_VIP}:{DNS_PORT}"),
            )
        } else {
            // Without agents the names answer the pods themselves (`pod_dns::records`).
            (
                format!("{} ({}:{DEATHSTAR_PORT})", deathstar.name, deathstar.ipv4),
                format!("coredns ({}:{DNS_PORT})", coredns.ipv4),
                format!("{}:{DNS_PORT}", coredns.ipv4),
            )
        };
        let steps = [
            (
                tiefighter,
                &to_http,
                "POST /v1/request-landing".to_string(),
                http_args("POST", &url("/v1/request-landing")),
            ),
            (
                xwing,
                &to_http,
                "POST /v1/request-landing".to_string(),
                http_args("POST", &url("/v1/request-landing")),
            ),
            (
                tiefighter,
                &to_http,
                "PUT /v1/exhaust-port".to_string(),
                http_args("PUT", &url("/v1/exhaust-port")),
            ),
            (
                tiefighter,
                &to_dns,
                format!("DNS A {DEATHSTAR_SERVICE_NAME}"),
                dns_args(&dns_server, DEATHSTAR_SERVICE_NAME),
            ),
            (
                xwing,
                &to_dns,
                format!("DNS A {UNKNOWN_NAME}"),
                dns_args(&dns_server, UNKNOWN_NAME),
            ),
        ];
        for (from, to, request, args) in steps {
            let result = runner.request(from, &args)?;
            let line = TrafficLine {
                from: from.name.clone(),
                to: to.clone(),
                request,
                result,
            };
            let _ = writeln!(out, "{line}");
            lines.push(line);
        }
        let line = TrafficLine {
            from: tiefighter.name.clone(),
            to: format!("{} ({})", deathstar.name, deathstar.ipv4),
            request: "ICMP echo (ping -c 1 -W 1)".to_string(),
            result: runner.ping(tiefighter, &deathstar.ipv4.to_string())?,
        };
        let _ = writeln!(out, "{line}");
        lines.push(line);
    }
    Ok(lines)
}

fn http_args(method: &str, url: &str) -> Vec<String> {
    [
        "http",
        "--method",
        method,
        "--url",
        url,
        "--connect-timeout-ms",
        &CONNECT_TIMEOUT_MS.to_string(),
        "--max-time-ms",
        &MAX_TIME_MS.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn dns_args(server: &str, name: &str) -> Vec<String> {
    [
        "dns",
        "--server",
        server,
        "--name",
        name,
        "--timeout-ms",
        &DNS_TIMEOUT_MS.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

struct Runner {
    self_exe: PathBuf,
    /// Pod name -> its cgroup, which its requests run in (empty for labs without).
    cgroups: std::collections::BTreeMap<String, PathBuf>,
}

impl Runner {
    /// Runs `hubble-lab request ARGS` inside the pod and describes its outcome.
    fn request(&self, from: &PodPlan, args: &[String]) -> Result<String> {
        let program = self.self_exe.display().to_string();
        let mut full: Vec<&str> = vec!["request"];
        full.extend(args.iter().map(String::as_str));
        let cgroup = self.cgroups.get(&from.name).map(PathBuf::as_path);
        let output = command::exec_in_cgroup(&from.netns, cgroup, &program, &full)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        match serde_json::from_str::<Outcome>(last) {
            Ok(outcome) => Ok(describe(&outcome)),
            Err(_) => Err(LabError::Command {
                command: format!("ip netns exec {} {program} {}", from.netns, full.join(" ")),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            }),
        }
    }

    /// Runs `ping -c 1 -W 1 TARGET` inside the pod.
    fn ping(&self, from: &PodPlan, target: &str) -> Result<String> {
        if !command::in_path("ping") {
            return Ok("skipped: ping not found (install the iputils-ping package)".to_string());
        }
        let cgroup = self.cgroups.get(&from.name).map(PathBuf::as_path);
        let output =
            command::exec_in_cgroup(&from.netns, cgroup, "ping", &["-c", "1", "-W", "1", target])?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let time = stdout
            .split_whitespace()
            .find_map(|word| word.strip_prefix("time="));
        Ok(match (output.status.success(), time) {
            (true, Some(time)) => format!("reply, time={time} ms"),
            (true, None) => "reply".to_string(),
            (false, _) => "no reply within 1 s".to_string(),
        })
    }
}

/// Describes an outcome the way the demo's `kubectl exec ... curl -s` would show it.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Http { status, body } => {
            let first_line = body.lines().next().unwrap_or_default();
            if (200..300).contains(status) {
                first_line.to_string()
            } else {
                format!("HTTP {status}: {first_line}")
            }
        }
        Outcome::Dns {
            rcode: 0,
            addresses,
        } if addresses.is_empty() => "no records".to_string(),
        Outcome::Dns {
            rcode: 0,
            addresses,
        } => addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        Outcome::Dns { rcode: 3, .. } => "NXDOMAIN".to_string(),
        Outcome::Dns { rcode, .. } => format!("DNS error rcode {rcode}"),
        Outcome::Failed { exit_code, error } => {
            format!("command terminated with exit code {exit_code} ({error})")
        }
    }
}
