use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::endpoints::{security_labels, EndpointSpec, EndpointStatus};
use crate::policy::parse_policy;

const RULE1: &str = include_str!("../../../../examples/policies/rule1.yaml");

fn xwing() -> Endpoint {
    let spec = EndpointSpec {
        name: "xwing".into(),
        namespace: "default".into(),
        labels: BTreeMap::from([
            ("org".to_string(), "alliance".to_string()),
            ("class".to_string(), "xwing".to_string()),
        ]),
        ipv4: "10.200.1.12".parse().expect("address"),
        ipv6: "fd00:200:1::12".parse().ok(),
        interface: "lxc8f3a1c2d".into(),
        workloads: Vec::new(),
    };
    Endpoint {
        id: 1234,
        path: PathBuf::from("/eps/default_xwing.yaml"),
        labels: security_labels(&spec, "default"),
        spec,
        identity: Identity(257),
        status: EndpointStatus::Ready,
    }
}

fn snapshot() -> Snapshot {
    let endpoint = xwing();
    let endpoint_id = endpoint.id;
    Snapshot {
        version: STATE_FORMAT_VERSION,
        node: "node1".into(),
        policy: PolicySnapshot {
            revision: 2,
            rules: parse_policy(RULE1).expect("rule1 parses").rules,
        },
        identities: vec![IdentityRecord {
            id: endpoint.identity,
            labels: endpoint.labels.clone(),
        }],
        endpoints: vec![endpoint],
        cidr_identities: vec![CidrRecord {
            prefix: "192.0.2.0/24".into(),
            id: Identity(1 << 24),
        }],
        services: Default::default(),
        fqdn: vec![crate::fqdn::FqdnRecord {
            endpoint: endpoint_id,
            fqdn: "api.github.com.".into(),
            ttl: 30,
            lookup_time: 1_796_000_000,
            ips: vec!["192.0.2.10".parse().expect("ip")],
        }],
        proxy_ports: Vec::new(),
    }
}

fn store() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = StateStore::new(dir.path().join("node1"));
    (dir, store)
}

#[test]
fn a_missing_file_is_a_first_start() {
    let (_dir, store) = store();
    assert!(store.load().expect("no error").is_none());
}

#[test]
fn round_trip_keeps_rules_revision_endpoints_and_identities() {
    let (_dir, store) = store();
    let written = snapshot();
    store.save(&written).expect("saved");
    let read = store.load().expect("readable").expect("present");
    assert_eq!(read, written);
    // The rules read back print exactly as before (what `policy get` shows).
    assert_eq!(
        serde_json::to_string(&read.policy.rules).expect("json"),
        serde_json::to_string(&written.policy.rules).expect("json")
    );
}

#[test]
fn saving_replaces_the_file_whole_and_leaves_no_temporary_file() {
    let (_dir, store) = store();
    let mut first = snapshot();
    store.save(&first).expect("saved");
    first.policy.revision = 3;
    first.endpoints.clear();
    store.save(&first).expect("saved again");
    assert_eq!(store.load().expect("readable"), Some(first.clone()));
    let names: Vec<String> = fs::read_dir(store.dir())
        .expect("listable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![STATE_FILE_NAME.to_string()]);

    // A crash during a write leaves a half-written temporary file: the state file
    // itself is untouched and the next save overwrites the leftover.
    let temporary = store.dir().join(format!("{STATE_FILE_NAME}.tmp"));
    fs::write(&temporary, b"{\"version\": 1, \"node\": \"no").expect("written");
    assert_eq!(store.load().expect("readable"), Some(first.clone()));
    store.save(&first).expect("saved over the leftover");
    assert!(!temporary.exists());
    assert_eq!(store.load().expect("readable"), Some(first));
}

#[test]
fn the_file_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = store();
    store.save(&snapshot()).expect("saved");
    let mode = fs::metadata(store.path())
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_corrupt_file_is_refused_with_its_path_and_the_fault() {
    let (_dir, store) = store();
    store.save(&snapshot()).expect("saved");
    let text = fs::read_to_string(store.path()).expect("readable");
    // Cut in the middle, as a disk that lost the end of the file.
    fs::write(store.path(), &text[..text.len() / 2]).expect("written");
    let error = store.load().expect_err("truncated file");
    assert!(error.is_unusable_file());
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "state file {} is corrupt: ",
            store.path().display()
        )),
        "{message}"
    );
    assert!(message.contains("line"), "{message}");

    // Valid JSON with a wrong field is corrupt too, naming the field.
    let wrong = text.replacen("\"revision\": 2", "\"revision\": \"two\"", 1);
    fs::write(store.path(), wrong).expect("written");
    let message = store.load().expect_err("bad revision").to_string();
    assert!(
        message.contains("invalid type: string \"two\""),
        "{message}"
    );

    let unknown = text.replacen("\"node\"", "\"colour\": 1, \"node\"", 1);
    fs::write(store.path(), unknown).expect("written");
    let message = store.load().expect_err("unknown field").to_string();
    assert!(message.contains("unknown field `colour`"), "{message}");

    let bad_prefix = text.replacen("192.0.2.0/24", "192.0.2.0/33", 1);
    fs::write(store.path(), bad_prefix).expect("written");
    let message = store.load().expect_err("bad prefix").to_string();
    assert!(message.contains("\"192.0.2.0/33\""), "{message}");
}

#[test]
fn another_format_version_is_refused_with_both_versions() {
    let (_dir, store) = store();
    let mut future = snapshot();
    future.version = STATE_FORMAT_VERSION + 1;
    store.save(&future).expect("saved");
    let error = store.load().expect_err("other version");
    assert!(error.is_unusable_file());
    assert_eq!(
        error.to_string(),
        format!(
            "state file {} has format version {}; this agent reads version {}",
            store.path().display(),
            STATE_FORMAT_VERSION + 1,
            STATE_FORMAT_VERSION
        )
    );

    fs::write(store.path(), b"{\"node\": \"node1\"}").expect("written");
    let message = store.load().expect_err("no version").to_string();
    assert!(
        message.ends_with("is corrupt: no \"version\" field"),
        "{message}"
    );
}

#[test]
fn an_unusable_file_can_be_set_aside() {
    let (_dir, store) = store();
    fs::create_dir_all(store.dir()).expect("created");
    fs::write(store.path(), b"not json").expect("written");
    let aside = store.set_aside().expect("moved");
    assert!(aside.ends_with("state.json.corrupt"));
    assert!(store.load().expect("no file now").is_none());
}
