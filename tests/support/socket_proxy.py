"""A unix-socket proxy in front of the real Docker socket that a test can cut and restore, so
"Docker went away while the daemon was running" is a real connection loss, not a mock."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path


class SocketProxy:
    def __init__(self, listen: Path, target: str) -> None:
        self.listen = listen
        self.target = target
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.listen}"

    def up(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(self.listen))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut every open one (the event stream included)."""
        srv, self._server = self._server, None
        if srv is not None:
            srv.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(
                target=self._pipe, args=(client, upstream, self.observer()), daemon=True
            ).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    def observer(self) -> Callable[[bytes], bool] | None:
        """Per connection: something that sees every chunk the client sends to the engine and
        returns False once it has seen enough. The benchmark's counting proxy parses requests
        here; this proxy only forwards."""
        return None

    @staticmethod
    def _pipe(
        src: socket.socket, dst: socket.socket, observe: Callable[[bytes], bool] | None
    ) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if observe is not None and not observe(data):
                    observe = None
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
