//! The memory a hostile policy document costs, measured as the peak
//! resident size of this test process (one test per binary, so nothing
//! else runs in it). Before the limits, a 9 KB alias bomb took 516 MiB.

use agent::policy::{parse_policy, PolicyError};

/// Peak resident memory of this process in KiB (`VmHWM`).
fn peak_kib() -> u64 {
    tests::own_memory_kib("VmHWM")
}

/// The bound checked: far under what an unchecked expansion takes.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn hostile_documents_are_refused_with_bounded_memory() {
    // A billion laughs: each of 40 levels holds its predecessor 40 times,
    // about 9 KB that would expand to 40^40 nodes.
    let mut bomb = String::from("kind: CiliumNetworkPolicy\nspec:\n  l0: &l0 [\"lol\"]\n");
    for level in 1..40 {
        let refs = vec![format!("*l{}", level - 1); 40].join(", ");
        bomb.push_str(&format!("  l{level}: &l{level} [{refs}]\n"));
    }
    assert!(bomb.len() > 9_000, "{}", bomb.len());
    match parse_policy(&bomb) {
        Err(PolicyError::Invalid { message, line }) => {
            assert_eq!(message, "line 6: aliases expand to more than 10000 nodes");
            assert_eq!(line, Some(6));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let deep = format!("spec:\n  endpointSelector: {}", "{a: ".repeat(200_000));
    match parse_policy(&deep) {
        Err(PolicyError::Invalid { message, .. }) => {
            assert_eq!(message, "line 2: the document nests deeper than 64 levels")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let peak = peak_kib();
    println!("peak resident memory: {peak} KiB");
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak resident memory {peak} KiB, more than {PEAK_LIMIT_KIB} KiB"
    );
}
