//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz) and of their corpus replay
//! test (`tests/tests/fuzz_replay.rs`): both call these, so what runs for minutes by
//! hand and what CI replays is the same code.
//!
//! Each takes bytes as the agent receives them from outside: a policy document (admin
//! socket), an endpoint file (endpoints directory) and a kvstore entry (etcd).

use std::collections::BTreeMap;
use std::path::Path;

use crate::admin::format_policy_get;
use crate::endpoints::{parse_endpoint_file, security_labels};
use crate::identity::{reserved_identities, CidrIdentities, Identity};
use crate::kvstore::keys::{decode_json, decode_labels, parse_identity, IpcacheValue};
use crate::labels::LabelSet;
use crate::policy::{compile, parse_policy, CompileInput, PolicyRepository};
use peer_service::sources::etcd::NodeValue;

/// The cluster name the fuzzed documents are read in.
const CLUSTER: &str = "default";

/// A policy document (YAML or JSON, as `hubble-agent policy import` sends it): parsed,
/// imported into a repository, printed as `policy get` prints it and compiled for the
/// Star Wars demo's endpoints, as the agent does on import. The rules `policy get`
/// prints import again as the same rules.
pub fn policy_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_policy(text) else {
        return;
    };
    let mut repository = PolicyRepository::new();
    let _ = repository.import_parsed(parsed);
    let printed = repository.rules_json();
    let _ = format_policy_get(&printed, repository.revision());
    match parse_policy(&printed) {
        Ok(again) => assert_eq!(
            again.rules,
            repository.rules(),
            "printed rules import as themselves: {printed}"
        ),
        Err(e) => panic!("printed rules do not import again: {e}: {printed}"),
    }
    let mut cidrs = CidrIdentities::new();
    if cidrs.sync(&repository.cidr_prefixes()).is_err() {
        return;
    }
    let local = demo_endpoints();
    let mut identities = reserved_identities();
    identities.extend(local.iter().cloned());
    let _ = compile(&CompileInput {
        rules: repository.rules(),
        local: &local,
        identities: &identities,
        cidrs: &cidrs,
        cluster: CLUSTER,
        fqdn: &crate::policy::FqdnMatcher::new(repository.rules()),
        fqdn_names: &[],
    });
}

/// The text of an endpoint file, checked as the endpoint watcher checks it; an accepted
/// endpoint gets its security labels.
pub fn endpoint_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/default_pod.yaml");
    if let Ok(spec) = parse_endpoint_file(path, text) {
        let labels = security_labels(&spec, CLUSTER);
        assert!(!labels.is_empty(), "a pod has at least its namespace label");
        // The agent writes endpoints back as YAML (its state); they must read the same.
        if let Ok(written) = serde_yaml::to_string(&spec) {
            assert_eq!(
                parse_endpoint_file(path, &written).as_ref(),
                Ok(&spec),
                "a written endpoint reads back: {written}"
            );
        }
    }
}

/// A kvstore entry another node wrote. The first byte picks the key space (identity
/// number, identity labels, ipcache entry, node registration); the rest is the value,
/// read as the agent's watchers read it.
pub fn kvstore_value(data: &[u8]) {
    let Some((&kind, value)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            let _ = parse_identity("cilium/state/identities/v1/labels/fuzz", value);
        }
        1 => {
            let text = String::from_utf8_lossy(value);
            if let Ok(labels) = decode_labels(&text) {
                let again = crate::kvstore::keys::encode_labels(&labels);
                assert_eq!(
                    decode_labels(&again).as_ref(),
                    Ok(&labels),
                    "encoded labels decode to themselves"
                );
            }
        }
        2 => round_trip::<IpcacheValue>("cilium/state/ip/v1/default/fuzz", value),
        _ => round_trip::<NodeValue>("cilium/state/nodes/v1/default/fuzz", value),
    }
}

/// A JSON value another node wrote decodes, and what this node would write for it
/// decodes to the same value.
fn round_trip<T>(key: &str, value: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(decoded) = decode_json::<T>(key, value) else {
        return;
    };
    let written = serde_json::to_vec(&decoded).unwrap_or_default();
    assert_eq!(
        decode_json::<T>(key, &written).ok().as_ref(),
        Some(&decoded),
        "a written value reads back: {}",
        String::from_utf8_lossy(&written)
    );
}

/// The Star Wars demo's pods as local endpoints.
fn demo_endpoints() -> Vec<(Identity, LabelSet)> {
    let pods: [(u32, &[(&str, &str)]); 3] = [
        (1001, &[("org", "empire"), ("class", "deathstar")]),
        (1002, &[("org", "empire"), ("class", "tiefighter")]),
        (1003, &[("org", "alliance"), ("class", "xwing")]),
    ];
    pods.iter()
        .map(|(id, labels)| {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            (
                Identity(*id),
                LabelSet::for_pod(&labels, "default", CLUSTER),
            )
        })
        .collect()
}
