#!/usr/bin/env python3
"""sluice vs nginx vs HAProxy on loopback: one command, same machine, same run.

  python3 loadtest/run.py [--quick] [--build DIR] [--out DIR] [--workers N]

Builds sluice, the demo upstream and the load client (Release, -j1) unless
--no-build, installs wrk/nginx/haproxy/gnuplot through scripts/setup.sh bench
if one is missing, starts the demo upstream and the three proxies with their
own temporary configurations (never the system ones), all with the same
worker count, and drives them in interleaved rounds (the order of targets
rotates each round) so drift of the machine hits every target alike:

  a pass-through   no limits                                         (wrk)
  b limits-allow   global + per-IP + per-key limits that all allow   (wrk)
  c overload-429   > 99 % rejected with 429                          (wrk)
  d1 many-src-ips  thousands of source addresses in 127.0.0.0/8      (load client)
  d2 many-xff      thousands of X-Forwarded-For clients + API keys   (load client)
  e accuracy       10x overload of a 1000/s limit for 10 s           (load client, paced)
  f key-flood      1M distinct API keys against limiter.max_keys 100k, sluice only
  g tls-keepalive  like a, over TLS (keep-alive HTTPS)                (wrk)
  h tls-handshakes one request per connection, each a full TLS handshake
                   without resumption                                 (load client)
  m tls-idle       10,000 idle TLS connections (one request each, then held):
                   VmRSS above the idle baseline, sluice only         (load client)
  w ws-echo        WebSocket echo through the proxy: 128-byte messages, one
                   in flight per connection; sluice vs nginx only     (load client)
  t ws-idle        10,000 idle WebSocket tunnels (each upgraded, one message
                   echoed, then held): VmRSS, descriptors and CPU of sluice
                   while they sit idle, sluice only                   (load client)

g, h and m use an ECDSA P-256 certificate made with the openssl CLI in the
run's temporary directory (removed at the end).

Per target and scenario: req/s, p50/p90/p99/p99.9 latency, status counts,
CPU microseconds per request (utime+stime from /proc of every process of the
target over the run) and peak RSS (VmHWM, reset before each run). Prints a
table, writes report.md and PNG charts (gnuplot) into --out (default
loadtest/out/<timestamp>/). Exit status 1 when a target fails to start or
dies, answers with an unexpected status (or has more than 1 % socket errors),
or sluice admits more than burst + rate x T in (e) or, outside --quick, less
than 99 % of it (a busy machine can starve the proxy in a smoke run).

All traffic stays on 127.0.0.0/8; every process started here is stopped by
its PID; every load run is bounded in time and in requests.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import drivers, procs, report, scenarios, targets  # noqa: E402

TOOLS = ("wrk", "nginx", "haproxy", "gnuplot")


def log(msg):
    print(msg, flush=True)


def have_tool(tool):
    return shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")


def ensure_tools():
    missing = [t for t in TOOLS if not have_tool(t)]
    if missing:
        log(f"missing {', '.join(missing)}: running scripts/setup.sh bench")
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "setup.sh"), "bench"], check=True)
    missing = [t for t in TOOLS if not have_tool(t)]
    if missing:
        sys.exit(f"still missing after setup: {', '.join(missing)}")


def build(build_dir):
    if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
        log(f"configuring {build_dir} (Release)")
        subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                        "-DSLUICE_BUILD_TESTS=OFF", "-DSLUICE_BUILD_BENCHMARKS=OFF"],
                       check=True, stdout=subprocess.DEVNULL)
    log(f"building sluice, sluice-demo-upstream, sluice-load-client in {build_dir} (-j1)")
    res = subprocess.run(["cmake", "--build", build_dir, "-j1", "--target", "sluice",
                          "sluice-demo-upstream", "sluice-load-client"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"build failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "model": model, "kernel": platform.release(),
            "load": os.getloadavg()}


def tool_versions():
    out = {}
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    out["wrk"] = (wrk.stdout + wrk.stderr).split("\n")[0].split(" [")[0].replace("wrk ", "")
    return out


class Sampler(threading.Thread):
    """VmRSS of sluice and its keys gauge every `period` seconds."""

    def __init__(self, sluice, limit, period=0.25):
        super().__init__(daemon=True)
        self.sluice, self.limit, self.period = sluice, limit, period
        self.series = []  # (t, rss_kb, keys)
        self.stop_flag = threading.Event()
        self.t0 = time.time()

    def run(self):
        while not self.stop_flag.is_set():
            t = time.time() - self.t0
            rss = procs.rss_kb(self.sluice.pids())
            keys = None
            try:
                keys = self.sluice.metric(self.sluice.metrics(), "sluice_ratelimit_keys",
                                          f'limit="{self.limit}"')
            except OSError:
                pass
            self.series.append((t, rss, keys))
            self.stop_flag.wait(self.period)


def run_flood(sluice, client_bin, keys, max_keys, cap_seconds, tail_seconds):
    sampler = Sampler(sluice, "flood_key")
    sampler.start()
    time.sleep(1.0)
    pids = sluice.pids()
    procs.reset_hwm(pids)
    cpu0 = procs.cpu_seconds(pids)
    t_start = time.time() - sampler.t0
    r = drivers.run_client(client_bin, sluice.ports["flood"], "/flood/x", cap_seconds, 64,
                           headers=("X-API-Key: flood-%d",), max_requests=keys)
    t_end = time.time() - sampler.t0
    r["cpu_us"] = (procs.cpu_seconds(pids) - cpu0) * 1e6 / max(1, r["requests"])
    r["hwm_kb"] = procs.hwm_kb(pids)
    time.sleep(tail_seconds)
    sampler.stop_flag.set()
    sampler.join(timeout=5)
    text = sluice.metrics()
    evicted = sluice.metric(text, "sluice_ratelimit_evicted_total", 'limit="flood_key"')
    keys_now = sluice.metric(text, "sluice_ratelimit_keys", 'limit="flood_key"')
    evicted = None if evicted is None else int(evicted)
    keys_now = None if keys_now is None else int(keys_now)
    series = sampler.series
    return {
        "run": r, "series": series, "keys_sent": r["issued"], "max_keys": max_keys,
        "t_start": t_start, "t_end": t_end,
        "evicted": evicted, "keys_end": keys_now,
        "keys_max": max((int(k) for _, _, k in series if k is not None), default=None),
        "rss_start_kb": series[0][1] if series else 0,
        "rss_max_kb": max((s[1] for s in series), default=0),
        "rss_end_kb": series[-1][1] if series else 0,
    }


def make_certificate(tmp):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 / localhost, made
    for this run only (in its temporary directory)."""
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    res = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"openssl req failed: {res.stderr.strip()[-400:]}")
    os.chmod(key, 0o600)
    return cert, key


def client_connections(sluice):
    """The sluice_client_connections gauge (no labels)."""
    for line in sluice.metrics().splitlines():
        if line.startswith("sluice_client_connections "):
            return int(float(line.split()[1]))
    return None


def wait_holding(p, deadline):
    """Reads the load client's stderr until it reports "HOLDING N" (its
    connections are set up and held) or `deadline`: (N or None, lines read)."""
    err_lines = []
    while time.time() < deadline and p.poll() is None:
        ready, _, _ = select.select([p.stderr], [], [], max(0.05, deadline - time.time()))
        if not ready:
            continue
        line = p.stderr.readline()
        if not line:
            break
        err_lines.append(line)
        if line.startswith("HOLDING "):
            return int(line.split()[1]), err_lines
    return None, err_lines


def run_tls_idle(sluice, client_bin, count, setup_cap, ramp=32, settle=1.0):
    """m: `count` TLS connections, each with one request answered, then held
    idle; VmRSS of sluice before (idle, after a short warm-up) and while they
    are held, and after they closed."""
    port = sluice.ports["tls"]
    pids = sluice.pids()
    # Warm-up: contexts, the upstream pool, first allocations. Then idle.
    drivers.run_client(client_bin, port, "/tls/x", 0.5, 4, tls=True, max_requests=400, grace=2)
    time.sleep(settle)
    rss_base = procs.rss_kb(pids)
    cpu0 = procs.cpu_seconds(pids)
    cmd = [client_bin, "--url", f"https://127.0.0.1:{port}/tls/x", "--connections", str(count),
           "--hold", "60", "--ramp", str(ramp), "--duration", str(setup_cap), "--grace", "5",
           "--sources", "127.4.0.1/16"]
    t0 = time.time()
    p = procs.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    stdin=subprocess.DEVNULL)
    held = None
    try:
        held, err_lines = wait_holding(p, t0 + setup_cap + 15)
        setup_s = time.time() - t0
        cpu_setup = procs.cpu_seconds(pids) - cpu0
        if held is None:
            raise RuntimeError(f"the load client never held its connections: "
                               f"{''.join(err_lines)[-400:]}")
        time.sleep(settle)  # let the last answers' buffers be released
        samples = []
        for _ in range(3):
            samples.append(procs.rss_kb(pids))
            time.sleep(settle / 3)
        gauge = client_connections(sluice)
        cpu_idle = procs.cpu_seconds(pids) - cpu0 - cpu_setup
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    time.sleep(settle)
    rss_after = procs.rss_kb(pids)
    rss_held = max(samples)
    return {
        "connections": count, "held": held, "gauge": gauge, "setup_s": setup_s, "ramp": ramp,
        "cpu_us_per_connection": cpu_setup * 1e6 / max(1, held),
        "cpu_idle_s": cpu_idle,
        "rss_base_kb": rss_base, "rss_held_kb": rss_held, "rss_after_kb": rss_after,
        "delta_kb": rss_held - rss_base,
        "kb_per_connection": (rss_held - rss_base) / max(1, held),
        "client": summary,
    }


def tunnels_open(sluice):
    """The sluice_tunnels gauge summed over routes."""
    n = 0
    for line in sluice.metrics().splitlines():
        if line.startswith("sluice_tunnels{"):
            n += float(line.rsplit(" ", 1)[1])
    return int(n)


def idle_sample(pids, window):
    """CPU (schedstat ns) and context switches of pids over `window` seconds."""
    cpu0, cs0 = procs.cpu_ns(pids), procs.context_switches(pids)
    time.sleep(window)
    return procs.cpu_ns(pids) - cpu0, procs.context_switches(pids) - cs0


def run_ws_idle(sluice, client_bin, count, setup_cap, idle_window, ramp=64, settle=1.0):
    """t: `count` WebSocket tunnels, each upgraded and one message echoed,
    then held idle. Of sluice: VmRSS and open descriptors before (idle, after a
    warm-up), while they are held and after they closed; CPU time and wake-ups
    over `idle_window` seconds idle, without and with the tunnels."""
    port = sluice.ports["ws"]
    pids = sluice.pids()
    # Warm-up: the thread's tunnel buffer, the upstream pool, first allocations.
    drivers.run_client(client_bin, port, targets.WS_PATH, 0.3, 4, ws_bytes=128,
                       max_requests=2000, grace=2)
    time.sleep(settle)
    rss_base, fds_base = procs.rss_kb(pids), procs.fd_count(pids)
    base_cpu_ns, base_cs = idle_sample(pids, idle_window)
    cpu0 = procs.cpu_ns(pids)
    cmd = [client_bin, "--url", f"http://127.0.0.1:{port}{targets.WS_PATH}", "--ws", "128",
           "--connections", str(count), "--hold", "120", "--ramp", str(ramp),
           "--duration", str(setup_cap), "--grace", "5", "--sources", "127.6.0.1/64"]
    t0 = time.time()
    p = procs.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    stdin=subprocess.DEVNULL)
    held = None
    try:
        held, err_lines = wait_holding(p, t0 + setup_cap + 15)
        setup_s = time.time() - t0
        cpu_setup_ns = procs.cpu_ns(pids) - cpu0
        if held is None:
            raise RuntimeError(f"the load client never held its tunnels: "
                               f"{''.join(err_lines)[-400:]}")
        time.sleep(settle)  # the last echoes written, their buffers released
        gauge_tunnels = tunnels_open(sluice)
        gauge_conns = client_connections(sluice)
        rss_held, fds_held = procs.rss_kb(pids), procs.fd_count(pids)
        held_cpu_ns, held_cs = idle_sample(pids, idle_window)
        rss_held = max(rss_held, procs.rss_kb(pids))
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    time.sleep(settle)
    deadline = time.time() + 5
    while tunnels_open(sluice) > 0 and time.time() < deadline:
        time.sleep(0.1)
    held = held or 0
    return {
        "tunnels": count, "held": held, "gauge_tunnels": gauge_tunnels,
        "gauge_connections": gauge_conns, "setup_s": setup_s, "ramp": ramp,
        "idle_window_s": idle_window,
        "cpu_us_per_tunnel": cpu_setup_ns / 1e3 / max(1, held),
        "rss_base_kb": rss_base, "rss_held_kb": rss_held, "rss_after_kb": procs.rss_kb(pids),
        "delta_kb": rss_held - rss_base, "kb_per_tunnel": (rss_held - rss_base) / max(1, held),
        "fds_base": fds_base, "fds_held": fds_held, "fds_after": procs.fd_count(pids),
        "fds_per_tunnel": (fds_held - fds_base) / max(1, held),
        "tunnels_after": tunnels_open(sluice),
        "idle_cpu_ms_per_s_base": base_cpu_ns / 1e6 / idle_window,
        "idle_cpu_ms_per_s_held": held_cpu_ns / 1e6 / idle_window,
        "idle_wakeups_per_s_base": base_cs / idle_window,
        "idle_wakeups_per_s_held": held_cs / idle_window,
        "idle_ns_per_tunnel_per_s": max(0, held_cpu_ns - base_cpu_ns) / idle_window / max(1, held),
        "client": summary,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run under 60 s: 1 round, 1 s runs, smaller flood")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"),
                    help="CMake build directory (default: build-release)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries in --build as they are")
    ap.add_argument("--out", help="output directory (default loadtest/out/<timestamp>)")
    ap.add_argument("--workers", type=int, default=1, help="workers of every proxy (default 1)")
    ap.add_argument("--upstream-threads", type=int, default=0,
                    help="demo upstream threads (default: --workers)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--seconds", type=float, help="seconds per run of a-d (default 10, quick 1)")
    ap.add_argument("--connections", type=int, default=64,
                    help="connections of a-c, d2 and e (d1 uses 256)")
    ap.add_argument("--scenarios", default="a,b,c,d1,d2,e,f,g,h,m,w,t",
                    help="comma list out of a,b,c,d1,d2,e,f,g,h,m,w,t")
    ap.add_argument("--targets", default="sluice,nginx,haproxy", help="comma list (default all)")
    ap.add_argument("--flood-keys", type=int, help="distinct API keys of f (default 1000000, quick 40000)")
    ap.add_argument("--max-keys", type=int, help="sluice limiter.max_keys (default 100000, quick 10000)")
    ap.add_argument("--idle-conns", type=int,
                    help="idle TLS connections of m (default 10000, quick 1000)")
    ap.add_argument("--idle-tunnels", type=int,
                    help="idle WebSocket tunnels of t (default 10000, quick 1000; fewer when "
                         "RLIMIT_NOFILE cannot hold two descriptors per tunnel)")
    ap.add_argument("--publish", action="store_true",
                    help="also write report.md and cpu_per_request.png into loadtest/results/")
    args = ap.parse_args()

    started = time.time()
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    seconds = args.seconds or (1 if quick else 10)
    acc_rate, acc_burst = 1000, 100
    acc_seconds = 2 if quick else 10
    flood_keys = args.flood_keys or (40000 if quick else 1000000)
    max_keys = args.max_keys or (10000 if quick else 100000)
    idle_conns = args.idle_conns or (1000 if quick else 10000)
    idle_tunnels = args.idle_tunnels or (1000 if quick else 10000)
    wanted_scen = set(args.scenarios.split(","))
    wanted_targets = [t for t in args.targets.split(",") if t]
    for t in wanted_targets:
        if t not in targets.TARGETS:
            sys.exit(f"unknown target {t}")
    if args.workers < 1 or args.workers > 64:
        sys.exit("--workers: 1 to 64")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # the proxies and the load client inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_tools()
    build_dir = os.path.abspath(args.build)
    if not args.no_build:
        build(build_dir)
    client_bin = os.path.join(build_dir, "loadtest", "client", "sluice-load-client")
    upstream_bin = os.path.join(build_dir, "loadtest", "upstream", "sluice-demo-upstream")
    for b in (client_bin, upstream_bin, os.path.join(build_dir, "proxy", "sluice")):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing binary {b} (build it or drop --no-build)")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.abspath(args.out or os.path.join(HERE, "out", stamp))
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sluice-loadtest-")
    mach = machine()
    failures = []
    warnings = []

    up_port = procs.free_port()
    up = procs.start([upstream_bin, "--listen", f"127.0.0.1:{up_port}", "--threads",
                      str(args.upstream_threads or args.workers)],
                     stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    if not procs.wait_port(up_port, up):
        sys.exit("demo upstream did not start")

    params = {"acc_rate": acc_rate, "acc_burst": acc_burst, "max_keys": max_keys}
    if wanted_scen & {"g", "h", "m"}:
        params["tls_cert"], params["tls_key"] = make_certificate(tmp)
    live = {}
    versions = tool_versions()
    for name in wanted_targets:
        t = targets.TARGETS[name](tmp, build_dir, args.workers, up_port, params)
        try:
            t.start()
            live[name] = t
            versions[name] = t.version()
            log(f"started {name} {versions[name]} (pids {t.pids()})")
        except (RuntimeError, OSError) as e:
            failures.append(f"{name} failed to start: {e}")
            log(failures[-1])
    time.sleep(0.3)

    scen = [s for s in scenarios.build(quick, acc_rate, acc_burst, acc_seconds)
            if s.key in wanted_scen]
    variants = {}   # scenario key -> [variant label] in target order
    results = {}    # (scenario key, variant) -> [run]
    acc_source = 0
    pause = 0.3 if quick else 1.0
    n_runs = sum(len([n for n in live if not s.only or n in s.only])
                 + (1 if s.key == "e" and "haproxy" in live else 0) for s in scen)
    log(f"{rounds} round(s) x {n_runs} runs, {seconds:g} s each (accuracy {acc_seconds} s); "
        f"output {out_dir}")
    for rnd in range(rounds):
        names = list(live)
        order = names[rnd % len(names):] + names[:rnd % len(names)] if names else []
        for sc in scen:
            for name in order:
                t = live.get(name)
                if t is None or not t.alive() or (sc.only and name not in sc.only):
                    continue
                for variant, port, path in t.endpoints(sc.endpoint):
                    variants.setdefault(sc.key, [])
                    if variant not in variants[sc.key]:
                        variants[sc.key].append(variant)
                    secs = sc.fixed_seconds or seconds
                    conns = sc.connections or args.connections
                    pids = t.pids()
                    procs.reset_hwm(pids)
                    cpu0 = procs.cpu_seconds(pids)
                    try:
                        if sc.driver == "wrk":
                            r = drivers.run_wrk(port, path, max(1, round(secs)), conns,
                                                sc.headers, tls=sc.tls)
                        else:
                            sources = sc.sources
                            if sc.key == "e":  # a fresh client address: a full bucket
                                acc_source += 1
                                sources = f"127.2.{acc_source // 250}.{acc_source % 250 + 1}/1"
                            r = drivers.run_client(
                                client_bin, port, path, secs, conns, headers=sc.headers,
                                rate=sc.rate, sources=sources,
                                requests_per_conn=sc.requests_per_conn, key_space=sc.key_space,
                                max_requests=int(sc.rate * secs) if sc.rate else None,
                                tls=sc.tls, ws_bytes=sc.ws_bytes)
                    except (drivers.DriverError, subprocess.TimeoutExpired) as e:
                        failures.append(f"{sc.label} / {variant}: {e}")
                        log(failures[-1])
                        continue
                    r["cpu_us"] = (procs.cpu_seconds(pids) - cpu0) * 1e6 / max(1, r["requests"])
                    r["hwm_kb"] = procs.hwm_kb(pids)
                    r["round"] = rnd
                    results.setdefault((sc.key, variant), []).append(r)
                    problems = check_run(sc, r)
                    for p in problems:
                        failures.append(f"{sc.label} / {variant} round {rnd + 1}: {p}")
                    log(f"  round {rnd + 1} {sc.label:<17} {variant:<20} "
                        f"{r['rps']:>9.0f} req/s  p99 {r['latency_ms']['p99']:.3f} ms  "
                        f"{r['cpu_us']:.2f} us/req  {report.status_text(r['status'])}"
                        + (f"  errors {r['errors']}" if r.get("errors") else "")
                        + (f"  handshakes {r['handshakes']} (resumed {r['resumed']}) "
                           f"{','.join(r.get('tls', {}))}" if "handshakes" in r else "")
                        + ("  <-- " + "; ".join(problems) if problems else ""))
                    if not t.alive():
                        failures.append(f"{name} died during {sc.label}:\n{t.log_tail()}")
                        log(failures[-1])
                    time.sleep(pause)

    flood = None
    if "f" in wanted_scen and "sluice" in wanted_targets:
        # A fresh sluice, so the RSS curve starts from an idle process and not
        # from memory the allocator kept after the scenarios above.
        log(f"f key-flood: {flood_keys} distinct API keys, limiter.max_keys {max_keys} "
            f"(a fresh sluice)")
        ftmp = os.path.join(tmp, "flood")
        os.makedirs(ftmp, exist_ok=True)
        fresh = targets.Sluice(ftmp, build_dir, args.workers, up_port, params)
        try:
            fresh.start()
            time.sleep(0.3)
            flood = run_flood(fresh, client_bin, flood_keys, max_keys,
                              cap_seconds=20 if quick else 120,
                              tail_seconds=1.0 if quick else 3.0)
            fr = flood["run"]
            bad = set(fr["status"]) - {"200"}
            if bad or fr.get("errors"):
                failures.append(f"f key-flood: statuses {fr['status']} errors {fr.get('errors')}")
            if flood["keys_max"] is not None and flood["keys_max"] > max_keys:
                failures.append(f"f key-flood: keys gauge {flood['keys_max']} > max_keys {max_keys}")
            log(f"  {fr['rps']:.0f} req/s, keys gauge max {flood['keys_max']}, evicted "
                f"{flood['evicted']}, RSS {flood['rss_start_kb'] / 1024:.1f} -> max "
                f"{flood['rss_max_kb'] / 1024:.1f} -> end {flood['rss_end_kb'] / 1024:.1f} MiB")
        except (drivers.DriverError, subprocess.TimeoutExpired, OSError, RuntimeError) as e:
            failures.append(f"f key-flood: {e}")
            log(failures[-1])
        if fresh.proc is not None:
            if not fresh.alive():
                failures.append(f"sluice died during the key flood:\n{fresh.log_tail()}")
            procs.stop(fresh.proc)

    idle = None
    if "m" in wanted_scen and "sluice" in wanted_targets:
        # A fresh sluice again: the baseline is an idle process.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < idle_conns + 512:
            warnings.append(f"m tls-idle: RLIMIT_NOFILE hard limit {hard} allows "
                            f"{hard - 512} connections, not {idle_conns}")
            idle_conns = max(100, hard - 512)
        log(f"m tls-idle: {idle_conns} idle TLS connections (a fresh sluice)")
        itmp = os.path.join(tmp, "idle")
        os.makedirs(itmp, exist_ok=True)
        fresh = targets.Sluice(itmp, build_dir, args.workers, up_port,
                               {**params, "max_connections": idle_conns + 256})
        try:
            fresh.start()
            time.sleep(0.3)
            idle = run_tls_idle(fresh, client_bin, idle_conns, setup_cap=20 if quick else 60,
                                settle=0.3 if quick else 1.0)
            ic = idle["client"]
            if idle["held"] < idle_conns or ic.get("resumed") or ic.get("errors"):
                failures.append(f"m tls-idle: held {idle['held']} of {idle_conns}, errors "
                                f"{ic.get('errors')}, resumed {ic.get('resumed')}")
            budget_kb = 64 * 1024 * idle_conns / 10000
            if idle["delta_kb"] > budget_kb:
                warnings.append(f"m tls-idle: {idle['delta_kb'] / 1024:.1f} MiB above the idle "
                                f"baseline for {idle['held']} connections, over the budget of "
                                f"64 MiB per 10,000 ({budget_kb / 1024:.1f} MiB)")
            log(f"  {idle['held']} held (gauge {idle['gauge']}) after {idle['setup_s']:.1f} s; "
                f"VmRSS {idle['rss_base_kb'] / 1024:.1f} MiB idle -> "
                f"{idle['rss_held_kb'] / 1024:.1f} MiB held (+{idle['delta_kb'] / 1024:.1f} MiB, "
                f"{idle['kb_per_connection']:.1f} KiB per connection) -> "
                f"{idle['rss_after_kb'] / 1024:.1f} MiB after they closed")
        except (drivers.DriverError, subprocess.TimeoutExpired, OSError, RuntimeError,
                ValueError) as e:
            failures.append(f"m tls-idle: {e}")
            log(failures[-1])
        if fresh.proc is not None:
            if not fresh.alive():
                failures.append(f"sluice died during m tls-idle:\n{fresh.log_tail()}")
            procs.stop(fresh.proc)

    ws_idle = None
    if "t" in wanted_scen and "sluice" in wanted_targets:
        # A fresh sluice: the baseline is an idle process. Every tunnel holds
        # two descriptors of sluice (client and upstream side).
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 2 * idle_tunnels + 200:
            fit = max(100, (hard - 200) // 2)
            warnings.append(f"t ws-idle: RLIMIT_NOFILE hard limit {hard} holds {fit} tunnels "
                            f"(two descriptors each), not {idle_tunnels}")
            idle_tunnels = fit
        log(f"t ws-idle: {idle_tunnels} idle WebSocket tunnels (a fresh sluice)")
        ttmp = os.path.join(tmp, "ws-idle")
        os.makedirs(ttmp, exist_ok=True)
        fresh = targets.Sluice(ttmp, build_dir, args.workers, up_port,
                               {**params, "max_connections": idle_tunnels + 256})
        try:
            fresh.start()
            time.sleep(0.3)
            ws_idle = run_ws_idle(fresh, client_bin, idle_tunnels,
                                  setup_cap=20 if quick else 60,
                                  idle_window=1.0 if quick else 3.0,
                                  settle=0.3 if quick else 1.0)
            wi, wc = ws_idle, ws_idle["client"]
            if (wi["held"] < idle_tunnels or wc.get("errors")
                    or wi["gauge_tunnels"] != wi["held"]):
                failures.append(f"t ws-idle: held {wi['held']} of {idle_tunnels}, "
                                f"sluice_tunnels {wi['gauge_tunnels']}, errors {wc.get('errors')}")
            if wi["tunnels_after"] != 0:
                failures.append(f"t ws-idle: sluice_tunnels {wi['tunnels_after']} after the "
                                f"client closed every tunnel")
            log(f"  {wi['held']} held (sluice_tunnels {wi['gauge_tunnels']}) after "
                f"{wi['setup_s']:.1f} s; VmRSS {wi['rss_base_kb'] / 1024:.1f} -> "
                f"{wi['rss_held_kb'] / 1024:.1f} MiB ({wi['kb_per_tunnel']:.2f} KiB per tunnel) "
                f"-> {wi['rss_after_kb'] / 1024:.1f} MiB after; fds {wi['fds_base']} -> "
                f"{wi['fds_held']} -> {wi['fds_after']}; idle CPU "
                f"{wi['idle_cpu_ms_per_s_base']:.2f} -> {wi['idle_cpu_ms_per_s_held']:.2f} ms/s, "
                f"wake-ups {wi['idle_wakeups_per_s_base']:.0f} -> "
                f"{wi['idle_wakeups_per_s_held']:.0f} /s")
        except (drivers.DriverError, subprocess.TimeoutExpired, OSError, RuntimeError,
                ValueError) as e:
            failures.append(f"t ws-idle: {e}")
            log(failures[-1])
        if fresh.proc is not None:
            if not fresh.alive():
                failures.append(f"sluice died during t ws-idle:\n{fresh.log_tail()}")
            procs.stop(fresh.proc)

    for name, t in live.items():
        if not t.alive():
            failures.append(f"{name} is not running at the end")
    procs.stop_all()

    agg = {k: report.aggregate(v) for k, v in results.items()}
    table_rows = report.rows(scen, variants, agg)
    acc = []
    if "e" in {s.key for s in scen}:
        acc = report.accuracy_rows({v: results[("e", v)] for v in variants.get("e", [])
                                    if ("e", v) in results}, acc_rate, acc_burst)
        for a in acc:
            if a["target"] != "sluice":
                continue
            if a["max"] > 1.0:
                failures.append(f"sluice admitted more than burst + rate x T "
                                f"(ratio up to {a['max']:.4f})")
            if a["min"] < 0.99:
                # Under-admission comes from the proxy being off the CPU for longer
                # than burst / rate (the bucket is full and loses what it would
                # refill): a busy machine, not the limiter. A smoke run only warns.
                msg = (f"sluice admitted less than 99 % of burst + rate x T (ratio down to "
                       f"{a['min']:.4f}); was the machine busy?")
                (warnings if quick else failures).append(msg)
    for name in wanted_targets:
        if scen and name in live and any(not s.only or name in s.only for s in scen) and not any(v == name or v.startswith(name + " ")
                                    for vs in variants.values() for v in vs):
            failures.append(f"{name}: no run completed")

    tls_rows = report.tls_rows(table_rows)
    ws_rows = report.ws_rows(table_rows)
    chart_files = report.charts(out_dir, table_rows, list(live) or wanted_targets, acc, flood)
    elapsed = time.time() - started
    mach["load_end"] = os.getloadavg()
    command = "python3 loadtest/run.py " + " ".join(sys.argv[1:])
    table = report.text_table(table_rows)
    print()
    print(table)
    if acc:
        print()
        print(report.accuracy_text(acc, acc_rate, acc_burst))
    if tls_rows:
        print()
        print(report.tls_text(tls_rows))
    if ws_rows:
        print()
        print(report.ws_text(ws_rows))
    extra = {"tls_rows": tls_rows, "idle": idle, "ws_rows": ws_rows, "ws_idle": ws_idle}
    write_report(out_dir, command, mach, versions, args, rounds, seconds, scen, table_rows, acc,
                 acc_rate, acc_burst, flood, chart_files, failures + [f"warning: {w}" for w in warnings],
                 elapsed, results, extra)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"command": command, "machine": mach, "versions": versions,
                   "runs": [{"scenario": k, "target": v, **r} for (k, v), rs in results.items()
                            for r in rs],
                   "accuracy": acc, "flood": flood, "tls": tls_rows, "tls_idle": idle,
                   "ws": ws_rows, "ws_idle": ws_idle,
                   "failures": failures}, f, indent=1)
    if args.publish:
        # loadtest/results/ (committed): one chart and the report that shows it.
        dest = os.path.join(HERE, "results")
        os.makedirs(dest, exist_ok=True)
        chart = os.path.join(out_dir, "cpu_per_request.png")
        published = []
        if chart in chart_files:
            shutil.copy(chart, os.path.join(dest, "cpu_per_request.png"))
            published = [os.path.join(dest, "cpu_per_request.png")]
        write_report(dest, command, mach, versions, args, rounds, seconds, scen, table_rows, acc,
                     acc_rate, acc_burst, flood, published,
                     failures + [f"warning: {w}" for w in warnings], elapsed, results, extra)
        print(f"published: {dest}/report.md, {dest}/cpu_per_request.png")
    print(f"\nreport: {os.path.join(out_dir, 'report.md')}")
    for c in chart_files:
        print(f"chart:  {c}")
    print(f"total time {elapsed:.1f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    for w in warnings:
        print(f"warning: {w}")
    if failures:
        print("\nFAILED:")
        for f in failures:
            print(f"  - {f}")
        return 1
    return 0


def check_run(sc, r):
    problems = []
    statuses = {int(k): v for k, v in r["status"].items()}
    total = sum(statuses.values())
    if r["requests"] == 0 or total == 0:
        problems.append("no answers")
        return problems
    unexpected = {k: v for k, v in statuses.items() if k not in sc.expect}
    if unexpected:
        problems.append(f"unexpected statuses {unexpected}")
    errors = sum(r.get("errors", {}).values())
    if errors > 0.01 * total:
        problems.append(f"socket errors {r['errors']}")
    if sc.min_429 and statuses.get(429, 0) < sc.min_429 * total:
        problems.append(f"only {statuses.get(429, 0)} of {total} rejected")
    if sc.tls and r.get("driver") == "client":
        if r.get("resumed"):
            problems.append(f"{r['resumed']} resumed sessions (full handshakes wanted)")
        if sc.requests_per_conn == 1 and r.get("handshakes", 0) < r["requests"]:
            problems.append(f"{r.get('handshakes', 0)} handshakes for {r['requests']} answers")
    return problems


def machine_line(mach):
    return (f"{mach['nproc']} CPUs ({mach['model']}), Linux {mach['kernel']}, load average "
            f"{mach['load'][0]:.2f} at start, {mach['load_end'][0]:.2f} at end")


def write_report(out_dir, command, mach, versions, args, rounds, seconds, scen, table_rows, acc,
                 acc_rate, acc_burst, flood, chart_files, failures, elapsed, results, extra=None):
    extra = extra or {}
    idle = extra.get("idle")
    ws_idle = extra.get("ws_idle")
    md = ["# sluice load test", ""]
    md.append(f"`{command}` on {datetime.datetime.now().isoformat(timespec='seconds')}, "
              f"{elapsed:.0f} s in all.")
    md.append("")
    md.append(f"- Machine: {machine_line(mach)}.")
    md.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    md.append(f"- Every proxy with {args.workers} worker(s) (sluice `workers`, nginx "
              f"`worker_processes`, HAProxy `nbthread`) in front of one demo upstream "
              f"({args.upstream_threads or args.workers} thread(s)); {rounds} interleaved "
              f"round(s) of {seconds:g} s runs, the order of targets rotating every round. "
              "Load generator, proxy and upstream share the machine.")
    md.append("- Figures are medians over the rounds; statuses are summed; peak RSS is the "
              "largest VmHWM (reset to the current RSS before every run; for nginx master + "
              "workers), so memory a process kept from earlier scenarios counts too.")
    md.append("- CPU us/req: utime+stime of the proxy's processes over the run divided by the "
              "answers; `vs nginx` / `vs haproxy` divide sluice's by the peer's.")
    md.append("- nginx and HAProxy are configured to do what sluice does by contract: "
              "X-Forwarded-For/-Proto/-Host and X-Request-Id upstream, X-Request-Id back, "
              "keep-alive upstream connections (nginx `keepalive 64`, HAProxy `http-reuse always`).")
    if any(sc.tls for sc in scen) or idle:
        md.append("- TLS (g, h, m): one self-signed ECDSA P-256 certificate made by the openssl "
                  "CLI for the run; sluice `tls_listen`, nginx `listen ... ssl` with "
                  "`ssl_protocols TLSv1.2 TLSv1.3` and `ssl_session_cache shared:SSL:10m`, "
                  "HAProxy `bind ... ssl crt` (its default session cache); OpenSSL defaults "
                  "otherwise, so every client here negotiates TLS 1.3 (versions and ciphers "
                  "of h are in Runs).")
    md.append("")
    md.append("## Scenarios")
    md.append("")
    for sc in scen:
        drv = "wrk -t1 (Lua status counting)" if sc.driver == "wrk" else "sluice-load-client"
        md.append(f"- **{sc.label}**: {sc.note}; {drv}, {sc.connections or args.connections} "
                  "connections"
                  + (f", paced at {sc.rate:g} req/s" if sc.rate else "") + ".")
    if idle:
        md.append(f"- **m tls-idle** (sluice only): {idle['connections']} TLS connections from "
                  f"sluice-load-client (`--hold`, at most {idle['ramp']} being set up at once), each with "
                  "one request answered, then held idle; VmRSS of a fresh sluice idle (after a "
                  "short warm-up) and with all of them open.")
    if ws_idle:
        md.append(f"- **t ws-idle** (sluice only): {ws_idle['tunnels']} WebSocket tunnels from "
                  f"sluice-load-client (`--ws 128 --hold`, at most {ws_idle['ramp']} being set up "
                  "at once), each upgraded through sluice to the demo upstream's echo and one "
                  "message echoed, then held idle; of a fresh sluice: VmRSS and open descriptors "
                  "(/proc/PID/fd) idle after a short warm-up, with all of them open and after "
                  f"they closed; CPU time (schedstat) and context switches over "
                  f"{ws_idle['idle_window_s']:g} s idle, without and with the tunnels.")
    if flood:
        md.append(f"- **f key-flood** (sluice only): {flood['keys_sent']} distinct API keys, "
                  f"one request each, against a per-key limit with `limiter.max_keys: "
                  f"{flood['max_keys']}`; VmRSS and `sluice_ratelimit_keys` sampled every 250 ms.")
    md.append("")
    md.append("## Results")
    md.append("")
    md.append(report.markdown_table(table_rows))
    md.append("")
    if acc:
        md.append("## Accuracy (e)")
        md.append("")
        md.append(f"Per-IP limit {acc_rate}/s, burst {acc_burst}; admitted = 200 answers; "
                  f"T = first request written .. last answer read (every decision lies "
                  f"inside it, so `burst + rate x T` is a true ceiling for an exact token bucket).")
        md.append("")
        md.append("| target | admitted / (burst + rate x T), median | min | max | runs (admitted in T) |")
        md.append("|---|---:|---:|---:|---|")
        for a in acc:
            runs = "; ".join(f"{adm} in {w:.3f} s" for adm, w, _, _ in a["runs"])
            md.append(f"| {a['target']} | {a['median']:.4f} | {a['min']:.4f} | {a['max']:.4f} "
                      f"| {runs} |")
        md.append("")
        md.append("HAProxy has no token bucket: `req_rate` is the usual `sc_http_req_rate(0) gt N` "
                  "idiom (denied requests count too, so a client that keeps asking is held far "
                  "below N); `gpc0_rate` counts admitted requests only (`sc-inc-gpc0` after the "
                  "deny rule), a sliding one-second window without burst.")
        md.append("")
    if flood:
        fr = flood["run"]
        md.append("## Key flood (f)")
        md.append("")
        md.append(f"{fr['requests']} requests ({fr['rps']:.0f} req/s, statuses "
                  f"{report.status_text(fr['status'])}), {fr['cpu_us']:.2f} CPU us/req. "
                  f"Keys gauge max {flood['keys_max']} (max_keys {flood['max_keys']}), "
                  f"{flood['evicted']} evictions. VmRSS {flood['rss_start_kb'] / 1024:.1f} MiB "
                  f"before, {flood['rss_max_kb'] / 1024:.1f} MiB at most, "
                  f"{flood['rss_end_kb'] / 1024:.1f} MiB after.")
        md.append("")
    if extra.get("tls_rows"):
        md.append("## TLS (g, h)")
        md.append("")
        md.append("g: keep-alive HTTPS (wrk); h: full handshakes, one request per connection "
                  "(sluice-load-client, no session resumption), so req/s = handshakes/s and "
                  "CPU us/req = CPU per handshake. Goals: g CPU per request at most 0.90x "
                  "nginx's; h handshakes/s at least nginx's. The client side of a handshake "
                  "(an ECDSA verify among others) costs the load generator at least what the "
                  "server side costs the proxy, and both share the machine, so measured "
                  "handshakes/s tend to be the generator's limit, alike for every target; "
                  "handshakes per CPU-second of the proxy (1e6 / CPU us per handshake) is "
                  "what the proxy itself could do on one core.")
        md.append("")
        md.append(report.tls_markdown(extra["tls_rows"]))
        md.append("")
    if extra.get("ws_rows"):
        md.append("## WebSocket echo (w)")
        md.append("")
        md.append("Every connection upgrades once through the proxy (sluice: a route with the "
                  "default `upgrades: [websocket]`; nginx: `proxy_http_version 1.1`, "
                  "`proxy_set_header Upgrade $http_upgrade`, `proxy_set_header Connection "
                  "\"upgrade\"`) to the demo upstream's C++ echo, then sends masked 128-byte "
                  "binary messages, one in flight, each waiting for its echo. CPU us/message: "
                  "the proxy's utime+stime over the run divided by echoed messages (the "
                  "handshakes included). Goal: sluice's CPU per message at most 0.90x nginx's.")
        md.append("")
        md.append(report.ws_markdown(extra["ws_rows"]))
        md.append("")
    if ws_idle:
        wi, wc = ws_idle, ws_idle["client"]
        md.append("## Idle WebSocket tunnels (t)")
        md.append("")
        md.append(f"{wi['held']} of {wi['tunnels']} tunnels held idle (`sluice_tunnels` "
                  f"{wi['gauge_tunnels']}, `sluice_client_connections` "
                  f"{wi['gauge_connections']}), set up in {wi['setup_s']:.1f} s "
                  f"({wi['cpu_us_per_tunnel']:.0f} CPU us of sluice per tunnel: the upgrade "
                  f"request, the upstream connect, the 101 and one echoed message), handshakes "
                  f"{report.status_text(wc.get('status', {}))}, client errors "
                  f"{wc.get('errors') or 'none'}; `sluice_tunnels` {wi['tunnels_after']} after "
                  "the client closed them.")
        md.append("")
        md.append("| | idle | with the tunnels | after they closed | per tunnel |")
        md.append("|---|---:|---:|---:|---:|")
        md.append(f"| VmRSS MiB | {wi['rss_base_kb'] / 1024:.1f} | {wi['rss_held_kb'] / 1024:.1f} "
                  f"| {wi['rss_after_kb'] / 1024:.1f} | {wi['kb_per_tunnel']:.2f} KiB |")
        md.append(f"| open descriptors | {wi['fds_base']} | {wi['fds_held']} | {wi['fds_after']} "
                  f"| {wi['fds_per_tunnel']:.2f} |")
        md.append(f"| CPU ms per second idle | {wi['idle_cpu_ms_per_s_base']:.3f} "
                  f"| {wi['idle_cpu_ms_per_s_held']:.3f} | - "
                  f"| {wi['idle_ns_per_tunnel_per_s']:.1f} ns/s |")
        md.append(f"| context switches per second idle | {wi['idle_wakeups_per_s_base']:.0f} "
                  f"| {wi['idle_wakeups_per_s_held']:.0f} | - | - |")
        md.append("")
    if idle:
        ic = idle["client"]
        md.append("## Idle TLS connections (m)")
        md.append("")
        md.append(f"{idle['held']} of {idle['connections']} connections held idle "
                  f"(`sluice_client_connections` {idle['gauge']}), set up in "
                  f"{idle['setup_s']:.1f} s ({idle['cpu_us_per_connection']:.0f} CPU us of "
                  f"sluice per connection: handshake + one request), "
                  f"{report.status_text(ic.get('status', {}))}, resumed {ic.get('resumed')}, "
                  f"{', '.join(f'{k}: {v}' for k, v in ic.get('tls', {}).items())}.")
        md.append("")
        md.append("| VmRSS idle MiB | with the connections MiB | above the idle baseline MiB "
                  "| KiB per connection | after they closed MiB | per 10,000 MiB (budget 64) |")
        md.append("|---:|---:|---:|---:|---:|---:|")
        md.append(f"| {idle['rss_base_kb'] / 1024:.1f} | {idle['rss_held_kb'] / 1024:.1f} "
                  f"| {idle['delta_kb'] / 1024:.1f} | {idle['kb_per_connection']:.1f} "
                  f"| {idle['rss_after_kb'] / 1024:.1f} "
                  f"| {idle['kb_per_connection'] * 10000 / 1024:.1f} |")
        md.append("")
    if chart_files:
        md.append("## Charts")
        md.append("")
        for c in chart_files:
            md.append(f"![{os.path.basename(c)}]({os.path.basename(c)})")
        md.append("")
    md.append("## Runs")
    md.append("")
    md.append("Every run (round, scenario, target): req/s, p99 ms, CPU us/req, statuses, errors.")
    md.append("")
    md.append("```")
    for (key, variant), runs in results.items():
        for r in runs:
            md.append(f"round {r['round'] + 1}  {key:<3} {variant:<20} {r['rps']:>9.0f} req/s  "
                      f"p99 {r['latency_ms']['p99']:>8.3f} ms  {r['cpu_us']:>6.2f} us/req  "
                      f"{report.status_text(r['status'])}"
                      + (f"  errors {r['errors']}" if r.get("errors") else "")
                      + (f"  connects {r['connects']}" if "connects" in r else "")
                      + (f"  handshakes {r['handshakes']} resumed {r['resumed']} "
                         + ", ".join(f"{k}: {v}" for k, v in r.get("tls", {}).items())
                         if "handshakes" in r else "")
                      + (f"  source addresses {r['sources_used']}" if r.get("sources_used") else ""))
    md.append("```")
    md.append("")
    md.append("Raw numbers: `results.json`.")
    if failures:
        md.append("")
        md.append("## Failures and warnings")
        md.append("")
        for f in failures:
            md.append(f"- {f}")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
