use super::*;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

#[test]
fn names_are_per_endpoint_and_expire() {
    let mut cache = FqdnCache::new(0);
    let outcome = cache.update(
        7,
        "API.GitHub.com.",
        &[ip("192.0.2.10"), ip("2001:db8::10")],
        30,
        at(1000),
    );
    assert_eq!(outcome.new_ips.len(), 2);
    assert!(outcome.changed);
    assert_eq!(
        cache.names_of(7, ip("192.0.2.10"), at(1010)),
        vec!["api.github.com".to_string()]
    );
    // Another endpoint did not look it up.
    assert!(cache.names_of(8, ip("192.0.2.10"), at(1010)).is_empty());
    // Expired at lookup time + TTL.
    assert!(cache.names_of(7, ip("192.0.2.10"), at(1030)).is_empty());
    assert_eq!(cache.expire(at(1030)), 2);
    assert!(cache.records().is_empty());
}

#[test]
fn min_ttl_raises_short_ttls() {
    let mut cache = FqdnCache::new(3600);
    cache.update(1, "cilium.io", &[ip("192.0.2.20")], 5, at(0));
    let records = cache.records();
    assert_eq!(records[0].ttl, 3600);
    assert_eq!(records[0].expiration(), 3600);
    assert_eq!(records[0].fqdn, "cilium.io.");
}

#[test]
fn a_repeated_answer_extends_but_adds_nothing() {
    let mut cache = FqdnCache::new(0);
    cache.update(1, "a.example", &[ip("192.0.2.1")], 30, at(0));
    let again = cache.update(1, "a.example", &[ip("192.0.2.1")], 30, at(10));
    assert!(again.new_ips.is_empty());
    assert!(again.changed);
    assert_eq!(cache.names_of(1, ip("192.0.2.1"), at(35)).len(), 1);
    // An older answer changes nothing.
    let stale = cache.update(1, "a.example", &[ip("192.0.2.1")], 1, at(5));
    assert!(!stale.changed);
}

#[test]
fn several_names_for_one_address_are_sorted() {
    let mut cache = FqdnCache::new(0);
    cache.update(1, "www.example", &[ip("192.0.2.1")], 30, at(0));
    cache.update(1, "edge.example", &[ip("192.0.2.1")], 30, at(0));
    assert_eq!(
        cache.names_of(1, ip("192.0.2.1"), at(1)),
        vec!["edge.example".to_string(), "www.example".to_string()]
    );
}

#[test]
fn bounds_evict_what_expires_first_and_count_it() {
    let mut cache = FqdnCache::new(0);
    for n in 0..MAX_IPS_PER_NAME as u32 + 3 {
        let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        cache.update(1, "many.example", &[address], 100 + n, at(0));
    }
    assert_eq!(cache.evictions(), 3);
    let kept: usize = cache.records().iter().map(|r| r.ips.len()).sum();
    assert_eq!(kept, MAX_IPS_PER_NAME);
    // The three shortest-lived addresses went.
    assert!(cache.names_of(1, ip("10.0.0.0"), at(1)).is_empty());
    assert!(!cache.names_of(1, ip("10.0.0.3"), at(1)).is_empty());

    let mut cache = FqdnCache::new(0);
    for n in 0..MAX_NAMES_PER_ENDPOINT as u32 + 1 {
        cache.update(
            2,
            &format!("n{n}.example"),
            &[ip("192.0.2.1")],
            100 + n,
            at(0),
        );
    }
    assert_eq!(cache.evictions(), 1);
    assert!(!cache
        .names_of(2, ip("192.0.2.1"), at(1))
        .contains(&"n0.example".to_string()));
}

#[test]
fn records_round_trip_through_restore() {
    let mut cache = FqdnCache::new(0);
    cache.update(3, "api.github.com", &[ip("192.0.2.10")], 30, at(100));
    cache.update(3, "cilium.io", &[ip("192.0.2.20")], 300, at(100));
    let records = cache.records();
    let json = serde_json::to_string(&records).expect("json");
    let back: Vec<FqdnRecord> = serde_json::from_str(&json).expect("parse");
    // At 140 the api.github.com answer has expired; cilium.io is alive.
    let restored = FqdnCache::restored(0, &back, at(140));
    assert!(restored.names_of(3, ip("192.0.2.10"), at(140)).is_empty());
    assert_eq!(
        restored.names_of(3, ip("192.0.2.20"), at(140)),
        vec!["cilium.io".to_string()]
    );
    assert_eq!(restored.records().len(), 1);
}
