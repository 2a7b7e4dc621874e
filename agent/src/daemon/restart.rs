//! Start-up after a restart, and removing what a node keeps between runs.
//!
//! Order at start: read the state directory and put the state back (policy, CIDR
//! identities, endpoints with their identities), start saving every change, and only
//! then load the datapath (re-using its pinned maps) and serve. A state file that
//! cannot be used stops the start (fail closed: the pinned datapath keeps enforcing
//! the last policy meanwhile) unless `--discard-corrupt-state` says to start empty.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::state::store::StateStore;
use crate::state::{AgentState, RestoreError};

/// Restores `state` from `dir` and makes it save every change there.
pub async fn restore_state(
    state: &AgentState,
    dir: &Path,
    node: &str,
    discard_corrupt: bool,
) -> Result<()> {
    let store = StateStore::new(dir);
    let path = store.path();
    let unusable = |error: &dyn std::fmt::Display| -> Result<()> {
        if !discard_corrupt {
            bail!(
                "{error}\nthe agent refuses to start without its saved state (a pinned \
                 datapath keeps enforcing the last policy meanwhile); repair or remove \
                 the file, or start empty with --discard-corrupt-state"
            );
        }
        let aside = store
            .set_aside()
            .with_context(|| format!("setting {} aside", path.display()))?;
        tracing::warn!(
            "{error}; starting empty as --discard-corrupt-state asks (the file is kept as {})",
            aside.display()
        );
        Ok(())
    };
    match store.load() {
        Ok(None) => tracing::info!(dir = %dir.display(), "no saved state; starting empty"),
        Ok(Some(snapshot)) => match state.restore(snapshot, &path, node).await {
            Ok(report) => tracing::info!(
                file = %path.display(),
                revision = report.revision,
                rules = report.rules,
                endpoints = report.endpoints,
                identities = report.identities,
                reallocated = report.reallocated.len(),
                "restored the saved state"
            ),
            Err(error @ RestoreError::Inconsistent { .. }) => unusable(&error)?,
            Err(error) => return Err(error.into()),
        },
        Err(error) if error.is_unusable_file() => unusable(&error)?,
        Err(error) => return Err(error.into()),
    }
    state
        .persist_to(store, node)
        .context("the state directory is not writable")?;
    Ok(())
}

/// Removes a node's pinned datapath (which stops its enforcement) and, when given,
/// its state directory. Prints what it removed.
pub fn cleanup(pin_dir: Option<&Path>, state_dir: Option<&Path>) -> Result<()> {
    if let Some(dir) = pin_dir {
        for path in ebpf_events::loader::remove_pins(dir)? {
            println!("removed {}", path.display());
        }
    }
    if let Some(dir) = state_dir {
        let store = StateStore::new(dir);
        for path in [
            store.path(),
            dir.join(format!("{}.tmp", crate::state::store::STATE_FILE_NAME)),
            dir.join(format!("{}.corrupt", crate::state::store::STATE_FILE_NAME)),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => println!("removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => println!("removed {}", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }
    Ok(())
}
