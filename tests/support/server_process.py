"""A real server started by a test on loopback: its process, its log, waiting until it answers,
stopping it (or killing it, as a crash) and starting it again on the same ports and data.

What each server needs beyond that (its command line, its readiness check, its query API) is
in its own module: `influxdb_server.py`, `prometheus_server.py`, `victoria_metrics.py`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import pytest

START_TIMEOUT: Final = 60.0  # a loaded 2-core machine takes a few seconds; only a ceiling
STOP_TIMEOUT: Final = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(url: str, status: int = 200) -> bool:
    """Whether GET `url` answers `status` now (any failure: not yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == status)
    except (OSError, urllib.error.URLError):
        return False


def require(binary: str, package: str) -> None:
    """Skip the calling test, saying why, when `binary` is not installed here."""
    if shutil.which(binary) is None:
        pytest.skip(
            f"{binary} is not installed (Debian package {package}; contrib/devstack/deps.sh)"
        )


class ServerProcess:
    """Subclasses say what to run (`argv`, `environment`) and when it is up (`ready`)."""

    name = "server"

    def __init__(self, directory: Path, log_name: str) -> None:
        self.directory = directory
        self.log_path = directory / log_name
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what a subclass provides ------------------------------------------------------------------
    def argv(self) -> Sequence[str]:
        raise NotImplementedError

    def environment(self) -> Mapping[str, str]:
        return os.environ

    def ready(self) -> bool:
        raise NotImplementedError

    # --- the process ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (again) and wait until `ready()`; the log says why when it does not come up."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv())
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.environment()),
                cwd=self.directory,
            )
        self._wait(self.ready, timeout)

    def _wait(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (`kill`: SIGKILL, a crash)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
