"""A real VictoriaMetrics (Debian's `victoria-metrics`) on loopback: the server here that takes
InfluxDB's 2.x write API (`/api/v2/write`) and answers PromQL, so the daemon's 2.x path is tested
against a real server and not against a stub.

`-search.latencyOffset=0s`: without it, fresh points stay invisible to queries for 30 s.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.influxdb_server import free_port

BINARY = "victoria-metrics"
START_TIMEOUT = 60.0


class VictoriaMetrics:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "victoria-metrics.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    BINARY,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.directory / 'data'}",
                    "-search.latencyOffset=0s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"victoria-metrics did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant PromQL query: (labels, value) per series."""
        form = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{form}", timeout=30) as reply:
            document = json.load(reply)
        if document.get("status") != "success":
            raise RuntimeError(f"query {promql!r}: {document}")
        return [(r["metric"], float(r["value"][1])) for r in document["data"]["result"]]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def victoria_metrics(directory: Path) -> Iterator[VictoriaMetrics]:
    """A started server (the test is skipped, saying why, when the binary is missing)."""
    if shutil.which(BINARY) is None:
        pytest.skip(f"{BINARY} is not installed (Debian package; contrib/devstack/deps.sh)")
    server = VictoriaMetrics(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
