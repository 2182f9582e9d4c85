#!/usr/bin/env python3
"""End-to-end tests of the compose stack's HTTPS listener in real Docker.

Runs the real compose.yaml (images from deploy/build.sh) under its own compose
project name and free host ports, and checks what a user of https://localhost:8443/
sees: h2 and HTTP/1.1 by ALPN, verified against the stack's development CA (never
-k), logged with `protocol` and `tls_version`; the page and its AJAX call in headless
Chromium over HTTPS; SNI, ALPN and the TLS versions with `openssl s_client`; a
certificate rotated under load (files replaced, SIGHUP) with no failed request; a bad
rotation rejected while the old certificate keeps serving; backend scaled 3->5 under
h2 load with no failed request.

The first scenario runs the stack as shipped. From `files` on, lb runs a copy of
deploy/lb.yaml whose certificates are files made here with openssl (a test CA, a
leaf for localhost and one for other.test), mounted from a temp dir by an override,
so they can be replaced.

Every load is bounded in request count and in time, and goes to 127.0.0.1 only. The
project (and its volume) is torn down even when a scenario fails. It shares its
helpers (polling, the scenario runner, compose) with deploy/e2e.py.

Standard library only, plus the openssl, curl, oha, h2load and chromium commands
(deploy/bootstrap.sh installs them).
Usage: deploy/e2e_tls.py [scenario ...]   (default: all, in order)
Exit status: 0 when every scenario passed; the last line reads "N passed, N failed".
"""

import http.client
import io
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import e2e
from e2e import RESULTS, Failed, admin, check, compose, docker, log, metric, replicas_seen, wait_for

ROOT = e2e.ROOT
# Our own project name and host ports; the shared helpers read them from e2e.
e2e.PROJECT = f"softy-e2e-tls-{os.getpid()}"
PORT = e2e.PORT
TLS_PORT = e2e.TLS_PORT  # compose() publishes the lb's :8443 there
BASE = f"https://localhost:{TLS_PORT}"
WORK = Path(tempfile.mkdtemp(prefix="softy-e2e-tls-"))
STATE = {}  # what later scenarios need: "ca" (the CA to verify against), ...


def need(key):
    """What an earlier scenario left in STATE (running one scenario alone needs those
    before it, e.g. `deploy/e2e_tls.py up files rotation`)."""
    if key not in STATE:
        raise Failed(f"{key!r} is set by an earlier scenario (run `up` and `files` first)")
    return STATE[key]


def run(cmd, timeout=60, input=None):
    # errors="replace": s_client also prints what the server sends after the handshake
    # (an h2 SETTINGS frame when h2 was negotiated), which is not text.
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=timeout, input=input)


# --------------------------------------------------------------------------
# Certificates, made with openssl.

def openssl(*args, cwd=None):
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd, timeout=30)
    if res.returncode != 0:
        raise Failed(f"openssl {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res.stdout


def make_ca(d):
    """A CA in d: ca.pem, ca.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "30",
            "-subj", "/CN=Softy Pinko e2e CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_leaf(d, stem, name, serial, ca_dir):
    """A leaf for DNS name `name` with this serial (hex), signed by the CA in ca_dir:
    d/stem.pem and d/stem.key, each written next to it and renamed into place (a reader
    never sees half a file). Mode 0644: the lb reads them as uid 10001."""
    ext = d / f".{stem}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    key, csr, pem = d / f".{stem}.key", d / f".{stem}.csr", d / f".{stem}.pem"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.pem"),
            "-CAkey", str(ca_dir / "ca.key"), "-set_serial", f"0x{serial}", "-days", "30",
            "-extfile", str(ext), "-out", str(pem))
    for f in (key, pem):
        f.chmod(0o644)
    os.replace(key, d / f"{stem}.key")
    os.replace(pem, d / f"{stem}.pem")
    csr.unlink()
    ext.unlink()


def served_cert(servername=None, extra=()):
    """The certificate a new handshake gets (PEM), by openssl s_client; and its output."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{TLS_PORT}", *extra]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    res = run(cmd, timeout=15, input="")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", res.stdout, re.S)
    check(m, f"{' '.join(cmd)}: no certificate (exit {res.returncode}): "
          f"{res.stdout[-800:]} {res.stderr[-800:]}")
    return m.group(0), res


def serial_of(pem):
    out = run(["openssl", "x509", "-noout", "-serial"], input=pem).stdout.strip()
    check(out.startswith("serial="), f"openssl x509 -serial: {out!r}")
    return out.split("=", 1)[1].upper()


def served_serial(servername="localhost"):
    return serial_of(served_cert(servername)[0])


def spki_sha256(pem):
    """base64(sha256(SubjectPublicKeyInfo)): what Chromium's
    --ignore-certificate-errors-spki-list takes."""
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=pem.encode(),
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            capture_output=True, check=True).stdout
    return subprocess.run(["openssl", "base64", "-A"], input=digest,
                          capture_output=True, check=True).stdout.decode().strip()


# --------------------------------------------------------------------------
# The lb: its logs, its admin listener (reached on the compose network's address).

def lb_logs():
    return compose("logs", "--no-color", "--no-log-prefix", "lb").stdout


def access_lines():
    lines = []
    for line in lb_logs().splitlines():
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("target") == "access":
                lines.append(obj)
    return lines


def access_line(request_id):
    """The access-log line of one request, polled (lines are flushed every 100 ms)."""
    def find():
        return next((a for a in access_lines() if a.get("request_id") == request_id), None)
    return wait_for(f"the access-log line of {request_id}", find, timeout=10, interval=0.3)[0]


# --------------------------------------------------------------------------
# Clients.

def curl(url, *opts, request_id=None):
    """One request with curl verified against STATE["ca"]: (http_version, status, body)."""
    out = WORK / "curl.body"
    cmd = ["curl", "-sS", "--max-time", "10", "--cacert", str(STATE["ca"]), "-o", str(out),
           "-w", "%{http_version} %{http_code}", *opts]
    if request_id:
        cmd += ["-H", f"X-Request-Id: {request_id}"]
    res = run(cmd + [url], timeout=20)
    check(res.returncode == 0, f"{' '.join(cmd)} {url} exited {res.returncode}: {res.stderr}")
    version, status = res.stdout.split()
    return version, int(status), out.read_bytes()


def check_https_page_and_api():
    """h2 and HTTP/1.1 by ALPN to / and /api/hello, verified against the CA, and their
    access-log lines: protocol h2 / h1, tls_version TLSv1.3."""
    for flag, want_version, want_protocol in (("--http2", "2", "h2"), ("--http1.1", "1.1", "h1")):
        for path, want_body in (("/api/hello", b"Hello, World!"), ("/", b'id="dynamic-content"')):
            rid = f"e2e-tls-{want_protocol}-{path.strip('/').replace('/', '-') or 'root'}-{time.time_ns()}"
            version, status, body = curl(BASE + path, flag, request_id=rid)
            check(version == want_version, f"curl {flag} {path}: HTTP/{version}, not {want_version}")
            check(status == 200, f"curl {flag} {path}: {status} {body[:200]!r}")
            check(body == want_body if path != "/" else want_body in body,
                  f"curl {flag} {path}: body {body[:200]!r}")
            line = access_line(rid)
            check(line.get("protocol") == want_protocol and line.get("tls_version") == "TLSv1.3"
                  and line.get("status") == 200 and line.get("path") == path,
                  f"access line of {flag} {path}: {line}")
    # Plain HTTP on 8080 as before: protocol h1, and no tls_version.
    rid = f"e2e-tls-plain-{time.time_ns()}"
    status, _, body = e2e.get("/api/hello", headers={"X-Request-Id": rid})
    check(status == 200 and body == b"Hello, World!", f"http /api/hello: {status} {body!r}")
    line = access_line(rid)
    check(line.get("protocol") == "h1" and "tls_version" not in line, f"plain access line: {line}")
    log("curl --http2 and --http1.1 over TLS (verified against the CA): / and /api/hello 200, "
        "logged as h2 / h1 with TLSv1.3; plain :8080 logged h1 without tls_version")


LOCAL_CA = "/var/lib/lb/local-ca"


def local_ca_files():
    """The lb's CA directory in its volume, as `docker cp CONTAINER:DIR -` streams it
    (a tar keeps modes and owners): {name: (mode, uid, bytes)}."""
    cid = compose("ps", "-q", "lb").stdout.split()
    check(len(cid) == 1, f"expected one lb container, got {cid}")
    res = subprocess.run(["docker", "cp", f"{cid[0]}:{LOCAL_CA}", "-"], capture_output=True,
                         timeout=30)
    check(res.returncode == 0, f"docker cp {LOCAL_CA}: {res.stderr.decode()[-300:]}")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isfile() else b""
            files[m.name.split("/", 1)[1] if "/" in m.name else "."] = (m.mode & 0o7777, m.uid, data)
    return files


def default_ca():
    """The CA that signs the certificate the stack serves as shipped: the lb's own
    (`local_ca` in deploy/lb.yaml), fetched as the README says."""
    check(f"local_ca: {LOCAL_CA}" in (ROOT / "deploy" / "lb.yaml").read_text(),
          f"deploy/lb.yaml has no `local_ca: {LOCAL_CA}`")
    dest = WORK / "ca.pem"
    compose("cp", f"lb:{LOCAL_CA}/ca.pem", str(dest))
    return dest


def chromium_page(url, spki):
    """#dynamic-content of the page in headless Chromium, which accepts exactly the
    served leaf's key (--ignore-certificate-errors-spki-list): a headless Chromium has
    no trust store we can add a CA to without NSS tools."""
    return e2e.dynamic_content(url, f"--ignore-certificate-errors-spki-list={spki}")


# --------------------------------------------------------------------------
# Scenarios. Each is a function; they run in this order and share the stack.

def scenario_up():
    """The stack as shipped: healthy, and HTTPS verified against its own CA."""
    took = e2e.compose_up()
    RESULTS.append(f"up: healthy in {took:.1f}s, https on port {TLS_PORT}")
    log(f"stack healthy in {took:.1f}s: http {PORT}, https {TLS_PORT}")
    STATE["ca"] = default_ca()
    files = local_ca_files()
    modes = {n: (oct(m), uid) for n, (m, uid, _) in files.items()}
    check(modes.get(".") == ("0o700", 10001) and modes.get("ca.key") == ("0o600", 10001)
          and modes.get("ca.pem", ("", 0))[1] == 10001 and set(modes) == {".", "ca.pem", "ca.key"},
          f"{LOCAL_CA} in the volume: {modes} (want the dir 0700, ca.key 0600, owner 10001)")
    pem, res = served_cert("localhost", ["-CAfile", str(STATE["ca"]), "-verify_return_error"])
    check("Verify return code: 0 (ok)" in res.stdout, f"the served certificate does not verify "
          f"against {STATE['ca']}: {res.stdout[-600:]}")
    check_https_page_and_api()
    # https://127.0.0.1 verifies too (an IP SAN; no SNI is sent for an IP).
    version, status, _ = curl(f"https://127.0.0.1:{TLS_PORT}/api/hello", "--http2")
    check((version, status) == ("2", 200), f"https://127.0.0.1: HTTP/{version} {status}")
    # Trusted once: a recreated lb keeps its CA (the volume) and serves a new leaf from it.
    first = serial_of(pem)
    compose("up", "-d", "--wait", "--force-recreate", "--no-deps", "lb", timeout=120)
    check(local_ca_files()["ca.pem"][2] == files["ca.pem"][2], "the CA changed across a recreate")
    pem, res = served_cert("localhost", ["-CAfile", str(STATE["ca"]), "-verify_return_error"])
    check("Verify return code: 0 (ok)" in res.stdout and serial_of(pem) != first,
          f"after a recreate: serial {serial_of(pem)} (was {first}): {res.stdout[-600:]}")
    version, status, body = curl(f"{BASE}/api/hello", "--http2")
    check((version, status, body) == ("2", 200, b"Hello, World!"), f"after a recreate: {status}")
    log(f"local CA: dir 0700, ca.key 0600, owner 10001; kept across a recreate of lb, new leaf "
        f"{serial_of(pem)[:12]}... verifies against it")
    STATE["spki"] = spki_sha256(pem)


def scenario_browser():
    """The page over HTTPS in headless Chromium: its AJAX call fills the headline, over h2."""
    before = len(access_lines())
    text = chromium_page(f"{BASE}/", need("spki"))
    check(text == "Hello, World!", f"#dynamic-content reads {text!r}, not 'Hello, World!'")
    def seen():  # polled: access lines wait up to 100 ms in the lb's buffer
        got = {(a.get("path"), a.get("protocol"), a.get("status")) for a in access_lines()[before:]}
        return got if {("/", "h2", 200), ("/api/hello", "h2", 200)} <= got else None
    wait_for("h2 200 lines for / and /api/hello from chromium in the access log", seen, timeout=5)
    log("chromium over https shows Hello, World! in #dynamic-content; / and /api/hello went over h2")


def scenario_files():
    """From here on, lb serves file certificates made here (mounted from a temp dir):
    localhost (default) and other.test, signed by a test CA."""
    certs = WORK / "tls"
    certs.mkdir()
    os.chmod(WORK, 0o755)
    os.chmod(certs, 0o755)
    make_ca(WORK)
    make_leaf(certs, "localhost", "localhost", "1001", WORK)
    make_leaf(certs, "other", "other.test", "1002", WORK)
    src = (ROOT / "deploy" / "lb.yaml").read_text()
    cfg = WORK / "lb.yaml"
    cfg.write_text(with_file_certificates(src))
    cfg.chmod(0o644)
    override = WORK / "compose.override.yaml"
    # Compose merges volumes by their target: these two replace or add theirs, the lb's
    # state volume stays.
    override.write_text(
        "services:\n  lb:\n    volumes:\n"
        f"      - {cfg}:/etc/lb/lb.yaml:ro\n"
        f"      - {certs}:/etc/lb/tls:ro\n")
    e2e.COMPOSE_FILES = ["-f", "compose.yaml", "-f", str(override)]
    STATE["ca"] = WORK / "ca.pem"
    STATE["certs"] = certs
    compose("up", "-d", "--wait", "lb", timeout=120)
    check(served_serial("localhost") == "1001", "localhost is not served the test leaf 1001")
    check_https_page_and_api()


def with_file_certificates(src):
    """src (deploy/lb.yaml) with the certificates of its TLS listener replaced by the
    test's files."""
    lines = src.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.strip() == "certificates:"), None)
    check(start is not None, "no `certificates:` in deploy/lb.yaml")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip()
                                or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    pad = " " * (indent + 2)
    block = (f"{pad}- {{ cert: /etc/lb/tls/localhost.pem, key: /etc/lb/tls/localhost.key, "
             "names: [localhost], default: true }\n"
             f"{pad}- {{ cert: /etc/lb/tls/other.pem, key: /etc/lb/tls/other.key, names: [other.test] }}\n")
    return "".join(lines[:start + 1]) + block + "".join(lines[end:])


def scenario_s_client():
    """SNI picks the certificate, ALPN offers h2, TLS 1.2 and 1.3 are accepted and
    TLS 1.0 and 1.1 refused by the lb (counted as handshake failures)."""
    need("certs")
    ca = ["-CAfile", str(STATE["ca"]), "-verify_return_error"]
    for name, serial in (("localhost", "1001"), ("other.test", "1002"), ("unknown.test", "1001"),
                         (None, "1001")):
        pem, res = served_cert(name, ca if name != "unknown.test" else ())
        check(serial_of(pem) == serial, f"SNI {name}: serial {serial_of(pem)}, not {serial}")
        if name in ("localhost", "other.test"):
            check("Verify return code: 0 (ok)" in res.stdout, f"SNI {name}: {res.stdout[-600:]}")
    _, res = served_cert("localhost", ca + ["-alpn", "h2,http/1.1"])
    check("ALPN protocol: h2" in res.stdout, f"ALPN h2 not chosen: {res.stdout[-600:]}")
    _, res = served_cert("localhost", ca + ["-alpn", "http/1.1"])
    check("ALPN protocol: http/1.1" in res.stdout, f"ALPN http/1.1 not chosen: {res.stdout[-600:]}")
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        _, res = served_cert("localhost", ca + [flag])
        # "New, TLSv1.3, Cipher is ...": the handshake's line (the session block with
        # "Protocol :" waits for a TLS 1.3 ticket, which s_client may quit before).
        check(res.returncode == 0 and f"New, {version}, Cipher is " in res.stdout,
              f"{flag}: exit {res.returncode}: {res.stdout[-600:]} {res.stderr[-300:]}")
    failures = metric("lb_tls_handshake_failures_total")
    for flag in ("-tls1", "-tls1_1"):
        # Debian's openssl refuses TLS < 1.2 by itself (MinProtocol, SECLEVEL 2): lift
        # that, so the hello really reaches the lb, and -msg shows it was sent.
        cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{TLS_PORT}", "-servername",
               "localhost", flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-msg"]
        res = run(cmd, timeout=15, input="")
        check(res.returncode != 0, f"{flag} was accepted: {res.stdout[-600:]}")
        check(">>> " in res.stdout and "ClientHello" in res.stdout,
              f"{flag}: no ClientHello was sent: {res.stdout[-600:]} {res.stderr[-600:]}")
        check("BEGIN CERTIFICATE" not in res.stdout, f"{flag}: a certificate came back")
    _, took = wait_for("lb_tls_handshake_failures_total to count the two refused hellos",
                       lambda: metric("lb_tls_handshake_failures_total") >= failures + 2, timeout=5)
    log("SNI localhost -> 1001, other.test -> 1002, unknown/none -> default 1001; ALPN h2; "
        "TLS 1.2 and 1.3 accepted; TLS 1.0 and 1.1 refused and counted")


class KeptConnection:
    """One HTTP/1.1 keep-alive connection over TLS, verified against the CA, that must
    stay the same connection (never reopened) for every request."""

    def __init__(self):
        ctx = ssl.create_default_context(cafile=str(STATE["ca"]))
        ctx.set_alpn_protocols(["http/1.1"])
        self.conn = http.client.HTTPSConnection("localhost", TLS_PORT, context=ctx, timeout=10)
        self.conn.connect()
        self.sock = self.conn.sock
        self.serial = serial_of(ssl.DER_cert_to_PEM_cert(self.sock.getpeercert(binary_form=True)))

    def hello(self):
        self.conn.request("GET", "/api/hello")
        resp = self.conn.getresponse()
        body = resp.read()
        check(self.conn.sock is self.sock, "the kept connection was reopened")
        check(resp.status == 200 and body == b"Hello, World!", f"kept connection: {resp.status} {body!r}")

    def close(self):
        self.conn.close()


def reloads(result):
    return metric("lb_config_reloads_total", f'result="{result}"')


def oha(seconds, connections=8, rate=400, extra=()):
    """oha over https (HTTP/1.1), bounded in time (-z) and in rate (-q): a Popen; its JSON
    summary is read by oha_summary()."""
    exe = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
    cmd = [exe, "-z", f"{seconds}s", "-w", "-c", str(connections), "-q", str(rate), "--no-tui",
           "--output-format", "json", "--cacert", str(STATE["ca"]), *extra, f"{BASE}/api/hello"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def oha_summary(proc, name, seconds, what="8 keep-alive connections"):
    out, err = proc.communicate(timeout=seconds + 60)
    check(proc.returncode == 0, f"oha exited {proc.returncode}: {err[-600:]}")
    data = json.loads(out)
    codes = {int(k): v for k, v in data.get("statusCodeDistribution", {}).items()}
    errors = data.get("errorDistribution", {})
    total = sum(codes.values()) + sum(errors.values())
    line = f"{name}: {total} requests (oha, https, {what}), " \
           f"status {codes}, errors {errors or 0}"
    RESULTS.append(line)
    log(line)
    check(total > 0 and codes.get(200, 0) == total, f"{name}: not every request answered 200: "
          f"status {codes}, errors {errors}")
    return total


def scenario_rotation():
    """Replace the certificate files under oha load and send SIGHUP: 0 failed requests,
    new handshakes get the new serial, a connection opened before still answers."""
    certs = need("certs")
    kept = KeptConnection()
    kept.hello()
    check(kept.serial == "1001", f"kept connection got serial {kept.serial}, not 1001")
    ok_before = reloads("success")
    seconds = 8
    proc = oha(seconds)
    # Beside it, a new TLS handshake for every request, so handshakes straddle the swap.
    fresh = oha(seconds, connections=2, rate=40, extra=["--disable-keepalive"])
    try:
        # Let the load reach full speed on the old certificate (pacing, not readiness).
        time.sleep(2)
        make_leaf(certs, "localhost", "localhost", "2001", WORK)
        compose("kill", "-s", "HUP", "lb")
        _, took = wait_for("the new certificate on new handshakes",
                           lambda: served_serial("localhost") == "2001", timeout=10)
        check(reloads("success") == ok_before + 1, "lb_config_reloads_total{result=\"success\"} "
              f"did not move by 1 (was {ok_before}, now {reloads('success')})")
    finally:
        total = oha_summary(proc, "rotation under load", seconds)
        total += oha_summary(fresh, "rotation under load", seconds, "a new connection per request")
    kept.hello()
    kept.close()
    check(served_serial("other.test") == "1002", "other.test changed by the localhost rotation")
    status = json.loads(admin("/status"))
    served = {c["file"]: c["serial"].upper().lstrip("0")
              for c in status["tls"][0]["certificates"]}
    check(served.get("/etc/lb/tls/localhost.pem") == "2001", f"/status tls certificates: {served}")
    log(f"rotated 1001 -> 2001 under {total} requests, 0 failed; new handshakes saw it "
        f"{took:.1f}s after SIGHUP; the connection opened before still answers")


def scenario_bad_rotation():
    """A key that does not match the certificate: the reload is rejected (metric,
    /status, log), the old certificate keeps serving."""
    certs = need("certs")
    failed_before = reloads("failure")
    # A certificate 3001 for localhost with the key of other.test beside it.
    make_leaf(WORK, "bad", "localhost", "3001", WORK)
    good = {f: (certs / f).read_bytes() for f in ("localhost.pem", "localhost.key")}
    tmp = certs / ".localhost.pem"
    shutil.copyfile(WORK / "bad.pem", tmp)
    tmp.chmod(0o644)
    os.replace(tmp, certs / "localhost.pem")
    shutil.copyfile(certs / "other.key", certs / ".localhost.key")
    (certs / ".localhost.key").chmod(0o644)
    os.replace(certs / ".localhost.key", certs / "localhost.key")
    compose("kill", "-s", "HUP", "lb")
    wait_for("lb_config_reloads_total{result=\"failure\"} to move",
             lambda: reloads("failure") == failed_before + 1, timeout=10)
    last = json.loads(admin("/status"))["reloads"]["last"]
    check(last["result"] == "rejected", f"/status reloads.last: {last}")
    check(any("is not the key of the certificate" in e and "localhost.key" in e
              for e in last["errors"]), f"/status reloads.last.errors: {last['errors']}")
    logs = lb_logs()
    check("configuration reload rejected" in logs and "is not the key of the certificate" in logs,
          f"the lb log does not say why the reload was rejected: {logs[-1500:]}")
    check(served_serial("localhost") == "2001", "the old certificate 2001 is not served any more")
    version, status, body = curl(f"{BASE}/api/hello", "--http2")
    check((version, status, body) == ("2", 200, b"Hello, World!"), f"after the bad rotation: "
          f"{version} {status} {body!r}")
    # Put the good pair back; the next reload applies it again.
    for f, data in good.items():
        (certs / f".{f}").write_bytes(data)
        (certs / f".{f}").chmod(0o644)
        os.replace(certs / f".{f}", certs / f)
    log("mismatched key: reload rejected (metric, /status, log), 2001 still served")


def h2load(seconds, clients=4, streams=8, rps=100):
    """h2load over TLS (h2 by ALPN), bounded in time (-D) and rate (--rps per client)."""
    cmd = ["h2load", "-D", str(seconds), "-c", str(clients), "-m", str(streams),
           f"--rps={rps}", f"{BASE}/api/hello"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def h2load_summary(proc, name, seconds):
    out, _ = proc.communicate(timeout=seconds + 60)
    check(proc.returncode == 0, f"h2load exited {proc.returncode}: {out[-800:]}")
    check("Application protocol: h2" in out, f"h2load did not speak h2: {out[-800:]}")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    check(m, f"no requests line in h2load's summary: {out[-800:]}")
    total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    check(s, f"no status codes line in h2load's summary: {out[-800:]}")
    c2, c3, c4, c5 = map(int, s.groups())
    line = (f"{name}: {done} requests over h2 (h2load), {succeeded} succeeded, {failed} failed, "
            f"{errored} errored, {timeout} timeout; status {c2} 2xx, {c3} 3xx, {c4} 4xx, {c5} 5xx")
    RESULTS.append(line)
    log(line)
    check(done > 0 and failed == errored == timeout == 0 and succeeded == done == c2
          and c3 == c4 == c5 == 0, f"{name}: not every request succeeded with a 2xx: {line}")


def scenario_scale_h2():
    """backend 3 -> 5 under h2 load: 0 failed requests, the new replicas in rotation."""
    check(len(replicas_seen(12)) == 3, "expected 3 replicas before scaling")
    seconds = 10
    proc = h2load(seconds)
    try:
        time.sleep(1)  # pacing: the load is under way before the scale
        compose("up", "-d", "--no-recreate", "--scale", "backend=5", timeout=120)
        _, took = wait_for("5 replicas in rotation", lambda: len(replicas_seen(10)) == 5,
                           timeout=30, interval=0.1)
    finally:
        h2load_summary(proc, "scale 3->5 over h2", seconds)
    log(f"5 replicas in rotation {took:.1f}s after compose started them")


def scenario_logs():
    """What the clients did (TLS 1.0 hellos, handshakes left at once, h2 and h1 loads cut
    at their deadline, a browser) left no ERROR line: the only ERROR lines are the rejected
    reload's. The requests are counted by protocol and TLS version."""
    need("certs")
    errors = []
    for line in lb_logs().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("level") != "ERROR" or obj.get("target") == "lb::reload":
            continue
        errors.append(line[:300])
    check(not errors, f"{len(errors)} ERROR lines in the lb's log: {errors[:5]}")
    # `openssl s_client -alpn h2` leaving before the h2 preface is the client's doing:
    # counted, not logged at ERROR.
    protocol = metric("lb_client_errors_total", 'reason="protocol"')
    check(protocol >= 1, f"lb_client_errors_total{{reason=\"protocol\"}} is {protocol}")
    counts = {(p, t): metric("lb_requests_by_protocol_total", f'protocol="{p}",tls="{t}"')
              for p, t in (("h2", "TLSv1.3"), ("h1", "TLSv1.3"), ("h1", "none"))}
    check(all(n > 0 for n in counts.values()), f"lb_requests_by_protocol_total: {counts}")
    log(f"no other ERROR line; requests by protocol: {counts}")


def scenario_hardening():
    """The lb keeps its hardening with HTTPS and its state volume."""
    e2e.check_hardened(compose("ps", "-q").stdout.split())
    size = int(docker("image", "inspect", "-f", "{{.Size}}", f"softy-pinko/lb:{e2e.TAG}").strip())
    check(size <= 16_000_000, f"image lb is {size / 1e6:.1f} MB (> 16 MB)")
    RESULTS.append(f"lb image: {size / 1e6:.1f} MB")


SCENARIOS = [
    ("up", scenario_up),
    ("browser", scenario_browser),
    ("files", scenario_files),
    ("s_client", scenario_s_client),
    ("rotation", scenario_rotation),
    ("bad_rotation", scenario_bad_rotation),
    ("scale_h2", scenario_scale_h2),
    ("logs", scenario_logs),
    ("hardening", scenario_hardening),
]


def main():
    for tool in ("openssl", "curl", "h2load"):
        if shutil.which(tool) is None:
            print(f"e2e: {tool} is not installed (deploy/bootstrap.sh installs it)")
            print("0 passed, 1 failed")
            return 1

    def show_logs():
        print(compose("logs", "--no-color", "--tail", "40", check_rc=False).stdout[-6000:])

    def teardown():
        compose("down", "--remove-orphans", "--volumes", "--timeout", "20", check_rc=False, timeout=120)
        shutil.rmtree(WORK, ignore_errors=True)

    return e2e.run_suite(SCENARIOS, show_logs, teardown)


if __name__ == "__main__":
    sys.exit(main())
