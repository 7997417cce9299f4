"""A real Prometheus (Debian's `prometheus`, 2.42) on loopback, scraping the targets a test gives.

Its own directory holds the config and the TSDB; the machine's /etc/prometheus is never read,
and the port is picked free at start, so a packaged Prometheus (stopped or not) is no concern.
The scrape interval is 1 s, so a test waits seconds, not minutes, for what it put to show.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.influxdb_server import free_port

PROMETHEUS = "prometheus"
START_TIMEOUT = 60.0  # a loaded 2-core machine takes a few seconds; this is only a ceiling
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
SCRAPE_INTERVAL = "1s"
Result = list[tuple[dict[str, str], float]]


def unavailable_reason() -> str | None:
    if shutil.which(PROMETHEUS) is None:
        return "prometheus is not installed (Debian package prometheus)"
    return None


def require_prometheus() -> None:
    """Skip the calling test, saying why, when no Prometheus can be started here."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


class PrometheusServer:
    def __init__(self, directory: Path, targets: Sequence[str], *, job: str = "planctond") -> None:
        """`targets`: HOST:PORT of exporters serving /metrics, all scraped as `job`."""
        self.directory = directory
        self.targets = list(targets)
        self.job = job
        self.port = 0
        self.log_path = directory / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _config(self) -> str:
        """JSON is YAML: no quoting rules of our own for the targets."""
        document = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]},
            ],
        }
        return json.dumps(document, indent=2)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start and wait until /-/ready answers 200 (the TSDB is open, scraping has begun)."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.directory / "prometheus.yml"
        config.write_text(self._config())
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.running:
                raise RuntimeError(f"prometheus exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus not ready in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def query(self, promql: str) -> Result:
        """An instant query at the server's now: each series' labels and value (a scalar result
        is one row without labels). An error of the query or the server raises."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(address, timeout=REQUEST_TIMEOUT) as reply:
                document = json.load(reply)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"query {promql!r}: HTTP {exc.code}: {exc.read()!r}") from None
        if document.get("status") != "success":
            raise RuntimeError(f"query {promql!r}: {document}")
        data = document["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise RuntimeError(f"query {promql!r}: a {data['resultType']}, not a vector")
        return [(dict(row["metric"]), float(row["value"][1])) for row in data["result"]]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def prometheus_server(
    directory: Path, targets: Sequence[str], *, job: str = "planctond"
) -> Iterator[PrometheusServer]:
    """A started server in `directory` scraping `targets` (skips the test when prometheus is
    missing); stopped after."""
    require_prometheus()
    with PrometheusServer(directory, targets, job=job) as server:
        yield server
