#!/usr/bin/env python3
"""Writes the committed seed corpus, seeds/<target>/, from the repository's own files and
the edge cases below. Run it from anywhere after changing a config example or adding a
case (the files it writes are committed; libFuzzer starts every run from them):

    python3 lb/fuzz/make_seeds.py

Certificates for the `pem` target are made with the openssl command line, valid for ten
years from the day the script runs (the target checks them at 2027-01-15). Their keys are
test keys, made for the corpus and used nowhere else.
"""

import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = HERE / "seeds"


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ---------------------------------------------------------------- config

GOOD_TAIL = """
routes:
  - { prefix: /, upstream: web }
upstreams:
  web: { discovery: { static: ["127.0.0.1:9000"] } }
"""

# Shapes of the configs lb/tests writes (config_check, limits, queue, tls, https_edge,
# upstream_tls), valid and broken.
TEST_CONFIGS = {
    "test-unknown-key": 'version: 1\nserver: { listen: ["127.0.0.1:8080"], colour: blue }\n' + GOOD_TAIL,
    "test-flush-too-long": 'version: 1\nserver: { listen: ["127.0.0.1:8080"], access_log_flush: 11s }\n' + GOOD_TAIL,
    "test-bad-duration": 'version: 1\nroutes: [ { prefix: /, upstream: api } ]\nupstreams:\n  api:\n    discovery: { static: ["127.0.0.1:1"] }\n    health_check: { path: /ready, interval: 5x }\n',
    "test-unknown-upstream": 'version: 1\nroutes: [ { prefix: /api/, upstream: nope }, { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: ["127.0.0.1:1"] } }\n',
    "test-empty-pool": "version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [] } }\n",
    "test-zero-weight": 'version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [ { addr: "127.0.0.1:1", weight: 0 } ] } }\n',
    "test-duplicate-route": 'version: 1\nroutes: [ { prefix: /, upstream: web }, { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: ["127.0.0.1:1"] } }\n',
    "test-name-as-address": 'version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: ["backend:80"] } }\n',
    "test-bad-listen": 'version: 1\nserver: { listen: ["8080"] }\n' + GOOD_TAIL,
    "test-invalid-yaml": "version: 1\nroutes: [ { prefix: /\n",
    "test-version-2": "version: 2\n" + GOOD_TAIL,
    "test-several-errors": 'version: 1\nserver: { grace_period: soon, admin: "localhost:9901" }\nroutes: [ { prefix: api, upstream: missing } ]\nupstreams:\n  api:\n    discovery: { dns: "backend" }\n    retries: 99\n    timeouts: { read: 2 }\n',
    "test-harness": 'version: 1\nserver:\n  listen: ["127.0.0.1:0"]\n  admin: "127.0.0.1:0"\n  threads: 2\n  grace_period: 2s\n  shutdown_timeout: 1s\n  pid_file: /tmp/x/lb.pid\n  upgrade_sock: /tmp/x/upgrade.sock\n  access_log_flush: 0s\n' + GOOD_TAIL,
    "test-limits": 'version: 1\nroutes:\n  - { prefix: /small/, upstream: web, max_body_size: 16 }\n  - { prefix: /kib/, upstream: web, max_body_size: 1KiB }\n  - { prefix: /, upstream: web, max_body_size: "10 MiB" }\nupstreams:\n  web: { discovery: { static: ["127.0.0.1:9000"] } }\n',
    "test-limits-bad": 'version: 1\nroutes:\n  - { prefix: /a/, upstream: web, max_body_size: 0 }\n  - { prefix: /b/, upstream: web, max_body_size: 1TiB }\n  - { prefix: /c/, upstream: web, max_body_size: -1 }\n  - { prefix: /, upstream: web, max_body_size: 17179869184GiB }\nupstreams:\n  web: { discovery: { static: ["127.0.0.1:9000"] } }\n',
    "test-queue": 'version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web:\n    discovery: { static: ["127.0.0.1:9000"] }\n    queue_timeout: 0s\n    queue_max: 1\n    health_check: { path: /ready, interval: 100ms, timeout: 100ms, healthy_after: 1, unhealthy_after: 1 }\n',
    "test-queue-bad": 'version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web:\n    discovery: { static: ["127.0.0.1:9000"] }\n    queue_timeout: 61s\n    queue_max: 0\n',
    "test-tls": 'version: 1\nserver:\n  listen: ["127.0.0.1:0"]\n  tls_listen:\n    - address: "127.0.0.1:0"\n      protocols: [h2, http/1.1]\n      certificates:\n        - { cert: a.pem, key: a.key, names: ["A.test", "*.a.test"], default: true }\n        - { cert: b.pem, key: b.key }\n' + GOOD_TAIL,
    "test-tls-bad": 'version: 1\nserver:\n  tls_listen:\n    - address: "127.0.0.1:0"\n      protocols: [h3, h2, h2]\n      certificates:\n        - { cert: a.pem, local_ca: /tmp/ca, names: ["*.*.a", "-a", ""], default: true }\n        - { key: b.key, default: true, names: [] }\n    - { address: "127.0.0.1:0", certificates: [] }\n' + GOOD_TAIL,
    "test-https-edge": 'version: 1\nserver:\n  listen: ["127.0.0.1:0"]\n  h2c: true\n  https_redirect: { port: 8443, exclude: [/health, /.well-known/] }\n  hsts: { max_age: 365d, include_subdomains: true, preload: true }\n  tls_listen:\n    - { address: "127.0.0.2:0", certificates: [ { local_ca: /tmp/lb-ca, names: [localhost, 127.0.0.1] } ] }\nroutes:\n  - { prefix: /api/, upstream: web, hsts: false }\n  - { prefix: /own/, upstream: web, hsts: { max_age: 1h } }\n  - { prefix: /, upstream: web, hsts: true }\nupstreams:\n  web: { discovery: { static: ["127.0.0.1:9000"] } }\n',
    "test-https-bad": 'version: 1\nserver:\n  https_redirect: { port: 0, exclude: [health] }\n  hsts: { max_age: 3y, preload: true }\nroutes:\n  - { prefix: /, upstream: web, hsts: 7 }\nupstreams:\n  web: { discovery: { static: ["127.0.0.1:9000"] } }\n',
    "test-upstream-tls": 'version: 1\nroutes: [ { prefix: /, upstream: api } ]\nupstreams:\n  api:\n    discovery: { dns: "backend.internal:8443", resolver: "127.0.0.1:53" }\n    tls: { sni: api.internal, verify: false }\n    host: api.internal\n    health_check: { path: /ready, host: api.internal }\n',
    "test-upstream-tls-bad": 'version: 1\nroutes: [ { prefix: /, upstream: api } ]\nupstreams:\n  api:\n    discovery: { static: ["127.0.0.1:1"] }\n    tls: { sni: "", ca_file: /nonexistent/ca.pem }\n',
}

EDGE_CONFIGS = {
    "edge-empty": "",
    "edge-empty-map": "{}",
    "edge-version-only": "version: 1\n",
    "edge-null": "~\n",
    "edge-list": "- 1\n- 2\n",
    "edge-bom-crlf": "\ufeffversion: 1\r\n" + GOOD_TAIL.replace("\n", "\r\n"),
    "edge-tabs": "version: 1\nroutes:\n\t- { prefix: /, upstream: web }\n",
    "edge-duplicate-keys": "version: 1\nversion: 1\n" + GOOD_TAIL,
    "edge-anchors": 'version: 1\nx: &a { discovery: { static: ["127.0.0.1:1"] } }\n' + GOOD_TAIL,
    "edge-merge-key": 'version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  base: &b { discovery: { static: ["127.0.0.1:1"] } }\n  web: { <<: *b, retries: 1 }\n',
    "edge-aliases-fanout": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    "edge-deep-nesting": "a: " + "[" * 200 + "]" * 200 + "\n",
    "edge-tags": "version: !!int 1\nserver: !custom { threads: !!str 2 }\n" + GOOD_TAIL,
    "edge-binary": "version: 1\nserver: { pid_file: !!binary aGVsbG8= }\n" + GOOD_TAIL,
    "edge-huge-numbers": 'version: 1\nserver: { threads: 99999999999999999999999, upstream_keepalive_pool_size: 9223372036854775807, grace_period: "18446744073709551615s 999999999ns", shutdown_timeout: 584542y }\n' + GOOD_TAIL,
    "edge-limits-max": 'version: 1\nserver: { threads: 1024, access_log_flush: 10s, hsts: { max_age: 730d } }\nroutes: [ { prefix: /, upstream: web, max_body_size: 17179869183GiB } ]\nupstreams:\n  web:\n    discovery: { static: [ { addr: "127.0.0.1:65535", weight: 1000 } ] }\n    retries: 8\n    queue_timeout: 60s\n    queue_max: 1000000\n    health_check: { healthy_after: 100, unhealthy_after: 100 }\n',
    "edge-limits-over": 'version: 1\nserver: { threads: 1025, access_log_flush: 10001ms, hsts: { max_age: 731d } }\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web:\n    discovery: { static: [ { addr: "127.0.0.1:65536", weight: 1001 } ] }\n    retries: 9\n    queue_timeout: 60001ms\n    queue_max: 1000001\n    health_check: { healthy_after: 101, unhealthy_after: 0 }\n',
    "edge-unicode": 'version: 1\nroutes: [ { prefix: "/\u00e9t\u00e9/\U0001F600", upstream: "w\u00e9b" } ]\nupstreams:\n  "w\u00e9b": { discovery: { dns: "b\u00fccher.example:80" } }\n',
    "edge-newlines-in-values": 'version: 1\nroutes: [ { prefix: "/a\\nb\\"c\\\\", upstream: web } ]\nupstreams:\n  web:\n    discovery: { static: ["127.0.0.1:9000"] }\n    host: "a\\r\\nX-Injected: 1"\n    health_check: { path: "/ready\\n", host: "h\\nx" }\n',
    "edge-control-chars": 'version: 1\nserver: { pid_file: "\\0", upgrade_sock: "\\x7f" }\n' + GOOD_TAIL,
    "edge-ipv6": 'version: 1\nserver: { listen: ["[::]:8080", "[::1]:0"], admin: "[::1]:9901" }\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: ["[fe80::1%2]:80", "[::ffff:127.0.0.1]:1"] } }\n',
    "edge-dns-names": 'version: 1\nroutes: [ { prefix: /, upstream: a } ]\nupstreams:\n  a: { discovery: { dns: "a.b.c.:0" } }\n  b: { discovery: { dns: ":80" } }\n  c: { discovery: { dns: "' + "x" * 64 + '.test:80" } }\n  d: { discovery: { dns: "x:65536", static: ["127.0.0.1:1"] } }\n',
    "edge-long-line": "version: 1\n# " + "x" * 5000 + "\n" + GOOD_TAIL,
}


def config_seeds():
    for f in sorted((ROOT / "deploy").glob("lb*.yaml")) + sorted((ROOT / "deploy/examples").glob("*.yaml")):
        write("config", "repo-" + str(f.relative_to(ROOT)).replace("/", "-"), f.read_bytes())
    for readme in ["lb/README.md", "README.md"]:
        text = (ROOT / readme).read_text()
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
            write("config", f"readme-{readme.replace('/', '-')}-{i}", block)
    for name, text in {**TEST_CONFIGS, **EDGE_CONFIGS}.items():
        write("config", name, text)


# ---------------------------------------------------------------- config_field

# Must list lb::fuzzing::FIELDS's paths in order (the seed's first byte is 2 * index, or
# 2 * index + 1 for a value read as YAML).
FIELDS = [
    "server.listen[0]", "server.admin", "server.grace_period", "server.shutdown_timeout",
    "server.access_log_flush", "server.threads", "server.pid_file", "server.hsts.max_age",
    "server.https_redirect.port", "server.https_redirect.exclude[0]",
    "server.tls_listen[0].address", "server.tls_listen[0].protocols[0]",
    "server.tls_listen[0].certificates[0].names[0]", "routes[0].prefix",
    "routes[0].max_body_size", "routes[0].hsts", "upstreams.$V",
    "upstreams.web.discovery.static[0]", "upstreams.web.discovery.dns",
    "upstreams.web.discovery.interval", "upstreams.web.discovery.resolver",
    "upstreams.web.selection", "upstreams.web.retries", "upstreams.web.queue_timeout",
    "upstreams.web.timeouts.connect", "upstreams.web.host", "upstreams.web.health_check.path",
    "upstreams.web.health_check.host", "upstreams.web.tls.sni",
]

ADDRESSES = ["127.0.0.1:8080", "[::1]:0", "0.0.0.0:65535", "127.0.0.1:65536", "localhost:80", "127.0.0.1", ":80", "[::1", "1.2.3.4:08"]
DURATIONS = ["1s", "0s", "500ms", "1m 30s", " 2s ", "61s", "10001ms", "18446744073709551615s 999999999ns", "584542y", "2", "1x", "-1s", "1.5s"]
SIZES = ["1", "64", "0", "1KiB", "10MiB", "10 MiB", "17179869183GiB", "17179869184GiB", "18446744073709551615", "18446744073709551616", "1TiB", "1kib", "-1", "+1"]
NAMES = ["a.test", "*.a.test", "A.TEST", "*.*.a", "-a.test", "a-.test", "", "x" * 64 + ".test", ("a." * 127) + "a", "b\u00fccher.test", "127.0.0.1"]
PATHS = ["/", "/ready", "/a b", "/a\nb", "api", "", "/%zz", "/?q=1#f", "//x", "/\u00e9"]
HOSTS = ["api.internal", "api.internal:8080", "[::1]:80", "a\nb", "a\r\nX-Injected: 1", "a b", "\u00e9", "", "user@host", "\x7f"]
COMMON = ["", " ", "\u00e9", "\x00", "a\nb", "\U0001F600", "x" * 300]

FIELD_VALUES = {
    "server.listen[0]": ADDRESSES, "server.admin": ADDRESSES,
    "server.tls_listen[0].address": ADDRESSES, "upstreams.web.discovery.static[0]": ADDRESSES,
    "upstreams.web.discovery.resolver": ADDRESSES,
    "server.grace_period": DURATIONS, "server.shutdown_timeout": DURATIONS,
    "server.access_log_flush": DURATIONS, "server.hsts.max_age": DURATIONS + ["730d", "731d"],
    "upstreams.web.discovery.interval": DURATIONS, "upstreams.web.queue_timeout": DURATIONS + ["60s", "60001ms"],
    "upstreams.web.timeouts.connect": DURATIONS,
    "routes[0].max_body_size": SIZES,
    "server.tls_listen[0].certificates[0].names[0]": NAMES, "upstreams.web.tls.sni": NAMES,
    "routes[0].prefix": PATHS, "server.https_redirect.exclude[0]": PATHS,
    "upstreams.web.health_check.path": PATHS,
    "upstreams.web.host": HOSTS, "upstreams.web.health_check.host": HOSTS,
    "upstreams.web.discovery.dns": ["backend:5252", "a.b.:80", "backend", "backend:0", "backend:65536", "-a:1", "a..b:1", "[::1]:80", "a_b:1", "backend:+80"],
    "upstreams.$V": ["web", "api-1.v2_x", "a b", "a.b", "\u00e9", "a\nb"],
    "server.pid_file": ["/tmp/lb.pid", "relative.pid"],
    "server.tls_listen[0].protocols[0]": ["h2", "http/1.1", "h3", "HTTP/1.1"],
    "upstreams.web.selection": ["round_robin", "least_conn", "RoundRobin"],
}
YAML_VALUES = {
    "server.threads": ["1", "1024", "1025", "0", "-1", "9223372036854775808", "1.5", "'2'"],
    "server.https_redirect.port": ["443", "0", "65535", "65536", "-443"],
    "upstreams.web.retries": ["0", "8", "9", "-1"],
    "routes[0].hsts": ["true", "false", "{ max_age: 1h }", "{ maxage: 1d }", "{ max_age: 1d, preload: true }", "7", "[]"],
    "routes[0].max_body_size": ["10485760", "0", "-1", "1.5", "18446744073709551616"],
    "server.listen[0]": ["8080", "[1, 2]", "{ a: 1 }", "~"],
    "upstreams.web.discovery.static[0]": ['{ addr: "127.0.0.1:1", weight: 1000 }', '{ addr: "127.0.0.1:1", weight: 0 }', "{ weight: 2 }", '{ addr: 1, colour: red }', "7"],
    "server.grace_period": ["3", "{ s: 3 }", "[1s]", "true"],
}


def config_field_seeds():
    for i, path in enumerate(FIELDS):
        slug = re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")
        for j, v in enumerate(FIELD_VALUES.get(path, []) + COMMON):
            write("config_field", f"{i:02}-{slug}-str-{j:02}", bytes([2 * i]) + v.encode())
        for j, v in enumerate(YAML_VALUES.get(path, [])):
            write("config_field", f"{i:02}-{slug}-yaml-{j:02}", bytes([2 * i + 1]) + v.encode())


# ---------------------------------------------------------------- request

def req(lines, body="", eol="\r\n"):
    return (eol.join(lines) + eol + eol + body).encode()


H = "Host: example.test"
REQUESTS = {
    "get-root": req(["GET / HTTP/1.1", H]),
    "get-api": req(["GET /api/x?y=1 HTTP/1.1", H, "X-Request-Id: req-1"]),
    "get-static": req(["GET /static/app.css HTTP/1.1", H, "Connection: keep-alive"]),
    "head-api": req(["HEAD /api/ HTTP/1.1", H]),
    "http10-no-host": req(["GET /api/ HTTP/1.0"]),
    "http11-no-host": req(["GET /api/ HTTP/1.1"]),
    "absolute-form": req(["GET http://example.test/api/x HTTP/1.1", H]),
    "absolute-form-other-host": req(["GET http://other.test/api/x HTTP/1.1", H]),
    "absolute-form-userinfo": req(["GET http://u:p@example.test/ HTTP/1.1"]),
    "acme-path": req(["GET /.well-known/acme-challenge/token HTTP/1.1", H]),
    "host-with-port": req(["GET /x HTTP/1.1", "Host: example.test:8080"]),
    "host-ipv6": req(["GET /x HTTP/1.1", "Host: [::1]:8080"]),
    "host-userinfo": req(["GET /x HTTP/1.1", "Host: user@evil.test"]),
    "host-empty": req(["GET /x HTTP/1.1", "Host: "]),
    "host-twice": req(["GET /api/ HTTP/1.1", H, "Host: other.test"]),
    "request-id-bad": req(["GET /api/ HTTP/1.1", H, "X-Request-Id: bad id"]),
    "request-id-twice": req(["GET /api/ HTTP/1.1", H, "X-Request-Id: a", "X-Request-Id: b"]),
    "request-id-long": req(["GET /api/ HTTP/1.1", H, "X-Request-Id: " + "a" * 129]),
    "strip-double-slash": req(["GET /api//x HTTP/1.1", H]),
    "hop-by-hop": req(["GET /api/ HTTP/1.1", H, "Connection: keep-alive, X-Secret", "X-Secret: 1", "Keep-Alive: timeout=5", "Proxy-Connection: keep-alive", "TE: trailers", "Upgrade: websocket", "Proxy-Authorization: Basic eA=="]),
    "expect-continue": req(["POST /api/ HTTP/1.1", H, "Expect: 100-continue", "Content-Length: 5"], "hello"),
    # the limits' edges: /api/ takes 64 bytes
    "post-at-limit": req(["POST /api/ HTTP/1.1", H, "Content-Length: 64"], "x" * 64),
    "post-over-limit": req(["POST /api/ HTTP/1.1", H, "Content-Length: 65"], "x" * 65),
    "post-huge-length": req(["POST /api/ HTTP/1.1", H, "Content-Length: 18446744073709551615"]),
    "post-overflow-length": req(["POST /api/ HTTP/1.1", H, "Content-Length: 18446744073709551616"]),
    "chunked-at-limit": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "40\r\n" + "x" * 64 + "\r\n0\r\n\r\n"),
    "chunked-over-limit": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "20\r\n" + "x" * 32 + "\r\n21\r\n" + "x" * 33 + "\r\n0\r\n\r\n"),
    "long-uri": req(["GET /api/" + "a" * 8200 + " HTTP/1.1", H]),
    "long-header": req(["GET /api/ HTTP/1.1", H, "X-Big: " + "b" * 33000]),
    "many-headers": req(["GET /api/ HTTP/1.1", H] + [f"X-H{i}: {i}" for i in range(260)]),
    "pipelined": req(["GET /api/a HTTP/1.1", H]) + req(["GET /api/b HTTP/1.1", H]),
    "h2c-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "lf-only": req(["GET /api/ HTTP/1.1", H], eol="\n"),
    "nul-in-path": req(["GET /api/\x00 HTTP/1.1", H]),
    "bad-method": req(["G(T /api/ HTTP/1.1", H]),
    "lowercase-method": req(["get /api/ HTTP/1.1", H]),
    "http09": b"GET /\r\n",
    "http2-version": req(["GET / HTTP/2.0", H]),
    "garbage": bytes(range(256)),
    "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + b"\x00" * 32,
    "trailers": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked", "Trailer: X-T"], "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    "chunk-extension": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "5;name=value\r\nhello\r\n0\r\n\r\n"),
    # request smuggling shapes
    "smuggle-cl-te": req(["POST /api/ HTTP/1.1", H, "Content-Length: 6", "Transfer-Encoding: chunked"], "0\r\n\r\nG"),
    "smuggle-te-cl": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked", "Content-Length: 4"], "5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"),
    "smuggle-two-cl-differ": req(["POST /api/ HTTP/1.1", H, "Content-Length: 5", "Content-Length: 6"], "hello!"),
    "smuggle-two-cl-same": req(["POST /api/ HTTP/1.1", H, "Content-Length: 5", "Content-Length: 5"], "hello"),
    "smuggle-cl-list": req(["POST /api/ HTTP/1.1", H, "Content-Length: 5, 6"], "hello!"),
    "smuggle-cl-plus": req(["POST /api/ HTTP/1.1", H, "Content-Length: +5"], "hello"),
    "smuggle-cl-negative": req(["POST /api/ HTTP/1.1", H, "Content-Length: -1"], "hello"),
    "smuggle-cl-hex": req(["POST /api/ HTTP/1.1", H, "Content-Length: 0x5"], "hello"),
    "smuggle-te-chunked-identity": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked, identity"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-identity-chunked": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: identity, chunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-xchunked": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: xchunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-chunked-x": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunkedx"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-twice": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked", "Transfer-Encoding: identity"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-space-before-colon": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding : chunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-cl-space-before-colon": req(["POST /api/ HTTP/1.1", H, "Content-Length : 5"], "hello"),
    "smuggle-te-tab": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding:\tchunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-tab-before-colon": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding\t: chunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-obs-fold": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding:", " chunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-obs-fold-tab": req(["POST /api/ HTTP/1.1", H, "X-Pad: a", "\tTransfer-Encoding: chunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-uppercase": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: CHUNKED"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-quoted": req(["POST /api/ HTTP/1.1", H, 'Transfer-Encoding: "chunked"'], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-http10": req(["POST /api/ HTTP/1.0", H, "Transfer-Encoding: chunked"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-te-nul": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked\x00"], "5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-header-cr": b"POST /api/ HTTP/1.1\r\nHost: example.test\rTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "smuggle-chunk-size-invalid": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "zz\r\nhello\r\n0\r\n\r\n"),
    "smuggle-chunk-size-overflow": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "smuggle-chunk-size-negative": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "-5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-chunk-size-0x": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "0x5\r\nhello\r\n0\r\n\r\n"),
    "smuggle-chunk-size-space": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "5 \r\nhello\r\n0\r\n\r\n"),
    "smuggle-chunk-lf-only": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "5\nhello\n0\n\n"),
    "smuggle-chunk-short": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "10\r\nhello\r\n0\r\n\r\n"),
    "smuggle-chunk-long": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "2\r\nhello\r\n0\r\n\r\n"),
    "smuggle-get-with-body": req(["GET /api/ HTTP/1.1", H, "Content-Length: 40"], "GET /api/admin HTTP/1.1\r\nHost: a\r\n\r\n"),
    "smuggle-body-is-request": req(["POST /api/ HTTP/1.1", H, "Transfer-Encoding: chunked"], "0\r\n\r\nGET /api/admin HTTP/1.1\r\nHost: a\r\n\r\n"),
}


def request_seeds():
    for name, data in REQUESTS.items():
        write("request", name, data)


# ---------------------------------------------------------------- pem

def pem_seeds():
    tmp = Path(tempfile.mkdtemp())
    try:
        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

        subj = ["-subj", "/CN=a.test", "-addext", "subjectAltName=DNS:a.test,DNS:*.a.test,IP:127.0.0.1"]
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ec.key", "-out", "ec.pem", "-days", "3650", *subj)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", "rsa.key", "-out", "rsa.pem", "-days", "3650", *subj)
        openssl("req", "-x509", "-newkey", "ed25519", "-nodes",
                "-keyout", "ed.key", "-out", "ed.pem", "-days", "3650", "-subj", "/CN=no-san")
        openssl("ec", "-in", "ec.key", "-out", "ec-sec1.key")
        openssl("rsa", "-in", "rsa.key", "-traditional", "-out", "rsa-pkcs1.key")
        r = lambda n: (tmp / n).read_text()
        write("pem", "ec-cert-and-key", r("ec.pem") + r("ec.key"))
        write("pem", "rsa-cert-and-key", r("rsa.pem") + r("rsa.key"))
        write("pem", "ed25519-no-san", r("ed.pem") + r("ed.key"))
        write("pem", "ec-sec1-key", r("ec.pem") + r("ec-sec1.key"))
        write("pem", "rsa-pkcs1-key", r("rsa.pem") + r("rsa-pkcs1.key"))
        write("pem", "key-mismatch", r("ec.pem") + r("rsa.key"))
        write("pem", "chain-two", r("ec.pem") + r("rsa.pem") + r("ec.key"))
        write("pem", "cert-only", r("ec.pem"))
        write("pem", "key-only", r("ec.key"))
        write("pem", "crlf", (r("ec.pem") + r("ec.key")).replace("\n", "\r\n"))
        body = r("ec.pem").splitlines()
        write("pem", "truncated-base64", "\n".join(body[:4]) + "\n-----END CERTIFICATE-----\n" + r("ec.key"))
        write("pem", "empty-cert", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n" + r("ec.key"))
        write("pem", "not-der", "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n" + r("ec.key"))
        write("pem", "unterminated", "-----BEGIN CERTIFICATE-----\nMIIB\n")
        write("pem", "wrong-labels", r("ec.pem").replace("CERTIFICATE", "X509 CRL"))
        write("pem", "empty", "")
    finally:
        shutil.rmtree(tmp)


# ---------------------------------------------------------------- access_line, service_kit

def access_line_seeds():
    rng = random.Random(12)  # fixed: the same files on every run
    for n in [0, 16, 64, 256, 1024]:
        write("access_line", f"random-{n}", bytes(rng.randrange(256) for _ in range(n)))
    write("access_line", "quotes-and-newlines", b'"\\\n\r\x00\xe2\x80\xa8' * 20)


def service_kit_seeds():
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 422 Unprocessable\r\ncontent-type: application/json\r\n\r\n{\"errors\":[\"a: b\"]}",
        b"HTTP/1.0 503\r\n\r\n",
        b"HTTP/1.1 +20 OK\r\n\r\n",
        b"HTTP/1.1 2\xc3\xa9 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1",
        b"",
    ]
    for i, a in enumerate(answers):
        write("service_kit", f"answer-{i}", b"\x00" + a)
    urls = ["http://127.0.0.1:9901/ready", "http://[::1]:9901/reload", "http://backend/ready",
            "http://u@h/", "http://127.0.0.1/a b", "http://127.0.0.1/a\r\nX-Injected: 1",
            "https://127.0.0.1/", "http:///x", "http://h\u00e9/\u00e9"]
    for i, u in enumerate(urls):
        write("service_kit", f"url-{i}", b"\x01" + u.encode())
    ids = [b"req-1", b"a\nb", b"bad id", b"x" * 128, b"x" * 129, b"", b"0f8fad5b-d9cb-469f-a165-70867728950e"]
    for i, v in enumerate(ids):
        write("service_kit", f"request-id-{i}", b"\x02" + v)


# ---------------------------------------------------------------- chunked

def chunked_seeds():
    """The chunked bodies the fast path reads: the shapes lb/tests/fast_path.rs scripts, the
    parser's edges (digits, line bounds), and the loose framings it refuses."""
    bodies = {
        "minimal": b"0\r\n\r\n",
        "two-chunks": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "extensions": b"5;name=value;flag\r\nhello\r\n0;last\r\n\r\n",
        "quoted-extension": b'3;a="x;y"\r\nabc\r\n0\r\n\r\n',
        "trailers": b"5\r\nhello\r\n0\r\nx-sum: 42\r\nEtag: \"v\"\r\n\r\n",
        "upper-hex-zeros": b"00000F\r\n0123456789abcde\r\n0000\r\n\r\n",
        "next-response-after": b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        "fifteen-digits": b"FFFFFFFFFFFFFFF\r\n",
        "sixteen-digits": b"1000000000000000\r\n",
        "bare-lf": b"5\nhello\n0\n\n",
        "space-before-semicolon": b"5 ;x\r\nhello\r\n0\r\n\r\n",
        "data-too-long": b"5\r\nhelloX\r\n0\r\n\r\n",
        "sign": b"+5\r\nhello\r\n0\r\n\r\n",
        "control-in-extension": b"1;a\x01\r\nx\r\n0\r\n\r\n",
        "long-extension": b"1;" + b"a" * 4097 + b"\r\nx\r\n0\r\n\r\n",
        "long-trailer": b"0\r\n" + b"a" * 4097 + b"\r\n\r\n",
        "empty": b"",
    }
    for name, body in bodies.items():
        write("chunked", name, body)


if __name__ == "__main__":
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    config_seeds()
    config_field_seeds()
    request_seeds()
    pem_seeds()
    access_line_seeds()
    service_kit_seeds()
    chunked_seeds()
    for d in sorted(SEEDS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")
