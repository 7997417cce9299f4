"""A real InfluxDB 1.x (Debian's `influxd`) on loopback, for tests of what the daemon writes.

Ports are picked free when the server first starts and kept across `stop()` / `start()`, so a
test can take the server away for a while and bring it back, data and all, where its writer
still points. The machine's /etc/influxdb/influxdb.conf is not read (an empty config file plus
environment overrides), so the host's settings cannot change what the tests see.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.server_process import ServerProcess, free_port, require

INFLUXD = "influxd"
Row = dict[str, Any]


def require_influxd() -> None:
    require(INFLUXD, "influxdb")


class InfluxDBServer(ServerProcess):
    name = "influxd"

    def __init__(self, directory: Path, *, auth: bool = False) -> None:
        """`auth`: the server demands users (create the first admin with `query`, no user)."""
        super().__init__(directory, "influxd.log")
        self.auth = auth
        self.http_port = 0
        self.rpc_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def environment(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "INFLUXDB_REPORTING_DISABLED": "true",
            "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{self.rpc_port}",
            "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{self.http_port}",
            "INFLUXDB_HTTP_AUTH_ENABLED": "true" if self.auth else "false",
            "INFLUXDB_HTTP_LOG_ENABLED": "false",
            "INFLUXDB_META_DIR": str(d / "meta"),
            "INFLUXDB_DATA_DIR": str(d / "data"),
            "INFLUXDB_DATA_WAL_DIR": str(d / "wal"),
            "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false",
            "INFLUXDB_MONITOR_STORE_ENABLED": "false",  # no _internal database writing away
        }

    def argv(self) -> list[str]:
        """Ports are picked at the first start and kept, so a restarted server is where its
        writers point. The host's /etc/influxdb/influxdb.conf is not read."""
        if not self.http_port:
            self.http_port, self.rpc_port = free_port(), free_port()
        config = self.directory / "influxdb.conf"
        config.write_text("# empty: everything comes from the environment\n")
        return [INFLUXD, "run", "-config", str(config)]

    def ready(self) -> bool:
        return self.ping()

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as reply:
                return bool(reply.status == 204)
        except (OSError, urllib.error.URLError):
            return False

    def query(
        self, q: str, db: str | None = None, *, user: str | None = None, password: str = ""
    ) -> list[Row]:
        """Run InfluxQL; every row of every series as {column: value} plus "name" (the
        measurement) and the series' tags. Times are integer nanoseconds. An error raises."""
        form = {"q": q, "epoch": "ns"}
        if db is not None:
            form["db"] = db
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                document = json.load(reply)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"query {q!r}: HTTP {exc.code}: {exc.read()!r}") from None
        rows: list[Row] = []
        for result in document.get("results", []):
            if "error" in result:
                raise RuntimeError(f"query {q!r}: {result['error']}")
            for series in result.get("series", []):
                for values in series.get("values", []):
                    row: Row = {"name": series.get("name"), **series.get("tags", {})}
                    row.update(zip(series["columns"], values, strict=True))
                    rows.append(row)
        return rows

    def count(self, measurement: str, db: str, field: str = "n") -> int:
        """How many points `measurement` holds (those with `field`); 0 while `db` is missing."""
        escaped = measurement.replace("\\", "\\\\").replace('"', '\\"')
        try:
            rows = self.query(f'SELECT count("{field}") FROM "{escaped}"', db)
        except RuntimeError as exc:
            if "database not found" in str(exc):
                return 0
            raise
        return int(rows[0]["count"]) if rows else 0


@contextlib.contextmanager
def influxdb_server(directory: Path, *, auth: bool = False) -> Iterator[InfluxDBServer]:
    """A started server in `directory` (skips the test when influxd is missing); stopped after."""
    require_influxd()
    with InfluxDBServer(directory, auth=auth) as server:
        yield server
