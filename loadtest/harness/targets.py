"""The proxies under test, each with its own temporary configuration.

Every target serves the same endpoints (an endpoint is a kind of traffic, see
ENDPOINTS) in front of the same demo upstream, with the same number of
workers, and does the same work per forwarded request as sluice does by
contract (SPEC §5): X-Forwarded-For/-Proto/-Host and an X-Request-Id upstream,
X-Request-Id back to the client, keep-alive to the upstream.

sluice serves every endpoint on one listener (routes by path prefix), the tls
endpoint on its TLS listener; nginx and HAProxy get one listener per endpoint,
so no location or ACL matching is added to their per-request work.
"""
import os
import resource
import subprocess
import time
import urllib.request

from . import procs

# Endpoint kinds. The scenarios (scenarios.py) say which one they drive.
#   plain    no limits
#   limited  global + per-IP + per-API-key limits that always allow
#   reject   a limit that rejects > 99 % under load (1/s, burst 1)
#   many     like `limited`, with X-Forwarded-For believed from 127.0.0.1 only
#   accuracy per-IP limit of RATE/s, burst BURST
#   flood    per-API-key limit; limiter.max_keys bounds its buckets (sluice only)
#   tls      like `plain`, over TLS (only when params["tls_cert"] is set: the
#            ECDSA P-256 certificate run.py makes; X-Forwarded-Proto https)
#   ws       WebSocket: the Upgrade forwarded, the 101 relayed, then a tunnel
#            (sluice: a route with the default upgrades [websocket]; nginx:
#            proxy_set_header Upgrade/Connection). Not HAProxy.
ENDPOINTS = ("plain", "limited", "reject", "many", "accuracy", "flood", "ws")
TLS_ENDPOINTS = ("tls",)
WS_PATH = "/ws/echo?ws=1"  # the demo upstream echoes WebSocket frames on ?ws=1


def endpoint_kinds(params):
    return ENDPOINTS + (TLS_ENDPOINTS if params.get("tls_cert") else ())

HUGE = 100000000  # a rate / burst no test reaches


def max_conns():
    """Client connections every proxy allows: within the descriptor limit
    (HAProxy refuses to start when maxconn needs more than the hard limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    return max(1024, min(20000, (hard - 1000) // 2))


class Target:
    name = "?"

    def __init__(self, tmp, build, workers, upstream_port, params):
        self.tmp = tmp
        self.build = build
        self.workers = workers
        self.up = upstream_port
        self.params = params
        self.proc = None
        self.ports = {}

    def pids(self):
        return [self.proc.pid] if self.proc else []

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def endpoints(self, kind):
        """[(variant label, port, path)]: usually one; accuracy may have more."""
        if kind == "ws":
            return [(self.name, self.ports[kind], WS_PATH)]
        return [(self.name, self.ports[kind], f"/{kind}/x")]

    def log_tail(self, n=20):
        path = os.path.join(self.tmp, f"{self.name}.log")
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _spawn(self, cmd):
        log = open(os.path.join(self.tmp, f"{self.name}.log"), "w")
        self.proc = procs.start(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()

    def _wait_ready(self, ports):
        for port in ports:
            if not procs.wait_port(port, self.proc, timeout=10):
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")


# ---- sluice --------------------------------------------------------------------

SLUICE_YAML = """\
server:
  listen: 127.0.0.1:{port}
{tls_listen}  admin_listen: 127.0.0.1:{admin}
  workers: {workers}
  max_connections: {maxconn}
  access_log: ""
clients:
  trusted_proxies: [127.0.0.1/32]
upstreams:
  demo:
    targets: [127.0.0.1:{up}]
    max_connections: 256
limits:
  allow_global: {{ per: global, rate: {huge}/s, burst: {huge} }}
  allow_ip:     {{ per: ip, rate: {huge}/s, burst: {huge} }}
  allow_key:    {{ per: api_key, rate: {huge}/s, burst: {huge} }}
  tiny:         {{ per: global, rate: 1/s, burst: 1 }}
  accuracy:     {{ per: ip, rate: {acc_rate}/s, burst: {acc_burst} }}
  flood_key:    {{ per: api_key, rate: 1/m, burst: 10 }}
limiter:
  max_keys: {max_keys}
routes:
  - {{ path_prefix: /plain/, upstream: demo }}
  - {{ path_prefix: /limited/, upstream: demo, limits: [allow_global, allow_ip, allow_key] }}
  - {{ path_prefix: /reject/, upstream: demo, limits: [tiny] }}
  - {{ path_prefix: /many/, upstream: demo, limits: [allow_global, allow_ip, allow_key] }}
  - {{ path_prefix: /accuracy/, upstream: demo, limits: [accuracy] }}
  - {{ path_prefix: /flood/, upstream: demo, limits: [flood_key] }}
  - {{ path_prefix: /tls/, upstream: demo }}
  - {{ path_prefix: /ws/, upstream: demo }}   # upgrades: [websocket] by default
{tls}"""

SLUICE_TLS = """\
tls:
  certificates:
    - {{ cert: {cert}, key: {key} }}
"""


class Sluice(Target):
    name = "sluice"

    def start(self):
        port, admin = procs.free_port(), procs.free_port()
        self.admin = admin
        cert = self.params.get("tls_cert")
        tls_port = procs.free_port() if cert else None
        cfg = os.path.join(self.tmp, "sluice.yaml")
        with open(cfg, "w") as f:
            f.write(SLUICE_YAML.format(
                port=port, admin=admin, workers=self.workers, up=self.up, huge=HUGE,
                maxconn=self.params.get("max_connections") or max_conns(),
                acc_rate=self.params["acc_rate"], acc_burst=self.params["acc_burst"],
                max_keys=self.params["max_keys"],
                tls_listen=f"  tls_listen: 127.0.0.1:{tls_port}\n" if cert else "",
                tls=SLUICE_TLS.format(cert=cert, key=self.params.get("tls_key")) if cert else ""))
        binary = os.path.join(self.build, "proxy", "sluice")
        check = subprocess.run([binary, "--check-config", cfg], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sluice config rejected:\n{check.stdout}{check.stderr}")
        self._spawn([binary, "--config", cfg, "--log-level", "warn"])
        self.ports = {k: port for k in ENDPOINTS}
        if cert:
            self.ports["tls"] = tls_port
        self._wait_ready([port, admin] + ([tls_port] if cert else []))

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=2) as r:
            return r.read().decode()

    def metric(self, text, name, labels):
        """Value of one series, e.g. metric(t, "sluice_ratelimit_keys", 'limit="x"')."""
        prefix = f"{name}{{{labels}}} "
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix):].split()[0])
        return None

    def version(self):
        out = subprocess.run([os.path.join(self.build, "proxy", "sluice"), "--version"],
                             capture_output=True, text=True)
        return out.stdout.strip().replace("sluice ", "")


# ---- nginx ---------------------------------------------------------------------

NGINX_PROXY = """\
      proxy_pass http://demo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto {proto};
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-Id $request_id;
      add_header X-Request-Id $request_id always;"""

NGINX_CONF = """\
worker_processes {workers};
worker_rlimit_nofile {nofile};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log error;
events {{ worker_connections {maxconn}; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  limit_req_status 429;
  limit_req_log_level info;
  limit_req_zone $server_port       zone=allow_global:1m  rate={huge}r/s;
  limit_req_zone $binary_remote_addr zone=allow_ip:32m   rate={huge}r/s;
  limit_req_zone $http_x_api_key     zone=allow_key:32m  rate={huge}r/s;
  limit_req_zone $server_port       zone=tiny:1m          rate=1r/s;
  limit_req_zone $binary_remote_addr zone=accuracy:1m     rate={acc_rate}r/s;
  upstream demo {{
    server 127.0.0.1:{up};
    keepalive 64;
    keepalive_requests 100000000;
  }}
  server {{
    listen 127.0.0.1:{p_plain} reuseport backlog=4096;
    location / {{
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{p_limited} reuseport backlog=4096;
    location / {{
      limit_req zone=allow_global burst={huge} nodelay;
      limit_req zone=allow_ip burst={huge} nodelay;
      limit_req zone=allow_key burst={huge} nodelay;
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{p_reject} reuseport backlog=4096;
    location / {{
      limit_req zone=tiny nodelay;
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{p_many} reuseport backlog=4096;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    location / {{
      limit_req zone=allow_global burst={huge} nodelay;
      limit_req zone=allow_ip burst={huge} nodelay;
      limit_req zone=allow_key burst={huge} nodelay;
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{p_accuracy} reuseport backlog=4096;
    location / {{
      limit_req zone=accuracy burst={acc_burst} nodelay;
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{p_ws} reuseport backlog=4096;
    location / {{
{ws_proxy}
    }}
  }}
{tls}}}
"""

# WebSocket: the usual nginx recipe (Upgrade and Connection set explicitly,
# nginx drops both as hop-by-hop otherwise), plus the headers of NGINX_PROXY
# and a tunnel idle timeout like sluice's default.
NGINX_WS_PROXY = """\
      proxy_pass http://demo;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto http;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-Id $request_id;
      add_header X-Request-Id $request_id always;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;"""

# The TLS server of the tls endpoint: the usual production settings
# (a shared session cache, TLS 1.2 and 1.3), the certificate run.py made.
NGINX_TLS = """\
  server {{
    listen 127.0.0.1:{p_tls} ssl reuseport backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / {{
{proxy}
    }}
  }}
"""


class Nginx(Target):
    name = "nginx"

    def pids(self):
        if not self.proc:
            return []
        return [self.proc.pid] + procs.children(self.proc.pid)

    def start(self):
        self.ports = {k: procs.free_port() for k in endpoint_kinds(self.params) if k != "flood"}
        for d in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.tmp, f"nginx-{d}"), exist_ok=True)
        cfg = os.path.join(self.tmp, "nginx.conf")
        tls = ""
        if self.params.get("tls_cert"):
            tls = NGINX_TLS.format(p_tls=self.ports["tls"], cert=self.params["tls_cert"],
                                   key=self.params["tls_key"],
                                   proxy=NGINX_PROXY.format(proto="https"))
        with open(cfg, "w") as f:
            f.write(NGINX_CONF.format(
                tmp=self.tmp, workers=self.workers, up=self.up, huge=HUGE,
                proxy=NGINX_PROXY.format(proto="http"), ws_proxy=NGINX_WS_PROXY, tls=tls,
                nofile=min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20),
                maxconn=max_conns(),
                acc_rate=self.params["acc_rate"], acc_burst=self.params["acc_burst"],
                **{f"p_{k}": v for k, v in self.ports.items()}))
        check = subprocess.run(["/usr/sbin/nginx", "-t", "-q", "-c", cfg, "-p", self.tmp],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx config rejected:\n{check.stderr}")
        self._spawn(["/usr/sbin/nginx", "-c", cfg, "-p", self.tmp])
        self._wait_ready(self.ports.values())
        deadline = time.time() + 5  # the workers, not only the master
        while len(self.pids()) < 1 + self.workers and time.time() < deadline:
            time.sleep(0.05)

    def version(self):
        out = subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True, text=True)
        return out.stderr.strip().replace("nginx version: nginx/", "")


# ---- HAProxy -------------------------------------------------------------------

HAPROXY_CFG = """\
global
  nbthread {workers}
  maxconn {maxconn}
  pidfile {tmp}/haproxy.pid

defaults
  mode http
  maxconn {maxconn}
  option http-keep-alive
  option forwardfor
  timeout connect 2s
  timeout client 60s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 60s
  unique-id-format %[uuid()]
  unique-id-header X-Request-Id
  default_backend demo

backend demo
  http-reuse always
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-response set-header X-Request-Id %[unique-id]
  server up 127.0.0.1:{up}

# Stick tables. http_req_rate counts every request, denied ones too;
# gpc0_rate counts only what the rules let through (see fe_accuracy_gpc).
backend st_allow_global
  stick-table type integer size 1 expire 10s store http_req_rate(1s)
backend st_allow_ip
  stick-table type ip size 1m expire 10s store http_req_rate(1s)
backend st_allow_key
  stick-table type string len 64 size 1m expire 10s store http_req_rate(1s)
backend st_tiny
  stick-table type ip size 1m expire 10s store http_req_rate(1s)
backend st_acc
  stick-table type ip size 1m expire 10s store http_req_rate(1s)
backend st_acc_gpc
  stick-table type ip size 1m expire 10s store gpc0,gpc0_rate(1s)

frontend fe_plain
  bind 127.0.0.1:{p_plain}

frontend fe_limited
  bind 127.0.0.1:{p_limited}
  http-request track-sc0 int(1) table st_allow_global
  http-request track-sc1 src table st_allow_ip
  http-request track-sc2 req.hdr(x-api-key) table st_allow_key
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {huge} }} || {{ sc_http_req_rate(1) gt {huge} }} || {{ sc_http_req_rate(2) gt {huge} }}

frontend fe_reject
  bind 127.0.0.1:{p_reject}
  http-request track-sc0 src table st_tiny
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt 1 }}

frontend fe_many
  bind 127.0.0.1:{p_many}
  http-request set-src hdr(x-forwarded-for) if {{ src 127.0.0.1 }}
  http-request track-sc0 int(1) table st_allow_global
  http-request track-sc1 src table st_allow_ip
  http-request track-sc2 req.hdr(x-api-key) table st_allow_key
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {huge} }} || {{ sc_http_req_rate(1) gt {huge} }} || {{ sc_http_req_rate(2) gt {huge} }}

# The usual idiom: deny above RATE requests in the last second.
frontend fe_accuracy
  bind 127.0.0.1:{p_accuracy}
  http-request track-sc0 src table st_acc
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {acc_rate} }}

# Closer to a token bucket: count admitted requests only (gpc0), deny once
# RATE of them were admitted in the last second.
frontend fe_accuracy_gpc
  bind 127.0.0.1:{p_accuracy_gpc}
  http-request track-sc0 src table st_acc_gpc
  http-request deny deny_status 429 if {{ sc_gpc0_rate(0) ge {acc_rate} }}
  http-request sc-inc-gpc0(0)
{tls}"""

# The tls endpoint: HAProxy's default TLS session cache (tune.ssl.cachesize),
# cert and key in one PEM file, its own backend for X-Forwarded-Proto https.
HAPROXY_TLS = """\

frontend fe_tls
  bind 127.0.0.1:{p_tls} ssl crt {pem} ssl-min-ver TLSv1.2 alpn http/1.1
  default_backend demo_tls

backend demo_tls
  http-reuse always
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-response set-header X-Request-Id %[unique-id]
  server up 127.0.0.1:{up}
"""


class HAProxy(Target):
    name = "haproxy"

    def endpoints(self, kind):
        if kind == "accuracy":
            return [("haproxy (req_rate)", self.ports["accuracy"], "/accuracy/x"),
                    ("haproxy (gpc0_rate)", self.ports["accuracy_gpc"], "/accuracy/x")]
        return super().endpoints(kind)

    def start(self):
        kinds = ([k for k in endpoint_kinds(self.params) if k not in ("flood", "ws")]
                 + ["accuracy_gpc"])
        self.ports = {k: procs.free_port() for k in kinds}
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        tls = ""
        if self.params.get("tls_cert"):
            pem = os.path.join(self.tmp, "haproxy-tls.pem")
            with open(pem, "w") as out:
                for part in (self.params["tls_cert"], self.params["tls_key"]):
                    with open(part) as src:
                        out.write(src.read())
            os.chmod(pem, 0o600)
            tls = HAPROXY_TLS.format(p_tls=self.ports["tls"], pem=pem, up=self.up)
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG.format(
                tmp=self.tmp, workers=self.workers, up=self.up, huge=HUGE, tls=tls,
                acc_rate=self.params["acc_rate"], maxconn=max_conns(),
                **{f"p_{k}": v for k, v in self.ports.items()}))
        check = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", cfg],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config rejected:\n{check.stdout}{check.stderr}")
        self._spawn(["/usr/sbin/haproxy", "-db", "-f", cfg])
        self._wait_ready(self.ports.values())

    def version(self):
        out = subprocess.run(["/usr/sbin/haproxy", "-v"], capture_output=True, text=True)
        first = out.stdout.splitlines()[0] if out.stdout else "?"
        return first.replace("HAProxy version ", "").split(" - ")[0]


TARGETS = {"sluice": Sluice, "nginx": Nginx, "haproxy": HAProxy}
