//! Corpus replay of the fuzz targets: what CI runs in place of cargo-fuzz.
//!
//! Every target in `fuzz/fuzz_targets/` calls one `fuzzing::*` function of the crate
//! that owns the parser. [`replay`] calls the same function on the target's checked-in
//! seeds (`fuzz/seeds/<target>/`: small valid inputs and the inputs of every crash
//! found so far), then on a fixed number of inputs mutated from them and of random
//! bytes, all from a fixed seed so a failure replays exactly. An input fails the test
//! when it panics or runs longer than [`MAX_INPUT_TIME`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Inputs mutated from the seeds, per target.
pub const MUTATED_INPUTS: usize = 1_500;
/// Inputs of random bytes, per target.
pub const RANDOM_INPUTS: usize = 100;
/// Longest input produced by a mutation.
pub const MAX_MUTATED_LEN: usize = 16 * 1024;
/// An input that takes longer than this hangs: every target handles a seed in
/// milliseconds even in a debug build, so this is only crossed by a runaway input
/// (nested YAML, huge regexes, quadratic loops), never by a busy machine.
pub const MAX_INPUT_TIME: Duration = Duration::from_secs(10);

/// Bytes that mean something to the parsers under test (YAML, JSON, label selectors,
/// protobuf varints), spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\n",
    b"\n- ",
    b"---\n",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"~",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"4294967296",
    b"18446744073709551616",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"==",
    b"!=",
    b" in (",
    b" notin (",
    b"k8s:",
    b"reserved:",
    b"*",
    b"/",
    b"..",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\xc2\x3e",
    b"\xca\x3e",
];

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Seed files run.
    pub seeds: usize,
    /// Inputs run in all (seeds, mutated, random).
    pub inputs: usize,
    /// The slowest input's time.
    pub slowest: Duration,
}

/// The checked-in seeds of `target`.
pub fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Runs `entry` on the seeds of `target`, then on mutated and random inputs; panics
/// naming the input when one panics or hangs.
pub fn replay(target: &str, entry: fn(&[u8])) -> ReplayReport {
    let dir = seeds_dir(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read the seeds of {target} in {}: {e}",
                dir.display()
            )
        })
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read seed {}: {e}", path.display()));
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, bytes)
        })
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "{target} has no seeds in {}",
        dir.display()
    );

    let mut report = ReplayReport {
        seeds: seeds.len(),
        ..ReplayReport::default()
    };
    for (name, bytes) in &seeds {
        run_one(target, &format!("seed {name}"), bytes, entry, &mut report);
    }
    let mut rng = Rng::new(0x5eed_f022 ^ target.len() as u64);
    for i in 0..MUTATED_INPUTS {
        let (name, base) = &seeds[rng.below(seeds.len())];
        let (_, other) = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, other);
        run_one(
            target,
            &format!("mutation {i} of seed {name}"),
            &input,
            entry,
            &mut report,
        );
    }
    for i in 0..RANDOM_INPUTS {
        let len = rng.below(512);
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        run_one(
            target,
            &format!("random input {i}"),
            &input,
            entry,
            &mut report,
        );
    }
    report
}

fn run_one(target: &str, origin: &str, input: &[u8], entry: fn(&[u8]), report: &mut ReplayReport) {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| entry(input)));
    let took = started.elapsed();
    report.inputs += 1;
    report.slowest = report.slowest.max(took);
    let shown = String::from_utf8_lossy(&input[..input.len().min(2048)]);
    assert!(
        outcome.is_ok(),
        "{target} panicked on {origin} ({} bytes): {shown:?}",
        input.len()
    );
    assert!(
        took <= MAX_INPUT_TIME,
        "{target} took {took:?} (limit {MAX_INPUT_TIME:?}) on {origin} ({} bytes): {shown:?}",
        input.len()
    );
}

/// One to four random edits of `base`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = [0, 0x7f, 0x80, 0xff, b'0', b'\n'][rng.below(6)];
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 => out.insert(at, rng.next() as u8),
            4 | 5 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            6 if !out.is_empty() => {
                // Repeat a chunk: deep nesting, long lists, many filters.
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let chunk = out[start..end].to_vec();
                for _ in 0..rng.below(64) {
                    out.splice(at..at, chunk.iter().copied());
                }
            }
            _ => {
                // Splice: the head of one seed with the tail of another.
                let cut = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[cut..]);
            }
        }
        out.truncate(MAX_MUTATED_LEN);
    }
    out
}

/// xorshift64*: a fixed sequence, so a failing input is produced again on every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
