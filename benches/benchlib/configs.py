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


def lb_yaml(*, tmp, listen, admin, threads, backends, frontend, access_log, metrics=None, server=None,
            tls=None, api_settings=None):
    """The lb config (schema in lb/README.md), static discovery only.

    `tls` (address, CertFiles) adds a `server.tls_listen` entry offering h2 and
    http/1.1 by ALPN with the bench certificate, the default for every name
    (clients of 127.0.0.1 send no SNI).

    `access_log`/`metrics` (None: as the lb ships) become settings through
    `lb_toggles`; `server` holds more `server:` settings, which win over
    everything else (e.g. {"threads": "1", "upstream_keepalive_pool_size": "256"}).
    `api_settings` holds more settings of the `api` upstream (e.g. {"selection": "least_requests"}).
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
    if tls:
        address, cert = tls
        settings["tls_listen"] = (
            f'[{{ address: "{address}", protocols: [h2, http/1.1], certificates: '
            f'[{{ cert: "{cert.cert}", key: "{cert.key}", names: ["localhost"], default: true }}] }}]'
        )
    settings.update(lb_toggles(access_log=access_log, metrics=metrics))
    settings.update(server or {})
    lines = "".join(f"  {k}: {v}\n" for k, v in settings.items())
    api_lines = "".join(f"    {k}: {v}\n" for k, v in (api_settings or {}).items())
    return f"""version: 1
server:
{lines}routes:
  - {{ prefix: /api/, upstream: api }}
  - {{ prefix: /, upstream: web }}
upstreams:
  api:
    discovery: {{ static: [{api}] }}
    health_check: {{ path: /ready, interval: 1s, timeout: 500ms, healthy_after: 1, unhealthy_after: 2 }}
{api_lines}  web:
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


def _nginx_tls(cert):
    # TLS 1.2 and 1.3 with the same certificate as the lb and HAProxy; session
    # tickets on (nginx's default, as the lb's rustls resumes by default too) and
    # no server-side session cache (nginx's default `none`). `http2` on the listen
    # line: nginx 1.22 has no `http2 on;` (1.25.1+).
    return f"""        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
"""


def nginx_proxy_conf(*, tmp, listen, threads, backends, frontend, access_log, tls=None):
    """`tls` (address, CertFiles): a second server block, HTTPS with h2 and http/1.1 by ALPN."""
    servers = "".join(f"        server {b};\n" for b in backends)
    proxying = """        proxy_http_version 1.1;
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
        location /api/ { proxy_pass http://api; }
        location / { proxy_pass http://web; }
"""
    tls_server = ""
    if tls:
        address, cert = tls
        tls_server = f"""    server {{
        listen {address} ssl http2 reuseport;
{_nginx_tls(cert)}{proxying}    }}
"""
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
{proxying}    }}
{tls_server}}}
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


def _haproxy_frontend_rules(proto):
    return f"""    unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-Proto {proto}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-response set-header X-Request-Id %[unique-id]
    acl is_api path_beg /api/
    use_backend api if is_api
    default_backend web
"""


def haproxy_cfg(*, listen, threads, backends, frontend, access_log, tls=None):
    """`tls` (address, CertFiles): a second frontend, HTTPS with h2 and http/1.1 by ALPN.

    TLS 1.2+, the same certificate (cert + key in one PEM); HAProxy's defaults for
    resumption: its session cache (tune.ssl.cachesize 20000) and tickets on.
    """
    tls_frontend = ""
    if tls:
        address, cert = tls
        tls_frontend = (f"\nfrontend tls\n    bind {address} ssl crt {cert.pem} alpn h2,http/1.1 "
                        f"ssl-min-ver TLSv1.2\n" + _haproxy_frontend_rules("https"))
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
{_haproxy_frontend_rules("http")}{tls_frontend}
backend api
    balance roundrobin
{servers}
backend web
    balance roundrobin
    server web1 {frontend}
"""
