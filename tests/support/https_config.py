"""A real HTTPS server on loopback serving a config document, for the remote config's tests.

Its certificates are made for the test with the openssl CLI: a CA, another CA that signed
nothing of this server's, and server certificates for 127.0.0.1 that are good, expired, or for
another name. What the server does is switched while it runs: the document (with an ETag and a
Last-Modified that follow it), an HTTP error, a slow answer, a huge or binary body, another
certificate, or being down (its port closed, then opened again on the same port). It counts
what it was asked, so a test can tell a 304 from a 200.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, check=True, capture_output=True, timeout=60
    ).stdout


@dataclass(frozen=True)
class PKI:
    ca: Path  # signed every server certificate below
    other_ca: Path  # signed none of them
    good: tuple[Path, Path]  # (cert, key) for IP 127.0.0.1, valid two days
    expired: tuple[Path, Path]  # for 127.0.0.1, expired
    wrong_name: tuple[Path, Path]  # valid, but for wrong.example only
    foreign: tuple[Path, Path]  # for 127.0.0.1, but signed by other_ca

    def pin(self, cert: Path) -> str:
        """curl's recipe for the pin of `cert`'s public key."""
        pub = _openssl("x509", "-in", str(cert), "-noout", "-pubkey")
        der = _openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()


def make_pki(directory: Path) -> PKI:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test CA)")
    directory.mkdir(parents=True, exist_ok=True)
    key_args = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other_ca"):
        _openssl(
            *("req", "-x509", *key_args, "-days", "3", "-subj", f"/CN=planctond test {name}"),
            *("-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem")),
        )

    def server(name: str, san: str, days: int, ca: str = "ca") -> tuple[Path, Path]:
        ext = directory / f"{name}.ext"
        ext.write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
        )
        key, csr, cert = (directory / f"{name}.{s}" for s in ("key", "csr", "pem"))
        _openssl("req", *key_args, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        _openssl(
            *(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-days",
                str(days),
                "-CA",
                str(directory / f"{ca}.pem"),
            ),
            *("-CAkey", str(directory / f"{ca}.key"), "-CAcreateserial", "-out", str(cert)),
            *("-extfile", str(ext)),
        )
        return cert, key

    pki = PKI(
        ca=directory / "ca.pem",
        other_ca=directory / "other_ca.pem",
        good=server("good", "IP:127.0.0.1", 2),
        # -days 0: valid from now until now, expired a second later (OpenSSL 3.0's x509 cannot
        # backdate a certificate).
        expired=server("expired", "IP:127.0.0.1", 0),
        wrong_name=server("wrong", "DNS:wrong.example", 2),
        foreign=server("foreign", "IP:127.0.0.1", 2, ca="other_ca"),
    )
    time.sleep(1.1)
    return pki


@dataclass
class Behaviour:
    status: int = 200  # anything but 200 is answered with that status and a short body
    delay: float = 0.0  # seconds before the answer's headers
    body: bytes | None = None  # sent instead of the document (huge, binary)
    validators: bool = True  # ETag and Last-Modified on the document


@dataclass
class Stats:
    connections: int = 0  # accepted, whether TLS then succeeds or not
    requests: int = 0
    conditional: int = 0
    not_modified: int = 0
    full: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


class ConfigServer:
    """`https://127.0.0.1:PORT/site.yaml` serving `document`."""

    PATH = "/site.yaml"

    def __init__(self, pki: PKI, document: str = "") -> None:
        self.pki = pki
        self.behaviour = Behaviour()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._document = ""
        self._etag = ""
        self._modified = ""
        self.document = document
        self.cert = pki.good
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what it serves -----------------------------------------------------------------------
    @property
    def document(self) -> str:
        return self._document

    @document.setter
    def document(self, text: str) -> None:
        with self._lock:
            self._document = text
            self._etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'
            self._modified = formatdate(time.time(), usegmt=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{self.PATH}"

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.cert)
        return context

    # --- life cycle ---------------------------------------------------------------------------
    def up(self) -> ConfigServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._answer(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = super().get_request()
                with owner._lock:
                    owner.stats.connections += 1
                sock.settimeout(10)
                try:
                    return owner.context().wrap_socket(sock, server_side=True), addr
                except (ssl.SSLError, OSError):
                    sock.close()
                    raise

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (a timeout test) is no news

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def restart(self) -> None:
        """Up again on the same port (the clients' URL stays right)."""
        self.down()
        self.up()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            behaviour, text, etag, modified = (
                self.behaviour,
                self._document,
                self._etag,
                self._modified,
            )
            self.stats.requests += 1
            self.stats.headers.append(dict(handler.headers.items()))
        if behaviour.delay:
            time.sleep(behaviour.delay)
        if behaviour.status != 200:
            self._send(handler, behaviour.status, b"no\n", {})
            return
        if behaviour.body is not None:
            self._send(handler, 200, behaviour.body, {})
            return
        match = handler.headers.get("If-None-Match")
        if match is not None or handler.headers.get("If-Modified-Since") is not None:
            with self._lock:
                self.stats.conditional += 1
        if behaviour.validators and match == etag:
            with self._lock:
                self.stats.not_modified += 1
            self._send(handler, 304, b"", {"ETag": etag})
            return
        with self._lock:
            self.stats.full += 1
        headers = {"ETag": etag, "Last-Modified": modified} if behaviour.validators else {}
        self._send(handler, 200, text.encode(), {"Content-Type": "application/yaml", **headers})

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        with contextlib.suppress(OSError):
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            if status != 304:
                handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            if status != 304:
                handler.wfile.write(body)
            handler.close_connection = True


@contextlib.contextmanager
def serving(pki: PKI, document: str = "") -> Iterator[ConfigServer]:
    server = ConfigServer(pki, document).up()
    try:
        yield server
    finally:
        server.down()
