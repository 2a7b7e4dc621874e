#!/usr/bin/env python3
"""Latency from a packet to its flow in a `hubble observe -f` stream.

Creates its own lab (hubble-lab with an isolated run dir, prefix and subnet), pings
deathstar from tiefighter at a steady rate, and for every ICMP flow that arrives in
`hubble observe -f -o json` compares the flow's kernel timestamp with the moment the
line was read. Prints p50/p99 in milliseconds. Needs root and built binaries.

usage: scripts/flow_latency.py [BIN_DIR] [PACKETS]
"""
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
PACKETS = int(sys.argv[2]) if len(sys.argv) > 2 else 400
RUN = f"/tmp/hubble-rs-latency-{os.getpid()}"
LAB = [f"{BIN}/hubble-lab", "--run-dir", RUN, "--prefix", f"lt{os.getpid() % 1000}-"]


def flow_time(text):
    # 2026-11-21T10:48:19.608123456Z -> seconds (nanoseconds kept)
    whole, _, frac = text.rstrip("Z").partition(".")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return base.timestamp() + (int(frac.ljust(9, "0")) / 1e9 if frac else 0.0)


def main():
    if os.geteuid() != 0:
        print("flow_latency: needs root (network namespaces, eBPF)")
        return 1
    subprocess.run(LAB + ["up", "--nodes", "1", "--node-subnet", "10.109.0.0/24"], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        server = f"unix://{RUN}/node1/hubble.sock"
        observe = subprocess.Popen(
            [f"{BIN}/hubble", "observe", "--server", server, "-f", "-o", "json",
             "--protocol", "icmp", "--from-pod", "default/tiefighter"],
            stdout=subprocess.PIPE, text=True)
        samples = []

        def read():
            for line in observe.stdout:
                now = time.time()
                try:
                    flow = json.loads(line)["flow"]
                except (ValueError, KeyError):
                    continue
                samples.append((now - flow_time(flow["time"])) * 1000.0)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1.0)
        prefix = LAB[4]
        subprocess.run(["ip", "netns", "exec", f"{prefix}tiefighter", "ping", "-q", "-i", "0.01",
                        "-c", str(PACKETS), "10.200.1.10"], check=False, stdout=subprocess.DEVNULL)
        time.sleep(2.0)
        observe.terminate()
        samples.sort()
        if not samples:
            print("flow_latency: no flows arrived")
            return 1
        p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
        print(f"flows: {len(samples)}  packet->flow latency p50 {p(0.50):.2f} ms  "
              f"p99 {p(0.99):.2f} ms  max {samples[-1]:.2f} ms")
        return 0
    finally:
        subprocess.run(LAB + ["down"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", RUN])


if __name__ == "__main__":
    sys.exit(main())
