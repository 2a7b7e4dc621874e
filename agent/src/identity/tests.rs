use std::collections::BTreeSet;

use ipnet::IpNet;

use super::*;

fn labels(texts: &[&str]) -> LabelSet {
    LabelSet::parse(texts.iter().copied()).expect("valid labels")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("valid prefix")
}

#[test]
fn reserved_numbers_and_names_match_cilium() {
    let table: Vec<(u32, &str)> = ReservedIdentity::ALL
        .iter()
        .map(|r| (r.id(), r.name()))
        .collect();
    assert_eq!(
        table,
        [
            (1, "host"),
            (2, "world"),
            (3, "unmanaged"),
            (4, "health"),
            (5, "init"),
            (6, "remote-node"),
            (7, "kube-apiserver"),
            (8, "ingress"),
            (9, "world-ipv4"),
            (10, "world-ipv6"),
        ]
    );
    assert_eq!(Identity(4).reserved(), Some(ReservedIdentity::Health));
    assert_eq!(Identity(11).reserved(), None);
}

#[tokio::test]
async fn one_identity_per_label_set_from_256_reference_counted() {
    let allocator = LocalIdentityAllocator::new();
    let empire = labels(&["k8s:org=empire"]);
    let alliance = labels(&["k8s:org=alliance"]);

    let a = allocator.allocate(&empire).await.expect("allocates");
    let b = allocator.allocate(&alliance).await.expect("allocates");
    let a_again = allocator.allocate(&empire).await.expect("allocates");
    assert_eq!(a, Identity(256));
    assert_eq!(b, Identity(257));
    assert_eq!(a, a_again);
    assert_eq!(allocator.references(a), 2);

    assert!(!allocator.release(a).await.expect("known identity"));
    assert_eq!(allocator.lookup(a), Some(empire.clone()));
    assert!(allocator.release(a).await.expect("known identity"));
    assert_eq!(allocator.lookup(a), None);
    assert_eq!(
        allocator.release(a).await,
        Err(IdentityError::NotAllocated(a))
    );

    // Next-fit: the freed number is not reused at once.
    let c = allocator.allocate(&empire).await.expect("allocates");
    assert_eq!(c, Identity(258));
}

#[tokio::test]
async fn reserved_label_sets_map_to_reserved_identities() {
    let allocator = LocalIdentityAllocator::new();
    let health = ReservedIdentity::Health.labels();
    assert_eq!(allocator.allocate(&health).await, Ok(Identity(4)));
    assert_eq!(allocator.release(Identity(4)).await, Ok(false));

    let mixed = labels(&["reserved:host", "k8s:app=x"]);
    assert_eq!(
        allocator.allocate(&mixed).await.map_err(|e| e.to_string()),
        Err("cannot allocate an identity for [k8s:app=x reserved:host]: label reserved:host belongs to a reserved or CIDR identity".to_string())
    );
    assert_eq!(
        allocator.allocate(&LabelSet::new()).await,
        Err(IdentityError::EmptyLabels)
    );
}

#[tokio::test]
async fn exhaustion_is_an_error_and_freed_numbers_come_back() {
    let allocator = LocalIdentityAllocator::with_range(300, 301);
    let one = allocator
        .allocate(&labels(&["k8s:n=1"]))
        .await
        .expect("free");
    allocator
        .allocate(&labels(&["k8s:n=2"]))
        .await
        .expect("free");
    assert_eq!(
        allocator
            .allocate(&labels(&["k8s:n=3"]))
            .await
            .map_err(|e| e.to_string()),
        Err("no free identity left in 300..=301".to_string())
    );
    allocator.release(one).await.expect("known identity");
    assert_eq!(
        allocator.allocate(&labels(&["k8s:n=3"])).await,
        Ok(Identity(300))
    );
}

#[test]
fn list_holds_reserved_then_allocated() {
    let allocator = LocalIdentityAllocator::new();
    allocator
        .allocate_now(&labels(&["k8s:a=b"]))
        .expect("allocates");
    let ids: Vec<u32> = allocator.list().iter().map(|(id, _)| id.0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 256]);
}

#[test]
fn cidr_identities_start_at_1_shl_24_and_stay_stable() {
    let mut table = CidrIdentities::new();
    let first: BTreeSet<IpNet> =
        [net("10.0.0.0/8"), net("192.168.1.7/24"), net("0.0.0.0/0")].into();
    table.sync(&first).expect("room");
    assert_eq!(
        table.entries(),
        [
            (net("10.0.0.0/8"), Identity(16_777_216)),
            (net("192.168.1.0/24"), Identity(16_777_217)),
        ]
    );
    let second: BTreeSet<IpNet> = [net("192.168.1.0/24"), net("fd00::/8")].into();
    table.sync(&second).expect("room");
    assert_eq!(
        table.get(&net("192.168.1.0/24")),
        Some(Identity(16_777_217))
    );
    assert_eq!(table.get(&net("10.0.0.0/8")), None);
    assert_eq!(table.get(&net("fd00::/8")), Some(Identity(16_777_218)));
    assert!(Identity(16_777_218).is_cidr());
    assert!(Identity(16_777_218).is_world());
    let listed: Vec<String> = table
        .list()
        .iter()
        .map(|(id, l)| format!("{id} {l}"))
        .collect();
    assert_eq!(
        listed,
        [
            "16777217 [cidr:192.168.1.0/24 reserved:world-ipv4]",
            "16777218 [cidr:fd00--0/8 reserved:world-ipv6]",
        ]
    );
}

#[test]
fn ipv6_cidr_labels_replace_colons() {
    assert_eq!(cidr_label(&net("::1/128")).to_string(), "cidr:0--1/128");
    assert_eq!(cidr_label(&net("f00d::/64")).to_string(), "cidr:f00d--0/64");
    assert_eq!(
        cidr_label(&net("2001:db8::1/32")).to_string(),
        "cidr:2001-db8--0/32"
    );
}
