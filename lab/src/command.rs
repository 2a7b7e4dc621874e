//! Running `ip` and other external commands with errors that name the command and its
//! standard error.

use std::path::Path;
use std::process::{Command, Output};

use crate::error::{LabError, Result};

/// Directory where `ip netns add` mounts named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Renders a command line for messages.
pub fn display(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args...`, returning its output or an error with its standard error.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let command = display(program, args);
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// Runs `ip args...` in the root namespace.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args).map(drop)
}

/// Runs `ip -n <netns> args...`, i.e. inside a named network namespace.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full).map(drop)
}

/// Runs `ip netns exec <netns> program args...` and returns its output even when the
/// program fails (callers interpret the exit status).
pub fn exec_in(netns: &str, program: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    Command::new("ip")
        .args(&full)
        .output()
        .map_err(|source| LabError::Spawn {
            command: display("ip", &full),
            source,
        })
}

/// [`exec_in`], with the process first joining `cgroup` when given (a pod's cgroup,
/// so its sockets get service load balancing; see [`crate::cgroup`]).
pub fn exec_in_cgroup(
    netns: &str,
    cgroup: Option<&Path>,
    program: &str,
    args: &[&str],
) -> Result<Output> {
    let Some(cgroup) = cgroup else {
        return exec_in(netns, program, args);
    };
    let mut argv: Vec<String> = ["ip", "netns", "exec", netns, program]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(args.iter().map(|s| s.to_string()));
    let argv = crate::cgroup::wrap(cgroup, argv);
    Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| LabError::Spawn {
            command: argv.join(" "),
            source,
        })
}

/// Returns true if a named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_RUN_DIR).join(name).exists()
}

/// Returns true if a link with this name exists in the root network namespace.
pub fn root_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Returns true if `program` is found in one of the `PATH` directories.
pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).any(|directory| directory.join(program).is_file())
        })
        .unwrap_or(false)
}
