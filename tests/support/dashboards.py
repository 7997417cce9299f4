"""The Grafana dashboards of contrib/grafana/ as the queries they send, rendered the way Grafana
renders them, so tests (and the fleet benchmark) can run every panel's query against a real
InfluxDB or Prometheus without a Grafana server.

`panel_queries` lists every target of every panel (a row's nested panels too), every query
variable (panel "variable:<name>") and every annotation query (panel "annotation:<name>"), with
the Grafana variables still in. `render_influxql` and `render_promql` put in what Grafana would
for a time range, an interval and the variables' values:

- InfluxQL: `$timeFilter` is `time >= <start>ms and time <= <end>ms` (an absolute range);
  `$__interval` ("15s", "1m"), `$__interval_ms`, `$__range` ("15m"), `$__range_s`, `$__range_ms`,
  and the range's ends `${__from}`, `${__to}` (epoch milliseconds, Grafana's default format).
- PromQL: `$__rate_interval` is max(interval + scrape interval, 4 x scrape interval), as Grafana
  computes it from the data source's scrape interval (15 s unless told); `$__range` is "<s>s".
- A template variable's value: a sequence is several selected values, each regex-escaped and
  joined as `(a|b)` (one value: that value, escaped), as Grafana formats a multi-value variable
  for both data sources; a string is one selected value; `ALL` is the "All" option, replaced by
  the dashboards' `allValue`, `.*`, unescaped. Our dashboards use variables only in regex
  matches (`=~ /^$host$/`, `host=~"$host"`), where all of these are right.

A variable the query uses but the caller did not give raises KeyError: an undefined variable is a
broken panel, not an empty one.

The InfluxDB dashboard's fleet panels have two targets: one reads the fleet rollup that the
continuous queries of `influxdb-rollups.iql` keep (it has no `host` tag, so `"host" =~ /^$host$/`
matches only "All", `.*`), the other the raw series with `"all_hosts" !~ /^$host$/` (no series has
that tag, and an absent tag matches `.*` but no list of host names), so exactly one answers.
`rollups` reads that file; `rollup_backfill` makes the statements that fill its history once,
as the recipe in contrib/grafana/README.md does with sed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[2]
GRAFANA_DIR: Final = REPO / "contrib" / "grafana"
INFLUXDB: Final = "influxdb"
PROMETHEUS: Final = "prometheus"
ALL: Final = "$__all"  # the "All" option of a variable
ALL_VALUE: Final = ".*"  # what every variable of our dashboards sends for "All"
ROLLUPS: Final = GRAFANA_DIR / "influxdb-rollups.iql"
DATABASE_MARK: Final = "@DATABASE@"  # the rollups file's stand-in for the site's database
NO_SUCH_TAG: Final = "all_hosts"  # a tag no series has: its value is "", which `.*` matches
PICKED_HOSTS: Final = f'"{NO_SUCH_TAG}" !~ /^$host$/'  # in a target for picked hosts only
DEFAULT_SCRAPE_INTERVAL: Final = 15.0  # Grafana's default for a Prometheus data source

# $name, ${name} or ${name:format}; the longest names match first since \w+ is greedy.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w:]+)?\}|\$(\w+)")
# Grafana's regex escape (the characters it escapes before joining values with `|`).
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*$", re.S)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # the file's stem
    panel: str  # the panel's title, "variable:<name>" or "annotation:<name>"
    ref: str  # the target's refId
    kind: str  # "influxdb" | "prometheus"
    expr: str  # the query as in the JSON, Grafana variables and all


def dashboard_files() -> list[Path]:
    return sorted(GRAFANA_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def all_panels(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels a (collapsed) row holds."""
    for panel in document.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = document.get("templating", {}).get("list", [])
    return found


def datasource_kind(document: Mapping[str, Any], ref: Any) -> str:
    """The plugin a data source reference names: its `type`, or for a `${var}` uid the plugin
    of that datasource variable. Empty when it cannot be told."""
    if not isinstance(ref, Mapping):
        return ""
    if ref.get("type"):
        return str(ref["type"])
    uid = str(ref.get("uid", ""))
    for var in variables(document):
        if var.get("type") == "datasource" and uid in (f"${var['name']}", f"${{{var['name']}}}"):
            return str(var.get("query", ""))
    return ""


def target_expr(target: Mapping[str, Any], kind: str) -> str:
    return str(target.get("expr" if kind == PROMETHEUS else "query", ""))


def panel_queries(path: Path) -> list[PanelQuery]:
    document = load(path)
    stem = path.stem
    out: list[PanelQuery] = []
    for panel in all_panels(document):
        for target in panel.get("targets", []):
            kind = datasource_kind(document, target.get("datasource") or panel.get("datasource"))
            title = str(panel.get("title", ""))
            out.append(
                PanelQuery(stem, title, str(target["refId"]), kind, target_expr(target, kind))
            )
    for var in variables(document):
        if var.get("type") != "query":
            continue
        query = var.get("query", "")
        expr = str(query.get("query", "") if isinstance(query, Mapping) else query)
        kind = datasource_kind(document, var.get("datasource"))
        out.append(PanelQuery(stem, f"variable:{var['name']}", var["name"], kind, expr))
    for annotation in document.get("annotations", {}).get("list", []):
        kind = datasource_kind(document, annotation.get("datasource"))
        target = annotation.get("target")
        if kind not in (INFLUXDB, PROMETHEUS) or not isinstance(target, Mapping):
            continue  # Grafana's own annotations and alerts: no query of ours
        name = f"annotation:{annotation['name']}"
        ref = str(target.get("refId", "Anno"))
        out.append(PanelQuery(stem, name, ref, kind, target_expr(target, kind)))
    return out


def min_interval_s(path: Path, panel: str) -> float:
    """A panel's "Min interval" (its `interval`, e.g. "1m") in seconds, 0 when it sets none:
    Grafana's $__interval for that panel is never shorter."""
    for p in all_panels(load(path)):
        if p.get("title") == panel and p.get("interval"):
            match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", str(p["interval"]))
            if match is None:
                raise ValueError(f"{panel}: interval {p['interval']!r}")
            unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
            return int(match.group(1)) * unit
    return 0.0


# --- rendering -----------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """Grafana's way of writing an interval: the largest unit that divides it ("15s", "1m",
    "2h", "1d"), else milliseconds."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"an interval must be positive, got {seconds}")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _regex_escape(value: str, *, promql: bool) -> str:
    # In PromQL the regex sits in a string literal: its backslash must be doubled.
    backslash = "\\\\" if promql else "\\"
    return _REGEX_SPECIAL.sub(lambda m: backslash + m.group(0), value)


def _format(value: str | Sequence[str], *, promql: bool) -> str:
    if isinstance(value, str):
        return ALL_VALUE if value == ALL else _regex_escape(value, promql=promql)
    if ALL in value:
        return ALL_VALUE
    escaped = [_regex_escape(v, promql=promql) for v in value]
    if not escaped:
        raise ValueError("a multi-value variable needs at least one value")
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _substitute(
    expr: str,
    builtins: Mapping[str, str],
    values: Mapping[str, str | Sequence[str]],
    *,
    promql: bool,
) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name in values:
            return _format(values[name], promql=promql)
        raise KeyError(f"variable ${name} is neither Grafana's nor given: {expr}")

    return _VARIABLE.sub(one, expr)


def _range_builtins(start_s: float, end_s: float, interval_s: float) -> dict[str, str]:
    if end_s <= start_s:
        raise ValueError(f"an empty time range: {start_s} .. {end_s}")
    span = end_s - start_s
    return {
        "__interval": duration(interval_s),
        "__interval_ms": str(round(interval_s * 1000)),
        "__range_s": str(round(span)),
        "__range_ms": str(round(span * 1000)),
    }


def render_influxql(
    expr: str,
    *,
    start_s: float,
    end_s: float,
    interval_s: float,
    variables: Mapping[str, str | Sequence[str]],
) -> str:
    builtins = _range_builtins(start_s, end_s, interval_s)
    builtins["__range"] = duration(round(end_s - start_s))
    builtins["timeFilter"] = (
        f"time >= {round(start_s * 1000)}ms and time <= {round(end_s * 1000)}ms"
    )
    builtins["__from"] = str(round(start_s * 1000))
    builtins["__to"] = str(round(end_s * 1000))
    return _substitute(expr, builtins, variables, promql=False)


def render_promql(
    expr: str,
    *,
    start_s: float,
    end_s: float,
    interval_s: float,
    variables: Mapping[str, str | Sequence[str]],
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL,
) -> str:
    builtins = _range_builtins(start_s, end_s, interval_s)
    builtins["__range"] = f"{round(end_s - start_s)}s"
    rate = max(interval_s + scrape_interval_s, 4 * scrape_interval_s)
    builtins["__rate_interval"] = duration(rate)
    return _substitute(expr, builtins, variables, promql=True)


def label_values(expr: str) -> tuple[str, str] | None:
    """A Prometheus variable query `label_values(selector, label)` (or `label_values(label)`)
    as (label, selector): Grafana asks /api/v1/label/<label>/values?match[]=<selector> for it,
    it is not PromQL. None for any other query."""
    match = _LABEL_VALUES.match(expr)
    if match is None:
        return None
    return match.group(2), (match.group(1) or "")


# --- the InfluxDB fleet rollups ----------------------------------------------------------------
# One continuous query a line; the same split as the README's sed recipe: the SELECT before the
# last GROUP BY, and that GROUP BY (greedy, so the subquery's own GROUP BY stays in the SELECT).
_CONTINUOUS_QUERY = re.compile(
    r'^CREATE CONTINUOUS QUERY "(\w+)" .* BEGIN (.*) (GROUP BY .*) END;$'
)
_ROLLUP_PARTS = re.compile(
    r'^SELECT \w+\("v"\) AS "(\w+)" INTO "(\w+)" FROM \(SELECT (.*) AS "v" FROM "(\w+)" '
)


@dataclass(frozen=True)
class Rollup:
    """One continuous query of the rollups file."""

    select: str  # SELECT ... INTO ... FROM (subquery), no time range
    group_by: str  # its outer GROUP BY time(1m)[, "pool"]
    measurement: str  # what it writes ...
    field: str  # ... and its one field
    source: str  # the raw measurement it reads
    expr: str  # what it takes of each host's minute, e.g. last("running_pilots")
    name: str  # the continuous query's

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(re.findall(r'"(\w+)"', self.group_by))


def rollups(path: Path = ROLLUPS) -> list[Rollup]:
    out = []
    for line in path.read_text().splitlines():
        match = _CONTINUOUS_QUERY.match(line)
        if match is None:
            continue
        name, select, group_by = match.groups()
        parts = _ROLLUP_PARTS.match(select)
        if parts is None:
            raise ValueError(f"{path.name}: not a rollup of one field: {line}")
        field, measurement, expr, source = parts.groups()
        out.append(Rollup(select, group_by, measurement, field, source, expr, name))
    return out


def rollup_twins(path: Path) -> list[tuple[str, str, str]]:
    """(title, rollup query, raw query for picked hosts) of each fleet panel that has both."""
    out = []
    for panel in all_panels(load(path)):
        queries = {t["refId"]: str(t.get("query", "")) for t in panel.get("targets", [])}
        if PICKED_HOSTS in queries.get("B", "") and "A" in queries:
            out.append((str(panel["title"]), queries["A"], queries["B"]))
    return out


def rollup_install(database: str, path: Path = ROLLUPS) -> str:
    """The file as the README's one-liner sends it: the database put in, comments and all."""
    return path.read_text().replace(DATABASE_MARK, database)


def rollup_backfill(start_s: float, end_s: float, path: Path = ROLLUPS) -> list[str]:
    """Each continuous query's SELECT ... INTO over [start_s, end_s) (epoch seconds, whole
    minutes), from a minute early: a minute's increase needs the minute before, so chunks run
    one after the other leave no minute out (the overlap minute is written again, the same)."""
    start, end = f"{round(start_s * 1000)}ms", f"{round(end_s * 1000)}ms"
    return [
        f"{r.select} WHERE time >= {start} - 1m AND time < {end} {r.group_by};"
        for r in rollups(path)
    ]


def _outer(query: str) -> str:
    """The query without its subqueries and call arguments: what the outer SELECT groups by."""
    while (shorter := re.sub(r"\([^()]*\)", "", query)) != query:
        query = shorter
    return query


def figures(
    series: Sequence[Mapping[str, Any]], since_ms: float, *, bucketed: bool
) -> dict[tuple[Any, ...], Any]:
    """{(tags, column, bucket): value} of an InfluxDB answer (times in ms), buckets from
    `since_ms` on; an answer over the whole range (`bucketed` false) is one row, keyed 0, since
    its time is the range's start, which the rollup and its raw twin do not share."""
    return {
        (json.dumps(s.get("tags")), column, row[0] if bucketed else 0): value
        for s in series
        for row in s["values"]
        if not bucketed or row[0] >= since_ms
        for column, value in zip(s["columns"], row, strict=True)
        if column != "time" and value is not None
    }


@dataclass
class Agreement:
    """Rollup targets against their raw twins: figures compared per panel, and those that
    differ (or that one side has and the other lacks)."""

    compared: dict[str, int]
    unequal: list[str]


def rollups_against_raw(
    path: Path,
    series_of: Callable[[str], Sequence[Mapping[str, Any]]],
    hosts: Sequence[str],
    start_s: float,
    end_s: float,
) -> Agreement:
    """Each fleet panel's rollup target ("All") against its raw twin with `hosts` picked, at
    Grafana's one-minute interval over the whole minutes [start_s, end_s). A raw increase
    needs the minute before, so the twin's range starts a minute early (the rollup's first
    minute was computed with it too); that minute is left out of the comparison.
    `series_of` runs a query and returns its series with times in milliseconds."""
    assert start_s % 60 == 0 and end_s % 60 == 0 and end_s > start_s, (start_s, end_s)
    last = end_s - 0.001  # $timeFilter's end is inclusive: stop short of the next minute
    out = Agreement({}, [])
    for title, *twins in rollup_twins(path):
        rollup, raw = (
            figures(
                series_of(
                    render_influxql(
                        query,
                        start_s=first,
                        end_s=last,
                        interval_s=60.0,
                        variables={"host": chosen, "pool": ALL},
                    )
                ),
                start_s * 1000,
                bucketed="GROUP BY time" in _outer(query),
            )
            for query, first, chosen in zip(
                twins, (start_s, start_s - 60), (ALL, hosts), strict=True
            )
        )
        out.compared[title] = len(raw)
        if rollup.keys() != raw.keys():
            out.unequal.append(f"{title}: rollup {rollup}, raw {raw}")
        for key, value in raw.items():
            if not math.isclose(rollup.get(key, math.nan), value, rel_tol=1e-9, abs_tol=1e-9):
                out.unequal.append(f"{title} {key}: rollup {rollup.get(key)}, raw {value}")
    return out
