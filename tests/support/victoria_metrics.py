"""A real VictoriaMetrics (Debian's `victoria-metrics`) on loopback: the server here that takes
InfluxDB's 2.x write API (`/api/v2/write`) and answers PromQL, so the daemon's 2.x path is tested
against a real server and not against a stub.

`-search.latencyOffset=0s`: without it, fresh points stay invisible to queries for 30 s.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.server_process import ServerProcess, answers, free_port, require

BINARY = "victoria-metrics"


class VictoriaMetrics(ServerProcess):
    name = BINARY

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "victoria-metrics.log")
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            BINARY,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.directory / 'data'}",
            "-search.latencyOffset=0s",
        ]

    def ready(self) -> bool:
        return answers(f"{self.url}/health")

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant PromQL query: (labels, value) per series."""
        form = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{form}", timeout=30) as reply:
            document = json.load(reply)
        if document.get("status") != "success":
            raise RuntimeError(f"query {promql!r}: {document}")
        return [(r["metric"], float(r["value"][1])) for r in document["data"]["result"]]


@contextlib.contextmanager
def victoria_metrics(directory: Path) -> Iterator[VictoriaMetrics]:
    """A started server (the test is skipped, saying why, when the binary is missing)."""
    require(BINARY, "victoria-metrics")
    with VictoriaMetrics(directory) as server:
        yield server
