use super::*;

const DEATHSTAR: &str = "deathstar.default.svc.cluster.local";

#[test]
fn query_round_trips() {
    let wire =
        encode_query(0x1234, "Deathstar.Default.svc.cluster.local.", TYPE_A).expect("encode");
    let query = parse_query(&wire).expect("parse");
    assert_eq!(query.id, 0x1234);
    assert_eq!(query.name, DEATHSTAR);
    assert_eq!(query.qtype, TYPE_A);
    assert_eq!(query.qclass, CLASS_IN);
    assert_eq!(query.opcode(), 0);
}

#[test]
fn response_carries_the_answer() {
    let query = parse_query(&encode_query(7, DEATHSTAR, TYPE_A).expect("encode")).expect("parse");
    let address: IpAddr = "10.200.1.10".parse().expect("address");
    let wire = encode_response(&query, Rcode::NoError, &[address], 30);
    let response = parse_response(&wire).expect("parse response");
    assert_eq!(response.id, 7);
    assert_eq!(response.rcode, 0);
    assert_eq!(response.addresses, vec![address]);

    let v6: IpAddr = "fd00:200:1::10".parse().expect("address");
    let wire = encode_response(&query, Rcode::NoError, &[v6], 30);
    assert_eq!(parse_response(&wire).expect("parse").addresses, vec![v6]);
}

#[test]
fn nxdomain_has_no_answers() {
    let query =
        parse_query(&encode_query(9, "nowhere.example", TYPE_A).expect("encode")).expect("parse");
    let response =
        parse_response(&encode_response(&query, Rcode::NameError, &[], 30)).expect("parse");
    assert_eq!(response.rcode, 3);
    assert!(response.addresses.is_empty());
}

#[test]
fn query_with_edns_additional_record_is_accepted() {
    let mut wire = encode_query(1, DEATHSTAR, TYPE_A).expect("encode");
    wire[11] = 1; // one additional record
    wire.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse_query(&wire).expect("parse").name, DEATHSTAR);
}

#[test]
fn malformed_queries_are_errors() {
    assert_eq!(parse_query(&[]), Err(DnsError::TooShort(0)));
    assert_eq!(parse_query(&[0; 11]), Err(DnsError::TooShort(11)));
    // Zero questions.
    assert_eq!(parse_query(&[0; 12]), Err(DnsError::QuestionCount(0)));
    let good = encode_query(1, DEATHSTAR, TYPE_A).expect("encode");
    // Every truncation of a valid query fails cleanly.
    for cut in 0..good.len() {
        assert!(parse_query(&good[..cut]).is_err(), "cut at {cut}");
    }
    // A response is not a query.
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(parse_query(&response), Err(DnsError::NotAQuery));
    // Label length running past the end.
    let mut long_label = good[..12].to_vec();
    long_label.extend_from_slice(&[63, b'a', b'b']);
    assert!(matches!(
        parse_query(&long_label),
        Err(DnsError::Truncated { .. })
    ));
    // A pointer to itself.
    let mut self_pointer = good[..12].to_vec();
    self_pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(matches!(
        parse_query(&self_pointer),
        Err(DnsError::BadPointer { .. })
    ));
    // Reserved label type.
    let mut reserved = good[..12].to_vec();
    reserved.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
    assert!(matches!(
        parse_query(&reserved),
        Err(DnsError::BadLabelType { .. })
    ));
}

#[test]
fn overlong_names_are_rejected() {
    let mut wire = encode_query(1, "a", TYPE_A).expect("encode")[..12].to_vec();
    for _ in 0..5 {
        wire.push(63);
        wire.extend_from_slice(&[b'x'; 63]);
    }
    wire.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(matches!(parse_query(&wire), Err(DnsError::NameTooLong(12))));
    assert!(encode_query(1, &"x".repeat(64), TYPE_A).is_err());
    assert!(encode_query(1, "a..b", TYPE_A).is_err());
}

#[test]
fn odd_label_bytes_are_escaped() {
    let mut wire = encode_query(1, "a", TYPE_A).expect("encode")[..12].to_vec();
    wire.extend_from_slice(&[3, b'a', b'.', 0xff, 0, 0, 1, 0, 1]);
    assert_eq!(parse_query(&wire).expect("parse").name, "a\\046\\255");
}

#[test]
fn garbage_never_panics() {
    // A small deterministic generator (xorshift) stands in for a fuzzer.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = encode_response(
        &parse_query(&encode_query(3, DEATHSTAR, TYPE_A).expect("encode")).expect("parse"),
        Rcode::NoError,
        &["10.0.0.1".parse().expect("address")],
        30,
    );
    for round in 0..20_000 {
        let message: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 80) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut mutated = base.clone();
            for _ in 0..3 {
                let index = (next() as usize) % mutated.len();
                mutated[index] = next() as u8;
            }
            mutated
        };
        let _ = parse_query(&message);
        let _ = parse_response(&message);
    }
}
