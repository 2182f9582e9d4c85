"""Configs for the three proxies, written to be equivalent to each other.

All three: listen on one loopback port, send /api/ round robin to the three
backends and everything else to the frontend, keep upstream connections alive
and reuse them, run `threads` workers, add X-Forwarded-For/-Proto/-Host and an
X-Request-Id (sent upstream and echoed to the client, as the lb does), and
write an access log line per request, or not, as `access_log` says. nginx
buffers its log lines as the lb does by default (32 KiB or 100 ms); HAProxy
writes each line to stdout.

The origin nginx (`nginx_static_conf`) serves the frontend's site from disk,
as the classic stack did, with the same worker count.
"""

import getpass
import os


def lb_yaml(*, tmp, listen, admin, threads, backends, frontend, access_log, metrics=None, server=None):
    """The lb config (schema in lb/README.md), static discovery only.

    `access_log`/`metrics` (None: as the lb ships) become settings through
    `lb_toggles`; `server` holds more `server:` settings, which win over
    everything else (e.g. {"threads": "1", "upstream_keepalive_pool_size": "256"}).
    """
    api = ", ".join(f'"{b}"' for b in backends)
    settings = {
        "listen": f'["{listen}"]',
        "admin": f'"{admin}"',
        "threads": threads,
        "grace_period": "1s",
        "shutdown_timeout": "1s",
        "pid_file": f'"{tmp}/lb.pid"',
        "upgrade_sock": f'"{tmp}/lb-upgrade.sock"',
    }
    settings.update(lb_toggles(access_log=access_log, metrics=metrics))
    settings.update(server or {})
    lines = "".join(f"  {k}: {v}\n" for k, v in settings.items())
    return f"""version: 1
server:
{lines}routes:
  - {{ prefix: /api/, upstream: api }}
  - {{ prefix: /, upstream: web }}
upstreams:
  api:
    discovery: {{ static: [{api}] }}
    health_check: {{ path: /ready, interval: 1s, timeout: 500ms, healthy_after: 1, unhealthy_after: 2 }}
  web:
    discovery: {{ static: ["{frontend}"] }}
    health_check: {{ path: /, interval: 1s, timeout: 500ms, healthy_after: 1, unhealthy_after: 2 }}
"""


# The lb's `server:` keys for the switches log-cost mode turns off and on
# (lb/src/config/raw.rs; both default to true). None: the lb has no such switch.
LB_SWITCHES = {"access_log": "access_log", "metrics": "metrics"}


def lb_toggles(*, access_log, metrics):
    """`server:` settings for the switches the lb has."""
    settings = {}
    for switch, on in (("access_log", access_log), ("metrics", metrics)):
        key = LB_SWITCHES[switch]
        if key is not None and on is not None:
            settings[key] = "true" if on else "false"
    return settings


def _user_line():
    # nginx run as root would switch its workers to `nobody`; keep the current
    # user so the workers can read the temp dir (and nothing runs as nobody).
    return f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""


def _nginx_main(tmp, threads):
    return f"""{_user_line()}worker_processes {threads};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
"""


def _nginx_http_common(tmp, access_log, name):
    # Buffered like the lb's shipped `access_log_flush: 100ms` (32 KiB or 100 ms).
    log = (
        f"access_log {tmp}/{name}-access.log combined buffer=32k flush=100ms;"
        if access_log
        else "access_log off;"
    )
    return f"""    {log}
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
"""


def nginx_proxy_conf(*, tmp, listen, threads, backends, frontend, access_log):
    servers = "".join(f"        server {b};\n" for b in backends)
    return (
        _nginx_main(tmp, threads)
        + f"""http {{
{_nginx_http_common(tmp, access_log, "proxy")}
    upstream api {{
{servers}        keepalive 64;
    }}
    upstream web {{
        server {frontend};
        keepalive 64;
    }}
    server {{
        listen {listen} reuseport;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Request-Id $request_id;
        add_header X-Request-Id $request_id always;
        proxy_next_upstream error timeout;
        # Stream large responses through the memory buffers, as the lb and HAProxy do,
        # instead of spilling what the client has not read yet to temp files (the default).
        proxy_max_temp_file_size 0;
        location /api/ {{ proxy_pass http://api; }}
        location / {{ proxy_pass http://web; }}
    }}
}}
"""
    )


def nginx_static_conf(*, tmp, listen, threads, root, access_log):
    return (
        _nginx_main(tmp, threads)
        + f"""http {{
{_nginx_http_common(tmp, access_log, "static")}
    server {{
        listen {listen} reuseport;
        root {root};
        index index.html;
        location / {{ try_files $uri $uri/ =404; }}
    }}
}}
"""
    )


def haproxy_cfg(*, listen, threads, backends, frontend, access_log):
    servers = "".join(f"    server api{i} {b}\n" for i, b in enumerate(backends, 1))
    log_global = "    log stdout format raw local0\n" if access_log else ""
    log_defaults = "    log global\n    option httplog\n" if access_log else "    no log\n"
    return f"""global
    nbthread {threads}
    maxconn 4096
{log_global}
defaults
    mode http
{log_defaults}    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    option http-keep-alive
    option forwardfor
    http-reuse always

frontend main
    bind {listen}
    unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-response set-header X-Request-Id %[unique-id]
    acl is_api path_beg /api/
    use_backend api if is_api
    default_backend web

backend api
    balance roundrobin
{servers}
backend web
    balance roundrobin
    server web1 {frontend}
"""
