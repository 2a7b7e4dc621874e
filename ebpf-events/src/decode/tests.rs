use proptest::prelude::*;

use super::*;
use crate::abi::{EVENT_FLAG_IPV6, EVENT_FLAG_IS_REPLY, EVENT_PACKET_CAP};
use crate::constants::{drop_reason, policy_action, policy_match, trace_point};
use crate::encode::encode_record;

fn header(msg_type: u8, subtype: u8) -> EventHeader {
    EventHeader {
        msg_type,
        subtype,
        source: 17,
        ifindex: 42,
        ktime_ns: 1_234_567_890,
        orig_len: 98,
        dst_endpoint: 9,
        src_identity: 256,
        dst_identity: 257,
        reason: 3,
        flags: EVENT_FLAG_IPV6 | EVENT_FLAG_IS_REPLY,
        cpu: 1,
        ..EventHeader::default()
    }
}

fn packet(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

#[test]
fn trace_record_round_trips() {
    let bytes = encode_record(
        &header(message_type::TRACE, trace_point::TO_LXC),
        None,
        &packet(98),
    );
    assert_eq!(bytes.len(), 168);
    let DatapathEvent::Trace(event) = decode(&bytes).expect("valid trace") else {
        panic!("not a trace record");
    };
    assert_eq!(event.header.subtype, trace_point::TO_LXC);
    assert_eq!(event.header.source, 17);
    assert_eq!(event.header.ifindex, 42);
    assert_eq!(event.header.ktime_ns, 1_234_567_890);
    assert_eq!(event.header.src_identity, 256);
    assert_eq!(event.header.dst_identity, 257);
    assert_eq!(event.header.dst_endpoint, 9);
    assert_eq!(event.header.cap_len, 98);
    assert!(event.header.is_ipv6() && event.header.is_reply() && !event.header.to_endpoint());
    assert_eq!(event.packet, &packet(98)[..]);
}

#[test]
fn drop_record_keeps_reason_and_caps_packet() {
    let bytes = encode_record(
        &header(message_type::DROP, drop_reason::POLICY_DENIED),
        None,
        &packet(1500),
    );
    let DatapathEvent::Drop(event) = decode(&bytes).expect("valid drop") else {
        panic!("not a drop record");
    };
    assert_eq!(event.header.subtype, drop_reason::POLICY_DENIED);
    assert_eq!(event.packet.len(), 128);
}

#[test]
fn verdict_record_round_trips() {
    let info = PolicyVerdictInfo {
        remote_identity: 300,
        cookie: 77,
        dport: 80,
        protocol: 6,
        direction: 0,
        match_type: policy_match::L3_L4,
        action: policy_action::DENIED,
        proxy_port: 0,
    };
    let bytes = encode_record(
        &header(message_type::POLICY_VERDICT, 0),
        Some(&info),
        &packet(60),
    );
    assert_eq!(bytes.len(), 184);
    let DatapathEvent::PolicyVerdict(event) = decode(&bytes).expect("valid verdict") else {
        panic!("not a verdict record");
    };
    assert_eq!(event.verdict, info);
    assert_eq!(event.packet.len(), 60);
}

#[test]
fn errors_name_what_is_wrong() {
    let good = encode_record(&header(message_type::TRACE, 0), None, &packet(64));
    assert_eq!(
        decode(&good[..10]),
        Err(DecodeError::Truncated {
            what: "header",
            got: 10,
            need: 40
        })
    );
    assert_eq!(
        decode(&good[..100]),
        Err(DecodeError::CapLenTooLarge {
            cap_len: 64,
            available: 60
        })
    );
    let mut unknown = good.clone();
    unknown[0] = 9;
    assert_eq!(decode(&unknown), Err(DecodeError::UnknownType(9)));
    let mut old = good.clone();
    old[34] = 0;
    assert_eq!(
        decode(&old),
        Err(DecodeError::UnsupportedVersion {
            got: 0,
            expected: 1
        })
    );
    let verdict = encode_record(&header(message_type::POLICY_VERDICT, 0), None, &[]);
    assert_eq!(
        decode(&verdict[..50]),
        Err(DecodeError::Truncated {
            what: "policy verdict",
            got: 50,
            need: 56
        })
    );
    let mut oversized = good.clone();
    oversized.extend_from_slice(&[0; 200]);
    oversized[20..22].copy_from_slice(&200u16.to_ne_bytes());
    assert_eq!(
        decode(&oversized),
        Err(DecodeError::CapLenTooLarge {
            cap_len: 200,
            available: 128
        })
    );
    assert_eq!(
        DecodeError::CapLenTooLarge {
            cap_len: 64,
            available: 60
        }
        .to_string(),
        "cap_len 64 larger than the 60 packet bytes in the record"
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn truncated_and_corrupted_records_never_panic(
        kind in prop_oneof![Just(1u8), Just(4u8), Just(5u8)],
        len in 0usize..200,
        cut in 0usize..200,
        flip_at in 0usize..200,
        flip in any::<u8>(),
    ) {
        let mut bytes = encode_record(&header(kind, 0), None, &packet(len));
        if flip_at < bytes.len() {
            bytes[flip_at] ^= flip;
        }
        let cut = cut.min(bytes.len());
        if let Ok(event) = decode(&bytes[..cut]) {
            prop_assert!(event.packet().len() <= EVENT_PACKET_CAP);
        }
    }
}

#[test]
fn trace_sock_records_decode_with_their_destination() {
    use crate::abi::lb::{l4_protocol, xlate_point};
    use crate::abi::TraceSockInfo;
    let header = EventHeader {
        subtype: xlate_point::POST_DIRECTION_FWD,
        ktime_ns: 42,
        ..EventHeader::default()
    };
    let sock = TraceSockInfo {
        sock_cookie: 9612,
        cgroup_id: 7275,
        dst_port: 80,
        l4_proto: l4_protocol::TCP,
        ..TraceSockInfo::default()
    };
    for dst in ["10.200.1.30", "fd00:200:1::30"] {
        let dst: std::net::IpAddr = dst.parse().expect("ip");
        let bytes = crate::encode::encode_trace_sock(&header, &sock, dst);
        assert_eq!(bytes.len(), 80);
        let DatapathEvent::TraceSock(event) = decode(&bytes).expect("valid trace-sock") else {
            panic!("not a trace-sock event");
        };
        assert_eq!(event.dst, dst);
        assert_eq!(event.header.is_ipv6(), dst.is_ipv6());
        assert_eq!(event.header.subtype, xlate_point::POST_DIRECTION_FWD);
        assert_eq!(event.sock.sock_cookie, 9612);
        assert_eq!(event.sock.cgroup_id, 7275);
        assert_eq!(event.sock.dst_port, 80);
        assert_eq!(event.sock.l4_proto, l4_protocol::TCP);
        assert!(DatapathEvent::TraceSock(event).packet().is_empty());
        assert!(matches!(
            decode(&bytes[..79]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
