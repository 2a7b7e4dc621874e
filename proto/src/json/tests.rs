use super::*;
use crate::flow::{self, Flow};
use crate::observer::{get_flows_response, GetFlowsResponse};

fn sample_flow() -> Flow {
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: 1_753_456_558,
            nanos: 942_000_000,
        }),
        uuid: "0b7e7c3a-6f51-4b8a-9f0e-3f5f0a1c2d3e".into(),
        verdict: flow::Verdict::Dropped as i32,
        drop_reason: 133,
        ethernet: Some(flow::Ethernet {
            source: "aa:bb:cc:dd:ee:01".into(),
            destination: "aa:bb:cc:dd:ee:02".into(),
        }),
        ip: Some(flow::Ip {
            source: "10.200.1.12".into(),
            destination: "10.200.1.10".into(),
            ip_version: flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(flow::Layer4 {
            protocol: Some(flow::layer4::Protocol::Tcp(flow::Tcp {
                source_port: 38870,
                destination_port: 80,
                flags: Some(flow::TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(flow::Endpoint {
            id: 1899,
            identity: 6305,
            namespace: "default".into(),
            labels: vec!["k8s:class=xwing".into(), "k8s:org=alliance".into()],
            pod_name: "xwing".into(),
            ..Default::default()
        }),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "node1".into(),
        event_type: Some(flow::CiliumEventType {
            r#type: 1,
            sub_type: 133,
        }),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        drop_reason_desc: flow::DropReason::PolicyDenied as i32,
        is_reply: Some(pbjson_types::BoolValue { value: false }),
        socket_cookie: 42,
        summary: "TCP Flags: SYN <x>".into(),
        ..Default::default()
    }
}

#[test]
fn flow_json_matches_upstream_shape() {
    let response = GetFlowsResponse {
        node_name: "node1".into(),
        time: sample_flow().time,
        response_types: Some(get_flows_response::ResponseTypes::Flow(sample_flow())),
    };
    expect_test::expect![[r#"{"flow":{"time":"2025-07-25T15:15:58.942Z","uuid":"0b7e7c3a-6f51-4b8a-9f0e-3f5f0a1c2d3e","verdict":"DROPPED","drop_reason":133,"ethernet":{"source":"aa:bb:cc:dd:ee:01","destination":"aa:bb:cc:dd:ee:02"},"IP":{"source":"10.200.1.12","destination":"10.200.1.10","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":38870,"destination_port":80,"flags":{"SYN":true}}},"source":{"ID":1899,"identity":6305,"namespace":"default","labels":["k8s:class=xwing","k8s:org=alliance"],"pod_name":"xwing"},"Type":"L3_L4","node_name":"node1","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","drop_reason_desc":"POLICY_DENIED","is_reply":false,"socket_cookie":"42","Summary":"TCP Flags: SYN \u003cx\u003e"},"node_name":"node1","time":"2025-07-25T15:15:58.942Z"}"#]]
    .assert_eq(&to_string(&response));
}

#[test]
fn escapes_line_separators_like_go() {
    let mut w = Writer::default();
    w.string("a\u{2028}b&<\x01");
    assert_eq!(w.as_str(), r#""a\u2028b\u0026\u003c\u0001""#);
}

#[test]
fn timestamps_match_protojson() {
    let cases = [
        (0, 0, "1970-01-01T00:00:00Z"),
        (951_782_400, 5_000_000, "2000-02-29T00:00:00.005Z"),
        (1_753_456_558, 942_000_000, "2025-07-25T15:15:58.942Z"),
        (1_753_456_558, 942_100_000, "2025-07-25T15:15:58.942100Z"),
        (4_102_444_799, 1, "2099-12-31T23:59:59.000000001Z"),
        (-1, 0, "1969-12-31T23:59:59Z"),
        (-62_135_596_800, 0, "0001-01-01T00:00:00Z"),
        (
            253_402_300_799,
            999_999_999,
            "9999-12-31T23:59:59.999999999Z",
        ),
        (1_000_000_000, 120_000, "2001-09-09T01:46:40.000120Z"),
    ];
    for (seconds, nanos, want) in cases {
        let mut out = String::new();
        format_timestamp(&mut out, seconds, nanos);
        assert_eq!(out, want);
    }
}

#[test]
fn unknown_fields_are_skipped_and_the_flow_kept() {
    // A capture written by a newer Hubble: unknown fields at the top, in a nested
    // message, inside a oneof member, holding objects, arrays and nulls.
    let line = r#"{"flow":{"time":"2025-07-25T15:15:58.942Z","verdict":"DROPPED","new_scalar":7,"IP":{"source":"10.200.1.12","destination":"10.200.1.10","future":{"a":[1,{"b":null}]}},"l4":{"TCP":{"source_port":38870,"destination_port":80,"window":[1,2]}},"source":{"namespace":"default","pod_name":"xwing","zone":"z1"},"Summary":"TCP Flags: SYN"},"node_name":"node1","shard":"s1"}"#;
    let res: GetFlowsResponse = serde_json::from_str(line).expect("unknown fields skipped");
    assert_eq!(res.node_name, "node1");
    let Some(get_flows_response::ResponseTypes::Flow(f)) = res.response_types else {
        panic!("the flow is kept");
    };
    assert_eq!(f.verdict, flow::Verdict::Dropped as i32);
    assert_eq!(
        f.ip.as_ref().map(|ip| ip.source.as_str()),
        Some("10.200.1.12")
    );
    assert_eq!(
        f.source.as_ref().map(|e| e.pod_name.as_str()),
        Some("xwing")
    );
    assert_eq!(f.summary, "TCP Flags: SYN");
    // Known fields still get their types checked.
    assert!(serde_json::from_str::<GetFlowsResponse>(r#"{"node_name":7}"#).is_err());
}

#[test]
fn unknown_enum_names_are_discarded_and_numbers_kept() {
    let line = r#"{"flow":{"verdict":"FORWARDED","trace_observation_point":"TO_A_NEW_PLACE","drop_reason_desc":4242},"node_name":"n"}"#;
    let res: GetFlowsResponse = serde_json::from_str(line).expect("flow kept");
    let Some(get_flows_response::ResponseTypes::Flow(f)) = res.response_types else {
        panic!("the flow is kept");
    };
    assert_eq!(f.verdict, flow::Verdict::Forwarded as i32);
    assert_eq!(f.trace_observation_point, 0);
    assert_eq!(f.drop_reason_desc, 4242);
    // A filter's repeated enum field stays strict: a misspelt verdict is an error.
    assert!(serde_json::from_str::<flow::FlowFilter>(r#"{"verdict":["DROPED"]}"#).is_err());
}

#[test]
fn every_character_that_go_escapes_is_escaped_and_the_rest_kept() {
    let chars = (0u32..0x100)
        .chain(0x2020..0x2030)
        .filter_map(char::from_u32);
    for c in chars {
        let value = format!("a{c}b");
        let mut w = Writer::default();
        w.string(&value);
        let back: String = serde_json::from_str(w.as_str()).expect("valid JSON");
        assert_eq!(back, value, "{c:?}");
        if c == '"' || c == '\\' {
            // The round trip shows these are escaped; their escapes hold them.
            continue;
        }
        let escaped = (c as u32) < 0x20 || "<>&\u{2028}\u{2029}".contains(c);
        assert_eq!(!w.as_str().contains(c), escaped, "{c:?}: {}", w.as_str());
    }
}

#[test]
fn integers_print_as_their_decimal_text() {
    for value in [i64::MIN, -1, 0, 7, 4_294_967_296, i64::MAX] {
        let mut w = Writer::default();
        w.integer(value);
        assert_eq!(w.as_str(), value.to_string());
    }
    let mut w = Writer::default();
    w.quoted_integer(i128::from(u64::MAX) + 1);
    assert_eq!(w.as_str(), "\"18446744073709551616\"");
}

#[test]
fn documents_read_as_serde_json_reads_them() {
    let documents = [
        r#"{"flow":{"time":"2025-07-25T15:15:58.942Z","verdict":"DROPPED","new_scalar":7,"IP":{"source":"10.200.1.12","destination":"10.200.1.10","future":{"a":[1,{"b":null}]}},"l4":{"TCP":{"source_port":38870,"destination_port":80}},"source":{"namespace":"default","pod_name":"x\u00e9\ud83d\ude00\n\"wing","labels":["k8s:a=b"]},"Summary":"TCP Flags: SYN"},"node_name":"node1"}"#,
        r#"{"flow":{"verdict":4,"drop_reason_desc":"4242","socket_cookie":"18446744073709551615","cgroup_id":1e3,"event_type":{"type":"129"}},"node_name":"n"}"#,
        r#"{"flow":{"l7":{"latency_ns":"180000","http":{"code":200,"method":"GET","headers":[{"key":"a","value":"<b>&"}]}}},"time":null}"#,
        r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"}}"#,
        r#"  {"node_status":{"state_change":"NODE_CONNECTED","node_names":["a","b"]}}  "#,
    ];
    let mut scratch = crate::json::ReadScratch::default();
    for doc in documents {
        let want: GetFlowsResponse = serde_json::from_str(doc).expect("serde_json reads it");
        let got: GetFlowsResponse =
            crate::json::from_slice(doc.as_bytes(), &mut scratch).expect("read");
        assert_eq!(got, want, "{doc}");
        let mut bytes = doc.as_bytes().to_vec();
        let got: GetFlowsResponse =
            crate::json::from_mut_slice(&mut bytes, &mut scratch).expect("read in place");
        assert_eq!(got, want, "{doc}");
        assert_eq!(bytes, doc.as_bytes(), "left as it was");
    }
    // What serde_json refuses is refused, with serde_json's words for it.
    let bad: [&[u8]; 8] = [
        b"{not json",
        br#"{"node_name":"a\"b\u00e9","flow":{"verdict":[]}}"#,
        br#"{"node_name":"a\"b\u00e9"} trailing"#,
        br#"{"node_name":7}"#,
        br#"{"flow":{"verdict":["DROPPED"]}}"#,
        b"{\"node_name\":\"\xff\"}",
        b"",
        br#"{"node_name":"a"} trailing"#,
    ];
    for bad in bad {
        let want = serde_json::from_slice::<GetFlowsResponse>(bad)
            .expect_err("serde_json refuses it")
            .to_string();
        let got = crate::json::from_slice::<GetFlowsResponse>(bad, &mut scratch)
            .expect_err("refused")
            .to_string();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(bad));
        let mut bytes = bad.to_vec();
        let got = crate::json::from_mut_slice::<GetFlowsResponse>(&mut bytes, &mut scratch)
            .expect_err("refused in place")
            .to_string();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(bad));
        assert_eq!(bytes, bad, "left as it was");
    }
}

#[test]
fn skipped_labels_are_checked_but_not_kept() {
    let doc = r#"{"flow":{"verdict":"FORWARDED","source":{"pod_name":"xwing","labels":["k8s:org=alliance","k8s:\u00e9"]},"destination":{"pod_name":"deathstar","labels":[]},"node_labels":["kubernetes.io/os=linux"],"Summary":"s"},"node_name":"n"}"#;
    let mut want: GetFlowsResponse = serde_json::from_str(doc).expect("serde_json reads it");
    let mut scratch = crate::json::ReadScratch::default();
    scratch.skip_labels(true);
    let got: GetFlowsResponse =
        crate::json::from_slice(doc.as_bytes(), &mut scratch).expect("read");
    let mut bytes = doc.as_bytes().to_vec();
    let got_in_place: GetFlowsResponse =
        crate::json::from_mut_slice(&mut bytes, &mut scratch).expect("read in place");
    let Some(get_flows_response::ResponseTypes::Flow(flow)) = want.response_types.as_mut() else {
        panic!("a flow");
    };
    assert_eq!(flow.source.as_ref().expect("source").labels.len(), 2);
    for ep in [flow.source.as_mut(), flow.destination.as_mut()]
        .into_iter()
        .flatten()
    {
        ep.labels.clear();
    }
    flow.node_labels.clear();
    assert_eq!(got, want);
    assert_eq!(got_in_place, want);
    // Labels that are not a list of strings are refused with the words used when they
    // are kept; filters' lists of labels (FlowFilter.node_labels) are always kept.
    for bad in [
        r#"{"flow":{"source":{"labels":"k8s:a=b"}}}"#,
        r#"{"flow":{"source":{"labels":[1]}}}"#,
        r#"{"flow":{"source":{"labels":null}}}"#,
        r#"{"flow":{"node_labels":[["x"]]}}"#,
        r#"{"flow":{"node_labels":{}}}"#,
    ] {
        let want = serde_json::from_str::<GetFlowsResponse>(bad)
            .expect_err("serde_json refuses it")
            .to_string();
        let got = crate::json::from_slice::<GetFlowsResponse>(bad.as_bytes(), &mut scratch)
            .expect_err("refused")
            .to_string();
        assert_eq!(got, want, "{bad}");
    }
    let filter = r#"{"node_labels":["a=b"],"source_label":["k8s:c=d"]}"#;
    let read: crate::flow::FlowFilter =
        crate::json::from_slice(filter.as_bytes(), &mut scratch).expect("a filter");
    assert_eq!(read.node_labels, ["a=b"]);
    assert_eq!(read.source_label, ["k8s:c=d"]);
    // The next document read without skipping keeps its labels.
    scratch.skip_labels(false);
    let kept: GetFlowsResponse =
        crate::json::from_slice(doc.as_bytes(), &mut scratch).expect("read");
    assert_ne!(kept, got);
}

#[test]
fn the_word_check_finds_what_the_byte_table_finds() {
    let by_table = |b: &[u8]| b.iter().any(|&c| super::MAY_ESCAPE[c as usize]);
    // Every byte value at every position of a 17-byte string of plain letters.
    for at in 0..17 {
        for byte in 0..=255u8 {
            let mut text = *b"abcdefghijklmnopq";
            text[at] = byte;
            assert_eq!(
                super::may_escape(&text),
                by_table(&text),
                "{byte:#x} at {at}"
            );
        }
    }
    // Pseudo-random strings of every length up to 40.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 41) as usize;
        let text: Vec<u8> = (0..len)
            .map(|i| {
                let v = state.rotate_left(i as u32 * 5) as u8;
                // Mostly printable, sometimes anything.
                if v.is_multiple_of(7) {
                    v
                } else {
                    0x20 + v % 0x5f
                }
            })
            .collect();
        assert_eq!(super::may_escape(&text), by_table(&text), "{text:?}");
    }
}
