"""What a result was measured on: CPU, kernel, tool versions, and how busy."""

import os
import platform
import re
import subprocess


def _first_line(argv, cwd=None):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        return m.group(1).strip() if m else "unknown"
    except OSError:
        return "unknown"


def mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        return "unknown"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def describe(*, oha, nginx, haproxy, repo, h2load=None, tls=False):
    """A dict of the machine and versions, for the results header.

    With `tls`, also openssl's version (it made the certificate; nginx and
    HAProxy link libssl) and h2load's when it is given.
    """
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"], cwd=repo)
    dirty = _first_line(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    extra = {}
    if tls:
        extra["openssl"] = _first_line(["openssl", "version"])
    if h2load:
        extra["h2load"] = _first_line([h2load, "--version"])
    return {
        **extra,
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "memory": mem_total_gib(),
        "kernel": platform.release(),
        "nginx": _first_line([nginx, "-v"]).replace("nginx version: ", ""),
        "haproxy": _first_line([haproxy, "-v"]).split(" - ")[0],
        "oha": _first_line([oha, "--version"]),
        "rustc": _first_line(["rustc", "--version"], cwd=repo),
        "python": platform.python_version(),
        "commit": commit + (" (with local changes)" if dirty else ""),
    }
