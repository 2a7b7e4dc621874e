#!/usr/bin/env bash
# Runs every test of hubble-rs: unit, golden, property, in-process gRPC and the
# end-to-end tests that need root (network namespaces, eBPF, etcd, Prometheus,
# Chromium, tmux). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CARGO_TERM_COLOR=never
# A CI build is built once: incremental caches would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo build --workspace --all-targets --features ebpf-events/loader
# End-to-end tests create network namespaces and load BPF programs: one at a time.
cargo test --workspace --features ebpf-events/loader --no-fail-fast -- --test-threads=2
