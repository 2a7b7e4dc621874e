//! `hubble-lab down`: removes exactly what the state file lists, in reverse order.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::command;
use crate::error::{LabError, Result};
use crate::paths::RunLayout;
use crate::process;
use crate::state::{ProcessKind, StateFile};
use crate::up::ensure_root;

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Steps that failed; the state file is kept when this is not empty.
    pub failures: Vec<String>,
    /// True if there was a lab to remove.
    pub found: bool,
}

/// Removes the lab under `run_dir`: stops its processes (relay, agents, workloads),
/// deletes its files, namespaces, links and directories. Idempotent: without a state
/// file there is nothing to do. Progress goes to `out`.
pub fn down(run_dir: &Path, out: &mut dyn Write) -> Result<DownReport> {
    ensure_root("removing the demo")?;
    let layout = RunLayout::new(run_dir);
    let Some(state_file) = StateFile::load(&layout.state_file())? else {
        let _ = writeln!(
            out,
            "hubble-lab: no lab under {} (no state file); nothing to do",
            run_dir.display()
        );
        return Ok(DownReport::default());
    };
    let state = &state_file.state;
    let mut report = DownReport {
        found: true,
        ..DownReport::default()
    };

    let mut processes = state.processes.clone();
    processes.sort_by_key(|record| match record.kind {
        ProcessKind::Relay => 0,
        ProcessKind::Agent => 1,
        // After the agents, so that they can revoke their leases on the way out.
        ProcessKind::Etcd => 2,
        ProcessKind::Workload => 3,
    });
    for line in process::stop_all(&processes) {
        let _ = writeln!(out, "  {line}");
    }
    let survivors: Vec<String> = processes
        .iter()
        .filter(|record| process::is_alive(record))
        .map(|record| format!("{} (pid {}) is still running", record.role, record.pid))
        .collect();
    report.failures.extend(survivors);

    for file in state.files.iter().rev() {
        match fs::remove_file(file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => report
                .failures
                .push(format!("removing {}: {error}", file.display())),
        }
    }
    for export in &state.export_files {
        for file in export_file_and_backups(export) {
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => report
                    .failures
                    .push(format!("removing {}: {error}", file.display())),
            }
        }
    }
    for tree in state.trees.iter().rev() {
        match fs::remove_dir_all(tree) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => report
                .failures
                .push(format!("removing {}: {error}", tree.display())),
        }
    }
    // cgroups are empty now that the processes are stopped; they go before the
    // hierarchy's mount.
    crate::cgroup::remove_all(&state.cgroups, &mut report.failures, out);
    // The BPF file system goes once its pins are gone (with the trees above).
    for mount in state.mounts.iter().rev() {
        match nix::mount::umount(mount.as_path()) {
            Ok(()) => {
                let _ = writeln!(out, "  unmounted {}", mount.display());
            }
            // Not mounted (any more).
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(errno) => report
                .failures
                .push(format!("unmounting {}: {errno}", mount.display())),
        }
    }
    // Links first: deleting a root-side veth removes its pair at once, while a
    // namespace's links disappear asynchronously after the namespace is deleted.
    for link in state.links.iter().rev() {
        if command::root_link_exists(link) {
            match command::ip(&["link", "del", link]) {
                Ok(()) => {
                    let _ = writeln!(out, "  deleted link {link}");
                }
                // It may have vanished in between (its peer's namespace went away).
                Err(_) if !command::root_link_exists(link) => {}
                Err(error) => report.failures.push(error.to_string()),
            }
        }
    }
    for netns in state.namespaces.iter().rev() {
        if command::netns_exists(netns) {
            match command::ip(&["netns", "del", netns]) {
                Ok(()) => {
                    let _ = writeln!(out, "  deleted network namespace {netns}");
                }
                Err(_) if !command::netns_exists(netns) => {}
                Err(error) => report.failures.push(error.to_string()),
            }
        }
    }
    if !report.failures.is_empty() {
        return Ok(report);
    }
    state_file.remove()?;
    for dir in state.dirs.iter().rev() {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                let _ = writeln!(out, "  kept {} ({error})", dir.display());
            }
        }
    }
    Ok(report)
}

/// An agent's flow export file and the backups its rotation made next to it:
/// `<stem>-<UTC time as 2006-01-02T15-04-05.000><ext>`, optionally with `.gz`.
pub fn export_file_and_backups(export: &Path) -> Vec<PathBuf> {
    let mut found = vec![export.to_path_buf()];
    let (Some(dir), Some(stem)) = (export.parent(), export.file_stem()) else {
        return found;
    };
    let stem = stem.to_string_lossy();
    let ext = export
        .extension()
        .map(|ext| format!(".{}", ext.to_string_lossy()))
        .unwrap_or_default();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_backup_name(&name, &stem, &ext) {
            found.push(entry.path());
        }
    }
    found
}

fn is_backup_name(name: &str, stem: &str, ext: &str) -> bool {
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let Some(time) = name
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(ext))
    else {
        return false;
    };
    time.len() == "2006-01-02T15-04-05.000".len()
        && time
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | 'T' | '.'))
}

/// Turns a report with failures into an error for the command line.
pub fn into_result(report: DownReport, state_file: &Path) -> Result<DownReport> {
    if report.failures.is_empty() {
        return Ok(report);
    }
    Err(LabError::DownIncomplete {
        path: state_file.to_path_buf(),
        failures: report.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::is_backup_name;

    #[test]
    fn only_the_rotations_backups_are_taken() {
        assert!(is_backup_name(
            "events-2026-12-02T06-01-02.123.log",
            "events",
            ".log"
        ));
        assert!(is_backup_name(
            "events-2026-12-02T06-01-02.123.log.gz",
            "events",
            ".log"
        ));
        assert!(!is_backup_name("events.log", "events", ".log"));
        assert!(!is_backup_name("events-mine.log", "events", ".log"));
        assert!(!is_backup_name("agent.log", "events", ".log"));
    }
}
