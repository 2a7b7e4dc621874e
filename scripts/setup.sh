#!/usr/bin/env bash
# Installs what hubble-rs needs on a fresh Debian machine (run as root). Idempotent:
# packages already present are not fetched again.
set -euo pipefail

packages=(
  clang-19 llvm-19 libbpf-dev        # compiling the eBPF datapath
  iproute2 iputils-ping iperf3       # the lab: namespaces, veths, tc; traffic
  bpftool                            # inspecting loaded programs and maps
  etcd-server etcd-client            # cluster state
  prometheus                         # scraping :9965 in the metrics tests
  chromium nodejs                    # the web UI tests (Playwright drives chromium)
  tmux                               # the terminal UI tests
  protobuf-compiler                  # etcd-client's build script runs protoc
  openssh-server openssh-client      # hubble port-forward over ssh (tests start sshd)
  g++                                # libFuzzer for the by-hand fuzz runs (cargo fuzz)
  curl jq ca-certificates pkg-config # curl: the demo's requests from the pods
  util-linux procps                  # setsid, setpriv, kill (the lab and its tests)
  wrk                                # scripts/bench-services.sh, bench-proxy.sh: requests/s
  haproxy                            # scripts/bench-proxy.sh: the proxy compared with HAProxy
)

# npm: Debian's package, unless the installed Node.js already bundles it.
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is not installed; install a Rust toolchain (1.87 or newer)" >&2
  exit 1
fi

# The web UI's test driver (Playwright drives Debian's chromium; no browser download).
if [[ -f ui-backend/tests/browser/package.json ]] && command -v npm >/dev/null; then
  (cd ui-backend/tests/browser && npm install --no-audit --no-fund --silent)
fi
