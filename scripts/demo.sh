#!/usr/bin/env bash
# The Star Wars demo on this machine: builds everything, creates the lab (network
# namespaces wired by veths, the eBPF datapath, an agent per node, the relay), sends
# the demo's traffic, imports rule1 and shows what Hubble sees. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: creating network namespaces and loading eBPF programs needs root; run it as root" >&2
  exit 1
fi
bash scripts/setup.sh
profile=${HUBBLE_DEMO_PROFILE:-release}
if [[ $profile == release ]]; then
  cargo build --release --bins
else
  cargo build --bins
fi
bin="${CARGO_TARGET_DIR:-$PWD/target}/$([[ $profile == release ]] && echo release || echo debug)"
export PATH="$PWD/$bin:$PATH"

"$bin/hubble-lab" down >/dev/null 2>&1 || true
"$bin/hubble-lab" up --nodes "${NODES:-1}"
trap 'echo; echo "The lab keeps running. Remove it with: $bin/hubble-lab down"' EXIT

# The agents program their endpoints just after start-up: wait until every pod is ready.
for _ in $(seq 60); do
  ready=0
  for sock in /var/run/hubble-rs/node*/agent.sock; do
    n=$("$bin/hubble-agent" endpoint list --admin-socket "$sock" 2>/dev/null | grep -c " ready" || true)
    ready=$((ready + n))
  done
  ((ready >= 5)) && break
  sleep 0.5
done
sleep 2

echo "== Traffic without policy: both ships land"
"$bin/hubble-lab" traffic
sleep 1
hubble observe --server localhost:4245 --last 15

echo
echo "== Importing rule1 (only org=empire may reach class=deathstar on TCP/80)"
for sock in /var/run/hubble-rs/node*/agent.sock; do
  "$bin/hubble-agent" policy import --admin-socket "$sock" examples/policies/rule1.yaml
done
"$bin/hubble-lab" traffic
sleep 1
echo
echo "== hubble observe --from-pod default/xwing --verdict DROPPED"
hubble observe --server localhost:4245 --from-pod default/xwing --verdict DROPPED --last 5
echo
echo "== hubble observe --type policy-verdict"
hubble observe --server localhost:4245 --type policy-verdict --last 5
echo
hubble status --server localhost:4245
cat <<MSG

Where to look:
  hubble observe --server localhost:4245 -f            # live flows through the relay
  hubble observe --server unix:///var/run/hubble-rs/node1/hubble.sock --last 20
  curl -s http://10.100.0.11:9965/metrics | grep hubble_   # metrics of node1
  $bin/hubble-agent endpoint list --admin-socket /var/run/hubble-rs/node1/agent.sock
MSG
