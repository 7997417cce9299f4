"""Writing line protocol to InfluxDB, as an Outbox's `send`: the 1.x API (`POST /write`) and the
2.x API (`POST /api/v2/write`, org, bucket and token; also what VictoriaMetrics and InfluxDB 3
accept).

The standard library only (http.client and ssl): the daemon must not grow a dependency for one
POST. Each call opens its own connection; a batch goes out every few seconds at most, and a fresh
connection cannot be one the server already closed while idle.

Credentials may come in the URL (`https://user:password@host:8086`); they are sent as HTTP basic
auth and appear in no log line, error or name (`display`). Like Plancton, the writer creates a
database the server says it lacks, so a server set up with nothing but a user works.
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Final
from urllib.parse import unquote, urlencode, urlsplit

from planctond.config.model import InfluxDBTarget
from planctond.monitoring.outbox import SinkError
from planctond.monitoring.tls import ClientTLS, tls_reason
from planctond.text import safe_text

DEFAULT_TIMEOUT: Final = 10.0  # seconds for each connect, send and read of one request
ERROR_BODY_LIMIT: Final = 4096  # bytes of an error reply read for its message
MESSAGE_LIMIT: Final = 300  # characters of a server's message kept in an error


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier, whatever characters `name` holds."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _server_message(body: bytes) -> str:
    """InfluxDB explains errors as {"error": "..."}, and a failed query statement (answered
    with 200) as {"results": [{"error": "..."}]}: that text, or the reply as it is."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        results = parsed.get("results")
        first = results[0] if isinstance(results, list) and results else {}
        for error in (parsed.get("error"), first.get("error") if isinstance(first, dict) else None):
            if isinstance(error, str):
                return safe_text(error, MESSAGE_LIMIT)
        if results is not None:
            return ""  # a query that went through
    return safe_text(text.strip(), MESSAGE_LIMIT)


class InfluxV1Writer:
    def __init__(
        self,
        target: InfluxDBTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
    ) -> None:
        """ValueError for a URL that is not http(s)://host[:port][/prefix]. `ca_file`, when
        given, replaces the target's."""
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an InfluxDB URL must be http(s)://host[:port][/path]")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the InfluxDB URL has an invalid port") from None
        self.database = target.database
        self._timeout = timeout
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._secrets: tuple[str, ...] = ()
        self._auth: str | None = None
        if parts.username is not None or parts.password is not None:
            user, password = unquote(parts.username or ""), unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
            self._secrets = tuple(s for s in (password, parts.password or "", token) if s)
        host = f"[{self._host}]" if ":" in self._host else self._host
        netloc = host if port is None else f"{host}:{port}"
        self.display = f"{parts.scheme}://{netloc}{self._prefix}"  # what logs may show
        self._tls: ClientTLS | None = None
        if parts.scheme == "https":
            self._tls = ClientTLS(verify=target.verify_tls, ca_file=ca_file or target.ca_file)

    def __call__(self, body: bytes) -> None:
        """Write one batch of line protocol. SinkError says why not (retry=False: never)."""
        status, message = self._write(body)
        if status == 404 and "database not found" in message:
            self._create_database()
            status, message = self._write(body)
        self._check(status, message, "write")

    def _write(self, body: bytes) -> tuple[int, str]:
        query = urlencode({"db": self.database, "precision": "ns"})
        return self._post(f"/write?{query}", body, "text/plain; charset=utf-8")

    def _create_database(self) -> None:
        form = urlencode({"q": f"CREATE DATABASE {quote_identifier(self.database)}"})
        doing = f"creating the missing database {self.database!r}"
        status, message = self._post(
            "/query", form.encode("ascii"), "application/x-www-form-urlencoded", read_ok=True
        )
        self._check(status, message, doing)
        if message:  # a statement InfluxDB refused (an invalid name) still answers 200
            raise SinkError(self._scrub(f"{doing}: {message}"))

    def _check(self, status: int, message: str, doing: str) -> None:
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise SinkError(self._scrub(f"{doing}: unauthorized (HTTP {status}): {message}"))
        # 400: malformed (a partial write: the good points were taken); 413: too big, ever.
        retry = status not in (400, 413)
        raise SinkError(self._scrub(f"{doing}: HTTP {status}: {message}"), retry=retry)

    def _post(
        self, path: str, body: bytes, content_type: str, *, read_ok: bool = False
    ) -> tuple[int, str]:
        """POST and return (status, the server's message: of an error, or of any reply when
        `read_ok`); SinkError when there is no reply."""
        headers = {"Content-Type": content_type}
        if self._auth is not None:
            headers["Authorization"] = self._auth
        connection = self._connect()
        try:
            connection.request("POST", self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            status = response.status
            reply = response.read(ERROR_BODY_LIMIT) if read_ok or status >= 300 else b""
        except (OSError, http.client.HTTPException) as exc:
            reason = safe_text(tls_reason(exc), MESSAGE_LIMIT)
            raise SinkError(self._scrub(f"no reply from {self.display}: {reason}")) from exc
        finally:
            connection.close()
        return status, _server_message(reply)

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls.context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _add_secret(self, secret: str) -> None:
        self._secrets = (*self._secrets, secret)

    def _scrub(self, text: str) -> str:
        """Belt and braces: no message may carry a credential, whatever a library put in it."""
        for secret in sorted(self._secrets, key=len, reverse=True):  # a password is in its token
            text = text.replace(secret, "***")
        return text


class InfluxV2Writer(InfluxV1Writer):
    """The 2.x write API: the bucket must exist (2.x has no "create on write" and its API token
    usually may not create buckets), so a missing one is an error said once per outage."""

    def __init__(
        self,
        target: InfluxDBTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(target, timeout=timeout, ca_file=ca_file)
        self.org = target.org or ""
        if target.token:
            self._auth = f"Token {target.token}"
            self._add_secret(target.token)

    def __call__(self, body: bytes) -> None:
        status, message = self._write(body)
        self._check(status, message, "write")

    def _write(self, body: bytes) -> tuple[int, str]:
        query = urlencode({"org": self.org, "bucket": self.database, "precision": "ns"})
        return self._post(f"/api/v2/write?{query}", body, "text/plain; charset=utf-8")


def writer_for(target: InfluxDBTarget) -> InfluxV1Writer:
    return InfluxV2Writer(target) if target.v2 else InfluxV1Writer(target)


__all__ = ["InfluxV1Writer", "InfluxV2Writer", "quote_identifier", "writer_for"]
