//! Equality of the parts the encoder interns (a flow's endpoints and context) with the
//! interned ones, as `==` answers it, with short strings compared in place: the
//! derived `PartialEq` calls `memcmp` for every string, and an owned insert compares
//! a dozen or two of them per flow on its cache's hits (a third of its time in a
//! profile). Each message is taken apart whole (no `..`), so a field added to the
//! `.proto` fails to compile here until it is compared.

use proto::flow::{Emitter, Endpoint, NetworkInterface, Policy, Service, Workload};

/// The longest string compared in place; longer ones go to `==`.
const IN_PLACE_MAX: usize = 64;

/// Sixteen bytes of `s` from `at` (the caller checks the length).
#[inline(always)]
fn wide(s: &[u8], at: usize) -> u128 {
    let mut w = [0u8; 16];
    w.copy_from_slice(&s[at..at + 16]);
    u128::from_ne_bytes(w)
}

/// Eight bytes of `s` from `at`.
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// Four bytes of `s` from `at`.
#[inline(always)]
fn half(s: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(w)
}

/// `a == b`: a fixed number of loads for each range of lengths, the last load of a
/// range ending at the last byte (overlapping the ones before it).
#[inline(always)]
pub(super) fn bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => (0..n).all(|i| a[i] == b[i]),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => wide(a, 0) == wide(b, 0) && wide(a, n - 16) == wide(b, n - 16),
        33..=IN_PLACE_MAX => {
            wide(a, 0) == wide(b, 0)
                && wide(a, 16) == wide(b, 16)
                && wide(a, n - 32) == wide(b, n - 32)
                && wide(a, n - 16) == wide(b, n - 16)
        }
        _ => a == b,
    }
}

#[inline(always)]
pub(super) fn str(a: &str, b: &str) -> bool {
    bytes(a.as_bytes(), b.as_bytes())
}

pub(super) fn strs(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| str(a, b))
}

pub(super) fn endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    let Endpoint {
        id,
        identity,
        cluster_name,
        namespace,
        labels,
        pod_name,
        workloads,
    } = a;
    *id == b.id
        && *identity == b.identity
        && str(pod_name, &b.pod_name)
        && str(namespace, &b.namespace)
        && str(cluster_name, &b.cluster_name)
        && strs(labels, &b.labels)
        && workloads.len() == b.workloads.len()
        && workloads
            .iter()
            .zip(&b.workloads)
            .all(|(a, b)| workload(a, b))
}

fn workload(a: &Workload, b: &Workload) -> bool {
    let Workload { name, kind } = a;
    str(name, &b.name) && str(kind, &b.kind)
}

pub(super) fn policies(a: &[Policy], b: &[Policy]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| policy(a, b))
}

fn policy(a: &Policy, b: &Policy) -> bool {
    let Policy {
        name,
        namespace,
        labels,
        revision,
        kind,
    } = a;
    *revision == b.revision
        && str(name, &b.name)
        && str(namespace, &b.namespace)
        && str(kind, &b.kind)
        && strs(labels, &b.labels)
}

pub(super) fn service(a: Option<&Service>, b: Option<&Service>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Service { name, namespace }), Some(b)) => {
            str(name, &b.name) && str(namespace, &b.namespace)
        }
        _ => false,
    }
}

pub(super) fn interface(a: Option<&NetworkInterface>, b: Option<&NetworkInterface>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(NetworkInterface { index, name }), Some(b)) => {
            *index == b.index && str(name, &b.name)
        }
        _ => false,
    }
}

pub(super) fn emitter(a: Option<&Emitter>, b: Option<&Emitter>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Emitter { name, version }), Some(b)) => {
            str(name, &b.name) && str(version, &b.version)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::flow::Flow;

    #[test]
    fn bytes_of_every_length_differ_at_every_place() {
        for n in 0..=IN_PLACE_MAX + 8 {
            let a: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            assert!(bytes(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!bytes(&a, &b), "length {n}, byte {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!bytes(&a, &longer), "length {n} against {}", n + 1);
        }
    }

    /// Strings from a small alphabet and short lengths, so that two drawn alike are
    /// often equal.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[ab]{1,3}",
            "k8s:app=[ab]{1,2}",
            "[ab]{60,70}",
        ]
    }

    fn endpoint_strategy() -> impl Strategy<Value = Endpoint> {
        (
            0u32..2,
            0u32..2,
            text(),
            text(),
            prop::collection::vec(text(), 0..3),
            text(),
            prop::collection::vec((text(), text()), 0..2),
        )
            .prop_map(
                |(id, identity, cluster_name, namespace, labels, pod_name, workloads)| Endpoint {
                    id,
                    identity,
                    cluster_name,
                    namespace,
                    labels,
                    pod_name,
                    workloads: workloads
                        .into_iter()
                        .map(|(name, kind)| Workload { name, kind })
                        .collect(),
                },
            )
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        (
            text(),
            text(),
            prop::collection::vec(text(), 0..3),
            0u64..2,
            text(),
        )
            .prop_map(|(name, namespace, labels, revision, kind)| Policy {
                name,
                namespace,
                labels,
                revision,
                kind,
            })
    }

    /// A value `values` draws and a copy of it whose field `n` (of `fields`, or none) is
    /// another value's, as `take_field` moves it over.
    fn pair<T: Clone + std::fmt::Debug, S: Strategy<Value = T>>(
        values: fn() -> S,
        fields: usize,
        take_field: fn(&mut T, T, usize),
    ) -> impl Strategy<Value = (T, T)> {
        (values(), values(), 0..=fields).prop_map(move |(a, other, n)| {
            let mut b = a.clone();
            take_field(&mut b, other, n);
            (a, b)
        })
    }

    fn endpoint_pair() -> impl Strategy<Value = (Endpoint, Endpoint)> {
        pair(endpoint_strategy, 7, |b, other, n| match n {
            0 => b.id = other.id,
            1 => b.identity = other.identity,
            2 => b.cluster_name = other.cluster_name,
            3 => b.namespace = other.namespace,
            4 => b.labels = other.labels,
            5 => b.pod_name = other.pod_name,
            6 => b.workloads = other.workloads,
            _ => {}
        })
    }

    fn policy_pair() -> impl Strategy<Value = (Policy, Policy)> {
        pair(policy_strategy, 5, |b, other, n| match n {
            0 => b.name = other.name,
            1 => b.namespace = other.namespace,
            2 => b.labels = other.labels,
            3 => b.revision = other.revision,
            4 => b.kind = other.kind,
            _ => {}
        })
    }

    /// A flow's context (the fields `context_of` copies) and a copy of it with at
    /// most one of them drawn anew; endpoints and policies alike ([`pair`]).
    fn context_pair() -> impl Strategy<Value = (Flow, Flow)> {
        fn context() -> impl Strategy<Value = Flow> {
            (
                (text(), prop::collection::vec(text(), 0..2), text(), 0u32..2),
                (
                    prop::option::of((text(), text())),
                    prop::option::of((text(), text())),
                    prop::option::of((text(), text())),
                ),
                (
                    prop::collection::vec(policy_strategy(), 0..2),
                    prop::collection::vec(policy_strategy(), 0..2),
                    prop::collection::vec(policy_strategy(), 0..2),
                    prop::collection::vec(policy_strategy(), 0..2),
                ),
                (prop::collection::vec(text(), 0..2), 0i32..2, 0i32..2),
            )
                .prop_map(|(first, services, policies, rest)| {
                    let (node_name, node_labels, summary, index) = first;
                    let service = |s: Option<(String, String)>| {
                        s.map(|(name, namespace)| Service { name, namespace })
                    };
                    Flow {
                        node_name,
                        node_labels,
                        summary: summary.clone(),
                        interface: (index > 0).then_some(NetworkInterface {
                            index,
                            name: summary,
                        }),
                        emitter: services.0.map(|(name, version)| Emitter { name, version }),
                        source_service: service(services.1),
                        destination_service: service(services.2),
                        egress_allowed_by: policies.0,
                        ingress_allowed_by: policies.1,
                        egress_denied_by: policies.2,
                        ingress_denied_by: policies.3,
                        policy_log: rest.0,
                        sock_xlate_point: rest.1,
                        debug_capture_point: rest.2,
                        ..Flow::default()
                    }
                })
        }
        pair(context, 14, |b, other, n| match n {
            0 => b.node_name = other.node_name,
            1 => b.node_labels = other.node_labels,
            2 => b.emitter = other.emitter,
            3 => b.interface = other.interface,
            4 => b.source_service = other.source_service,
            5 => b.destination_service = other.destination_service,
            6 => b.summary = other.summary,
            7 => b.egress_allowed_by = other.egress_allowed_by,
            8 => b.ingress_allowed_by = other.ingress_allowed_by,
            9 => b.egress_denied_by = other.egress_denied_by,
            10 => b.ingress_denied_by = other.ingress_denied_by,
            11 => b.policy_log = other.policy_log,
            12 => b.sock_xlate_point = other.sock_xlate_point,
            13 => b.debug_capture_point = other.debug_capture_point,
            _ => {}
        })
    }

    proptest! {
        #[test]
        fn strings_compare_as_eq(a in text(), b in text()) {
            prop_assert_eq!(str(&a, &b), a == b);
        }

        #[test]
        fn endpoints_compare_as_eq((a, b) in endpoint_pair()) {
            prop_assert_eq!(endpoint(&a, &b), a == b);
        }

        #[test]
        fn policies_compare_as_eq((a, b) in policy_pair(), c in policy_strategy()) {
            prop_assert_eq!(
                policies(std::slice::from_ref(&a), std::slice::from_ref(&b)),
                a == b
            );
            let (ac, bc) = (vec![a.clone(), c.clone()], vec![b.clone(), c]);
            prop_assert_eq!(policies(&ac, &bc), ac == bc);
            prop_assert!(!policies(std::slice::from_ref(&a), &ac));
        }

        #[test]
        fn contexts_compare_as_their_fields((a, b) in context_pair()) {
            let fields_equal = super::super::context_of(&a) == super::super::context_of(&b);
            prop_assert_eq!(super::super::context_eq(&a, &b), fields_equal);
        }

        #[test]
        fn the_small_parts_compare_as_eq(
            a in (text(), text(), 0u32..2),
            b in (text(), text(), 0u32..2),
            present in (any::<bool>(), any::<bool>()),
        ) {
            let sa = Service { name: a.0.clone(), namespace: a.1.clone() };
            let sb = Service { name: b.0.clone(), namespace: b.1.clone() };
            let (sa, sb) = (present.0.then_some(&sa), present.1.then_some(&sb));
            prop_assert_eq!(service(sa, sb), sa == sb);
            let ia = NetworkInterface { index: a.2, name: a.0.clone() };
            let ib = NetworkInterface { index: b.2, name: b.0.clone() };
            let (ia, ib) = (present.0.then_some(&ia), present.1.then_some(&ib));
            prop_assert_eq!(interface(ia, ib), ia == ib);
            let ea = Emitter { name: a.0.clone(), version: a.1.clone() };
            let eb = Emitter { name: b.0.clone(), version: b.1.clone() };
            let (ea, eb) = (present.0.then_some(&ea), present.1.then_some(&eb));
            prop_assert_eq!(emitter(ea, eb), ea == eb);
        }
    }
}
