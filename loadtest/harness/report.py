"""Aggregation across rounds, the stdout table, report.md and gnuplot charts."""
import os
import shutil
import statistics
import subprocess

PCTS = ("p50", "p90", "p99", "p99.9")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def aggregate(runs):
    """Median of every metric over the rounds; statuses and errors summed."""
    status, errors = {}, {}
    for r in runs:
        for k, v in r["status"].items():
            status[k] = status.get(k, 0) + v
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    return {
        "rounds": len(runs),
        "rps": median(r["rps"] for r in runs),
        "latency_ms": {p: median(r["latency_ms"][p] for r in runs) for p in PCTS},
        "cpu_us": median(r["cpu_us"] for r in runs),
        "hwm_mib": max(r["hwm_kb"] for r in runs) / 1024.0,
        "requests": sum(r["requests"] for r in runs),
        "status": status,
        "errors": errors,
    }


def status_text(status):
    total = sum(status.values()) or 1
    parts = sorted(status.items(), key=lambda kv: -kv[1])
    out = []
    for code, n in parts:
        share = 100.0 * n / total
        out.append(f"{code}:{share:.3g}%" if share < 99.995 or len(parts) > 1 else f"{code}:100%")
    return " ".join(out)


def rows(scenarios, variants, agg):
    """One row per (scenario, variant) with relative CPU for sluice rows."""
    out = []
    for sc in scenarios:
        cpu = {v: agg[(sc.key, v)]["cpu_us"] for v in variants.get(sc.key, ())
               if (sc.key, v) in agg}
        for v in variants.get(sc.key, ()):
            a = agg.get((sc.key, v))
            if a is None:
                continue
            row = {"scenario": sc.label, "key": sc.key, "target": v, **a}
            if v == "sluice":
                for peer in ("nginx", "haproxy"):
                    base = cpu.get(peer) or next(
                        (c for name, c in cpu.items() if name.startswith(peer)), None)
                    row[f"vs_{peer}"] = a["cpu_us"] / base if base else None
            out.append(row)
    return out


def _f(x, fmt):
    return "-" if x is None else format(x, fmt)


TABLE_HEAD = ("scenario", "target", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
              "CPU us/req", "vs nginx", "vs haproxy", "peak RSS MiB", "statuses")


def table_cells(r):
    lat = r["latency_ms"]
    return (r["scenario"], r["target"], _f(r["rps"], ".0f"), _f(lat["p50"], ".3f"),
            _f(lat["p90"], ".3f"), _f(lat["p99"], ".3f"), _f(lat["p99.9"], ".3f"),
            _f(r["cpu_us"], ".2f"), _f(r.get("vs_nginx"), ".2f"),
            _f(r.get("vs_haproxy"), ".2f"), _f(r["hwm_mib"], ".1f"),
            status_text(r["status"]) + (f" errors:{r['errors']}" if r["errors"] else ""))


def text_table(table_rows):
    cells = [TABLE_HEAD] + [table_cells(r) for r in table_rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(TABLE_HEAD))]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(str(x).rjust(w) if 2 <= j <= 10 else str(x).ljust(w)
                               for j, (x, w) in enumerate(zip(c, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table_rows):
    out = ["| " + " | ".join(TABLE_HEAD) + " |",
           "|" + "|".join("---:" if 2 <= i <= 10 else "---" for i in range(len(TABLE_HEAD))) + "|"]
    for r in table_rows:
        out.append("| " + " | ".join(str(c) for c in table_cells(r)) + " |")
    return "\n".join(out)


def tls_rows(table_rows):
    """Per target: g (keep-alive HTTPS) and h (full handshakes) side by side,
    with sluice's ratios to nginx: CPU per request (g, h) and throughput (h)."""
    by = {}
    for r in table_rows:
        if r["key"] in ("g", "h"):
            by.setdefault(r["target"], {})[r["key"]] = r
    if not by:
        return []
    out = []
    nginx = by.get("nginx", {})
    for target, d in by.items():
        g, h = d.get("g"), d.get("h")
        row = {"target": target,
               "g_rps": g and g["rps"], "g_p99": g and g["latency_ms"]["p99"],
               "g_cpu": g and g["cpu_us"],
               "h_rps": h and h["rps"], "h_p99": h and h["latency_ms"]["p99"],
               "h_cpu": h and h["cpu_us"]}
        ng, nh = nginx.get("g"), nginx.get("h")
        row["g_cpu_vs_nginx"] = g["cpu_us"] / ng["cpu_us"] if g and ng and ng["cpu_us"] else None
        row["h_rps_vs_nginx"] = h["rps"] / nh["rps"] if h and nh and nh["rps"] else None
        row["h_cpu_vs_nginx"] = h["cpu_us"] / nh["cpu_us"] if h and nh and nh["cpu_us"] else None
        # What one core of the proxy could do: the measured rate is often the
        # load generator's limit (see report.md).
        row["h_capacity"] = 1e6 / h["cpu_us"] if h and h["cpu_us"] else None
        row["h_capacity_vs_nginx"] = (nh["cpu_us"] / h["cpu_us"]
                                      if h and nh and h["cpu_us"] and nh["cpu_us"] else None)
        out.append(row)
    return out


TLS_HEAD = ("target", "g req/s", "g p99 ms", "g CPU us/req", "g CPU vs nginx",
            "h handshakes/s", "h vs nginx", "h p99 ms", "h CPU us/handshake", "h CPU vs nginx",
            "h handshakes/CPU-s", "h per CPU-s vs nginx")


def tls_cells(r):
    return (r["target"], _f(r["g_rps"], ".0f"), _f(r["g_p99"], ".3f"), _f(r["g_cpu"], ".2f"),
            _f(r["g_cpu_vs_nginx"], ".2f"), _f(r["h_rps"], ".0f"), _f(r["h_rps_vs_nginx"], ".2f"),
            _f(r["h_p99"], ".3f"), _f(r["h_cpu"], ".1f"), _f(r["h_cpu_vs_nginx"], ".2f"),
            _f(r["h_capacity"], ".0f"), _f(r["h_capacity_vs_nginx"], ".2f"))


def tls_text(rows_):
    cells = [TLS_HEAD] + [tls_cells(r) for r in rows_]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(TLS_HEAD))]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(str(x).rjust(w) if j else str(x).ljust(w)
                               for j, (x, w) in enumerate(zip(c, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tls_markdown(rows_):
    out = ["| " + " | ".join(TLS_HEAD) + " |",
           "|" + "|".join("---:" if i else "---" for i in range(len(TLS_HEAD))) + "|"]
    for r in rows_:
        out.append("| " + " | ".join(str(c) for c in tls_cells(r)) + " |")
    return "\n".join(out)


def ws_rows(table_rows):
    """w (WebSocket echo) per target: messages/s, latency, CPU per message and
    sluice's CPU per message relative to nginx's (goal: at most 0.90)."""
    by = {r["target"]: r for r in table_rows if r["key"] == "w"}
    nginx = by.get("nginx")
    out = []
    for target, r in by.items():
        out.append({
            "target": target, "mps": r["rps"], "p50": r["latency_ms"]["p50"],
            "p99": r["latency_ms"]["p99"], "cpu": r["cpu_us"],
            "mps_vs_nginx": r["rps"] / nginx["rps"] if nginx and nginx["rps"] else None,
            "cpu_vs_nginx": r["cpu_us"] / nginx["cpu_us"] if nginx and nginx["cpu_us"] else None,
            "upgrades": r["status"].get("101", 0),
        })
    return out


WS_HEAD = ("target", "messages/s", "vs nginx", "p50 ms", "p99 ms", "CPU us/message",
           "CPU vs nginx (goal <= 0.90)", "handshakes (101)")


def ws_cells(r):
    return (r["target"], _f(r["mps"], ".0f"), _f(r["mps_vs_nginx"], ".2f"), _f(r["p50"], ".3f"),
            _f(r["p99"], ".3f"), _f(r["cpu"], ".2f"), _f(r["cpu_vs_nginx"], ".2f"),
            str(r["upgrades"]))


def ws_text(rows_):
    cells = [WS_HEAD] + [ws_cells(r) for r in rows_]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(WS_HEAD))]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(str(x).rjust(w) if j else str(x).ljust(w)
                               for j, (x, w) in enumerate(zip(c, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ws_markdown(rows_):
    out = ["| " + " | ".join(WS_HEAD) + " |",
           "|" + "|".join("---:" if i else "---" for i in range(len(WS_HEAD))) + "|"]
    for r in rows_:
        out.append("| " + " | ".join(str(c) for c in ws_cells(r)) + " |")
    return "\n".join(out)


def accuracy_rows(acc_runs, rate, burst):
    """acc_runs: {variant: [run]} -> rows with admitted / (burst + rate * T)."""
    out = []
    for variant, runs in acc_runs.items():
        ratios = []
        for r in runs:
            admitted = r["status"].get("200", 0)
            window = r.get("window_s") or r["elapsed_s"]
            bound = burst + rate * window
            ratios.append((admitted, window, bound, admitted / bound))
        out.append({
            "target": variant,
            "runs": ratios,
            "median": median(x[3] for x in ratios),
            "min": min(x[3] for x in ratios),
            "max": max(x[3] for x in ratios),
            "offered_rps": median(r["rps"] for r in runs),
        })
    return out


def accuracy_text(acc, rate, burst):
    lines = [f"accuracy: admitted / (burst {burst} + {rate}/s x T), T = first request "
             f"written .. last answer read"]
    for a in acc:
        detail = ", ".join(f"{adm} in {w:.3f} s -> {ratio:.4f}" for adm, w, _, ratio in a["runs"])
        lines.append(f"  {a['target']:<22} median {a['median']:.4f}  "
                     f"[min {a['min']:.4f}, max {a['max']:.4f}]  ({detail})")
    return "\n".join(lines)


# ---- charts --------------------------------------------------------------------

GNUPLOT_HEAD = """\
set terminal pngcairo size {w},{h} font "DejaVu Sans,10" noenhanced
set output "{out}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set xtics nomirror rotate by -20
"""


def _write_tsv(path, labels, series_names, values):
    with open(path, "w") as f:
        f.write("# label\t" + "\t".join(s.replace(" ", "_") for s in series_names) + "\n")
        for label, row in zip(labels, values):
            f.write(f'"{label}"\t' + "\t".join("NaN" if v is None else f"{v:.6g}" for v in row)
                    + "\n")


def _plot_cmd(tsv, series_names, clusters):
    parts = []
    for i, name in enumerate(series_names):
        src = f'"{tsv}"' if i == 0 else "''"
        xt = ":xtic(1)" if i == 0 else ""
        parts.append(f"{src} using {i + 2}{xt} title '{name}'")
    return f"set xrange [-0.6:{clusters - 0.4}]\nplot " + ", ".join(parts) + "\n"


def charts(out_dir, table_rows, targets, acc, flood):
    """Writes PNGs with gnuplot; returns the list of files written."""
    if not shutil.which("gnuplot"):
        return []
    written = []
    scen = []
    for r in table_rows:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])

    def value(label, target, fn):
        for r in table_rows:
            if r["scenario"] == label and (r["target"] == target or
                                           r["target"].startswith(target + " ")):
                return fn(r)
        return None

    scripts = []
    # Full handshakes (h) cost ten times a request: they get the TLS chart
    # instead of squashing the others in the throughput and CPU charts.
    per_request = [s for s in scen if not s.startswith("h ")]
    # Throughput: closed-loop scenarios only (accuracy runs at a fixed rate).
    closed = [s for s in per_request if not s.startswith("e ")]
    tsv = os.path.join(out_dir, "throughput.tsv")
    _write_tsv(tsv, closed, targets, [[value(s, t, lambda r: r["rps"]) for t in targets]
                                      for s in closed])
    scripts.append(("throughput.png", 900, 450,
                    'set title "Throughput (median of rounds), higher is better"\n'
                    'set ylabel "requests/s"\nset yrange [0:*]\n'
                    + _plot_cmd(tsv, targets, len(closed))))
    tsv = os.path.join(out_dir, "cpu.tsv")
    _write_tsv(tsv, per_request, targets, [[value(s, t, lambda r: r["cpu_us"]) for t in targets]
                                           for s in per_request])
    scripts.append(("cpu_per_request.png", 900, 450,
                    'set title "CPU per request of the proxy (utime+stime / requests), lower is better"\n'
                    'set ylabel "CPU microseconds per request"\nset yrange [0:*]\n'
                    + _plot_cmd(tsv, targets, len(per_request))))
    tls_scen = [s for s in scen if s.startswith("g ") or s.startswith("h ")]
    if tls_scen:
        # Three panels: CPU per keep-alive request in clear and over TLS (a, g),
        # full handshakes per second (h), CPU per handshake (h).
        ka = [s for s in scen if s.startswith("a ") or s.startswith("g ")]
        hs = [s for s in scen if s.startswith("h ")]
        body = "set multiplot layout 1,3\nset key top left\nset yrange [0:*]\n"
        if ka:
            tsv = os.path.join(out_dir, "tls_keepalive_cpu.tsv")
            _write_tsv(tsv, ka, targets, [[value(s, t, lambda r: r["cpu_us"]) for t in targets]
                                          for s in ka])
            body += ('set title "CPU us per keep-alive request (a clear, g TLS)"\n'
                     + _plot_cmd(tsv, targets, len(ka)))
        if hs:
            tsv = os.path.join(out_dir, "tls_handshakes.tsv")
            _write_tsv(tsv, hs, targets, [[value(s, t, lambda r: r["rps"]) for t in targets]
                                          for s in hs])
            body += ('set title "full TLS handshakes per second (h), higher is better"\n'
                     + _plot_cmd(tsv, targets, len(hs)))
            tsv = os.path.join(out_dir, "tls_handshake_cpu.tsv")
            _write_tsv(tsv, hs, targets, [[value(s, t, lambda r: r["cpu_us"]) for t in targets]
                                          for s in hs])
            body += ('set title "CPU us per full handshake + request (h), lower is better"\n'
                     + _plot_cmd(tsv, targets, len(hs)))
        scripts.append(("tls.png", 1350, 450, body + "unset multiplot\n"))
    lat = ""
    for p in PCTS:
        tsv = os.path.join(out_dir, f"latency_{p}.tsv")
        _write_tsv(tsv, scen, targets,
                   [[value(s, t, lambda r, p=p: r["latency_ms"][p]) for t in targets]
                    for s in scen])
        lat += f'set title "{p} latency (ms, log scale)"\n' + _plot_cmd(tsv, targets, len(scen))
    scripts.append(("latency.png", 1200, 800,
                    "set logscale y\nset multiplot layout 2,2\nset key top left\n"
                    + lat + "unset multiplot\n"))
    if acc:
        tsv = os.path.join(out_dir, "accuracy.tsv")
        with open(tsv, "w") as f:
            f.write("# target\tratio\n")
            for a in acc:
                f.write(f'"{a["target"]}"\t{a["median"]:.6f}\n')
        scripts.append(("accuracy.png", 800, 400,
                        'set title "Admitted / (burst + rate x T) under 10x overload (1.0 = exact)"\n'
                        'set yrange [0:1.2]\nset ytics 0.1\nunset key\n'
                        'set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2\n'
                        f'set xrange [-0.6:{len(acc) - 0.4}]\n'
                        f'plot "{tsv}" using 2:xtic(1) title "admitted ratio"\n'))
    if flood and flood.get("series"):
        tsv = os.path.join(out_dir, "flood.tsv")
        with open(tsv, "w") as f:
            f.write("# t_s\trss_mib\tkeys\n")
            for t, rss, keys in flood["series"]:
                f.write(f"{t:.3f}\t{rss / 1024.0:.3f}\t{'NaN' if keys is None else keys}\n")
        scripts.append(("rss_key_flood.png", 900, 450,
                        f'set title "sluice under a key flood: {flood["keys_sent"]} distinct API keys, '
                        f'limiter.max_keys {flood["max_keys"]}"\n'
                        'set style data lines\nset xlabel "seconds"\nset ylabel "VmRSS MiB"\n'
                        'set y2label "sluice_ratelimit_keys"\nset ytics nomirror\nset y2tics\n'
                        'set yrange [0:*]\nset y2range [0:*]\nset key bottom right\n'
                        'set xtics norotate\n'
                        f'set arrow from {flood["t_start"]:.3f}, graph 0 to {flood["t_start"]:.3f}, '
                        'graph 1 nohead dt 3\n'
                        f'set arrow from {flood["t_end"]:.3f}, graph 0 to {flood["t_end"]:.3f}, '
                        'graph 1 nohead dt 3\n'
                        f'set label "flood" at {flood["t_start"]:.3f}, graph 0.95 offset 0.5,0\n'
                        f'plot "{tsv}" using 1:2 axes x1y1 lw 2 title "VmRSS (MiB)", '
                        f"'' using 1:3 axes x1y2 lw 2 title 'keys gauge'\n"))
    for name, w, h, body in scripts:
        out = os.path.join(out_dir, name)
        gp = os.path.join(out_dir, name.replace(".png", ".gp"))
        with open(gp, "w") as f:
            f.write(GNUPLOT_HEAD.format(w=w, h=h, out=out) + body)
        res = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
        if res.returncode == 0 and os.path.exists(out):
            written.append(out)
        else:
            print(f"gnuplot {name}: {res.stderr.strip()[-300:]}")
    return written
