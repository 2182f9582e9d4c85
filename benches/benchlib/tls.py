"""The bench's certificate, and what a TLS listener really negotiates.

`make_certificate` writes, with the openssl CLI, a test CA and a leaf for
`localhost` and `127.0.0.1` signed by it, both ECDSA P-256 (the same cert and
key for the lb, nginx and HAProxy; HAProxy takes them as one PEM).

`probe` opens one TLS connection the way a load tool would (to 127.0.0.1, so
no SNI, as oha and h2load send none for an IP), verifies the chain and the IP
against the CA, sends one GET and reports the TLS version, cipher, ALPN
protocol, the response's status line, and whether a second connection that
offers the first one's session is resumed. The harness checks it before any
load, so a scenario never measures another protocol than the one it names.
"""

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CertFiles:
    ca: Path  # the CA certificate: clients verify against it
    cert: Path  # the leaf (localhost, 127.0.0.1)
    key: Path  # its key (PKCS#8)
    pem: Path  # cert + key in one file, for HAProxy's `crt`
    description: str


CERT_DESCRIPTION = ("ECDSA P-256 leaf for localhost and 127.0.0.1 (SHA-256 signature), "
                    "signed by a P-256 test CA made for the run; no intermediate")


class CertError(RuntimeError):
    """openssl failed to make the bench certificate."""


def _openssl(args, cwd):
    try:
        done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise CertError(f"cannot run openssl (needed for the TLS scenarios): {e}") from e
    if done.returncode != 0:
        raise CertError(f"openssl {' '.join(args)} failed: {done.stderr.strip()[-1000:]}")


def make_certificate(directory):
    """The CA and the leaf in `directory`; valid for 2 days from now."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-sha256",
              "-subj", "/CN=Softy Pinko bench CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign"], d)
    _openssl(["req", *ec, "-keyout", "localhost.key", "-out", "localhost.csr", "-subj", "/CN=localhost"], d)
    (d / "leaf.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n")
    _openssl(["x509", "-req", "-in", "localhost.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", "localhost.pem", "-days", "2", "-sha256",
              "-extfile", "leaf.ext"], d)
    files = CertFiles(ca=d / "ca.pem", cert=d / "localhost.pem", key=d / "localhost.key",
                      pem=d / "localhost-haproxy.pem", description=CERT_DESCRIPTION)
    files.pem.write_text(files.cert.read_text() + files.key.read_text())
    return files


def client_context(ca, alpn=None):
    """A verifying client context (TLS 1.2+) with the bench CA, offering `alpn`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def _get(tls, host_port, path):
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            return data
        data += chunk


def probe(host, port, path, ca, alpn=None, timeout=5.0):
    """One verified TLS connection and GET, then a resumption attempt; a dict.

    Keys: version, cipher, alpn (None: none chosen), status_line (of the
    HTTP/1.1 response; None when h2 was chosen: no request is sent then),
    body (bytes), resumed (a second connection offering the session was
    resumed), error (None, or why it failed).
    """
    ctx = client_context(ca, alpn)
    out = dict(version=None, cipher=None, alpn=None, status_line=None, body=b"", resumed=None, error=None)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                out.update(version=tls.version(), cipher=tls.cipher()[0], alpn=tls.selected_alpn_protocol())
                if out["alpn"] == "h2":
                    return out  # the h2 check is h2load's own "Application protocol" line
                raw = _get(tls, f"{host}:{port}", path)
                head, _, out["body"] = raw.partition(b"\r\n\r\n")
                out["status_line"] = head.split(b"\r\n", 1)[0].decode("latin-1")
                session = tls.session  # after the response: TLS 1.3 tickets arrive with it
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host, session=session) as tls:
                out["resumed"] = tls.session_reused
                _get(tls, f"{host}:{port}", path)
    except (OSError, ssl.SSLError, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out
