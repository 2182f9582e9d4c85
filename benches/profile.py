#!/usr/bin/env python3
"""Where a proxy's CPU per request goes: perf counters and a perf profile under load.

    python3 benches/profile.py                       # the lb, keep-alive, 10 s per step
    python3 benches/profile.py --target nginx --scenario api-newconn
    python3 benches/profile.py --threads 1 --lb-option upstream_keepalive_pool_size=256
    python3 benches/profile.py --scenario api-tls-newconn --bin-dir target/x86_64-unknown-linux-gnu/release

Starts the same stack as run.py (built binaries from the workspace target dir,
or --bin-dir), then loads the target with the scenario's load tool (oha; h2load
for api-h2; handshake_load.py for api-tls-newconn) three times, each bounded:
1. plain, for rps and CPU per request from /proc (as run.py measures it);
2. under `perf stat` (software events: task clock, context switches,
   migrations, page faults, syscalls), reported per request;
3. under `perf record -e cpu-clock -g` (no hardware counters in this VM),
   reported as the top symbols and a split by component (kernel, pingora,
   tokio, hyper/h1, allocator, ...).
Needs `perf` (Debian linux-perf). Everything it starts is stopped on exit.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from benchlib import tls  # noqa: E402
from benchlib.load import (LoadError, find_h2load, find_or_install_oha, h2load_argv, oha_argv,  # noqa: E402
                           parse_h2load, parse_summary)
from benchlib.procs import StartError, stop_all  # noqa: E402

# Components by symbol (or DSO) pattern, first match wins.
COMPONENTS = (
    ("kernel", re.compile(r"\[k\]")),
    ("TLS (rustls, ring, OpenSSL)", re.compile(
        r"rustls|\bring::|ring_core|aws_lc|OPENSSL|ossl_|EVP_|SSL_|ssl3_|tls1[23]_|ecp_nistz256|p256|x25519|"
        r"fiat_|sha256|sha512|\baes|_aes|gcm|ghash|chacha|BN_|bn_mul|bn_sqr|ECDSA", re.I)),
    ("allocator", re.compile(r"malloc|free|realloc|calloc|_int_|tcache|mi_|je_|sdallocx|__rust_alloc|__rust_dealloc", re.I)),
    ("pingora", re.compile(r"pingora")),
    ("tokio", re.compile(r"tokio")),
    ("http parse (httparse/http)", re.compile(r"httparse|\bhttp::")),
    ("lb (our code)", re.compile(r"\blb::")),
    ("tracing/logging", re.compile(r"tracing|log::|serde_json|fmt::")),
    ("libc/std", re.compile(r"libc|std::|core::|memcpy|memmove|memset|__GI|pthread")),
)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="lb", help="lb, nginx, haproxy, direct, frontend, nginx-static")
    p.add_argument("--scenario", default="api-keepalive", help="a run.py scenario (default api-keepalive)")
    p.add_argument("--seconds", type=float, default=10.0, help="per step (default 10)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--access-log", choices=("on", "off"), default="on")
    p.add_argument("--origin-log", choices=("on", "off"), default="off")
    p.add_argument("--lb-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--bin-dir")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--site", default=str(run.REPO / "frontend" / "site"))
    p.add_argument("--top", type=int, default=25, help="symbols to list (default 25)")
    p.add_argument("--no-record", action="store_true", help="skip perf record")
    p.add_argument("--call-graph", default="fp", metavar="MODE",
                   help="perf record's --call-graph: fp (default) or dwarf (callers through Rust "
                        "frames without frame pointers; large data, use with --seconds 2)")
    p.add_argument("--stat-events", default="", metavar="E1,E2",
                   help="more perf stat events, reported per request, e.g. "
                        "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_accept4")
    p.add_argument("--event", default="cpu-clock",
                   help="perf record's event (default cpu-clock); e.g. sched:sched_switch for where "
                        "the proxy's threads block or are preempted, by caller")
    p.add_argument("--keep-perf-data", metavar="PATH",
                   help="copy perf record's data here, for `perf report -i PATH` by caller")
    args = p.parse_args(argv)
    if not 1 <= args.seconds <= 120:
        p.error("--seconds must be within 1..120")
    args.lb_option = dict(o.split("=", 1) for o in args.lb_option)
    args.lb_variant = []
    return args


def perf_stat(pids, seconds, extra=""):
    events = "task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter"
    if extra:
        events += "," + extra
    done = subprocess.run(
        ["perf", "stat", "-x", ",", "-e", events, "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
        capture_output=True, text=True, timeout=seconds + 30,
    )
    counts = {}
    for line in done.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
            counts[parts[2]] = float(parts[0])
    return counts


def switches(pids):
    """{thread name: [voluntary, involuntary]} context switches so far, summed over the
    threads of `pids` (/proc/PID/task/TID/status). Voluntary: the thread blocked (epoll_wait,
    a lock); involuntary: the scheduler took its CPU (preempted, e.g. by a task it woke)."""
    out = defaultdict(lambda: [0, 0])
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                status = (task / "status").read_text()
            except OSError:
                continue  # the thread ended
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            name = re.sub(r"[-_ ]?\d+$", "", fields.get("Name", "?").strip())  # one row per pool
            out[name][0] += int(fields.get("voluntary_ctxt_switches", 0))
            out[name][1] += int(fields.get("nonvoluntary_ctxt_switches", 0))
    return out


def perf_record(pids, seconds, out, call_graph="fp", event="cpu-clock"):
    # A tracepoint (e.g. sched:sched_switch, where threads block) is recorded at every hit.
    rate = ["-c", "1"] if ":" in event else ["-F", "1999"]
    subprocess.run(
        ["perf", "record", "-e", event, *rate, "--call-graph", call_graph, "-o", out,
         "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
        capture_output=True, timeout=seconds + 60, check=True,
    )
    report = subprocess.run(
        ["perf", "report", "-i", out, "--stdio", "--no-children", "-g", "none",
         "--sort", "sym", "--percent-limit", "0.01"],
        capture_output=True, text=True, timeout=300,
    ).stdout
    rows = []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2).strip()))
    return rows


def split(rows):
    shares = defaultdict(float)
    for pct, sym in rows:
        name = next((n for n, rx in COMPONENTS if rx.search(sym)), "other")
        shares[name] += pct
    return sorted(shares.items(), key=lambda kv: -kv[1])


def background_load(stack, oha, scenario, target, seconds, connections):
    """(argv, parse(stdout) -> summary) of the scenario's load tool, to run beside perf."""
    url = (target.tls_base if scenario.tls else target.base) + scenario.path
    if scenario.tool == "handshake":
        script = Path(__file__).resolve().parent / "benchlib" / "handshake_load.py"
        return ([sys.executable, str(script), "--url", url, "-c", str(connections), "-z", f"{seconds:g}"],
                json.loads)
    if scenario.tool == "h2load":
        log_file = stack.tmp / "h2load-profile.log"
        argv = h2load_argv(stack.h2load, url, seconds=seconds, connections=connections,
                           streams=stack.h2_streams, threads=os.cpu_count(), log_file=log_file)
        return argv, lambda out: parse_h2load(out, log_file.read_text().splitlines())
    argv = oha_argv(oha, url, seconds, connections, scenario.keepalive,
                    stack.cert.ca if scenario.tls else None)
    return argv, lambda out: parse_summary(json.loads(out))


def main(argv):
    args = parse_args(argv)
    scenario = next((s for s in run.compare_scenarios() if s.key == args.scenario), None)
    if scenario is None:
        raise SystemExit(f"unknown scenario {args.scenario}")
    scenario.targets = [args.target]
    oha = find_or_install_oha(run.log)
    bins = run.build(args)
    tmp = Path(tempfile.mkdtemp(prefix="softy-profile-"))
    stack = run.Stack(tmp=tmp, h2load=find_h2load(), connections=args.connections)
    if scenario.tool == "h2load" and not stack.h2load:
        raise SystemExit("h2load is not installed (Debian: nghttp2-client)")
    try:
        stack.site = run.prepare_site(tmp, args.site)
        run.start_stack(stack, bins, args, [scenario])
        target = stack.targets[args.target]
        run.load(stack, oha, scenario, target, 1, args.connections)  # warm-up

        before = switches(target.server.pids())
        r = run.measure(stack, oha, scenario, target, args.seconds, args.connections)
        after = switches(target.server.pids())
        print(f"# {args.target} {scenario.key}, {args.threads} threads, {args.connections} connections "
              f"{args.lb_option or ''}")
        print(f"plain: {r['rps']:,.0f} rps, p99 {r['p99']:.2f} ms, CPU {r['cpu_us']:.1f} µs/req, "
              f"upstream CPU {r['up_cpu_us'] or 0:.1f} µs/req")
        served = r["ok"] or 1
        print("context switches per request, by thread (voluntary: blocked; involuntary: preempted):")
        for name in sorted(after, key=lambda n: -sum(after[n])):
            vol, invol = (a - b for a, b in zip(after[name], before.get(name, [0, 0])))
            if vol or invol:
                print(f"  {name:<24} voluntary {vol / served:.3f}  involuntary {invol / served:.3f}")

        pids = target.server.pids()

        def load_during(fn):
            """Run fn() (a perf command of args.seconds) while the load tool loads the target a bit longer."""
            argv, parse = background_load(stack, oha, scenario, target, args.seconds + 2, args.connections)
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                value = fn()
                out, _ = proc.communicate(timeout=args.seconds + 60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            return value, parse(out)

        counts, res = load_during(lambda: perf_stat(pids, args.seconds, args.stat_events))
        reqs = res["rps"] * args.seconds  # requests inside the perf window, approximately
        per_req = {k: v / reqs for k, v in counts.items()}
        print(f"perf stat ({res['rps']:,.0f} rps): per request: "
              f"task-clock {per_req.get('task-clock', 0) * 1000:.1f} µs, "
              f"syscalls {per_req.get('raw_syscalls:sys_enter', 0):.2f}, "
              f"context switches {per_req.get('context-switches', 0):.2f}, "
              f"migrations {per_req.get('cpu-migrations', 0):.3f}, "
              f"page faults {per_req.get('page-faults', 0):.3f}")
        for event in filter(None, args.stat_events.split(",")):
            print(f"  {event}: {per_req.get(event, 0):.3f} per request")

        if not args.no_record:
            rows, res = load_during(lambda: perf_record(pids, args.seconds, str(tmp / "perf.data"), args.call_graph,
                                                              args.event))
            print(f"perf record ({res['rps']:,.0f} rps under the profiler): share of samples by component")
            for name, pct in split(rows):
                print(f"  {pct:5.1f}%  {name}")
            print(f"top {args.top} symbols:")
            for pct, sym in rows[: args.top]:
                print(f"  {pct:5.1f}%  {sym[:150]}")
            if args.keep_perf_data:
                shutil.copy(tmp / "perf.data", args.keep_perf_data)
                print(f"perf data kept in {args.keep_perf_data}")
    finally:
        stop_all(stack.servers)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, run._exit_on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
    except (StartError, LoadError, tls.CertError) as e:
        run.log(f"FAILED: {e}")
        sys.exit(1)
