"""The two servers of the fleet benchmark (the test suite's helpers, started in a work
directory) and timed queries against them, as Grafana sends them.

VictoriaMetrics reads InfluxDB line protocol on `/write` and names a sample
`<measurement>_<field>`; the Prometheus exporter names a field called `value` just
`<measurement>` (`SeriesSpec.name`). `-influxSkipSingleField` is not that rule (it would also turn
`planctond_events_total`, a line with the single field `total`, into `planctond_events`). The
benchmark's server runs with the defaults, and `check_names` says which names differ; a second
server fed a sample runs with two ingest relabelling rules (`relabel_rules`): one strips a
trailing `_value`, one drops string fields, which VictoriaMetrics 1.79 stores as samples of value
0 (`planctond_daemon_run_state` and the like). Their cost per line is measured on that sample.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from planctond.monitoring import legacy_series
from planctond.monitoring.series_spec import SERIES, SeriesType, ValueType
from tests.support.influxdb_server import InfluxDBServer
from tests.support.victoria_metrics import VictoriaMetrics

QUERY_TIMEOUT: Final = 120.0  # the client's patience
# influxd's own limit (coordinator query-timeout): it ends a query that runs longer, as an
# operator would have it set; a dashboard query that long has missed the 1 s aim anyway.
QUERY_LIMIT: Final = 10.0
TIMED_OUT: Final = "timeout"
DATABASE: Final = "fleet"
VALUE_RULE: Final = """- source_labels: [__name__]
  regex: "(.+)_value"
  target_label: __name__
  replacement: "$1"
"""
VM_FLAGS: Final = ("-influxMeasurementFieldSeparator=_",)


class FleetInflux(InfluxDBServer):
    """Debian's influxd with its defaults (inmem index, 1 GiB cache), nothing tuned but a
    query timeout (`QUERY_LIMIT`)."""

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "INFLUXDB_COORDINATOR_QUERY_TIMEOUT": f"{QUERY_LIMIT:g}s",
        }

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def write_path(self, database: str = DATABASE) -> str:
        return f"/write?{urllib.parse.urlencode({'db': database, 'precision': 'ns'})}"

    def data_dirs(self) -> list[Path]:
        return [self.directory / "data", self.directory / "wal", self.directory / "meta"]


class FleetVictoria(VictoriaMetrics):
    """Debian's VictoriaMetrics, its defaults; `rules`: with the relabelling rules."""

    def __init__(self, directory: Path, *, rules: bool = False) -> None:
        super().__init__(directory)
        self.rules = rules

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def argv(self) -> list[str]:
        if not self.rules:
            return [*super().argv(), *VM_FLAGS]
        path = self.directory / "relabel.yml"
        path.write_text(relabel_rules())
        return [*super().argv(), *VM_FLAGS, f"-relabelConfig={path}"]

    def write_path(self, database: str = DATABASE) -> str:
        return f"/write?{urllib.parse.urlencode({'db': database, 'precision': 'ns'})}"

    def data_dirs(self) -> list[Path]:
        return [self.directory / "data"]

    def flush(self) -> None:
        """Make what was written searchable now (VictoriaMetrics buffers it for a few seconds)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=60) as reply:
            reply.read()

    def names(self) -> set[str]:
        with urllib.request.urlopen(f"{self.url}/api/v1/label/__name__/values", timeout=60) as r:
            return set(json.load(r)["data"])

    def series(self) -> int:
        with urllib.request.urlopen(f"{self.url}/api/v1/series/count", timeout=60) as r:
            return int(json.load(r)["data"][0])


def string_names() -> list[str]:
    """The names VictoriaMetrics would make of string fields: it stores each as a 0 sample."""
    names = {s.name for s in SERIES if s.value is ValueType.STRING}
    names.add(f"{legacy_series.DAEMON}_status")  # Plancton 0.6's status="active"
    return sorted(names)


def relabel_rules() -> str:
    """`_value` stripped (the exporter's name for a field called value); strings dropped."""
    drop = "|".join(string_names())
    return (
        VALUE_RULE
        + f"""- source_labels: [__name__]
  regex: "{drop}"
  action: drop
"""
    )


def exporter_names() -> set[str]:
    """The sample names the Prometheus exporter serves (histograms by their parts)."""
    out: set[str] = set()
    for spec in SERIES:
        if spec.type in (SeriesType.TEXT, SeriesType.EVENT):
            continue
        out.add(spec.name)
    return out


@dataclass(frozen=True)
class NameCheck:
    expected: int
    missing: tuple[str, ...]  # exporter names VictoriaMetrics does not have
    extra: tuple[str, ...]  # planctond_* names VictoriaMetrics has and the exporter does not


def check_names(vm: FleetVictoria) -> NameCheck:
    have = vm.names()
    want = exporter_names()
    extra = sorted(n for n in have - want if n.startswith("planctond_"))
    return NameCheck(len(want), tuple(sorted(want - have)), tuple(extra))


@dataclass(frozen=True)
class Timing:
    seconds: float
    series: int
    values: int
    error: str


def _get(url: str) -> tuple[float, Any]:
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    elapsed = time.perf_counter() - began
    try:
        return elapsed, json.loads(body)
    except ValueError:
        return elapsed, {"error": body[:300].decode(errors="replace")}


def influx_query(url: str, database: str, q: str) -> Timing:
    """One InfluxQL query as Grafana sends it (GET /query, epoch=ms), timed to the last byte."""
    form = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"})
    try:
        elapsed, doc = _get(f"{url}/query?{form}")
    except OSError as exc:
        return Timing(QUERY_TIMEOUT, 0, 0, f"{type(exc).__name__}: {exc}")
    series = values = 0
    error = str(doc.get("error", ""))
    for result in doc.get("results", []):
        error = error or str(result.get("error", ""))
        for s in result.get("series", []):
            series += 1
            values += len(s.get("values", []))
    if "timeout" in error:
        error = TIMED_OUT
    return Timing(elapsed, series, values, error[:300])


def prom_query(url: str, q: str, *, start: float, end: float, step: float) -> Timing:
    """One PromQL range query as Grafana sends it; `nocache=1` so a repeat is not a cache hit."""
    form = urllib.parse.urlencode(
        {"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}s"}
    )
    try:
        elapsed, doc = _get(f"{url}/api/v1/query_range?{form}&nocache=1")
    except OSError as exc:
        return Timing(QUERY_TIMEOUT, 0, 0, f"{type(exc).__name__}: {exc}")
    if doc.get("status") != "success":
        return Timing(elapsed, 0, 0, str(doc.get("error", doc))[:300])
    result = doc["data"]["result"]
    return Timing(elapsed, len(result), sum(len(r.get("values", [])) for r in result), "")


def prom_instant(url: str, q: str, at: float) -> Timing:
    """A PromQL instant query (Grafana's stat and table panels set to "instant")."""
    form = urllib.parse.urlencode({"query": q, "time": f"{at:.3f}"})
    try:
        elapsed, doc = _get(f"{url}/api/v1/query?{form}&nocache=1")
    except OSError as exc:
        return Timing(QUERY_TIMEOUT, 0, 0, f"{type(exc).__name__}: {exc}")
    if doc.get("status") != "success":
        return Timing(elapsed, 0, 0, str(doc.get("error", doc))[:300])
    result = doc["data"]["result"]
    rows = len(result) if isinstance(result, list) else 1
    return Timing(elapsed, rows, rows, "")


def prom_labels(url: str, label: str, selector: str, *, start: float, end: float) -> Timing:
    """A variable's `label_values(selector, label)`: Grafana asks the label values API."""
    form = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
    if selector:
        form["match[]"] = selector
    address = (
        f"{url}/api/v1/label/{urllib.parse.quote(label)}/values?{urllib.parse.urlencode(form)}"
    )
    try:
        elapsed, doc = _get(address)
    except OSError as exc:
        return Timing(QUERY_TIMEOUT, 0, 0, f"{type(exc).__name__}: {exc}")
    if doc.get("status") != "success":
        return Timing(elapsed, 0, 0, str(doc.get("error", doc))[:300])
    return Timing(elapsed, 1, len(doc["data"]), "")


def versions() -> dict[str, str]:
    """influxd's and VictoriaMetrics's versions, as Debian installed them."""
    out = {}
    for name, package in (("influxd", "influxdb"), ("VictoriaMetrics", "victoria-metrics")):
        try:
            reply = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            out[name] = reply.stdout.strip() or "?"
        except OSError:
            out[name] = "?"
    return out
