"""One bounded load run with oha, and its JSON summary (oha 1.16 field names).

oha is run with:
- `-z DURATION` (in ms: oha's parser takes "1500ms" but hangs on "1.5s") so every run is bounded in time, and `-w` so requests still in
  flight at the deadline finish instead of being counted as "aborted due to
  deadline" errors;
- `--disable-compression` so every server sends the same identity bytes
  (oha asks for gzip/br by default, which nginx here would not do);
- `--no-tui --output-format json`;
- for https URLs, `--cacert` with the bench CA (the certificate is verified). oha's
  rustls client offers no ALPN, so it speaks HTTP/1.1, and it keeps a TLS
  session cache: with `--disable-keepalive` its new connections resume.

h2load (nghttp2) loads the h2 scenario: `-c` connections, `-m` streams in
flight on each, `-t` threads, `-D` duration; its per-request log file gives
the latency percentiles. It must report `Application protocol: h2`.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


class LoadError(RuntimeError):
    """oha failed or printed something that is not its JSON summary."""


def find_or_install_oha(log):
    """Path to oha: on PATH, in ~/.cargo/bin, or installed there now."""
    cargo_bin = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / "oha"
    for candidate in (shutil.which("oha"), cargo_bin):
        if candidate and Path(candidate).exists():
            return str(candidate)
    log("oha not found: cargo install oha --locked (takes a few minutes, once)")
    subprocess.run(["cargo", "install", "oha", "--locked"], check=True)
    if not cargo_bin.exists():
        raise LoadError(f"cargo install oha finished but {cargo_bin} is missing")
    return str(cargo_bin)


def oha_argv(oha, url, seconds, connections, keepalive, cacert=None):
    argv = [
        oha, "--no-tui", "--output-format", "json",
        "-z", f"{round(seconds * 1000)}ms", "-w", "-c", str(connections),
        "--disable-compression",
    ]
    if not keepalive:
        argv.append("--disable-keepalive")
    if cacert:
        argv += ["--cacert", str(cacert)]
    return argv + [url]


def run_oha(oha, url, *, seconds, connections, keepalive, cacert=None):
    """Run oha against `url` for `seconds`; return the measured figures.

    Keys: requests (responses received), ok (2xx), non2xx, errors (transport
    errors, by message in error_kinds), rps, p50/p99/p999 (ms), bytes_per_s,
    wall_s.
    """
    argv = oha_argv(oha, url, seconds, connections, keepalive, cacert)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise LoadError(f"oha did not finish within {seconds + 60} s: {' '.join(argv)}") from e
    if done.returncode != 0:
        raise LoadError(f"oha exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    try:
        out = json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise LoadError(f"oha printed no JSON: {done.stdout[:500]!r} {done.stderr[-500:]!r}") from e
    return parse_summary(out)


def parse_summary(out):
    statuses = {int(k): v for k, v in out.get("statusCodeDistribution", {}).items()}
    errors = dict(out.get("errorDistribution", {}))
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    responses = sum(statuses.values())
    pct = out.get("latencyPercentiles", {})
    summary = out["summary"]
    wall = summary["total"]

    def ms(key):
        v = pct.get(key)
        return None if v is None or v != v else v * 1000.0  # NaN when no responses

    return {
        "requests": responses,
        "ok": ok,
        "non2xx": responses - ok,
        "statuses": statuses,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": ok / wall if wall else 0.0,
        "p50": ms("p50"),
        "p99": ms("p99"),
        "p999": ms("p99.9"),
        "bytes_per_s": summary.get("sizePerSec") or 0.0,
        "wall_s": wall,
    }


def _run(argv, seconds, what):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired as e:
        raise LoadError(f"{what} did not finish within {seconds + 60:.0f} s: {' '.join(argv)}") from e
    if done.returncode != 0:
        raise LoadError(f"{what} exited with {done.returncode}: {(done.stdout + done.stderr).strip()[-2000:]}")
    return done.stdout


def run_handshake_load(url, *, seconds, connections):
    """A full TLS handshake per request (handshake_load.py); the same keys as run_oha."""
    script = Path(__file__).resolve().parent / "handshake_load.py"
    argv = [sys.executable, str(script), "--url", url, "-c", str(connections), "-z", f"{seconds:g}"]
    out = _run(argv, seconds, "handshake_load.py")
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        raise LoadError(f"handshake_load.py printed no JSON: {out[:500]!r}") from e


def find_h2load():
    """Path to h2load (Debian's nghttp2-client), or None."""
    return shutil.which("h2load")


def h2load_argv(h2load, url, *, seconds, connections, streams, threads, log_file):
    threads = max(1, min(threads, connections))
    return [h2load, "-c", str(connections), "-m", str(streams), "-t", str(threads),
            "-D", f"{round(seconds * 1000)}ms", "--log-file", str(log_file), url]


def run_h2load(h2load, url, *, seconds, connections, streams, threads, log_file):
    """Run h2load against `url` for `seconds`; the same keys as run_oha."""
    argv = h2load_argv(h2load, url, seconds=seconds, connections=connections, streams=streams,
                       threads=threads, log_file=log_file)
    out = _run(argv, seconds, "h2load")
    try:
        latencies = Path(log_file).read_text().splitlines()
    finally:
        Path(log_file).unlink(missing_ok=True)
    return parse_h2load(out, latencies)


def _h2_number(pattern, text, what):
    m = re.search(pattern, text, re.M)
    if not m:
        raise LoadError(f"h2load printed no {what}: {text[-1500:]!r}")
    return m


def parse_h2load(out, log_lines):
    """h2load's summary and its log file (start µs, status, duration µs per request)."""
    proto = _h2_number(r"^Application protocol: (\S+)", out, "application protocol")
    if proto.group(1) != "h2":
        raise LoadError(f"h2load negotiated {proto.group(1)!r}, not h2: the h2 scenario would measure "
                        "something else")
    fin = _h2_number(r"^finished in ([\d.]+)(s|ms|us),", out, "'finished in'")
    wall = float(fin.group(1)) / {"s": 1, "ms": 1e3, "us": 1e6}[fin.group(2)]
    req = _h2_number(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", out, "request counts")
    codes = _h2_number(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, "status codes")
    traffic = _h2_number(r"^traffic: .*?\((\d+)\) total", out, "traffic")
    ok, s3, s4, s5 = (int(codes.group(i)) for i in range(1, 5))
    errored, timeout = int(req.group(6)), int(req.group(7))
    statuses, durations = {}, []
    for line in log_lines:
        fields = line.split()
        if len(fields) == 3:
            statuses[int(fields[1])] = statuses.get(int(fields[1]), 0) + 1
            durations.append(int(fields[2]) / 1000.0)  # µs -> ms
    durations.sort()

    def pct(q):
        if not durations:
            return None
        return durations[min(len(durations) - 1, max(0, math.ceil(q * len(durations)) - 1))]

    return {
        "requests": ok + s3 + s4 + s5,
        "ok": ok,
        "non2xx": s3 + s4 + s5,
        "statuses": statuses or {"2xx": ok, "3xx": s3, "4xx": s4, "5xx": s5},
        "errors": errored + timeout,
        "error_kinds": {k: v for k, v in (("errored", errored), ("timeout", timeout)) if v},
        "rps": ok / wall if wall else 0.0,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "bytes_per_s": int(traffic.group(1)) / wall if wall else 0.0,
        "wall_s": wall,
    }
