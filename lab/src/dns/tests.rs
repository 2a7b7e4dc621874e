use super::*;

const DEATHSTAR: &str = "deathstar.default.svc.cluster.local";

fn address(name: &str, text: &str) -> Answer {
    Answer {
        name: name.to_string(),
        data: AnswerData::Address(text.parse().expect("address")),
    }
}

#[test]
fn query_round_trips() {
    let wire = encode_query(
        0x1234,
        "Deathstar.Default.svc.cluster.local.",
        RecordType::A,
    )
    .expect("encode");
    let query = parse_query(&wire).expect("parse");
    assert_eq!(query.id, 0x1234);
    assert_eq!(query.name, DEATHSTAR);
    assert_eq!(query.qtype, RecordType::A);
    assert_eq!(query.qclass, DNSClass::IN);
    assert_eq!(query.op_code, OpCode::Query);
    assert!(query.recursion_desired);
}

#[test]
fn response_carries_the_answer() {
    let query =
        parse_query(&encode_query(7, DEATHSTAR, RecordType::A).expect("encode")).expect("parse");
    let answer = address(DEATHSTAR, "10.200.1.10");
    let wire = encode_response(&query, ResponseCode::NoError, &[answer], 30).expect("encode");
    let response = parse_response(&wire).expect("parse response");
    assert_eq!(response.id, 7);
    assert_eq!(response.rcode, 0);
    assert_eq!(
        response.addresses,
        vec!["10.200.1.10".parse::<IpAddr>().expect("ip")]
    );

    let v6 = address(DEATHSTAR, "fd00:200:1::10");
    let wire = encode_response(&query, ResponseCode::NoError, &[v6], 30).expect("encode");
    assert_eq!(
        parse_response(&wire).expect("parse").addresses,
        vec!["fd00:200:1::10".parse::<IpAddr>().expect("ip")]
    );
}

#[test]
fn aliases_come_back_in_order() {
    let query = parse_query(&encode_query(8, "www.example", RecordType::A).expect("encode"))
        .expect("parse");
    let answers = [
        Answer {
            name: "www.example".to_string(),
            data: AnswerData::Alias("edge.example".to_string()),
        },
        address("edge.example", "192.0.2.7"),
    ];
    let response = parse_response(
        &encode_response(&query, ResponseCode::NoError, &answers, 30).expect("encode"),
    )
    .expect("parse");
    assert_eq!(response.aliases, vec!["edge.example".to_string()]);
    assert_eq!(
        response.addresses,
        vec!["192.0.2.7".parse::<IpAddr>().expect("ip")]
    );
}

#[test]
fn nxdomain_has_no_answers() {
    let query = parse_query(&encode_query(9, "nowhere.example", RecordType::A).expect("encode"))
        .expect("parse");
    let response =
        parse_response(&encode_response(&query, ResponseCode::NXDomain, &[], 30).expect("encode"))
            .expect("parse");
    assert_eq!(response.rcode, 3);
    assert!(response.addresses.is_empty());
}

#[test]
fn query_with_edns_additional_record_is_accepted() {
    let mut wire = encode_query(1, DEATHSTAR, RecordType::A).expect("encode");
    wire[11] = 1; // one additional record
    wire.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse_query(&wire).expect("parse").name, DEATHSTAR);
}

#[test]
fn malformed_queries_are_errors() {
    assert!(matches!(parse_query(&[]), Err(DnsError::Malformed(_))));
    assert!(matches!(parse_query(&[0; 11]), Err(DnsError::Malformed(_))));
    // Zero questions.
    assert_eq!(parse_query(&[0; 12]), Err(DnsError::QuestionCount(0)));
    let good = encode_query(1, DEATHSTAR, RecordType::A).expect("encode");
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
    assert!(parse_query(&long_label).is_err());
    // A pointer to itself.
    let mut self_pointer = good[..12].to_vec();
    self_pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(parse_query(&self_pointer).is_err());
    // Reserved label type.
    let mut reserved = good[..12].to_vec();
    reserved.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
    assert!(parse_query(&reserved).is_err());
}

#[test]
fn overlong_and_empty_labels_are_rejected() {
    let mut wire = encode_query(1, "a", RecordType::A).expect("encode")[..12].to_vec();
    for _ in 0..5 {
        wire.push(63);
        wire.extend_from_slice(&[b'x'; 63]);
    }
    wire.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(parse_query(&wire).is_err());
    let error = encode_query(1, &"x".repeat(64), RecordType::A).expect_err("long label");
    assert!(error.to_string().contains(&"x".repeat(64)), "{error}");
    assert!(encode_query(1, "a..b", RecordType::A).is_err());
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
        &parse_query(&encode_query(3, DEATHSTAR, RecordType::A).expect("encode")).expect("parse"),
        ResponseCode::NoError,
        &[address(DEATHSTAR, "10.0.0.1")],
        30,
    )
    .expect("encode");
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
