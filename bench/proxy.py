"""A counting proxy on a unix socket between planctond and dockerd.

Why a proxy rather than the daemon's own counter (`DockerEngine.calls`): it counts the HTTP
requests that really reach Docker, whatever code path made them (docker-py's own version probe,
a stray high-level call that inspects behind the caller's back), with no change to the daemon.
It parses only the client-to-engine direction (request line, headers, a Content-Length body);
responses, the endless /events stream included, are copied through untouched.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.socket_proxy import SocketProxy

_IDS = re.compile(r"/[0-9a-f]{64}(?=/|$)")
_VERSION = re.compile(r"^/v\d+\.\d+")


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic() when its headers were complete
    method: str
    path: str  # without the API version prefix and query; container ids replaced by {id}

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


def normalise(target: str) -> str:
    path = target.split("?", 1)[0]
    path = _VERSION.sub("", path)
    return _IDS.sub("/{id}", path)


class CountingProxy(SocketProxy):
    """The test suite's cuttable proxy, with each client's requests parsed and recorded."""

    def __init__(self, listen_path: str, upstream_path: str) -> None:
        super().__init__(Path(listen_path), upstream_path)
        self.requests: list[Request] = []
        self.unparsed = 0  # connections whose requests stopped being countable (chunked bodies)

    def start(self) -> None:
        self.up()

    def close(self) -> None:
        self.down()

    def between(self, start: float, end: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if start <= r.at < end]

    def observer(self) -> Callable[[bytes], bool]:
        """Request line, headers and a Content-Length body, chunk by chunk, for one connection;
        responses (the endless /events stream included) pass untouched."""
        buf = b""
        body_left = 0

        def observe(data: bytes) -> bool:
            nonlocal buf, body_left
            buf += data
            while True:
                if body_left:
                    take = min(body_left, len(buf))
                    buf, body_left = buf[take:], body_left - take
                    if body_left:
                        return True
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return True
                head, buf = buf[:end].decode("latin-1"), buf[end + 4 :]
                lines = head.split("\r\n")
                parts = lines[0].split(" ")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (h.partition(":") for h in lines[1:])
                }
                if len(parts) >= 2:
                    with self._lock:
                        self.requests.append(
                            Request(time.monotonic(), parts[0], normalise(parts[1]))
                        )
                if "chunked" in headers.get("transfer-encoding", ""):
                    with self._lock:
                        self.unparsed += 1
                    return False
                body_left = int(headers.get("content-length", "0") or 0)

        return observe
