#!/usr/bin/env python3
"""Instructions per request of one or more sluice binaries, under callgrind.

CPU time per request on a shared VM moves by tens of percent between runs;
instruction counts do not (callgrind counts them, whatever the neighbours
do). This A/B tool runs each binary under valgrind --tool=callgrind, sends
a fixed number of requests per scenario with the load client, and reports
user-space instructions per request as the difference between a short and
a long run (start-up and shutdown cancel out). Kernel work (the loopback TCP
stack, most of the real cost) is not counted: use compare.py or run.py for
CPU time against nginx.

  python3 loadtest/instructions.py --build build [BINARY ...]

With no BINARY it measures build/proxy/sluice. Every process it starts is
stopped by PID; traffic goes to 127.0.0.1 only; each run is bounded by
--requests and a timeout.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import SLUICE_YAML, free_port, wait_port  # noqa: E402

SCENARIOS = [("pass-through", "/plain/x"), ("limits-allow", "/limited/x"),
             ("reject-429", "/reject/x")]


def instructions(binary, build, up_port, path, requests, tmp):
    """Total Ir of one callgrind run of `binary` serving `requests` requests."""
    port, admin = free_port(), free_port()
    cfg = os.path.join(tmp, f"cg-{port}.yaml")
    with open(cfg, "w") as f:
        f.write(SLUICE_YAML.format(port=port, admin=admin, up=up_port))
    out = os.path.join(tmp, f"cg-{port}.out")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                             binary, "--config", cfg, "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=60)
        if requests > 0:
            subprocess.run([f"{build}/loadtest/client/sluice-load-client",
                            "--url", f"http://127.0.0.1:{port}{path}", "--connections", "8",
                            "--max-requests", str(requests), "--duration", "120"],
                           check=True, stdout=subprocess.DEVNULL, timeout=180)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    total = 0
    for name in glob.glob(out + "*"):
        with open(name) as f:
            m = re.search(r"^summary:\s+(\d+)", f.read(), re.M)
            if m:
                total += int(m.group(1))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=20000, help="requests of the long run")
    ap.add_argument("--scenarios", default=",".join(s for s, _ in SCENARIOS))
    ap.add_argument("binaries", nargs="*")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind missing")
    binaries = args.binaries or [f"{args.build}/proxy/sluice"]
    tmp = tempfile.mkdtemp(prefix="sluice-instr-")
    up_port = free_port()
    up = subprocess.Popen([f"{args.build}/loadtest/upstream/sluice-demo-upstream",
                           "--listen", f"127.0.0.1:{up_port}", "--threads", "1"],
                          stdout=subprocess.DEVNULL)
    try:
        wait_port(up_port)
        short = max(1, args.requests // 10)
        print(f"{'scenario':<14} {'binary':<40} {'instr/request':>14}")
        for scen, path in SCENARIOS:
            if scen not in args.scenarios.split(","):
                continue
            for b in binaries:
                lo = instructions(b, args.build, up_port, path, short, tmp)
                hi = instructions(b, args.build, up_port, path, args.requests, tmp)
                print(f"{scen:<14} {b:<40} {(hi - lo) / (args.requests - short):>14.0f}",
                      flush=True)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
