"""Scenario definitions (what traffic, which endpoint, what answers are fine).

Scenarios a-e, g and h run against every target in interleaved rounds, w
(WebSocket echo) against sluice and nginx only; f (key flood), m (idle TLS
connections) and t (idle WebSocket tunnels) run once against a fresh sluice
alone (see run.py).
"""
from dataclasses import dataclass


@dataclass
class Scenario:
    key: str                 # short id used on the command line: a, b, c, d1, d2, e, g, h
    name: str
    endpoint: str            # targets.ENDPOINTS
    driver: str              # "wrk" | "client"
    expect: frozenset        # statuses that are fine
    headers: tuple = ()
    connections: int = 0     # 0: the --connections of the run (64)
    rate: float = 0.0        # client: fixed total rate (0: closed loop)
    sources: str = ""        # client: FIRST/COUNT source addresses
    requests_per_conn: int = 0
    key_space: int = 0
    min_429: float = 0.0     # share of 429 required (overload)
    fixed_seconds: float = 0  # duration regardless of --seconds (accuracy)
    tls: bool = False        # https:// to the target's tls endpoint
    ws_bytes: int = 0        # client: WebSocket echo, messages of this many bytes
    only: tuple = ()         # targets it runs against (empty: every target)
    note: str = ""

    @property
    def label(self):
        return f"{self.key} {self.name}"


WS_MESSAGE_BYTES = 128


def build(quick, acc_rate, acc_burst, acc_seconds):
    """The scenarios of a run. Quick mode keeps every kind, smaller."""
    identities = 2000 if quick else 10000
    source_count = 1024 if quick else 4096
    return [
        Scenario("a", "pass-through", "plain", "wrk", frozenset({200}),
                 note="no limits"),
        Scenario("b", "limits-allow", "limited", "wrk", frozenset({200}),
                 headers=("X-API-Key: bench-key",),
                 note="global + per-IP + per-key limits that always allow"),
        Scenario("c", "overload-429", "reject", "wrk", frozenset({200, 429}), min_429=0.99,
                 note="limit 1/s: > 99 % answered 429"),
        Scenario("d1", "many-src-ips", "many", "client", frozenset({200}),
                 connections=256, sources=f"127.1.0.1/{source_count}", requests_per_conn=50,
                 headers=("X-API-Key: key-%d",), key_space=identities,
                 note=f"{source_count} source addresses in 127.1.0.0/16 (a new one every "
                      f"50 requests per connection), {identities} API keys"),
        Scenario("d2", "many-xff", "many", "client", frozenset({200}),
                 headers=("X-Forwarded-For: 10.%d.%d.%d", "X-API-Key: key-%d"),
                 key_space=identities,
                 note=f"{identities} client addresses in X-Forwarded-For from a trusted peer, "
                      f"{identities} API keys"),
        Scenario("e", "accuracy", "accuracy", "client", frozenset({200, 429}),
                 rate=10 * acc_rate, fixed_seconds=acc_seconds,
                 note=f"per-IP limit {acc_rate}/s burst {acc_burst}, offered "
                      f"{10 * acc_rate}/s for {acc_seconds:g} s (a fresh source address "
                      f"per run, so every run starts with a full bucket)"),
        Scenario("g", "tls-keepalive", "tls", "wrk", frozenset({200}), tls=True,
                 note="like a, over TLS: keep-alive HTTPS (ECDSA P-256 certificate; nginx "
                      "with ssl_session_cache shared:SSL:10m)"),
        # wrk -H "Connection: close" reconnects per request but resumes its TLS
        # session, so full handshakes come from the load client.
        Scenario("h", "tls-handshakes", "tls", "client", frozenset({200}), tls=True,
                 requests_per_conn=1, sources="127.3.0.1/64",
                 note="one request per connection, every connection a full handshake "
                      "(no session offered for resumption); req/s = handshakes/s, latency "
                      "from the TCP connect"),
        Scenario("w", "ws-echo", "ws", "client", frozenset({101}), ws_bytes=WS_MESSAGE_BYTES,
                 only=("sluice", "nginx"),
                 note=f"WebSocket echo: every connection upgrades once (101 from the demo "
                      f"upstream's echo), then sends masked {WS_MESSAGE_BYTES}-byte binary "
                      f"messages, one at a time, each waiting for its echo; req/s = "
                      f"messages/s, CPU us/req = CPU per echoed message, statuses = the "
                      f"handshakes' answers; sluice and nginx only"),
    ]
