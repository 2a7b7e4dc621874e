#!/usr/bin/env bash
# The Star Wars demo on this machine: builds everything, creates the lab (network
# namespaces wired by veths, the eBPF datapath, an agent per node, the relay), follows
# the seeds' steps (`kubectl exec` becomes `hubble-lab exec`), imports rule1 and shows
# what Hubble sees. Needs root.
#
# Settings (environment):
#   NODES                      number of nodes (1)
#   HUBBLE_DEMO_PROFILE        release (default) or debug build
#   HUBBLE_DEMO_BIN_DIR        use the binaries already built there: no setup, no build
#   HUBBLE_LAB_RUN_DIR, HUBBLE_LAB_PREFIX, HUBBLE_LAB_NODE_SUBNET, HUBBLE_LAB_RELAY_ADDRESS
#                              where the lab lives (see `hubble-lab up --help`)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: creating network namespaces and loading eBPF programs needs root; run it as root" >&2
  exit 1
fi
if [[ -n ${HUBBLE_DEMO_BIN_DIR:-} ]]; then
  bin=$(cd "$HUBBLE_DEMO_BIN_DIR" && pwd)
else
  bash scripts/setup.sh
  profile=${HUBBLE_DEMO_PROFILE:-release}
  if [[ $profile == release ]]; then
    cargo build --release --bins
  else
    cargo build --bins
  fi
  bin=$(cd "${CARGO_TARGET_DIR:-target}/$([[ $profile == release ]] && echo release || echo debug)" && pwd)
fi
for tool in hubble hubble-lab hubble-agent hubble-relay; do
  [[ -x $bin/$tool ]] || { echo "demo: $bin/$tool is missing" >&2; exit 1; }
done
export PATH="$bin:$PATH"
export HUBBLE_LAB_RUN_DIR=${HUBBLE_LAB_RUN_DIR:-/var/run/hubble-rs}
export HUBBLE_LAB_RELAY_ADDRESS=${HUBBLE_LAB_RELAY_ADDRESS:-127.0.0.1:4245}
relay=$HUBBLE_LAB_RELAY_ADDRESS
subnet=${HUBBLE_LAB_NODE_SUBNET:-10.100.0.0/24}
node1=${subnet%/*}
node1=${node1%.*}.11
ship_url=deathstar.default.svc.cluster.local/v1/request-landing

# Retries a command (quietly) until it succeeds and prints something; fails after 20 s.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 200); do
    if [[ -n $("$@" 2>/dev/null) ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "demo: gave up waiting for $what" >&2
  return 1
}

# Prints a command as a user would type it, then runs it.
show() {
  echo "\$ $*"
  "$@"
}

hubble-lab down >/dev/null 2>&1 || true
# `up` returns once every agent has programmed every endpoint.
hubble-lab up --nodes "${NODES:-1}"
trap 'echo; echo "The lab keeps running. Remove it with: $bin/hubble-lab down"' EXIT

echo
echo "== Without policy: both ships land"
show hubble-lab exec tiefighter -- curl -s --max-time 5 -XPOST "$ship_url"
show hubble-lab exec xwing -- curl -s --max-time 5 -XPOST "$ship_url"
wait_for "xwing's landing in the relay" \
  hubble observe --server "$relay" --from-pod default/xwing --to-port 80 --last 1
show hubble observe --server "$relay" --from-pod default/xwing --to-port 80 --last 20

echo
echo "== Importing rule1 (only org=empire may reach class=deathstar on TCP/80)"
for sock in "$HUBBLE_LAB_RUN_DIR"/node*/agent.sock; do
  hubble-agent policy import --admin-socket "$sock" examples/policies/rule1.yaml
done
# Prints "yes" once every deathstar on the node of admin socket $1 (if any) enforces
# ingress policy in the datapath (the agent says `ready` once its datapath caught up).
rule1_in_force() {
  local list
  list=$(hubble-agent endpoint list --admin-socket "$1") || return 1
  # An endpoint's first row carries its enforcement, first label (sorted) and status.
  if grep 'k8s:app.kubernetes.io/name=deathstar ' <<<"$list" |
    grep -qv '^[0-9]* *Enabled .* ready *$'; then
    return 1
  fi
  echo yes
}
for sock in "$HUBBLE_LAB_RUN_DIR"/node*/agent.sock; do
  wait_for "rule1 on the deathstars ($sock)" rule1_in_force "$sock"
done
show hubble-lab exec tiefighter -- curl -s --max-time 5 -XPOST "$ship_url"
if show hubble-lab exec xwing -- curl -s --max-time 5 -XPOST "$ship_url"; then
  echo "demo: the xwing landed although rule1 denies it" >&2
  exit 1
else
  echo "command terminated with exit code $? (the xwing's SYNs are dropped)"
fi
wait_for "xwing's dropped SYNs in the relay" \
  hubble observe --server "$relay" --from-pod default/xwing --verdict DROPPED --type drop --last 1
echo
show hubble observe --server "$relay" --from-pod default/xwing --verdict DROPPED --last 5
echo
show hubble observe --server "$relay" --type policy-verdict --from-pod default/tiefighter --to-port 80 --last 2
echo
show hubble observe --server "$relay" --type policy-verdict --from-pod default/xwing --last 2
echo
show hubble status --server "$relay"

echo
echo "== rule1 with its L7 part (only POST /v1/request-landing reaches the deathstar)"
for sock in "$HUBBLE_LAB_RUN_DIR"/node*/agent.sock; do
  hubble-agent policy import --admin-socket "$sock" examples/policies/rule1-l7.yaml
done
# Prints "yes" once every deathstar on the node of admin socket $1 (if any) has its
# proxy redirect programmed (listed under its labels, endpoint ready).
l7_in_force() {
  local list
  list=$(hubble-agent endpoint list --admin-socket "$1") || return 1
  if grep -q 'k8s:app.kubernetes.io/name=deathstar ' <<<"$list"; then
    grep -q 'proxy-redirect .*:ingress:TCP:80 ' <<<"$list" || return 1
    grep -q ' regenerating *$' <<<"$list" && return 1
  fi
  echo yes
}
for sock in "$HUBBLE_LAB_RUN_DIR"/node*/agent.sock; do
  wait_for "the L7 redirect on the deathstars ($sock)" l7_in_force "$sock"
done
monitor_log=$(mktemp)
hubble-agent monitor -v --type l7 --unix-socket "$HUBBLE_LAB_RUN_DIR/node1/hubble.sock" \
  >"$monitor_log" 2>&1 &
monitor_pid=$!
sleep 0.5
show hubble-lab exec tiefighter -- curl -s --max-time 5 -XPOST "$ship_url"
show hubble-lab exec tiefighter -- curl -s --max-time 5 -XPUT deathstar.default.svc.cluster.local/v1/exhaust-port
wait_for "the denied request in the relay" \
  hubble observe --server "$relay" --pod deathstar --verdict DROPPED --type l7 --last 1
show hubble observe --server "$relay" --pod deathstar --verdict DROPPED --type l7 --last 1
show hubble observe --server "$relay" --type l7 --from-pod default/tiefighter --last 2
echo "\$ hubble-agent monitor -v --type l7"
wait_for "the L7 records in the monitor" grep 'verdict Denied' "$monitor_log"
sleep 0.5
kill "$monitor_pid" 2>/dev/null || true
grep '^<-\|^->' "$monitor_log" || true
rm -f "$monitor_log"
cat <<MSG

Where to look:
  hubble observe --server $relay -f            # live flows through the relay
  hubble observe --server unix://$HUBBLE_LAB_RUN_DIR/node1/hubble.sock --last 20
  hubble-lab exec tiefighter -- curl -s -XPUT deathstar.default.svc.cluster.local/v1/exhaust-port
  tail -f $HUBBLE_LAB_RUN_DIR/node1/events.log   # flows exported as JSON lines
  curl -s http://$node1:9965/metrics | grep hubble_   # metrics of node1
  hubble-agent endpoint list --admin-socket $HUBBLE_LAB_RUN_DIR/node1/agent.sock
(the tools are in $bin)
MSG
