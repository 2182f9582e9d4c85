"""Servers the harness starts, and what they cost, read from /proc.

Every server runs in its own session (process group), so stopping it also
stops its workers (nginx) and nothing is left behind, even on Ctrl-C.

CPU is utime + stime from /proc/PID/stat. For a process that line already sums
all its threads, live and exited, so a multi-threaded server (lb, backends)
needs one read, and a multi-process server (nginx master + workers) needs one
read per process of its tree.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A server did not start or did not become ready in time."""


class Server:
    """One started process (and its descendants), with its log file.

    The log is opened in append mode, so `trim_log` can cut what a run wrote
    (access logs can reach hundreds of MB) while the server keeps writing.
    """

    def __init__(self, name, argv, log_dir, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab", buffering=0)
        self._keep = 0
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            self._log.close()
            raise StartError(f"cannot start {name}: {self.argv[0]}: {e}") from e

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, max_bytes=4000):
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    def mark_log(self):
        """Remember the log as it is now (the startup part) so trims keep it."""
        self._keep = self.log_path.stat().st_size

    def trim_log(self):
        try:
            os.truncate(self.log_path, self._keep)
        except OSError:
            pass

    def terminate(self):
        """SIGTERM the whole process group (the server and its workers)."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)

    def reap(self, deadline):
        """Wait until `deadline` (monotonic), then SIGKILL what is left of the group."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # Workers may outlive their master for a moment; the group id stays.
        _signal_group(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def stop_all(servers, grace=5.0):
    """Stop servers together: SIGTERM to all, up to `grace` seconds, then SIGKILL."""
    for s in servers:
        s.terminate()
    deadline = time.monotonic() + grace
    for s in servers:
        s.reap(deadline)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Group:
    """Servers measured together, e.g. the three backend replicas."""

    def __init__(self, name, servers):
        self.name = name
        self.servers = list(servers)

    def pids(self):
        children = _children_map()
        found = []
        todo = [s.pid for s in self.servers if s.alive()]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, ()))
        return found

    def cpu_seconds(self):
        return sum(_cpu_ticks(pid) for pid in self.pids()) / CLK_TCK

    def memory_kib(self):
        """(VmRSS, VmHWM) summed over the group's processes, in KiB."""
        rss = hwm = 0
        for pid in self.pids():
            status = _read(f"/proc/{pid}/status")
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        return rss, hwm


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # the process exited between listing and reading
        return ""


def _stat_fields(pid):
    stat = _read(f"/proc/{pid}/stat")
    # The command name may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rfind(")") + 2 :].split() if stat else []


def _cpu_ticks(pid):
    fields = _stat_fields(pid)
    # Fields 14 and 15 of stat(5), counted from the state (field 3) at index 0.
    return int(fields[11]) + int(fields[12]) if fields else 0


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def free_ports(count):
    """Distinct free loopback ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(url, timeout=2.0, context=None):
    """(status, body) of a GET, or (None, error text) when it cannot connect.

    `context`: the ssl.SSLContext for an https URL (the bench CA).
    """
    req = urllib.request.Request(url, headers={"User-Agent": "softy-bench"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e).encode()


def wait_ready(server, url, timeout=30.0, context=None):
    """Poll `url` until it answers 2xx; fail fast if the server exits."""
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        if not server.alive():
            raise StartError(
                f"{server.name} exited with status {server.proc.returncode} before it was ready.\n"
                f"command: {' '.join(server.argv)}\n--- log tail ---\n{server.log_tail()}"
            )
        status, body = http_get(url, timeout=1.0, context=context)
        if status is not None and 200 <= status < 300:
            server.mark_log()
            return
        last = f"{status}: {body[:200]!r}".encode()
        time.sleep(0.05)
    raise StartError(
        f"{server.name} was not ready at {url} after {timeout:.0f} s (last: {last.decode()}).\n"
        f"command: {' '.join(server.argv)}\n--- log tail ---\n{server.log_tail()}"
    )
