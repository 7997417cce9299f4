"""The dashboard queries the fleet benchmark times: every panel, variable and annotation query of
contrib/grafana/*.json, rendered as Grafana renders them (tests/support/dashboards.py).

Only when this checkout has no dashboards does a short list of representative queries of our own
stand in (`FALLBACK`, rendered by `_render_fallback`), and the report says so.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

INFLUXDB: Final = "influxdb"
PROMETHEUS: Final = "prometheus"
ALL_HOSTS: Final = "all"
DRILL_DOWN_ROW: Final = re.compile(r"drill", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    """One query a dashboard sends, and how: `hosts` is "all" or the one host selected."""

    dashboard: str
    panel: str
    ref: str
    kind: str  # influxdb | prometheus
    expr: str
    drill_down: bool  # in the per-host row: Grafana users pick one host there
    instant: bool  # a Prometheus instant query (stat and table panels), else a range query
    picked: bool = False  # answers only for picked hosts (the raw twin of a rollup target)
    rollup: bool = False  # reads a fleet rollup, a point a minute whatever the fleet's size

    def reads_every_host(self, hosts: str) -> bool:
        """Whether its cost grows with the fleet: every host's raw points, not a rollup, one
        host's points, or nothing (a raw twin with all hosts)."""
        return hosts == ALL_HOSTS and not (self.rollup or self.picked)

    @property
    def label(self) -> str:
        if self.picked:
            return f"{self.panel} ({self.ref}: raw, hosts picked)"
        return f"{self.panel} ({self.ref})" if self.ref not in ("A", "") else self.panel


@dataclass(frozen=True)
class Source:
    name: str  # what the report says was used
    cases: list[Case]
    # (kind, expr, start, end, interval, host): the text Grafana sends
    render: Callable[[str, str, float, float, float, str], str]
    label_values: Callable[[str], tuple[str, str] | None]


# A few queries of the kinds a fleet dashboard needs: one panel over all hosts, one grouped by
# host, a table of the latest value per host, the events; each in InfluxQL and PromQL.
FALLBACK: Final[tuple[Case, ...]] = (
    Case(
        "fallback",
        "Fleet CPU",
        "A",
        INFLUXDB,
        'SELECT sum("o") FROM (SELECT mean("owner_cpus") AS "o" FROM "planctond_host" WHERE '
        '$timeFilter AND "host" =~ /^$host$/ GROUP BY time($__interval), "host") '
        "WHERE $timeFilter GROUP BY time($__interval)",
        False,
        False,
    ),
    Case(
        "fallback",
        "CPU per host",
        "A",
        INFLUXDB,
        'SELECT mean("pilot_cpus") FROM "planctond_host" WHERE $timeFilter AND '
        '"host" =~ /^$host$/ GROUP BY time($__interval), "host" fill(none)',
        True,
        False,
    ),
    Case(
        "fallback",
        "Docker down",
        "A",
        INFLUXDB,
        'SELECT last("docker_up") FROM "planctond_daemon" WHERE $timeFilter AND '
        '"host" =~ /^$host$/ GROUP BY "host"',
        False,
        False,
    ),
    Case(
        "fallback",
        "Events",
        "A",
        INFLUXDB,
        'SELECT count("message") FROM "planctond_event" WHERE $timeFilter AND '
        '"host" =~ /^$host$/ GROUP BY time($__interval), "kind" fill(none)',
        False,
        False,
    ),
    Case(
        "fallback",
        "Fleet CPU",
        "A",
        PROMETHEUS,
        'sum(planctond_host_owner_cpus{host=~"$host"})',
        False,
        False,
    ),
    Case(
        "fallback",
        "CPU per host",
        "A",
        PROMETHEUS,
        'planctond_host_pilot_cpus{host=~"$host"}',
        True,
        False,
    ),
    Case(
        "fallback",
        "Harvest",
        "A",
        PROMETHEUS,
        'sum(increase(planctond_pool_pilot_cpu_seconds_total{host=~"$host"}[$__range])) / 3600',
        False,
        True,
    ),
    Case(
        "fallback",
        "Events",
        "A",
        PROMETHEUS,
        'sum by (kind) (rate(planctond_events_total{host=~"$host"}[$__rate_interval]))',
        False,
        False,
    ),
)


def _seconds(value: float) -> str:
    return f"{round(value)}s"


def _render_fallback(
    kind: str, expr: str, start: float, end: float, interval: float, host: str
) -> str:
    """Grafana's substitutions, for the fallback list only (the dashboards' own renderer is
    used whenever the dashboards exist)."""
    value = ".*" if host == ALL_HOSTS else re.escape(host)
    out = expr.replace("$host", value)
    out = out.replace(
        "$timeFilter", f"time >= {round(start * 1000)}ms and time <= {round(end * 1000)}ms"
    )
    out = out.replace("$__rate_interval", _seconds(max(interval + 15, 60)))
    out = out.replace("$__interval", _seconds(interval))
    return out.replace("$__range", _seconds(end - start))


def _no_label_values(expr: str) -> tuple[str, str] | None:
    return None


def _dashboards_module() -> Any:
    try:
        return importlib.import_module("tests.support.dashboards")
    except ImportError:
        return None


def _cases_of(module: Any, path: Any) -> list[Case]:
    """Every query of one dashboard file, with the two facts the benchmark needs that the
    query list does not carry: the panel's row (drill-down or not) and, for Prometheus, whether
    Grafana sends it as an instant query."""
    document = module.load(path)
    drill: set[str] = set()
    instant: set[tuple[str, str]] = set()
    in_drill = False
    for panel in document.get("panels", []):
        if panel.get("type") == "row":
            in_drill = bool(DRILL_DOWN_ROW.search(str(panel.get("title", ""))))
            nested = panel.get("panels", [])
        else:
            nested = [panel]
        for inner in nested:  # a collapsed row holds its panels
            if in_drill:
                drill.add(str(inner.get("title", "")))
            for target in inner.get("targets", []):
                if target.get("instant") and not target.get("range"):
                    instant.add((str(inner.get("title", "")), str(target.get("refId", ""))))
    cases = []
    picked = str(getattr(module, "PICKED_HOSTS", "\0"))
    rollups = {r.measurement for r in getattr(module, "rollups", list)()}
    for q in module.panel_queries(path):
        if q.kind not in (INFLUXDB, PROMETHEUS) or not q.expr.strip():
            continue
        cases.append(
            Case(
                q.dashboard,
                q.panel,
                q.ref,
                q.kind,
                q.expr,
                q.panel in drill,
                (q.panel, q.ref) in instant,
                picked in q.expr,
                any(f'FROM "{m}"' in q.expr for m in rollups),
            )
        )
    return cases


def load() -> Source:
    """The dashboards' queries when contrib/grafana has dashboards, else the fallback."""
    module = _dashboards_module()
    files: Sequence[Any] = module.dashboard_files() if module is not None else []
    if module is None or not files:
        return Source(
            "fallback queries (bench/fleet_queries.py): contrib/grafana has no dashboards",
            list(FALLBACK),
            _render_fallback,
            _no_label_values,
        )
    cases = [case for path in files for case in _cases_of(module, path)]

    def render(kind: str, expr: str, start: float, end: float, interval: float, host: str) -> str:
        variables: Mapping[str, Any] = {
            "host": module.ALL if host == ALL_HOSTS else [host],
            "pool": module.ALL,
        }
        fn = module.render_influxql if kind == INFLUXDB else module.render_promql
        text: str = fn(expr, start_s=start, end_s=end, interval_s=interval, variables=variables)
        return text

    def label_values(expr: str) -> tuple[str, str] | None:
        found: tuple[str, str] | None = module.label_values(expr)
        return found

    names = ", ".join(f"contrib/grafana/{p.name}" for p in files)
    return Source(f"the dashboards' own queries: {names}", cases, render, label_values)


# --- timing ----------------------------------------------------------------------------------
@dataclass
class Timed:
    case: Case
    hosts: str  # "all" or the one host selected
    times: list[float]
    series: int
    values: int
    error: str

    @property
    def median(self) -> float:
        ordered = sorted(self.times)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        c = self.case
        return (c.kind, c.dashboard, c.panel, c.ref, self.hosts)


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    interval: float  # Grafana's $__interval (and a Prometheus range query's step)


def _text(source: Source, kind: str, w: Window, hosts: str, expr: str) -> str:
    return source.render(kind, expr, w.start, w.end, w.interval, hosts)


def time_cases(
    source: Source,
    *,
    influx: Callable[[str], Any] | None,
    prom_range: Callable[[str, Window], Any] | None,
    prom_instant: Callable[[str, float], Any] | None,
    prom_labels: Callable[[str, str, Window], Any] | None,
    window: Window,
    one_host: str,
    runs: int = 3,
    slow: float = 20.0,
    only: Callable[[Case, str], bool] | None = None,
) -> list[Timed]:
    """Each case `runs` times (once when the first run took over `slow` seconds); drill-down
    panels and targets for picked hosts with all hosts and with `one_host`, the rest with all
    hosts; `only(case, hosts)` picks some of those. A backend given as None is skipped. The
    callables return a fleet_servers.Timing."""
    out: list[Timed] = []
    for case in source.cases:
        both = case.drill_down or case.picked
        for hosts in (ALL_HOSTS, one_host) if both else (ALL_HOSTS,):
            if only is not None and not only(case, hosts):
                continue
            w = window
            text_of = functools.partial(_text, source, case.kind, w, hosts)
            labels = source.label_values(case.expr) if case.kind == PROMETHEUS else None
            once: Callable[[], Any]
            if case.kind == INFLUXDB:
                if influx is None:
                    continue
                once = functools.partial(influx, text_of(case.expr))
            elif prom_range is None or prom_instant is None or prom_labels is None:
                continue
            elif labels is not None:
                label, selector = labels
                once = functools.partial(
                    prom_labels, label, text_of(selector) if selector else "", w
                )
            elif case.instant:
                once = functools.partial(prom_instant, text_of(case.expr), w.end)
            else:
                once = functools.partial(prom_range, text_of(case.expr), w)
            first = once()
            timings = [first]
            while len(timings) < runs and first.seconds < slow:
                timings.append(once())
            out.append(
                Timed(
                    case,
                    hosts,
                    [t.seconds for t in timings],
                    first.series,
                    first.values,
                    next((t.error for t in timings if t.error), ""),
                )
            )
    return out
