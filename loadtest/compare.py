#!/usr/bin/env python3
"""sluice vs nginx, same machine, same run, interleaved rounds.

Starts the demo upstream, sluice and nginx (each with its own temporary
config, one worker each), drives them with wrk in alternating rounds, and
reports req/s, p50/p99 latency and CPU microseconds per request of each proxy
(from /proc/PID/stat utime+stime over the round). Every process it starts is
stopped by PID on exit; traffic goes to 127.0.0.1 only.

  python3 loadtest/compare.py --build build-release [--rounds 3] [--seconds 5]
      [--baseline OTHER/proxy/sluice]

--baseline adds a second sluice binary (e.g. the build of an earlier commit)
as target "base", interleaved with the others, for before/after A/B runs.

The full comparison (HAProxy too, limits that allow, many clients, accuracy,
key flood, report and charts) is loadtest/run.py; this script stays as the
quick two-proxy check with --strace.
"""
import argparse
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
procs = []


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


atexit.register(stop_all)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def child_pids(pid):
    """nginx: master + workers; the workers do the work."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def parse_latency(text, label):
    m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(port, path, seconds, conns, lua=None):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if lua:
        cmd += ["-s", lua]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": reqs,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": parse_latency(out, "50%"),
        "p99": parse_latency(out, "99%"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


SLUICE_YAML = """
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin}
  workers: 1
upstreams:
  demo:
    targets: [127.0.0.1:{up}]
    max_connections: 256
limits:
  global:   {{ per: global, rate: 10000000/s, burst: 10000000 }}
  per_ip:   {{ per: ip, rate: 10000000/s, burst: 10000000 }}
  per_key:  {{ per: api_key, rate: 10000000/s, burst: 10000000 }}
  tiny:     {{ per: global, rate: 1/s, burst: 1 }}
routes:
  - {{ path_prefix: /plain/, upstream: demo }}
  - {{ path_prefix: /limited/, upstream: demo, limits: [global, per_ip, per_key] }}
  - {{ path_prefix: /reject/, upstream: demo, limits: [tiny] }}
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  limit_req_zone $binary_remote_addr zone=allow:10m rate=10000000r/s;
  limit_req_zone $server_port zone=tiny:1m rate=1r/m;
  limit_req_status 429;
  limit_req_log_level info;
  upstream demo {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location /plain/ {{ proxy_pass http://demo; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location /limited/ {{ limit_req zone=allow burst=10000000 nodelay;
      proxy_pass http://demo; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location /reject/ {{ limit_req zone=tiny;
      proxy_pass http://demo; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""

SCENARIOS = [
    ("pass-through", "/plain/x"),
    ("limits-allow", "/limited/x"),
    ("reject-429", "/reject/x"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-release")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--scenarios", default="pass-through,limits-allow,reject-429")
    ap.add_argument("--strace", action="store_true", help="count sluice syscalls per request")
    ap.add_argument("--baseline", help="another sluice binary to run beside it (A/B)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} missing: run scripts/setup.sh bench")
    tmp = tempfile.mkdtemp(prefix="sluice-compare-")
    up_port, s_port, s_admin, n_port = free_port(), free_port(), free_port(), free_port()
    up = subprocess.Popen([f"{args.build}/loadtest/upstream/sluice-demo-upstream",
                           "--listen", f"127.0.0.1:{up_port}", "--threads", "1"],
                          stdout=subprocess.DEVNULL)
    procs.append(up)
    wait_port(up_port)
    with open(f"{tmp}/sluice.yaml", "w") as f:
        f.write(SLUICE_YAML.format(port=s_port, admin=s_admin, up=up_port))
    sluice_cmd = [f"{args.build}/proxy/sluice", "--config", f"{tmp}/sluice.yaml",
                  "--log-level", "warn"]
    sl = subprocess.Popen(sluice_cmd)
    procs.append(sl)
    for d in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        os.makedirs(f"{tmp}/{d}", exist_ok=True)
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, up=up_port, port=n_port))
    ng = subprocess.Popen(["/usr/sbin/nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp],
                          stderr=subprocess.DEVNULL)
    procs.append(ng)
    wait_port(s_port)
    wait_port(n_port)
    time.sleep(0.3)
    targets = {"sluice": (s_port, lambda: [sl.pid]),
               "nginx": (n_port, lambda: child_pids(ng.pid))}
    if args.baseline:
        b_port, b_admin = free_port(), free_port()
        with open(f"{tmp}/base.yaml", "w") as f:
            f.write(SLUICE_YAML.format(port=b_port, admin=b_admin, up=up_port))
        base = subprocess.Popen([args.baseline, "--config", f"{tmp}/base.yaml",
                                 "--log-level", "warn"])
        procs.append(base)
        wait_port(b_port)
        targets["base"] = (b_port, lambda: [base.pid])
    wanted = [s for s in SCENARIOS if s[0] in args.scenarios.split(",")]
    results = {}
    for rnd in range(args.rounds):
        for scen, path in wanted:
            names = list(targets)
            # The order rotates each round so drift of the machine hits all alike.
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            if rnd % 2 == 1:
                order.reverse()
            for name in order:
                port, pids = targets[name]
                before = cpu_ticks(pids())
                r = run_wrk(port, path, args.seconds, args.connections)
                after = cpu_ticks(pids())
                r["cpu_us"] = (after - before) / CLK_TCK * 1e6 / max(1, r["requests"])
                results.setdefault((scen, name), []).append(r)
    print(f"\n{'scenario':<14} {'proxy':<7} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'non2xx%':>7} {'CPU us/req':>10} {'vs nginx':>8}")
    for scen, _ in wanted:
        med = {}
        for name in targets:
            rs = sorted(results[(scen, name)], key=lambda r: r["cpu_us"])
            med[name] = rs[len(rs) // 2]
        for name in targets:
            r = med[name]
            ratio = r["cpu_us"] / med["nginx"]["cpu_us"]
            print(f"{scen:<14} {name:<7} {r['rps']:>9.0f} {r['p50']:>7.3f} {r['p99']:>7.3f} "
                  f"{100.0 * r['non2xx'] / max(1, r['requests']):>7.1f} {r['cpu_us']:>10.2f} {ratio:>8.2f}")
        if "base" in med:
            print(f"{scen:<14} sluice/base CPU per request: "
                  f"{med['sluice']['cpu_us'] / med['base']['cpu_us']:.3f}")
    if args.strace and shutil.which("strace"):
        n = 2000
        for scen, path in wanted:
            out = f"{tmp}/strace-{scen}.txt"
            st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(sl.pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            subprocess.run(["wrk", "-t1", "-c8", "-d2s", f"http://127.0.0.1:{s_port}{path}"],
                           capture_output=True, timeout=30)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=10)
            text = open(out).read()
            m = re.search(r"^\s*100\.00\s+[\d.]+\s+\d+\s+(\d+)", text, re.M)
            calls = {}
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
                    calls[parts[-1]] = int(parts[3])
            print(f"strace {scen}: {calls}")
        del n
    stop_all()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
