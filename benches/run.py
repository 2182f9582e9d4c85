#!/usr/bin/env python3
"""Softy Pinko benchmark: the lb against nginx, HAProxy and no proxy at all.

One command, bounded in time (see benches/README.md):

    python3 benches/run.py            # 5 rounds x 10 s per target, ~20 min
    python3 benches/run.py --smoke    # 1 round x 2 s, what CI runs (~1.5 min)
    python3 benches/run.py --mode log-cost   # the lb with access log / metrics off and on

It builds the release binaries, starts 3 backend replicas and the frontend on
loopback, the lb (static discovery), nginx and HAProxy with equivalent
configs (and, for the TLS scenarios, an HTTPS listener on each with one test
certificate), and nginx serving the site from disk; then loads each target
with oha (h2load for h2, a full-handshake client for new TLS connections)
for a fixed time, each round starting one target later, and reads every
server's CPU and memory from /proc around each run. It writes a Markdown table,
the raw figures as JSON and an SVG chart, and prints the table.

Exit status: 0 when every target started, answered correctly and served every
request with a 2xx; 1 otherwise (the results are still written); 2 for bad
usage; 130 when interrupted. Every process it started is stopped on the way
out, on error and on Ctrl-C too.
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # keep benches/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import chart, configs, machine, report, tls  # noqa: E402
from benchlib.load import (LoadError, find_h2load, find_or_install_oha, run_h2load,  # noqa: E402
                           run_handshake_load, run_oha)
from benchlib.procs import Group, Server, StartError, free_ports, http_get, stop_all, wait_ready  # noqa: E402
from benchlib.stats import summarise  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BIG_FILE = "bench-1mb.bin"
API_PATH = "/api/hello"


@dataclass
class Scenario:
    key: str
    title: str
    path: str
    keepalive: bool
    targets: list
    ratios: list  # (subject, reference) pairs quoted in the headline
    throughput: bool = False
    tls: bool = False  # to the targets' HTTPS listeners
    tool: str = "oha"  # oha | handshake (handshake_load.py) | h2load
    smoke: bool = True  # part of --smoke when no --scenarios are given


@dataclass
class Target:
    name: str
    base: str  # http://127.0.0.1:PORT
    server: Group  # the processes whose cost is "the target's CPU"
    upstream: Group = None  # the origins behind it, if it is a proxy
    tls_base: str = None  # https://127.0.0.1:PORT, its TLS listener (TLS scenarios only)


@dataclass
class Stack:
    tmp: Path
    servers: list = field(default_factory=list)
    targets: dict = field(default_factory=dict)
    site: Path = None
    cert: tls.CertFiles = None  # made when a TLS scenario runs
    tls_seen: dict = field(default_factory=dict)  # target -> what its TLS listener negotiated
    h2load: str = None
    h2_streams: int = 10
    connections: int = 50


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- scenarios

PROXIES = ["lb", "nginx", "haproxy"]
TLS_RATIOS = [("lb", "nginx"), ("lb", "haproxy")]


def tls_scenarios():
    """HTTPS to the three proxies, the same certificate on each (README: "TLS")."""
    return [
        Scenario("api-tls-keepalive", f"GET {API_PATH} over TLS (HTTP/1.1), keep-alive", API_PATH, True,
                 list(PROXIES), list(TLS_RATIOS), tls=True),
        Scenario("api-tls-newconn", f"GET {API_PATH}, a new TCP connection and full TLS handshake per "
                 "request (no resumption)", API_PATH, False, list(PROXIES), list(TLS_RATIOS),
                 tls=True, tool="handshake", smoke=False),
        Scenario("api-tls-resumed", f"GET {API_PATH}, a new TCP connection per request, TLS session "
                 "resumed (oha --disable-keepalive)", API_PATH, False, list(PROXIES), list(TLS_RATIOS),
                 tls=True, smoke=False),
        Scenario("api-h2", f"GET {API_PATH} over TLS, h2 with multiplexed streams (h2load)", API_PATH, True,
                 list(PROXIES), list(TLS_RATIOS), tls=True, tool="h2load"),
    ]


def compare_scenarios():
    return [
        Scenario("api-keepalive", f"GET {API_PATH}, keep-alive", API_PATH, True,
                 PROXIES + ["direct"], [("lb", "nginx"), ("lb", "haproxy"), ("lb", "direct")]),
        Scenario("api-newconn", f"GET {API_PATH}, a new connection per request", API_PATH, False,
                 PROXIES + ["direct"], [("lb", "nginx"), ("lb", "haproxy"), ("lb", "direct")]),
        Scenario("static-proxy", "GET / (the page) through a proxy in front of the frontend", "/", True,
                 PROXIES + ["frontend"], [("lb", "nginx"), ("lb", "frontend")]),
        Scenario("static-origin", "GET /: the frontend alone against nginx serving the site from disk",
                 "/", True, ["frontend", "nginx-static"], [("frontend", "nginx-static")]),
        Scenario("large-file", f"GET /{BIG_FILE} (1 MiB), keep-alive", f"/{BIG_FILE}", True,
                 PROXIES + ["frontend", "nginx-static"],
                 [("lb", "nginx"), ("lb", "frontend"), ("frontend", "nginx-static")], throughput=True),
    ] + tls_scenarios()


# Log-cost mode: nginx without/with its access log, and lb variants by
# (access_log, metrics) for the switches the lb has (configs.LB_SWITCHES).
NGINX_VARIANTS = {"nginx-quiet": False, "nginx-log": True}


def lb_variants():
    variants = {"lb-quiet": (False, False), "lb-log": (True, False)}
    if configs.LB_SWITCHES["metrics"]:
        variants.update({"lb-metrics": (False, True), "lb-log+metrics": (True, True)})
    return variants


def log_cost_scenarios():
    targets = list(lb_variants()) + list(NGINX_VARIANTS)
    ratios = [(v, "lb-quiet") for v in list(lb_variants())[1:]] + [("nginx-log", "nginx-quiet")]
    return [
        Scenario("api-keepalive", f"GET {API_PATH}, keep-alive", API_PATH, True, targets, ratios),
        Scenario("api-newconn", f"GET {API_PATH}, a new connection per request", API_PATH, False,
                 targets, ratios),
    ]


# ---------------------------------------------------------------- build and start

def build(args):
    """Release binaries of the three packages; their directory."""
    if args.bin_dir:
        return Path(args.bin_dir)
    cmd = ["cargo", "build", "--release", "--locked", "-p", "lb", "-p", "backend", "-p", "frontend"]
    if not args.no_build:
        log(f"building: {' '.join(cmd)}  (target dir: $CARGO_TARGET_DIR or ./target)")
        subprocess.run(cmd, cwd=REPO, check=True)
    meta = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return Path(json.loads(meta.stdout)["target_directory"]) / "release"


def prepare_site(tmp, source):
    """A temp copy of the frontend's site plus a 1 MiB incompressible file."""
    site = tmp / "site"
    shutil.copytree(source, site)
    (site / BIG_FILE).write_bytes(os.urandom(1 << 20))
    return site


def _start(stack, name, argv, ready_url, env=None):
    server = Server(name, argv, stack.tmp, env=env)
    stack.servers.append(server)
    wait_ready(server, ready_url)
    return server


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def start_origins(stack, bins, origin_log):
    """Three backend replicas and the frontend; (backend servers, frontend, addrs).

    Without `origin_log` they log warnings only (RUST_LOG=warn): their per-request
    lines would cost the same behind every proxy, but take CPU from the proxy
    under test on a 2-core machine.
    """
    ports = free_ports(4)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    env = dict(os.environ) if origin_log else dict(os.environ, RUST_LOG="warn")
    backends = []
    for i, addr in enumerate(addrs[:3], 1):
        backends.append(_start(stack, f"backend{i}", [bins / "backend", "--listen", addr],
                               f"http://{addr}/ready", env=dict(env, BACKEND_LISTEN=addr)))
    frontend = _start(stack, "frontend", [bins / "frontend", "--listen", addrs[3], "--root", stack.site],
                      f"http://{addrs[3]}/", env=env)
    return backends, frontend, addrs[:3], addrs[3]


@dataclass
class LbVariant:
    """Another lb run side by side with the default one (--lb-variant)."""

    name: str
    server: dict  # `server:` settings over the defaults
    binary: str = None  # another lb build
    api: dict = field(default_factory=dict)  # settings of the `api` upstream (`api.KEY=value`)
    env: dict = field(default_factory=dict)


def parse_lb_variant(text):
    """NAME:key=value,bin=PATH,env.VAR=value,api.KEY=value -> LbVariant."""
    name, _, spec = text.partition(":")
    if not name or not spec:
        raise ValueError(f"--lb-variant {text!r}: expected NAME:key=value[,...]")
    variant = LbVariant(name=name, server={})
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--lb-variant {text!r}: {item!r} is not key=value")
        if key == "bin":
            variant.binary = value
        elif key.startswith("env."):
            variant.env[key[4:]] = value
        elif key.startswith("api."):
            variant.api[key[4:]] = value
        else:
            variant.server[key] = value
    return variant


def _tls_listen(stack):
    """(a free loopback address, the certificate) for a TLS listener, or None without TLS."""
    return (f"127.0.0.1:{free_ports(1)[0]}", stack.cert) if stack.cert else None


def _wait_tls(stack, server, tls_listen, path):
    if tls_listen:
        wait_ready(server, f"https://{tls_listen[0]}{path}", context=tls.client_context(stack.cert.ca))


def start_lb(stack, bins, name, *, access_log, metrics, settings, variant=None, **common):
    listen, admin = (f"127.0.0.1:{p}" for p in free_ports(2))
    tmp = stack.tmp / name
    settings = dict(settings, **(variant.server if variant else {}))
    tls_listen = _tls_listen(stack)
    conf = _write(tmp / "lb.yaml", configs.lb_yaml(
        tmp=tmp, listen=listen, admin=admin, access_log=access_log, metrics=metrics, server=settings,
        tls=tls_listen, api_settings=variant.api if variant else None, **common))
    binary = variant.binary if variant and variant.binary else bins / "lb"
    env = dict(os.environ, **variant.env) if variant else None
    check = subprocess.run([binary, "-t", "-c", conf], capture_output=True, text=True, timeout=30, env=env)
    if check.returncode != 0:
        raise StartError(f"{name}: lb -t rejected the bench config {conf}:\n{check.stdout}{check.stderr}")
    server = _start(stack, name, [binary, "-c", conf], f"http://{admin}/ready", env=env)
    wait_ready(server, f"http://{listen}{API_PATH}")
    _wait_tls(stack, server, tls_listen, API_PATH)
    return server, listen, tls_listen and tls_listen[0]


def start_nginx(stack, name, conf_text_fn, ready_path, with_tls=False):
    prefix = stack.tmp / name
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    tls_listen = _tls_listen(stack) if with_tls else None
    extra = {"tls": tls_listen} if with_tls else {}
    conf = _write(prefix / "nginx.conf", conf_text_fn(tmp=prefix, listen=listen, **extra))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = [nginx, "-p", prefix, "-c", conf, "-e", prefix / "error.log", "-g", "daemon off;"]
    server = _start(stack, name, argv, f"http://{listen}{ready_path}")
    _wait_tls(stack, server, tls_listen, ready_path)
    return server, listen, tls_listen and tls_listen[0]


def start_haproxy(stack, *, threads, backends, frontend, access_log):
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    tls_listen = _tls_listen(stack)
    cfg = _write(stack.tmp / "haproxy" / "haproxy.cfg", configs.haproxy_cfg(
        listen=listen, threads=threads, backends=backends, frontend=frontend, access_log=access_log,
        tls=tls_listen))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    server = _start(stack, "haproxy", [haproxy, "-f", cfg, "-db"], f"http://{listen}{API_PATH}")
    _wait_tls(stack, server, tls_listen, API_PATH)
    return server, listen, tls_listen and tls_listen[0]


def start_stack(stack, bins, args, scenarios):
    """Start what the scenarios need; fill stack.targets by name."""
    wanted = {t for sc in scenarios for t in sc.targets}
    if any(sc.tls for sc in scenarios):
        stack.cert = tls.make_certificate(stack.tmp / "tls")
        log(f"TLS certificate: {stack.cert.description} ({stack.cert.cert})")
    backends, frontend, backend_addrs, frontend_addr = start_origins(stack, bins, args.origin_log == "on")
    origins = Group("origins", backends + [frontend])
    t = stack.targets
    t["direct"] = Target("direct", f"http://{backend_addrs[0]}", Group("backend1", backends[:1]))
    t["frontend"] = Target("frontend", f"http://{frontend_addr}", Group("frontend", [frontend]))
    common = dict(threads=args.threads, backends=backend_addrs, frontend=frontend_addr)

    lbs = {"lb": (args.access_log == "on", None)}  # metrics: as the lb ships
    lbs.update(lb_variants())
    for name, (access_log, metrics) in lbs.items():
        if name in wanted:
            server, listen, tls_listen = start_lb(stack, bins, name, access_log=access_log, metrics=metrics,
                                                  settings=args.lb_option, **common)
            t[name] = Target(name, f"http://{listen}", Group(name, [server]), origins,
                             tls_listen and f"https://{tls_listen}")
    for variant in args.lb_variant:
        if variant.name in wanted:
            server, listen, tls_listen = start_lb(
                stack, bins, variant.name, access_log=args.access_log == "on", metrics=None,
                settings=args.lb_option, variant=variant, **common)
            t[variant.name] = Target(variant.name, f"http://{listen}", Group(variant.name, [server]), origins,
                                     tls_listen and f"https://{tls_listen}")

    nginxes = {"nginx": args.access_log == "on"}
    nginxes.update(NGINX_VARIANTS)
    for name, access_log in nginxes.items():
        if name in wanted:
            def conf(tmp, listen, tls=None, access_log=access_log):
                return configs.nginx_proxy_conf(tmp=tmp, listen=listen, access_log=access_log, tls=tls,
                                                **common)
            server, listen, tls_listen = start_nginx(stack, name, conf, API_PATH, with_tls=True)
            t[name] = Target(name, f"http://{listen}", Group(name, [server]), origins,
                             tls_listen and f"https://{tls_listen}")

    if "nginx-static" in wanted:
        def static_conf(tmp, listen):
            return configs.nginx_static_conf(tmp=tmp, listen=listen, threads=args.threads,
                                             root=stack.site, access_log=args.access_log == "on")
        server, listen, _ = start_nginx(stack, "nginx-static", static_conf, "/")
        t["nginx-static"] = Target("nginx-static", f"http://{listen}", Group("nginx-static", [server]))

    if "haproxy" in wanted:
        server, listen, tls_listen = start_haproxy(stack, access_log=args.access_log == "on", **common)
        t["haproxy"] = Target("haproxy", f"http://{listen}", Group("haproxy", [server]), origins,
                              tls_listen and f"https://{tls_listen}")


# ---------------------------------------------------------------- checks and runs

def expected_body(stack, sc):
    if sc.path == API_PATH:
        return None  # checked by content: replicas may differ in the rest
    rel = sc.path.lstrip("/") or "index.html"
    return (stack.site / rel).read_bytes()


def _body_ok(body, want):
    return b"Hello, World!" in body if want is None else body == want


def preflight(stack, scenarios):
    """Every target answers every scenario's path with a 2xx and the right body.

    Over TLS, also: the certificate verifies against the bench CA, and the
    protocol is the scenario's: HTTP/1.1 without ALPN (as oha and the handshake
    client ask), h2 by ALPN for the h2 scenario (and a real h2 request with curl
    when it is installed; h2load checks its own protocol on every run too).
    """
    problems = []
    for sc in scenarios:
        want = expected_body(stack, sc)
        for name in sc.targets:
            target = stack.targets[name]
            if not sc.tls:
                status, body = http_get(target.base + sc.path, timeout=5)
                if not (status is not None and 200 <= status < 300 and _body_ok(body, want)):
                    problems.append(f"{sc.key}/{name}: GET {sc.path} -> {status} {body[:120]!r}")
                continue
            if not target.tls_base:
                problems.append(f"{sc.key}/{name}: no TLS listener")
                continue
            problems += _preflight_tls(stack, sc, target, want)
    return problems


def _preflight_tls(stack, sc, target, want):
    host, port = target.tls_base.removeprefix("https://").rsplit(":", 1)
    h2 = sc.tool == "h2load"
    seen = tls.probe(host, int(port), sc.path, stack.cert.ca, alpn=["h2", "http/1.1"] if h2 else None)
    where = f"{sc.key}/{target.name} ({target.tls_base})"
    if seen["error"]:
        return [f"{where}: TLS GET {sc.path} failed: {seen['error']}"]
    problems = []
    if seen["version"] not in ("TLSv1.2", "TLSv1.3"):
        problems.append(f"{where}: negotiated {seen['version']}")
    if h2:
        if seen["alpn"] != "h2":
            problems.append(f"{where}: ALPN chose {seen['alpn']!r} when offered h2, http/1.1")
        problems += _curl_h2(stack, target, sc.path, want, where)
    else:
        if seen["alpn"] is not None:
            problems.append(f"{where}: ALPN chose {seen['alpn']!r} although none was offered")
        if not (seen["status_line"] or "").startswith("HTTP/1.1 2") or not _body_ok(seen["body"], want):
            problems.append(f"{where}: GET {sc.path} -> {seen['status_line']!r} {seen['body'][:120]!r}")
        stack.tls_seen.setdefault(target.name, {}).update(
            version=seen["version"], cipher=seen["cipher"], resumes=seen["resumed"])
    stack.tls_seen.setdefault(target.name, {})["h2" if h2 else "http/1.1"] = True
    return problems


def _curl_h2(stack, target, path, want, where):
    curl = shutil.which("curl")
    if not curl:
        log(f"{where}: curl not installed, h2 checked by ALPN only (and by h2load on every run)")
        return []
    argv = [curl, "-sS", "--http2", "--cacert", str(stack.cert.ca), "--max-time", "5",
            "-w", "\n%{http_version} %{http_code}", target.tls_base + path]
    done = subprocess.run(argv, capture_output=True, timeout=30)
    body, _, tail = done.stdout.rpartition(b"\n")
    if done.returncode != 0 or tail != b"2 200" or not _body_ok(body, want):
        return [f"{where}: curl --http2 -> exit {done.returncode}, {tail!r} {body[:120]!r} "
                f"{done.stderr[-300:]!r}"]
    return []


def reset_peak_rss(group):
    """Writing 5 to clear_refs resets VmHWM, so each run reports its own peak."""
    for pid in group.pids():
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def load(stack, oha, sc, target, seconds, connections):
    """One bounded run of the scenario's load tool against the target."""
    url = (target.tls_base if sc.tls else target.base) + sc.path
    if sc.tool == "handshake":
        return run_handshake_load(url, seconds=seconds, connections=connections)
    if sc.tool == "h2load":
        return run_h2load(stack.h2load, url, seconds=seconds, connections=connections,
                          streams=stack.h2_streams, threads=os.cpu_count(), log_file=stack.tmp / "h2load.log")
    return run_oha(oha, url, seconds=seconds, connections=connections, keepalive=sc.keepalive,
                   cacert=stack.cert.ca if sc.tls else None)


def measure(stack, oha, sc, target, seconds, connections):
    dead = [s.name for s in stack.servers if not s.alive()]
    if dead:
        raise StartError(f"server(s) exited during the benchmark: {', '.join(dead)}")
    reset_peak_rss(target.server)
    cpu0 = target.server.cpu_seconds()
    up0 = target.upstream.cpu_seconds() if target.upstream else None
    res = load(stack, oha, sc, target, seconds, connections)
    cpu1 = target.server.cpu_seconds()
    up1 = target.upstream.cpu_seconds() if target.upstream else None
    rss, hwm = target.server.memory_kib()
    for s in stack.servers:
        s.trim_log()
    served = res["ok"] or None
    res.update(
        scenario=sc.key,
        target=target.name,
        cpu_us=(cpu1 - cpu0) * 1e6 / served if served else None,
        up_cpu_us=(up1 - up0) * 1e6 / served if served and up0 is not None else None,
        rss_mib=rss / 1024,
        hwm_mib=hwm / 1024,
        mb_per_s=res["bytes_per_s"] / 1e6,
    )
    return res


def run_rounds(stack, oha, scenarios, args):
    runs = []
    warm = min(1.0, args.duration)
    log(f"warm-up: {warm:g} s per target")
    for sc in scenarios:
        for name in sc.targets:
            load(stack, oha, sc, stack.targets[name], warm, args.connections)
    for s in stack.servers:
        s.trim_log()
    for rnd in range(1, args.rounds + 1):
        for sc in scenarios:
            # A B C, B C A, C A B: drift hits every target alike, and no target always runs
            # first (right after the scenario before it) or last.
            shift = (rnd - 1) % max(1, len(sc.targets))
            for name in sc.targets[shift:] + sc.targets[:shift]:
                r = measure(stack, oha, sc, stack.targets[name], args.duration, args.connections)
                r["round"] = rnd
                runs.append(r)
                flag = "" if not (r["errors"] or r["non2xx"]) else f"  errors {r['errors']} non-2xx {r['non2xx']}"
                cpu = "–" if r["cpu_us"] is None else f"{r['cpu_us']:.1f}"
                p99 = "–" if r["p99"] is None else f"{r['p99']:.2f}"
                log(f"round {rnd}/{args.rounds} {sc.key:17} {name:15} {r['rps']:>9,.0f} rps  "
                    f"p99 {p99} ms  cpu {cpu} µs/req{flag}")
    return runs


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("compare", "log-cost"), default="compare",
                   help="compare: lb vs nginx vs HAProxy vs direct (default); "
                        "log-cost: the lb with access log and metrics off/on")
    p.add_argument("--rounds", type=int, default=5, help="rounds over all targets (default 5)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per target per round (default 10)")
    p.add_argument("--connections", type=int, default=50, help="oha concurrent connections (default 50)")
    p.add_argument("--h2-streams", type=int, default=10,
                   help="api-h2: streams in flight per connection (h2load -m, default 10)")
    p.add_argument("--smoke", action="store_true",
                   help="1 round x 2 s into benches/out/ (CI); fails on any error or non-2xx")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="lb threads = nginx workers = HAProxy nbthread (default: CPUs)")
    p.add_argument("--access-log", choices=("on", "off"), default="on",
                   help="access log of the lb, nginx and HAProxy in compare mode (default on, as the lb ships)")
    p.add_argument("--origin-log", choices=("on", "off"), default="off",
                   help="per-request logs of the backends and frontend (default off: RUST_LOG=warn)")
    p.add_argument("--scenarios", help="comma-separated subset, e.g. api-keepalive,api-newconn")
    p.add_argument("--targets", help="comma-separated subset of targets, e.g. lb,nginx")
    p.add_argument("--site", default=str(REPO / "frontend" / "site"),
                   help="the static site to serve (default frontend/site)")
    p.add_argument("--lb-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra lb `server:` setting, e.g. upstream_keepalive_pool_size=256 (repeatable)")
    p.add_argument("--lb-variant", action="append", default=[], metavar="NAME:SPEC",
                   help="another lb next to the default one, e.g. lb-t1:threads=1 or "
                        "lb-mi:bin=/path/to/lb,env.VAR=1 (repeatable; see README)")
    p.add_argument("--pin-proxy", metavar="CPUS",
                   help="run every proxy target on these CPUs (e.g. 1) and everything else (backends, "
                        "frontend, the load tool) on the others, to measure without co-location; "
                        "default: no pinning, all share every CPU")
    p.add_argument("--out", help="results directory (default benches/results, or benches/out with --smoke)")
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--bin-dir", help="take lb/backend/frontend from this directory (implies --no-build)")
    p.add_argument("--note", action="append", default=[],
                   help="a line for the results header, e.g. where the binaries came from (repeatable)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration = 1, 2.0
    if args.rounds < 1 or not 0.5 <= args.duration <= 600 or not 1 <= args.connections <= 10000:
        p.error("need --rounds >= 1, 0.5 <= --duration <= 600, 1 <= --connections <= 10000")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if not 1 <= args.h2_streams <= 1000:
        p.error("--h2-streams must be within 1..1000")
    if any("=" not in o for o in args.lb_option):
        p.error("--lb-option takes KEY=VALUE")
    args.lb_option = dict(o.split("=", 1) for o in args.lb_option)
    if args.pin_proxy:
        try:
            args.pin_proxy = parse_cpus(args.pin_proxy)
        except ValueError as e:
            p.error(f"--pin-proxy: {e}")
    try:
        args.lb_variant = [parse_lb_variant(v) for v in args.lb_variant]
    except ValueError as e:
        p.error(str(e))
    taken = {"lb", "nginx", "haproxy", "direct", "frontend", "nginx-static"} | set(lb_variants()) | set(NGINX_VARIANTS)
    names = [v.name for v in args.lb_variant]
    if set(names) & taken or len(set(names)) != len(names):
        p.error("--lb-variant names must be new and distinct")
    return args


def parse_cpus(text):
    """'1' or '0,2-3' -> {cpus}; every one must exist, and at least one must be left over."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    have = os.sched_getaffinity(0)
    if not cpus or not cpus <= have or cpus == have:
        raise ValueError(f"{sorted(cpus)}: needs a non-empty proper subset of the CPUs {sorted(have)}")
    return cpus


def pin(stack, proxy_cpus):
    """Proxies on `proxy_cpus` (every thread of every process), everything else, this
    script's future children (the load tool) included, on the other CPUs."""
    others = os.sched_getaffinity(0) - proxy_cpus
    os.sched_setaffinity(0, others)
    proxies = {id(s) for n, t in stack.targets.items() if n not in ("direct", "frontend")
               for s in t.server.servers}
    for server in stack.servers:
        cpus = proxy_cpus if id(server) in proxies else others
        for pid in Group(server.name, [server]).pids():
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    os.sched_setaffinity(int(task.name), cpus)
                except OSError:
                    pass  # the thread ended
    log(f"pinned: proxies on CPUs {sorted(proxy_cpus)}, everything else on {sorted(others)}")


def pick_scenarios(args):
    scenarios = compare_scenarios() if args.mode == "compare" else log_cost_scenarios()
    for sc in scenarios:
        if "lb" in sc.targets:
            at = sc.targets.index("lb") + 1
            sc.targets[at:at] = [v.name for v in args.lb_variant]
            sc.ratios += [(v.name, ref) for v in args.lb_variant for ref in ("lb", "nginx")]
    if args.scenarios:
        keep = args.scenarios.split(",")
        unknown = set(keep) - {s.key for s in scenarios}
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(s.key for s in scenarios)}")
        scenarios = [s for s in scenarios if s.key in keep]
    elif args.smoke:
        scenarios = [s for s in scenarios if s.smoke]  # the new-connection TLS ones: not in CI's minute
    if args.targets:
        keep = args.targets.split(",")
        known = {t for s in scenarios for t in s.targets}
        if set(keep) - known:
            raise SystemExit(f"unknown target(s): {', '.join(sorted(set(keep) - known))}; "
                             f"known: {', '.join(sorted(known))}")
        for s in scenarios:
            s.targets = [t for t in s.targets if t in keep]
            s.ratios = [(a, b) for a, b in s.ratios if a in keep and b in keep]
        scenarios = [s for s in scenarios if s.targets]
    return scenarios


def check_h2load(args, scenarios):
    """h2load's path; without it the h2 scenario is dropped, or fails when asked for by name."""
    h2load = find_h2load()
    if h2load or not any(sc.tool == "h2load" for sc in scenarios):
        return h2load, scenarios
    if args.scenarios and any(sc.tool == "h2load" and sc.key in args.scenarios.split(",") for sc in scenarios):
        raise SystemExit("h2load is not installed (Debian: nghttp2-client); the h2 scenario needs it")
    log("h2load is not installed (Debian: nghttp2-client): skipping the h2 scenario")
    return None, [sc for sc in scenarios if sc.tool != "h2load"]


def tls_notes(stack, scenarios):
    """What the TLS scenarios ran on, for the results header."""
    if not stack.cert:
        return []
    notes = [f"TLS: one certificate for the three proxies: {stack.cert.description}; TLS 1.2 and 1.3 "
             "offered, h2 and http/1.1 by ALPN."]
    for name, seen in sorted(stack.tls_seen.items()):
        if "version" in seen:
            resumes = {True: "resumes an offered session", False: "does not resume",
                       None: "resumption not checked"}[seen["resumes"]]
            notes.append(f"TLS `{name}`: {seen['version']} {seen['cipher']} to a client without ALPN; "
                         f"{resumes} (checked once before the load)"
                         + ("; h2 by ALPN checked" if seen.get("h2") else ""))
    tools = {sc.key: sc.tool for sc in scenarios if sc.tls}
    if "handshake" in tools.values():
        notes.append("`api-tls-newconn`: benches/benchlib/handshake_load.py (Python ssl, "
                     f"{ssl.OPENSSL_VERSION}), a full handshake per request: it never offers a session.")
    if "api-tls-resumed" in tools:
        notes.append("`api-tls-resumed`: oha --disable-keepalive; oha's rustls client offers the last "
                     "session's ticket on every new connection, so these are resumed handshakes.")
    if "h2load" in tools.values():
        notes.append(f"`api-h2`: h2load -c {stack.connections} -m {stack.h2_streams} -t {os.cpu_count()} "
                     "(streams in flight: connections × m); latency from its per-request log.")
    return notes


def write_outputs(out_dir, mode, md, svg_text, raw):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{mode}.md").write_text(md)
    (out_dir / f"{mode}.svg").write_text(svg_text)
    (out_dir / f"{mode}.json").write_text(json.dumps(raw, indent=1, default=str))
    return [out_dir / f"{mode}.{ext}" for ext in ("md", "svg", "json")]


def main(argv):
    args = parse_args(argv)
    scenarios = pick_scenarios(args)
    h2load, scenarios = check_h2load(args, scenarios)
    out_dir = Path(args.out) if args.out else REPO / "benches" / ("out" if args.smoke else "results")
    command = "python3 benches/run.py" + (" " + shlex.join(argv) if argv else "")
    if os.environ.get("CARGO_TARGET_DIR"):
        command = f"CARGO_TARGET_DIR={shlex.quote(os.environ['CARGO_TARGET_DIR'])} {command}"
    n_runs = sum(len(sc.targets) for sc in scenarios)
    log(f"{len(scenarios)} scenarios, {n_runs} targets x {args.rounds} rounds x {args.duration:g} s "
        f"= about {n_runs * (args.rounds * args.duration + 1) / 60 + 1:.0f} min after the build")

    oha = find_or_install_oha(log)
    bins = build(args)
    tmp = Path(tempfile.mkdtemp(prefix="softy-bench-"))
    stack = Stack(tmp=tmp, h2load=h2load, h2_streams=args.h2_streams, connections=args.connections)
    failures = []
    try:
        stack.site = prepare_site(tmp, args.site)
        load_before = machine.loadavg()
        log(f"starting servers (temp dir {tmp}); load average {load_before}")
        start_stack(stack, bins, args, scenarios)
        if args.pin_proxy:
            pin(stack, args.pin_proxy)
        failures += preflight(stack, scenarios)
        if failures:
            raise StartError("targets answer wrongly:\n  " + "\n  ".join(failures))
        runs = run_rounds(stack, oha, scenarios, args)
        load_after = machine.loadavg()
    finally:
        stop_all(stack.servers)
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = summarise(runs)
    info = machine.describe(oha=oha, nginx=shutil.which("nginx") or "/usr/sbin/nginx",
                            haproxy=shutil.which("haproxy") or "/usr/sbin/haproxy", repo=REPO,
                            h2load=h2load, tls=stack.cert is not None)
    settings = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    rounds=args.rounds, duration=args.duration, connections=args.connections,
                    threads=args.threads, access_log=args.access_log, origin_log=args.origin_log, mode=args.mode)
    title = ("Softy Pinko benchmark: lb vs nginx vs HAProxy" if args.mode == "compare"
             else "Softy Pinko benchmark: cost of the lb's access log and metrics")
    notes = list(args.note)
    if args.bin_dir:
        notes.append(f"Binaries from `{args.bin_dir}` (--bin-dir), not built by this run.")
    if args.lb_option:
        notes.append(f"Extra lb `server:` settings: {args.lb_option}")
    if args.pin_proxy:
        notes.append(f"Pinned (--pin-proxy): every proxy on CPUs {sorted(args.pin_proxy)}, the backends, "
                     "frontend and load tool on the others.")
    notes += [f"lb variant `{v.name}`: settings {v.server}, binary {v.binary or 'the same'}, env {v.env}"
              for v in args.lb_variant]
    notes += tls_notes(stack, scenarios)
    md = report.markdown(title=title, summary=summary, scenarios=scenarios, machine=info,
                         settings=settings, command=command, load_before=load_before,
                         load_after=load_after, notes=notes)
    subtitle = (f"{info['nproc']} CPUs, {args.rounds} rounds × {args.duration:g} s, {args.connections} "
                f"connections, {args.threads} threads/workers; bars: median, whiskers: min–max")
    svg_text = chart.svg(summary, scenarios, title, subtitle)
    raw = dict(settings=settings, machine=info, command=command, load_before=load_before,
               load_after=load_after, runs=runs)
    paths = write_outputs(out_dir, args.mode, md, svg_text, raw)
    print(md)
    log("wrote " + ", ".join(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths))

    bad = [f"{r['scenario']}/{r['target']} round {r['round']}: {r['errors']} errors "
           f"{r['error_kinds'] or ''}, {r['non2xx']} non-2xx {r['statuses']}"
           for r in runs if r["errors"] or r["non2xx"] or not r["ok"]]
    if bad:
        log("FAILED: some runs had errors or non-2xx responses:\n  " + "\n  ".join(bad))
        return 1
    return 0


def _exit_on_signal(signum, _frame):
    log(f"got {signal.Signals(signum).name}: stopping the servers")
    raise SystemExit(128 + signum)  # unwinds through main's finally: servers stop


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        sys.exit(130)
    except (StartError, LoadError, tls.CertError, subprocess.CalledProcessError) as e:
        log(f"FAILED: {e}")
        sys.exit(1)
