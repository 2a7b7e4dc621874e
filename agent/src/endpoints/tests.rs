use std::path::Path;
use std::time::Duration;

use super::*;
use crate::dirwatch::Scanner;

const XWING: &str = "name: xwing                # pod name
namespace: default
labels: {org: alliance, class: xwing}
ipv4: 10.200.1.12
ipv6: fd00:200:1::12       # optional
interface: lxc8f3a1c2d     # host-side veth name, in the agent's network namespace
";

#[test]
fn parses_the_architecture_example() {
    let spec = parse_endpoint_file(Path::new("default_xwing.yaml"), XWING).expect("valid file");
    assert_eq!(spec.name, "xwing");
    assert_eq!(spec.ipv4, Ipv4Addr::new(10, 200, 1, 12));
    assert_eq!(spec.ipv6, "fd00:200:1::12".parse().ok());
    assert_eq!(
        security_labels(&spec, "default").to_strings(),
        [
            "k8s:class=xwing",
            "k8s:io.cilium.k8s.policy.cluster=default",
            "k8s:io.kubernetes.pod.namespace=default",
            "k8s:org=alliance",
        ]
    );
}

#[test]
fn bad_fields_name_path_line_and_field() {
    let bad_ip = XWING.replace("10.200.1.12", "10.200.1.300");
    let error =
        parse_endpoint_file(Path::new("/eps/default_xwing.yaml"), &bad_ip).expect_err("bad ip");
    assert_eq!(
        error.to_string(),
        "/eps/default_xwing.yaml: ipv4: invalid IPv4 address syntax at line 4 column 7"
    );
    assert_eq!(error.line(), Some(4));

    let unknown = format!("{XWING}color: red\n");
    let error = parse_endpoint_file(Path::new("x.yaml"), &unknown).expect_err("unknown field");
    assert!(
        error
            .to_string()
            .starts_with("x.yaml: unknown field `color`"),
        "{error}"
    );
    assert_eq!(error.line(), Some(7));

    let missing = XWING.replace("interface: lxc8f3a1c2d", "");
    let error = parse_endpoint_file(Path::new("x.yaml"), &missing).expect_err("missing field");
    assert!(
        error.to_string().contains("missing field `interface`"),
        "{error}"
    );

    let long = XWING.replace("lxc8f3a1c2d", "lxc0123456789abcdef");
    let error = parse_endpoint_file(Path::new("x.yaml"), &long).expect_err("long name");
    assert_eq!(
        error.to_string(),
        "x.yaml: interface: \"lxc0123456789abcdef\" is not an interface name (1 to 15 characters, no '/')"
    );
}

#[test]
fn workloads_name_the_pods_owner() {
    let owned = format!("{XWING}workloads: [{{name: xwing, kind: Deployment}}]\n");
    let spec = parse_endpoint_file(Path::new("x.yaml"), &owned).expect("valid file");
    assert_eq!(
        spec.workloads,
        [WorkloadSpec {
            name: "xwing".into(),
            kind: "Deployment".into()
        }]
    );
    assert!(parse_endpoint_file(Path::new("x.yaml"), XWING)
        .expect("valid file")
        .workloads
        .is_empty());

    let nameless = format!("{XWING}workloads: [{{name: \"\", kind: Deployment}}]\n");
    let error = parse_endpoint_file(Path::new("x.yaml"), &nameless).expect_err("empty name");
    assert_eq!(
        error.to_string(),
        "x.yaml: workloads: {name: \"\", kind: \"Deployment\"} needs a name and a kind of 1 to 253 characters"
    );
    let many = format!(
        "{XWING}workloads: [{}]\n",
        ["{name: a, kind: ReplicaSet}"; MAX_WORKLOADS + 1].join(", ")
    );
    let error = parse_endpoint_file(Path::new("x.yaml"), &many).expect_err("too many");
    assert_eq!(
        error.to_string(),
        "x.yaml: workloads: 5 entries, at most 4 (MAX_WORKLOADS)"
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    // Write then rename, as writers of this directory should.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

#[test]
fn scanner_reports_adds_updates_removes_and_keeps_working_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut scanner = Scanner::<EndpointFiles>::new(dir.path().to_path_buf());
    assert!(scanner.scan().is_empty());

    write(dir.path(), "default_xwing.yaml", XWING);
    let events = scanner.scan();
    let [EndpointEvent::Added(added)] = events.as_slice() else {
        panic!("expected one add, got {events:?}");
    };
    assert_eq!(added.spec.name, "xwing");
    let id = added.id;
    assert!(scanner.scan().is_empty(), "nothing changed");

    // A quick in-place edit of the same size is seen.
    std::fs::write(
        dir.path().join("default_xwing.yaml"),
        XWING.replace("10.200.1.12", "10.200.1.21"),
    )
    .expect("write");
    let events = scanner.scan();
    assert!(
        matches!(events.as_slice(), [EndpointEvent::Updated { .. }]),
        "{events:?}"
    );
    write(dir.path(), "default_xwing.yaml", XWING);
    assert_eq!(scanner.scan().len(), 1);

    // A broken edit is reported once and the endpoint stays.
    write(
        dir.path(),
        "default_xwing.yaml",
        &XWING.replace("10.200.1.12", "ten"),
    );
    let events = scanner.scan();
    let [EndpointEvent::Rejected { error, .. }] = events.as_slice() else {
        panic!("expected a rejection, got {events:?}");
    };
    assert_eq!(error.line(), Some(4));
    assert!(scanner.scan().is_empty(), "the same error is reported once");

    // A good edit updates the endpoint, keeping its id.
    write(
        dir.path(),
        "default_xwing.yaml",
        &XWING.replace("10.200.1.12", "10.200.1.13"),
    );
    let events = scanner.scan();
    let [EndpointEvent::Updated { previous, current }] = events.as_slice() else {
        panic!("expected an update, got {events:?}");
    };
    assert_eq!(previous.spec.ipv4.to_string(), "10.200.1.12");
    assert_eq!(current.spec.ipv4.to_string(), "10.200.1.13");
    assert_eq!(current.id, id);

    // A second file for the same pod is rejected.
    write(dir.path(), "copy.yaml", XWING);
    let events = scanner.scan();
    assert!(
        matches!(
            events.as_slice(),
            [EndpointEvent::Rejected {
                error: EndpointError::Duplicate { .. },
                ..
            }]
        ),
        "{events:?}"
    );

    // Files that are not YAML or are hidden are ignored.
    std::fs::write(dir.path().join("notes.txt"), "hello").expect("write");
    std::fs::write(dir.path().join(".hidden.yaml"), "bad").expect("write");

    std::fs::remove_file(dir.path().join("default_xwing.yaml")).expect("remove");
    let events = scanner.scan();
    // The xwing file is gone, and the copy now takes its place.
    assert!(
        matches!(events.first(), Some(EndpointEvent::Removed(e)) if e.id == id),
        "{events:?}"
    );
    assert!(
        matches!(events.get(1), Some(EndpointEvent::Added(e)) if e.spec.name == "xwing"),
        "{events:?}"
    );
}

#[tokio::test]
async fn watcher_emits_events_for_existing_and_new_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "default_xwing.yaml", XWING);
    let mut config = WatcherConfig::new(dir.path());
    // A long period: the second event must come from the notification.
    config.rescan_interval = Duration::from_secs(3600);
    let (watcher, mut events) = watch_endpoints(config).expect("watch");

    let first = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("initial scan in time");
    assert!(
        matches!(first, Some(EndpointEvent::Added(ref e)) if e.spec.name == "xwing"),
        "{first:?}"
    );

    write(
        dir.path(),
        "default_tiefighter.yaml",
        &XWING
            .replace("xwing", "tiefighter")
            .replace("alliance", "empire"),
    );
    let second = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("notification in time");
    assert!(
        matches!(second, Some(EndpointEvent::Added(ref e)) if e.spec.name == "tiefighter"),
        "{second:?}"
    );
    assert!(
        watcher
            .stats()
            .rescans
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn periodic_rescan_finds_changes_without_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut scanner_dir_config = WatcherConfig::new(dir.path().join("eps"));
    scanner_dir_config.rescan_interval = Duration::from_millis(50);
    scanner_dir_config.notifications = false;
    let (_watcher, mut events) =
        watch_endpoints(scanner_dir_config).expect("watch creates the directory");
    write(&dir.path().join("eps"), "a.yaml", XWING);
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("event in time");
    assert!(matches!(event, Some(EndpointEvent::Added(_))), "{event:?}");
}
