"""A counting proxy on a unix socket between planctond and dockerd.

Why a proxy rather than the daemon's own counter (`DockerEngine.calls`): it counts the HTTP
requests that really reach Docker, whatever code path made them (docker-py's own version probe,
a stray high-level call that inspects behind the caller's back), with no change to the daemon.
It parses only the client-to-engine direction (request line, headers, a Content-Length body);
responses, the endless /events stream included, are copied through untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from dataclasses import dataclass

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


class CountingProxy:
    def __init__(self, listen_path: str, upstream_path: str) -> None:
        self.listen_path = listen_path
        self.upstream_path = upstream_path
        self.requests: list[Request] = []
        self.unparsed = 0  # connections whose requests stopped being countable (chunked bodies)
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._closing = False

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen_path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.listen_path)
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def close(self) -> None:
        self._closing = True
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen_path)

    def between(self, start: float, end: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if start <= r.at < end]

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.upstream_path)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        buf = b""
        body_left = 0
        counting = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if not counting:
                    continue
                buf += data
                while True:
                    if body_left:
                        take = min(body_left, len(buf))
                        buf, body_left = buf[take:], body_left - take
                        if body_left:
                            break
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
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
                        counting = False
                        with self._lock:
                            self.unparsed += 1
                        break
                    body_left = int(headers.get("content-length", "0") or 0)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
