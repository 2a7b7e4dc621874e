//! `kubectl://` targets: one `kubectl port-forward service/<service> :<port>` process
//! for the life of the forwarder, listening on a loopback port of its choosing; each
//! connection is then a TCP connection to that port. Upstream's `hubble -P` talks to the
//! Kubernetes API itself; this build leaves that to `kubectl`, when it is installed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::target::Target;
use super::tunnel::{Dialer, TunnelProcess};

/// How long `kubectl port-forward` may take to say where it listens.
const KUBECTL_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Kubernetes settings that `kubectl` takes as flags (`--kube-context`, `--kubeconfig`,
/// `--kube-namespace`).
#[derive(Debug, Clone, Default)]
pub struct KubeSettings {
    pub context: String,
    pub kubeconfig: String,
    pub namespace: String,
}

/// A running `kubectl port-forward`; stopped when dropped.
pub struct KubectlForward {
    _process: TunnelProcess,
}

/// The first file named `name` in the directories of `path` (a `PATH` value).
pub fn find_on_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The arguments after `kubectl`.
pub fn kubectl_args(target: &Target, kube: &KubeSettings) -> Vec<String> {
    let mut args = Vec::new();
    if !kube.context.is_empty() {
        args.extend(["--context".to_string(), kube.context.clone()]);
    }
    if !kube.kubeconfig.is_empty() {
        args.extend(["--kubeconfig".to_string(), kube.kubeconfig.clone()]);
    }
    if let Target::Kubectl {
        namespace,
        service,
        port,
    } = target
    {
        let namespace = namespace.clone().unwrap_or_else(|| kube.namespace.clone());
        args.extend([
            "--namespace".to_string(),
            namespace,
            "port-forward".to_string(),
            format!("service/{service}"),
            format!(":{port}"),
            "--address".to_string(),
            "127.0.0.1".to_string(),
        ]);
    }
    args
}

/// Reads the local port from kubectl's `Forwarding from 127.0.0.1:<port> -> ...` line.
pub fn forwarded_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("Forwarding from 127.0.0.1:")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Starts `kubectl port-forward` and returns it with a dialer to its local port.
pub async fn start(
    kubectl: &Path,
    target: &Target,
    kube: &KubeSettings,
) -> Result<(KubectlForward, Dialer), String> {
    let mut child = Command::new(kubectl)
        .args(kubectl_args(target, kube))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", kubectl.display()))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("kubectl started without its pipes".to_string());
    };
    let mut process = TunnelProcess::new(child, stderr);
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(KUBECTL_START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = forwarded_port(&line) {
                return Some(port);
            }
        }
        None
    })
    .await;
    let port = match port {
        Ok(Some(port)) => port,
        Ok(None) => return Err(process.failure("kubectl").await),
        Err(_) => {
            return Err(format!(
                "kubectl did not start forwarding within {}s",
                KUBECTL_START_TIMEOUT.as_secs()
            ))
        }
    };
    // Keep reading kubectl's output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let dialer = Dialer::Tcp {
        host: "127.0.0.1".to_string(),
        port,
    };
    Ok((KubectlForward { _process: process }, dialer))
}
