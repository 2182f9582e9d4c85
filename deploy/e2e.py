#!/usr/bin/env python3
"""End-to-end tests of the Softy Pinko stack in real Docker.

Runs the real compose.yaml (images from deploy/build.sh) under its own compose
project name and a free host port, and checks what a user of the stack sees:
it comes up healthy, round robin spreads requests, scaling up and down and a
crashed replica lose no request, a reload applies live, a replica cut off the
network under load (with `timeouts.per_try`) costs no request and no long wait, a replica
answering 500s while its /ready passes is ejected by passive outlier detection (`failures: 5xx`) with a bounded
number of client-visible errors, a rate-limited route
answers 429 beyond its rate, the admin API wants its token from other containers,
and `down` is clean.

Every load it sends is bounded in request count and in time, and goes to
127.0.0.1 only. The project is torn down even when a scenario fails.

Standard library only, so it runs on a fresh machine with no pip install.
Usage: deploy/e2e.py [scenario ...]   (default: all, in order)
Exit status: 0 when every scenario passed; the last line reads
"N passed, N failed".
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = f"softy-e2e-{os.getpid()}"
# The images' tag, as compose.yaml reads it: another tag leaves the :dev images alone.
TAG = os.environ.get("SOFTY_TAG", "dev")


def log(msg):
    print(f"e2e: {msg}", flush=True)


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
TLS_PORT = next(p for p in iter(free_port, None) if p != PORT)  # the lb's HTTPS port (8443 in the container), so :8443 stays free


def compose(*args, timeout=300, check_rc=True, env_extra=None):
    env = dict(os.environ, SOFTY_PORT=str(PORT), SOFTY_TLS_PORT=str(TLS_PORT))
    if env_extra:
        env.update(env_extra)
    cmd = ["docker", "compose", "-p", PROJECT, *COMPOSE_FILES, *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check_rc and res.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


COMPOSE_FILES = ["-f", "compose.yaml"]


def docker(*args, timeout=60):
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise Failed(f"docker {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res.stdout


def get(path, timeout=5.0, headers=None):
    """One GET on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def whoami():
    status, _, body = get("/api/whoami")
    check(status == 200, f"/api/whoami answered {status}: {body[:200]!r}")
    return json.loads(body)["replica"]


class Load:
    """A steady, bounded load on GET /api/hello over keep-alive connections.

    `workers` connections each send at most `rate` requests a second, until
    stop() is called, `max_requests` have been sent, or `max_seconds` have
    passed, whichever comes first. Every answer other than a 200 with the
    exact body counts as a failure, and so does every connection error.
    """

    def __init__(self, workers=8, rate=25, max_requests=20000, max_seconds=120, path="/api/hello"):
        self.workers, self.rate, self.path = workers, rate, path
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.ok = 0
        self.failures = []
        self.failed_at = []  # seconds since the start, one per failure
        self.slowest = 0.0  # seconds, the longest request (answered or failed)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def __enter__(self):
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
        self.elapsed = time.monotonic() - self.started

    def _take(self):
        with self.lock:
            if self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def _run(self):
        conn = None
        interval = 1.0 / self.rate
        deadline = self.started + self.max_seconds
        while not self.stopping.is_set() and time.monotonic() < deadline and self._take():
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200 and body == b"Hello, World!":
                    with self.lock:
                        self.ok += 1
                else:
                    self._fail(f"{resp.status} {body[:120]!r}")
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self._fail(f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
            took = time.monotonic() - t0
            with self.lock:
                self.slowest = max(self.slowest, took)
            pause = interval - (time.monotonic() - t0)
            if pause > 0:
                self.stopping.wait(pause)
        if conn is not None:
            conn.close()

    def _fail(self, msg):
        with self.lock:
            self.failures.append(msg)
            self.failed_at.append(time.monotonic() - self.started)

    def report(self, name):
        total = self.ok + len(self.failures)
        line = (f"{name}: {total} requests over {self.workers} connections in {self.elapsed:.1f}s, "
                f"{len(self.failures)} failed")
        RESULTS.append(line)
        log(line)
        check(total > 0, f"{name}: the load sent nothing")
        check(not self.failures, f"{name}: {len(self.failures)} failed requests, e.g. {self.failures[:5]}")


RESULTS = []


def wait_for(desc, fn, timeout, interval=0.2):
    """Poll fn() until it returns a truthy value; returns (value, seconds)."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            last = fn()
            if last:
                return last, time.monotonic() - t0
        except (OSError, http.client.HTTPException, Failed, ValueError) as e:
            last = e
        time.sleep(interval)
    raise Failed(f"timed out after {timeout}s waiting for {desc} (last: {last!r})")


def replicas_seen(n_requests):
    return Counter(whoami() for _ in range(n_requests))


def backend_containers():
    out = compose("ps", "-q", "backend").stdout.split()
    return out


# --------------------------------------------------------------------------
# Scenarios. Each is a function; they run in this order and share the stack.

def compose_up():
    """`docker compose up --wait` for the whole stack; the seconds until every service was
    healthy."""
    t0 = time.monotonic()
    compose("up", "-d", "--wait", "--wait-timeout", "120", timeout=180)
    return time.monotonic() - t0


def dynamic_content(url, *flags):
    """The text of the page's #dynamic-content in headless Chromium once its scripts ran
    (the AJAX call fills it in); `flags` go to Chromium as they are."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    check(chromium, "chromium is not installed (deploy/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             *flags, f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
             url],
            capture_output=True, text=True, timeout=120)
    m = re.search(r'<h1[^>]*id="dynamic-content"[^>]*>(.*?)</h1>', res.stdout, re.S)
    check(m, f"the page has no #dynamic-content: {res.stdout[:500]} {res.stderr[-500:]}")
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def scenario_up():
    took = compose_up()
    RESULTS.append(f"up: healthy in {took:.1f}s (docker compose up --wait)")
    log(f"stack healthy in {took:.1f}s on port {PORT}")
    check_hello_and_page()


def check_hello_and_page():
    """What a user sees first: the API's answer, and the page filled by it in a real browser."""
    status, headers, body = get("/api/hello")
    check(status == 200 and body == b"Hello, World!", f"/api/hello: {status} {body!r}")
    check(headers.get("content-type", "").startswith("text/plain"), f"/api/hello type: {headers}")
    status, headers, body = get("/")
    check(status == 200 and b'id="dynamic-content"' in body, f"/: {status} {body[:200]!r}")
    check(headers.get("content-type", "").startswith("text/html"), f"/ type: {headers}")

    text = dynamic_content(f"http://127.0.0.1:{PORT}/")
    check(text == "Hello, World!", f"#dynamic-content reads {text!r}, not 'Hello, World!'")
    log("chromium shows Hello, World! in #dynamic-content")


def scenario_round_robin():
    seen = replicas_seen(30)
    log(f"30 x /api/whoami: {dict(seen)}")
    check(len(seen) == 3, f"expected 3 replicas, saw {dict(seen)}")
    check(all(9 <= n <= 11 for n in seen.values()), f"not 10/10/10 (+-1): {dict(seen)}")


def scenario_scale_up():
    before = set(replicas_seen(12))
    with Load() as load:
        t0 = time.monotonic()
        compose("up", "-d", "--no-recreate", "--scale", "backend=5", timeout=120)
        started = time.monotonic() - t0
        _, took = wait_for("5 replicas in rotation",
                           lambda: len(replicas_seen(10)) == 5, timeout=30, interval=0.1)
        # Keep the load on a little longer so traffic to new replicas is exercised.
        time.sleep(2)
    load.report("scale up 3->5")
    RESULTS.append(f"scale up: containers started in {started:.1f}s, in rotation {took:.1f}s later")
    log(f"compose started the new replicas in {started:.1f}s; both in rotation {took:.1f}s later "
        f"(had {sorted(before)})")
    check(took <= 5.0, f"new replicas took {took:.1f}s (> 5 s) to enter rotation")


def scenario_scale_down():
    with Load() as load:
        compose("up", "-d", "--no-recreate", "--scale", "backend=2", timeout=120)
        wait_for("only 2 replicas in rotation", lambda: len(replicas_seen(12)) == 2, timeout=30)
    load.report("scale down 5->2")


def scenario_crash():
    compose("up", "-d", "--no-recreate", "--scale", "backend=3", "--wait", timeout=120)
    wait_for("3 replicas in rotation", lambda: len(replicas_seen(12)) == 3, timeout=30)
    victim = backend_containers()[0]
    victim_host = docker("inspect", "-f", "{{.Config.Hostname}}", victim).strip()
    with Load() as load:
        time.sleep(1)
        docker("kill", "-s", "KILL", victim)
        # The dead replica must leave rotation: 12 answers in a row without it.
        _, took = wait_for("the killed replica to leave rotation",
                           lambda: victim_host not in replicas_seen(12), timeout=20)
        time.sleep(2)
    load.report("crash (SIGKILL one of 3)")
    log(f"killed replica {victim_host} out of rotation within {took:.1f}s")


def lb_ip():
    """The lb container's address on the stack's network (its admin port is not published)."""
    cid = compose("ps", "-q", "lb").stdout.split()
    check(len(cid) == 1, f"expected one lb container, got {cid}")
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                  cid[0]).split()[0]


def admin_token():
    """The admin API's bearer token, as the README says to get it: the lb made it in its
    lb-data volume on first start (deploy/lb.yaml, admin_auth)."""
    token = compose("exec", "-T", "lb", "/lb", "admin-token").stdout.strip()
    check(len(token) >= 16, f"lb admin-token printed {token!r}")
    return token


def admin_auth():
    """(the lb's address, the admin token): pass it to admin() and metric() when polling, so
    each poll is one HTTP request instead of a `docker inspect` and a `docker compose exec`."""
    return lb_ip(), admin_token()


def admin(path, auth=None):
    """GET an admin endpoint with the admin token; its body (a 200 is required)."""
    ip, token = auth or admin_auth()
    conn = http.client.HTTPConnection(ip, 9901, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read().decode()
        check(resp.status == 200, f"admin {path}: {resp.status} {body[:200]}")
        return body
    finally:
        conn.close()


def metric(name, labels="", auth=None, default=None):
    """One sample of the lb's /metrics, e.g. metric("lb_config_reloads_total", 'result="failure"').
    A missing sample is an error, or `default` when given (a labelled counter that has not
    counted yet may have no sample)."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in admin("/metrics", auth).splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    if default is not None:
        return default
    raise Failed(f"no sample {want} in /metrics")


def scenario_restart():
    """`docker compose restart backend` under load: Docker stops every replica at once, so
    for a few seconds no backend is healthy. The lb holds those requests until one is again
    (upstreams.api.queue_timeout, 10 s by default) instead of answering 503: 0 failed."""
    compose("up", "-d", "--no-recreate", "--scale", "backend=3", "--wait", timeout=120)
    wait_for("3 replicas in rotation", lambda: len(replicas_seen(12)) == 3, timeout=30)
    with Load() as load:
        time.sleep(1)
        t0 = time.monotonic()
        compose("restart", "backend", timeout=120)
        took = time.monotonic() - t0
        wait_for("3 replicas in rotation again", lambda: len(replicas_seen(12)) == 3, timeout=30)
        time.sleep(1)
    load.report("restart every backend (docker compose restart backend)")
    # The hold was what carried it: requests did wait for a replica to come back.
    served = metric("lb_queue_total", 'result="served",upstream="api"')
    check(served > 0, f"no request was held (lb_queue_total served={served})")
    RESULTS.append(f"restart: {served:.0f} requests held until a replica was healthy again")
    log(f"docker compose restart backend took {took:.1f}s")


def with_e2e_route(src):
    """The lb config src plus a route that sends /e2e/ to the api pool with its prefix
    stripped, so /e2e/api/hello answers only once the new config is live."""
    edited = src.replace("routes:\n", "routes:\n  - { prefix: /e2e/, upstream: api, strip_prefix: true }\n", 1)
    check(edited != src, "could not find `routes:` in the lb config")
    return edited


@contextlib.contextmanager
def mounted_config(text):
    """The lb recreated with a copy of its config holding `text`, mounted from a temp dir;
    yields the file, for rewrite_config(). The mount stays until the next recreate."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "lb.yaml"
        cfg.write_text(text)
        cfg.chmod(0o644)
        os.chmod(tmp, 0o755)
        override = Path(tmp) / "compose.override.yaml"
        # Compose merges volumes by their target: this one replaces the config's mount
        # and keeps the others (the certificate, the lb's state).
        override.write_text(
            "services:\n  lb:\n    volumes:\n"
            f"      - {cfg}:/etc/lb/lb.yaml:ro\n")
        global COMPOSE_FILES
        saved = COMPOSE_FILES
        COMPOSE_FILES = saved + ["-f", str(override)]
        try:
            compose("up", "-d", "--wait", "lb", timeout=120)
            yield cfg
        finally:
            COMPOSE_FILES = saved


def rewrite_config(cfg, text):
    """Rewrite the mounted config in place (a bind mount follows the inode, not the name),
    then SIGHUP the lb to reload it."""
    with open(cfg, "r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()
    compose("kill", "-s", "HUP", "lb")


def scenario_reload():
    """Edit a copy of the mounted config, SIGHUP lb: the change applies live."""
    src = (ROOT / "deploy" / "lb.yaml").read_text()
    with mounted_config(src) as cfg:
        status, _, _ = get("/e2e/api/hello")
        check(status == 404, f"/e2e/ answered {status} before the reload")
        with Load() as load:
            time.sleep(1)
            rewrite_config(cfg, with_e2e_route(src))
            _, took = wait_for("the reloaded route",
                               lambda: get("/e2e/api/hello")[2] == b"Hello, World!", timeout=10)
            time.sleep(1)
        load.report("reload (SIGHUP, new route)")
        log(f"reload applied within {took:.1f}s")


def scenario_blackhole():
    """One backend replica cut off the network under load (`docker network disconnect`: its
    packets are dropped, nobody sends a reset), with the api pool's `timeouts.per_try` at
    1 s: requests already sent to it, or sent before the health check takes it out, go to
    another replica after one per-try wait. No request fails, and the slowest stays under
    2 x per_try (without per_try it waited close to the 30 s read timeout)."""
    per_try = 1.0
    compose("up", "-d", "--no-recreate", "--scale", "backend=3", "--wait", timeout=120)
    src = (ROOT / "deploy" / "lb.yaml").read_text()
    old = "    retries: 2\n    timeouts: { connect: 1s, read: 30s, write: 30s, idle: 15s }\n"
    check(src.count(old) == 2, "could not find the api pool's timeouts in the lb config")
    edited = src.replace(old, "    retries: 2\n    timeouts: { connect: 1s, read: 30s, write: 30s, idle: 15s, "
                         f"per_try: {int(per_try * 1000)}ms }}\n", 1)
    with mounted_config(edited):
        wait_for("3 replicas in rotation", lambda: len(replicas_seen(12)) == 3, timeout=30)
        victim = backend_containers()[0]
        victim_host = docker("inspect", "-f", "{{.Config.Hostname}}", victim).strip()
        networks = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                          victim).split()
        check(len(networks) == 1, f"expected the replica on one network, got {networks}")
        before = metric("lb_retries_total", 'reason="per_try_timeout",upstream="api"')
        # 8 keep-alive connections at 25 requests/s each: every connection has requests in
        # flight to the victim when it is cut off.
        with Load(workers=8, rate=25, max_requests=3000, max_seconds=30) as load:
            time.sleep(2)
            docker("network", "disconnect", networks[0], victim)
            _, took = wait_for("the cut-off replica to leave rotation",
                               lambda: victim_host not in replicas_seen(12), timeout=20)
            time.sleep(3)
        retried = metric("lb_retries_total", 'reason="per_try_timeout",upstream="api"') - before
        # Put the replica back as compose would have it: a new container on the network.
        docker("rm", "-f", victim)
        compose("up", "-d", "--no-recreate", "--scale", "backend=3", "--wait", timeout=120)
    load.report(f"blackhole (one of 3 cut off, per_try {per_try:.0f}s)")
    RESULTS.append(f"blackhole: slowest request {load.slowest:.2f}s (per_try {per_try:.0f}s), "
                   f"{retried:.0f} tries given up after per_try, out of rotation within {took:.1f}s")
    log(f"blackhole: slowest {load.slowest:.2f}s, {retried:.0f} per-try retries, {victim_host} out in {took:.1f}s")
    check(load.slowest < 2 * per_try, f"slowest request {load.slowest:.2f}s >= 2 x per_try")


# The api pool's passive outlier ejection as scenario_outlier sets it (deploy/lb.yaml
# relies on the same numbers): ejected after this many 5xx or connection failures in a row
# within the window, for base_ejection the first time. `failures: 5xx` because the faulty
# replica answers 500: by default only gateway errors (502/503/504) count, so that clients
# who can provoke a 500 cannot eject healthy replicas.
OUTLIER = {"consecutive_failures": 5, "window": 10, "base_ejection": 30, "max_ejection": 300,
           "max_ejected_percent": 50, "failures": "5xx"}


def with_outlier(src):
    """The lb config src with the api pool's `outlier` block written out (OUTLIER), so the
    scenario documents what it relies on."""
    anchor = '    discovery: { dns: "backend:5252", interval: 2s }\n'
    check(src.count(anchor) == 1, "could not find the api pool's discovery in the lb config")
    o = OUTLIER
    block = (f"    outlier: {{ consecutive_failures: {o['consecutive_failures']}, window: {o['window']}s, "
             f"base_ejection: {o['base_ejection']}s, max_ejection: {o['max_ejection']}s, "
             f"max_ejected_percent: {o['max_ejected_percent']}, failures: {o['failures']} }}\n")
    return src.replace(anchor, anchor + block, 1)


def served_5xx(container):
    """The /api/* requests a backend container answered with a 5xx, from its JSON access log."""
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    n = 0
    for line in (logs.stdout + logs.stderr).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("target") == "access" and str(entry.get("path", "")).startswith("/api/") \
                and int(entry.get("status", 0)) >= 500:
            n += 1
    return n


def backend_status(auth, address):
    """The api pool's /status entry for the backend at `address` (ip:port), or None."""
    backends = json.loads(admin("/status", auth))["upstreams"]["api"]["backends"]
    return next((b for b in backends if b["address"] == address), None)


def scenario_outlier():
    """A fourth replica that answers 500 to every /api/* request (BACKEND_FAULT_STATUS=500)
    while its /ready passes, so the active health check keeps it: under load (8 keep-alive
    connections at 25 requests/s), passive outlier ejection must take it out within the
    window, clients see at most consecutive_failures + workers 500s (the failures that eject
    it, plus at most one request in flight per connection), and no request reaches it
    afterwards. The replica is a plain `docker run` of the backend image, hardened and
    configured as compose.yaml runs the others, on the project's network under the alias
    `backend`, so the lb's DNS discovery finds it; it is removed at the end, whatever happens."""
    workers, rate, max_seconds = 8, 25, 45
    failures, window = OUTLIER["consecutive_failures"], OUTLIER["window"]
    bound = failures + workers
    after = 5.0  # seconds of load after the ejection; far below base_ejection, so it stays out
    check(after + 1 < OUTLIER["base_ejection"], "the load after ejection must end before it returns")
    compose("up", "-d", "--no-recreate", "--scale", "backend=3", "--wait", timeout=120)
    name = f"{PROJECT}-backend-faulty"
    with mounted_config(with_outlier((ROOT / "deploy" / "lb.yaml").read_text())):
        wait_for("3 replicas in rotation", lambda: len(replicas_seen(12)) == 3, timeout=30)
        peer = backend_containers()[0]
        networks = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                          peer).split()
        check(len(networks) == 1, f"expected the replicas on one network, got {networks}")
        image = docker("inspect", "-f", "{{.Config.Image}}", peer).strip()
        auth = admin_auth()
        configured = json.loads(admin("/status", auth))["upstreams"]["api"].get("outlier") or {}
        check(configured.get("consecutive_failures") == failures,
              f"/status shows the api pool's outlier settings as {configured}, not the mounted config's")
        labels = 'upstream="api"'
        before = metric("lb_outlier_ejections_total", labels, auth, default=0.0)
        try:
            with Load(workers=workers, rate=rate, max_requests=workers * rate * max_seconds,
                      max_seconds=max_seconds) as load:
                time.sleep(1)
                started = time.monotonic()
                # As compose.yaml runs a replica (x-hardening, its environment), plus the fault.
                docker("run", "-d", "--name", name, "--hostname", "backend-faulty",
                       "--network", networks[0], "--network-alias", "backend",
                       "--user", "10001:10001", "--read-only", "--cap-drop", "ALL",
                       "--security-opt", "no-new-privileges:true",
                       "-e", "LOG_FORMAT=json", "-e", "BACKEND_LISTEN=0.0.0.0:5252", "-e", "BACKEND_DRAIN=4s",
                       "-e", "BACKEND_FAULT_STATUS=500", image)
                ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                            name).split()[0]
                address = f"{ip}:5252"
                wait_for(
                    "the faulty replica's ejection (lb_outlier_ejections_total)",
                    lambda: metric("lb_outlier_ejections_total", labels, auth, default=0.0) >= before + 1,
                    timeout=window + 15, interval=0.05)
                ejected_at = time.monotonic() - load.started
                since_start = time.monotonic() - started
                # The requests in flight to it when it was ejected land within a moment.
                time.sleep(1)
                errors_then = len(load.failures)
                state = backend_status(auth, address)
                check(state is not None, f"/status does not list the faulty replica {address}")
                check(state.get("ejected") is True, f"/status shows the faulty replica as {state}")
                gauge = metric("lb_outlier_ejected", labels, auth)
                check(gauge == 1, f"lb_outlier_ejected{{{labels}}} is {gauge}, not 1")
                time.sleep(after)
                still = time.monotonic() - load.started < max_seconds - 1
                errors_later = len(load.failures)
                state_later = backend_status(auth, address) or {}
            served = served_5xx(name)
        finally:
            res = subprocess.run(["docker", "rm", "-f", name], capture_output=True, text=True, timeout=60)
            if res.returncode != 0 and "No such container" not in res.stderr:
                log(f"could not remove {name}: {res.stderr.strip()}")
        wait_for("3 replicas in rotation again", lambda: len(replicas_seen(12)) == 3, timeout=30)

    total = load.ok + len(load.failures)
    first = load.failed_at[0] if load.failed_at else None
    since_first = f"{ejected_at - first:.2f}s after the first 500, " if first is not None else ""
    line = (f"outlier: {len(load.failures)} of {total} requests answered 500 over {workers} connections "
            f"in {load.elapsed:.1f}s (bound {bound} = consecutive_failures {failures} + {workers}), "
            f"the faulty replica answered {served} 5xx; ejected {since_first}{since_start:.1f}s after "
            f"`docker run` started it; {errors_later - errors_then} more 500s and "
            f"{(state_later.get('requests') or 0) - (state.get('requests') or 0)} tries sent to it in the "
            f"{after:.0f}s after")
    RESULTS.append(line)
    log(line)
    check(still, "the load ended before the after-ejection window did")
    check(served >= 1, "the faulty replica answered no request: the fault was never exercised")
    not_500 = [f for f in load.failures if not (f.startswith("500 ") and "internal server error" in f)]
    check(not not_500, f"{len(not_500)} failures other than the replica's 500, e.g. {not_500[:5]}")
    check(len(load.failures) <= bound, f"{len(load.failures)} client-visible 500s, more than {bound}")
    check(served <= bound, f"the faulty replica answered {served} requests with 500, more than {bound}")
    check(first is None or ejected_at - first <= window,
          f"ejected {ejected_at - first:.1f}s after the first 500, past the {window}s window")
    check(errors_later == errors_then, f"{errors_later - errors_then} more 500s after the ejection")
    check(state_later.get("ejected") is True and state_later.get("requests") == state.get("requests"),
          f"requests reached the ejected replica: {state} then {state_later}")


def scenario_rate_limit():
    """A reload gives a route `rate_limit: {requests: 5, per: 1s}`; a client sending 20 a
    second for 4 s gets about 5 a second through, the rest answered 429 by the lb with its
    JSON, Retry-After and RateLimit-* headers, while an unlimited route serves every request."""
    limit, per_second, seconds = 5, 20, 4
    src = (ROOT / "deploy" / "lb.yaml").read_text()
    limited = src.replace("routes:\n", "routes:\n  - { prefix: /e2e-limited/, upstream: api, strip_prefix: true, "
                          f"rate_limit: {{ requests: {limit}, per: 1s }} }}\n", 1)
    check(limited != src, "could not find `routes:` in the lb config")
    path = "/e2e-limited/api/hello"
    with mounted_config(src) as cfg:
        rewrite_config(cfg, limited)
        wait_for("the limited route", lambda: get(path)[0] in (200, 429), timeout=10)
        time.sleep(2.5)  # two windows: the probe's requests no longer count
        answers = Counter()
        bad = []
        t0 = time.monotonic()
        for i in range(per_second * seconds):
            time.sleep(max(0.0, t0 + i / per_second - time.monotonic()))
            status, headers, body = get(path)
            answers[status] += 1
            if headers.get("ratelimit-limit") != str(limit):
                bad.append(f"{status} with RateLimit-Limit {headers.get('ratelimit-limit')!r}")
            if status == 429:
                doc = json.loads(body)
                if (doc.get("error"), doc.get("status")) != ("too many requests", 429) or not doc.get("request_id") \
                        or int(headers.get("retry-after", "0")) < 1 or headers.get("ratelimit-remaining") != "0" \
                        or "server" in headers:
                    bad.append(f"429 {headers} {body[:120]!r}")
            elif status != 200 or body != b"Hello, World!":
                bad.append(f"{status} {body[:120]!r}")
        took = time.monotonic() - t0
        check(not bad, f"{len(bad)} wrong answers, e.g. {bad[:3]}")
        allowed = answers[200]
        # At most `limit` per window of 1 s, and a client that keeps sending gets its
        # quota in every window: between limit × (seconds − 1) and limit × (seconds + 1).
        check(limit * (seconds - 1) <= allowed <= limit * (seconds + 1),
              f"{allowed} of {sum(answers.values())} let through in {took:.1f}s at limit {limit}/s: {dict(answers)}")
        refused = metric("lb_rate_limited_total", 'route="/e2e-limited/"')
        check(refused == answers[429], f"lb_rate_limited_total {refused} != {answers[429]} answers 429")
        unlimited = Counter(get("/api/hello")[0] for _ in range(2 * limit))
        check(unlimited == Counter({200: 2 * limit}), f"the unlimited route answered {dict(unlimited)}")
    RESULTS.append(f"rate limit: {allowed} of {sum(answers.values())} requests let through in {took:.1f}s "
                   f"at {limit}/s ({allowed / took:.1f}/s), {answers[429]} answered 429")
    log(f"rate limit: {dict(answers)} in {took:.1f}s")


def scenario_admin_auth():
    """The admin API from other containers on the stack's network: /status, /metrics and
    POST /reload are refused without the token and served with it; /ready stays open."""
    base = f"http://{lb_ip()}:9901"
    # A backend container's own healthcheck client: a plain GET, no token.
    probe = ["exec", "-T", "backend", "/backend", "healthcheck", "--url"]
    for path in ("/status", "/metrics"):
        res = compose(*probe, base + path, check_rc=False)
        check(res.returncode == 1 and "answered status 401" in res.stderr,
              f"GET {path} from a backend container without the token: rc {res.returncode} "
              f"{res.stdout}{res.stderr}")
    res = compose(*probe, base + "/ready", check_rc=False)
    check(res.returncode == 0, f"GET /ready from a backend container: {res.stdout}{res.stderr}")
    # A one-off lb container (same image, volumes and network): `lb reload` sends the token
    # of the config it is given. With a config that names no token, it is refused.
    run = ["run", "--rm", "--no-deps", "-T", "lb", "reload", "--url", base + "/reload"]
    res = compose(*run, "-c", "/dev/null", check_rc=False, timeout=60)
    check(res.returncode == 1 and "answered 401" in res.stderr,
          f"lb reload without a token: rc {res.returncode} {res.stdout}{res.stderr}")
    res = compose(*run, check_rc=False, timeout=60)
    check(res.returncode == 0 and "configuration reloaded" in res.stdout,
          f"lb reload with the token: rc {res.returncode} {res.stdout}{res.stderr}")
    missing = metric("lb_admin_auth_failures_total", 'reason="missing"')
    check(missing >= 3, f"lb_admin_auth_failures_total{{reason=missing}} is {missing}")
    RESULTS.append(f"admin auth: {missing:.0f} requests without the token refused with 401 "
                   "from other containers; served with it")


def check_hardened(ids, no_new_privileges=True):
    """Every container non-root, read-only, with all capabilities dropped (and, where the
    orchestrator can set it, no-new-privileges)."""
    check(len(ids) >= 3, f"expected the stack's containers, got {ids}")
    for cid in ids:
        info = json.loads(docker("inspect", cid))[0]
        name = info["Name"].lstrip("/")
        user = info["Config"]["User"]
        check(user and not user.startswith("0") and user != "root", f"{name} runs as {user!r}")
        check(info["HostConfig"]["ReadonlyRootfs"], f"{name} has a writable root filesystem")
        check([c.upper() for c in (info["HostConfig"]["CapDrop"] or [])] in (["ALL"], ["CAP_ALL"]),
              f"{name} drops {info['HostConfig']['CapDrop']}")
        if no_new_privileges:
            check("no-new-privileges:true" in (info["HostConfig"]["SecurityOpt"] or []),
                  f"{name} lacks no-new-privileges")


def scenario_hardening():
    check_hardened(compose("ps", "-q").stdout.split())
    sizes = []
    for svc in ("lb", "backend", "frontend"):
        size = int(docker("image", "inspect", "-f", "{{.Size}}", f"softy-pinko/{svc}:{TAG}").strip())
        sizes.append(f"{svc} {size / 1e6:.1f} MB")
        check(size <= 16_000_000, f"image {svc} is {size / 1e6:.1f} MB (> 16 MB)")
    RESULTS.append("image sizes: " + ", ".join(sizes))
    log("image sizes: " + ", ".join(sizes))


def scenario_down():
    ids = compose("ps", "-q").stdout.split()
    t0 = time.monotonic()
    compose("stop", timeout=120)
    took = time.monotonic() - t0
    codes = {}
    for cid in ids:
        info = json.loads(docker("inspect", cid))[0]
        codes[info["Name"].lstrip("/")] = (info["State"]["ExitCode"], info["State"]["OOMKilled"])
    log(f"stop took {took:.1f}s; exit codes {codes}")
    RESULTS.append(f"down: every container stopped in {took:.1f}s")
    bad = {n: c for n, (c, _) in codes.items() if c != 0}
    check(not bad, f"containers did not exit 0 (137 means SIGKILL): {bad}")
    check(took < 15, f"stop took {took:.1f}s, past the 15 s grace")
    compose("down", "--remove-orphans", timeout=120)


SCENARIOS = [
    ("up", scenario_up),
    ("round_robin", scenario_round_robin),
    ("scale_up", scenario_scale_up),
    ("scale_down", scenario_scale_down),
    ("crash", scenario_crash),
    ("restart", scenario_restart),
    ("reload", scenario_reload),
    ("blackhole", scenario_blackhole),
    ("outlier", scenario_outlier),
    ("rate_limit", scenario_rate_limit),
    ("admin_auth", scenario_admin_auth),
    ("hardening", scenario_hardening),
    ("down", scenario_down),
]


def without_docker():
    """None when Docker is here; else the exit status: a skip, or with CI=true a failure."""
    if shutil.which("docker") is not None and subprocess.run(
            ["docker", "info"], capture_output=True).returncode == 0:
        return None
    if os.environ.get("CI") == "true":
        print("e2e: Docker is not available, and CI=true requires the end-to-end tests")
        print("0 passed, 1 failed")
        return 1
    print("e2e: SKIPPED: Docker is not available here (set CI=true to make this a failure)")
    return 0


def run_suite(scenarios, show_logs, teardown):
    """Runs the scenarios named on the command line (default: all, in order); the first
    one brings the stack up, so its failure ends the run. show_logs() prints what helps
    after a failure; teardown() always runs. Returns the exit status."""
    if (rc := without_docker()) is not None:
        return rc
    for svc in ("lb", "backend", "frontend"):
        if subprocess.run(["docker", "image", "inspect", f"softy-pinko/{svc}:{TAG}"],
                          capture_output=True).returncode != 0:
            print(f"e2e: image softy-pinko/{svc}:{TAG} is missing: run deploy/build.sh first")
            print("0 passed, 1 failed")
            return 1

    wanted = sys.argv[1:] or [name for name, _ in scenarios]
    passed, failed = 0, 0
    try:
        for name, fn in scenarios:
            if name not in wanted:
                continue
            log(f"--- {name}")
            t0 = time.monotonic()
            try:
                fn()
                passed += 1
                log(f"PASS {name} ({time.monotonic() - t0:.1f}s)")
            except (Failed, subprocess.TimeoutExpired, OSError, http.client.HTTPException) as e:
                failed += 1
                log(f"FAIL {name}: {e}")
                show_logs()
                if name == scenarios[0][0]:
                    break
    finally:
        teardown()
    print("\nResults:")
    for line in RESULTS:
        print(f"  {line}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    def show_logs():
        print(compose("logs", "--no-color", "--tail", "40", check_rc=False).stdout[-6000:])

    def teardown():
        compose("down", "--remove-orphans", "--volumes", "--timeout", "20", check_rc=False, timeout=120)

    return run_suite(SCENARIOS, show_logs, teardown)


if __name__ == "__main__":
    sys.exit(main())
