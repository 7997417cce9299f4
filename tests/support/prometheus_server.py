"""A real Prometheus (Debian's `prometheus`, 2.42) on loopback, scraping the targets a test gives.

Its own directory holds the config and the TSDB; the machine's /etc/prometheus is never read,
and the port is picked free at start, so a packaged Prometheus (stopped or not) is no concern.
The scrape interval is 1 s, so a test waits seconds, not minutes, for what it put to show.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.server_process import ServerProcess, answers, free_port, require

PROMETHEUS = "prometheus"
REQUEST_TIMEOUT = 10.0
SCRAPE_INTERVAL = "1s"
Result = list[tuple[dict[str, str], float]]


def require_prometheus() -> None:
    require(PROMETHEUS, "prometheus")


class PrometheusServer(ServerProcess):
    name = "prometheus"

    def __init__(self, directory: Path, targets: Sequence[str], *, job: str = "planctond") -> None:
        """`targets`: HOST:PORT of exporters serving /metrics, all scraped as `job`."""
        super().__init__(directory, "prometheus.log")
        self.targets = list(targets)
        self.job = job
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        """JSON is YAML: no quoting rules of our own for the targets."""
        document = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]},
            ],
        }
        return json.dumps(document, indent=2)

    def argv(self) -> list[str]:
        self.port = free_port()
        config = self.directory / "prometheus.yml"
        config.write_text(self._config())
        return [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def ready(self) -> bool:
        """/-/ready answers 200 once the TSDB is open and scraping has begun."""
        return answers(f"{self.url}/-/ready")

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


@contextlib.contextmanager
def prometheus_server(
    directory: Path, targets: Sequence[str], *, job: str = "planctond"
) -> Iterator[PrometheusServer]:
    """A started server in `directory` scraping `targets` (skips the test when prometheus is
    missing); stopped after."""
    require_prometheus()
    with PrometheusServer(directory, targets, job=job) as server:
        yield server
