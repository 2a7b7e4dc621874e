//! Starting detached processes and stopping them again by PID and start time.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::command;
use crate::error::{LabError, Result};
use crate::state::{ProcessKind, ProcessRecord};

/// How long `down` waits after SIGTERM before sending SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for a process to disappear after SIGKILL.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

/// How often waiting loops look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What to start and where.
pub struct Launch<'a> {
    pub role: String,
    pub kind: ProcessKind,
    /// Network namespace to run in; `None` for the root namespace.
    pub netns: Option<&'a str>,
    /// cgroup to join before the program starts (a pod's, see [`crate::cgroup`]).
    pub cgroup: Option<std::path::PathBuf>,
    pub program: &'a Path,
    pub args: Vec<String>,
    /// File receiving standard output and standard error (appended to).
    pub log: &'a Path,
}

/// Starts a process in its own session (`setsid`), optionally inside a network
/// namespace (`ip netns exec`), with output appended to its log. Neither `setsid` (the
/// child is not a process group leader) nor `ip netns exec` forks, so the returned PID
/// is the program's own.
pub fn spawn_detached(launch: Launch<'_>) -> Result<ProcessRecord> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(netns) = launch.netns {
        argv.extend(["ip", "netns", "exec", netns].map(String::from));
    }
    argv.push(launch.program.display().to_string());
    argv.extend(launch.args.iter().cloned());
    if let Some(cgroup) = &launch.cgroup {
        argv = crate::cgroup::wrap(cgroup, argv);
    }
    spawn_argv(
        launch.role,
        launch.kind,
        launch.netns.map(String::from),
        argv,
        launch.log,
    )
}

/// Starts a recorded process again with the same command line and log, for
/// `hubble-lab start`. Returns the new record.
pub fn respawn(record: &ProcessRecord) -> Result<ProcessRecord> {
    spawn_argv(
        record.role.clone(),
        record.kind,
        record.netns.clone(),
        record.command.clone(),
        &record.log,
    )
}

fn spawn_argv(
    role: String,
    kind: ProcessKind,
    netns: Option<String>,
    argv: Vec<String>,
    log_path: &Path,
) -> Result<ProcessRecord> {
    if argv.is_empty() {
        return Err(LabError::InvalidConfig {
            what: "command line",
            value: role,
            reason: "is empty".to_string(),
        });
    }
    let log = open_log(log_path)?;
    let log_copy = log
        .try_clone()
        .map_err(|error| LabError::io("duplicating the handle of", log_path, error))?;
    let mut process = if command::in_path("setsid") {
        let mut process = Command::new("setsid");
        process.args(&argv);
        process
    } else {
        // Without util-linux's setsid, a new process group still keeps the child out
        // of the terminal's job control.
        use std::os::unix::process::CommandExt;
        let mut process = Command::new(&argv[0]);
        process.args(&argv[1..]).process_group(0);
        process
    };
    let child = process
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_copy)
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: argv.join(" "),
            source,
        })?;
    let pid = i32::try_from(child.id()).map_err(|_| LabError::InvalidConfig {
        what: "process id",
        value: child.id().to_string(),
        reason: "does not fit a pid_t".to_string(),
    })?;
    // The Child handle is dropped without waiting: the process outlives the lab command.
    drop(child);
    let start_time = start_time(pid).unwrap_or(0);
    Ok(ProcessRecord {
        role,
        kind,
        pid,
        start_time,
        netns,
        log: log_path.to_path_buf(),
        command: argv,
    })
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| LabError::io("opening log", path, error))
}

/// Reads a process's state letter and start time from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the
    // last ')'. Field 3 is the state, field 22 the start time.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Start time of a process in clock ticks since boot, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// True if the recorded process still runs: same PID, same start time, not a zombie.
pub fn is_alive(record: &ProcessRecord) -> bool {
    match stat(record.pid) {
        Some((state, start)) => state != 'Z' && state != 'X' && start == record.start_time,
        None => false,
    }
}

/// Stops the recorded processes that still run: SIGTERM, then SIGKILL after
/// [`TERM_GRACE`]. A PID whose start time differs belongs to someone else and is left
/// alone. Returns one line per process saying what happened.
pub fn stop_all(records: &[ProcessRecord]) -> Vec<String> {
    let mut report = Vec::new();
    let mut running = Vec::new();
    for record in records {
        if !is_alive(record) {
            report.push(format!(
                "{} (pid {}) was not running",
                record.role, record.pid
            ));
            continue;
        }
        match kill(Pid::from_raw(record.pid), Signal::SIGTERM) {
            Ok(()) => running.push(record),
            Err(error) => report.push(format!(
                "{} (pid {}): SIGTERM failed: {error}",
                record.role, record.pid
            )),
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    while running.iter().any(|record| is_alive(record)) && Instant::now() < deadline {
        thread::sleep(POLL_INTERVAL);
    }
    let mut killed = Vec::new();
    for record in running {
        if !is_alive(record) {
            report.push(format!("{} (pid {}) stopped", record.role, record.pid));
            continue;
        }
        match kill(Pid::from_raw(record.pid), Signal::SIGKILL) {
            Ok(()) => killed.push(record),
            Err(error) => report.push(format!(
                "{} (pid {}): SIGKILL failed: {error}",
                record.role, record.pid
            )),
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    while killed.iter().any(|record| is_alive(record)) && Instant::now() < deadline {
        thread::sleep(POLL_INTERVAL);
    }
    for record in killed {
        let outcome = if is_alive(record) {
            "did not exit after SIGKILL"
        } else {
            "killed (SIGKILL after the grace period)"
        };
        report.push(format!("{} (pid {}) {outcome}", record.role, record.pid));
    }
    report
}

/// Kills a recorded process at once (SIGKILL), as a crash would, and waits until it is
/// gone. A process that already exited is fine.
pub fn kill_now(record: &ProcessRecord) -> Result<()> {
    if !is_alive(record) {
        return Ok(());
    }
    kill(Pid::from_raw(record.pid), Signal::SIGKILL).map_err(|error| LabError::Signal {
        role: record.role.clone(),
        pid: record.pid,
        signal: "SIGKILL",
        reason: error.to_string(),
    })?;
    let deadline = Instant::now() + KILL_WAIT;
    while is_alive(record) && Instant::now() < deadline {
        thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Waits until `ready` returns true, failing early if the process exits.
pub fn wait_ready(
    record: &ProcessRecord,
    timeout: Duration,
    waiting_for: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !is_alive(record) {
            return Err(LabError::ExitedEarly {
                role: record.role.clone(),
                log: record.log.clone(),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                role: record.role.clone(),
                seconds: timeout.as_secs(),
                waiting_for: waiting_for.to_string(),
                log: record.log.clone(),
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// True if the network namespace of `pid` has a `protocol` ("tcp" or "udp") socket
/// of either family bound to `port` (TCP: in LISTEN state), as listed in
/// `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`.
pub fn has_socket(pid: i32, protocol: &str, port: u16) -> bool {
    [protocol.to_string(), format!("{protocol}6")]
        .iter()
        .any(|table| table_has_port(pid, table, port))
}

fn table_has_port(pid: i32, table: &str, port: u16) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
        return false;
    };
    let wanted_port = format!("{port:04X}");
    text.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            return false;
        };
        let port_matches = local.rsplit(':').next() == Some(wanted_port.as_str());
        // 0A is TCP_LISTEN; UDP sockets show 07 (TCP_CLOSE) when unconnected.
        port_matches && (!table.starts_with("tcp") || *state == "0A")
    })
}
