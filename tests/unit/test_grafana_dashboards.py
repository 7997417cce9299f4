"""The Grafana dashboards of contrib/grafana/ are well-formed without a Grafana server to load them.

Grafana's dashboard schema: `grafana-foundation-sdk` (pinned in contrib/devstack/deps.sh) holds
Python types generated from Grafana's own schema (the dashboard kind, and each panel plugin's
options and each query type). Its `from_json` is lenient (it drops what it does not know and
checks no type), so the check here walks each document against those types: every key must be
one the schema has (an unknown key is a typo Grafana would silently ignore), every required key
present, every value of the declared type (enums and literals by their values). The schema has
no InfluxDB query type and types an annotation's `target` as Grafana's built-in one; those are
checked by hand below.

Then ours: unique panel ids, a 24-column grid without overlaps, every target on a declared data
source, every variable defined, and every series a query names is in the catalogue
(`series_spec.SERIES`, or Plancton 0.6's names), so a renamed series breaks this test.
"""

from __future__ import annotations

import enum
import functools
import os
import re
import types
import typing
from collections.abc import Hashable, Iterator, Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from planctond.monitoring import legacy_series as L
from planctond.monitoring.series_spec import SERIES, SeriesType
from planctond.supervisor.events import EventKind
from tests.support import dashboards as D
from tests.unit.test_monitoring_series import event, report

FILES = D.dashboard_files()
IDS = [p.stem for p in FILES]
GRID_COLUMNS = 24
BUILTIN_VARIABLES = {"timeFilter", "__interval", "__interval_ms", "__range", "__range_s"}
BUILTIN_VARIABLES |= {"__range_ms", "__rate_interval", "__from", "__to"}
# Keys of an annotation beyond the common schema, read by each data source's annotation support.
ANNOTATION_EXTRAS = {
    D.INFLUXDB: {"query", "textColumn", "tagsColumn", "titleColumn", "timeEndColumn"},
    D.PROMETHEUS: {"step", "titleFormat", "textFormat", "tagKeys", "useValueForTime"},
}
INFLUX_TARGET_KEYS = {"refId", "datasource", "query", "rawQuery", "resultFormat", "alias", "hide"}
# Served on /metrics beside the catalogue: prometheus_client's process collector (the exporter
# registers it) and Prometheus's own per-target series.
PROMETHEUS_EXTERNAL = {"process_resident_memory_bytes", "process_cpu_seconds_total", "up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def document(path: Path) -> dict[str, Any]:
    return D.load(path)


# --- Grafana's schema, through the foundation SDK's generated types -------------------------------
def _sdk() -> types.ModuleType:
    try:
        import grafana_foundation_sdk.models.dashboard as dashboard_model
    except ImportError:
        if os.environ.get("CI") == "true":
            raise AssertionError(
                "grafana-foundation-sdk is missing: contrib/devstack/deps.sh installs it"
            ) from None
        pytest.skip("grafana-foundation-sdk is not installed (contrib/devstack/deps.sh)")
    from grafana_foundation_sdk.cog.plugins import register_default_plugins

    register_default_plugins()
    return dashboard_model


def _is_model(value: object) -> bool:
    return _is_model_class(type(value))


def _is_model_class(hint: Any) -> bool:
    module = getattr(hint, "__module__", "")
    if not isinstance(hint, type) or issubclass(hint, enum.Enum):
        return False
    return module.startswith("grafana_foundation_sdk.models.")


class _Probe:
    def __init__(self, attr: str) -> None:
        self.attr = attr


@functools.cache
def _keys(cls: Hashable) -> tuple[dict[str, str], frozenset[str]]:
    """{attribute: JSON key} and the required keys of a generated class, read off its to_json
    by giving each attribute a marker (an optional one None to find the required keys)."""
    hints = typing.get_type_hints(cls)
    probe = cls()  # type: ignore[operator]
    for attr in hints:
        setattr(probe, attr, _Probe(attr))
    mapping = {v.attr: k for k, v in probe.to_json().items() if isinstance(v, _Probe)}
    for attr, hint in hints.items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if union and type(None) in typing.get_args(hint):
            setattr(probe, attr, None)
    return mapping, frozenset(probe.to_json())


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value is of a (non-union) hint's kind; a model class takes an object."""
    origin = typing.get_origin(hint)
    if hint in (typing.Any, object):
        return True
    if hint in (int, float):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and (hint is float or isinstance(value, int))
    if origin in (list, dict):
        return isinstance(value, origin)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in {m.value for m in hint}
    if _is_model_class(hint):
        return isinstance(value, (hint, dict))
    return isinstance(hint, type) and isinstance(value, hint)


class SchemaWalk:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.hand_checked: list[tuple[str, str, Mapping[str, Any]]] = []  # (path, kind, query)

    def value(self, value: Any, hint: Any, path: str) -> None:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if type(value).__name__ == "UnknownDataquery":  # a query type the SDK does not have
            self.hand_checked.append((path, D.INFLUXDB, value.data))
        elif origin in (typing.Union, types.UnionType):
            if value is not None or type(None) not in args:
                arms = [a for a in args if a is not type(None) and _fits(value, a)]
                if arms:
                    self.value(value, arms[0], path)
                else:
                    self.problems.append(f"{path}: {value!r} is none of {args}")
        elif not _fits(value, hint):
            self.problems.append(f"{path}: {value!r} is not a {hint}")
        elif origin is list:
            for i, item in enumerate(value):
                self.value(item, args[0], f"{path}[{i}]")
        elif origin is dict:
            for key, item in value.items():
                self.value(item, args[1], f"{path}.{key}")
        elif _is_model_class(hint) or _is_model(value):  # `object` decoded by a plugin's hook
            self.model(value, hint if _is_model_class(hint) else type(value), path)

    def model(self, value: Any, cls: Any, path: str) -> None:
        if isinstance(value, dict):  # left undecoded by from_json (transformations)
            value, value._original = cls.from_json(value), value
        raw: dict[str, Any] | None = getattr(value, "_original", None)
        mapping, required = _keys(type(value))  # type: ignore[arg-type]
        foreign = type(value).__name__ == "AnnotationQuery" and _foreign(value)
        if raw is not None:
            extras = ANNOTATION_EXTRAS[value.datasource.type_val] if foreign else set()
            for key in set(raw) - set(mapping.values()) - extras:
                self.problems.append(f"{path}: {type(value).__name__} has no key {key!r}")
            for key in required - set(raw):
                self.problems.append(f"{path}: {type(value).__name__} requires {key!r}")
        for attr, hint in typing.get_type_hints(type(value)).items():
            sub, key = getattr(value, attr), mapping.get(attr, attr)
            raw_sub = raw.get(key) if raw is not None else None
            if foreign and attr == "target":  # a query of the annotation's data source
                kind = str(value.datasource.type_val)
                self.hand_checked.append((f"{path}.target", kind, raw_sub or {}))
                continue
            pairs = zip(sub, raw_sub, strict=False) if isinstance(raw_sub, list) else []
            for item, raw_item in [(sub, raw_sub), *pairs]:
                if _is_model(item) and isinstance(raw_item, dict):
                    item._original = raw_item
            self.value(sub, hint, f"{path}.{key}")


def _foreign(annotation: Any) -> bool:
    datasource = annotation.datasource
    return datasource is not None and datasource.type_val in ANNOTATION_EXTRAS


def schema_problems(
    doc: dict[str, Any],
) -> tuple[list[str], list[tuple[str, str, Mapping[str, Any]]]]:
    model = _sdk().Dashboard.from_json(doc)
    walk = SchemaWalk()
    model._original = doc
    walk.model(model, type(model), "dashboard")
    return walk.problems, walk.hand_checked


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_dashboards_follow_grafana_s_schema(path: Path) -> None:
    problems, hand_checked = schema_problems(document(path))
    from grafana_foundation_sdk.models import prometheus

    for where, kind, query in hand_checked:
        if kind == D.PROMETHEUS:  # an annotation's target: a Prometheus query
            sub = SchemaWalk()
            sub.model(dict(query), prometheus.Dataquery, where)
            problems += sub.problems
        else:
            problems += [f"{where}: {p}" for p in influx_target_problems(query)]
    assert not problems, "\n".join(problems)


def test_the_schema_check_sees_mistakes() -> None:
    """A typo'd key, a wrong type, a missing required key and a bad enum value are all caught."""
    doc = document(FILES[0])
    panel = next(p for p in doc["panels"] if p["type"] == "timeseries")
    panel["gridpos"] = panel.pop("gridPos")
    panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "zigzag"
    panel["options"].pop("legend")
    doc["graphTooltip"] = "shared"
    problems = "\n".join(schema_problems(doc)[0])
    for expected in ("no key 'gridpos'", "zigzag", "requires 'legend'", "graphTooltip"):
        assert expected in problems, problems


def influx_target_problems(target: Mapping[str, Any]) -> list[str]:
    problems = [f"unknown key {k!r}" for k in set(target) - INFLUX_TARGET_KEYS]
    if target.get("rawQuery") is not True or not isinstance(target.get("query"), str):
        problems.append("an InfluxQL target is a raw query (rawQuery: true, query: text)")
    if target.get("resultFormat") not in ("time_series", "table"):
        problems.append(f"resultFormat {target.get('resultFormat')!r}")
    if not target.get("refId"):
        problems.append("no refId")
    return problems


# --- our own rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_panels_have_unique_ids_and_fit_the_grid_without_overlap(path: Path) -> None:
    doc = document(path)
    ids = [p["id"] for p in D.all_panels(doc)]
    assert len(ids) == len(set(ids)), ids
    assert doc["schemaVersion"] >= 39 and doc["uid"] == path.stem
    top = doc["panels"]
    groups = [top, *(p["panels"] for p in top if p["type"] == "row" and p["panels"])]
    for group in groups:
        for p in group:
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
            assert g["x"] + g["w"] <= GRID_COLUMNS, p["title"]
        for a, b in combinations(group, 2):
            ga, gb = a["gridPos"], b["gridPos"]
            apart = (
                ga["x"] + ga["w"] <= gb["x"]
                or gb["x"] + gb["w"] <= ga["x"]
                or ga["y"] + ga["h"] <= gb["y"]
                or gb["y"] + gb["h"] <= ga["y"]
            )
            assert apart, f"{a['title']!r} overlaps {b['title']!r}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_query_uses_a_declared_data_source_and_defined_variables(path: Path) -> None:
    doc = document(path)
    kind = D.INFLUXDB if "influxdb" in path.stem else D.PROMETHEUS
    declared = {
        f"${{{v['name']}}}": v["query"] for v in D.variables(doc) if v["type"] == "datasource"
    }
    assert set(declared.values()) == {kind}, declared
    refs = [p["datasource"] for p in D.all_panels(doc) if p["type"] != "row"]
    refs += [t["datasource"] for p in D.all_panels(doc) for t in p.get("targets", [])]
    refs += [v["datasource"] for v in D.variables(doc) if v["type"] == "query"]
    annotations = doc["annotations"]["list"]
    refs += [a["datasource"] for a in annotations if not a.get("builtIn")]
    for ref in refs:
        assert ref == {"type": kind, "uid": next(iter(declared))}, ref
    names = {v["name"] for v in D.variables(doc)} | BUILTIN_VARIABLES
    queries = D.panel_queries(path)
    assert all(q.kind == kind and q.expr for q in queries), queries
    titled = [p["title"] for p in D.all_panels(doc) if p["type"] != "row"]
    assert len(titled) == len(set(titled)), "panel titles name the queries: unique"
    for q in queries:
        used = {a or b for a, b in re.findall(r"\$\{(\w+)(?::[\w:]+)?\}|\$(\w+)", q.expr)}
        assert used <= names, (q, used - names)
        user = {v for v in used if v not in BUILTIN_VARIABLES}
        for name in user:  # formatted as a regex: only ever used in a regex match
            pattern = rf'/\^\${name}\$/|=~"\${name}"'
            uses = len(re.findall(rf"\${name}\b", q.expr))
            assert len(re.findall(pattern, q.expr)) == uses, (q, name)


def prometheus_names() -> set[str]:
    names = {s.name for s in SERIES}
    histogram = getattr(SeriesType, "HISTOGRAM", None)
    names |= {s.name + x for s in SERIES if s.type is histogram for x in HISTOGRAM_SUFFIXES}
    return names | PROMETHEUS_EXTERNAL


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: strings, label matchers, grouping labels
    and ranges taken out, what is left that is not a function or a keyword."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    words = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text)
    return {w for w, call in words if not call and w.lower() not in _PROMQL_WORDS}


def influx_catalogue() -> dict[str, set[str]]:
    """{measurement: its fields and tags}: planctond's catalogue and Plancton 0.6's series (as
    legacy_series makes them)."""
    out: dict[str, set[str]] = {}
    for s in SERIES:
        out.setdefault(s.measurement, set()).update({s.field, *s.tags})
    legacy = [*L.legacy_status(report(), 1e9, "h")]
    for kind in (EventKind.PILOT_EXITED, EventKind.PILOT_STOPPED, EventKind.DOCKER_LOST):
        legacy += L.legacy_event(event(kind, extra={"lifetime_seconds": "1"}), "h")
    for p in legacy:
        out.setdefault(p.measurement, set()).update({*p.fields, *p.tags})
    for r in D.rollups():  # no host tag: `"host" =~ /^$host$/` there matches "All" alone
        out.setdefault(r.measurement, {"host"}).update({r.field, *r.tags})
    return out


def influxql_references(query: str) -> Iterator[tuple[str, set[str]]]:
    """(measurement, quoted names its innermost SELECT ... FROM "m" ... uses), aliases out."""
    if m := re.match(r'SHOW TAG VALUES FROM "(\w+)" WITH KEY = "(\w+)"(.*)$', query):
        yield m.group(1), {m.group(2), *re.findall(r'"(\w+)"', m.group(3))}
        return
    for m in re.finditer(r'SELECT ((?:(?!SELECT).)*?) FROM "(\w+)"(.*?)(?=\)|$)', query):
        columns, measurement, rest = m.groups()
        aliases = set(re.findall(r'AS "([^"]+)"', columns))
        names = set(re.findall(r'"([^"]+)"', columns + rest)) - aliases
        yield measurement, names


def test_the_query_parsers_find_what_a_query_reads() -> None:
    expr = 'sum by (pool) (rate(a_total{host=~"$host", x="y"}[5m])) * on (job) group_left (host) b'
    assert promql_metric_names(expr) == {"a_total", "b"}
    q = 'SELECT sum("d") FROM (SELECT last("f") AS "d" FROM "m" WHERE "t" =~ /x/) GROUP BY "t"'
    assert list(influxql_references(q)) == [("m", {"f", "t"})]


def unknown_series(
    path: Path, known: set[str], catalogue: Mapping[str, set[str]]
) -> list[tuple[str, str, set[str]]]:
    """(panel, ref, names) of every query naming a series the catalogue lacks."""
    out: list[tuple[str, str, set[str]]] = []
    for q in D.panel_queries(path):
        if q.kind == D.PROMETHEUS:
            selector = D.label_values(q.expr)
            names = promql_metric_names(selector[1] if selector else q.expr)
            assert names or selector, q
            if names - known:
                out.append((q.panel, q.ref, names - known))
            continue
        refs = list(influxql_references(q.expr))
        assert refs, q
        for measurement, used in refs:
            missing = used - catalogue.get(measurement, set()) - {"time", D.NO_SUCH_TAG}
            if measurement not in catalogue or missing:
                out.append((q.panel, q.ref, {measurement, *missing}))
    return out


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_series_a_query_reads_is_in_the_catalogue(path: Path) -> None:
    assert unknown_series(path, prometheus_names(), influx_catalogue()) == []


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_a_series_gone_from_the_catalogue_is_noticed(path: Path) -> None:
    known, catalogue = prometheus_names(), influx_catalogue()
    known.discard("planctond_host_pilot_used_cpu_seconds_total")
    catalogue["planctond_host"].discard("pilot_used_cpu_seconds_total")
    del catalogue["planctond_config"]
    known.discard("planctond_config_error")
    found = unknown_series(path, known, catalogue)
    assert {"Harvested CPU-hours", "Sick hosts"} <= {panel for panel, _, _ in found}, found
