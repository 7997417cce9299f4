"""One conditional HTTPS GET of the remote config, with the standard library only.

Every way a server can be wrong ends as a `FetchError` whose message an admin can act on, never
as a traceback, and nothing a server sends can hold the caller longer than `timeout` in all
(connect, TLS, headers, body, however slowly it trickles) or make it keep more than
`MAX_CONFIG_SIZE` bytes:

- TLS is verified against the system's CAs or only `ca_file`'s, with the host name checked; with
  `pin_sha256` the server's public key must also be one of the pins, checked after the
  handshake and before anything (the token) is sent;
- validators of the last document received go out as If-None-Match / If-Modified-Since, so an
  unchanged config costs one 304 and no parsing;
- redirects are not followed: the bearer token must not travel to another host, and a config
  that moved is an admin's `url:` to change;
- the body must be UTF-8 text without NUL bytes: anything else is not a config document.

The token is read from its file at each fetch and appears in no message.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from planctond import __version__
from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.fields_remote import read_token
from planctond.config.files import decode_config
from planctond.config.model import RemoteConfig
from planctond.config.remote import RemoteDocument
from planctond.config.tls import client_context, spki_pin
from planctond.text import safe_text

CHUNK: Final = 64 * 1024
MAX_VALIDATOR: Final = 512  # characters of an ETag or Last-Modified worth sending back
USER_AGENT: Final = f"planctond/{__version__}"


class FetchError(Exception):
    """The remote config could not be had; the message says why, for the log and the status."""


def _validator(value: str | None) -> str | None:
    """A header value worth sending back: short printable ASCII, else none."""
    if value is None or not value or len(value) > MAX_VALIDATOR:
        return None
    return value if all(0x20 <= ord(ch) < 0x7F for ch in value) else None


def _tls_reason(exc: ssl.SSLError, settings: RemoteConfig) -> str:
    trusted = f"ca_file {settings.ca_file}" if settings.ca_file else "the system's CAs"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (exc.verify_message or str(exc)).rstrip(".")
        return f"TLS: the server's certificate is not accepted ({why}; trusting {trusted})"
    return f"TLS: {exc.reason or exc}"


class _Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.end = clock() + seconds
        self.seconds = seconds

    def left(self) -> float:
        left = self.end - self.clock()
        if left <= 0:
            raise TimeoutError
        return left


def _check_pin(sock: ssl.SSLSocket, settings: RemoteConfig) -> None:
    der = sock.getpeercert(binary_form=True)
    if der is None:
        raise FetchError("TLS: the server sent no certificate to check the pin against")
    found = spki_pin(der)
    if found not in settings.pin_sha256:
        raise FetchError(
            f"TLS: the server's public key (sha256//{found}) is none of pin_sha256: refused"
        )


def _headers(settings: RemoteConfig, seen: RemoteDocument | None) -> dict[str, str]:
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/yaml, text/yaml, text/plain;q=0.9, */*;q=0.1",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    if seen is not None and seen.url == settings.url:
        if seen.etag:
            headers["If-None-Match"] = seen.etag
        if seen.last_modified:
            headers["If-Modified-Since"] = seen.last_modified
    if settings.token_file is not None:
        try:
            headers["Authorization"] = f"Bearer {read_token(settings.token_file)}"
        except ValueError as exc:
            raise FetchError(f"token file {settings.token_file}: {exc}") from None
    return headers


def _body(response: http.client.HTTPResponse, sock: socket.socket | None, deadline: _Deadline) -> bytes:  # fmt: skip
    length = response.getheader("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > C.MAX_CONFIG_SIZE:
        raise FetchError(f"the response is {int(length)} bytes: more than {C.MAX_CONFIG_SIZE}, not a config")  # fmt: skip
    chunks: list[bytes] = []
    size = 0
    while True:
        if sock is not None:
            sock.settimeout(deadline.left())
        chunk = response.read1(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > C.MAX_CONFIG_SIZE:
            raise FetchError(f"the response is more than {C.MAX_CONFIG_SIZE} bytes: not a config")
        chunks.append(chunk)


def _text(data: bytes, url: str) -> str:
    if b"\0" in data:
        raise FetchError(f"the response holds NUL bytes at offset {data.index(0)}: binary, not a config")  # fmt: skip
    try:
        return decode_config(data, url)
    except ConfigError as exc:
        raise FetchError(f"the response is not text: {exc.problems[0].message}") from None


def fetch(
    settings: RemoteConfig,
    seen: RemoteDocument | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> RemoteDocument | None:
    """The document at `settings.url`, or None when the server says it is still `seen`'s (304).
    Blocking (up to `settings.timeout`): call it off the event loop. Raises FetchError."""
    parts = urlsplit(settings.url)
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = _Deadline(settings.timeout, clock)
    try:
        context = client_context(verify=True, ca_file=settings.ca_file)
    except ValueError as exc:
        raise FetchError(f"CA file {settings.ca_file}: {exc}") from None
    headers = _headers(settings, seen)
    conn = http.client.HTTPSConnection(
        host, parts.port or 443, timeout=settings.timeout, context=context
    )
    try:
        conn.connect()
        sock = conn.sock
        if settings.pin_sha256:
            assert isinstance(sock, ssl.SSLSocket)
            _check_pin(sock, settings)
        sock.settimeout(deadline.left())
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        status = response.status
        if status == 304 and ("If-None-Match" in headers or "If-Modified-Since" in headers):
            return None
        if status != 200:
            raise FetchError(_status_reason(response, settings))
        data = _body(response, sock, deadline)
        return RemoteDocument(
            url=settings.url,
            text=_text(data, settings.url),
            etag=_validator(response.getheader("ETag")),
            last_modified=_validator(response.getheader("Last-Modified")),
            fetched=wall(),
        )
    except FetchError:
        raise
    except ssl.SSLError as exc:
        raise FetchError(_tls_reason(exc, settings)) from None
    except TimeoutError:
        raise FetchError(f"no complete answer within {settings.timeout:g} s") from None
    except ConnectionRefusedError:
        raise FetchError(f"connection refused by {host}:{parts.port or 443}") from None
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    except http.client.HTTPException as exc:
        raise FetchError(f"not a valid HTTP answer: {safe_text(repr(exc), 200)}") from None
    except OSError as exc:
        raise FetchError(f"cannot reach {host}: {exc.strerror or exc}") from None
    finally:
        conn.close()


def _status_reason(response: http.client.HTTPResponse, settings: RemoteConfig) -> str:
    status = response.status
    reason = safe_text(response.reason or "", 100)
    if 300 <= status < 400:
        where = safe_text(response.getheader("Location") or "?", 300)
        return f"HTTP {status} {reason}: redirected to {where} (not followed: set url to it)"
    hint = ""
    if status in (401, 403):
        hint = " (token_file?)" if settings.token_file is None else " (is the token still valid?)"
    return f"HTTP {status} {reason}{hint}".rstrip()
