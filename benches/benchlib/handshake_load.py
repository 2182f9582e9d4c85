#!/usr/bin/env python3
"""Load with a full TLS handshake per request: the client of `api-tls-newconn`.

Why not oha: oha (rustls client) keeps a session cache and offers a ticket on
every new connection, and h2load does the same; the lb (rustls server,
pingora's default session cache) always accepts it. With them, "a new TLS
connection per request" measures resumed (abbreviated) handshakes: no
certificate, no signature. This client never offers a session, so every
connection is a full handshake (key exchange, certificate, signature) on every
server, whatever it is configured to resume.

PROCESSES processes each run CONNECTIONS / PROCESSES threads. A thread loops
until the deadline: connect, TLS handshake (no SNI for 127.0.0.1, as oha and
h2load; certificate not verified, to spend the CPU on the servers: the harness
verifies it once per target before loading), `GET PATH` with
`Connection: close`, read the status line, headers and Content-Length body,
close. The request in flight at the deadline finishes (as oha's `-w`). The
handshake and the socket calls release the GIL, so the threads overlap.

Prints one JSON object with the keys of load.parse_summary.

    python3 handshake_load.py --url https://127.0.0.1:8443/api/hello -c 50 -z 10 --processes 2
"""

import argparse
import json
import math
import multiprocessing
import os
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def _context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _one(ctx, addr, request, timeout):
    """One connection, handshake, request and response: (status, bytes received)."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        with ctx.wrap_socket(sock) as tls:  # no server_hostname: no SNI, no session offered
            if tls.session_reused:
                raise RuntimeError("a session was resumed")  # cannot happen: none is offered
            tls.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the response head")
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while length is None or len(body) < length:
                chunk = tls.recv(65536)
                if not chunk:
                    if length is not None:
                        raise ConnectionError("closed before the end of the body")
                    break
                body += chunk
            return status, len(head) + 4 + len(body)


def _thread(ctx, addr, request, deadline, timeout, out):
    lat, statuses, errors, nbytes = [], Counter(), Counter(), 0
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            status, n = _one(ctx, addr, request, timeout)
        except (OSError, ssl.SSLError, ValueError, RuntimeError) as e:
            errors[f"{type(e).__name__}: {e}"[:120]] += 1
            continue
        lat.append(time.perf_counter() - t0)
        statuses[status] += 1
        nbytes += n
    out.append((lat, statuses, errors, nbytes))


def _process(url, threads, start, seconds, timeout, conn):
    parts = urlsplit(url)
    addr = (parts.hostname, parts.port or 443)
    path = parts.path or "/"
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: softy-bench-handshake\r\n"
               "Connection: close\r\n\r\n").encode()
    ctx = _context()
    out = []
    deadline = start + seconds
    workers = [threading.Thread(target=_thread, args=(ctx, addr, request, deadline, timeout, out))
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lat, statuses, errors, nbytes = [], Counter(), Counter(), 0
    for l, s, e, n in out:
        lat += l
        statuses.update(s)
        errors.update(e)
        nbytes += n
    conn.send((lat, dict(statuses), dict(errors), nbytes, time.monotonic()))
    conn.close()


def _pct(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i] * 1000.0


def run(url, connections, seconds, processes, timeout=10.0):
    """The summary dict (load.parse_summary's keys) of one bounded run."""
    processes = max(1, min(processes, connections))
    mp = multiprocessing.get_context("fork")
    start = time.monotonic()
    children = []
    for i in range(processes):
        threads = connections // processes + (1 if i < connections % processes else 0)
        recv, send = mp.Pipe(duplex=False)
        p = mp.Process(target=_process, args=(url, threads, start, seconds, timeout, send), daemon=True)
        p.start()
        send.close()
        children.append((p, recv))
    lat, statuses, errors, nbytes, end = [], Counter(), Counter(), 0, start
    for p, recv in children:
        if not recv.poll(seconds + timeout + 30):
            raise SystemExit(f"a load process did not report within {seconds + timeout + 30:.0f} s")
        l, s, e, n, t = recv.recv()
        p.join(timeout=10)
        lat += l
        statuses.update(s)
        errors.update(e)
        nbytes += n
        end = max(end, t)
    lat.sort()
    wall = end - start
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    responses = sum(statuses.values())
    return {
        "requests": responses,
        "ok": ok,
        "non2xx": responses - ok,
        "statuses": dict(statuses),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "rps": ok / wall if wall else 0.0,
        "p50": _pct(lat, 0.50),
        "p99": _pct(lat, 0.99),
        "p999": _pct(lat, 0.999),
        "bytes_per_s": nbytes / wall if wall else 0.0,
        "wall_s": wall,
    }


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="https://127.0.0.1:PORT/path")
    p.add_argument("-c", "--connections", type=int, default=50, help="concurrent connections (threads)")
    p.add_argument("-z", "--seconds", type=float, required=True, help="how long to start new requests")
    p.add_argument("--processes", type=int, default=os.cpu_count(), help="client processes (default: CPUs)")
    args = p.parse_args(argv)
    if urlsplit(args.url).scheme != "https":
        p.error("--url must be https://")
    if not 0 < args.seconds <= 600 or args.connections < 1:
        p.error("need 0 < --seconds <= 600 and --connections >= 1")
    print(json.dumps(run(args.url, args.connections, args.seconds, args.processes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
