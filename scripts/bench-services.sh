#!/usr/bin/env bash
# Figures for socket-level service load balancing, printed (not pass/fail). Run as root
# after building (cargo build --features ebpf-events/loader):
#
#   scripts/bench-services.sh
#
# Brings up its own one-node lab (prefix hbs-, run dir /tmp/hubble-rs-bench-svc), whose
# deathstar service is 10.96.60.53:80 (both deathstars), adds 10.96.60.53:5201 ->
# deathstar-1 for iperf3 and prints:
#   - the connect-time cost of the connect4 socket program (run_time_ns / run_cnt from
#     the kernel's BPF statistics, kernel.bpf_stats_enabled=1 while it runs);
#   - requests/s over the VIP vs straight to a backend (wrk, one connection per request
#     and keep-alive), with their ratio;
#   - iperf3 TCP throughput through the VIP vs straight to deathstar-1.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
RUN=${RUN:-/tmp/hubble-rs-bench-svc}
PREFIX=${PREFIX:-hbs-}
SUBNET=${SUBNET:-10.134.0.0/24}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
VIP=10.96.60.53
D1=10.200.1.10

for tool in wrk iperf3 bpftool jq; do
  command -v "$tool" >/dev/null || { echo "bench-services: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
lab() { "$BIN/hubble-lab" --run-dir "$RUN" --prefix "$PREFIX" "$@"; }
svc() { "$BIN/hubble-agent" service --admin-socket "$RUN/node1/agent.sock" "$@" >/dev/null; }

stats_before=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  sysctl -qw kernel.bpf_stats_enabled="$stats_before" || true
  [[ -f $RUN/iperf3.pid ]] && kill "$(cat "$RUN/iperf3.pid")" 2>/dev/null || true
  rm -f "$RUN/iperf3.pid"
  lab down >/dev/null || true
}
trap cleanup EXIT

relay_port=$((20000 + RANDOM % 20000))
lab up --nodes 1 --node-subnet "$SUBNET" --relay-address "127.0.0.1:$relay_port" >/dev/null
svc update --frontend "$VIP:5201" --backends "$D1:5201"
lab exec deathstar-1 -- iperf3 -s -D --pidfile "$RUN/iperf3.pid" >/dev/null
sleep 1

prog_id=$(bpftool link show pinned "$RUN/bpffs/node1/cgroup/sock4_connect" -j | jq -r .prog_id)
prog_stats() { bpftool prog show id "$prog_id" -j | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"'; }

rps() { # url, extra wrk args...
  local url=$1; shift
  lab exec tiefighter -- wrk -t1 -c8 -d"${SECONDS_PER_RUN}s" "$@" "$url" 2>/dev/null |
    awk '/Requests\/sec/ {print $2}'
}

echo "socket LB figures ($(uname -r), $(nproc) CPUs, ${SECONDS_PER_RUN}s per run)"

sysctl -qw kernel.bpf_stats_enabled=1
read -r t0 c0 < <(prog_stats)
close_vip=$(rps "http://$VIP/" -H "Connection: close")
read -r t1 c1 < <(prog_stats)
sysctl -qw kernel.bpf_stats_enabled="$stats_before"
close_direct=$(rps "http://$D1/" -H "Connection: close")
keep_vip=$(rps "http://$VIP/")
keep_direct=$(rps "http://$D1/")

runs=$((c1 - c0))
if ((runs > 0)); then
  echo "connect4 program: $runs runs, $(((t1 - t0) / runs)) ns per connect (bpf_stats)"
else
  echo "connect4 program: no runs counted"
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "requests/s, one connection per request: VIP $close_vip, direct $close_direct (VIP/direct $(ratio "$close_vip" "$close_direct"))"
echo "requests/s, keep-alive:                 VIP $keep_vip, direct $keep_direct (VIP/direct $(ratio "$keep_vip" "$keep_direct"))"

iperf() { # target
  lab exec tiefighter -- iperf3 -c "$1" -t "$SECONDS_PER_RUN" -J |
    jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100'
}
via_vip=$(iperf "$VIP")
direct=$(iperf "$D1")
echo "iperf3 TCP Gbit/s: VIP $via_vip, direct $direct (VIP/direct $(ratio "$via_vip" "$direct"))"
