"""Load drivers: wrk (with a Lua script for exact status counts and
percentiles) and sluice-load-client. Both return the same result shape:

  {"requests": completed, "rps": ..., "elapsed_s": ...,
   "latency_ms": {"p50", "p90", "p99", "p99.9", "max", "mean"},
   "status": {"200": n, ...}, "errors": {kind: n}, "send_span_s": ...}

Over TLS the load client adds "handshakes", "resumed" (always 0 unless a
server resumed a session nobody offered) and "tls" ({"version cipher": n}).
In WebSocket mode (ws_bytes) "requests" counts echoed messages and "status"
the handshakes' answers; it adds "upgrades" and "upgrade_ms".
"""
import json
import os
import subprocess

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK_LUA = os.path.join(HERE, "wrk_status.lua")


class DriverError(RuntimeError):
    pass


# Upper bound on answers per second of any run, for the request caps: far
# above what one worker answers on loopback, so only a runaway loop meets it.
MAX_RPS = 500000


def run_wrk(port, path, seconds, connections, headers=(), threads=1, tls=False):
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
    per_thread_cap = MAX_RPS * int(seconds) // threads
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s",
           "--timeout", "10s", "-s", WRK_LUA]
    for h in headers:
        cmd += ["-H", h]
    cmd += [url, "--", str(per_thread_cap)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise DriverError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    raw = json.loads(line[len("WRKJSON "):])
    elapsed = raw["duration_us"] / 1e6
    return {
        "driver": "wrk",
        "requests": raw["requests"],
        "elapsed_s": elapsed,
        "rps": raw["requests"] / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {k: v / 1000.0 for k, v in raw["latency_us"].items()},
        "status": raw["status"],
        # wrk counts every non-2xx/3xx answer as a "status" error: those are in
        # "status" above already, so only socket errors are kept here.
        "errors": {k: v for k, v in raw["errors"].items() if v and k != "status"},
        "send_span_s": elapsed,
    }


def run_client(binary, port, path, seconds, connections, headers=(), rate=0.0,
               max_requests=None, sources=None, requests_per_conn=0, key_space=0,
               grace=5.0, tls=False, ws_bytes=0):
    cmd = [binary, "--url", f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}",
           "--connections", str(connections), "--duration", str(seconds),
           "--grace", str(grace)]
    for h in headers:
        cmd += ["-H", h]
    if rate:
        cmd += ["--rate", str(rate)]
    cmd += ["--max-requests", str(max_requests or int(MAX_RPS * seconds))]
    if sources:
        cmd += ["--sources", sources]
    if requests_per_conn:
        cmd += ["--requests-per-conn", str(requests_per_conn)]
    if key_space:
        cmd += ["--key-space", str(key_space)]
    if ws_bytes:
        cmd += ["--ws", str(ws_bytes)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + grace + 60)
    if out.returncode != 0 or not out.stdout.strip():
        raise DriverError(f"load client failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["driver"] = "client"
    return r
