//! Helpers for the end-to-end tests: finding the built binaries, running them with a
//! deadline, and skipping clearly when not root or a package is missing (failing
//! instead under `CI=true`, see [`skip`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod fuzz;
mod lab;
pub mod prometheus;
pub mod skip;
pub use lab::{Lab, COMMAND_TIMEOUT};
pub use skip::skip;

/// Whether an end-to-end test can run as root; skips it otherwise (fails under CI).
#[track_caller]
pub fn require_root(test: &str) -> bool {
    skip::require_root(test, "network namespaces, eBPF programs")
}

/// A memory figure of process `pid` (`self` for this one) from `/proc/<pid>/status`, in
/// KiB: `field` is its name without the colon (`VmRSS`, `VmHWM`, `RssAnon`, ...). None
/// when the process or the field is not there.
pub fn memory_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// [`memory_kib`] of this process, which always has the field.
pub fn own_memory_kib(field: &str) -> u64 {
    memory_kib("self", field).unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// The directory holding the workspace's binaries (`target/debug` for `cargo test`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The path of a workspace binary, failing clearly when it has not been built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} is not built (run `cargo build --workspace` first)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `cmd` to completion within `timeout`, returning its output whatever its status.
/// Both pipes are drained while it runs, so a chatty command cannot block on them.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{cmd:?} did not finish within {timeout:?}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Runs `cmd` and returns its stdout, failing with its stderr when it fails.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let out = run_with_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Retries `check` until it returns `Ok(Some(_))` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            match last_err {
                Some(e) => return Err(e.context(format!("condition not met within {timeout:?}"))),
                None => bail!("condition not met within {timeout:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
