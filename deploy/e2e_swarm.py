#!/usr/bin/env python3
"""End-to-end tests of the Softy Pinko stack on Docker Swarm (deploy/stack.yaml).

Deploys the real stack file on this node as the stack `softy-e2e`, with the lb
published in host mode on a free port, and checks what an operator sees: it
converges and serves, round robin spreads requests, scaling, a rolling update to
a new image, an update to a broken image (rolled back by Swarm) and a killed task
lose no request, and what a config change of the lb costs.

It runs `docker swarm init` only if this node is in no swarm, and then leaves the
swarm at the end; it always removes its stack and the images it tagged. Every
load is bounded in request count and in time, and goes to 127.0.0.1 only.

It shares its helpers (load, polling, the scenario runner) with deploy/e2e.py.
Standard library only. Usage: deploy/e2e_swarm.py [scenario ...]   (default: all)
Exit status: 0 when every scenario passed; the last line reads "N passed, N failed".
"""

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import e2e
from e2e import RESULTS, Failed, Load, check, docker, get, log, replicas_seen, wait_for

ROOT = e2e.ROOT
STACK = "softy-e2e"
PORT = e2e.PORT  # the port the shared helpers send to: a free one
LB_CONFIG = ROOT / "deploy" / "lb.swarm.yaml"
NEW_TAG = f"softy-pinko/backend:{STACK}-v2"
BROKEN_TAG = f"softy-pinko/backend:{STACK}-broken"
created_swarm = False
created_gwbridge = False  # `swarm leave` keeps the bridge `swarm init` made


def service(name):
    return f"{STACK}_{name}"


def config_version(text):
    # As the README's `sha256sum deploy/lb.swarm.yaml | cut -c1-12`, with a prefix so
    # the suite's config never shares a name with a stack an operator runs here.
    return "e2e-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def config_name(text):
    return f"softy_lb_{config_version(text)}"  # as `configs.lb_yaml.name` in stack.yaml


def stack_deploy():
    env = dict(os.environ, SOFTY_SWARM_PORT=str(PORT),
               SOFTY_LB_CONFIG_VERSION=config_version(LB_CONFIG.read_text()))
    cmd = ["docker", "stack", "deploy", "--resolve-image", "never", "-c", "deploy/stack.yaml", STACK]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")


def containers(name):
    """The running containers of a service's tasks (this node is the only one)."""
    return docker("ps", "-q", "--no-trunc", "--filter",
                  f"label=com.docker.swarm.service.name={service(name)}").split()


def container_image(cid):
    return docker("inspect", "-f", "{{.Config.Image}}", cid).strip()


def replica_name(cid):
    # The backend reports its task's name (BACKEND_REPLICA_ID in stack.yaml).
    return docker("inspect", "-f", '{{index .Config.Labels "com.docker.swarm.task.name"}}', cid).strip()


def service_spec_image(name):
    spec = json.loads(docker("service", "inspect", service(name)))[0]["Spec"]
    return spec["TaskTemplate"]["ContainerSpec"]["Image"]


def update_status(name):
    return json.loads(docker("service", "inspect", service(name)))[0].get("UpdateStatus") or {}


def wait_update(name, state, previous, timeout):
    """Waits until the service's next update (the one started after `previous`, the
    StartedAt of the last one) ends in state (`completed`, `rollback_completed`); fails
    at once if it ends in another one."""
    def ended():
        st = update_status(name)
        if st.get("StartedAt", "") == previous:
            return None
        if st.get("State") in ("completed", "paused", "rollback_completed", "rollback_paused"):
            check(st["State"] == state, f"{service(name)} update ended {st['State']}: {st.get('Message')}")
            return st
        return None
    return wait_for(f"the update of {service(name)} to end {state}", ended, timeout, interval=0.5)


def last_update_started(name):
    return update_status(name).get("StartedAt", "")


def converged():
    """Every service of the stack runs as many tasks as it wants, and each is healthy
    (with a healthcheck, Swarm counts a task as running only once it is healthy)."""
    out = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                 "--format", "{{.Name}} {{.Replicas}}")
    replicas = dict(line.split(None, 1) for line in out.splitlines())
    return len(replicas) == 3 and all(r.split("/")[0] == r.split("/")[1] for r in replicas.values())


def scale(n):
    docker("service", "scale", "--detach", f"{service('backend')}={n}")


def exits_since(since):
    """{container name: exit code} of the stack's containers that stopped since `since`
    (a Unix time), from the engine's events."""
    out = docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                 "--filter", f"label=com.docker.stack.namespace={STACK}", "--filter", "event=die",
                 "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    return dict(line.split() for line in out.splitlines())


def derive_image(tag, instructions):
    """A new image on top of the backend's, built here from a Dockerfile on stdin (no
    build context, nothing pulled)."""
    res = subprocess.run(["docker", "build", "-q", "-t", tag, "-"],
                         input=f"FROM softy-pinko/backend:{e2e.TAG}\n{instructions}\n",
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise Failed(f"docker build -t {tag} exited {res.returncode}: {res.stderr}")


# --------------------------------------------------------------------------
# Scenarios. They run in this order and share the stack.

def scenario_deploy():
    global created_swarm, created_gwbridge
    state = docker("info", "-f", "{{.Swarm.LocalNodeState}}").strip()
    if state == "inactive":
        had_gwbridge = "docker_gwbridge" in docker("network", "ls", "--format", "{{.Name}}").split()
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        created_swarm, created_gwbridge = True, not had_gwbridge
        log("swarm init: this node was in no swarm, so the suite leaves it at the end")
    else:
        manager = docker("info", "-f", "{{.Swarm.ControlAvailable}}").strip()
        check(state == "active" and manager == "true",
              f"this node is in a swarm ({state}) but is not a manager: cannot deploy a stack")
        log("this node is already a swarm manager: the suite uses that swarm and leaves it")
    t0 = time.monotonic()
    stack_deploy()
    wait_for("every service of the stack converged", converged, timeout=120, interval=0.5)
    wait_for("3 replicas in rotation", lambda: len(replicas_seen(12)) == 3, timeout=60)
    took = time.monotonic() - t0
    RESULTS.append(f"deploy: converged and serving in {took:.1f}s "
                   "(docker stack deploy: 1 lb, 3 backends, 2 frontends)")
    log(f"stack {STACK} serving in {took:.1f}s on port {PORT}")
    status, _, body = get("/api/hello")
    check(status == 200 and body == b"Hello, World!", f"/api/hello: {status} {body!r}")
    status, _, body = get("/")
    check(status == 200 and b'id="dynamic-content"' in body, f"/: {status} {body[:200]!r}")
    # The admin token the lb made in its volume, printed as the README says.
    lb = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service('lb')}").split()
    check(len(lb) == 1, f"expected one lb task container, got {lb}")
    token = docker("exec", lb[0], "/lb", "admin-token").strip()
    check(re.fullmatch(r"[0-9a-f]{64}", token), f"lb admin-token printed {token!r}")


def scenario_hardening():
    ids = [c for name in ("lb", "backend", "frontend") for c in containers(name)]
    # Swarm services cannot set no-new-privileges (see deploy/stack.yaml).
    e2e.check_hardened(ids, no_new_privileges=False)


def scenario_scale():
    with Load() as load:
        t0 = time.monotonic()
        scale(6)
        wait_for("6 replicas in rotation", lambda: len(replicas_seen(12)) == 6, timeout=60, interval=0.1)
        took = time.monotonic() - t0
    load.report("scale 3->6")
    log(f"6 replicas in rotation {took:.1f}s after `docker service scale`")
    with Load() as load:
        scale(2)
        wait_for("only 2 replicas in rotation", lambda: len(replicas_seen(12)) == 2, timeout=60)
        # Keep the load on until the removed tasks have drained and exited.
        wait_for("the 4 removed tasks to exit", lambda: len(containers("backend")) == 2, timeout=60)
    load.report("scale 6->2")


def scenario_rolling_update():
    scale(3)
    wait_for("3 replicas in rotation", lambda: converged() and len(replicas_seen(12)) == 3, timeout=60)
    derive_image(NEW_TAG, f'LABEL org.opencontainers.image.version="{STACK}-v2"')
    old = set(containers("backend"))
    old_replicas = {replica_name(c) for c in old}
    since, began = time.time(), last_update_started("backend")
    with Load() as load:
        t0 = time.monotonic()
        docker("service", "update", "--detach", "--no-resolve-image", "--image", NEW_TAG,
               service("backend"))
        wait_update("backend", "completed", began, timeout=180)
        took = time.monotonic() - t0
        wait_for("only new replicas in rotation",
                 lambda: not set(replicas_seen(12)) & old_replicas, timeout=30)
        wait_for("the old tasks to drain and exit", lambda: not old & set(containers("backend")),
                 timeout=60)
    load.report("rolling update to a new tag")
    images = {container_image(c) for c in containers("backend")}
    check(images == {NEW_TAG}, f"after the update the backends run {images}")
    exits = exits_since(since)
    check(len(exits) == 3 and set(exits.values()) == {"0"},
          f"the replaced tasks must stop gracefully (exit 0), got {exits}")
    RESULTS.append(f"rolling update: 3 tasks replaced one by one (start-first) in {took:.1f}s, "
                   "each old one exited 0")
    log(f"update completed in {took:.1f}s (including the 10 s monitor window)")


def scenario_rollback():
    # Broken the way a bad release often is: the process runs, but its healthcheck
    # never passes (here it probes a port nothing listens on).
    derive_image(BROKEN_TAG, "HEALTHCHECK --interval=1s --timeout=1s --retries=2 "
                             'CMD ["/backend", "healthcheck", "--url", "http://127.0.0.1:1/ready"]')
    before, previous = set(containers("backend")), service_spec_image("backend")
    began = last_update_started("backend")
    with Load() as load:
        t0 = time.monotonic()
        docker("service", "update", "--detach", "--no-resolve-image", "--image", BROKEN_TAG,
               service("backend"))
        st, _ = wait_update("backend", "rollback_completed", began, timeout=180)
        took = time.monotonic() - t0
        wait_for("the service converged again", converged, timeout=60)
    load.report("update to a broken image, rolled back")
    check(service_spec_image("backend") == previous,
          f"after the rollback the service wants {service_spec_image('backend')}, not {previous}")
    now = set(containers("backend"))
    check({container_image(c) for c in now} == {previous},
          f"after the rollback the backends run {[container_image(c) for c in now]}")
    # start-first: the broken task never became healthy, so no old task was stopped.
    check(now == before, "the rollback replaced tasks that were serving")
    RESULTS.append(f"rollback: Swarm rolled the broken image back in {took:.1f}s; "
                   "the 3 serving tasks were never stopped")
    log(f"rolled back in {took:.1f}s: {st.get('Message')}")


def scenario_kill():
    victim = containers("backend")[0]
    victim_replica = replica_name(victim)
    with Load() as load:
        t0 = time.monotonic()
        docker("kill", "-s", "KILL", victim)
        wait_for("the killed task to leave rotation",
                 lambda: victim_replica not in replicas_seen(12), timeout=20)
        wait_for("Swarm to replace the killed task, and the new one in rotation",
                 lambda: victim not in containers("backend") and converged()
                 and len(replicas_seen(12)) == 3, timeout=60)
        took = time.monotonic() - t0
    load.report("kill a backend task (SIGKILL)")
    RESULTS.append(f"kill: Swarm replaced the task and it was in rotation {took:.1f}s later")


class SlowProbe(threading.Thread):
    """Back-to-back GET /api/slow?ms=600, each on a new connection, so that a request
    is in flight at the lb at any moment. Records (start, end, outcome), wall clock."""

    def __init__(self, max_seconds=120):
        super().__init__(daemon=True)
        self.records, self.stopping, self.max_seconds = [], threading.Event(), max_seconds

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            t0 = time.time()
            try:
                outcome = get("/api/slow?ms=600")[0]
            except (OSError, http.client.HTTPException) as e:
                outcome = type(e).__name__
                self.stopping.wait(0.05)  # no tight loop while the port is closed
            self.records.append((t0, time.time(), outcome))

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)


# How much earlier than Docker's stamp of the SIGTERM a failure may be seen (see below).
SIGTERM_SLACK = 0.5


def scenario_lb_config():
    """A new config version replaces the lb task (stop-first on one node): measure the gap."""
    src = LB_CONFIG.read_text()
    edited = e2e.with_e2e_route(src)
    old_name, new_name = config_name(src), config_name(edited)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(edited)
        f.flush()
        # The stack's label, so that `docker stack rm` removes this version too.
        docker("config", "create", "--label", f"com.docker.stack.namespace={STACK}", new_name, f.name)
    status, _, _ = get("/e2e/api/hello")
    check(status == 404, f"/e2e/ answered {status} before the config change")
    old_lb = containers("lb")
    since, began = time.time(), last_update_started("lb")
    probe = SlowProbe()
    with Load() as load:
        probe.start()
        t0 = time.monotonic()
        docker("service", "update", "--detach", "--config-rm", old_name, "--config-add",
               f"source={new_name},target=/etc/lb/lb.yaml,uid=10001,gid=10001,mode=0444",
               service("lb"))
        wait_for("the new route", lambda: get("/e2e/api/hello")[2] == b"Hello, World!",
                 timeout=60, interval=0.1)
        live = time.monotonic() - t0
        wait_update("lb", "completed", began, timeout=120)
        probe.stop()
    wall_minus_mono = time.time() - time.monotonic()
    total = load.ok + len(load.failures)
    check(total > 0, "the load sent nothing")
    kills = docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                   "--filter", f"container={old_lb[0]}", "--filter", "event=kill",
                   "--format", "{{.TimeNano}} {{.Actor.Attributes.signal}}").split("\n")
    sigterms = [int(line.split()[0]) / 1e9 for line in kills if line.endswith(" 15")]
    check(sigterms, f"no SIGTERM for the old lb: {kills}")
    sigterm = sigterms[0]
    exits = exits_since(since)
    check(list(exits.values()) == ["0"], f"the old lb must exit 0 (graceful), got {exits}")

    # Requests in flight when the old lb got SIGTERM finish within its grace period.
    straddling = [r for r in probe.records if r[0] < sigterm - 0.05 < r[1]]
    check(straddling, f"no slow request was in flight at SIGTERM: {probe.records[-10:]}")
    check(all(r[2] == 200 for r in straddling), f"a request in flight at SIGTERM failed: {straddling}")
    # What a single node cannot avoid: no lb listens between the old lb's SIGTERM (it
    # closes its listener at once) and the new task's start. Nothing else may fail.
    load_start = load.started + wall_minus_mono
    failed_at = [load_start + t for t in load.failed_at]
    statuses = [f for f in load.failures if f[:3].isdigit()]
    check(not statuses, f"the lb answered errors: {statuses[:5]}")
    # Docker stamps the kill event as it sends the signal, and the lb closes its listener at
    # once, so a refused connect can be seen a few milliseconds before the event's stamp.
    early = [round(sigterm - t, 3) for t in failed_at if t < sigterm - SIGTERM_SLACK]
    check(not early, f"requests failed before the old lb got SIGTERM (seconds before: {early[:5]})")
    gap = max(failed_at) - sigterm if failed_at else 0.0
    check(gap < 8, f"connections failed for {gap:.1f}s after SIGTERM (> 8 s)")
    line = (f"lb config change: {total} requests over {load.workers} connections in "
            f"{load.elapsed:.1f}s, {len(load.failures)} failed, all within {gap:.1f}s after the old "
            "lb's SIGTERM (no lb listening); the request in flight at SIGTERM completed")
    RESULTS.append(line)
    log(line)
    log(f"SIGTERM {sigterm - (t0 + wall_minus_mono):.1f}s and the new route live {live:.1f}s after "
        f"`docker service update`; failures: {sorted(set(f.split(':')[0] for f in load.failures))}")


def scenario_down():
    since = time.time()
    t0 = time.monotonic()
    docker("stack", "rm", STACK)
    wait_for("every task of the stack to stop", stack_gone, timeout=120, interval=0.5)
    took = time.monotonic() - t0
    exits = exits_since(since)
    log(f"stack removed in {took:.1f}s; exit codes {exits}")
    RESULTS.append(f"down: docker stack rm, every task stopped in {took:.1f}s")
    bad = {n: c for n, c in exits.items() if c != "0"}
    check(len(exits) == 6 and not bad, f"every task must exit 0 (137 means SIGKILL): {exits}")


def stack_gone():
    label = f"label=com.docker.stack.namespace={STACK}"
    return not (docker("ps", "-aq", "--filter", label).split()
                or docker("network", "ls", "-q", "--filter", label).split())


SCENARIOS = [
    ("deploy", scenario_deploy),
    ("hardening", scenario_hardening),
    ("round_robin", e2e.scenario_round_robin),
    ("scale", scenario_scale),
    ("rolling_update", scenario_rolling_update),
    ("rollback", scenario_rollback),
    ("kill", scenario_kill),
    ("lb_config", scenario_lb_config),
    ("down", scenario_down),
]


def show_logs():
    for name in ("lb", "backend"):
        res = subprocess.run(["docker", "service", "ps", "--no-trunc", service(name)],
                             capture_output=True, text=True)
        print(res.stdout[-3000:], res.stderr[-500:])
        res = subprocess.run(["docker", "service", "logs", "--tail", "200", service(name)],
                             capture_output=True, text=True, timeout=30)
        # Access-log lines drown the rest.
        lines = [line for line in res.stdout.splitlines() if '"target":"access"' not in line]
        print("\n".join(lines[-20:]), res.stderr[-2000:])


def teardown():
    subprocess.run(["docker", "stack", "rm", STACK], capture_output=True)
    try:
        wait_for("the stack to be removed", stack_gone, timeout=120, interval=0.5)
    except Failed as e:
        log(f"teardown: {e}")
    subprocess.run(["docker", "image", "rm", NEW_TAG, BROKEN_TAG], capture_output=True)
    # `docker stack rm` keeps the stack's volumes (the lb's state).
    label = f"label=com.docker.stack.namespace={STACK}"
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", label],
                             capture_output=True, text=True).stdout.split()
    if volumes:
        subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True)
    if created_swarm:
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
        log("left the swarm this suite created")
    if created_gwbridge:
        subprocess.run(["docker", "network", "rm", "docker_gwbridge"], capture_output=True)


if __name__ == "__main__":
    sys.exit(e2e.run_suite(SCENARIOS, show_logs, teardown))
