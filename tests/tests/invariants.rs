//! Architecture invariants of the dependency graph (ARCHITECTURE.md, "Invariants"):
//! the relay, the CLI and the UI never depend, through normal dependencies at any
//! depth, on aya, on the flow-metrics crate (`metrics`), on the agent, on
//! `ebpf-events` with its `loader` feature, or on `etcd-client` (the peer service's etcd
//! node source is its feature `etcd`, which only the agent turns on).
//!
//! The graph comes from `cargo metadata --format-version 1`. Cargo's own resolve unifies
//! features over the whole workspace (the agent turns `ebpf-events/loader` on for
//! everyone), so the features each crate turns on are followed here from the declared
//! dependencies instead: what one binary's build would actually enable.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The crates that must stay small: they run on laptops and build without clang or root.
const CLIENT_CRATES: [&str; 3] = ["relay", "hubble-cli", "ui-backend"];

/// A crate's name and the features turned on in it.
type Enabled = BTreeMap<String, BTreeSet<String>>;

/// The workspace's packages by name (every version of a name merged into one list).
struct Graph {
    packages: BTreeMap<String, Vec<Value>>,
}

impl Graph {
    fn load() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let output = Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(workspace)
            .output()
            .with_context(|| format!("running {cargo} metadata"))?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: Value =
            serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
        let mut packages: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for package in metadata["packages"]
            .as_array()
            .context("cargo metadata without packages")?
        {
            let name = package["name"].as_str().context("package without name")?;
            packages
                .entry(name.to_owned())
                .or_default()
                .push(package.clone());
        }
        Ok(Self { packages })
    }

    /// Every crate a build of `root` compiles through normal dependencies, with the
    /// features turned on in each.
    fn normal_closure(&self, root: &str) -> Result<Enabled> {
        let mut enabled = Enabled::new();
        enabled.insert(root.to_owned(), BTreeSet::from(["default".to_owned()]));
        // Features only ever get added, so this reaches a fixed point.
        loop {
            let mut next = enabled.clone();
            for (name, features) in &enabled {
                for package in self.packages.get(name).into_iter().flatten() {
                    propagate(package, features, &mut next)?;
                }
            }
            if next == enabled {
                return Ok(enabled);
            }
            enabled = next;
        }
    }
}

/// Adds to `out` what `package` with `features` turns on: its own implied features, its
/// non-optional and activated optional normal dependencies, and their features.
fn propagate(package: &Value, features: &BTreeSet<String>, out: &mut Enabled) -> Result<()> {
    let name = package["name"].as_str().context("package without name")?;
    let table = &package["features"];
    // Close the package's own features ("default" may not exist: then nothing).
    let mut own: BTreeSet<String> = features.clone();
    let mut pending: Vec<String> = own.iter().cloned().collect();
    let mut activated_deps = BTreeSet::new();
    let mut dep_features: Vec<(String, String)> = Vec::new();
    while let Some(feature) = pending.pop() {
        for value in table[&feature].as_array().into_iter().flatten() {
            let value = value.as_str().context("feature value not a string")?;
            if let Some(dep) = value.strip_prefix("dep:") {
                activated_deps.insert(dep.to_owned());
            } else if let Some((dep, dep_feature)) = value.split_once('/') {
                let weak = dep.ends_with('?');
                let dep = dep.trim_end_matches('?');
                if !weak {
                    activated_deps.insert(dep.to_owned());
                }
                dep_features.push((dep.to_owned(), dep_feature.to_owned()));
            } else if own.insert(value.to_owned()) {
                pending.push(value.to_owned());
            }
        }
        // An optional dependency without `dep:` is also a feature of its own name.
        activated_deps.insert(feature.clone());
    }
    out.entry(name.to_owned()).or_default().extend(own);
    for dependency in package["dependencies"]
        .as_array()
        .context("package without dependencies")?
    {
        if !dependency["kind"].is_null() {
            continue; // dev- and build-dependencies are not part of the binary
        }
        let dep_name = dependency["name"]
            .as_str()
            .context("dependency without name")?;
        let local = dependency["rename"].as_str().unwrap_or(dep_name);
        let optional = dependency["optional"].as_bool().unwrap_or(false);
        if optional && !activated_deps.contains(local) {
            continue;
        }
        let turned_on = out.entry(dep_name.to_owned()).or_default();
        if dependency["uses_default_features"]
            .as_bool()
            .unwrap_or(true)
        {
            turned_on.insert("default".to_owned());
        }
        for feature in dependency["features"].as_array().into_iter().flatten() {
            if let Some(feature) = feature.as_str() {
                turned_on.insert(feature.to_owned());
            }
        }
        for (dep, feature) in &dep_features {
            if dep == local {
                turned_on.insert(feature.clone());
            }
        }
    }
    Ok(())
}

/// What `closure` holds that the client crates must not depend on.
fn violations(closure: &Enabled) -> Vec<String> {
    let mut found = Vec::new();
    for (name, features) in closure {
        if name == "aya" || name.starts_with("aya-") {
            found.push(format!("{name} (eBPF loading belongs to the agent)"));
        }
        if name == "metrics" {
            found.push("metrics (flow handlers belong to the agent)".to_owned());
        }
        if name == "agent" {
            found.push("agent".to_owned());
        }
        if name == "ebpf-events" && features.contains("loader") {
            found.push("ebpf-events with feature `loader`".to_owned());
        }
        if name == "etcd-client" {
            found.push("etcd-client (the cluster store belongs to the agent)".to_owned());
        }
    }
    found
}

#[test]
fn relay_cli_and_ui_never_depend_on_the_datapath_flow_handlers_agent_or_etcd() -> Result<()> {
    let graph = Graph::load()?;
    let mut report = Vec::new();
    for client in CLIENT_CRATES {
        if !graph.packages.contains_key(client) {
            bail!("workspace has no crate named {client}");
        }
        let closure = graph.normal_closure(client)?;
        for violation in violations(&closure) {
            report.push(format!("{client} depends on {violation}"));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    Ok(())
}

/// The check sees what it must: the agent does load eBPF, run flow handlers and talk
/// to etcd.
#[test]
fn the_agent_is_seen_to_depend_on_what_clients_must_not() -> Result<()> {
    let graph = Graph::load()?;
    let closure = graph.normal_closure("agent")?;
    let found = violations(&closure);
    for expected in [
        "aya (eBPF loading belongs to the agent)",
        "metrics (flow handlers belong to the agent)",
        "ebpf-events with feature `loader`",
        "etcd-client (the cluster store belongs to the agent)",
    ] {
        assert!(
            found.iter().any(|v| v == expected),
            "missing {expected:?} in {found:?}"
        );
    }
    // And an ordinary dependency's features are followed: the observer does not turn
    // on the loader, the agent does.
    let observer = graph.normal_closure("observer")?;
    assert!(observer.contains_key("ebpf-events"));
    assert!(
        violations(&observer).is_empty(),
        "{:?}",
        violations(&observer)
    );
    // An optional dependency is followed only when a feature turns it on: the peer
    // service alone has no etcd client, with feature `etcd` it has.
    let peer = graph.normal_closure("peer-service")?;
    assert!(!peer.contains_key("etcd-client"), "{:?}", peer.keys());
    let peer_with_etcd = {
        let mut enabled = Enabled::new();
        enabled.insert(
            "peer-service".to_owned(),
            BTreeSet::from(["etcd".to_owned()]),
        );
        for package in graph.packages.get("peer-service").into_iter().flatten() {
            propagate(package, &BTreeSet::from(["etcd".to_owned()]), &mut enabled)?;
        }
        enabled
    };
    assert!(peer_with_etcd.contains_key("etcd-client"));
    Ok(())
}
