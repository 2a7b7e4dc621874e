#!/usr/bin/env bash
# Figures for the L7 HTTP proxy, printed (not pass/fail):
#
#   scripts/bench-proxy.sh
#
# On loopback, one run: a backend (proxy/examples/l7_bench.rs, its own core), then wrk
# straight to it, through our proxy, and through HAProxy, the two proxies each on the
# same other core with the same rule (only POST /v1/request-landing, anchored), wrk
# (one thread) on the backend's core. Two loads per target: CONNECTIONS keep-alive
# connections for requests/s, one connection for latency, ROUNDS times over. Prints each
# round, then the medians: requests/s, p50/p99, the latency each proxy adds over the
# direct path, and the ratios (each the median of the rounds' ratios: rounds are paired runs).
set -euo pipefail

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
LOAD_CPU=${LOAD_CPU:-0}   # backend and wrk
PROXY_CPU=${PROXY_CPU:-1} # our proxy, then HAProxy
TARGET=${CARGO_TARGET_DIR:-target}

for tool in wrk haproxy taskset cargo; do
  command -v "$tool" >/dev/null || { echo "bench-proxy: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
cargo build -q --release -p proxy --example l7_bench
BENCH=$TARGET/release/examples/l7_bench

work=$(mktemp -d /tmp/hubble-rs-bench-proxy.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral range (32768-60999), where the runs leave ports in TIME_WAIT.
base=$((10000 + RANDOM % 20000))
backend=127.0.0.1:$base ours=127.0.0.1:$((base + 1)) theirs=127.0.0.1:$((base + 2))

taskset -c "$LOAD_CPU" "$BENCH" backend "$backend" & pids+=($!)
taskset -c "$PROXY_CPU" "$BENCH" proxy "$ours" "$backend" & pids+=($!)
cat >"$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
frontend deathstar
  bind $theirs
  acl post method POST
  acl landing path_reg ^/v1/request-landing\$
  http-request deny deny_status 403 unless post landing
  default_backend deathstar
backend deathstar
  server backend $backend
CFG
haproxy -c -q -f "$work/haproxy.cfg"
taskset -c "$PROXY_CPU" haproxy -db -f "$work/haproxy.cfg" & pids+=($!)

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/v1/request-landing"
wrk.headers["Host"] = "deathstar.default.svc.cluster.local"
LUA

for address in "$backend" "$ours" "$theirs"; do
  for _ in $(seq 50); do
    curl -s -o /dev/null -X POST "http://$address/v1/request-landing" && break
    sleep 0.1
  done
done
for address in "$ours" "$theirs"; do
  denied=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$address/v1/exhaust-port")
  landed=$(curl -s -X POST "http://$address/v1/request-landing")
  [[ $denied == 403 && $landed == "Ship landed" ]] || { echo "bench-proxy: $address does not enforce the rule ($denied, $landed)" >&2; exit 1; }
done

# wrk's figures: requests/s, p50 and p99 in microseconds.
run() { # address connections
  taskset -c "$LOAD_CPU" wrk -t1 -c"$2" -d"${SECONDS_PER_RUN}s" --latency -s "$work/post.lua" "http://$1" |
    awk '
      function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1000000; return v }
      /Requests\/sec/ { rps = $2 }
      $1 == "50%" { p50 = us($2) }
      $1 == "99%" { p99 = us($2) }
      / Non-2xx or 3xx responses/ { bad = $NF }
      END { if (bad) { print "bench-proxy: " bad " failed requests" > "/dev/stderr"; exit 1 } printf "%.0f %.1f %.1f\n", rps, p50, p99 }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "L7 proxy figures ($(uname -r), $(nproc) CPUs, ${SECONDS_PER_RUN}s per run, $ROUNDS rounds, medians; proxies on CPU $PROXY_CPU, backend and wrk on CPU $LOAD_CPU)"
declare -a D O H D50 D99 O50 O99 H50 H99 RPS_RATIO P50_RATIO P99_RATIO
for round in $(seq "$ROUNDS"); do
  # Each round runs the three targets back to back, so a slow spell of the machine
  # weighs on all three; the medians over rounds are what is printed.
  read -r d _ _ < <(run "$backend" "$CONNECTIONS")
  read -r o _ _ < <(run "$ours" "$CONNECTIONS")
  read -r h _ _ < <(run "$theirs" "$CONNECTIONS")
  read -r _ d50 d99 < <(run "$backend" 1)
  read -r _ o50 o99 < <(run "$ours" 1)
  read -r _ h50 h99 < <(run "$theirs" 1)
  D+=("$d") O+=("$o") H+=("$h") D50+=("$d50") D99+=("$d99") O50+=("$o50") O99+=("$o99") H50+=("$h50") H99+=("$h99")
  RPS_RATIO+=("$(awk -v o="$o" -v h="$h" 'BEGIN { printf "%.3f", o / h }')")
  # Added latency over the direct path of the same round, ours over HAProxy's.
  P50_RATIO+=("$(awk -v o="$o50" -v h="$h50" -v d="$d50" 'BEGIN { printf "%.3f", (h > d) ? (o - d) / (h - d) : 0 }')")
  P99_RATIO+=("$(awk -v o="$o99" -v h="$h99" -v d="$d99" 'BEGIN { printf "%.3f", (h > d) ? (o - d) / (h - d) : 0 }')")
  echo "round $round: requests/s direct $d, hubble-rs proxy $o, haproxy $h; p50/p99 us direct $d50/$d99, hubble-rs proxy $o50/$o99, haproxy $h50/$h99"
done
d_rps=$(median "${D[@]}") o_rps=$(median "${O[@]}") h_rps=$(median "${H[@]}")
d50=$(median "${D50[@]}") d99=$(median "${D99[@]}") o50=$(median "${O50[@]}") o99=$(median "${O99[@]}") h50=$(median "${H50[@]}") h99=$(median "${H99[@]}")
ratio=$(median "${RPS_RATIO[@]}") p50_ratio=$(median "${P50_RATIO[@]}") p99_ratio=$(median "${P99_RATIO[@]}")

awk -v c="$CONNECTIONS" -v d="$d_rps" -v o="$o_rps" -v h="$h_rps" -v r="$ratio" -v r50="$p50_ratio" -v r99="$p99_ratio" \
    -v d50="$d50" -v d99="$d99" -v o50="$o50" -v o99="$o99" -v h50="$h50" -v h99="$h99" 'BEGIN {
  printf "requests/s (%d keep-alive connections): direct %d, hubble-rs proxy %d (%.2fx direct), haproxy %d (%.2fx direct); proxy/haproxy %.2fx (median of the per-round ratios)\n", c, d, o, o / d, h, h / d, r
  printf "latency (1 connection) p50/p99 us: direct %.0f/%.0f, hubble-rs proxy %.0f/%.0f, haproxy %.0f/%.0f\n", d50, d99, o50, o99, h50, h99
  ao50 = o50 - d50; ao99 = o99 - d99; ah50 = h50 - d50; ah99 = h99 - d99
  printf "added latency p50/p99 us (medians over rounds): hubble-rs proxy %.0f/%.0f, haproxy %.0f/%.0f; proxy/haproxy %.2fx/%.2fx (median of the per-round ratios)\n", ao50, ao99, ah50, ah99, r50, r99
}'
