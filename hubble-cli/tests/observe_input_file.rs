//! The `hubble` binary end to end: `observe --input-file` with filters, ranges and
//! formats, and upstream's error messages and exit codes.

use std::io::Write;
use std::process::{Command, Output};

const FLOWS: &str = concat!(
    r#"{"flow":{"time":"2024-07-25T15:56:06.052345678Z","verdict":"FORWARDED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","labels":["k8s:org=empire","k8s:class=tiefighter"],"pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","labels":["k8s:org=empire","k8s:class=deathstar"],"pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4},"traffic_direction":"INGRESS","is_reply":false,"Summary":"TCP Flags: SYN"},"node_name":"kind-worker","time":"2024-07-25T15:56:06.052345678Z"}"#,
    "\n",
    r#"{"flow":{"time":"2024-07-25T16:05:58.942111Z","verdict":"DROPPED","IP":{"source":"10.200.1.12","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":38870,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":6305,"namespace":"default","labels":["k8s:org=alliance","k8s:class=xwing"],"pod_name":"xwing"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":1,"sub_type":133},"drop_reason_desc":"POLICY_DENIED","Summary":"TCP Flags: SYN"},"node_name":"kind-worker","time":"2024-07-25T16:05:58.942111Z"}"#,
    "\n",
    "this line is not a flow\n",
    r#"{"flow":{"time":"2024-07-25T16:07:58.104999999Z","verdict":"FORWARDED","IP":{"source":"10.200.1.30","destination":"10.200.1.20","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":80,"destination_port":50142,"flags":{"SYN":true,"ACK":true}}},"source":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"destination":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4,"sub_type":11},"is_reply":true,"Summary":"TCP Flags: SYN, ACK"},"node_name":"kind-worker","time":"2024-07-25T16:07:58.104999999Z"}"#,
    "\n",
    r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"42","cpu":1},"node_name":"kind-worker","time":"2024-07-25T16:08:22Z"}"#,
    "\n",
);

fn hubble(args: &[&str]) -> Output {
    hubble_on(FLOWS, args)
}

fn hubble_on(flows: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flows.json");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(flows.as_bytes()))
        .expect("write flows");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubble"));
    cmd.args(["observe", "--input-file"]).arg(&path).args(args);
    // Keep the user's configuration and colour settings out of the test.
    cmd.env("HOME", dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("HUBBLE_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run hubble")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prints_every_flow_in_file_order_and_warns_about_bad_lines() {
    let out = hubble(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    expect_test::expect![[r#"
        Jul 25 15:56:06.052: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        Jul 25 16:05:58.942: default/xwing:38870 (ID:6305) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) Policy denied DROPPED (TCP Flags: SYN)
        Jul 25 16:07:58.104: default/tiefighter:50142 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-network FORWARDED (TCP Flags: SYN, ACK)
        Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42
    "#]]
    .assert_eq(&stdout(&out));
    assert!(
        stderr(&out).contains("Failed to unmarshal json to flow"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("this line is not a flow"));
}

/// A lab capture (`hubble observe -o jsonpb` through the relay) of the deathstar
/// service: tiefighter's socket-translated call (pre-xlate-fwd, post-xlate-fwd, the
/// SYN at the backend), a call from outside its cgroup translated at tc level
/// (from-endpoint towards the VIP, the SYN at the backend), and the pre-xlate-fwd flow
/// once more without `destination_service`, as the seed's Cilium produced it. The
/// expected lines are what upstream `hubble observe --input-file` prints for the same
/// file: a flow naming its destination service prints the service instead of the VIP.
#[test]
fn service_translation_flows_print_as_upstream() {
    let out = hubble_on(include_str!("data/service_translation.json"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    expect_test::expect![[r#"
        Dec  2 15:25:59.880: default/tiefighter (ID:257) <> default/deathstar:80 (world) pre-xlate-fwd TRACED (TCP)
        Dec  2 15:25:59.880: default/tiefighter (ID:257) <> default/deathstar-1:80 (ID:256) post-xlate-fwd TRANSLATED (TCP)
        Dec  2 15:25:59.881: default/tiefighter:43916 (ID:257) -> default/deathstar-1:80 (ID:256) to-endpoint FORWARDED (TCP Flags: SYN)
        Dec  2 15:26:00.010: default/tiefighter:34674 (ID:257) <> default/deathstar:80 (world) from-endpoint FORWARDED (TCP Flags: SYN)
        Dec  2 15:26:00.010: default/tiefighter:34674 (ID:257) -> default/deathstar-2:80 (ID:256) to-endpoint FORWARDED (TCP Flags: SYN)
        Dec  2 15:25:59.880: default/tiefighter (ID:257) <> 10.96.60.53:80 (world) pre-xlate-fwd TRACED (TCP)
    "#]]
    .assert_eq(&stdout(&out));
    // `--to-service` finds the flows that name the service (the VIP ones, and the
    // post-xlate-fwd one, which this parser also names by its backend).
    let out = hubble_on(
        include_str!("data/service_translation.json"),
        &["--to-service", "default/deathstar", "-o", "compact"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
}

#[test]
fn a_capture_from_a_newer_hubble_keeps_its_flows() {
    // An unknown field and an unknown enum name, as a newer Hubble writes them: upstream
    // reads with protojson's DiscardUnknown and prints the flow.
    let newer = r#"{"flow":{"time":"2024-07-25T15:56:06.052345678Z","verdict":"FORWARDED","new_field":{"x":[1]},"IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4},"trace_observation_point":"TO_NEW_PLACE","Summary":"TCP Flags: SYN"},"node_name":"kind-worker","time":"2024-07-25T15:56:06.052345678Z"}"#;
    let out = hubble_on(&format!("{newer}\n"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    expect_test::expect![[r#"
        Jul 25 15:56:06.052: default/tiefighter:51000 (ID:62396) <> default/deathstar:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
    "#]]
    .assert_eq(&stdout(&out));
}

#[test]
fn pod_names_default_to_the_default_namespace_and_ips_compare_as_text() {
    let flows = concat!(
        r#"{"flow":{"time":"2024-07-25T15:56:06.052345678Z","verdict":"FORWARDED","IP":{"source":"10.200.0.5","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":53,"destination_port":40000}},"source":{"identity":102,"namespace":"kube-system","pod_name":"coredns-5d78c9869d-abcde"},"destination":{"identity":50122,"namespace":"default","pod_name":"xwing"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4},"is_reply":true,"Summary":"UDP"},"node_name":"kind-worker","time":"2024-07-25T15:56:06.052345678Z"}"#,
        "\n",
        r#"{"flow":{"time":"2024-07-25T15:56:07.052345678Z","verdict":"FORWARDED","IP":{"source":"fd00:10:244:2::3c2a","destination":"fd00:10:244:1::10","ipVersion":"IPv6"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4},"Summary":"TCP Flags: SYN"},"node_name":"kind-worker","time":"2024-07-25T15:56:07.052345678Z"}"#,
        "\n",
    );
    // Upstream 1.19 prints nothing for these: "coredns" is default/coredns, and an
    // address is compared with the flow's text.
    for args in [
        &["--from-pod", "coredns"][..],
        &["--pod", "coredns"],
        &["--ip", "fd00:10:244:2:0:0:0:3c2a"],
    ] {
        let out = hubble_on(flows, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let coredns = "Jul 25 15:56:06.052: default/xwing:40000 (ID:50122) <- kube-system/coredns-5d78c9869d-abcde:53 (ID:102) to-endpoint FORWARDED (UDP)\n";
    let tiefighter = "Jul 25 15:56:07.052: default/tiefighter:51000 (ID:62396) <> default/deathstar:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)\n";
    for (args, want) in [
        (&["--from-pod", "kube-system/coredns"][..], coredns),
        (&["--from-pod", "/coredns"], coredns),
        (&["--ip", "fd00:10:244:2::3c2a"], tiefighter),
        (&["--ip", "fd00:10:244:2::/64"], tiefighter),
    ] {
        let out = hubble_on(flows, args);
        assert_eq!(stdout(&out), want, "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn cel_expressions_filter_as_upstream() {
    let cases = [
        ("_flow.verdict == Verdict.DROPPED", 1),
        ("_flow.source.namespace == \"default\"", 3),
        ("_flow.l4.TCP.destination_port == 80u && !_flow.is_reply", 1),
        ("_flow.l7.http.code >= 500u", 0),
    ];
    for (expr, want) in cases {
        let out = hubble(&["--cel-expression", expr]);
        assert!(out.status.success(), "{expr}: {}", stderr(&out));
        assert_eq!(
            stdout(&out).lines().count(),
            want,
            "{expr}: {}",
            stdout(&out)
        );
    }
    let out = hubble(&["--cel-expression", "_flow.verdict =="]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error compiling CEL expression \"_flow.verdict ==\": "));
}

#[test]
fn filters_locally() {
    let out = hubble(&["--verdict", "DROPPED"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stdout(&out).contains("default/xwing:38870"));

    // Negated flags go to one denylist filter: only flows matching both are removed.
    let out = hubble(&[
        "--not",
        "--from-label",
        "org=empire",
        "--not",
        "--type",
        "drop",
    ]);
    assert_eq!(stdout(&out).lines().count(), 4);
    let out = hubble(&["--not", "--from-label", "org=empire"]);
    expect_test::expect![[r#"
        Jul 25 16:05:58.942: default/xwing:38870 (ID:6305) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) Policy denied DROPPED (TCP Flags: SYN)
        Jul 25 16:07:58.104: default/tiefighter:50142 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-network FORWARDED (TCP Flags: SYN, ACK)
        Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42
    "#]].assert_eq(&stdout(&out));

    let out = hubble(&["--from-pod", "tiefighter", "-o", "json"]);
    let lines: Vec<&str> = FLOWS.lines().collect();
    assert_eq!(stdout(&out), format!("{}\n", lines[0]));
}

#[test]
fn honours_first_last_since_and_until() {
    let count = |args: &[&str]| stdout(&hubble(args)).lines().count();
    assert_eq!(count(&["--first", "2"]), 2);
    assert_eq!(count(&["--last", "1"]), 1);
    assert!(stdout(&hubble(&["--last", "1"])).contains("EVENTS LOST"));
    assert_eq!(count(&["--since", "2024-07-25T16:00:00Z"]), 3);
    assert_eq!(count(&["--until", "2024-07-25T16:00:00Z"]), 1);
    assert_eq!(
        count(&[
            "--since",
            "2024-07-25T16:00:00Z",
            "--until",
            "2024-07-25T16:06:00Z"
        ]),
        1
    );
}

#[test]
fn table_and_dict_formats() {
    let out = hubble(&["-o", "table", "--last", "2"]);
    expect_test::expect![[r#"
        TIMESTAMP             SOURCE                                 DESTINATION                TYPE          VERDICT     SUMMARY
        Jul 25 16:07:58.104   default/deathstar-8c4c77fb7-8wdts:80   default/tiefighter:50142   to-network    FORWARDED   TCP Flags: SYN, ACK
        Jul 25 16:08:22.000   HUBBLE_RING_BUFFER                     -                          EVENTS LOST   -           CPU(1) - 42
    "#]]
    .assert_eq(&stdout(&out));
    let out = hubble(&["-o", "dict", "--first", "1", "--print-node-name"]);
    expect_test::expect![[r#"
          TIMESTAMP: Jul 25 15:56:06.052
               NODE: kind-worker
             SOURCE: default/tiefighter:51000
        DESTINATION: default/deathstar-8c4c77fb7-8wdts:80
               TYPE: to-endpoint
            VERDICT: FORWARDED
            SUMMARY: TCP Flags: SYN
    "#]]
    .assert_eq(&stdout(&out));
}

#[test]
fn bad_values_fail_with_upstream_messages() {
    let cases: &[(&[&str], &str)] = &[
        (&["--verdict", "NOPE"], "invalid argument \"NOPE\" for \"--verdict\" flag: invalid --verdict value: NOPE\n"),
        (&["--since", "soon"], "failed to parse the since time: failed to convert soon to time\n"),
        (&["--last", "x"], "invalid argument \"x\" for \"--last\" flag: strconv.ParseUint: parsing \"x\": invalid syntax\n"),
        (&["--first", "1", "--last", "2"], "cannot set both --first and --last\n"),
        (&["--first", "1", "--follow"], "cannot set both --first and --follow\n"),
        (&["--all", "--last", "3"], "cannot set both --last and --all\n"),
        (&["-o", "yaml"], "invalid output format: yaml\n"),
        (&["-o", "table", "-f"], "table output format is not compatible with follow mode\n"),
        (&["--field-mask", "time"], "compact output format is not compatible with custom field mask\n"),
        (&["--last", "2000000"], "--last must be <= 1_000_000, got 2000000\n"),
        (&["--from-ip", "not-an-ip"], ""),
        (&["--not"], "trailing --not found in the arguments\n"),
    ];
    for (args, message) in cases {
        let out = hubble(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        if !message.is_empty() {
            assert_eq!(stderr(&out), *message, "{args:?}");
        } else {
            assert!(
                stderr(&out).contains("not-an-ip"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
    // Usage errors exit with 1 and pflag's words, as upstream; a flag's value may
    // start with '-' and is then checked as a value.
    for (args, message) in [
        (&["--no-such-flag"][..], "unknown flag: --no-such-flag\n"),
        (&["-Z"], "unknown shorthand flag: 'Z' in -Z\n"),
        (&["--last", "-1"], "invalid argument \"-1\" for \"--last\" flag: strconv.ParseUint: parsing \"-1\": invalid syntax\n"),
        (&["--first", "-1"], "invalid argument \"-1\" for \"--first\" flag: strconv.ParseUint: parsing \"-1\": invalid syntax\n"),
    ] {
        let out = hubble(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), message, "{args:?}");
    }
}

#[test]
fn print_raw_filters_exits_without_reading() {
    let out = hubble(&[
        "--print-raw-filters",
        "--to-pod",
        "default/deathstar",
        "--not",
        "--verdict",
        "FORWARDED",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    expect_test::expect![[r#"
        allowlist:
            - '{"destination_pod":["default/deathstar"]}'
        denylist:
            - '{"verdict":["FORWARDED"]}'
    "#]]
    .assert_eq(&stdout(&out));
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hubble"))
        .args(["status", "--server", "127.0.0.1:1", "--timeout", "2s"])
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("run hubble");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("failed to connect to '127.0.0.1:1': "),
        "{err}"
    );
}
