"""Processes the harness starts, and what /proc says about them.

Every process is started here, remembered by PID and stopped by that PID
(SIGTERM, then SIGKILL after a grace period) when the run ends, however it
ends. Nothing is ever stopped by name.
"""
import atexit
import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

_started = []  # subprocess.Popen objects, in start order


def start(cmd, **kwargs):
    """Popen that is remembered and stopped at exit."""
    p = subprocess.Popen(cmd, **kwargs)
    _started.append(p)
    return p


def stop(p, grace=5.0):
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def stop_all():
    for p in reversed(_started):
        try:
            stop(p)
        except Exception:  # keep stopping the others
            pass
    _started.clear()


atexit.register(stop_all)


def _on_signal(signum, _frame):
    stop_all()
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc=None, timeout=10.0):
    """True once 127.0.0.1:port accepts; False on timeout or if proc died."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def children(pid):
    """Direct children (nginx workers of the master)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pids):
    """utime + stime of every process (all its threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / CLK_TCK


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ns(pids):
    """CPU time of every thread of every process in nanoseconds (schedstat:
    exact, where utime+stime counts clock ticks)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def context_switches(pids):
    """Voluntary + involuntary context switches of every thread: wake-ups."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:",
                                            "nonvoluntary_ctxt_switches:")):
                            total += int(line.split()[1])
            except (OSError, ValueError):
                pass
    return total


def fd_count(pids):
    """Open file descriptors (entries of /proc/PID/fd)."""
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


def rss_kb(pids):
    return sum(status_kb(pid, "VmRSS") for pid in pids)


def hwm_kb(pids):
    return sum(status_kb(pid, "VmHWM") for pid in pids)


def reset_hwm(pids):
    """Resets VmHWM to the current RSS (Linux >= 4.0, needs ptrace rights).
    Returns False when that is not allowed: peaks are then since start."""
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok
