"""One bounded load run with oha, and its JSON summary (oha 1.16 field names).

oha is run with:
- `-z DURATION` (in ms: oha's parser takes "1500ms" but hangs on "1.5s") so every run is bounded in time, and `-w` so requests still in
  flight at the deadline finish instead of being counted as "aborted due to
  deadline" errors;
- `--disable-compression` so every server sends the same identity bytes
  (oha asks for gzip/br by default, which nginx here would not do);
- `--no-tui --output-format json`.
"""

import json
import os
import shutil
import subprocess
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


def oha_argv(oha, url, seconds, connections, keepalive):
    argv = [
        oha, "--no-tui", "--output-format", "json",
        "-z", f"{round(seconds * 1000)}ms", "-w", "-c", str(connections),
        "--disable-compression",
    ]
    if not keepalive:
        argv.append("--disable-keepalive")
    return argv + [url]


def run_oha(oha, url, *, seconds, connections, keepalive):
    """Run oha against `url` for `seconds`; return the measured figures.

    Keys: requests (responses received), ok (2xx), non2xx, errors (transport
    errors, by message in error_kinds), rps, p50/p99/p999 (ms), bytes_per_s,
    wall_s.
    """
    argv = oha_argv(oha, url, seconds, connections, keepalive)
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
