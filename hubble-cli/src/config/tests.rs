//! Settings precedence (flag, environment, file, default) and `config` output.

use std::collections::BTreeMap;

use super::*;
use crate::cmd::config as config_cmd;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings_with_file(
    file_text: &str,
    flags: &[(&str, Value)],
    environment: &[(&str, &str)],
) -> (tempfile::TempDir, Settings) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, file_text).expect("write config");
    let mut flag_map: BTreeMap<String, Value> = flags
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    flag_map.insert("config".into(), Value::Str(path.display().to_string()));
    (dir, Settings::from_parts(flag_map, env(environment)))
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let file = "server: file:4245\ntimeout: 30s\ntls: true\ntls-server-name: from-file\n";
    let (_dir, s) = settings_with_file(
        file,
        &[("server", Value::Str("flag:4245".into()))],
        &[("server", "env:4245"), ("timeout", "7s")],
    );
    assert_eq!(s.get_string("server"), "flag:4245");
    assert_eq!(s.get_duration("timeout"), 7_000_000_000);
    assert!(s.get_bool("tls"));
    assert_eq!(s.get_string("tls-server-name"), "from-file");
    assert_eq!(s.get_duration("request-timeout"), 12_000_000_000);
    assert_eq!(s.get_string("kube-namespace"), "kube-system");

    let (_dir, s) = settings_with_file(file, &[], &[("server", "env:4245")]);
    assert_eq!(s.get_string("server"), "env:4245");
    let (_dir, s) = settings_with_file(file, &[], &[]);
    assert_eq!(s.get_string("server"), "file:4245");
    let (_dir, s) = settings_with_file("", &[], &[]);
    assert_eq!(s.get_string("server"), DEFAULT_SERVER);
}

#[test]
fn environment_values_are_strings_and_lists_split_on_spaces() {
    let (_dir, s) = settings_with_file(
        "",
        &[],
        &[
            ("tls-ca-cert-files", "a.pem b.pem"),
            ("debug", "true"),
            ("tls", "nope"),
        ],
    );
    assert_eq!(
        s.get_string_slice("tls-ca-cert-files"),
        vec!["a.pem", "b.pem"]
    );
    assert!(s.get_bool("debug"));
    assert!(!s.get_bool("tls"));
    assert_eq!(s.get("debug"), Value::Str("true".into()));
}

#[test]
fn config_view_merges_every_source() {
    let (dir, s) = settings_with_file(
        "tls-ca-cert-files:\n  - /etc/ca.pem\nallowlist: ['{\"verdict\":[\"DROPPED\"]}']\n",
        &[("timeout", Value::Str("1m0s".into()))],
        &[("debug", "true")],
    );
    let view = config_cmd::view(&s).replace(&dir.path().display().to_string(), "<dir>");
    expect_test::expect![[r#"
        allowlist:
            - '{"verdict":["DROPPED"]}'
        basic-auth-password: ""
        basic-auth-username: ""
        config: <dir>/config.yaml
        debug: "true"
        kube-context: ""
        kube-namespace: kube-system
        kubeconfig: ""
        port-forward: false
        port-forward-port: "4245"
        port-forward-relay-address: ""
        port-forward-target: ""
        request-timeout: 12s
        server: localhost:4245
        timeout: 1m0s
        tls: false
        tls-allow-insecure: false
        tls-ca-cert-files:
            - /etc/ca.pem
        tls-client-cert-file: ""
        tls-client-key-file: ""
        tls-server-name: ""
    "#]]
    .assert_eq(&view);
}

#[test]
fn config_get_and_set() {
    let (dir, s) = settings_with_file("", &[], &[]);
    assert_eq!(
        config_cmd::get(&s, "server").expect("get"),
        "localhost:4245\n"
    );
    assert_eq!(config_cmd::get(&s, "timeout").expect("get"), "5s\n");
    assert_eq!(config_cmd::get(&s, "tls").expect("get"), "false\n");
    assert_eq!(
        config_cmd::get(&s, "tls-ca-cert-files").expect("get"),
        "[]\n"
    );
    assert_eq!(
        config_cmd::get(&s, "port-forward-port").expect("get"),
        "\"4245\"\n"
    );
    assert_eq!(
        config_cmd::get(&s, "nope")
            .expect_err("unknown")
            .to_string(),
        "unknown key: nope"
    );

    config_cmd::set(&s, "server", "unix:///var/run/cilium/hubble.sock").expect("set");
    config_cmd::set(&s, "tls", "true").expect("set");
    config_cmd::set(&s, "request-timeout", "30").expect("set");
    config_cmd::set(&s, "tls-ca-cert-files", "a.pem,b.pem").expect("set");
    let path = dir.path().join("config.yaml");
    let written = std::fs::read_to_string(&path).expect("read");
    expect_test::expect![[r#"
        request-timeout: 30ns
        server: unix:///var/run/cilium/hubble.sock
        tls: true
        tls-ca-cert-files:
            - a.pem
            - b.pem
    "#]]
    .assert_eq(&written);

    // Values set in the file are what the next invocation reads.
    let reread = Settings::from_parts(
        [("config".to_string(), Value::Str(path.display().to_string()))].into(),
        BTreeMap::new(),
    );
    assert_eq!(
        reread.get_string("server"),
        "unix:///var/run/cilium/hubble.sock"
    );
    assert!(reread.get_bool("tls"));
    assert_eq!(reread.get_duration("request-timeout"), 30);

    // Setting a key without a value writes its default.
    config_cmd::set(&reread, "tls", "").expect("reset");
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .contains("tls: false\n"));
    assert_eq!(
        config_cmd::set(&reread, "timeout", "soon").expect_err("bad").to_string(),
        "cannot assign value=soon for key=timeout, expected type=duration: time: invalid duration \"soon\""
    );
}
